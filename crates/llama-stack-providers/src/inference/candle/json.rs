//! Constrained decoding for `response_format` json_object / json_schema: a character-level
//! JSON parser that follows the schema decides which tokens may come next, and every other
//! token is masked before sampling. Tokens are checked through a trie of the vocabulary, so
//! a prefix that cannot continue prunes every token that starts with it.
//!
//! Enforced schema keywords: `type` (one or a list), `properties`, `required`,
//! `additionalProperties` (`false`, `true` or a schema; absent with `properties` admits no
//! other keys, as OpenAI's strict mode), `minProperties`, `maxProperties`, `items`,
//! `minItems`, `maxItems`, `enum`, `const`, `anyOf`/`oneOf` (chosen by the first
//! character), a one-element `allOf`, local `$ref`s to `#/$defs/...` / `#/definitions/...`;
//! for strings `minLength`, `maxLength`, `pattern` and `format` (date, time, date-time,
//! email, uuid, ipv4, hostname, uri), matched by an anchored regex DFA that every candidate
//! token's decoded characters walk; for numbers `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum` (a prefix is kept only if some completion ends inside the range;
//! bounded numbers are written without an exponent) and, for integers, `multipleOf`.
//! Validation keywords that cannot be enforced (`not`, `if`, `patternProperties`,
//! `uniqueItems`, an unknown `format`, ...) are refused with `InvalidRequest` naming the
//! keyword and its schema path, never silently ignored. Annotations (`title`,
//! `description`, `default`, ...) and unknown keywords are ignored. Output is compact JSON
//! (no whitespace outside strings).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use llama_stack_core::{Error, Result};
use regex_automata::dfa::{dense, Automaton, StartKind};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::Anchored;
use serde_json::{Map, Value};

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
        min_props: usize,
        max_props: usize,
    },
    Array {
        items: Arc<Node>,
        min: usize,
        max: usize,
    },
    Str {
        choices: Option<Vec<String>>,
        rules: Option<Arc<StrRules>>,
    },
    Num {
        integer: bool,
        range: Option<Arc<NumRange>>,
    },
    Bool,
    Null,
    /// JSON texts of `enum` / `const` values.
    Literals(Vec<String>),
    Union(Vec<Arc<Node>>),
}

/// Constraints on a string's decoded characters.
#[derive(Debug)]
struct StrRules {
    /// The `pattern` / `format` DFA.
    dfa: Option<StrDfa>,
    /// Fewest characters (Unicode scalar values, as JSON Schema counts).
    min: usize,
    /// Most characters.
    max: usize,
}

/// The range (and step) a number must fall in.
#[derive(Debug)]
enum NumRange {
    /// Inclusive integer bounds and a positive step (`multipleOf`).
    Int { lo: i128, hi: i128, step: i128 },
    /// Bounds of a number: `(value, exclusive)`.
    Float {
        lo: Option<(f64, bool)>,
        hi: Option<(f64, bool)>,
    },
}

/// Most characters in a number (keeps numbers finite).
const MAX_NUMBER_CHARS: usize = 24;
/// Integer bounds beyond anything [`MAX_NUMBER_CHARS`] characters can write.
const INT_LIMIT: i128 = 10i128.pow(30);
/// Size limit of one string DFA (and of its determinization), in bytes.
const DFA_SIZE_LIMIT: usize = 16 << 20;

/// Validation keywords this decoder cannot enforce: a schema using them is refused.
const UNENFORCEABLE: &[&str] = &[
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
    "contains",
    "minContains",
    "maxContains",
    "prefixItems",
    "additionalItems",
    "$dynamicRef",
    "$recursiveRef",
    "contentSchema",
];

/// The schema parameter errors name.
const PARAM: &str = "response_format.json_schema.schema";

fn unenforceable(path: &str, keyword: &str, why: &str) -> Error {
    Error::invalid_request(format!(
        "{PARAM}: keyword '{keyword}' at '{path}' cannot be enforced by constrained decoding ({why}); remove it or rewrite the schema"
    ))
}

fn bad_value(path: &str, keyword: &str, value: &Value, why: &str) -> Error {
    Error::invalid_param(
        PARAM,
        format_args!("'{keyword}' = {value} at '{path}'"),
        why,
    )
}

/// The anchored regex of a supported string `format`.
fn format_regex(format: &str) -> Option<String> {
    const DATE: &str = "[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])";
    const TIME: &str =
        "(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)(?:\\.[0-9]+)?(?:[Zz]|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
    const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    const OCTET: &str = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
    let re = match format {
        "date" => DATE.to_string(),
        "time" => TIME.to_string(),
        "date-time" => format!("{DATE}[Tt]{TIME}"),
        "email" => format!(
            "[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+(?:\\.[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~-]+)*@{LABEL}(?:\\.{LABEL})+"
        ),
        "uuid" => "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
            .to_string(),
        "ipv4" => format!("{OCTET}(?:\\.{OCTET}){{3}}"),
        "hostname" => format!("{LABEL}(?:\\.{LABEL})*"),
        "uri" => "[A-Za-z][A-Za-z0-9+.-]*:(?:[A-Za-z0-9._~!$&'()*+,;=:@/?#\\[\\]-]|%[0-9A-Fa-f]{2})*"
            .to_string(),
        _ => return None,
    };
    Some(format!("^(?:{re})$"))
}

/// Compiles the regexes a string must match (JSON Schema `pattern` semantics: a match
/// anywhere in the string, unless the pattern anchors itself) into one DFA over the
/// string's UTF-8 bytes that accepts exactly the strings matching all of them.
fn string_dfa(regexes: &[(String, &str)], path: &str) -> Result<Option<StrDfa>> {
    if regexes.is_empty() {
        return Ok(None);
    }
    if let [_, (_, second), ..] = regexes {
        // Both must hold, and a multi-pattern DFA matches when either does.
        return Err(unenforceable(
            path,
            second,
            "'pattern' and 'format' together on one string",
        ));
    }
    for (re, keyword) in regexes {
        // Parsed alone first, so that wrapping it cannot change its meaning.
        if let Err(e) = regex_automata::util::syntax::parse(re) {
            return Err(bad_value(
                path,
                keyword,
                &Value::String(re.clone()),
                &format!("Not a supported regular expression: {e}"),
            ));
        }
    }
    let wrapped = format!("(?s:.*)(?:{})(?s:.*)", regexes[0].0);
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .start_kind(StartKind::Anchored)
                .dfa_size_limit(Some(DFA_SIZE_LIMIT))
                .determinize_size_limit(Some(DFA_SIZE_LIMIT)),
        )
        .build(&wrapped)
        .map_err(|e| {
            bad_value(
                path,
                regexes[0].1,
                &Value::String(regexes[0].0.clone()),
                &format!("Cannot be compiled to a DFA: {e}"),
            )
        })?;
    let start = dfa
        .start_state(&start::Config::new().anchored(Anchored::Yes))
        .map_err(|e| Error::internal(format!("regex DFA has no anchored start state: {e}")))?;
    let live = live_states(&dfa, start).ok_or_else(|| {
        bad_value(
            path,
            regexes[0].1,
            &Value::String(regexes[0].0.clone()),
            &format!("The regular expression needs more than {MAX_DFA_STATES} DFA states"),
        )
    })?;
    if !live.contains(&start) {
        return Err(bad_value(
            path,
            regexes[0].1,
            &Value::String(regexes[0].0.clone()),
            "No string matches this regular expression",
        ));
    }
    Ok(Some(StrDfa { dfa, start, live }))
}

/// A string regex as a DFA over UTF-8 bytes.
#[derive(Debug)]
struct StrDfa {
    dfa: dense::DFA<Vec<u32>>,
    /// The anchored start state.
    start: StateID,
    /// States from which some continuation reaches a full match. A state the DFA does not
    /// call dead may still be a dead end (e.g. after `.*` before a `^` that can no longer
    /// hold), so masking keeps only live states.
    live: HashSet<StateID>,
}

/// Most DFA states a string regex may have.
const MAX_DFA_STATES: usize = 50_000;

/// The states reachable from `start` that can still reach a match at the end of the
/// string, or None if there are more than [`MAX_DFA_STATES`].
fn live_states(dfa: &dense::DFA<Vec<u32>>, start: StateID) -> Option<HashSet<StateID>> {
    // One byte per equivalence class is enough to see every transition.
    let mut reps: Vec<u8> = Vec::new();
    let mut seen_class = HashSet::new();
    for b in 0..=255u8 {
        if seen_class.insert(dfa.byte_classes().get(b)) {
            reps.push(b);
        }
    }
    let mut index: HashMap<StateID, usize> = HashMap::new();
    let mut states = vec![start];
    let mut preds: Vec<Vec<usize>> = vec![Vec::new()];
    index.insert(start, 0);
    let mut i = 0;
    while i < states.len() {
        let s = states[i];
        for &b in &reps {
            let t = dfa.next_state(s, b);
            if dfa.is_dead_state(t) || dfa.is_quit_state(t) {
                continue;
            }
            let j = match index.get(&t) {
                Some(&j) => j,
                None => {
                    if states.len() >= MAX_DFA_STATES {
                        return None;
                    }
                    index.insert(t, states.len());
                    states.push(t);
                    preds.push(Vec::new());
                    states.len() - 1
                }
            };
            preds[j].push(i);
        }
        i += 1;
    }
    let mut live = vec![false; states.len()];
    let mut stack: Vec<usize> = (0..states.len())
        .filter(|&k| dfa.is_match_state(dfa.next_eoi_state(states[k])))
        .collect();
    for &k in &stack {
        live[k] = true;
    }
    while let Some(k) = stack.pop() {
        for &p in &preds[k] {
            if !live[p] {
                live[p] = true;
                stack.push(p);
            }
        }
    }
    Some(
        states
            .into_iter()
            .zip(live)
            .filter_map(|(s, l)| l.then_some(s))
            .collect(),
    )
}

fn get_f64(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| bad_value(path, key, v, "Must be a number")),
    }
}

fn get_usize(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<usize>> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n.min(usize::MAX as u64) as usize))
            .ok_or_else(|| bad_value(path, key, v, "Must be a non-negative integer")),
    }
}

/// The tighter of `(value, exclusive)` bounds; `upper` picks the smaller value.
fn tighter(a: Option<(f64, bool)>, b: Option<(f64, bool)>, upper: bool) -> Option<(f64, bool)> {
    match (a, b) {
        (Some(x), Some(y)) => Some(if x.0 == y.0 {
            (x.0, x.1 || y.1)
        } else if (x.0 < y.0) == upper {
            x
        } else {
            y
        }),
        (x, y) => x.or(y),
    }
}

fn num_range(obj: &Map<String, Value>, integer: bool, path: &str) -> Result<Option<NumRange>> {
    let bound = |incl: &str, excl: &str| -> Result<Option<(f64, bool)>> {
        let inclusive = get_f64(obj, incl, path)?;
        Ok(match obj.get(excl) {
            // Draft 4: a boolean turns `minimum`/`maximum` exclusive.
            Some(Value::Bool(b)) => inclusive.map(|v| (v, *b)),
            Some(_) => tighter(
                inclusive.map(|v| (v, false)),
                get_f64(obj, excl, path)?.map(|v| (v, true)),
                incl == "maximum",
            ),
            None => inclusive.map(|v| (v, false)),
        })
    };
    let lo = bound("minimum", "exclusiveMinimum")?;
    let hi = bound("maximum", "exclusiveMaximum")?;
    let step = get_f64(obj, "multipleOf", path)?;
    if !integer {
        if let Some(m) = step {
            return Err(unenforceable(
                path,
                "multipleOf",
                &format!("multipleOf {m} is only enforced on integers"),
            ));
        }
        if let (Some(l), Some(h)) = (lo, hi) {
            if l.0 > h.0 || (l.0 == h.0 && (l.1 || h.1)) {
                return Err(bad_value(
                    path,
                    "minimum",
                    &obj.get("minimum")
                        .or(obj.get("exclusiveMinimum"))
                        .cloned()
                        .unwrap_or(Value::Null),
                    "No number lies in the range the schema allows",
                ));
            }
        }
        return Ok((lo.is_some() || hi.is_some()).then_some(NumRange::Float { lo, hi }));
    }
    if lo.is_none() && hi.is_none() && step.is_none() {
        return Ok(None);
    }
    let clamp = |v: f64| v.clamp(-(INT_LIMIT as f64), INT_LIMIT as f64) as i128;
    let ilo = match lo {
        Some((v, true)) => clamp(v.floor()) + 1,
        Some((v, false)) => clamp(v.ceil()),
        None => -INT_LIMIT,
    };
    let ihi = match hi {
        Some((v, true)) => clamp(v.ceil()) - 1,
        Some((v, false)) => clamp(v.floor()),
        None => INT_LIMIT,
    };
    let istep = match step {
        None => 1,
        Some(m) if m >= 1.0 && m.fract() == 0.0 && m < INT_LIMIT as f64 => m as i128,
        Some(m) => {
            return Err(unenforceable(
                path,
                "multipleOf",
                &format!("multipleOf {m} on integers must be a positive integer"),
            ))
        }
    };
    if first_multiple(ilo, istep) > ihi {
        return Err(bad_value(
            path,
            "minimum",
            &Value::String(format!("[{ilo}, {ihi}] step {istep}")),
            "No integer lies in the range the schema allows",
        ));
    }
    Ok(Some(NumRange::Int {
        lo: ilo,
        hi: ihi,
        step: istep,
    }))
}

/// The smallest multiple of `step` (> 0) that is `>= lo`.
fn first_multiple(lo: i128, step: i128) -> i128 {
    lo + (step - lo.rem_euclid(step)) % step
}

fn str_rules(obj: &Map<String, Value>, path: &str) -> Result<Option<StrRules>> {
    let min = get_usize(obj, "minLength", path)?.unwrap_or(0);
    let max = get_usize(obj, "maxLength", path)?.unwrap_or(usize::MAX);
    if min > max {
        return Err(bad_value(
            path,
            "minLength",
            &Value::from(min as u64),
            "minLength is larger than maxLength",
        ));
    }
    let mut regexes = Vec::new();
    if let Some(p) = obj.get("pattern") {
        let p = p
            .as_str()
            .ok_or_else(|| bad_value(path, "pattern", p, "Must be a string"))?;
        regexes.push((p.to_string(), "pattern"));
    }
    if let Some(f) = obj.get("format") {
        let name = f
            .as_str()
            .ok_or_else(|| bad_value(path, "format", f, "Must be a string"))?;
        let re = format_regex(name).ok_or_else(|| {
            unenforceable(
                path,
                "format",
                &format!(
                    "format '{name}' is not enforced; supported: date, time, date-time, email, uuid, ipv4, hostname, uri"
                ),
            )
        })?;
        regexes.push((re, "format"));
    }
    let dfa = string_dfa(&regexes, path)?;
    Ok((dfa.is_some() || min > 0 || max < usize::MAX).then_some(StrRules { dfa, min, max }))
}

fn compile(schema: &Value, root: &Value, depth: usize, path: &str) -> Result<Arc<Node>> {
    if depth > 32 {
        return Err(Error::invalid_param(
            PARAM,
            path,
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
                Error::invalid_param(PARAM, r, "Only local $refs (#/$defs/...) are supported")
            })?;
        return compile(target, root, depth + 1, r);
    }
    for key in UNENFORCEABLE {
        if obj.contains_key(*key) {
            return Err(unenforceable(
                path,
                key,
                "this keyword is not supported by inline::candle",
            ));
        }
    }
    if obj
        .get("uniqueItems")
        .is_some_and(|v| v == &Value::Bool(true))
    {
        return Err(unenforceable(
            path,
            "uniqueItems",
            "unique array items are not enforced",
        ));
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
                rules: None,
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
                .enumerate()
                .map(|(i, a)| compile(a, root, depth + 1, &format!("{path}/{key}/{i}")))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Arc::new(Node::Union(nodes)));
        }
    }
    if let Some(Value::Array(all)) = obj.get("allOf") {
        if all.len() == 1 {
            return compile(&all[0], root, depth + 1, &format!("{path}/allOf/0"));
        }
        return Err(unenforceable(
            path,
            "allOf",
            "only a one-element allOf is supported",
        ));
    }
    let has = |keys: &[&str]| keys.iter().any(|k| obj.contains_key(*k));
    let types: Vec<&str> = match obj.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        // Without a `type`, keywords of one type narrow the value to that type (stricter
        // than JSON Schema, which lets values of other types pass, but always valid).
        _ if has(&["properties", "minProperties", "maxProperties"]) => vec!["object"],
        _ if has(&["items", "minItems", "maxItems"]) => vec!["array"],
        _ if has(&["pattern", "format", "minLength", "maxLength"]) => vec!["string"],
        _ if has(&[
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
        ]) =>
        {
            vec!["number"]
        }
        _ => return Ok(Arc::new(Node::Any)),
    };
    let mut nodes = Vec::new();
    for t in types {
        nodes.push(Arc::new(match t {
            "object" => {
                let mut props = Vec::new();
                if let Some(Value::Object(p)) = obj.get("properties") {
                    for (k, v) in p {
                        let at = format!("{path}/properties/{k}");
                        props.push((k.clone(), compile(v, root, depth + 1, &at)?));
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
                    Some(Value::Bool(true)) => Some(Arc::new(Node::Any)),
                    Some(v @ Value::Object(_)) => Some(compile(
                        v,
                        root,
                        depth + 1,
                        &format!("{path}/additionalProperties"),
                    )?),
                    _ if props.is_empty() => Some(Arc::new(Node::Any)),
                    _ => None,
                };
                let min_props = get_usize(obj, "minProperties", path)?.unwrap_or(0);
                let max_props = get_usize(obj, "maxProperties", path)?.unwrap_or(usize::MAX);
                let most = if additional.is_some() {
                    usize::MAX
                } else {
                    props.len()
                };
                if min_props > max_props.min(most) {
                    return Err(bad_value(
                        path,
                        "minProperties",
                        &Value::from(min_props as u64),
                        "More properties are required than the object may have",
                    ));
                }
                Node::Object {
                    props,
                    required,
                    additional,
                    min_props,
                    max_props,
                }
            }
            "array" => {
                if let Some(items @ Value::Array(_)) = obj.get("items") {
                    return Err(unenforceable(
                        &format!("{path}/items"),
                        "items",
                        &format!("tuple items {items} are not supported"),
                    ));
                }
                Node::Array {
                    items: match obj.get("items") {
                        Some(i) => compile(i, root, depth + 1, &format!("{path}/items"))?,
                        None => Arc::new(Node::Any),
                    },
                    min: get_usize(obj, "minItems", path)?.unwrap_or(0),
                    max: get_usize(obj, "maxItems", path)?.unwrap_or(usize::MAX),
                }
            }
            "string" => Node::Str {
                choices: None,
                rules: str_rules(obj, path)?.map(Arc::new),
            },
            "integer" => Node::Num {
                integer: true,
                range: num_range(obj, true, path)?.map(Arc::new),
            },
            "number" => Node::Num {
                integer: false,
                range: num_range(obj, false, path)?.map(Arc::new),
            },
            "boolean" => Node::Bool,
            "null" => Node::Null,
            other => {
                return Err(Error::invalid_param(
                    PARAM,
                    format_args!("type '{other}' at '{path}'"),
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

impl NumRange {
    /// Whether the complete number `text` lies in the range.
    fn contains(&self, text: &str) -> bool {
        match self {
            NumRange::Int { lo, hi, step } => text
                .parse::<i128>()
                .is_ok_and(|v| *lo <= v && v <= *hi && v.rem_euclid(*step) == 0),
            NumRange::Float { lo, hi } => text
                .parse::<f64>()
                .is_ok_and(|v| overlaps((v, true), (v, true), *lo, *hi)),
        }
    }

    /// Whether the number prefix `text` (a sign and digits, maybe a point and digits) can
    /// still be completed, with at most `budget` more characters, to a number in range.
    fn reachable(&self, text: &str, budget: usize) -> bool {
        let (neg, body) = match text.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, text),
        };
        match self {
            NumRange::Int { lo, hi, step } => {
                // Magnitudes [a, b] reachable by appending digits, as signed values.
                let hits = |a: i128, b: i128| {
                    let (l, h) = if neg { (-b, -a) } else { (a, b) };
                    let l = l.max(*lo);
                    l <= h.min(*hi) && first_multiple(l, *step) <= h.min(*hi)
                };
                if body.is_empty() {
                    return (1..=budget as u32)
                        .filter_map(|k| 10i128.checked_pow(k))
                        .any(|p| hits(0, p - 1));
                }
                if body == "0" {
                    return hits(0, 0);
                }
                let Ok(v) = body.parse::<i128>() else {
                    return false;
                };
                (0..=budget as u32)
                    .filter_map(|k| {
                        let p = 10i128.checked_pow(k)?;
                        let a = v.checked_mul(p)?;
                        Some((a, a.checked_add(p - 1)?))
                    })
                    .any(|(a, b)| hits(a, b))
            }
            NumRange::Float { lo, hi } => {
                // Magnitudes [a, b) reachable by appending digits (and maybe a fraction).
                let mut ivs = Vec::new();
                if body.is_empty() {
                    ivs.push((0.0, 10f64.powi(budget as i32)));
                } else if let Some((int, frac)) = body.split_once('.') {
                    let Ok(x) = (if frac.is_empty() { int } else { body }).parse::<f64>() else {
                        return false;
                    };
                    ivs.push((x, x + 10f64.powi(-(frac.len() as i32))));
                } else if body == "0" {
                    ivs.push((0.0, 1.0));
                } else {
                    let Ok(v) = body.parse::<f64>() else {
                        return false;
                    };
                    for k in 0..=budget as i32 {
                        let p = 10f64.powi(k);
                        ivs.push((v * p, (v + 1.0) * p));
                    }
                }
                ivs.into_iter().any(|(a, b)| {
                    if neg {
                        overlaps((-b, false), (-a, true), *lo, *hi)
                    } else {
                        overlaps((a, true), (b, false), *lo, *hi)
                    }
                })
            }
        }
    }
}

/// Whether the interval from `from` to `to` (`(value, inclusive)`) meets the range with
/// bounds `lo`/`hi` (`(value, exclusive)`).
fn overlaps(
    from: (f64, bool),
    to: (f64, bool),
    lo: Option<(f64, bool)>,
    hi: Option<(f64, bool)>,
) -> bool {
    let (mut l, mut l_in) = from;
    let (mut h, mut h_in) = to;
    if let Some((m, excl)) = lo {
        if m > l {
            (l, l_in) = (m, !excl);
        } else if m == l {
            l_in &= !excl;
        }
    }
    if let Some((m, excl)) = hi {
        if m < h {
            (h, h_in) = (m, !excl);
        } else if m == h {
            h_in &= !excl;
        }
    }
    l < h || (l == h && l_in && h_in)
}

impl StrRules {
    /// Adds one decoded character to a string of `len` characters in DFA state `dfa`.
    fn push(&self, len: &mut usize, dfa: &mut StateID, c: char) -> bool {
        if *len >= self.max {
            return false;
        }
        *len += 1;
        if let Some(d) = &self.dfa {
            let mut buf = [0u8; 4];
            for &b in c.encode_utf8(&mut buf).as_bytes() {
                *dfa = d.dfa.next_state(*dfa, b);
                if !d.live.contains(dfa) {
                    return false;
                }
            }
        }
        true
    }

    /// Whether a string of `len` characters ending in DFA state `dfa` may close.
    fn accepts(&self, len: usize, dfa: StateID) -> bool {
        len >= self.min
            && self
                .dfa
                .as_ref()
                .is_none_or(|d| d.dfa.is_match_state(d.dfa.next_eoi_state(dfa)))
    }

    fn start(&self) -> StateID {
        self.dfa.as_ref().map_or(StateID::ZERO, |d| d.start)
    }
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
    /// Hex digits read so far and their value.
    Unicode(u8, u32),
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
        rules: Option<Arc<StrRules>>,
        buf: String,
        esc: Esc,
        /// Decoded characters so far.
        len: usize,
        /// State of `rules`' DFA.
        dfa: StateID,
    },
    Num {
        integer: bool,
        range: Option<Arc<NumRange>>,
        st: NumSt,
        text: String,
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
            Frame::Num {
                st, range, text, ..
            } => {
                matches!(st, NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::Exp)
                    && range.as_ref().is_none_or(|r| r.contains(text))
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
        Node::Object {
            required,
            min_props,
            ..
        } => seen.len() >= *min_props && required.iter().all(|r| seen.contains(r)),
        _ => true,
    }
}

fn more_keys_possible(node: &Node, seen: &[String]) -> bool {
    match node {
        Node::Object {
            props,
            additional,
            max_props,
            ..
        } => {
            seen.len() < *max_props
                && (additional.is_some() || props.iter().any(|(k, _)| !seen.contains(k)))
        }
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
                        min_props: 0,
                        max_props: usize::MAX,
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
                '"' => open(
                    &Arc::new(Node::Str {
                        choices: None,
                        rules: None,
                    }),
                    c,
                ),
                '-' | '0'..='9' => open(
                    &Arc::new(Node::Num {
                        integer: false,
                        range: None,
                    }),
                    c,
                ),
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
        Node::Str { choices, rules } => (c == '"').then(|| Frame::Str {
            choices: choices.clone().map(Arc::new),
            rules: rules.clone(),
            buf: String::new(),
            esc: Esc::None,
            len: 0,
            dfa: rules.as_ref().map_or(StateID::ZERO, |r| r.start()),
        }),
        Node::Num { integer, range } => {
            let st = match c {
                '-' => NumSt::Minus,
                '0' => NumSt::Zero,
                '1'..='9' => NumSt::Int,
                _ => return None,
            };
            let text = c.to_string();
            if range
                .as_ref()
                .is_some_and(|r| !r.reachable(&text, MAX_NUMBER_CHARS - 1))
            {
                return None;
            }
            Some(Frame::Num {
                integer: *integer,
                range: range.clone(),
                st,
                text,
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
        Frame::Str {
            choices,
            rules,
            buf,
            esc,
            len,
            dfa,
        } => {
            // The decoded character this input completes, if any.
            let decoded = match (*esc, c) {
                // A regex sees whole characters: `\uXXXX` could reach a dead end only
                // at its last digit, so strings with a pattern use the short escapes.
                (Esc::Backslash, 'u') if rules.as_ref().is_some_and(|r| r.dfa.is_some()) => {
                    return (Step::Reject, None);
                }
                (Esc::Backslash, 'u') => {
                    *esc = Esc::Unicode(0, 0);
                    return (Step::Open, None);
                }
                (Esc::Backslash, c) => {
                    let Some(d) = (match c {
                        '"' | '\\' | '/' => Some(c),
                        'b' => Some('\u{8}'),
                        'f' => Some('\u{c}'),
                        'n' => Some('\n'),
                        'r' => Some('\r'),
                        't' => Some('\t'),
                        _ => None,
                    }) else {
                        return (Step::Reject, None);
                    };
                    *esc = Esc::None;
                    d
                }
                (Esc::Unicode(n, code), c) => {
                    let Some(digit) = c.to_digit(16) else {
                        return (Step::Reject, None);
                    };
                    let code = code * 16 + digit;
                    if n < 3 {
                        *esc = Esc::Unicode(n + 1, code);
                        return (Step::Open, None);
                    }
                    *esc = Esc::None;
                    match char::from_u32(code) {
                        Some(d) => d,
                        // A surrogate: half a character. Counted once (on the high
                        // half); a DFA cannot see it, so patterns refuse it.
                        None => {
                            return match rules {
                                Some(r) if r.dfa.is_some() => (Step::Reject, None),
                                Some(r) if (0xD800..0xDC00).contains(&code) => {
                                    if r.push(len, dfa, ' ') {
                                        (Step::Open, None)
                                    } else {
                                        (Step::Reject, None)
                                    }
                                }
                                _ => (Step::Open, None),
                            };
                        }
                    }
                }
                (Esc::None, '"') => {
                    let ok = match choices {
                        Some(cs) => cs.iter().any(|s| s == buf),
                        None => rules.as_ref().is_none_or(|r| r.accepts(*len, *dfa)),
                    };
                    return if ok {
                        (Step::Closed, None)
                    } else {
                        (Step::Reject, None)
                    };
                }
                (Esc::None, '\\') if choices.is_none() => {
                    // Only if some escaped character can follow.
                    let viable = rules.as_ref().is_none_or(|r| {
                        ['"', '\\', '/', '\u{8}', '\u{c}', '\n', '\r', '\t']
                            .iter()
                            .any(|&e| r.push(&mut len.clone(), &mut dfa.clone(), e))
                    });
                    if !viable {
                        return (Step::Reject, None);
                    }
                    *esc = Esc::Backslash;
                    return (Step::Open, None);
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
                    c
                }
            };
            match rules {
                Some(r) if !r.push(len, dfa, decoded) => (Step::Reject, None),
                _ => (Step::Open, None),
            }
        }
        Frame::Num {
            integer,
            range,
            st,
            text,
        } => {
            let next = match (*st, c) {
                (NumSt::Minus, '0') => NumSt::Zero,
                (NumSt::Minus, '1'..='9') => NumSt::Int,
                (NumSt::Int, '0'..='9') => NumSt::Int,
                (NumSt::Zero | NumSt::Int, '.') if !*integer => NumSt::Dot,
                (NumSt::Dot | NumSt::Frac, '0'..='9') => NumSt::Frac,
                // Bounded numbers are written without an exponent.
                (NumSt::Zero | NumSt::Int | NumSt::Frac, 'e' | 'E')
                    if !*integer && range.is_none() =>
                {
                    NumSt::E
                }
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
            if text.len() >= MAX_NUMBER_CHARS {
                return (Step::Reject, None);
            }
            text.push(c);
            if let Some(r) = range {
                if !r.reachable(text, MAX_NUMBER_CHARS - text.len()) {
                    text.pop();
                    return (Step::Reject, None);
                }
            }
            *st = next;
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
        let root = compile(schema, schema, 0, "#")?;
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
        let root = compile(&schema, &schema, 0, "#").unwrap_or_else(|e| panic!("{e}"));
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

    /// Whether `text` can still be continued to JSON valid under `schema`.
    fn viable(schema: &Value, text: &str) -> bool {
        let root = compile(schema, schema, 0, "#").unwrap_or_else(|e| panic!("{e}"));
        let mut s = State::new(root);
        text.chars().all(|c| s.step(c))
    }

    /// Checks complete texts (`ok`) and prefixes (`viable`) against `schema`.
    fn check(schema: Value, ok: &[&str], bad: &[&str], viable_prefixes: &[&str], dead: &[&str]) {
        for t in ok {
            assert!(accepts(schema.clone(), t), "{schema} must accept {t}");
        }
        for t in bad {
            assert!(!accepts(schema.clone(), t), "{schema} must refuse {t}");
        }
        for t in viable_prefixes {
            assert!(viable(&schema, t), "{schema} must let {t} continue");
        }
        for t in dead {
            assert!(!viable(&schema, t), "{schema} must stop {t}");
        }
    }

    fn refused(schema: Value) -> String {
        match compile(&schema, &schema, 0, "#") {
            Ok(_) => panic!("{schema} must be refused"),
            Err(e) => {
                assert_eq!(e.kind(), llama_stack_core::ErrorKind::InvalidRequest);
                e.message().to_string()
            }
        }
    }

    #[test]
    fn string_patterns_follow_json_schema_semantics() {
        // Anchored by the pattern itself.
        check(
            json!({"type": "string", "pattern": "^[A-Z]{3}-[0-9]{3}$"}),
            &[r#""ABC-123""#],
            &[r#""AB-123""#, r#""ABC-1234""#, r#""abc-123""#],
            &[r#""AB"#, r#""ABC-12"#],
            &[r#""A1"#, r#""ABC-1234"#, r#""ABC-123x"#],
        );
        // Unanchored: a match anywhere.
        check(
            json!({"type": "string", "pattern": "ab+c"}),
            &[r#""abc""#, r#""xxabbbcyy""#],
            &[r#""ac""#, r#""""#],
            &[r#""zzz"#],
            &[],
        );
        // Escapes are decoded before matching.
        check(
            json!({"type": "string", "pattern": "^a\"\\\\b\n$"}),
            &[r#""a\"\\b\n""#],
            &[r#""a\"\\bn""#, r#""a\u0022\\b\n""#],
            &[],
            &[r#""a\t"#],
        );
        // A backslash only where some escaped character fits the pattern.
        check(
            json!({"type": "string", "pattern": "^[a-z]+$"}),
            &[],
            &[],
            &[r#""ab"#],
            &[r#""ab\"#],
        );
        // Unicode: one character, several UTF-8 bytes.
        check(
            json!({"type": "string", "pattern": "^é.$"}),
            &["\"é日\""],
            &["\"e日\"", "\"é日本\""],
            &[],
            &["\"é日本"],
        );
    }

    #[test]
    fn string_formats_are_enforced() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "date",
                &["2024-02-29", "1999-12-31"],
                &["2024-13-01", "2024-1-01", "24-01-01"],
            ),
            (
                "time",
                &["23:59:60Z", "08:30:00.25+02:00"],
                &["24:00:00Z", "08:30:00", "8:30:00Z"],
            ),
            (
                "date-time",
                &["2024-05-01T10:00:00Z", "2024-05-01t10:00:00-05:30"],
                &["2024-05-01 10:00:00Z", "2024-05-01T10:00Z"],
            ),
            (
                "email",
                &["a.b+c@example.com", "x@y.io"],
                &["a@b", ".a@b.com", "a@@b.com", "a b@c.de"],
            ),
            (
                "uuid",
                &["123e4567-e89b-12d3-a456-426614174000"],
                &[
                    "123e4567e89b12d3a456426614174000",
                    "123e4567-e89b-12d3-a456-42661417400g",
                ],
            ),
            (
                "ipv4",
                &["192.168.0.1", "0.0.0.0", "255.255.255.255"],
                &["256.1.1.1", "1.2.3", "01.2.3.4"],
            ),
            ("hostname", &["example.com", "a-b.c"], &["-a.com", "a..b"]),
            (
                "uri",
                &["https://x.y/z?a=1#f", "urn:isbn:123"],
                &["no scheme", "1http://x", "http://a b"],
            ),
        ];
        for (format, good, bad) in cases {
            let schema = json!({"type": "string", "format": format});
            let quote = |s: &&str| format!("\"{s}\"");
            let good: Vec<String> = good.iter().map(quote).collect();
            let bad: Vec<String> = bad.iter().map(quote).collect();
            check(
                schema,
                &good.iter().map(String::as_str).collect::<Vec<_>>(),
                &bad.iter().map(String::as_str).collect::<Vec<_>>(),
                &[],
                &[],
            );
        }
        check(
            json!({"type": "string", "format": "date"}),
            &[],
            &[],
            &[r#""2024-0"#],
            &[r#""2024-2"#, r#""202a"#],
        );
    }

    #[test]
    fn string_lengths_count_characters() {
        check(
            json!({"type": "string", "minLength": 2, "maxLength": 3}),
            &[
                r#""ab""#,
                r#""abc""#,
                r#""\n\t""#,
                "\"日本語\"",
                r#""\ud83d\ude00x""#,
            ],
            &[r#""a""#, r#""""#, r#""abcd""#],
            &[r#""abc"#],
            &[r#""abcd"#, r#""ab\n\t"#],
        );
        // Length with a pattern: both hold.
        check(
            json!({"type": "string", "pattern": "^[a-z]+$", "maxLength": 4}),
            &[r#""abcd""#],
            &[r#""abcde""#, r#""""#],
            &[],
            &[r#""abcde"#],
        );
    }

    #[test]
    fn integer_ranges_and_steps() {
        check(
            json!({"type": "integer", "minimum": 10, "maximum": 250}),
            &["10", "99", "250"],
            &["9", "251", "-5", "0", "1000"],
            &["1", "2", "25", "3"],
            &["-", "0", "260", "2500", "3.0"],
        );
        check(
            json!({"type": "integer", "exclusiveMinimum": -20, "exclusiveMaximum": -10}),
            &["-19", "-11"],
            &["-20", "-10", "-5", "5"],
            &["-", "-1"],
            &["1", "-2", "-3", "-21", "-0"],
        );
        check(
            json!({"type": "integer", "minimum": 0, "exclusiveMaximum": 100, "multipleOf": 7}),
            &["0", "7", "98"],
            &["99", "105", "8"],
            &["9", "8", "-"],
            &["10", "99"],
        );
        // Fractional bounds round inwards; draft-4 boolean exclusivity.
        check(
            json!({"type": "integer", "minimum": 1.5, "maximum": 3, "exclusiveMaximum": true}),
            &["2"],
            &["1", "3"],
            &[],
            &[],
        );
        // Inside an object: a number ends before the delimiter the object accepts.
        check(
            json!({"type": "object", "properties": {"n": {"type": "integer", "maximum": 5}}, "required": ["n"]}),
            &[r#"{"n":5}"#, r#"{"n":-7}"#],
            &[r#"{"n":6}"#],
            &[],
            &[r#"{"n":6"#, r#"{"n":50"#],
        );
    }

    #[test]
    fn number_ranges_keep_only_prefixes_that_can_end_inside() {
        check(
            json!({"type": "number", "minimum": 0.5, "exclusiveMaximum": 2.5}),
            &["0.5", "1", "2.49999", "0.75"],
            &["0.4", "2.5", "3", "-1", "1e0", "0.49999"],
            &["0", "0.", "0.5", "2", "2.4"],
            &["0.4", "2.5", "-", "3", "1e", "25"],
        );
        check(
            json!({"type": "number", "maximum": -1.25}),
            &["-1.25", "-2", "-100.5"],
            &["-1.2", "0", "-1"],
            &["-", "-1", "-1.2"],
            &["1", "-0", "-1.1", "-1.24", "-0.", "-1.0"],
        );
    }

    #[test]
    fn object_property_counts_and_additional_properties() {
        check(
            json!({"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 1, "maxProperties": 2}),
            &[r#"{"a":1}"#, r#"{"a":1,"b":2}"#],
            &["{}", r#"{"a":"x"}"#, r#"{"a":1,"b":2,"c":3}"#],
            &[r#"{"a":1,"b":2"#],
            &[r#"{"a":1,"b":2,"#, r#"{"a":1.5"#],
        );
        check(
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": true}),
            &[r#"{"a":1,"b":[true]}"#],
            &[r#"{"a":"x"}"#],
            &[],
            &[],
        );
        check(
            json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string", "maxLength": 1}}),
            &[r#"{"a":1,"b":"x"}"#],
            &[r#"{"b":1}"#, r#"{"b":"xy"}"#],
            &[],
            &[],
        );
    }

    #[test]
    fn unenforceable_keywords_are_refused_by_name_and_path() {
        let cases = [
            (
                json!({"type": "object", "properties": {"a": {"not": {"type": "null"}}}}),
                "'not'",
                "#/properties/a",
            ),
            (
                json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true}),
                "'uniqueItems'",
                "'#'",
            ),
            (
                json!({"type": "string", "format": "ipv6"}),
                "ipv6",
                "'format'",
            ),
            (
                json!({"type": "string", "pattern": "a(?=b)"}),
                "'pattern'",
                "a(?=b)",
            ),
            (
                json!({"type": "string", "pattern": "^a", "format": "date"}),
                "'format'",
                "'#'",
            ),
            (
                json!({"allOf": [{"type": "string"}, {"minLength": 1}]}),
                "'allOf'",
                "'#'",
            ),
            (
                json!({"type": "number", "multipleOf": 0.5}),
                "'multipleOf'",
                "'#'",
            ),
            (
                json!({"type": "object", "patternProperties": {"^x": {}}}),
                "'patternProperties'",
                "'#'",
            ),
            (
                json!({"type": "integer", "minimum": 5, "maximum": 4}),
                "minimum",
                "No integer",
            ),
            (
                json!({"type": "array", "items": [{"type": "integer"}]}),
                "'items'",
                "#/items",
            ),
            (
                json!({"anyOf": [{"type": "string", "minLength": 3, "maxLength": 2}]}),
                "'minLength'",
                "#/anyOf/0",
            ),
        ];
        for (schema, a, b) in cases {
            let msg = refused(schema.clone());
            assert!(msg.contains(a) && msg.contains(b), "{schema}: {msg}");
        }
        // Annotations and unknown keywords are fine.
        assert!(accepts(
            json!({"type": "string", "title": "t", "description": "d", "default": "x", "x-extra": 1}),
            r#""y""#
        ));
        assert!(accepts(
            json!({"uniqueItems": false, "type": "array"}),
            "[1,1]"
        ));
    }
}
