//! The one error type of llama-stack-rs: a kind, a message naming the offending field or
//! value, a retryable flag, context pairs and an optional source.

use std::fmt;

/// Result with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, in terms a caller can act on. Each kind maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request is malformed or names an invalid value (HTTP 400).
    InvalidRequest,
    /// A named resource does not exist or is not visible to the caller (HTTP 404).
    NotFound,
    /// No or invalid credentials (HTTP 401).
    Unauthenticated,
    /// The caller may not perform this action on this resource (HTTP 403).
    Forbidden,
    /// The resource already exists or is in a state that forbids the action (HTTP 409).
    Conflict,
    /// The request body or an upload is larger than allowed (HTTP 413).
    PayloadTooLarge,
    /// A quota or upstream rate limit was exceeded (HTTP 429).
    RateLimited,
    /// The provider or API does not support this operation (HTTP 501).
    Unsupported,
    /// An upstream service answered with an error (HTTP: the upstream status, else 502).
    Upstream,
    /// An operation did not finish in time (HTTP 504).
    Timeout,
    /// A dependency (database, upstream) is unreachable right now (HTTP 503).
    Unavailable,
    /// The configuration is invalid (startup only; HTTP 500 if it ever reaches a request).
    Config,
    /// A bug or an unexpected failure (HTTP 500).
    Internal,
}

impl ErrorKind {
    /// The HTTP status code the server answers with for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::InvalidRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::RateLimited => 429,
            ErrorKind::Unsupported => 501,
            ErrorKind::Upstream => 502,
            ErrorKind::Timeout => 504,
            ErrorKind::Unavailable => 503,
            ErrorKind::Config | ErrorKind::Internal => 500,
        }
    }

    /// A short stable name (`invalid_request`, `not_found`, ...), used as the error `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Conflict => "conflict",
            ErrorKind::PayloadTooLarge => "payload_too_large",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Upstream => "upstream",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Config => "config",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every llama-stack-rs API. Creating one never logs.
///
/// One pointer wide, so a `Result` is no bigger than its value (and the futures holding
/// one stay small); the details live on the heap.
pub struct Error(Box<Details>);

/// What an [`Error`] holds.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Details {
    kind: ErrorKind,
    message: String,
    retryable: bool,
    status: Option<u16>,
    provider: Option<String>,
    context: Vec<(&'static str, String)>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.0.kind)
            .field("message", &self.0.message)
            .field("retryable", &self.0.retryable)
            .field("status", &self.0.status)
            .field("provider", &self.0.provider)
            .field("context", &self.0.context)
            .field("source", &self.0.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.0)
    }
}

impl Error {
    /// A new error of `kind` with a message that names the offending field or value.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let retryable = matches!(
            kind,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::RateLimited
        );
        Error(Box::new(Details {
            kind,
            message: message.into(),
            retryable,
            status: None,
            provider: None,
            context: Vec::new(),
            source: None,
        }))
    }

    /// `InvalidRequest`: the input is wrong; the message says which field and why.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message)
    }

    /// `InvalidRequest` for one parameter, in Llama Stack's words:
    /// `Invalid value for 'temperature': 3. Must be between 0 and 2`.
    pub fn invalid_param(param: &str, value: impl fmt::Display, constraint: &str) -> Self {
        Self::new(
            ErrorKind::InvalidRequest,
            format!("Invalid value for '{param}': {value}. {constraint}"),
        )
        .with_context("param", param)
    }

    /// `NotFound` for a resource type and id, e.g. `Model 'x' not found.`
    pub fn not_found(kind: &str, id: &str) -> Self {
        Self::new(ErrorKind::NotFound, format!("{kind} '{id}' not found."))
            .with_context("resource_id", id)
    }

    /// `Forbidden`: the access policy denied the action.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }

    /// `Conflict`: the resource exists already, or its state forbids the action.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    /// `Unsupported`: the provider or API cannot do this.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// `Unavailable`: a dependency cannot be reached right now; retryable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }

    /// `Config`: the configuration is invalid; the message carries the key path.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }

    /// `Internal`: an unexpected failure.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// `Upstream`: a provider's service answered with `status` and `message`.
    pub fn upstream(provider: impl Into<String>, status: u16, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Upstream, message);
        e.0.status = Some(status);
        e.0.provider = Some(provider.into());
        e.0.retryable = status == 429 || status >= 500;
        e
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        self.0.kind
    }

    /// The message, naming the offending field or value.
    pub fn message(&self) -> &str {
        &self.0.message
    }

    /// Whether retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        self.0.retryable
    }

    /// The provider id this error came from, if any.
    pub fn provider(&self) -> Option<&str> {
        self.0.provider.as_deref()
    }

    /// The upstream HTTP status, for `Upstream` errors.
    pub fn upstream_status(&self) -> Option<u16> {
        self.0.status
    }

    /// The HTTP status the server answers with for this error.
    pub fn http_status(&self) -> u16 {
        match (self.0.kind, self.0.status) {
            (ErrorKind::Upstream, Some(s)) if (400..600).contains(&s) => s,
            (kind, _) => kind.http_status(),
        }
    }

    /// Context pairs (`param`, `resource_id`, `path`, ...) attached to this error.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.0.context
    }

    /// Adds a context pair.
    pub fn with_context(mut self, key: &'static str, value: impl Into<String>) -> Self {
        self.0.context.push((key, value.into()));
        self
    }

    /// Sets the provider this error came from.
    pub fn with_provider(mut self, provider: impl Into<String>) -> Self {
        self.0.provider = Some(provider.into());
        self
    }

    /// Overrides the retryable flag.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.0.retryable = retryable;
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// Prefixes the message, e.g. with the component that failed.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.0.message = format!("{prefix}: {}", self.0.message);
        self
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::invalid_request(format!("invalid JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_kind_and_upstream_status() {
        assert_eq!(Error::not_found("Model", "x").http_status(), 404);
        assert_eq!(Error::invalid_request("bad").http_status(), 400);
        assert_eq!(
            Error::upstream("openai", 429, "slow down").http_status(),
            429
        );
        assert!(Error::upstream("openai", 503, "down").is_retryable());
        assert!(!Error::upstream("openai", 400, "bad").is_retryable());
        assert_eq!(Error::upstream("openai", 0, "conn").http_status(), 502);
        assert_eq!(
            Error::invalid_param("temperature", 3, "Must be between 0 and 2").to_string(),
            "Invalid value for 'temperature': 3. Must be between 0 and 2"
        );
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
    }
}
