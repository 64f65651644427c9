//! Who is calling and for which request: [`User`] and [`RequestContext`], passed explicitly
//! to every API method.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
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

/// Per-request context: the caller (none when authentication is off), a request id and a
/// cancellation token that is cancelled when the caller goes away.
#[derive(Debug, Clone)]
pub struct RequestContext {
    user: Option<User>,
    request_id: String,
    cancel: CancellationToken,
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
