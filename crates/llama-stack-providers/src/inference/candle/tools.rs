//! Tool calls: telling a model without a tool-aware chat template which tools exist, and
//! reading calls out of the generated text (`<tool_call>{...}</tool_call>` blocks, a bare
//! `{"name", "arguments"}` object or a list of them) into OpenAI `tool_calls`.

use llama_stack_core::api::inference::{FunctionCall, Tool, ToolCall};
use serde_json::Value;

/// The system text describing `tools` for templates that do not render tools themselves.
pub(crate) fn tools_system_prompt(tools: &[Tool]) -> String {
    let mut s = String::from(
        "You can call functions. To call one, answer only with\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>\nAvailable functions:\n",
    );
    for t in tools {
        s.push_str(&serde_json::to_string(&t.function).unwrap_or_default());
        s.push('\n');
    }
    s
}

fn call_from_value(v: &Value, n: usize, known: &[Tool]) -> Option<ToolCall> {
    let obj = v.as_object()?;
    let obj = match obj.get("function").and_then(Value::as_object) {
        Some(f) if f.contains_key("name") => f,
        _ => obj,
    };
    let name = obj.get("name")?.as_str()?;
    if !known.iter().any(|t| t.function.name == name) {
        return None;
    }
    let args = obj
        .get("arguments")
        .or_else(|| obj.get("parameters"))
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let arguments = match args {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some(ToolCall {
        id: format!("call_{n}_{}", uuid_like(name, n)),
        kind: "function".into(),
        function: FunctionCall {
            name: name.to_string(),
            arguments,
        },
    })
}

fn uuid_like(name: &str, n: usize) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    n.hash(&mut h);
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .hash(&mut h);
    format!("{:016x}", h.finish())
}

fn calls_from_json(text: &str, start: usize, known: &[Tool]) -> Vec<ToolCall> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(Value::Array(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, v)| call_from_value(v, start + i, known))
            .collect(),
        Ok(v) => call_from_value(&v, start, known).into_iter().collect(),
        Err(_) => Vec::new(),
    }
}

/// Tool calls in `text` and the text outside them; no calls when nothing parses.
pub(crate) fn parse_tool_calls(text: &str, known: &[Tool]) -> (Vec<ToolCall>, String) {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let mut calls = Vec::new();
    let mut rest = String::new();
    let mut cursor = 0;
    while let Some(i) = text[cursor..].find(OPEN) {
        let body_start = cursor + i + OPEN.len();
        let body_end = text[body_start..]
            .find(CLOSE)
            .map(|j| body_start + j)
            .unwrap_or(text.len());
        let found = calls_from_json(&text[body_start..body_end], calls.len(), known);
        if found.is_empty() {
            break;
        }
        rest.push_str(&text[cursor..cursor + i]);
        calls.extend(found);
        cursor = (body_end + CLOSE.len()).min(text.len());
    }
    if !calls.is_empty() {
        rest.push_str(&text[cursor..]);
        return (calls, rest.trim().to_string());
    }
    let bare = calls_from_json(text, 0, known);
    if !bare.is_empty() {
        return (bare, String::new());
    }
    (Vec::new(), text.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn weather() -> Vec<Tool> {
        vec![Tool::function(
            "get_weather",
            "weather of a city",
            json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        )]
    }

    #[test]
    fn parses_tagged_bare_and_listed_calls() {
        let tools = weather();
        let (calls, rest) = parse_tool_calls(
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
            &tools,
        );
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].function.name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].function.arguments).unwrap(),
            json!({"city": "Paris"})
        );
        assert_eq!(rest, "");
        let (calls, _) = parse_tool_calls(
            "[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"A\"}}, {\"name\": \"get_weather\", \"arguments\": {\"city\": \"B\"}}]",
            &tools,
        );
        assert_eq!(calls.len(), 2);
        assert_ne!(calls[0].id, calls[1].id);
        let (calls, rest) = parse_tool_calls("It is sunny.", &tools);
        assert!(calls.is_empty());
        assert_eq!(rest, "It is sunny.");
        let (calls, _) = parse_tool_calls("{\"name\": \"other\", \"arguments\": {}}", &tools);
        assert!(calls.is_empty(), "unknown functions are not calls");
    }
}
