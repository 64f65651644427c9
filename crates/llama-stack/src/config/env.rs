//! `${env.NAME}` substitution over a parsed run config, with Llama Stack's exact rules.
//!
//! Applied once, by the loader, to every string of the parsed YAML tree before the typed
//! config is read:
//!
//! | Form | `NAME` set (present and non-empty) | `NAME` unset or empty |
//! |---|---|---|
//! | `${env.NAME}` | its value | error naming the variable and the config path |
//! | `${env.NAME:=d}` | its value | `d` (`${env.NAME:=}` gives the empty string) |
//! | `${env.NAME:+a}` | `a` (`${env.NAME:+}` gives the empty string) | the empty string |
//!
//! `NAME` is `[A-Z0-9_]+` (lower-case names are not placeholders and stay literal); the
//! default/alternative text is `[^}]*`, so placeholders do not nest. Several placeholders in
//! one string are substituted independently. A substituted piece starting with `~` has the
//! home directory expanded (`~` and `~/…` only: `~user` stays literal; the home directory is
//! the `HOME` variable of the given environment, else the platform's).
//!
//! Only a string that changed is converted, as a whole: `""` → `null`, `true`/`false` (any
//! case) → bool, an integer by Python's `int()` rules (surrounding whitespace, a sign and `_`
//! between digits allowed) → int, a float by Python's `float()` rules (`1e3`, `.5`) → float,
//! anything else stays a string. JSON cannot hold `inf`/`nan`, nor integers outside
//! `i64`/`u64`: such results stay strings (Llama Stack would produce a float or a big int).
//!
//! List and mapping rules, as in Llama Stack:
//! - In any list, a mapping whose `provider_id` resolves to `__disabled__` is removed
//!   without expanding its other fields. A `provider_id` that resolves to the empty string
//!   becomes `null` (the provider stays listed but disabled) and the rest of the entry is
//!   still expanded.
//! - In the lists of `registered_resources`, an entry whose `vector_store_id`, `model_id`,
//!   `shield_id`, `dataset_id`, `scoring_fn_id` or `benchmark_id` resolves to empty or `null`
//!   is dropped, and so is one whose `provider_id` placeholder resolves to empty (Llama Stack
//!   skips registering those; dropping them here keeps [`StackConfig::validate`] quiet about
//!   conditional resources such as the starter's shields).
//! - Under `server.auth`, a `provider_config` whose `type` resolves to empty or `null`
//!   becomes `null` (authentication off) without expanding its other fields.
//!
//! [`StackConfig::validate`]: super::StackConfig::validate

use std::sync::LazyLock;

use llama_stack_core::{Error, Result};
use regex::{Captures, Regex};
use serde_json::{Number, Value};

/// How substitution reads the environment: `Some(value)` when the variable is present.
///
/// [`process_env`] reads the real process environment; tests pass a closure over a map.
pub type EnvFn<'a> = dyn Fn(&str) -> Option<String> + 'a;

/// Reads a variable of the process environment (a non-UTF-8 value counts as absent).
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The `provider_id` value that removes a provider entry from its list.
pub const DISABLED: &str = "__disabled__";

/// Id fields of `registered_resources` entries; an entry whose id resolves empty is dropped.
const RESOURCE_ID_FIELDS: [&str; 6] = [
    "vector_store_id",
    "model_id",
    "shield_id",
    "dataset_id",
    "scoring_fn_id",
    "benchmark_id",
];

#[allow(
    clippy::expect_used,
    reason = "a constant pattern, exercised by every substitution test"
)]
static PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\{env\.([A-Z0-9_]+)(?::([=+])([^}]*))?\}").expect("valid placeholder regex")
});

/// Substitutes every `${env.*}` placeholder in `value` (a parsed run config) and applies the
/// list and mapping rules of the module docs.
///
/// Errors name the config path of the failing string, e.g.
/// `providers.inference[0].config.api_key: environment variable OPENAI_API_KEY is not set (use ${env.OPENAI_API_KEY:=default} to give a default)`.
pub fn substitute(value: Value, env: &EnvFn<'_>) -> Result<Value> {
    Substitution { env }.value(value, "")
}

/// Substitutes the placeholders of one string, with the same conversion of the result
/// (a string that contains no placeholder comes back unchanged, as a string).
pub fn substitute_str(s: &str, env: &EnvFn<'_>) -> Result<Value> {
    Substitution { env }.string(s.to_owned(), "")
}

/// `path.key`, or `key` at the top level.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() {
        "(top level)"
    } else {
        path
    }
}

fn is_empty(v: &Value) -> bool {
    v.is_null() || v.as_str() == Some("")
}

/// `registered_resources.<kind>`: a list whose entries the resource-id rule applies to.
fn is_resource_list(path: &str) -> bool {
    path.strip_prefix("registered_resources.")
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(['.', '[']))
}

struct Substitution<'a> {
    env: &'a EnvFn<'a>,
}

impl Substitution<'_> {
    fn value(&self, value: Value, path: &str) -> Result<Value> {
        match value {
            Value::String(s) => self.string(s, path),
            Value::Array(items) => self.list(items, path),
            Value::Object(map) => {
                let auth = path == "server.auth";
                let mut out = serde_json::Map::new();
                for (key, v) in map {
                    let p = join(path, &key);
                    let v = if auth && key == "provider_config" && self.auth_disabled(&v, &p) {
                        tracing::debug!(path = %p, "auth provider type resolved empty: authentication off");
                        Value::Null
                    } else {
                        self.value(v, &p)?
                    };
                    out.insert(key, v);
                }
                Ok(Value::Object(out))
            }
            other => Ok(other),
        }
    }

    fn list(&self, items: Vec<Value>, path: &str) -> Result<Value> {
        let resources = is_resource_list(path);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let p = format!("{path}[{i}]");
            if self.drop_entry(&item, &p, resources) {
                continue;
            }
            out.push(self.value(item, &p)?);
        }
        Ok(Value::Array(out))
    }

    /// Resolves `field` of an entry ahead of the rest; `None` if absent or failing (the
    /// failure is then reported by the normal pass).
    fn peek(
        &self,
        entry: &serde_json::Map<String, Value>,
        field: &str,
        path: &str,
    ) -> Option<Value> {
        let v = entry.get(field)?;
        self.value(v.clone(), &join(path, field)).ok()
    }

    fn drop_entry(&self, item: &Value, path: &str, resources: bool) -> bool {
        let Value::Object(entry) = item else {
            return false;
        };
        if let Some(id) = self.peek(entry, "provider_id", path) {
            if id.as_str() == Some(DISABLED) {
                tracing::debug!(path, "provider_id is __disabled__: entry removed");
                return true;
            }
            if resources && is_empty(&id) && entry.get("provider_id") != Some(&id) {
                tracing::debug!(path, "provider_id resolved empty: resource not registered");
                return true;
            }
        }
        if resources {
            for field in RESOURCE_ID_FIELDS {
                if self
                    .peek(entry, field, path)
                    .is_some_and(|id| is_empty(&id))
                {
                    tracing::debug!(path, field, "resource id resolved empty: entry dropped");
                    return true;
                }
            }
        }
        false
    }

    fn auth_disabled(&self, provider_config: &Value, path: &str) -> bool {
        match provider_config {
            Value::Object(pc) => {
                pc.contains_key("type") && self.peek(pc, "type", path).is_some_and(|t| is_empty(&t))
            }
            _ => false,
        }
    }

    fn string(&self, s: String, path: &str) -> Result<Value> {
        let mut out = String::with_capacity(s.len());
        let mut last = 0;
        for caps in PLACEHOLDER.captures_iter(&s) {
            let Some(whole) = caps.get(0) else { continue };
            out.push_str(&s[last..whole.start()]);
            out.push_str(&self.resolve(&caps, path)?);
            last = whole.end();
        }
        if last == 0 {
            return Ok(Value::String(s));
        }
        out.push_str(&s[last..]);
        if out == s {
            return Ok(Value::String(s));
        }
        Ok(convert(out))
    }

    fn resolve(&self, caps: &Captures<'_>, path: &str) -> Result<String> {
        let name = caps.get(1).map_or("", |m| m.as_str());
        let text = caps.get(3).map_or("", |m| m.as_str());
        let set = (self.env)(name).filter(|v| !v.is_empty());
        Ok(match (caps.get(2).map(|m| m.as_str()), set) {
            (Some("="), Some(value)) | (None, Some(value)) => self.expand_home(value),
            (Some("="), None) | (Some(_), Some(_)) if text.is_empty() => String::new(),
            (Some("="), None) | (Some(_), Some(_)) => self.expand_home(text.to_owned()),
            (Some(_), None) => String::new(),
            (None, None) => {
                return Err(Error::config(format!(
                    "{}: environment variable {name} is not set (use ${{env.{name}:=default}} to give a default)",
                    shown(path)
                )))
            }
        })
    }

    /// Python's `os.path.expanduser` for `~` and `~/…`.
    fn expand_home(&self, value: String) -> String {
        let Some(rest) = value.strip_prefix('~') else {
            return value;
        };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return value; // `~user`: not expanded
        }
        let home = (self.env)("HOME")
            .filter(|h| !h.is_empty())
            .or_else(|| dirs::home_dir().map(|h| h.to_string_lossy().into_owned()));
        let Some(home) = home else {
            return value;
        };
        let joined = format!("{}{rest}", home.trim_end_matches('/'));
        if joined.is_empty() {
            "/".to_owned()
        } else {
            joined
        }
    }
}

/// The conversion of a changed string (see the module docs).
fn convert(s: String) -> Value {
    if s.is_empty() {
        return Value::Null;
    }
    if s.eq_ignore_ascii_case("true") {
        return Value::Bool(true);
    }
    if s.eq_ignore_ascii_case("false") {
        return Value::Bool(false);
    }
    match python_int(&s) {
        Some(Some(n)) => return Value::Number(n),
        Some(None) => return Value::String(s), // an integer JSON cannot hold
        None => {}
    }
    match python_float(&s) {
        Some(f) => Number::from_f64(f).map_or(Value::String(s), Value::Number),
        None => Value::String(s),
    }
}

/// Whether `_` only ever sits between two ASCII digits (PEP 515).
fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().all(|(i, &c)| {
        c != b'_'
            || (i > 0
                && b[i - 1].is_ascii_digit()
                && b.get(i + 1).is_some_and(|n| n.is_ascii_digit()))
    })
}

/// Python `int(s)`: `None` if not an integer, `Some(None)` if one too large for JSON.
fn python_int(s: &str) -> Option<Option<Number>> {
    let t = s.trim();
    let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit() || c == b'_')
        || !underscores_ok(digits)
    {
        return None;
    }
    let clean: String = t.chars().filter(|&c| c != '_').collect();
    let clean = clean.strip_prefix('+').unwrap_or(&clean);
    Some(
        clean
            .parse::<i64>()
            .map(Number::from)
            .or_else(|_| clean.parse::<u64>().map(Number::from))
            .ok(),
    )
}

/// Python `float(s)` (including `inf`, `infinity` and `nan` in any case).
fn python_float(s: &str) -> Option<f64> {
    let t = s.trim();
    let body = t.strip_prefix(['+', '-']).unwrap_or(t);
    let word = ["inf", "infinity", "nan"]
        .iter()
        .any(|w| body.eq_ignore_ascii_case(w));
    if !word {
        let chars_ok = body
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'_' | b'.' | b'e' | b'E' | b'+' | b'-'));
        if !chars_ok || !body.bytes().any(|c| c.is_ascii_digit()) || !underscores_ok(body) {
            return None;
        }
    }
    let clean: String = t.chars().filter(|&c| c != '_').collect();
    clean.parse::<f64>().ok()
}

#[cfg(test)]
#[allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::HashMap;

    use serde_json::json;

    use super::*;

    const HOME: &str = "/home/tester";

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.entry("HOME".to_owned())
            .or_insert_with(|| HOME.to_owned());
        env
    }

    /// Substitutes `input` (YAML) under `env` and compares with `expected` (YAML), or with
    /// the error message when `expected` starts with `error: `.
    fn check(input: &str, env: &[(&str, &str)], expected: &str) {
        let env = env_of(env);
        let lookup = |name: &str| env.get(name).cloned();
        let parsed: Value = serde_yaml::from_str(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let got = substitute(parsed, &lookup);
        match expected.strip_prefix("error: ") {
            Some(message) => match got {
                Err(e) => assert_eq!(e.message(), message, "input: {input}"),
                Ok(v) => panic!("input: {input}: expected an error, got {v}"),
            },
            None => {
                let want: Value =
                    serde_yaml::from_str(expected).unwrap_or_else(|e| panic!("{expected}: {e}"));
                match got {
                    Ok(v) => assert_eq!(v, want, "input: {input}"),
                    Err(e) => panic!("input: {input}: unexpected error {e}"),
                }
            }
        }
    }

    #[test]
    fn forms_with_set_unset_and_empty_variables() {
        let set = [("V", "val"), ("EMPTY", "")];
        let cases: &[(&str, &str)] = &[
            ("a: ${env.V}", "a: val"),
            ("a: ${env.UNSET}", "error: a: environment variable UNSET is not set (use ${env.UNSET:=default} to give a default)"),
            ("a: ${env.EMPTY}", "error: a: environment variable EMPTY is not set (use ${env.EMPTY:=default} to give a default)"),
            ("a: ${env.V:=d}", "a: val"),
            ("a: ${env.UNSET:=d}", "a: d"),
            ("a: ${env.EMPTY:=d}", "a: d"),
            ("a: ${env.UNSET:=}", "a: null"),
            ("a: ${env.V:+alt}", "a: alt"),
            ("a: ${env.V:+}", "a: null"),
            ("a: ${env.UNSET:+alt}", "a: null"),
            ("a: ${env.EMPTY:+alt}", "a: null"),
            ("a: x-${env.V}-${env.UNSET:=d}-${env.V:+on}-${env.UNSET:+off}!", "a: x-val-d-on-!"),
            ("a: ${env.UNSET:=http://h:1/v1}", "a: 'http://h:1/v1'"),
            // not placeholders: stay literal, unconverted
            ("a: ${env.lower}", "a: ${env.lower}"),
            ("a: ${env.V:-bash}", "a: ${env.V:-bash}"),
            ("a: $env.V", "a: $env.V"),
            ("a: '123'", "a: '123'"),
            ("a: 'true'", "a: 'true'"),
            ("a: ''", "a: ''"),
            // no nesting: the default ends at the first `}`
            ("a: ${env.UNSET:=${env.V}}", "a: '${env.V}'"),
        ];
        for (input, expected) in cases {
            check(input, &set, expected);
        }
    }

    #[test]
    fn error_names_the_full_path() {
        check(
            "providers:\n  inference:\n  - provider_id: openai\n    config:\n      api_key: ${env.OPENAI_API_KEY}\n",
            &[],
            "error: providers.inference[0].config.api_key: environment variable OPENAI_API_KEY is not set (use ${env.OPENAI_API_KEY:=default} to give a default)",
        );
    }

    #[test]
    fn changed_strings_are_converted() {
        let cases: &[(&str, &str)] = &[
            ("1_000", "1000"),
            (" 42 ", "42"),
            ("-7", "-7"),
            ("+7", "7"),
            ("007", "7"),
            ("18446744073709551615", "18446744073709551615"),
            ("99999999999999999999999", "'99999999999999999999999'"),
            ("1__0", "'1__0'"),
            ("_1", "_1"),
            ("1_", "'1_'"),
            ("1e3", "1000.0"),
            ("2.5", "2.5"),
            (".5", "0.5"),
            ("1_0.2_5", "10.25"),
            ("-1E-2", "-0.01"),
            ("inf", "'inf'"),
            ("-Infinity", "'-Infinity'"),
            ("nan", "'nan'"),
            ("e3", "e3"),
            ("true", "true"),
            ("TRUE", "true"),
            ("False", "false"),
            (" true", "' true'"),
            ("0x10", "'0x10'"),
            ("12345abc", "'12345abc'"),
            ("~", HOME),
            ("~/x/y", "/home/tester/x/y"),
            ("~bob/x", "~bob/x"),
            ("a~/x", "a~/x"),
        ];
        for (value, expected) in cases {
            check("a: ${env.V}", &[("V", value)], &format!("a: {expected}"));
        }
        // `~` is expanded in defaults and alternatives too, and only at the piece's start.
        check("a: ${env.U:=~/.llama}/db", &[], "a: /home/tester/.llama/db");
        check("a: x${env.U:=~/y}", &[], "a: x/home/tester/y");
        check("a: ${env.V:+~/on}", &[("V", "1")], "a: /home/tester/on");
    }

    #[test]
    fn disabled_providers_are_removed_without_expanding_them() {
        check(
            "inference:\n- provider_id: ${env.OFF:=__disabled__}\n  config: {api_key: '${env.MISSING}'}\n- provider_id: __disabled__\n  config: {url: '${env.MISSING}'}\n- provider_id: on\n  config: {}\n",
            &[],
            "inference:\n- provider_id: on\n  config: {}\n",
        );
    }

    #[test]
    fn empty_provider_id_keeps_the_provider_disabled_and_expands_its_config() {
        check(
            "inference:\n- provider_id: ${env.OLLAMA_URL:+ollama}\n  config: {base_url: '${env.OLLAMA_URL:=http://localhost:11434/v1}'}\n",
            &[],
            "inference:\n- provider_id: null\n  config: {base_url: 'http://localhost:11434/v1'}\n",
        );
        check(
            "inference:\n- provider_id: ${env.OLLAMA_URL:+ollama}\n  config: {base_url: '${env.OLLAMA_URL:=http://localhost:11434/v1}'}\n",
            &[("OLLAMA_URL", "http://gpu:11434/v1")],
            "inference:\n- provider_id: ollama\n  config: {base_url: 'http://gpu:11434/v1'}\n",
        );
        check(
            "inference:\n- provider_id: ${env.X:+x}\n  config: {key: '${env.MISSING}'}\n",
            &[],
            "error: inference[0].config.key: environment variable MISSING is not set (use ${env.MISSING:=default} to give a default)",
        );
    }

    #[test]
    fn empty_resource_ids_drop_registered_resources() {
        let input = "registered_resources:\n  models:\n  - model_id: ${env.INFERENCE_MODEL:=}\n    provider_id: p\n    metadata: {k: '${env.MISSING}'}\n  - model_id: kept\n  shields:\n  - shield_id: llama-guard\n    provider_id: ${env.SAFETY_MODEL:+llama-guard}\n    provider_shield_id: ${env.SAFETY_MODEL:=}\n  - shield_id: literal-null\n    provider_id: null\n  vector_stores:\n  - vector_store_id: null\n  benchmarks:\n  - benchmark_id: ''\n";
        check(
            input,
            &[],
            "registered_resources:\n  models:\n  - model_id: kept\n  shields:\n  - shield_id: literal-null\n    provider_id: null\n  vector_stores: []\n  benchmarks: []\n",
        );
        check(
            input,
            &[("INFERENCE_MODEL", "llama3.2:3b"), ("SAFETY_MODEL", "llama-guard3:1b")],
            "error: registered_resources.models[0].metadata.k: environment variable MISSING is not set (use ${env.MISSING:=default} to give a default)",
        );
        // Outside registered_resources the id rule does not apply.
        check("other:\n- model_id: ''\n", &[], "other:\n- model_id: ''\n");
    }

    #[test]
    fn auth_provider_config_is_nulled_when_its_type_resolves_empty() {
        let input = "server:\n  auth:\n    provider_config:\n      type: ${env.AUTH_PROVIDER:+oauth2_token}\n      audience: ${env.MISSING}\n    route_policy: []\n";
        check(
            input,
            &[],
            "server:\n  auth:\n    provider_config: null\n    route_policy: []\n",
        );
        check(
            input,
            &[("AUTH_PROVIDER", "1")],
            "error: server.auth.provider_config.audience: environment variable MISSING is not set (use ${env.MISSING:=default} to give a default)",
        );
        check(
            "server:\n  auth:\n    provider_config: {type: '${env.AUTH_PROVIDER:+custom}', endpoint: 'http://a'}\n",
            &[("AUTH_PROVIDER", "1")],
            "server:\n  auth:\n    provider_config: {type: custom, endpoint: 'http://a'}\n",
        );
        // A missing `type` is left for the auth config to reject, not read as "auth off".
        check(
            "server:\n  auth:\n    provider_config: {endpoint: 'http://a'}\n",
            &[],
            "server:\n  auth:\n    provider_config: {endpoint: 'http://a'}\n",
        );
    }

    #[test]
    fn literal_scalars_are_untouched() {
        check(
            "a: 123\nb: '123'\nc: ~\nd: [true, 'false', 1.5]\n",
            &[],
            "a: 123\nb: '123'\nc: null\nd: [true, 'false', 1.5]\n",
        );
        assert_eq!(
            substitute_str("plain", &|_| None).ok(),
            Some(json!("plain"))
        );
    }
}
