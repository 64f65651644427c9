//! Calls to one upstream service: the provider's pooled HTTP client (built from `network`),
//! retries with exponential backoff and jitter (honouring `Retry-After`), the circuit
//! breaker, and the mapping of failures to typed errors.

use std::sync::Arc;
use std::time::Duration;

use llama_stack_core::{Error, ErrorKind, Result};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::circuit::CircuitBreaker;
use super::config::{OpenAiCompatConfig, TimeoutConfig, TlsVerify};

/// Connect timeout when the config sets none.
const DEFAULT_CONNECT: Duration = Duration::from_secs(10);
/// Longest wait for response bytes (or the next stream event) when the config sets none.
const DEFAULT_READ: Duration = Duration::from_secs(600);
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// A `Retry-After` longer than this is not waited for: the error is returned instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Upstream error bodies are cut to this many characters in messages.
const MAX_ERROR_TEXT: usize = 2000;

/// One service's HTTP client, retry policy and circuit breaker.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    provider_id: String,
    client: reqwest::Client,
    breaker: Arc<CircuitBreaker>,
    max_retries: u32,
}

impl Upstream {
    /// Builds the pooled client from `config.network` (and the service-level `timeout` /
    /// `tls_verify` fields). Errors name the config field at `path`.
    pub(crate) fn new(provider_id: &str, config: &OpenAiCompatConfig, path: &str) -> Result<Self> {
        let client = build_client(config, path)?;
        let cb = config.circuit_breaker.unwrap_or_default();
        if !(cb.open_seconds.is_finite() && cb.open_seconds >= 0.0) {
            return Err(Error::config(format!(
                "{path}.circuit_breaker.open_seconds: must be a non-negative number of seconds"
            )));
        }
        Ok(Upstream {
            provider_id: provider_id.to_string(),
            client,
            breaker: CircuitBreaker::new(
                cb.failure_threshold,
                Duration::from_secs_f64(cb.open_seconds),
            ),
            max_retries: config.max_retries.unwrap_or(2),
        })
    }

    /// The provider id errors name.
    pub(crate) fn provider_id(&self) -> &str {
        &self.provider_id
    }

    /// The pooled client.
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The breaker shared by every call of this provider.
    pub(crate) fn breaker(&self) -> &Arc<CircuitBreaker> {
        &self.breaker
    }

    /// Sends the request built by `build` until it succeeds (2xx) or fails for good:
    /// 429, 5xx and connection errors are retried up to `max_retries` times; an error
    /// status is read and mapped. For streams this covers everything before the first
    /// byte of the body; nothing is retried after that.
    ///
    /// A plain function returning the future (not an `async fn`, which would hold `build`
    /// twice): the future stays small, and every call's future holds it.
    #[allow(clippy::manual_async_fn)]
    pub(crate) fn send<'a>(
        &'a self,
        build: impl Fn() -> RequestBuilder + Send + 'a,
    ) -> impl std::future::Future<Output = Result<Response>> + Send + 'a {
        async move {
            let mut attempt = 0u32;
            loop {
                let permit = self.breaker.admit().map_err(|r| {
                Error::unavailable(format!(
                    "provider '{}': the upstream service is failing; calls fail fast for {:.1}s more (circuit breaker open)",
                    self.provider_id,
                    r.retry_in.as_secs_f64()
                ))
                .with_provider(&self.provider_id)
            })?;
                let (err, retry_after) = match build().send().await {
                    Ok(resp) if resp.status().is_success() => {
                        permit.success();
                        return Ok(resp);
                    }
                    Ok(resp) => {
                        let status = resp.status();
                        if status.is_server_error() {
                            permit.failure();
                        } else {
                            permit.success();
                        }
                        let retry_after = retry_after(resp.headers());
                        // Boxed: the error path should not grow every call's future.
                        let body = Box::pin(resp.text()).await.unwrap_or_default();
                        (self.status_error(status, &body), retry_after)
                    }
                    Err(e) => {
                        permit.failure();
                        (self.transport_error(&e), None)
                    }
                };
                let retryable = err.is_retryable() && err.kind() != ErrorKind::Timeout;
                if !retryable || attempt >= self.max_retries {
                    return Err(err);
                }
                let delay = match retry_after {
                    Some(d) if d > MAX_RETRY_AFTER => return Err(err),
                    Some(d) => d,
                    None => backoff(attempt),
                };
                tracing::debug!(provider_id = %self.provider_id, attempt, delay_ms = delay.as_millis() as u64, error = %err, "retrying upstream call");
                Box::pin(tokio::time::sleep(delay)).await;
                attempt += 1;
            }
        }
    }

    /// The error for an upstream answer with an error `status` and `body`.
    pub(crate) fn status_error(&self, status: StatusCode, body: &str) -> Error {
        let detail = error_message(body);
        Error::upstream(
            &self.provider_id,
            status.as_u16(),
            format!(
                "provider '{}': upstream returned {status}: {detail}",
                self.provider_id
            ),
        )
    }

    /// The error for a failed connection, timeout or broken body.
    pub(crate) fn transport_error(&self, e: &reqwest::Error) -> Error {
        let id = &self.provider_id;
        if e.is_timeout() {
            Error::new(
                ErrorKind::Timeout,
                format!(
                    "provider '{id}': the upstream did not answer in time (network.timeout): {e}"
                ),
            )
            .with_provider(id)
        } else if e.is_connect() {
            Error::unavailable(format!(
                "provider '{id}': cannot connect to the upstream: {}",
                error_chain(e)
            ))
            .with_provider(id)
        } else {
            Error::upstream(
                id,
                502,
                format!(
                    "provider '{id}': the upstream connection failed: {}",
                    error_chain(e)
                ),
            )
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `base * 2^attempt`, capped, times a random factor in [0.5, 1).
fn backoff(attempt: u32) -> Duration {
    let exp = BASE_BACKOFF.saturating_mul(1u32 << attempt.min(16));
    exp.min(MAX_BACKOFF).mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// `Retry-After` in seconds (or `retry-after-ms`); HTTP dates fall back to backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(ms) = get("retry-after-ms").filter(|v| v.is_finite() && *v >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    get("retry-after")
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The upstream's own words: `error.message`, `error`, `detail`, `message` or IBM's
/// `errorMessage`, else the text.
pub(crate) fn error_message(body: &str) -> String {
    let text = match serde_json::from_str::<Value>(body) {
        Ok(v) => {
            let pick = |v: &Value| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            };
            v.pointer("/error/message")
                .and_then(pick)
                .or_else(|| v.get("error").and_then(pick))
                .or_else(|| v.get("detail").and_then(pick))
                .or_else(|| v.get("message").and_then(pick))
                .or_else(|| v.get("errorMessage").and_then(pick))
                .unwrap_or_else(|| body.to_string())
        }
        Err(_) => body.trim().to_string(),
    };
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn secs(path: &str, field: &str, v: f64) -> Result<Duration> {
    if v.is_finite() && v > 0.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(Error::config(format!(
            "{path}.{field}: must be a positive number of seconds, got {v}"
        )))
    }
}

fn read_pem(path: &str, field: &str, file: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(file).map_err(|e| {
        Error::config(format!(
            "{path}.{field}: cannot read '{}': {e}",
            file.display()
        ))
    })
}

fn build_client(config: &OpenAiCompatConfig, path: &str) -> Result<reqwest::Client> {
    let network = config.network.clone().unwrap_or_default();
    let npath = format!("{path}.network");
    let (mut connect, mut read) = (DEFAULT_CONNECT, DEFAULT_READ);
    if let Some(t) = config.timeout {
        let d = secs(path, "timeout", t)?;
        (connect, read) = (d.min(connect), d);
    }
    match network.timeout {
        Some(TimeoutConfig::Seconds(t)) => {
            let d = secs(&npath, "timeout", t)?;
            (connect, read) = (d, d);
        }
        Some(TimeoutConfig::Split {
            connect: c,
            read: r,
        }) => {
            if let Some(c) = c {
                connect = secs(&npath, "timeout.connect", c)?;
            }
            if let Some(r) = r {
                read = secs(&npath, "timeout.read", r)?;
            }
        }
        None => {}
    }
    let mut builder = reqwest::Client::builder()
        .connect_timeout(connect)
        .read_timeout(read)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .user_agent(concat!("llama-stack-rs/", env!("CARGO_PKG_VERSION")));

    let tls = network.tls.clone().unwrap_or_default();
    let verify = tls.verify.clone().or_else(|| config.tls_verify.clone());
    match verify {
        Some(TlsVerify::Enabled(false)) => builder = builder.danger_accept_invalid_certs(true),
        Some(TlsVerify::CaPath(ca)) => {
            let pem = read_pem(&npath, "tls.verify", &ca)?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!(
                    "{npath}.tls.verify: '{}' is not a PEM CA bundle: {e}",
                    ca.display()
                ))
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Some(TlsVerify::Enabled(true)) | None => {}
    }
    if let Some(v) = &tls.min_version {
        let version = match v.as_str() {
            "TLSv1.2" => reqwest::tls::Version::TLS_1_2,
            "TLSv1.3" => reqwest::tls::Version::TLS_1_3,
            other => {
                return Err(Error::config(format!(
                    "{npath}.tls.min_version: '{other}' is not one of TLSv1.2, TLSv1.3"
                )))
            }
        };
        builder = builder.min_tls_version(version);
    }
    if tls.ciphers.is_some() {
        tracing::warn!(path = %npath, "network.tls.ciphers is not configurable with rustls; using its default cipher suites");
    }
    match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = read_pem(&npath, "tls.client_cert", cert)?;
            pem.push(b'\n');
            pem.extend(read_pem(&npath, "tls.client_key", key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::config(format!(
                    "{npath}.tls.client_cert: not a PEM certificate and key: {e}"
                ))
            })?;
            builder = builder.identity(identity);
        }
        (None, None) => {}
        _ => {
            return Err(Error::config(format!(
                "{npath}.tls: client_cert and client_key must be given together"
            )))
        }
    }

    if let Some(proxy) = &network.proxy {
        let no_proxy = proxy.no_proxy.as_ref().map(|n| n.joined());
        let mk = |field: &str, url: &str, f: fn(&str) -> reqwest::Result<reqwest::Proxy>| {
            f(url)
                .map(|p| p.no_proxy(no_proxy.as_deref().and_then(reqwest::NoProxy::from_string)))
                .map_err(|e| {
                    Error::config(format!(
                        "{npath}.proxy.{field}: invalid proxy URL '{url}': {e}"
                    ))
                })
        };
        if let Some(url) = &proxy.url {
            builder = builder.proxy(mk("url", url, |u| reqwest::Proxy::all(u))?);
        }
        if let Some(url) = &proxy.http {
            builder = builder.proxy(mk("http", url, |u| reqwest::Proxy::http(u))?);
        }
        if let Some(url) = &proxy.https {
            builder = builder.proxy(mk("https", url, |u| reqwest::Proxy::https(u))?);
        }
        if let Some(ca) = &proxy.cacert {
            let pem = read_pem(&npath, "proxy.cacert", ca)?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::config(format!(
                    "{npath}.proxy.cacert: '{}' is not a PEM CA bundle: {e}",
                    ca.display()
                ))
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
    }

    let mut headers = HeaderMap::new();
    for (name, value) in &network.headers {
        let n = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            Error::config(format!(
                "{npath}.headers: '{name}' is not a valid header name"
            ))
        })?;
        let v = HeaderValue::from_str(value).map_err(|_| {
            Error::config(format!("{npath}.headers.{name}: not a valid header value"))
        })?;
        headers.insert(n, v);
    }
    builder = builder.default_headers(headers);
    builder
        .build()
        .map_err(|e| Error::config(format!("{npath}: cannot build the HTTP client: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_messages_are_extracted() {
        assert_eq!(
            error_message(r#"{"error": {"message": "bad key"}}"#),
            "bad key"
        );
        assert_eq!(error_message(r#"{"detail": "nope"}"#), "nope");
        assert_eq!(error_message("plain text\n"), "plain text");
        assert_eq!(error_message(""), "(empty body)");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..20 {
            let d = backoff(attempt);
            assert!(d <= MAX_BACKOFF);
            assert!(d >= BASE_BACKOFF.mul_f64(0.5).min(MAX_BACKOFF.mul_f64(0.5)));
        }
    }
}
