//! TLS termination: with `server.tls_certfile` and `server.tls_keyfile` (PEM) the server
//! speaks HTTPS (HTTP/2 and HTTP/1.1 by ALPN); with `server.tls_cafile` as well, clients
//! must present a certificate signed by one of that file's CAs (mutual TLS).

use std::sync::Arc;

use llama_stack_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;

fn certificates(field: &str, path: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| {
            Error::config(format!(
                "server.{field}: cannot read PEM certificates from '{path}': {e}"
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "server.{field}: '{path}' holds no PEM certificate"
        )));
    }
    Ok(certs)
}

/// The TLS acceptor the `server` section asks for, or `None` for plain HTTP.
pub(crate) fn acceptor(server: &ServerConfig) -> Result<Option<TlsAcceptor>> {
    let (cert, key) = match (&server.tls_certfile, &server.tls_keyfile) {
        (None, None) => {
            if server.tls_cafile.is_some() {
                return Err(Error::config(
                    "server.tls_cafile: client certificates need TLS; set tls_certfile and tls_keyfile too",
                ));
            }
            return Ok(None);
        }
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => {
            return Err(Error::config(
                "server.tls_keyfile: required with tls_certfile",
            ))
        }
        (None, Some(_)) => {
            return Err(Error::config(
                "server.tls_certfile: required with tls_keyfile",
            ))
        }
    };
    let chain = certificates("tls_certfile", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        Error::config(format!(
            "server.tls_keyfile: cannot read a PEM private key from '{key}': {e}"
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config(format!("server TLS: {e}")))?;
    let builder = match &server.tls_cafile {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certificates("tls_cafile", ca)? {
                roots.add(c).map_err(|e| {
                    Error::config(format!(
                        "server.tls_cafile: '{ca}' holds an unusable CA certificate: {e}"
                    ))
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| Error::config(format!("server.tls_cafile: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        Error::config(format!(
            "server.tls_certfile/tls_keyfile: the key does not fit the certificate: {e}"
        ))
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}
