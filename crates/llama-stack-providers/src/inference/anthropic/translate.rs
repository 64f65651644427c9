//! OpenAI-shaped requests to Anthropic Messages API bodies, and Anthropic messages and
//! stream events back to chat completions and chunks.

use std::collections::HashMap;

use llama_stack_core::api::inference::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChunkDelta, ContentPart, FinishReason, FunctionCall, FunctionCallDelta, Message,
    MessageContent, PromptTokensDetails, ResponseFormat, ToolCall, ToolCallDelta, ToolChoice,
    Usage,
};
use llama_stack_core::{Error, Result};
use serde_json::{json, Map, Value};

use super::error_status;
use crate::inference::remote::native::{
    data_url, now, num, tool_arguments, Chunks, StreamTranslator,
};

/// What the answer translation needs to know about the request.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    /// The forced tool standing in for `response_format`; its input is the answer's text.
    pub(crate) json_tool: Option<String>,
}

fn image_block(url: &str, field: &str) -> Result<Value> {
    if let Some(d) = data_url(url, field)? {
        return Ok(
            json!({"type": "image", "source": {"type": "base64", "media_type": d.mime, "data": d.data}}),
        );
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(Error::invalid_request(format!(
        "{field}.image_url.url: expected a data: URL or an http(s) URL"
    ))
    .with_context("param", field))
}

fn file_block(file: &llama_stack_core::api::inference::FileRef, field: &str) -> Result<Value> {
    let refuse = |why: &str| {
        Err(Error::invalid_request(format!("{field}.file: {why}")).with_context("param", field))
    };
    let Some(data) = &file.file_data else {
        return refuse("remote::anthropic cannot resolve file ids; send the PDF as file_data (data:application/pdf;base64,...)");
    };
    let (mime, data) = match data_url(data, &format!("{field}.file.file_data"))? {
        Some(d) => (d.mime.to_string(), d.data.to_string()),
        None if file
            .filename
            .as_deref()
            .is_some_and(|f| f.to_ascii_lowercase().ends_with(".pdf")) =>
        {
            ("application/pdf".to_string(), data.clone())
        }
        None => return refuse("file_data must be a data: URL (data:application/pdf;base64,...)"),
    };
    if mime != "application/pdf" {
        return refuse(&format!(
            "remote::anthropic accepts PDF files only, got '{mime}'"
        ));
    }
    Ok(json!({"type": "document", "source": {"type": "base64", "media_type": mime, "data": data}}))
}

fn blocks(content: &MessageContent, field: &str) -> Result<Vec<Value>> {
    match content {
        MessageContent::Text(t) => Ok(vec![json!({"type": "text", "text": t})]),
        MessageContent::Parts(parts) => parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let f = format!("{field}[{i}]");
                match p {
                    ContentPart::Text { text } => Ok(json!({"type": "text", "text": text})),
                    ContentPart::ImageUrl { image_url } => image_block(&image_url.url, &f),
                    ContentPart::File { file } => file_block(file, &f),
                }
            })
            .collect(),
    }
}

fn push(messages: &mut Vec<Value>, role: &str, mut content: Vec<Value>) {
    if content.is_empty() {
        return;
    }
    if let Some(last) = messages.last_mut() {
        if last["role"] == role {
            if let Some(prev) = last["content"].as_array_mut() {
                prev.append(&mut content);
                return;
            }
        }
    }
    messages.push(json!({"role": role, "content": content}));
}

/// A tool name Anthropic accepts (`^[a-zA-Z0-9_-]{1,64}$`) for a response schema's name.
fn tool_name(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "json_output".into()
    } else {
        cleaned
    }
}

/// The Messages API body for `req` (with `stream` set when asked) and the answer plan.
pub(crate) fn request(
    req: &ChatCompletionRequest,
    default_max_tokens: u32,
    stream: bool,
) -> Result<(Value, Plan)> {
    if let Some(n) = req.n.filter(|n| *n > 1) {
        return Err(Error::invalid_param(
            "n",
            n,
            "remote::anthropic returns one choice per request; n must be 1",
        ));
    }
    if req.logprobs == Some(true) {
        return Err(Error::unsupported(
            "logprobs: Anthropic's Messages API does not return log probabilities (remote::anthropic)",
        )
        .with_context("param", "logprobs"));
    }
    let mut system = Vec::new();
    let mut messages = Vec::new();
    for (i, m) in req.messages.iter().enumerate() {
        let field = format!("messages[{i}].content");
        match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                let text = content.text();
                if !text.is_empty() {
                    system.push(text);
                }
            }
            Message::User { content, .. } => push(&mut messages, "user", blocks(content, &field)?),
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut out: Vec<Value> = match content {
                    Some(c) => blocks(c, &field)?
                        .into_iter()
                        .filter(|b| b["type"] != "text" || b["text"] != "")
                        .collect(),
                    None => Vec::new(),
                };
                for (j, call) in tool_calls.iter().flatten().enumerate() {
                    let input = tool_arguments(
                        &call.function.arguments,
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    )?;
                    out.push(json!({"type": "tool_use", "id": call.id, "name": call.function.name, "input": input}));
                }
                push(&mut messages, "assistant", out);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let result = match content {
                    MessageContent::Text(t) => Value::String(t.clone()),
                    parts => Value::Array(blocks(parts, &field)?),
                };
                push(
                    &mut messages,
                    "user",
                    vec![
                        json!({"type": "tool_result", "tool_use_id": tool_call_id, "content": result}),
                    ],
                );
            }
        }
    }
    if messages.is_empty() {
        return Err(Error::invalid_param(
            "messages",
            "only system messages",
            "remote::anthropic needs at least one user or assistant message",
        ));
    }

    let max_tokens = req.max_output_tokens().unwrap_or(default_max_tokens);
    let mut body = Map::new();
    body.insert("model".into(), json!(req.model));
    body.insert("max_tokens".into(), json!(max_tokens));
    if let Some(budget) = thinking_budget(req.reasoning_effort.as_deref(), max_tokens)? {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        body.insert("system".into(), json!(system.join("\n\n")));
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), num(t));
    }
    if let Some(p) = req.top_p {
        body.insert("top_p".into(), num(p));
    }
    if let Some(stop) = &req.stop {
        body.insert("stop_sequences".into(), json!(stop.to_vec()));
    }
    if let Some(user) = &req.user {
        body.insert("metadata".into(), json!({"user_id": user}));
    }

    let mut plan = Plan::default();
    let no_parallel = req.parallel_tool_calls == Some(false);
    let tools: Vec<Value> = req
        .tools
        .iter()
        .flatten()
        .map(|t| {
            let mut tool = Map::new();
            tool.insert("name".into(), json!(t.function.name));
            if let Some(d) = &t.function.description {
                tool.insert("description".into(), json!(d));
            }
            tool.insert(
                "input_schema".into(),
                t.function
                    .parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            );
            Value::Object(tool)
        })
        .collect();
    let schema = match &req.response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => Some((
            tool_name(&json_schema.name),
            json_schema.description.clone(),
            json_schema.schema.clone(),
        )),
        Some(ResponseFormat::JsonObject) => Some(("json_output".to_string(), None, None)),
        Some(ResponseFormat::Text) | None => None,
    };
    if let Some((name, description, schema)) = schema {
        if !tools.is_empty() {
            return Err(Error::invalid_param(
                "response_format",
                "json_schema with tools",
                "remote::anthropic answers in a schema through a forced tool call, which cannot be combined with `tools`",
            ));
        }
        body.insert(
            "tools".into(),
            json!([{
                "name": name,
                "description": description.unwrap_or_else(|| "Respond with JSON that matches this schema.".into()),
                "input_schema": schema.unwrap_or_else(|| json!({"type": "object"})),
            }]),
        );
        body.insert("tool_choice".into(), json!({"type": "tool", "name": name}));
        plan.json_tool = Some(name);
    } else if !tools.is_empty() {
        body.insert("tools".into(), Value::Array(tools));
        let mut choice = match &req.tool_choice {
            None => json!({"type": "auto"}),
            Some(ToolChoice::Mode(m)) => match m.as_str() {
                "none" => json!({"type": "none"}),
                "required" => json!({"type": "any"}),
                _ => json!({"type": "auto"}),
            },
            Some(ToolChoice::Named(v)) => {
                let name = v
                    .pointer("/function/name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        Error::invalid_param(
                            "tool_choice",
                            v,
                            "A named tool choice is {\"type\": \"function\", \"function\": {\"name\": ...}}",
                        )
                    })?;
                json!({"type": "tool", "name": name})
            }
        };
        if no_parallel && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        if req.tool_choice.is_some() || no_parallel {
            body.insert("tool_choice".into(), choice);
        }
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    for (k, v) in &req.extra_body {
        body.insert(k.clone(), v.clone());
    }
    Ok((Value::Object(body), plan))
}

/// Anthropic's smallest thinking budget.
const MIN_THINKING_BUDGET: u32 = 1024;

/// The extended-thinking budget for `reasoning_effort` (`minimal`/`low` 1024, `medium`
/// 4096, `high` 16384, `xhigh` 32768 tokens), kept below `max_tokens` as Anthropic
/// requires; `none` or no effort → no thinking.
fn thinking_budget(effort: Option<&str>, max_tokens: u32) -> Result<Option<u32>> {
    let budget = match effort {
        None | Some("none") => return Ok(None),
        Some("minimal" | "low") => MIN_THINKING_BUDGET,
        Some("medium") => 4096,
        Some("high") => 16384,
        Some(_) => 32768,
    };
    if max_tokens <= MIN_THINKING_BUDGET {
        return Err(Error::invalid_param(
            "reasoning_effort",
            effort.unwrap_or_default(),
            &format!("remote::anthropic thinks with at least {MIN_THINKING_BUDGET} tokens, which must stay below max_tokens ({max_tokens}); raise max_tokens"),
        ));
    }
    Ok(Some(budget.min(max_tokens - 1)))
}

/// `stop_reason` → finish reason.
pub(crate) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

/// Token counts from the pieces Anthropic reports.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tokens {
    input: u64,
    output: u64,
    cache_read: Option<u64>,
    cache_creation: u64,
}

impl Tokens {
    /// Takes whatever counts `usage` carries (later events carry totals).
    fn update(&mut self, usage: &Value) {
        let get = |k: &str| usage.get(k).and_then(Value::as_u64);
        if let Some(v) = get("input_tokens") {
            self.input = v;
        }
        if let Some(v) = get("output_tokens") {
            self.output = v;
        }
        if let Some(v) = get("cache_read_input_tokens") {
            self.cache_read = Some(v);
        }
        if let Some(v) = get("cache_creation_input_tokens") {
            self.cache_creation = v;
        }
    }

    fn usage(&self) -> Usage {
        let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        let prompt = clamp(self.input + self.cache_read.unwrap_or(0) + self.cache_creation);
        let mut usage = Usage::new(prompt, clamp(self.output));
        usage.prompt_tokens_details = self.cache_read.map(|c| PromptTokensDetails {
            cached_tokens: Some(clamp(c)),
        });
        usage
    }
}

/// A Messages API answer → a chat completion; `Err` says what was malformed.
pub(crate) fn response(
    v: &Value,
    model: &str,
    plan: &Plan,
) -> std::result::Result<ChatCompletion, String> {
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("the message has no `content` array")?;
    let (mut text, mut reasoning, mut calls) = (None::<String>, None::<String>, Vec::new());
    let mut answered_in_json = false;
    for b in blocks {
        match b.get("type").and_then(Value::as_str) {
            Some("text") => text
                .get_or_insert_with(String::new)
                .push_str(b.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("thinking") => reasoning
                .get_or_insert_with(String::new)
                .push_str(b.get("thinking").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => {
                let name = b.get("name").and_then(Value::as_str).unwrap_or("");
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                if plan.json_tool.as_deref() == Some(name) {
                    text.get_or_insert_with(String::new)
                        .push_str(&input.to_string());
                    answered_in_json = true;
                } else {
                    calls.push(ToolCall {
                        id: b
                            .get("id")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_string(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: name.to_string(),
                            arguments: input.to_string(),
                        },
                    });
                }
            }
            _ => {}
        }
    }
    let mut finish = v
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(finish_reason);
    if answered_in_json && finish == Some(FinishReason::ToolCalls) {
        finish = Some(FinishReason::Stop);
    }
    let mut tokens = Tokens::default();
    let usage = v.get("usage").map(|u| {
        tokens.update(u);
        tokens.usage()
    });
    Ok(ChatCompletion {
        id: v
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        object: "chat.completion".into(),
        created: now(),
        model: model.to_string(),
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: text,
                tool_calls: (!calls.is_empty()).then_some(calls),
                refusal: None,
                reasoning_content: reasoning,
            },
            finish_reason: finish,
            logprobs: None,
        }],
        usage,
        service_tier: None,
        system_fingerprint: None,
    })
}

#[derive(Debug, Clone, Copy)]
enum Block {
    Text,
    Thinking,
    Tool(u32),
    Json,
    Other,
}

/// The Messages API stream events → chat completion chunks.
#[derive(Debug)]
pub(crate) struct Events {
    chunks: Chunks,
    plan: Plan,
    provider_id: String,
    blocks: HashMap<u64, Block>,
    next_tool: u32,
    tokens: Tokens,
    answered_in_json: bool,
    stopped: bool,
}

impl Events {
    /// A translator for a stream answering `model`.
    pub(crate) fn new(model: &str, plan: Plan, provider_id: String) -> Self {
        Events {
            chunks: Chunks::new(model),
            plan,
            provider_id,
            blocks: HashMap::new(),
            next_tool: 0,
            tokens: Tokens::default(),
            answered_in_json: false,
            stopped: false,
        }
    }

    fn malformed(&self, detail: &str) -> Error {
        Error::upstream(
            &self.provider_id,
            502,
            format!(
                "provider '{}': malformed event in the upstream stream: {detail}",
                self.provider_id
            ),
        )
    }

    fn delta(&self, delta: ChunkDelta) -> Vec<ChatCompletionChunk> {
        vec![self.chunks.choice(0, delta, None)]
    }

    fn text(&self, text: &str) -> Vec<ChatCompletionChunk> {
        if text.is_empty() {
            return Vec::new();
        }
        self.delta(ChunkDelta {
            content: Some(text.to_string()),
            ..Default::default()
        })
    }

    fn reasoning(&self, text: &str) -> Vec<ChatCompletionChunk> {
        if text.is_empty() {
            return Vec::new();
        }
        self.delta(ChunkDelta {
            reasoning_content: Some(text.to_string()),
            ..Default::default()
        })
    }

    fn tool(&self, delta: ToolCallDelta) -> Vec<ChatCompletionChunk> {
        self.delta(ChunkDelta {
            tool_calls: Some(vec![delta]),
            ..Default::default()
        })
    }
}

fn s<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

impl StreamTranslator for Events {
    fn event(&mut self, v: Value) -> Result<Vec<ChatCompletionChunk>> {
        let Some(kind) = v.get("type").and_then(Value::as_str) else {
            return Err(self.malformed("an event without `type`"));
        };
        match kind {
            "message_start" => {
                self.chunks.id = s(&v, "/message/id").to_string();
                if let Some(u) = v.pointer("/message/usage") {
                    self.tokens.update(u);
                }
                Ok(self.delta(ChunkDelta {
                    role: Some("assistant".into()),
                    content: Some(String::new()),
                    ..Default::default()
                }))
            }
            "content_block_start" => {
                let index = v
                    .get("index")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| self.malformed("content_block_start without `index`"))?;
                let block = &v["content_block"];
                let (kind, out) = match block.get("type").and_then(Value::as_str) {
                    Some("text") => (Block::Text, self.text(s(block, "/text"))),
                    Some("thinking") => (Block::Thinking, self.reasoning(s(block, "/thinking"))),
                    Some("tool_use") => {
                        let name = s(block, "/name");
                        if self.plan.json_tool.as_deref() == Some(name) {
                            self.answered_in_json = true;
                            (Block::Json, Vec::new())
                        } else {
                            let i = self.next_tool;
                            self.next_tool += 1;
                            let out = self.tool(ToolCallDelta {
                                index: i,
                                id: Some(s(block, "/id").to_string()),
                                kind: Some("function".into()),
                                function: Some(FunctionCallDelta {
                                    name: Some(name.to_string()),
                                    arguments: Some(String::new()),
                                }),
                            });
                            (Block::Tool(i), out)
                        }
                    }
                    _ => (Block::Other, Vec::new()),
                };
                self.blocks.insert(index, kind);
                Ok(out)
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
                let block = self.blocks.get(&index).copied().unwrap_or(Block::Other);
                let delta = &v["delta"];
                Ok(match (delta.get("type").and_then(Value::as_str), block) {
                    (Some("text_delta"), _) => self.text(s(delta, "/text")),
                    (Some("thinking_delta"), _) => self.reasoning(s(delta, "/thinking")),
                    (Some("input_json_delta"), Block::Json) => self.text(s(delta, "/partial_json")),
                    (Some("input_json_delta"), Block::Tool(i)) => {
                        let part = s(delta, "/partial_json");
                        if part.is_empty() {
                            Vec::new()
                        } else {
                            self.tool(ToolCallDelta {
                                index: i,
                                id: None,
                                kind: None,
                                function: Some(FunctionCallDelta {
                                    name: None,
                                    arguments: Some(part.to_string()),
                                }),
                            })
                        }
                    }
                    _ => Vec::new(),
                })
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    self.tokens.update(u);
                }
                match v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    Some(reason) => {
                        let mut finish = finish_reason(reason);
                        if self.answered_in_json && finish == FinishReason::ToolCalls {
                            finish = FinishReason::Stop;
                        }
                        Ok(vec![self.chunks.choice(
                            0,
                            ChunkDelta::default(),
                            Some(finish),
                        )])
                    }
                    None => Ok(Vec::new()),
                }
            }
            "message_stop" => {
                self.stopped = true;
                Ok(vec![self.chunks.usage(self.tokens.usage())])
            }
            "error" => {
                let kind = s(&v, "/error/type");
                let message = s(&v, "/error/message");
                Err(Error::upstream(
                    &self.provider_id,
                    error_status(kind),
                    format!(
                        "provider '{}': upstream error in stream: {kind}: {message}",
                        self.provider_id
                    ),
                ))
            }
            // `ping`, `content_block_stop` and event types added later carry nothing for us.
            _ => Ok(Vec::new()),
        }
    }

    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>> {
        if self.stopped {
            Ok(Vec::new())
        } else {
            Err(Error::upstream(
                &self.provider_id,
                502,
                format!(
                    "provider '{}': the upstream stream ended before `message_stop`",
                    self.provider_id
                ),
            ))
        }
    }
}
