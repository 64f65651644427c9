//! Chat templates: the model's Jinja `tokenizer.chat_template` rendered with minijinja the
//! way transformers renders it (trim_blocks, lstrip_blocks, `raise_exception`, Python string
//! methods), with messages, tools, the BOS/EOS texts and `add_generation_prompt`.

use llama_stack_core::api::inference::{Message, Tool};
use llama_stack_core::{Error, Result};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind as JinjaErrorKind};
use serde_json::{json, Value};

/// A compiled chat template.
pub(crate) struct ChatTemplate {
    env: Environment<'static>,
    /// The template source mentions tools (renders `tools` itself).
    pub(crate) handles_tools: bool,
}

const NAME: &str = "chat_template";

fn template_error(e: minijinja::Error) -> Error {
    let mut msg = format!("chat template: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::invalid_request(msg)
}

impl ChatTemplate {
    /// Compiles `source`.
    pub(crate) fn new(source: &str) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::internal(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(JinjaErrorKind::InvalidOperation, msg))
            },
        );
        env.add_function("strftime_now", |fmt: String| -> String {
            // Templates use it for "today's date"; a fixed clock keeps prompts reproducible
            // and the KV cache reusable across turns.
            let _ = fmt;
            "26 Jul 2024".to_string()
        });
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| {
                Error::unavailable(format!("the model's chat template does not compile: {e}"))
            })?;
        Ok(ChatTemplate {
            env,
            handles_tools: source.contains("tools"),
        })
    }

    /// Renders the prompt for `messages` (and `tools`), ending with the assistant's turn
    /// opener when `add_generation_prompt`.
    pub(crate) fn render(
        &self,
        messages: &[Value],
        tools: Option<&[Tool]>,
        bos_token: &str,
        eos_token: &str,
        add_generation_prompt: bool,
    ) -> Result<String> {
        let tmpl = self.env.get_template(NAME).map_err(template_error)?;
        let tools = tools.map(|t| serde_json::to_value(t).unwrap_or(Value::Null));
        let ctx = json!({
            "messages": messages,
            "tools": tools,
            "bos_token": bos_token,
            "eos_token": eos_token,
            "add_generation_prompt": add_generation_prompt,
        });
        tmpl.render(minijinja::value::Serde(&ctx))
            .map_err(template_error)
    }
}

/// The template context's view of OpenAI messages: string contents, tool-call arguments as
/// objects (as transformers expects), `developer` folded into `system`.
pub(crate) fn template_messages(messages: &[Message]) -> Vec<Value> {
    messages
        .iter()
        .map(|m| match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                json!({"role": "system", "content": content.text()})
            }
            Message::User { content, .. } => json!({"role": "user", "content": content.text()}),
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut v = json!({
                    "role": "assistant",
                    "content": content.as_ref().map(|c| c.text()).unwrap_or_default(),
                });
                if let Some(calls) = tool_calls.as_ref().filter(|c| !c.is_empty()) {
                    v["tool_calls"] = Value::Array(
                        calls
                            .iter()
                            .map(|c| {
                                let args = serde_json::from_str::<Value>(&c.function.arguments)
                                    .unwrap_or_else(|_| {
                                        Value::String(c.function.arguments.clone())
                                    });
                                json!({"id": c.id, "type": "function",
                                    "function": {"name": c.function.name, "arguments": args}})
                            })
                            .collect(),
                    );
                }
                v
            }
            Message::Tool {
                content,
                tool_call_id,
            } => json!({"role": "tool", "content": content.text(), "tool_call_id": tool_call_id}),
        })
        .collect()
}
