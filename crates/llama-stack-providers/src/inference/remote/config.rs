//! The config of every OpenAI-compatible provider: Llama Stack's shared remote-inference
//! fields plus the few fields some services add, checked against the service's profile.

use std::collections::BTreeMap;
use std::path::PathBuf;

use llama_stack_core::provider::parse_at_path;
use llama_stack_core::{Error, Result};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::services::ServiceProfile;

/// Fields every OpenAI-compatible provider accepts (the API key field comes from the profile).
pub const COMMON_FIELDS: &[&str] = &[
    "base_url",
    "allowed_models",
    "refresh_models",
    "refresh_interval_seconds",
    "network",
    "max_retries",
    "circuit_breaker",
];

/// Config of an OpenAI-compatible provider (`remote::openai`, `remote::vllm`, ...). Which
/// service-specific fields are accepted depends on the provider type.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenAiCompatConfig {
    /// The service's OpenAI-compatible base URL, e.g. `https://api.openai.com/v1`.
    #[serde(default, deserialize_with = "non_empty")]
    pub base_url: Option<String>,
    /// The API key (YAML `api_key`; `api_token` for vLLM, Databricks and RunPod).
    #[serde(default, alias = "api_token", deserialize_with = "secret")]
    #[schemars(with = "Option<String>")]
    pub api_key: Option<SecretString>,
    /// Only these provider model ids are listed and served; requests for others fail with 400.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    /// Re-list the service's models periodically.
    #[serde(default)]
    pub refresh_models: bool,
    /// Seconds between re-listings with `refresh_models` (default 300, as Llama Stack's
    /// fixed interval; at least 1).
    #[serde(default)]
    pub refresh_interval_seconds: Option<f64>,
    /// TLS, proxy, timeouts and extra headers for calls to the service.
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// Retries of failed calls (429, 5xx, connection errors) before giving up (default 2).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// When to stop calling a failing service for a while.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreakerConfig>,
    /// vLLM: `max_tokens` for requests that set none.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// vLLM (deprecated, use `network.tls.verify`): verify TLS or a CA bundle path.
    #[serde(default)]
    pub tls_verify: Option<TlsVerify>,
    /// NVIDIA, watsonx: request timeout in seconds.
    #[serde(default)]
    pub timeout: Option<f64>,
    /// NVIDIA: rerank model id → rerank endpoint URL.
    #[serde(default)]
    pub rerank_model_to_url: Option<BTreeMap<String, String>>,
    /// Azure: the `api-version` query parameter.
    #[serde(default, deserialize_with = "non_empty")]
    pub api_version: Option<String>,
    /// Azure: the API type (`azure`).
    #[serde(default, deserialize_with = "non_empty")]
    pub api_type: Option<String>,
    /// watsonx: the IBM Cloud IAM service that exchanges the API key for bearer tokens
    /// (default `https://iam.cloud.ibm.com`).
    #[serde(default, deserialize_with = "non_empty")]
    pub iam_url: Option<String>,
    /// watsonx: the project id sent with every request.
    #[serde(default, deserialize_with = "non_empty")]
    pub project_id: Option<String>,
    /// Passthrough: provider-data field → outbound header to forward (nothing else is forwarded).
    #[serde(default)]
    pub forward_headers: Option<BTreeMap<String, String>>,
    /// Passthrough: further headers that may never be forwarded.
    #[serde(default)]
    pub extra_blocked_headers: Vec<String>,
    /// The config's non-secret fields after defaults, for profile-driven lookups.
    #[serde(skip)]
    #[schemars(skip)]
    pub fields: Map<String, Value>,
}

impl OpenAiCompatConfig {
    /// How often `refresh_models` re-lists the service's models.
    pub fn refresh_interval(&self) -> std::time::Duration {
        self.refresh_interval_seconds
            .map(std::time::Duration::from_secs_f64)
            .unwrap_or(llama_stack_core::provider::DEFAULT_MODEL_REFRESH_INTERVAL)
    }

    /// A string field by its YAML name (after defaults), e.g. `project_id`.
    pub fn field_str(&self, name: &str) -> Option<&str> {
        self.fields.get(name)?.as_str().filter(|s| !s.is_empty())
    }
}

/// `network`: how calls reach the service.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// TLS options.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// An HTTP(S) proxy.
    #[serde(default)]
    pub proxy: Option<ProxyConfig>,
    /// Seconds, or `{connect, read}` seconds (`read` bounds the wait between bytes/events).
    #[serde(default)]
    pub timeout: Option<TimeoutConfig>,
    /// Headers added to every call.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `network.tls`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `true` (default), `false`, or the path of a CA bundle (PEM) to trust.
    #[serde(default)]
    pub verify: Option<TlsVerify>,
    /// `TLSv1.2` or `TLSv1.3`.
    #[serde(default)]
    pub min_version: Option<String>,
    /// Cipher suites (not configurable with rustls; a warning is logged and the defaults used).
    #[serde(default)]
    pub ciphers: Option<Vec<String>>,
    /// Client certificate (PEM); requires `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM); requires `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
}

/// TLS verification: on/off or a CA bundle path.
#[derive(Debug, Clone, PartialEq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TlsVerify {
    /// Verify against the built-in roots (`true`) or not at all (`false`).
    Enabled(bool),
    /// Verify against this CA bundle (PEM) in addition to the built-in roots.
    CaPath(PathBuf),
}

/// `network.proxy`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Proxy for every scheme.
    #[serde(default)]
    pub url: Option<String>,
    /// Proxy for `http://` URLs.
    #[serde(default)]
    pub http: Option<String>,
    /// Proxy for `https://` URLs.
    #[serde(default)]
    pub https: Option<String>,
    /// CA bundle (PEM) of a TLS-intercepting proxy.
    #[serde(default)]
    pub cacert: Option<PathBuf>,
    /// Hosts that bypass the proxy.
    #[serde(default)]
    pub no_proxy: Option<NoProxyList>,
}

/// `no_proxy`: a comma-separated string or a list.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum NoProxyList {
    /// `"localhost,.internal"`.
    One(String),
    /// `["localhost", ".internal"]`.
    Many(Vec<String>),
}

impl NoProxyList {
    /// The comma-separated form.
    pub fn joined(&self) -> String {
        match self {
            NoProxyList::One(s) => s.clone(),
            NoProxyList::Many(v) => v.join(","),
        }
    }
}

/// `network.timeout`.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum TimeoutConfig {
    /// One value for connecting and for reading.
    Seconds(f64),
    /// Separate values.
    Split {
        /// Connect timeout in seconds.
        #[serde(default)]
        connect: Option<f64>,
        /// Longest wait for the next bytes of a response, in seconds.
        #[serde(default)]
        read: Option<f64>,
    },
}

/// `circuit_breaker`: after `failure_threshold` consecutive failures calls fail fast for
/// `open_seconds`, then one probe call decides whether the service is back.
#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakerConfig {
    /// Consecutive failed attempts that open the circuit (default 5).
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
    /// Seconds the circuit stays open before a probe (default 30).
    #[serde(default = "default_open_seconds")]
    pub open_seconds: f64,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        CircuitBreakerConfig {
            failure_threshold: default_threshold(),
            open_seconds: default_open_seconds(),
        }
    }
}

fn default_threshold() -> u32 {
    5
}

fn default_open_seconds() -> f64 {
    30.0
}

fn non_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
}

fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(SecretString::from))
}

/// Parses `raw` (the provider's `config` after env substitution) for `profile`: rejects
/// fields the service does not accept, fills Llama Stack's defaults (some read from `env`),
/// then deserializes. Errors are `Config` errors naming `<path>.<field>`.
pub fn parse(
    profile: &ServiceProfile,
    raw: &Value,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OpenAiCompatConfig> {
    let mut map = match raw {
        Value::Null => Map::new(),
        Value::Object(m) => m.clone(),
        other => {
            return Err(Error::config(format!(
                "{path}: expected a mapping of config fields, found {other}"
            ))
            .with_context("path", path))
        }
    };
    let allowed: Vec<&str> = COMMON_FIELDS
        .iter()
        .chain(profile.key_field.iter())
        .chain(profile.extra_fields.iter())
        .copied()
        .collect();
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let field = format!("{path}.{key}");
            return Err(Error::config(format!(
                "{field}: unknown field `{key}` for provider type '{}', expected one of: {}",
                profile.provider_type,
                allowed.join(", ")
            ))
            .with_context("path", field));
        }
    }
    let absent = |map: &Map<String, Value>, field: &str| {
        map.get(field)
            .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    };
    for (field, var) in profile.field_env_defaults {
        if absent(&map, field) {
            if let Some(value) = env(var).filter(|v| !v.is_empty()) {
                map.insert((*field).to_string(), Value::String(value));
            }
        }
    }
    for (field, json) in profile.field_defaults {
        if absent(&map, field) {
            let value: Value = serde_json::from_str(json)
                .map_err(|e| Error::internal(format!("default of {field} is not JSON: {e}")))?;
            map.insert((*field).to_string(), value);
        }
    }
    if absent(&map, "base_url") {
        if let Some(url) = profile.default_base_url {
            map.insert("base_url".into(), Value::String(url.into()));
        }
    }
    let mut config: OpenAiCompatConfig = parse_at_path(&Value::Object(map.clone()), path)?;
    for secret in ["api_key", "api_token"] {
        map.remove(secret);
    }
    config.fields = map;
    if let Some(secs) = config.refresh_interval_seconds {
        if !secs.is_finite() || !(1.0..=31_536_000.0).contains(&secs) {
            let field = format!("{path}.refresh_interval_seconds");
            return Err(Error::config(format!(
                "{field}: must be between 1 and 31536000 seconds, got {secs}"
            ))
            .with_context("path", field));
        }
    }
    if config.base_url.is_none() && profile.provider_data_url_key.is_none() {
        return Err(Error::config(format!(
            "{path}.base_url: required for provider type '{}' (the service's OpenAI-compatible URL)",
            profile.provider_type
        ))
        .with_context("path", format!("{path}.base_url")));
    }
    Ok(config)
}
