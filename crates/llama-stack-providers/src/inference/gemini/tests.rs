//! Config parsing and request/answer translation of `remote::gemini` (the wire-level tests
//! against a local fake service are in the workspace's `tests/remote_native.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llama_stack_core::api::inference::{
    ChatCompletionRequest, ContentPart, FileRef, FinishReason, FunctionCall, ImageUrl,
    JsonSchemaFormat, Message, MessageContent, ResponseFormat, Tool, ToolCall, ToolChoice,
};
use llama_stack_core::ErrorKind;
use serde_json::json;

use super::translate::{request, response};
use super::{parse_config, resource, GeminiProvider};

const PATH: &str = "providers.inference[1].config";

fn image(url: &str) -> ContentPart {
    ContentPart::ImageUrl {
        image_url: ImageUrl {
            url: url.into(),
            detail: None,
        },
    }
}

#[test]
fn config_defaults_and_unknown_fields() {
    let c = parse_config(&json!({"api_key": "k"}), PATH).unwrap();
    assert_eq!(
        c.base_url.as_deref(),
        Some("https://generativelanguage.googleapis.com")
    );
    GeminiProvider::new("gemini", c, PATH).unwrap();
    for field in ["max_tokens", "api_token", "project"] {
        let e = parse_config(&json!({ field: 1 }), PATH).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains(&format!("{PATH}.{field}")), "{e}");
    }
    assert_eq!(resource("gemini-2.5-flash"), "models/gemini-2.5-flash");
    assert_eq!(resource("tunedModels/mine"), "tunedModels/mine");
}

#[test]
fn contents_system_images_calls_and_responses_translate() {
    let mut req = ChatCompletionRequest::new(
        "gemini-2.5-flash",
        [
            Message::system("be brief"),
            Message::user(MessageContent::Parts(vec![
                ContentPart::Text {
                    text: "what is this?".into(),
                },
                image("data:image/jpeg;base64,/9j/4AAQ"),
                image("https://generativelanguage.googleapis.com/v1beta/files/abc123"),
                image("gs://bucket/photo.png"),
                ContentPart::File {
                    file: FileRef {
                        file_id: None,
                        file_data: Some("data:application/pdf;base64,JVBERi0=".into()),
                        filename: Some("a.pdf".into()),
                    },
                },
            ])),
            Message::Assistant {
                content: Some("Let me check.".into()),
                name: None,
                tool_calls: Some(vec![ToolCall {
                    id: "call_1".into(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: "get_weather".into(),
                        arguments: r#"{"city":"Paris"}"#.into(),
                    },
                }]),
            },
            Message::tool("call_1", r#"{"temp_c": 18}"#),
            Message::user("thanks"),
        ],
    )
    .with_temperature(0.2)
    .with_max_tokens(256)
    .with_stop(["END"])
    .with_seed(7)
    .with_tools(vec![Tool::function(
        "get_weather",
        "Weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}),
    )]);
    req.tool_choice = Some(ToolChoice::Named(
        json!({"type": "function", "function": {"name": "get_weather"}}),
    ));
    req.extra_body.insert("top_k".into(), json!(32));
    req.extra_body.insert(
        "safety_settings".into(),
        json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]),
    );
    req.reasoning_effort = Some("low".into());
    let body = request(&req).unwrap();
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "be brief"}]},
            "contents": [
                {"role": "user", "parts": [
                    {"text": "what is this?"},
                    {"inlineData": {"mimeType": "image/jpeg", "data": "/9j/4AAQ"}},
                    {"fileData": {"fileUri": "https://generativelanguage.googleapis.com/v1beta/files/abc123"}},
                    {"fileData": {"mimeType": "image/png", "fileUri": "gs://bucket/photo.png"}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
                ]},
                {"role": "model", "parts": [
                    {"text": "Let me check."},
                    {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "get_weather", "response": {"temp_c": 18}}},
                    {"text": "thanks"}
                ]}
            ],
            "tools": [{"functionDeclarations": [{"name": "get_weather", "description": "Weather of a city",
                "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": false}}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
            "generationConfig": {
                "temperature": 0.2, "maxOutputTokens": 256, "stopSequences": ["END"], "seed": 7,
                "topK": 32, "thinkingConfig": {"includeThoughts": true}
            }
        })
    );
}

#[test]
fn tool_choice_modes_and_structured_output() {
    for (mode, expected) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let mut req = ChatCompletionRequest::new("m", [Message::user("hi")])
            .with_tools(vec![Tool::function("f", "d", json!({"type": "object"}))]);
        req.tool_choice = Some(ToolChoice::Mode(mode.into()));
        let body = request(&req).unwrap();
        assert_eq!(
            body["toolConfig"]["functionCallingConfig"],
            json!({ "mode": expected })
        );
    }
    let schema =
        json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]});
    let req = ChatCompletionRequest::new("m", [Message::user("hi")]).with_response_format(
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: "n".into(),
                description: None,
                strict: None,
                schema: Some(schema.clone()),
            },
        },
    );
    let body = request(&req).unwrap();
    assert_eq!(
        body["generationConfig"],
        json!({"responseMimeType": "application/json", "responseJsonSchema": schema})
    );
    let req = ChatCompletionRequest::new("m", [Message::user("hi")])
        .with_response_format(ResponseFormat::JsonObject);
    assert_eq!(
        request(&req).unwrap()["generationConfig"],
        json!({"responseMimeType": "application/json"})
    );
}

#[test]
fn refused_inputs_name_the_field() {
    let e = request(&ChatCompletionRequest::new(
        "m",
        [Message::user(MessageContent::Parts(vec![image(
            "https://example.com/cat.png",
        )]))],
    ))
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(
        e.message().contains("messages[0].content[0]") && e.message().contains("data: URL"),
        "{e}"
    );
    let e = request(&ChatCompletionRequest::new(
        "m",
        [Message::user("hi"), Message::tool("unknown-call", "x")],
    ))
    .unwrap_err();
    assert!(e.message().contains("messages[1].tool_call_id"), "{e}");
    let mut r = ChatCompletionRequest::new("m", [Message::user("hi")]);
    r.logprobs = Some(true);
    assert_eq!(request(&r).unwrap_err().kind(), ErrorKind::Unsupported);
}

#[test]
fn answers_carry_text_thoughts_calls_safety_and_usage() {
    // Shape: https://ai.google.dev/api/generate-content#generatecontentresponse
    let answer = json!({
        "candidates": [{
            "content": {"role": "model", "parts": [
                {"text": "Weighing the options.", "thought": true},
                {"text": "Calling the tool."},
                {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}}
            ]},
            "finishReason": "STOP", "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 50, "candidatesTokenCount": 10, "totalTokenCount": 80,
            "cachedContentTokenCount": 40, "thoughtsTokenCount": 20},
        "modelVersion": "gemini-2.5-flash", "responseId": "resp-1"
    });
    let out = response(&answer, "gemini/gemini-2.5-flash").unwrap();
    assert_eq!(out.id, "resp-1");
    let c = &out.choices[0];
    assert_eq!(c.message.content.as_deref(), Some("Calling the tool."));
    assert_eq!(
        c.message.reasoning_content.as_deref(),
        Some("Weighing the options.")
    );
    let call = &c.message.tool_calls.as_ref().unwrap()[0];
    assert!(call.id.starts_with("call_"), "{}", call.id);
    assert_eq!(call.function.name, "get_weather");
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    let u = out.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (50, 30, 80)
    );
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(40));
    assert_eq!(
        u.completion_tokens_details.unwrap().reasoning_tokens,
        Some(20)
    );

    for (reason, finish) in [
        ("MAX_TOKENS", FinishReason::Length),
        ("SAFETY", FinishReason::ContentFilter),
        ("RECITATION", FinishReason::ContentFilter),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter),
        ("OTHER", FinishReason::Stop),
    ] {
        let a = json!({"candidates": [{"content": {"role": "model", "parts": [{"text": "x"}]}, "finishReason": reason}]});
        assert_eq!(
            response(&a, "m").unwrap().choices[0].finish_reason,
            Some(finish),
            "{reason}"
        );
    }
    let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4}});
    let out = response(&blocked, "m").unwrap();
    assert_eq!(
        out.choices[0].finish_reason,
        Some(FinishReason::ContentFilter)
    );
    assert!(out.choices[0].message.content.is_none());
    assert!(response(&json!({"usageMetadata": {}}), "m").is_err());
}
