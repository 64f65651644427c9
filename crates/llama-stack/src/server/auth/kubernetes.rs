//! `kubernetes`: the caller's token is valid when the API server accepts a
//! `SelfSubjectReview` made with it (`POST /apis/authentication.k8s.io/v1/selfsubjectreviews`,
//! answered 201 with `status.userInfo {username, uid, groups, extra}`).

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::{Error, Result, User};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{host_of, http_client, map_claims, unauthenticated, AuthRequest, Authenticator};

fn default_api() -> String {
    "https://kubernetes.default.svc".to_owned()
}
fn yes() -> bool {
    true
}
fn default_mapping() -> BTreeMap<String, String> {
    [("username", "roles"), ("groups", "roles")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `provider_config` of `type: kubernetes`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesAuthConfig {
    /// API server URL (http or https, with a host).
    #[serde(default = "default_api")]
    pub api_server_url: String,
    /// Verify the API server's TLS certificate.
    #[serde(default = "yes")]
    pub verify_tls: bool,
    /// CA (PEM) of the API server.
    #[serde(default)]
    pub tls_cafile: Option<String>,
    /// `userInfo` field → attribute.
    #[serde(default = "default_mapping")]
    pub claims_mapping: BTreeMap<String, String>,
}

pub(super) struct KubernetesProvider {
    config: KubernetesAuthConfig,
    client: reqwest::Client,
}

impl KubernetesProvider {
    pub(super) fn new(config: KubernetesAuthConfig) -> Result<Self> {
        let url = reqwest::Url::parse(&config.api_server_url).map_err(|e| {
            Error::config(format!("server.auth.provider_config.api_server_url: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(Error::config(
                "server.auth.provider_config.api_server_url: must be an http(s) URL with a host",
            ));
        }
        let client = http_client(
            config.verify_tls,
            config.tls_cafile.as_deref(),
            Duration::from_secs(10),
        )?;
        Ok(KubernetesProvider { config, client })
    }
}

#[async_trait]
impl Authenticator for KubernetesProvider {
    async fn authenticate(&self, token: &str, _request: &AuthRequest) -> Result<User> {
        let url = format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            self.config.api_server_url.trim_end_matches('/')
        );
        let resp = self
            .client
            .post(&url)
            .bearer_auth(token)
            .json(&json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}))
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    unauthenticated("Token validation timeout")
                } else {
                    unauthenticated(format!("Token validation error: {e}"))
                }
            })?;
        let status = resp.status();
        if status.as_u16() != 201 {
            return Err(unauthenticated(format!(
                "Token validation error: the API server answered HTTP {}",
                status.as_u16()
            )));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| unauthenticated(format!("Token validation error: {e}")))?;
        let info = &body["status"]["userInfo"];
        let username = info
            .get("username")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| unauthenticated("Token validation error: no username in the review"))?;
        Ok(User {
            principal: username.to_owned(),
            attributes: map_claims(info, &self.config.claims_mapping),
        })
    }

    fn missing_message(&self) -> String {
        format!(
            "Authentication required. Please provide a valid Kubernetes token for {}",
            host_of(&self.config.api_server_url)
        )
    }
}
