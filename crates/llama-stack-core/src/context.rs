//! Who is calling and for which request: [`User`] and [`RequestContext`], passed explicitly
//! to every API method.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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
///
/// Making one allocates nothing: the request id is formatted when first asked for, and the
/// cancellation token is created when first asked for or when the context is first cloned
/// (so that every clone shares one token).
pub struct RequestContext {
    user: Option<User>,
    request_id: RequestId,
    cancel: OnceLock<CancellationToken>,
    provider_data: Option<ProviderData>,
}

/// A request id: given, or this process's `number`th, formatted on first use.
#[derive(Clone)]
struct RequestId {
    number: u64,
    text: OnceLock<String>,
}

impl RequestId {
    fn next() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        RequestId {
            number: COUNTER.fetch_add(1, Ordering::Relaxed),
            text: OnceLock::new(),
        }
    }

    fn into_string(self) -> String {
        match self.text.into_inner() {
            Some(text) => text,
            None => Self::format(self.number),
        }
    }

    fn format(number: u64) -> String {
        static PREFIX: OnceLock<String> = OnceLock::new();
        let prefix =
            PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string()[..12].to_string());
        format!("req_{prefix}_{number}")
    }

    fn given(text: String) -> Self {
        RequestId {
            number: 0,
            text: OnceLock::from(text),
        }
    }

    /// Request ids are `req_<process prefix>_<number>`: unique per process and cheap to
    /// make; every clone formats the same text.
    fn as_str(&self) -> &str {
        self.text.get_or_init(|| Self::format(self.number))
    }
}

impl Clone for RequestContext {
    fn clone(&self) -> Self {
        RequestContext {
            user: self.user.clone(),
            request_id: self.request_id.clone(),
            cancel: OnceLock::from(self.cancellation().clone()),
            provider_data: self.provider_data.clone(),
        }
    }
}

impl std::fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestContext")
            .field("user", &self.user)
            .field("request_id", &self.request_id())
            .field(
                "cancelled",
                &self
                    .cancel
                    .get()
                    .is_some_and(CancellationToken::is_cancelled),
            )
            .field("provider_data", &self.provider_data)
            .finish()
    }
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
            request_id: RequestId::next(),
            cancel: OnceLock::new(),
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
        self.request_id = RequestId::given(id.into());
        self
    }

    /// Replaces the cancellation token.
    pub fn with_cancellation(mut self, token: CancellationToken) -> Self {
        self.cancel = OnceLock::from(token);
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
        self.request_id.as_str()
    }

    /// The request id, taken out of the context.
    pub fn into_request_id(self) -> String {
        self.request_id.into_string()
    }

    /// The cancellation token for this request.
    pub fn cancellation(&self) -> &CancellationToken {
        self.cancel.get_or_init(CancellationToken::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_request_id_and_the_cancellation_token() {
        let ctx = RequestContext::anonymous();
        let clone = ctx.clone();
        assert_eq!(ctx.request_id(), clone.request_id());
        assert!(ctx.request_id().starts_with("req_"));
        assert_eq!(clone.clone().into_request_id(), ctx.request_id());
        let fresh = RequestContext::anonymous();
        let id = fresh.clone().into_request_id();
        assert_eq!(fresh.request_id(), id);
        clone.cancellation().cancel();
        assert!(ctx.cancellation().is_cancelled());

        // A token asked for before the clone is the one the clone gets.
        let ctx = RequestContext::anonymous();
        let token = ctx.cancellation().clone();
        let clone = ctx.clone();
        token.cancel();
        assert!(clone.cancellation().is_cancelled());
    }

    #[test]
    fn each_context_has_its_own_request_id_and_token() {
        let (a, b) = (RequestContext::anonymous(), RequestContext::anonymous());
        assert_ne!(a.request_id(), b.request_id());
        a.cancellation().cancel();
        assert!(!b.cancellation().is_cancelled());
    }

    #[test]
    fn given_request_id_and_token_are_kept() {
        let token = CancellationToken::new();
        let ctx = RequestContext::for_user(User::new("alice"))
            .with_request_id("abc")
            .with_cancellation(token.clone());
        let clone = ctx.clone();
        assert_eq!(clone.request_id(), "abc");
        token.cancel();
        assert!(clone.cancellation().is_cancelled());
        assert_eq!(clone.user().map(|u| u.principal.as_str()), Some("alice"));
    }
}
