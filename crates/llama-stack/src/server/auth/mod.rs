//! Authentication providers, configured as Llama Stack configures them under
//! `server.auth.provider_config` (`type: oauth2_token | github_token | kubernetes | custom`).
//! Each turns a bearer token into a [`User`] (principal + attributes) or a 401.

mod custom;
mod github;
mod kubernetes;
mod oauth2;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::{Error, ErrorKind, Result, User};
use serde::Deserialize;
use serde_json::Value;

pub use custom::CustomAuthConfig;
pub use github::GithubAuthConfig;
pub use kubernetes::KubernetesAuthConfig;
pub use oauth2::{IntrospectionConfig, JwksConfig, OAuth2Config};

/// What an auth provider may look at besides the token (the `custom` provider forwards it).
#[derive(Debug, Clone, Default)]
pub struct AuthRequest {
    /// The request path.
    pub path: String,
    /// Lower-case header names → values, without `authorization`.
    pub headers: BTreeMap<String, String>,
    /// Query parameters → values.
    pub params: BTreeMap<String, Vec<String>>,
}

/// Validates bearer tokens.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// The user a token stands for, or an `Unauthenticated` error saying why not.
    async fn authenticate(&self, token: &str, request: &AuthRequest) -> Result<User>;
    /// The 401 message when no `Authorization` header was sent.
    fn missing_message(&self) -> String;
}

/// `server.auth.provider_config`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthProviderConfig {
    /// OAuth2 bearer JWTs checked against a JWKS, or opaque tokens via introspection.
    Oauth2Token(OAuth2Config),
    /// GitHub tokens checked with `GET /user`.
    GithubToken(GithubAuthConfig),
    /// Kubernetes service-account tokens checked with a SelfSubjectReview.
    Kubernetes(KubernetesAuthConfig),
    /// Tokens checked by a custom endpoint.
    Custom(CustomAuthConfig),
}

/// Builds the authenticator `provider_config` describes (`None` when it is absent or its
/// `type` resolved empty, i.e. authentication is off).
pub fn from_config(provider_config: Option<&Value>) -> Result<Option<Arc<dyn Authenticator>>> {
    let Some(value) = provider_config else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    match value.get("type") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(t)) if t.is_empty() => return Ok(None),
        _ => {}
    }
    let config: AuthProviderConfig = serde_path_to_error::deserialize(value.clone())
        .map_err(|e| Error::config(format!("server.auth.provider_config.{e}")))?;
    Ok(Some(match config {
        AuthProviderConfig::Oauth2Token(c) => Arc::new(oauth2::OAuth2Provider::new(c)?),
        AuthProviderConfig::GithubToken(c) => Arc::new(github::GithubProvider::new(c)?),
        AuthProviderConfig::Kubernetes(c) => Arc::new(kubernetes::KubernetesProvider::new(c)?),
        AuthProviderConfig::Custom(c) => Arc::new(custom::CustomProvider::new(c)?),
    }))
}

/// A 401 error.
pub(crate) fn unauthenticated(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::Unauthenticated, message)
}

/// Maps claims to attributes as Llama Stack does: each `claim → attribute` looks the claim
/// up by dotted path (falling back to a literal key with dots); strings are split on
/// whitespace, lists are taken as they are (their string items), anything else is skipped.
pub(crate) fn map_claims(
    claims: &Value,
    mapping: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (claim, attribute) in mapping {
        let value = lookup_claim(claims, claim);
        let values: Vec<String> = match value {
            Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Bool(b) => Some(b.to_string()),
                    _ => None,
                })
                .collect(),
            _ => continue,
        };
        if !values.is_empty() {
            out.entry(attribute.clone()).or_default().extend(values);
        }
    }
    out
}

fn lookup_claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = claims;
    let mut ok = true;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => {
                ok = false;
                break;
            }
        }
    }
    if ok {
        Some(cur)
    } else {
        claims.get(path)
    }
}

/// TLS and timeout settings of an auth provider's HTTP client.
pub(crate) fn http_client(
    verify_tls: bool,
    tls_cafile: Option<&str>,
    timeout: Duration,
) -> Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .user_agent("llama-stack");
    if !verify_tls {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(path) = tls_cafile {
        let pem =
            std::fs::read(path).map_err(|e| Error::config(format!("tls_cafile '{path}': {e}")))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| Error::config(format!("tls_cafile '{path}': {e}")))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| Error::config(format!("cannot build the auth HTTP client: {e}")))
}

/// The host of a URL, for "Authentication required" messages.
pub(crate) fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| url.to_owned())
}

/// Default `claims_mapping` of `oauth2_token`.
pub(crate) fn default_oauth2_mapping() -> BTreeMap<String, String> {
    [
        ("sub", "roles"),
        ("username", "roles"),
        ("groups", "teams"),
        ("team", "teams"),
        ("project", "projects"),
        ("tenant", "namespaces"),
        ("namespace", "namespaces"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// An attribute map with string keys, for claims given as a JSON map.
pub(crate) fn attributes_from_json(value: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let values: Vec<String> = match v {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                _ => continue,
            };
            out.insert(k.clone(), values);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn claims_map_like_llama_stack() {
        let claims = json!({
            "sub": "alice", "groups": ["ml", "ops"], "scope": "read write",
            "resource_access": {"app": {"roles": ["admin"]}}, "n": 5, "a.b": "lit"
        });
        let mut mapping = default_oauth2_mapping();
        mapping.insert("scope".into(), "scopes".into());
        mapping.insert("resource_access.app.roles".into(), "roles".into());
        mapping.insert("n".into(), "numbers".into());
        mapping.insert("a.b".into(), "literal".into());
        let attrs = map_claims(&claims, &mapping);
        assert_eq!(attrs["roles"], ["admin", "alice"]);
        assert_eq!(attrs["teams"], ["ml", "ops"]);
        assert_eq!(attrs["scopes"], ["read", "write"]);
        assert_eq!(attrs["literal"], ["lit"]);
        assert!(!attrs.contains_key("numbers"));
    }

    #[test]
    fn provider_config_parses_or_names_the_key() {
        assert!(from_config(None).unwrap().is_none());
        assert!(from_config(Some(&json!({"type": ""}))).unwrap().is_none());
        let err = from_config(Some(
            &json!({"type": "oauth2_token", "jwks": {"uri": "http://x"}, "bogus": 1}),
        ))
        .err()
        .unwrap();
        assert!(err.message().contains("bogus"), "{}", err.message());
        let err = from_config(Some(&json!({"type": "oauth2_token"})))
            .err()
            .unwrap();
        assert!(err.message().contains("jwks"), "{}", err.message());
        let err = from_config(Some(&json!({"type": "saml"}))).err().unwrap();
        assert!(err.message().contains("saml"), "{}", err.message());
    }
}
