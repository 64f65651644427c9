//! Constrained decoding for `response_format` json_object / json_schema: a character-level
//! JSON parser that follows the schema decides which tokens may come next, and every other
//! token is masked before sampling. Tokens are checked through a trie of the vocabulary, so
//! a prefix that cannot continue prunes every token that starts with it.
//!
//! Supported schema keywords: `type` (one or a list), `properties`, `required`,
//! `additionalProperties` (objects with `properties` admit no other keys, as OpenAI's
//! strict mode), `items`, `minItems`, `maxItems`, `enum`, `const`, `anyOf`/`oneOf` (chosen
//! by the first character), and local `$ref`s to `#/$defs/...` / `#/definitions/...`.
//! Output is compact JSON (no whitespace outside strings). String formats, patterns and
//! numeric ranges are not enforced.

use std::sync::Arc;

use llama_stack_core::{Error, Result};
use serde_json::Value;

use super::generate::TokenConstraint;
use super::tokenizer::ModelTokenizer;

/// A compiled schema node.
#[derive(Debug)]
enum Node {
    Any,
    Object {
        props: Vec<(String, Arc<Node>)>,
        required: Vec<String>,
        /// Value schema of keys not in `props` (None: no other keys).
        additional: Option<Arc<Node>>,
    },
    Array {
        items: Arc<Node>,
        min: usize,
        max: usize,
    },
    Str {
        choices: Option<Vec<String>>,
    },
    Num {
        integer: bool,
    },
    Bool,
    Null,
    /// JSON texts of `enum` / `const` values.
    Literals(Vec<String>),
    Union(Vec<Arc<Node>>),
}

/// Most characters in a number (keeps numbers finite).
const MAX_NUMBER_CHARS: usize = 24;

fn compile(schema: &Value, root: &Value, depth: usize) -> Result<Arc<Node>> {
    if depth > 32 {
        return Err(Error::invalid_param(
            "response_format.json_schema.schema",
            "(nested)",
            "Schema is nested too deeply (or recursive)",
        ));
    }
    let Some(obj) = schema.as_object() else {
        return Ok(Arc::new(match schema {
            Value::Bool(false) => Node::Union(Vec::new()),
            _ => Node::Any,
        }));
    };
    if let Some(Value::String(r)) = obj.get("$ref") {
        let target = r
            .strip_prefix("#/")
            .map(|p| p.split('/').try_fold(root, |v, k| v.get(k)))
            .and_then(|v| v)
            .ok_or_else(|| {
                Error::invalid_param(
                    "response_format.json_schema.schema",
                    r,
                    "Only local $refs (#/$defs/...) are supported",
                )
            })?;
        return compile(target, root, depth + 1);
    }
    if let Some(c) = obj.get("const") {
        return Ok(Arc::new(Node::Literals(vec![c.to_string()])));
    }
    if let Some(Value::Array(vals)) = obj.get("enum") {
        if vals.iter().all(Value::is_string) {
            return Ok(Arc::new(Node::Str {
                choices: Some(
                    vals.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect(),
                ),
            }));
        }
        return Ok(Arc::new(Node::Literals(
            vals.iter().map(Value::to_string).collect(),
        )));
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(alts)) = obj.get(key) {
            let nodes = alts
                .iter()
                .map(|a| compile(a, root, depth + 1))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Arc::new(Node::Union(nodes)));
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if all.len() == 1 {
            return compile(&all[0], root, depth + 1);
        }
    }
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ if obj.contains_key("properties") => vec!["object"],
        _ if obj.contains_key("items") => vec!["array"],
        _ => return Ok(Arc::new(Node::Any)),
    };
    let mut nodes = Vec::new();
    for t in types {
        nodes.push(Arc::new(match t {
            "object" => {
                let mut props = Vec::new();
                if let Some(Value::Object(p)) = obj.get("properties") {
                    for (k, v) in p {
                        props.push((k.clone(), compile(v, root, depth + 1)?));
                    }
                }
                let required = obj
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| {
                        r.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                let additional = match obj.get("additionalProperties") {
                    Some(Value::Bool(false)) => None,
                    Some(v @ Value::Object(_)) => Some(compile(v, root, depth + 1)?),
                    _ if props.is_empty() => Some(Arc::new(Node::Any)),
                    _ => None,
                };
                Node::Object {
                    props,
                    required,
                    additional,
                }
            }
            "array" => Node::Array {
                items: match obj.get("items") {
                    Some(i) => compile(i, root, depth + 1)?,
                    None => Arc::new(Node::Any),
                },
                min: obj.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize,
                max: obj
                    .get("maxItems")
                    .and_then(Value::as_u64)
                    .map(|m| m as usize)
                    .unwrap_or(usize::MAX),
            },
            "string" => Node::Str { choices: None },
            "integer" => Node::Num { integer: true },
            "number" => Node::Num { integer: false },
            "boolean" => Node::Bool,
            "null" => Node::Null,
            other => {
                return Err(Error::invalid_param(
                    "response_format.json_schema.schema",
                    other,
                    "Unknown JSON schema type",
                ))
            }
        }));
    }
    Ok(if nodes.len() == 1 {
        nodes.swap_remove(0)
    } else {
        Arc::new(Node::Union(nodes))
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ObjSt {
    KeyOrEnd,
    Key,
    InKey,
    Colon,
    Value,
    CommaOrEnd,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum ArrSt {
    ValueOrEnd,
    Value,
    CommaOrEnd,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum NumSt {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Esc {
    None,
    Backslash,
    Unicode(u8),
}

#[derive(Debug, Clone)]
enum Frame {
    Value(Arc<Node>),
    Object {
        node: Arc<Node>,
        seen: Vec<String>,
        key: String,
        st: ObjSt,
    },
    Array {
        node: Arc<Node>,
        count: usize,
        st: ArrSt,
    },
    Str {
        choices: Option<Arc<Vec<String>>>,
        buf: String,
        esc: Esc,
    },
    Num {
        integer: bool,
        st: NumSt,
        len: usize,
    },
    Lit {
        cands: Arc<Vec<String>>,
        alive: Vec<bool>,
        pos: usize,
    },
}

/// The parser state: a stack of open values.
#[derive(Debug, Clone)]
struct State {
    stack: Vec<Frame>,
    done: bool,
}

impl Frame {
    /// Whether this value may end here (before a delimiter the parent accepts).
    fn terminable(&self) -> bool {
        match self {
            Frame::Num { st, .. } => {
                matches!(st, NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::Exp)
            }
            Frame::Lit { cands, alive, pos } => cands
                .iter()
                .zip(alive)
                .any(|(c, &a)| a && c.chars().count() == *pos),
            _ => false,
        }
    }
}

enum Step {
    /// Consumed; the frame stays open.
    Open,
    /// Consumed; the value is complete.
    Closed,
    /// Not consumed: the value ended before this char (pass it to the parent).
    EndedBefore,
    Reject,
}

fn key_prefix_ok(node: &Node, seen: &[String], buf: &str) -> bool {
    match node {
        Node::Object {
            props, additional, ..
        } => {
            additional.is_some()
                || props
                    .iter()
                    .any(|(k, _)| !seen.contains(k) && k.starts_with(buf))
        }
        _ => false,
    }
}

fn key_complete_ok(node: &Node, seen: &[String], key: &str) -> bool {
    match node {
        Node::Object {
            props, additional, ..
        } => {
            !seen.iter().any(|s| s == key)
                && (props.iter().any(|(k, _)| k == key)
                    || (additional.is_some() && !key.is_empty()))
        }
        _ => false,
    }
}

fn can_close(node: &Node, seen: &[String]) -> bool {
    match node {
        Node::Object { required, .. } => required.iter().all(|r| seen.contains(r)),
        _ => true,
    }
}

fn more_keys_possible(node: &Node, seen: &[String]) -> bool {
    match node {
        Node::Object {
            props, additional, ..
        } => additional.is_some() || props.iter().any(|(k, _)| !seen.contains(k)),
        _ => false,
    }
}

fn value_node<'a>(node: &'a Node, key: &str) -> Option<&'a Arc<Node>> {
    match node {
        Node::Object {
            props, additional, ..
        } => props
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, n)| n)
            .or(additional.as_ref()),
        _ => None,
    }
}

/// The frame a value of `node` starting with `c` opens, if `c` can start one.
fn open(node: &Arc<Node>, c: char) -> Option<Frame> {
    match &**node {
        Node::Any => {
            let any: Arc<Node> = Arc::new(Node::Any);
            match c {
                '{' => Some(Frame::Object {
                    node: Arc::new(Node::Object {
                        props: Vec::new(),
                        required: Vec::new(),
                        additional: Some(any),
                    }),
                    seen: Vec::new(),
                    key: String::new(),
                    st: ObjSt::KeyOrEnd,
                }),
                '[' => Some(Frame::Array {
                    node: Arc::new(Node::Array {
                        items: any,
                        min: 0,
                        max: usize::MAX,
                    }),
                    count: 0,
                    st: ArrSt::ValueOrEnd,
                }),
                '"' => open(&Arc::new(Node::Str { choices: None }), c),
                '-' | '0'..='9' => open(&Arc::new(Node::Num { integer: false }), c),
                't' | 'f' => open(&Arc::new(Node::Bool), c),
                'n' => open(&Arc::new(Node::Null), c),
                _ => None,
            }
        }
        Node::Object { .. } => (c == '{').then(|| Frame::Object {
            node: node.clone(),
            seen: Vec::new(),
            key: String::new(),
            st: ObjSt::KeyOrEnd,
        }),
        Node::Array { .. } => (c == '[').then(|| Frame::Array {
            node: node.clone(),
            count: 0,
            st: ArrSt::ValueOrEnd,
        }),
        Node::Str { choices } => (c == '"').then(|| Frame::Str {
            choices: choices.clone().map(Arc::new),
            buf: String::new(),
            esc: Esc::None,
        }),
        Node::Num { integer } => {
            let st = match c {
                '-' => NumSt::Minus,
                '0' => NumSt::Zero,
                '1'..='9' => NumSt::Int,
                _ => return None,
            };
            Some(Frame::Num {
                integer: *integer,
                st,
                len: 1,
            })
        }
        Node::Bool => lit(Arc::new(vec!["true".into(), "false".into()]), c),
        Node::Null => lit(Arc::new(vec!["null".into()]), c),
        Node::Literals(texts) => lit(Arc::new(texts.clone()), c),
        Node::Union(nodes) => nodes.iter().find_map(|n| open(n, c)),
    }
}

fn lit(cands: Arc<Vec<String>>, c: char) -> Option<Frame> {
    let alive: Vec<bool> = cands.iter().map(|s| s.starts_with(c)).collect();
    alive.iter().any(|&a| a).then_some(Frame::Lit {
        cands,
        alive,
        pos: 1,
    })
}

fn step_frame(frame: &mut Frame, c: char) -> (Step, Option<Arc<Node>>) {
    match frame {
        Frame::Value(_) => (Step::Reject, None),
        Frame::Object {
            node,
            seen,
            key,
            st,
        } => match (*st, c) {
            (ObjSt::KeyOrEnd, '}') | (ObjSt::CommaOrEnd, '}') => {
                if can_close(node, seen) {
                    (Step::Closed, None)
                } else {
                    (Step::Reject, None)
                }
            }
            (ObjSt::KeyOrEnd | ObjSt::Key, '"') => {
                if more_keys_possible(node, seen) {
                    key.clear();
                    *st = ObjSt::InKey;
                    (Step::Open, None)
                } else {
                    (Step::Reject, None)
                }
            }
            (ObjSt::InKey, '"') => {
                if key_complete_ok(node, seen, key) {
                    *st = ObjSt::Colon;
                    (Step::Open, None)
                } else {
                    (Step::Reject, None)
                }
            }
            (ObjSt::InKey, c) => {
                if c == '\\' || (c as u32) < 0x20 {
                    return (Step::Reject, None);
                }
                key.push(c);
                if key_prefix_ok(node, seen, key) {
                    (Step::Open, None)
                } else {
                    (Step::Reject, None)
                }
            }
            (ObjSt::Colon, ':') => match value_node(node, key) {
                Some(v) => {
                    let v = v.clone();
                    seen.push(std::mem::take(key));
                    *st = ObjSt::Value;
                    (Step::Open, Some(v))
                }
                None => (Step::Reject, None),
            },
            (ObjSt::CommaOrEnd, ',') => {
                if more_keys_possible(node, seen) {
                    *st = ObjSt::Key;
                    (Step::Open, None)
                } else {
                    (Step::Reject, None)
                }
            }
            _ => (Step::Reject, None),
        },
        Frame::Array { node, count, st } => {
            let Node::Array { items, min, max } = &**node else {
                return (Step::Reject, None);
            };
            match (*st, c) {
                (ArrSt::ValueOrEnd | ArrSt::CommaOrEnd, ']') if *count >= *min => {
                    (Step::Closed, None)
                }
                (ArrSt::CommaOrEnd, ',') if *count < *max => {
                    *st = ArrSt::Value;
                    (Step::Open, Some(items.clone()))
                }
                (ArrSt::ValueOrEnd, _) if *max > 0 => {
                    // The char starts the first item: the caller re-feeds it.
                    *st = ArrSt::Value;
                    (Step::EndedBefore, Some(items.clone()))
                }
                _ => (Step::Reject, None),
            }
        }
        Frame::Str { choices, buf, esc } => match (*esc, c) {
            (Esc::Backslash, c) => {
                if c == 'u' {
                    *esc = Esc::Unicode(0);
                    (Step::Open, None)
                } else if "\"\\/bfnrt".contains(c) {
                    *esc = Esc::None;
                    (Step::Open, None)
                } else {
                    (Step::Reject, None)
                }
            }
            (Esc::Unicode(n), c) => {
                if c.is_ascii_hexdigit() {
                    *esc = if n == 3 {
                        Esc::None
                    } else {
                        Esc::Unicode(n + 1)
                    };
                    (Step::Open, None)
                } else {
                    (Step::Reject, None)
                }
            }
            (Esc::None, '"') => match choices {
                Some(cs) if !cs.iter().any(|s| s == buf) => (Step::Reject, None),
                _ => (Step::Closed, None),
            },
            (Esc::None, '\\') if choices.is_none() => {
                *esc = Esc::Backslash;
                (Step::Open, None)
            }
            (Esc::None, c) => {
                if (c as u32) < 0x20 || c == '\\' {
                    return (Step::Reject, None);
                }
                if let Some(cs) = choices {
                    buf.push(c);
                    if !cs.iter().any(|s| s.starts_with(buf.as_str())) {
                        return (Step::Reject, None);
                    }
                }
                (Step::Open, None)
            }
        },
        Frame::Num { integer, st, len } => {
            let next = match (*st, c) {
                (NumSt::Minus, '0') => NumSt::Zero,
                (NumSt::Minus, '1'..='9') => NumSt::Int,
                (NumSt::Int, '0'..='9') => NumSt::Int,
                (NumSt::Zero | NumSt::Int, '.') if !*integer => NumSt::Dot,
                (NumSt::Dot | NumSt::Frac, '0'..='9') => NumSt::Frac,
                (NumSt::Zero | NumSt::Int | NumSt::Frac, 'e' | 'E') if !*integer => NumSt::E,
                (NumSt::E, '+' | '-') => NumSt::ESign,
                (NumSt::E | NumSt::ESign | NumSt::Exp, '0'..='9') => NumSt::Exp,
                _ => {
                    return if frame.terminable() {
                        (Step::EndedBefore, None)
                    } else {
                        (Step::Reject, None)
                    }
                }
            };
            if *len >= MAX_NUMBER_CHARS {
                return (Step::Reject, None);
            }
            *st = next;
            *len += 1;
            let _ = NumSt::Start;
            (Step::Open, None)
        }
        Frame::Lit { cands, alive, pos } => {
            let mut any = false;
            let mut next_alive = alive.clone();
            for (i, cand) in cands.iter().enumerate() {
                let ok = alive[i] && cand.chars().nth(*pos) == Some(c);
                next_alive[i] = ok;
                any |= ok;
            }
            if !any {
                return if frame.terminable() {
                    (Step::EndedBefore, None)
                } else {
                    (Step::Reject, None)
                };
            }
            *alive = next_alive;
            *pos += 1;
            let complete_only = cands
                .iter()
                .zip(alive.iter())
                .filter(|(_, &a)| a)
                .all(|(s, _)| s.chars().count() == *pos);
            if complete_only {
                (Step::Closed, None)
            } else {
                (Step::Open, None)
            }
        }
    }
}

impl State {
    fn new(root: Arc<Node>) -> Self {
        State {
            stack: vec![Frame::Value(root)],
            done: false,
        }
    }

    /// Marks the top value complete and tells its parent.
    fn close_top(&mut self) {
        self.stack.pop();
        match self.stack.last_mut() {
            None => self.done = true,
            Some(Frame::Object { st, .. }) => *st = ObjSt::CommaOrEnd,
            Some(Frame::Array { count, st, .. }) => {
                *count += 1;
                *st = ArrSt::CommaOrEnd;
            }
            Some(_) => {}
        }
    }

    /// Feeds one char; false if the JSON cannot continue with it.
    fn step(&mut self, c: char) -> bool {
        // Bounded by the stack depth: each pass either consumes `c` or pops a frame.
        for _ in 0..64 {
            if self.done {
                return false;
            }
            let Some(top) = self.stack.last_mut() else {
                return false;
            };
            if let Frame::Value(node) = top {
                let node = node.clone();
                match open(&node, c) {
                    Some(frame) => {
                        *top = frame;
                        if let Some(Frame::Lit { .. }) = self.stack.last() {
                            if self.stack.last().is_some_and(|f| {
                                matches!(f, Frame::Lit { cands, alive, pos } if cands.iter().zip(alive).filter(|(_, &a)| a).all(|(s, _)| s.chars().count() == *pos))
                            }) {
                                self.close_top();
                            }
                        }
                        return true;
                    }
                    None => return false,
                }
            }
            let (step, child) = step_frame(top, c);
            match step {
                Step::Open => {
                    if let Some(n) = child {
                        self.stack.push(Frame::Value(n));
                    }
                    return true;
                }
                Step::Closed => {
                    self.close_top();
                    return true;
                }
                Step::EndedBefore => {
                    if let Some(n) = child {
                        // An array's first item starts with this char.
                        self.stack.push(Frame::Value(n));
                    } else {
                        self.close_top();
                    }
                }
                Step::Reject => return false,
            }
        }
        false
    }

    fn complete(&self) -> bool {
        self.done || (self.stack.len() == 1 && self.stack[0].terminable())
    }
}

/// A trie over the vocabulary's token texts.
pub(crate) struct Trie {
    /// Children of each node, `(char, node)`.
    children: Vec<Vec<(char, u32)>>,
    /// Tokens ending at each node.
    tokens: Vec<Vec<u32>>,
}

impl Trie {
    /// The trie of `tok`'s plain tokens (special tokens and partial UTF-8 excluded).
    pub(crate) fn new(tok: &ModelTokenizer) -> Self {
        let mut t = Trie {
            children: vec![Vec::new()],
            tokens: vec![Vec::new()],
        };
        for (id, piece) in tok.pieces.iter().enumerate() {
            if piece.is_empty() || piece.contains('\u{FFFD}') || tok.special[id] {
                continue;
            }
            let mut node = 0usize;
            for c in piece.chars() {
                let next = match t.children[node].iter().find(|(ch, _)| *ch == c) {
                    Some(&(_, n)) => n as usize,
                    None => {
                        let n = t.children.len();
                        t.children.push(Vec::new());
                        t.tokens.push(Vec::new());
                        t.children[node].push((c, n as u32));
                        n
                    }
                };
                node = next;
            }
            t.tokens[node].push(id as u32);
        }
        t
    }

    fn visit(&self, node: usize, state: &State, allowed: &mut [bool]) {
        for &(c, child) in &self.children[node] {
            let mut s = state.clone();
            if s.step(c) {
                let child = child as usize;
                for &id in &self.tokens[child] {
                    if let Some(a) = allowed.get_mut(id as usize) {
                        *a = true;
                    }
                }
                self.visit(child, &s, allowed);
            }
        }
    }
}

/// The constraint for one request.
pub(crate) struct JsonConstraint {
    state: State,
    tokenizer: Arc<ModelTokenizer>,
    trie: Arc<Trie>,
}

impl JsonConstraint {
    /// A constraint to JSON valid under `schema`.
    pub(crate) fn new(schema: &Value, tokenizer: Arc<ModelTokenizer>) -> Result<Self> {
        let root = compile(schema, schema, 0)?;
        let trie = tokenizer.json_trie();
        Ok(JsonConstraint {
            state: State::new(root),
            tokenizer,
            trie,
        })
    }
}

impl TokenConstraint for JsonConstraint {
    fn mask(&mut self, logits: &mut [f32]) {
        let mut allowed = vec![false; logits.len()];
        self.trie.visit(0, &self.state, &mut allowed);
        for (l, a) in logits.iter_mut().zip(allowed) {
            if !a {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    fn advance(&mut self, token: u32) {
        if let Some(piece) = self.tokenizer.pieces.get(token as usize) {
            for c in piece.chars() {
                if !self.state.step(c) {
                    break;
                }
            }
        }
    }

    fn is_complete(&self) -> bool {
        self.state.complete()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    fn accepts(schema: Value, text: &str) -> bool {
        let root = compile(&schema, &schema, 0).unwrap_or_else(|e| panic!("{e}"));
        let mut s = State::new(root);
        text.chars().all(|c| s.step(c)) && s.complete()
    }

    #[test]
    fn follows_the_schema() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "age": {"type": "integer"},
                "tags": {"type": "array", "items": {"enum": ["a", "bc"]}, "maxItems": 2},
                "ok": {"type": "boolean"},
                "score": {"type": ["number", "null"]}
            },
            "required": ["name", "age"]
        });
        let check = |text: &str, ok: bool| assert_eq!(accepts(schema.clone(), text), ok, "{text}");
        check(r#"{"name":"Bob \"x\"","age":42}"#, true);
        check(
            r#"{"age":-3,"name":"","tags":["bc","a"],"ok":true,"score":1.5e3}"#,
            true,
        );
        check(r#"{"name":"Bob"}"#, false);
        check(r#"{"name":"Bob","age":4.5}"#, false);
        check(r#"{"name":"Bob","age":4,"extra":1}"#, false);
        check(r#"{"name":"Bob","age":4,"tags":["b"]}"#, false);
        check(r#"{"name":"Bob","age":4,"tags":["a","a","a"]}"#, false);
        check(r#"{"name":"Bob","age":4,"score":null}"#, true);
        check(r#"{"name":"Bob","age":4,"name":"x"}"#, false);
        check(r#"{ "name":"Bob","age":4}"#, false);
        assert!(accepts(
            json!({"type": "object"}),
            r#"{"a":[1,{"b":null}],"c":"d"}"#
        ));
        assert!(accepts(
            json!({"type": "array", "items": {"type": "integer"}}),
            "[1,20,-3]"
        ));
        assert!(accepts(json!({"type": "array"}), "[]"));
        assert!(!accepts(json!({"type": "array", "minItems": 1}), "[]"));
        let defs = json!({"$defs": {"p": {"type": "object", "properties": {"x": {"const": 1}}, "required": ["x"]}}, "$ref": "#/$defs/p"});
        assert!(accepts(defs.clone(), r#"{"x":1}"#));
        assert!(!accepts(defs, r#"{"x":2}"#));
    }
}
