//! [`PgPool`]: the connection pool shared by the PostgreSQL backends (`kv_postgres`,
//! `sql_postgres`): deadpool over tokio-postgres, TLS with rustls, and the mapping of
//! PostgreSQL errors to [`Error`] kinds.
//!
//! Connection failures, timeouts and server shutdowns become `Unavailable` (retryable),
//! naming `host:port` and never the password. A pool survives a server restart: broken
//! connections are dropped when they fail and new ones are opened on the next call.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use llama_stack_core::{Error, ErrorKind, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{SecretString, SslMode};

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a caller waits for a pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Debug, Clone)]
pub(crate) struct PgTarget {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) db: String,
    pub(crate) user: String,
    pub(crate) password: Option<SecretString>,
    pub(crate) ssl_mode: Option<SslMode>,
    pub(crate) ca_cert_path: Option<String>,
}

/// Pool sizing and connection checks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PoolOptions {
    pub(crate) max_size: usize,
    pub(crate) pre_ping: bool,
    pub(crate) recycle_after: Option<Duration>,
}

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub(crate) struct PgPool {
    pool: Pool,
    addr: Arc<str>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgPool").field("addr", &self.addr).finish()
    }
}

impl PgPool {
    /// A pool for `target`; connections open lazily (call [`Self::get`] to check).
    pub(crate) fn new(target: &PgTarget, options: PoolOptions) -> Result<Self> {
        let addr: Arc<str> = format!("{}:{}", target.host, target.port).into();
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(&target.host)
            .port(target.port)
            .dbname(&target.db)
            .user(&target.user)
            .application_name("llama-stack-rs")
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true);
        if let Some(password) = &target.password {
            cfg.password(password.expose());
        }
        let mode = target.ssl_mode.unwrap_or(SslMode::Prefer);
        cfg.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        });
        let tls = MakeRustlsConnect::new(tls_config(mode, target.ca_cert_path.as_deref())?);
        let manager = Manager::from_config(
            cfg,
            tls,
            ManagerConfig {
                recycling_method: if options.pre_ping {
                    RecyclingMethod::Verified
                } else {
                    RecyclingMethod::Fast
                },
            },
        );
        let mut builder = Pool::builder(manager)
            .max_size(options.max_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT));
        if let Some(limit) = options.recycle_after {
            builder = builder.pre_recycle(Hook::sync_fn(move |_, metrics| {
                if metrics.age() > limit {
                    Err(HookError::message("connection reached pool_recycle age"))
                } else {
                    Ok(())
                }
            }));
        }
        let pool = builder.build().map_err(|e| {
            Error::config(format!("cannot set up the PostgreSQL pool for {addr}: {e}"))
        })?;
        Ok(PgPool { pool, addr })
    }

    /// `host:port`, for messages.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// A pooled connection, or `Unavailable` naming the server.
    pub(crate) async fn get(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| {
            let detail = match &e {
                deadpool_postgres::PoolError::Backend(inner) => inner.to_string(),
                other => other.to_string(),
            };
            Error::unavailable(format!(
                "PostgreSQL at {} is unavailable: {detail}",
                self.addr
            ))
            .with_source(e)
        })
    }

    /// Maps an error of a statement run while `what` (e.g. "reading table 'x'"):
    /// connection problems → `Unavailable`, anything else → `Internal`.
    pub(crate) fn error(&self, e: tokio_postgres::Error, what: &str) -> Error {
        if is_unavailable(&e) {
            return Error::unavailable(format!(
                "PostgreSQL at {} is unavailable while {what}: {}",
                self.addr,
                describe(&e)
            ))
            .with_source(e);
        }
        if let Some(code) = e.code() {
            if *code == SqlState::QUERY_CANCELED {
                return Error::new(
                    ErrorKind::Timeout,
                    format!("PostgreSQL at {}: {what} timed out", self.addr),
                )
                .with_source(e);
            }
        }
        Error::internal(format!(
            "PostgreSQL at {} failed while {what}: {}",
            self.addr,
            describe(&e)
        ))
        .with_source(e)
    }
}

/// Whether `e` means the server cannot be reached or went away.
pub(crate) fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // Class 08: connection exception; 57P01-57P03: shutdown, crash, not yet up;
        // 53300: too many connections.
        Some(code) => {
            code.code().starts_with("08")
                || *code == SqlState::ADMIN_SHUTDOWN
                || *code == SqlState::CRASH_SHUTDOWN
                || *code == SqlState::CANNOT_CONNECT_NOW
                || *code == SqlState::TOO_MANY_CONNECTIONS
        }
        // No server error at all: an I/O failure or a dropped connection.
        None => e.as_db_error().is_none(),
    }
}

/// The server's message (with its detail) or the client error's text.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => e.to_string(),
    }
}

/// The rustls client config for `mode`: certificates are checked against `ca_cert_path`
/// (or public roots) for `verify-*`, and for any mode when a CA file is given; `require`
/// and `prefer` without a CA file encrypt without checking, as libpq does.
fn tls_config(mode: SslMode, ca_cert_path: Option<&str>) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("cannot set up TLS for PostgreSQL: {e}")))?;
    let verify = ca_cert_path.is_some() || matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull);
    if !verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoCertificateCheck(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    match ca_cert_path {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::config(format!("ca_cert_path: cannot read '{path}': {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    Error::config(format!("ca_cert_path: cannot read '{path}': {e}"))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::config(format!("ca_cert_path: bad certificate in '{path}': {e}"))
                })?;
            }
            if roots.is_empty() {
                return Err(Error::config(format!(
                    "ca_cert_path: '{path}' holds no PEM certificate"
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// Accepts any server certificate (encryption without authentication), while still
/// checking the handshake signatures.
#[derive(Debug)]
struct NoCertificateCheck(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NoCertificateCheck {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Text as stored in PostgreSQL, whose `text` cannot hold U+0000: U+0001 becomes
/// U+0001 U+0002 and U+0000 becomes U+0001 U+0001. The mapping keeps byte order and
/// prefixes, so comparisons, `ORDER BY` and prefix scans see the original order.
pub(crate) fn escape_text(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains(['\u{0}', '\u{1}']) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\u{0}' => out.push_str("\u{1}\u{1}"),
            '\u{1}' => out.push_str("\u{1}\u{2}"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The inverse of [`escape_text`].
pub(crate) fn unescape_text(s: String) -> String {
    if !s.contains('\u{1}') {
        return s;
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1}' {
            match chars.next() {
                Some('\u{1}') => out.push('\u{0}'),
                Some('\u{2}') => out.push('\u{1}'),
                Some(other) => {
                    out.push('\u{1}');
                    out.push(other);
                }
                None => out.push('\u{1}'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The smallest string greater than every string starting with `prefix` (in byte order),
/// or `None` if there is none (the prefix is all U+10FFFF).
pub(crate) fn prefix_successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match u32::from(c) {
            0xD7FF => Some(0xE000),
            0x10FFFF => None,
            n => Some(n + 1),
        };
        if let Some(next) = next.and_then(char::from_u32) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// `"name"`; only ever called with validated identifiers.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// The key of the transaction-scoped advisory lock that serialises schema changes
/// (table creation, migrations) across processes sharing one database.
pub(crate) const SCHEMA_LOCK: i64 = 0x6c6c_616d_6173_746b; // "llamastk"

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips_and_keeps_order() {
        let samples = [
            "",
            "a",
            "\u{0}",
            "\u{1}",
            "a\u{0}b",
            "\u{1}\u{2}",
            "a\u{1}",
            "a\u{2}",
            "b",
        ];
        for s in samples {
            assert_eq!(unescape_text(escape_text(s).into_owned()), s);
        }
        for a in samples {
            for b in samples {
                assert_eq!(
                    a.cmp(b),
                    escape_text(a).cmp(&escape_text(b)),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn successor_bounds_prefix() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{d7ff}").as_deref(), Some("\u{e000}"));
        assert_eq!(prefix_successor("\u{10ffff}"), None);
        assert_eq!(prefix_successor(""), None);
    }
}
