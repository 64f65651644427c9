//! OpenAI-shaped requests to Gemini `GenerateContentRequest` bodies, and
//! `GenerateContentResponse`s (whole or streamed) back to chat completions and chunks.

use std::collections::{BTreeMap, HashMap};

use llama_stack_core::api::inference::{
    AssistantMessage, ChatChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChunkDelta, CompletionTokensDetails, ContentPart, FinishReason, FunctionCall,
    FunctionCallDelta, Message, MessageContent, PromptTokensDetails, ResponseFormat, ToolCall,
    ToolCallDelta, ToolChoice, Usage,
};
use llama_stack_core::{Error, Result};
use serde_json::{json, Map, Value};

use crate::inference::remote::native::{
    data_url, now, num, tool_arguments, Chunks, StreamTranslator,
};

/// URL prefixes Gemini reads by itself (uploaded files, Cloud Storage); other URLs it
/// cannot fetch.
const FETCHABLE: &[&str] = &["https://generativelanguage.googleapis.com/", "gs://"];

fn guess_mime(url: &str) -> Option<&'static str> {
    let path = url
        .split(['?', '#'])
        .next()
        .unwrap_or(url)
        .to_ascii_lowercase();
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "gif" => "image/gif",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

fn url_part(url: &str, field: &str) -> Result<Value> {
    if let Some(d) = data_url(url, field)? {
        return Ok(json!({"inlineData": {"mimeType": d.mime, "data": d.data}}));
    }
    if FETCHABLE.iter().any(|p| url.starts_with(p)) {
        let mut file = Map::new();
        if let Some(mime) = guess_mime(url) {
            file.insert("mimeType".into(), json!(mime));
        }
        file.insert("fileUri".into(), json!(url));
        return Ok(json!({ "fileData": file }));
    }
    Err(Error::invalid_request(format!(
        "{field}: remote::gemini cannot fetch '{url}': send the image inline as a data: URL (data:image/png;base64,...), or as a Gemini Files API URI (https://generativelanguage.googleapis.com/...) or gs:// URI"
    ))
    .with_context("param", field))
}

fn parts(content: &MessageContent, field: &str) -> Result<Vec<Value>> {
    match content {
        MessageContent::Text(t) => Ok(vec![json!({ "text": t })]),
        MessageContent::Parts(ps) => ps
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let f = format!("{field}[{i}]");
                match p {
                    ContentPart::Text { text } => Ok(json!({ "text": text })),
                    ContentPart::ImageUrl { image_url } => url_part(&image_url.url, &f),
                    ContentPart::File { file } => match &file.file_data {
                        Some(data) => match data_url(data, &format!("{f}.file.file_data"))? {
                            Some(d) => Ok(json!({"inlineData": {"mimeType": d.mime, "data": d.data}})),
                            None => Err(Error::invalid_request(format!(
                                "{f}.file.file_data: must be a data: URL (data:<mime type>;base64,...)"
                            ))),
                        },
                        None => Err(Error::invalid_request(format!(
                            "{f}.file: remote::gemini cannot resolve file ids; send file_data as a data: URL"
                        ))),
                    },
                }
            })
            .collect(),
    }
}

fn push(contents: &mut Vec<Value>, role: &str, mut new: Vec<Value>) {
    if new.is_empty() {
        return;
    }
    if let Some(last) = contents.last_mut() {
        if last["role"] == role {
            if let Some(prev) = last["parts"].as_array_mut() {
                prev.append(&mut new);
                return;
            }
        }
    }
    contents.push(json!({"role": role, "parts": new}));
}

/// A tool result as a `functionResponse.response` object: a JSON object result as is,
/// anything else under `result`.
fn tool_response(content: &MessageContent) -> Value {
    let text = content.text();
    match serde_json::from_str::<Value>(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(v) => json!({ "result": v }),
        Err(_) => json!({ "result": text }),
    }
}

/// The `GenerateContentRequest` body for `req`.
pub(crate) fn request(req: &ChatCompletionRequest) -> Result<Value> {
    if req.logprobs == Some(true) {
        return Err(Error::unsupported(
            "logprobs: not translated for Gemini's generateContent (remote::gemini)",
        )
        .with_context("param", "logprobs"));
    }
    let mut system = Vec::new();
    let mut contents = Vec::new();
    let mut call_names: HashMap<&str, &str> = HashMap::new();
    for (i, m) in req.messages.iter().enumerate() {
        let field = format!("messages[{i}].content");
        match m {
            Message::System { content, .. } | Message::Developer { content, .. } => {
                let text = content.text();
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
            }
            Message::User { content, .. } => push(&mut contents, "user", parts(content, &field)?),
            Message::Assistant {
                content,
                tool_calls,
                ..
            } => {
                let mut out: Vec<Value> = match content {
                    Some(c) => parts(c, &field)?
                        .into_iter()
                        .filter(|p| p.get("text").is_none_or(|t| t != ""))
                        .collect(),
                    None => Vec::new(),
                };
                for (j, call) in tool_calls.iter().flatten().enumerate() {
                    let args = tool_arguments(
                        &call.function.arguments,
                        &format!("messages[{i}].tool_calls[{j}].function.arguments"),
                    )?;
                    call_names.insert(&call.id, &call.function.name);
                    out.push(json!({"functionCall": {"name": call.function.name, "args": args}}));
                }
                push(&mut contents, "model", out);
            }
            Message::Tool {
                content,
                tool_call_id,
            } => {
                let name = call_names.get(tool_call_id.as_str()).ok_or_else(|| {
                    Error::invalid_param(
                        &format!("messages[{i}].tool_call_id"),
                        format!("'{tool_call_id}'"),
                        "Gemini needs the function's name: the id must match a tool call of an earlier assistant message",
                    )
                })?;
                push(
                    &mut contents,
                    "user",
                    vec![
                        json!({"functionResponse": {"name": name, "response": tool_response(content)}}),
                    ],
                );
            }
        }
    }
    if contents.is_empty() {
        return Err(Error::invalid_param(
            "messages",
            "only system messages",
            "remote::gemini needs at least one user or assistant message",
        ));
    }

    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }

    let mut gen = Map::new();
    if let Some(t) = req.temperature {
        gen.insert("temperature".into(), num(t));
    }
    if let Some(p) = req.top_p {
        gen.insert("topP".into(), num(p));
    }
    if let Some(n) = req.max_output_tokens() {
        gen.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(stop) = &req.stop {
        gen.insert("stopSequences".into(), json!(stop.to_vec()));
    }
    if let Some(n) = req.n {
        gen.insert("candidateCount".into(), json!(n));
    }
    if let Some(seed) = req.seed {
        gen.insert("seed".into(), json!(seed));
    }
    if let Some(p) = req.presence_penalty {
        gen.insert("presencePenalty".into(), num(p));
    }
    if let Some(p) = req.frequency_penalty {
        gen.insert("frequencyPenalty".into(), num(p));
    }
    match &req.response_format {
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            gen.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = &json_schema.schema {
                gen.insert("responseJsonSchema".into(), schema.clone());
            }
        }
        Some(ResponseFormat::JsonObject) => {
            gen.insert("responseMimeType".into(), json!("application/json"));
        }
        Some(ResponseFormat::Text) | None => {}
    }
    if req.reasoning_effort.as_deref().is_some_and(|e| e != "none") {
        gen.insert("thinkingConfig".into(), json!({"includeThoughts": true}));
    }

    if let Some(tools) = req.tools.as_ref().filter(|t| !t.is_empty()) {
        let decls: Vec<Value> = tools
            .iter()
            .map(|t| {
                let mut d = Map::new();
                d.insert("name".into(), json!(t.function.name));
                if let Some(desc) = &t.function.description {
                    d.insert("description".into(), json!(desc));
                }
                if let Some(p) = &t.function.parameters {
                    d.insert("parametersJsonSchema".into(), p.clone());
                }
                Value::Object(d)
            })
            .collect();
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
        let config = match &req.tool_choice {
            None => None,
            Some(ToolChoice::Mode(m)) => Some(match m.as_str() {
                "none" => json!({"mode": "NONE"}),
                "required" => json!({"mode": "ANY"}),
                _ => json!({"mode": "AUTO"}),
            }),
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
                Some(json!({"mode": "ANY", "allowedFunctionNames": [name]}))
            }
        };
        if let Some(c) = config {
            body.insert("toolConfig".into(), json!({ "functionCallingConfig": c }));
        }
    }

    for (k, v) in &req.extra_body {
        match k.as_str() {
            "top_k" | "topK" => {
                gen.insert("topK".into(), v.clone());
            }
            "generation_config" | "generationConfig" => {
                if let Value::Object(m) = v {
                    gen.extend(m.clone());
                }
            }
            "thinking_config" | "thinkingConfig" => {
                gen.insert("thinkingConfig".into(), v.clone());
            }
            "safety_settings" | "safetySettings" => {
                body.insert("safetySettings".into(), v.clone());
            }
            "cached_content" | "cachedContent" => {
                body.insert("cachedContent".into(), v.clone());
            }
            _ => {
                body.insert(k.clone(), v.clone());
            }
        }
    }
    if !gen.is_empty() {
        body.insert("generationConfig".into(), Value::Object(gen));
    }
    Ok(Value::Object(body))
}

/// `finishReason` → finish reason (`calls`: the candidate called functions).
pub(crate) fn finish_reason(reason: &str, calls: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
        | "LANGUAGE" => FinishReason::ContentFilter,
        _ if calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

/// `usageMetadata` → usage: completion tokens include thinking tokens (as OpenAI counts
/// reasoning), `cached_tokens` = `cachedContentTokenCount`.
pub(crate) fn usage(meta: &Value) -> Usage {
    let get = |k: &str| {
        meta.get(k)
            .and_then(Value::as_u64)
            .map(|v| u32::try_from(v).unwrap_or(u32::MAX))
    };
    let thoughts = get("thoughtsTokenCount");
    let mut u = Usage::new(
        get("promptTokenCount").unwrap_or(0),
        get("candidatesTokenCount")
            .unwrap_or(0)
            .saturating_add(thoughts.unwrap_or(0)),
    );
    u.prompt_tokens_details = get("cachedContentTokenCount").map(|c| PromptTokensDetails {
        cached_tokens: Some(c),
    });
    u.completion_tokens_details = thoughts.map(|t| CompletionTokensDetails {
        reasoning_tokens: Some(t),
    });
    u
}

/// A call id: Gemini's own when it sends one, else a fresh `call_<hex>`.
fn call_id(call: &Value) -> String {
    call.get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .unwrap_or_else(|| format!("call_{:016x}", fastrand::u64(..)))
}

fn prompt_blocked(v: &Value) -> bool {
    v.pointer("/promptFeedback/blockReason").is_some()
        && v.get("candidates")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty)
}

/// A `GenerateContentResponse` → a chat completion; `Err` says what was malformed.
pub(crate) fn response(v: &Value, model: &str) -> std::result::Result<ChatCompletion, String> {
    let mut choices = Vec::new();
    if prompt_blocked(v) {
        choices.push(ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant".into(),
                content: None,
                tool_calls: None,
                refusal: None,
                reasoning_content: None,
            },
            finish_reason: Some(FinishReason::ContentFilter),
            logprobs: None,
        });
    } else {
        let candidates = v
            .get("candidates")
            .and_then(Value::as_array)
            .ok_or("the response has no `candidates`")?;
        for (pos, c) in candidates.iter().enumerate() {
            let index = c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos as u32, |i| i as u32);
            let (mut text, mut reasoning, mut calls) = (None::<String>, None::<String>, Vec::new());
            for p in c
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(call) = p.get("functionCall") {
                    calls.push(ToolCall {
                        id: call_id(call),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: call
                                .get("name")
                                .and_then(Value::as_str)
                                .unwrap_or("")
                                .to_string(),
                            arguments: call.get("args").cloned().unwrap_or(json!({})).to_string(),
                        },
                    });
                } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                    let slot = if p.get("thought") == Some(&Value::Bool(true)) {
                        &mut reasoning
                    } else {
                        &mut text
                    };
                    slot.get_or_insert_with(String::new).push_str(t);
                }
            }
            let finish = c
                .get("finishReason")
                .and_then(Value::as_str)
                .map(|r| finish_reason(r, !calls.is_empty()));
            choices.push(ChatChoice {
                index,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: text,
                    tool_calls: (!calls.is_empty()).then_some(calls),
                    refusal: None,
                    reasoning_content: reasoning,
                },
                finish_reason: finish,
                logprobs: None,
            });
        }
    }
    Ok(ChatCompletion {
        id: v
            .get("responseId")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
        object: "chat.completion".into(),
        created: now(),
        model: model.to_string(),
        choices,
        usage: v.get("usageMetadata").map(usage),
        service_tier: None,
        system_fingerprint: None,
    })
}

#[derive(Debug, Default)]
struct CandidateState {
    started: bool,
    tools: u32,
    finished: bool,
}

/// Gemini's streamed `GenerateContentResponse`s → chat completion chunks.
#[derive(Debug)]
pub(crate) struct Events {
    chunks: Chunks,
    provider_id: String,
    candidates: BTreeMap<u32, CandidateState>,
    usage: Option<Usage>,
}

impl Events {
    /// A translator for a stream answering `model`.
    pub(crate) fn new(model: &str, provider_id: String) -> Self {
        Events {
            chunks: Chunks::new(model),
            provider_id,
            candidates: BTreeMap::new(),
            usage: None,
        }
    }
}

/// The HTTP status of a Google error body's `error` (its `code`), else 502.
pub(crate) fn error_status(err: &Value) -> u16 {
    err.get("code")
        .and_then(Value::as_u64)
        .filter(|c| (400..600).contains(c))
        .map_or(502, |c| c as u16)
}

impl StreamTranslator for Events {
    fn event(&mut self, v: Value) -> Result<Vec<ChatCompletionChunk>> {
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let status = err.get("status").and_then(Value::as_str).unwrap_or("");
            let message = err.get("message").and_then(Value::as_str).unwrap_or("");
            return Err(Error::upstream(
                &self.provider_id,
                error_status(err),
                format!(
                    "provider '{}': upstream error in stream: {status}: {message}",
                    self.provider_id
                ),
            ));
        }
        if self.chunks.id.is_empty() {
            if let Some(id) = v.get("responseId").and_then(Value::as_str) {
                self.chunks.id = id.to_string();
            }
        }
        if let Some(meta) = v.get("usageMetadata") {
            self.usage = Some(usage(meta));
        }
        let mut out = Vec::new();
        if prompt_blocked(&v) {
            self.candidates.entry(0).or_default().finished = true;
            out.push(self.chunks.choice(
                0,
                ChunkDelta {
                    role: Some("assistant".into()),
                    ..Default::default()
                },
                Some(FinishReason::ContentFilter),
            ));
            return Ok(out);
        }
        let candidates = v
            .get("candidates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (pos, c) in candidates.iter().enumerate() {
            let index = c
                .get("index")
                .and_then(Value::as_u64)
                .map_or(pos as u32, |i| i as u32);
            let chunks = self.chunks.clone();
            let state = self.candidates.entry(index).or_default();
            if !state.started {
                state.started = true;
                out.push(chunks.choice(
                    index,
                    ChunkDelta {
                        role: Some("assistant".into()),
                        content: Some(String::new()),
                        ..Default::default()
                    },
                    None,
                ));
            }
            for p in c
                .pointer("/content/parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let delta = if let Some(call) = p.get("functionCall") {
                    let i = state.tools;
                    state.tools += 1;
                    ChunkDelta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: i,
                            id: Some(call_id(call)),
                            kind: Some("function".into()),
                            function: Some(FunctionCallDelta {
                                name: call.get("name").and_then(Value::as_str).map(str::to_string),
                                arguments: Some(
                                    call.get("args").cloned().unwrap_or(json!({})).to_string(),
                                ),
                            }),
                        }]),
                        ..Default::default()
                    }
                } else if let Some(t) = p.get("text").and_then(Value::as_str) {
                    if t.is_empty() {
                        continue;
                    }
                    if p.get("thought") == Some(&Value::Bool(true)) {
                        ChunkDelta {
                            reasoning_content: Some(t.to_string()),
                            ..Default::default()
                        }
                    } else {
                        ChunkDelta {
                            content: Some(t.to_string()),
                            ..Default::default()
                        }
                    }
                } else {
                    continue;
                };
                out.push(chunks.choice(index, delta, None));
            }
            if let Some(reason) = c.get("finishReason").and_then(Value::as_str) {
                state.finished = true;
                out.push(chunks.choice(
                    index,
                    ChunkDelta::default(),
                    Some(finish_reason(reason, state.tools > 0)),
                ));
            }
        }
        Ok(out)
    }

    fn finish(&mut self) -> Result<Vec<ChatCompletionChunk>> {
        if !self.candidates.values().any(|c| c.finished) {
            return Err(Error::upstream(
                &self.provider_id,
                502,
                format!(
                    "provider '{}': the upstream stream ended before any candidate's finishReason",
                    self.provider_id
                ),
            ));
        }
        Ok(self
            .usage
            .take()
            .map(|u| vec![self.chunks.usage(u)])
            .unwrap_or_default())
    }
}
