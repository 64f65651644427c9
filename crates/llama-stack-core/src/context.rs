//! Who is calling and for which request: [`User`] and [`RequestContext`], passed explicitly
//! to every API method.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// An authenticated caller: a principal and its attributes (`roles`, `teams`, `projects`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    /// The unique id of the caller (JWT `sub`, GitHub login, ...).
    pub principal: String,
    /// Attribute name → values, e.g. `roles: [admin]`.
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A user with no attributes.
    pub fn new(principal: impl Into<String>) -> Self {
        User {
            principal: principal.into(),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds values to one attribute.
    pub fn with_attribute<I, S>(mut self, name: impl Into<String>, values: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.attributes
            .entry(name.into())
            .or_default()
            .extend(values.into_iter().map(Into::into));
        self
    }

    /// The values of one attribute (empty if absent).
    pub fn attribute(&self, name: &str) -> &[String] {
        self.attributes.get(name).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// Per-request provider settings (API keys, URLs), Llama Stack's `X-LlamaStack-Provider-Data`
/// JSON object, e.g. `{"openai_api_key": "sk-..."}`. Values never appear in `Debug` output.
#[derive(Clone, Default, PartialEq)]
pub struct ProviderData(Arc<Map<String, Value>>);

impl ProviderData {
    /// Provider data from a JSON object's fields.
    pub fn new(fields: Map<String, Value>) -> Self {
        ProviderData(Arc::new(fields))
    }

    /// Parses the header's JSON text; anything but a JSON object is an `InvalidRequest`
    /// (the message never repeats the text, which holds secrets).
    pub fn from_json(text: &str) -> crate::Result<Self> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(fields)) => Ok(Self::new(fields)),
            Ok(_) => Err(crate::Error::invalid_request(
                "X-LlamaStack-Provider-Data: expected a JSON object",
            )),
            Err(e) => Err(crate::Error::invalid_request(format!(
                "X-LlamaStack-Provider-Data: invalid JSON ({e})"
            ))),
        }
    }

    /// One field.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// One field, if it is a non-empty string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

impl std::fmt::Debug for ProviderData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProviderData({} fields, redacted)", self.0.len())
    }
}

/// Per-request context: the caller (none when authentication is off), a request id, a
/// cancellation token that is cancelled when the caller goes away, and provider data.
#[derive(Debug, Clone)]
pub struct RequestContext {
    user: Option<User>,
    request_id: String,
    cancel: CancellationToken,
    provider_data: Option<ProviderData>,
}

impl Default for RequestContext {
    fn default() -> Self {
        Self::anonymous()
    }
}

impl RequestContext {
    /// A context for a caller without authentication (library mode's default).
    pub fn anonymous() -> Self {
        RequestContext {
            user: None,
            request_id: new_request_id(),
            cancel: CancellationToken::new(),
            provider_data: None,
        }
    }

    /// A context for an authenticated user.
    pub fn for_user(user: User) -> Self {
        RequestContext {
            user: Some(user),
            ..Self::anonymous()
        }
    }

    /// Replaces the request id (e.g. with an incoming `X-Request-Id`).
    pub fn with_request_id(mut self, id: impl Into<String>) -> Self {
        self.request_id = id.into();
        self
    }

    /// Replaces the cancellation token.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Sets per-request provider data (the `X-LlamaStack-Provider-Data` header's object).
    pub fn with_provider_data(mut self, data: ProviderData) -> Self {
        self.provider_data = Some(data);
        self
    }

    /// Per-request provider data, if any.
    pub fn provider_data(&self) -> Option<&ProviderData> {
        self.provider_data.as_ref()
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&User> {
        self.user.as_ref()
    }

    /// The request id.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The cancellation token for this request.
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }
}

/// Request ids are `req_<process prefix>_<counter>`: unique per process and cheap to make.
fn new_request_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("req_{prefix}_{n}")
}
