//! The Inference API in OpenAI's shape: chat completions (text and image parts, tools,
//! `response_format`, sampling, streaming), completions, embeddings and rerank.

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::context::RequestContext;
use crate::error::{Error, Result};

/// Message content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Text, image and file parts.
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The concatenated text of all text parts.
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(t) => t.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_string())
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

/// One part of a message's content, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// `{type: "text", text}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{type: "image_url", image_url: {url, detail?}}`.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// `{type: "file", file: {file_id?, file_data?, filename?}}`.
    File {
        /// The file.
        file: FileRef,
    },
}

/// An image by URL or `data:` URI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ImageUrl {
    /// `https://...` or `data:image/png;base64,...`.
    pub url: String,
    /// `auto`, `low` or `high`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A file given inline or by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FileRef {
    /// An uploaded file's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    /// Base64 file data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    /// The file name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
}

/// A chat message, tagged by `role`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum Message {
    /// System instructions.
    System {
        /// The instructions.
        content: MessageContent,
        /// Optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// Developer instructions (OpenAI's newer name for system).
    Developer {
        /// The instructions.
        content: MessageContent,
        /// Optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// A user turn.
    User {
        /// Text or parts.
        content: MessageContent,
        /// Optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// An assistant turn, possibly with tool calls.
    Assistant {
        /// The text (absent when only tool calls were made).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        content: Option<MessageContent>,
        /// Optional participant name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Tool calls the assistant made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tool_calls: Option<Vec<ToolCall>>,
    },
    /// A tool result.
    Tool {
        /// The result.
        content: MessageContent,
        /// The call this answers.
        tool_call_id: String,
    },
}

impl Message {
    /// A system message.
    pub fn system(text: impl Into<String>) -> Self {
        Message::System {
            content: MessageContent::Text(text.into()),
            name: None,
        }
    }

    /// A user message.
    pub fn user(content: impl Into<MessageContent>) -> Self {
        Message::User {
            content: content.into(),
            name: None,
        }
    }

    /// An assistant message with text.
    pub fn assistant(text: impl Into<String>) -> Self {
        Message::Assistant {
            content: Some(MessageContent::Text(text.into())),
            name: None,
            tool_calls: None,
        }
    }

    /// A tool result for `tool_call_id`.
    pub fn tool(tool_call_id: impl Into<String>, content: impl Into<MessageContent>) -> Self {
        Message::Tool {
            content: content.into(),
            tool_call_id: tool_call_id.into(),
        }
    }

    /// The role name.
    pub fn role(&self) -> &'static str {
        match self {
            Message::System { .. } => "system",
            Message::Developer { .. } => "developer",
            Message::User { .. } => "user",
            Message::Assistant { .. } => "assistant",
            Message::Tool { .. } => "tool",
        }
    }

    /// The message's content, if any.
    pub fn content(&self) -> Option<&MessageContent> {
        match self {
            Message::System { content, .. }
            | Message::Developer { content, .. }
            | Message::User { content, .. }
            | Message::Tool { content, .. } => Some(content),
            Message::Assistant { content, .. } => content.as_ref(),
        }
    }
}

impl From<&str> for Message {
    fn from(s: &str) -> Self {
        Message::user(s)
    }
}

/// A tool call made by the assistant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCall {
    /// The call id, echoed by the tool message.
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function and its JSON arguments.
    pub function: FunctionCall,
}

fn function_type() -> String {
    "function".to_string()
}

/// A function name and its arguments as a JSON string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunctionCall {
    /// The function name.
    pub name: String,
    /// The arguments, a JSON object as a string.
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// Must be `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

impl Tool {
    /// A function tool.
    pub fn function(
        name: impl Into<String>,
        description: impl Into<String>,
        parameters: Value,
    ) -> Self {
        Tool {
            kind: "function".into(),
            function: FunctionDefinition {
                name: name.into(),
                description: Some(description.into()),
                parameters: Some(parameters),
                strict: None,
            },
        }
    }
}

/// A function's name, description and JSON-schema parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionDefinition {
    /// The name (`[a-zA-Z0-9_-]{1,64}`).
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON schema of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: `none`, `auto`, `required` or a named function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(String),
    /// `{type: "function", function: {name}}`.
    Named(Value),
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// The schema of a `json_schema` response format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// What it describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Strict adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// The JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
}

/// `stop`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum StopSequences {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl StopSequences {
    /// The sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            StopSequences::One(s) => vec![s.clone()],
            StopSequences::Many(v) => v.clone(),
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StreamOptions {
    /// Send a final chunk with `usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
}

/// `POST /v1/chat/completions` body. Unknown keys are kept in `extra_body` and passed to
/// the provider (as Llama Stack does).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatCompletionRequest {
    /// The model identifier.
    pub model: String,
    /// The conversation (at least one message).
    pub messages: Vec<Message>,
    /// In [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Deprecated function-calling control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<Value>,
    /// Deprecated function list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<Value>>,
    /// Token id → bias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Map<String, Value>>,
    /// Return log probabilities of output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    /// Maximum tokens to generate (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u32>,
    /// Maximum tokens to generate (≥ 1; older name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Number of choices (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// Allow several tool calls in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// In [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Text, JSON object or JSON schema output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// Sampling seed for reproducible output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Stream chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// In [0, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Tool selection; requires `tools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// In [0, 20]; requires `logprobs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u32>,
    /// In [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Stable end-user id for safety systems (≤ 64 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    /// `auto`, `default`, `flex` or `priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// `none`, `minimal`, `low`, `medium`, `high` or `xhigh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    /// Prompt cache key (≤ 64 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    /// Provider-specific extra parameters (`top_k`, `min_p`, `repetition_penalty`, ...).
    #[serde(flatten)]
    pub extra_body: Map<String, Value>,
}

impl ChatCompletionRequest {
    /// A request for `model` with `messages`.
    pub fn new(model: impl Into<String>, messages: impl IntoIterator<Item = Message>) -> Self {
        ChatCompletionRequest {
            model: model.into(),
            messages: messages.into_iter().collect(),
            frequency_penalty: None,
            function_call: None,
            functions: None,
            logit_bias: None,
            logprobs: None,
            max_completion_tokens: None,
            max_tokens: None,
            n: None,
            parallel_tool_calls: None,
            presence_penalty: None,
            response_format: None,
            seed: None,
            stop: None,
            stream: None,
            stream_options: None,
            temperature: None,
            tool_choice: None,
            tools: None,
            top_logprobs: None,
            top_p: None,
            user: None,
            safety_identifier: None,
            service_tier: None,
            reasoning_effort: None,
            prompt_cache_key: None,
            extra_body: Map::new(),
        }
    }

    /// Sets `temperature`.
    pub fn with_temperature(mut self, t: f32) -> Self {
        self.temperature = Some(t);
        self
    }

    /// Sets `max_tokens`.
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = Some(n);
        self
    }

    /// Sets `seed`.
    pub fn with_seed(mut self, seed: i64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets `stop`.
    pub fn with_stop(mut self, stop: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.stop = Some(StopSequences::Many(
            stop.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Sets `tools`.
    pub fn with_tools(mut self, tools: Vec<Tool>) -> Self {
        self.tools = Some(tools);
        self
    }

    /// Sets `response_format`.
    pub fn with_response_format(mut self, format: ResponseFormat) -> Self {
        self.response_format = Some(format);
        self
    }

    /// Sets `stream`.
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = Some(stream);
        self
    }

    /// Whether a stream was asked for.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// The effective generation limit: `max_completion_tokens`, else `max_tokens`.
    pub fn max_output_tokens(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// Checks ranges and combinations as Llama Stack and OpenAI do; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.model.is_empty() {
            return Err(Error::invalid_param("model", "''", "Must not be empty"));
        }
        if self.messages.is_empty() {
            return Err(Error::invalid_param(
                "messages",
                "[]",
                "At least one message is required",
            ));
        }
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_min("max_tokens", self.max_tokens, 1)?;
        check_min("max_completion_tokens", self.max_completion_tokens, 1)?;
        check_min("n", self.n, 1)?;
        if let Some(k) = self.top_logprobs {
            if k > 20 {
                return Err(Error::invalid_param(
                    "top_logprobs",
                    k,
                    "Must be between 0 and 20",
                ));
            }
        }
        if self.tool_choice.is_some() && self.tools.as_ref().is_none_or(|t| t.is_empty()) {
            return Err(Error::invalid_param(
                "tool_choice",
                "given",
                "'tool_choice' is only allowed when 'tools' are specified",
            ));
        }
        if let Some(ToolChoice::Mode(mode)) = &self.tool_choice {
            if !matches!(mode.as_str(), "none" | "auto" | "required") {
                return Err(Error::invalid_param(
                    "tool_choice",
                    mode,
                    "Must be 'none', 'auto', 'required' or a named function",
                ));
            }
        }
        for (i, tool) in self.tools.iter().flatten().enumerate() {
            if tool.kind != "function" {
                return Err(Error::invalid_param(
                    &format!("tools[{i}].type"),
                    &tool.kind,
                    "Must be 'function'",
                ));
            }
            let name = &tool.function.name;
            let valid = !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(Error::invalid_param(
                    &format!("tools[{i}].function.name"),
                    format!("'{name}'"),
                    "Must match ^[a-zA-Z0-9_-]{1,64}$",
                ));
            }
        }
        for (field, value) in [
            ("safety_identifier", &self.safety_identifier),
            ("prompt_cache_key", &self.prompt_cache_key),
        ] {
            if let Some(v) = value {
                if v.chars().count() > 64 {
                    return Err(Error::invalid_param(
                        field,
                        format!("'{v}'"),
                        "At most 64 characters",
                    ));
                }
            }
        }
        if let Some(tier) = &self.service_tier {
            if !matches!(tier.as_str(), "auto" | "default" | "flex" | "priority") {
                return Err(Error::invalid_param(
                    "service_tier",
                    tier,
                    "Must be one of auto, default, flex, priority",
                ));
            }
        }
        if let Some(effort) = &self.reasoning_effort {
            if !matches!(
                effort.as_str(),
                "none" | "minimal" | "low" | "medium" | "high" | "xhigh"
            ) {
                return Err(Error::invalid_param(
                    "reasoning_effort",
                    effort,
                    "Must be one of none, minimal, low, medium, high, xhigh",
                ));
            }
        }
        Ok(())
    }
}

fn check_range(field: &str, value: Option<f32>, min: f32, max: f32) -> Result<()> {
    match value {
        Some(v) if !(min..=max).contains(&v) => Err(Error::invalid_param(
            field,
            v,
            &format!("Must be between {min} and {max}"),
        )),
        _ => Ok(()),
    }
}

fn check_min(field: &str, value: Option<u32>, min: u32) -> Result<()> {
    match value {
        Some(v) if v < min => Err(Error::invalid_param(
            field,
            v,
            &format!("Must be at least {min}"),
        )),
        _ => Ok(()),
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// A stop sequence or end of turn.
    Stop,
    /// The token limit.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Filtered by a safety system.
    ContentFilter,
    /// Deprecated function call.
    FunctionCall,
}

/// Token counts of a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: u32,
    /// Tokens generated.
    pub completion_tokens: u32,
    /// Sum of both.
    pub total_tokens: u32,
    /// Prompt token details (cached tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
    /// Completion token details (reasoning tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<CompletionTokensDetails>,
}

impl Usage {
    /// Usage of `prompt` and `completion` tokens.
    pub fn new(prompt: u32, completion: u32) -> Self {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: None,
            completion_tokens_details: None,
        }
    }
}

/// `prompt_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens served from a cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_tokens: Option<u32>,
}

/// `completion_tokens_details`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompletionTokensDetails {
    /// Tokens spent on reasoning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u32>,
}

/// Log probability of one token, with the alternatives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TokenLogprob {
    /// The token text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
    /// The most likely alternatives.
    #[serde(default)]
    pub top_logprobs: Vec<TopLogprob>,
}

/// An alternative token and its log probability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TopLogprob {
    /// The token text.
    pub token: String,
    /// Its log probability.
    pub logprob: f32,
    /// Its UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Vec<u8>>,
}

/// `logprobs` of a choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChoiceLogprobs {
    /// Per output token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<TokenLogprob>>,
}

/// The assistant message of a completion choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AssistantMessage {
    /// Always `"assistant"`.
    pub role: String,
    /// The text.
    #[serde(default)]
    pub content: Option<String>,
    /// Tool calls (never an empty list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A refusal message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Reasoning text (a Llama Stack extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

impl AssistantMessage {
    /// An assistant message with text.
    pub fn text(content: impl Into<String>) -> Self {
        AssistantMessage {
            role: "assistant".into(),
            content: Some(content.into()),
            tool_calls: None,
            refusal: None,
            reasoning_content: None,
        }
    }
}

/// One choice of a chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatChoice {
    /// Index of the choice.
    pub index: u32,
    /// The generated message.
    pub message: AssistantMessage,
    /// Why generation stopped.
    pub finish_reason: Option<FinishReason>,
    /// Log probabilities, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// A chat completion (`object: "chat.completion"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatCompletion {
    /// Completion id.
    pub id: String,
    /// Always `"chat.completion"`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model id the client asked for.
    pub model: String,
    /// The choices.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The service tier used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// A tool-call fragment in a stream chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ToolCallDelta {
    /// Which tool call this fragment belongs to.
    pub index: u32,
    /// The call id (first fragment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `"function"` (first fragment only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name and argument fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// A fragment of a function call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FunctionCallDelta {
    /// The name (first fragment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A piece of the JSON arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// The `delta` of a stream chunk choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkDelta {
    /// `"assistant"` on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// A piece of text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool-call fragments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    /// A piece of a refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// A piece of reasoning text (Llama Stack extension).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
}

/// One choice of a stream chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChunkChoice {
    /// Index of the choice.
    pub index: u32,
    /// What this chunk adds.
    pub delta: ChunkDelta,
    /// Set on the last chunk of the choice.
    #[serde(default)]
    pub finish_reason: Option<FinishReason>,
    /// Log probabilities of this chunk's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<ChoiceLogprobs>,
}

/// A chat completion stream chunk (`object: "chat.completion.chunk"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatCompletionChunk {
    /// Completion id (the same on every chunk).
    pub id: String,
    /// Always `"chat.completion.chunk"`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model id the client asked for.
    pub model: String,
    /// Choices (empty on the final usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Token counts (final chunk, when asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The service tier used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// `prompt` of a completion request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum CompletionPrompt {
    /// One prompt.
    Text(String),
    /// Several prompts.
    Texts(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<i64>),
    /// Several prompts as token ids.
    TokenLists(Vec<Vec<i64>>),
}

impl From<&str> for CompletionPrompt {
    fn from(s: &str) -> Self {
        CompletionPrompt::Text(s.to_string())
    }
}

/// `POST /v1/completions` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompletionRequest {
    /// The model identifier.
    pub model: String,
    /// The prompt.
    pub prompt: CompletionPrompt,
    /// Server-side candidates (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_of: Option<u32>,
    /// Echo the prompt in the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
    /// In [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f32>,
    /// Token id → bias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Map<String, Value>>,
    /// Log probabilities (a bool, or OpenAI's count of alternatives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    /// Maximum tokens to generate (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Number of choices (≥ 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u32>,
    /// In [-2, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f32>,
    /// Sampling seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<StopSequences>,
    /// Stream chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Text after the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// In [0, 2].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// In [0, 1].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Provider-specific extra parameters.
    #[serde(flatten)]
    pub extra_body: Map<String, Value>,
}

impl CompletionRequest {
    /// A request for `model` with `prompt`.
    pub fn new(model: impl Into<String>, prompt: impl Into<CompletionPrompt>) -> Self {
        CompletionRequest {
            model: model.into(),
            prompt: prompt.into(),
            best_of: None,
            echo: None,
            frequency_penalty: None,
            logit_bias: None,
            logprobs: None,
            max_tokens: None,
            n: None,
            presence_penalty: None,
            seed: None,
            stop: None,
            stream: None,
            stream_options: None,
            suffix: None,
            temperature: None,
            top_p: None,
            user: None,
            extra_body: Map::new(),
        }
    }

    /// Whether a stream was asked for.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Checks ranges; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.model.is_empty() {
            return Err(Error::invalid_param("model", "''", "Must not be empty"));
        }
        check_range("temperature", self.temperature, 0.0, 2.0)?;
        check_range("top_p", self.top_p, 0.0, 1.0)?;
        check_range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        check_range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        check_min("max_tokens", self.max_tokens, 1)?;
        check_min("n", self.n, 1)?;
        check_min("best_of", self.best_of, 1)?;
        let empty = match &self.prompt {
            CompletionPrompt::Texts(v) => v.is_empty(),
            CompletionPrompt::Tokens(v) => v.is_empty(),
            CompletionPrompt::TokenLists(v) => v.is_empty(),
            CompletionPrompt::Text(_) => false,
        };
        if empty {
            return Err(Error::invalid_param(
                "prompt",
                "[]",
                "Must not be an empty list",
            ));
        }
        Ok(())
    }
}

/// One choice of a completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CompletionChoice {
    /// The generated text.
    pub text: String,
    /// Index of the choice.
    pub index: u32,
    /// Why generation stopped (null on intermediate stream chunks).
    pub finish_reason: Option<FinishReason>,
    /// Log probabilities, if asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
}

/// A completion (`object: "text_completion"`), also the unit of a completion stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Completion {
    /// Completion id.
    pub id: String,
    /// Always `"text_completion"`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model id the client asked for.
    pub model: String,
    /// The choices.
    pub choices: Vec<CompletionChoice>,
    /// Token counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Backend configuration fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_fingerprint: Option<String>,
}

/// `input` of an embeddings request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts (1..=2048).
    Texts(Vec<String>),
    /// One text as token ids.
    Tokens(Vec<i64>),
    /// Several texts as token ids.
    TokenLists(Vec<Vec<i64>>),
}

impl EmbeddingInput {
    /// How many inputs.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(v) => v.len(),
            EmbeddingInput::TokenLists(v) => v.len(),
        }
    }

    /// Whether there is no input.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl From<&str> for EmbeddingInput {
    fn from(s: &str) -> Self {
        EmbeddingInput::Text(s.to_string())
    }
}

impl From<Vec<String>> for EmbeddingInput {
    fn from(v: Vec<String>) -> Self {
        EmbeddingInput::Texts(v)
    }
}

/// `encoding_format`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A list of floats.
    #[default]
    Float,
    /// Little-endian f32 bytes, base64.
    Base64,
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmbeddingsRequest {
    /// The model identifier.
    pub model: String,
    /// The input texts or token ids.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Truncate vectors to this many dimensions (≥ 1); `null` is rejected.
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub dimensions: Option<u32>,
    /// End-user id; `null` is rejected.
    #[serde(
        default,
        deserialize_with = "super::non_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub user: Option<String>,
    /// Provider-specific extra parameters.
    #[serde(flatten)]
    pub extra_body: Map<String, Value>,
}

impl EmbeddingsRequest {
    /// A request to embed `input` with `model`.
    pub fn new(model: impl Into<String>, input: impl Into<EmbeddingInput>) -> Self {
        EmbeddingsRequest {
            model: model.into(),
            input: input.into(),
            encoding_format: None,
            dimensions: None,
            user: None,
            extra_body: Map::new(),
        }
    }

    /// Checks sizes; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.model.is_empty() {
            return Err(Error::invalid_param("model", "''", "Must not be empty"));
        }
        let n = self.input.len();
        if n == 0 || n > 2048 {
            return Err(Error::invalid_param(
                "input",
                format!("{n} items"),
                "Must hold between 1 and 2048 items",
            ));
        }
        if let EmbeddingInput::TokenLists(lists) = &self.input {
            if lists.iter().any(Vec::is_empty) {
                return Err(Error::invalid_param(
                    "input",
                    "[]",
                    "Token lists must not be empty",
                ));
            }
        }
        check_min("dimensions", self.dimensions, 1)?;
        Ok(())
    }
}

/// An embedding vector as floats or base64.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum EmbeddingVector {
    /// Floats.
    Float(Vec<f32>),
    /// Base64 of little-endian f32.
    Base64(String),
}

/// One embedding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Embedding {
    /// Always `"embedding"`.
    pub object: String,
    /// The vector.
    pub embedding: EmbeddingVector,
    /// Index of the input.
    pub index: u32,
}

/// Token counts of an embeddings request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmbeddingsUsage {
    /// Tokens in the input.
    pub prompt_tokens: u32,
    /// Same as `prompt_tokens`.
    pub total_tokens: u32,
}

/// `POST /v1/embeddings` response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EmbeddingsResponse {
    /// Always `"list"`.
    pub object: String,
    /// One embedding per input, in order.
    pub data: Vec<Embedding>,
    /// The model id the client asked for.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingsUsage,
}

/// A rerank query or item: text, or an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum RerankItem {
    /// Plain text.
    Text(String),
    /// A `text` or `image_url` content part.
    Part(ContentPart),
}

/// `POST /v1alpha/inference/rerank` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RerankRequest {
    /// A `rerank` model.
    pub model: String,
    /// The query.
    pub query: RerankItem,
    /// The items to rank (≥ 1).
    pub items: Vec<RerankItem>,
    /// Return at most this many (≥ 1; null = all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_num_results: Option<u32>,
}

impl RerankRequest {
    /// Checks sizes; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.items.is_empty() {
            return Err(Error::invalid_param(
                "items",
                "[]",
                "At least one item is required",
            ));
        }
        check_min("max_num_results", self.max_num_results, 1)
    }
}

/// One ranked item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RerankData {
    /// Index into `items`.
    pub index: u32,
    /// Higher is more relevant.
    pub relevance_score: f32,
}

/// Rerank response, sorted by score, highest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RerankResponse {
    /// Ranked items.
    pub data: Vec<RerankData>,
}

/// Query of `GET /v1/chat/completions` (stored chat completions).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListChatCompletionsRequest {
    /// Continue after this completion id (from a previous page's `last_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Page size (≥ 1, default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only completions of this model id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// By creation time: `desc` (default) or `asc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<crate::storage::Order>,
}

impl ListChatCompletionsRequest {
    /// The default page size.
    pub const DEFAULT_LIMIT: u32 = 20;

    /// The page size to use, checked (`limit` ≥ 1).
    pub fn checked_limit(&self) -> Result<u32> {
        match self.limit {
            None => Ok(Self::DEFAULT_LIMIT),
            Some(0) => Err(Error::invalid_request("limit: must be at least 1 (got 0)")
                .with_context("param", "limit")),
            Some(n) => Ok(n),
        }
    }
}

/// A stored chat completion with the messages it answered
/// (Llama Stack's `OpenAICompletionWithInputMessages`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StoredChatCompletion {
    /// The completion as returned to the caller.
    #[serde(flatten)]
    pub completion: ChatCompletion,
    /// The request's messages.
    pub input_messages: Vec<Message>,
}

/// A page of stored chat completions (`object: "list"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChatCompletionList {
    /// Always `"list"`.
    pub object: String,
    /// The completions of this page.
    pub data: Vec<StoredChatCompletion>,
    /// Whether more completions follow.
    pub has_more: bool,
    /// Id of the first completion of the page (`""` when empty).
    pub first_id: String,
    /// Id of the last completion of the page (`""` when empty).
    pub last_id: String,
}

impl ChatCompletionList {
    /// A page over `data`.
    pub fn new(data: Vec<StoredChatCompletion>, has_more: bool) -> Self {
        let id = |c: Option<&StoredChatCompletion>| c.map(|c| c.completion.id.clone());
        ChatCompletionList {
            object: "list".into(),
            first_id: id(data.first()).unwrap_or_default(),
            last_id: id(data.last()).unwrap_or_default(),
            data,
            has_more,
        }
    }
}

/// Builds the [`ChatCompletion`] a chat stream amounts to, chunk by chunk: text, refusal and
/// reasoning concatenated per choice, tool-call fragments joined by their index, the last
/// finish reason, logprobs and usage kept.
#[derive(Debug, Clone, Default)]
pub struct ChatCompletionAccumulator {
    head: Option<ChatCompletionChunk>,
    choices: std::collections::BTreeMap<u32, ChoiceParts>,
    usage: Option<Usage>,
}

#[derive(Debug, Clone, Default)]
struct ChoiceParts {
    content: Option<String>,
    refusal: Option<String>,
    reasoning: Option<String>,
    tool_calls: std::collections::BTreeMap<u32, ToolCall>,
    finish_reason: Option<FinishReason>,
    logprobs: Option<ChoiceLogprobs>,
}

fn append(slot: &mut Option<String>, piece: &Option<String>) {
    if let Some(piece) = piece {
        slot.get_or_insert_with(String::new).push_str(piece);
    }
}

impl ChatCompletionAccumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one chunk.
    pub fn push(&mut self, chunk: &ChatCompletionChunk) {
        if self.head.is_none() {
            let mut head = chunk.clone();
            head.choices.clear();
            head.usage = None;
            self.head = Some(head);
        }
        if chunk.usage.is_some() {
            self.usage.clone_from(&chunk.usage);
        }
        for choice in &chunk.choices {
            let parts = self.choices.entry(choice.index).or_default();
            append(&mut parts.content, &choice.delta.content);
            append(&mut parts.refusal, &choice.delta.refusal);
            append(&mut parts.reasoning, &choice.delta.reasoning_content);
            for delta in choice.delta.tool_calls.iter().flatten() {
                let call = parts
                    .tool_calls
                    .entry(delta.index)
                    .or_insert_with(|| ToolCall {
                        id: String::new(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: String::new(),
                            arguments: String::new(),
                        },
                    });
                if let Some(id) = &delta.id {
                    call.id.clone_from(id);
                }
                if let Some(f) = &delta.function {
                    if let Some(name) = &f.name {
                        call.function.name.push_str(name);
                    }
                    if let Some(args) = &f.arguments {
                        call.function.arguments.push_str(args);
                    }
                }
            }
            if choice.finish_reason.is_some() {
                parts.finish_reason = choice.finish_reason;
            }
            if let Some(lp) = &choice.logprobs {
                let all = parts.logprobs.get_or_insert_with(ChoiceLogprobs::default);
                if let Some(tokens) = &lp.content {
                    all.content
                        .get_or_insert_with(Vec::new)
                        .extend(tokens.iter().cloned());
                }
            }
        }
    }

    /// The completion, or `None` if no chunk was pushed.
    pub fn finish(self) -> Option<ChatCompletion> {
        let head = self.head?;
        let choices = self
            .choices
            .into_iter()
            .map(|(index, parts)| {
                let tool_calls: Vec<ToolCall> = parts.tool_calls.into_values().collect();
                ChatChoice {
                    index,
                    message: AssistantMessage {
                        role: "assistant".into(),
                        content: parts.content,
                        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
                        refusal: parts.refusal,
                        reasoning_content: parts.reasoning,
                    },
                    finish_reason: parts.finish_reason,
                    logprobs: parts.logprobs,
                }
            })
            .collect();
        Some(ChatCompletion {
            id: head.id,
            object: "chat.completion".into(),
            created: head.created,
            model: head.model,
            choices,
            usage: self.usage,
            service_tier: head.service_tier,
            system_fingerprint: head.system_fingerprint,
        })
    }
}

/// A stream of chat completion chunks.
pub type ChatCompletionStream = BoxStream<'static, Result<ChatCompletionChunk>>;
/// A stream of completion chunks.
pub type CompletionStream = BoxStream<'static, Result<Completion>>;

/// The Inference API. Streaming methods return the stream once the request is accepted;
/// errors before the first chunk are returned directly.
#[async_trait]
pub trait Inference: Send + Sync {
    /// A chat completion (the request's `stream` flag is ignored).
    async fn chat_completion(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletion>;
    /// A streamed chat completion.
    async fn chat_completion_stream(
        &self,
        ctx: &RequestContext,
        req: ChatCompletionRequest,
    ) -> Result<ChatCompletionStream>;
    /// A text completion.
    async fn completion(&self, ctx: &RequestContext, req: CompletionRequest) -> Result<Completion> {
        let _ = (ctx, req);
        Err(Error::unsupported(
            "completions are not supported by this provider",
        ))
    }
    /// A streamed text completion.
    async fn completion_stream(
        &self,
        ctx: &RequestContext,
        req: CompletionRequest,
    ) -> Result<CompletionStream> {
        let _ = (ctx, req);
        Err(Error::unsupported(
            "streaming completions are not supported by this provider",
        ))
    }
    /// Embeddings of the inputs.
    async fn embeddings(
        &self,
        ctx: &RequestContext,
        req: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse> {
        let _ = (ctx, req);
        Err(Error::unsupported(
            "embeddings are not supported by this provider",
        ))
    }
    /// Items ranked by relevance to the query.
    async fn rerank(&self, ctx: &RequestContext, req: RerankRequest) -> Result<RerankResponse> {
        let _ = (ctx, req);
        Err(Error::unsupported(
            "rerank is not supported by this provider",
        ))
    }
    /// A page of the stored chat completions the caller may read.
    async fn list_chat_completions(
        &self,
        ctx: &RequestContext,
        req: ListChatCompletionsRequest,
    ) -> Result<ChatCompletionList> {
        let _ = (ctx, req);
        Err(Error::unsupported(
            "stored chat completions need an inference store (storage.stores.inference)",
        ))
    }
    /// One stored chat completion with its input messages.
    async fn get_chat_completion(
        &self,
        ctx: &RequestContext,
        completion_id: &str,
    ) -> Result<StoredChatCompletion> {
        let _ = (ctx, completion_id);
        Err(Error::unsupported(
            "stored chat completions need an inference store (storage.stores.inference)",
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chat_request_round_trips_with_extras() {
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                    "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "42"}
            ],
            "temperature": 0.5,
            "top_k": 40
        });
        let req: ChatCompletionRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra_body.get("top_k"), Some(&json!(40)));
        assert_eq!(req.messages[1].content().unwrap().text(), "hi");
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
        req.validate().unwrap();
    }

    #[test]
    fn validation_names_the_field() {
        let check = |req: ChatCompletionRequest, field: &str| {
            let err = req.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
            assert!(err.message().contains(field), "{err} should name {field}");
        };
        let base = ChatCompletionRequest::new("m", [Message::user("hi")]);
        check(base.clone().with_temperature(2.5), "temperature");
        check(ChatCompletionRequest::new("m", []), "messages");
        let mut r = base.clone();
        r.tool_choice = Some(ToolChoice::Mode("auto".into()));
        check(r, "tool_choice");
        let mut r = base.clone();
        r.top_p = Some(-0.1);
        check(r, "top_p");
        check(base.clone().with_max_tokens(0), "max_tokens");
    }

    #[test]
    fn embeddings_reject_explicit_null_dimensions() {
        let err = serde_json::from_value::<EmbeddingsRequest>(json!({
            "model": "m", "input": "x", "dimensions": null
        }));
        assert!(err.is_err());
        let ok: EmbeddingsRequest =
            serde_json::from_value(json!({"model": "m", "input": ["a", "b"], "dimensions": 8}))
                .unwrap();
        assert_eq!(ok.dimensions, Some(8));
        assert_eq!(ok.input.len(), 2);
    }
}
