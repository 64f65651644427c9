//! Config parsing and request/answer translation of `remote::anthropic` (the wire-level
//! tests against a local fake service are in the workspace's `tests/remote_native.rs`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llama_stack_core::api::inference::{
    ChatCompletionRequest, ContentPart, FinishReason, FunctionCall, ImageUrl, JsonSchemaFormat,
    Message, MessageContent, ResponseFormat, Tool, ToolCall, ToolChoice,
};
use llama_stack_core::ErrorKind;
use serde_json::{json, Value};

use super::translate::{request, response, Plan};
use super::{parse_config, AnthropicProvider};

const PATH: &str = "providers.inference[2].config";

fn weather() -> Tool {
    Tool::function(
        "get_weather",
        "Weather of a city",
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
    )
}

#[test]
fn config_defaults_and_unknown_fields() {
    let c = parse_config(&json!({"api_key": "k"}), PATH).unwrap();
    assert_eq!(c.base_url.as_deref(), Some("https://api.anthropic.com"));
    assert_eq!(c.max_tokens, Some(4096));
    let p = AnthropicProvider::new("claude", c, PATH).unwrap();
    assert_eq!(p.base_url(), "https://api.anthropic.com");

    let c = parse_config(
        &json!({"max_tokens": 512, "base_url": "http://127.0.0.1:9/"}),
        PATH,
    )
    .unwrap();
    assert_eq!(c.max_tokens, Some(512));
    assert_eq!(
        AnthropicProvider::new("claude", c, PATH)
            .unwrap()
            .base_url(),
        "http://127.0.0.1:9"
    );

    for field in ["api_token", "project_id", "temperature"] {
        let e = parse_config(&json!({ field: "x" }), PATH).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().contains(&format!("{PATH}.{field}")), "{e}");
    }
}

#[test]
fn messages_system_images_tools_and_results_translate() {
    let mut req = ChatCompletionRequest::new(
        "claude-sonnet-4-5",
        [
            Message::system("be brief"),
            Message::user(MessageContent::Parts(vec![
                ContentPart::Text {
                    text: "what is here?".into(),
                },
                ContentPart::ImageUrl {
                    image_url: ImageUrl {
                        url: "data:image/png;base64,iVBORw0KGgo=".into(),
                        detail: None,
                    },
                },
                ContentPart::ImageUrl {
                    image_url: ImageUrl {
                        url: "https://example.com/cat.jpg".into(),
                        detail: Some("high".into()),
                    },
                },
            ])),
            Message::Assistant {
                content: None,
                name: None,
                tool_calls: Some(vec![
                    ToolCall {
                        id: "toolu_1".into(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: "get_weather".into(),
                            arguments: r#"{"city": "Paris"}"#.into(),
                        },
                    },
                    ToolCall {
                        id: "toolu_2".into(),
                        kind: "function".into(),
                        function: FunctionCall {
                            name: "get_weather".into(),
                            arguments: r#"{"city": "Rome"}"#.into(),
                        },
                    },
                ]),
            },
            Message::tool("toolu_1", "18C"),
            Message::tool("toolu_2", "25C"),
            Message::Developer {
                content: "answer in French".into(),
                name: None,
            },
            Message::user("and so?"),
        ],
    )
    .with_temperature(0.7)
    .with_stop(["END"])
    .with_tools(vec![weather()]);
    req.top_p = Some(0.9);
    req.user = Some("u-1".into());
    req.extra_body.insert("top_k".into(), json!(40));
    let (body, plan) = request(&req, 4096, false).unwrap();
    assert!(plan.json_tool.is_none());
    assert_eq!(
        body,
        json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 4096,
            "system": "be brief\n\nanswer in French",
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "what is here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                    {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}}
                ]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {"city": "Rome"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C"},
                    {"type": "tool_result", "tool_use_id": "toolu_2", "content": "25C"},
                    {"type": "text", "text": "and so?"}
                ]}
            ],
            "temperature": 0.7,
            "top_p": 0.9,
            "top_k": 40,
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "tools": [{"name": "get_weather", "description": "Weather of a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
        })
    );
}

#[test]
fn tool_choice_and_parallel_calls() {
    let check = |choice: Option<ToolChoice>, parallel: Option<bool>, expected: Value| {
        let mut req = ChatCompletionRequest::new("m", [Message::user("hi")])
            .with_tools(vec![weather()])
            .with_max_tokens(10);
        req.tool_choice = choice;
        req.parallel_tool_calls = parallel;
        let (body, _) = request(&req, 4096, true).unwrap();
        assert_eq!(body["tool_choice"], expected, "{body}");
        assert_eq!(body["max_tokens"], 10);
        assert_eq!(body["stream"], true);
    };
    check(None, None, Value::Null);
    check(
        Some(ToolChoice::Mode("auto".into())),
        None,
        json!({"type": "auto"}),
    );
    check(
        Some(ToolChoice::Mode("none".into())),
        None,
        json!({"type": "none"}),
    );
    check(
        Some(ToolChoice::Mode("required".into())),
        None,
        json!({"type": "any"}),
    );
    check(
        Some(ToolChoice::Named(
            json!({"type": "function", "function": {"name": "get_weather"}}),
        )),
        Some(false),
        json!({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": true}),
    );
    check(
        None,
        Some(false),
        json!({"type": "auto", "disable_parallel_tool_use": true}),
    );
}

#[test]
fn structured_output_is_a_forced_tool_whose_input_is_the_text() {
    let schema = json!({"type": "object", "properties": {"answer": {"type": "integer"}}});
    let req = ChatCompletionRequest::new("m", [Message::user("2+2?")]).with_response_format(
        ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: "math answer".into(),
                description: None,
                strict: Some(true),
                schema: Some(schema.clone()),
            },
        },
    );
    let (body, plan) = request(&req, 4096, false).unwrap();
    assert_eq!(plan.json_tool.as_deref(), Some("math_answer"));
    assert_eq!(body["tools"][0]["input_schema"], schema);
    assert_eq!(
        body["tool_choice"],
        json!({"type": "tool", "name": "math_answer"})
    );

    let answer = json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "tool_use", "id": "toolu_9", "name": "math_answer", "input": {"answer": 4}}],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 12, "output_tokens": 8}
    });
    let out = response(&answer, "m", &plan).unwrap();
    let msg = &out.choices[0].message;
    assert_eq!(
        serde_json::from_str::<Value>(msg.content.as_deref().unwrap()).unwrap(),
        json!({"answer": 4})
    );
    assert!(msg.tool_calls.is_none());
    assert_eq!(out.choices[0].finish_reason, Some(FinishReason::Stop));

    let with_tools = req.clone().with_tools(vec![weather()]);
    let e = request(&with_tools, 4096, false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    assert!(e.message().contains("response_format"), "{e}");
}

#[test]
fn refused_inputs_name_the_field() {
    let base = ChatCompletionRequest::new("m", [Message::user("hi")]);
    let mut r = base.clone();
    r.n = Some(2);
    assert!(request(&r, 1, false).unwrap_err().message().contains("'n'"));
    let mut r = base.clone();
    r.logprobs = Some(true);
    assert_eq!(
        request(&r, 1, false).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    let r = ChatCompletionRequest::new("m", [Message::system("only rules")]);
    assert!(request(&r, 1, false)
        .unwrap_err()
        .message()
        .contains("messages"));
    let r = ChatCompletionRequest::new(
        "m",
        [Message::Assistant {
            content: None,
            name: None,
            tool_calls: Some(vec![ToolCall {
                id: "t".into(),
                kind: "function".into(),
                function: FunctionCall {
                    name: "f".into(),
                    arguments: "not json".into(),
                },
            }]),
        }],
    );
    let e = request(&r, 1, false).unwrap_err();
    assert!(
        e.message()
            .contains("messages[0].tool_calls[0].function.arguments"),
        "{e}"
    );
    let r = ChatCompletionRequest::new(
        "m",
        [Message::user(MessageContent::Parts(vec![
            ContentPart::ImageUrl {
                image_url: ImageUrl {
                    url: "ftp://x/y.png".into(),
                    detail: None,
                },
            },
        ]))],
    );
    let e = request(&r, 1, false).unwrap_err();
    assert!(e.message().contains("messages[0].content[0]"), "{e}");
}

#[test]
fn answers_carry_text_thinking_tool_calls_and_cached_usage() {
    // Shape: https://docs.claude.com/en/api/messages (response), extended thinking blocks:
    // https://docs.claude.com/en/docs/build-with-claude/extended-thinking
    let answer = json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [
            {"type": "thinking", "thinking": "Need the weather.", "signature": "sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}}
        ],
        "stop_reason": "tool_use", "stop_sequence": null,
        "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 20}
    });
    let out = response(&answer, "claude/claude-sonnet-4-5", &Plan::default()).unwrap();
    assert_eq!(out.id, "msg_01");
    assert_eq!(out.model, "claude/claude-sonnet-4-5");
    let c = &out.choices[0];
    assert_eq!(c.message.content.as_deref(), Some("Checking."));
    assert_eq!(
        c.message.reasoning_content.as_deref(),
        Some("Need the weather.")
    );
    let call = &c.message.tool_calls.as_ref().unwrap()[0];
    assert_eq!(call.id, "toolu_01");
    assert_eq!(
        serde_json::from_str::<Value>(&call.function.arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(c.finish_reason, Some(FinishReason::ToolCalls));
    let u = out.usage.unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (115, 20, 135)
    );
    assert_eq!(u.prompt_tokens_details.unwrap().cached_tokens, Some(100));

    for (reason, finish) in [
        ("end_turn", FinishReason::Stop),
        ("stop_sequence", FinishReason::Stop),
        ("max_tokens", FinishReason::Length),
        ("refusal", FinishReason::ContentFilter),
        ("pause_turn", FinishReason::Stop),
    ] {
        let mut a = answer.clone();
        a["stop_reason"] = json!(reason);
        let out = response(&a, "m", &Plan::default()).unwrap();
        assert_eq!(out.choices[0].finish_reason, Some(finish), "{reason}");
    }
    assert!(response(&json!({"type": "message"}), "m", &Plan::default()).is_err());
}

#[test]
fn reasoning_effort_becomes_a_thinking_budget_below_max_tokens() {
    let with = |effort: &str, max: u32| {
        let mut r = ChatCompletionRequest::new("m", [Message::user("hi")]).with_max_tokens(max);
        r.reasoning_effort = Some(effort.into());
        request(&r, 4096, false)
    };
    assert_eq!(
        with("medium", 8000).unwrap().0["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(
        with("high", 8000).unwrap().0["thinking"],
        json!({"type": "enabled", "budget_tokens": 7999})
    );
    assert!(with("none", 8000).unwrap().0.get("thinking").is_none());
    let e = with("low", 1000).unwrap_err();
    assert!(
        e.message().contains("reasoning_effort") && e.message().contains("max_tokens"),
        "{e}"
    );
    // An explicit `thinking` in extra_body wins.
    let mut r = ChatCompletionRequest::new("m", [Message::user("hi")]);
    r.reasoning_effort = Some("high".into());
    r.extra_body
        .insert("thinking".into(), json!({"type": "disabled"}));
    assert_eq!(
        request(&r, 4096, false).unwrap().0["thinking"],
        json!({"type": "disabled"})
    );
}
