//! `github_token`: a GitHub token is valid when `GET <github_api_base_url>/user` accepts
//! it (GitHub REST API, "Get the authenticated user"); the principal is the `login`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::{Result, User};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{http_client, map_claims, unauthenticated, AuthRequest, Authenticator};

fn default_base() -> String {
    "https://api.github.com".to_owned()
}

fn default_mapping() -> BTreeMap<String, String> {
    [("login", "roles"), ("organizations", "teams")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `provider_config` of `type: github_token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubAuthConfig {
    /// GitHub API base URL (GitHub Enterprise: `https://host/api/v3`).
    #[serde(default = "default_base")]
    pub github_api_base_url: String,
    /// Claim → attribute (claims: `login`, `id`, `organizations`).
    #[serde(default = "default_mapping")]
    pub claims_mapping: BTreeMap<String, String>,
}

pub(super) struct GithubProvider {
    config: GithubAuthConfig,
    client: reqwest::Client,
}

impl GithubProvider {
    pub(super) fn new(config: GithubAuthConfig) -> Result<Self> {
        let client = http_client(true, None, Duration::from_secs(10))?;
        Ok(GithubProvider { config, client })
    }
}

#[async_trait]
impl Authenticator for GithubProvider {
    async fn authenticate(&self, token: &str, _request: &AuthRequest) -> Result<User> {
        let url = format!(
            "{}/user",
            self.config.github_api_base_url.trim_end_matches('/')
        );
        let resp = self
            .client
            .get(&url)
            .bearer_auth(token)
            .header("Accept", "application/vnd.github.v3+json")
            .send()
            .await
            .map_err(|e| unauthenticated(format!("GitHub token validation failed: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(unauthenticated(format!(
                "GitHub token validation failed: HTTP {}",
                status.as_u16()
            )));
        }
        let body: Value = resp
            .json()
            .await
            .map_err(|e| unauthenticated(format!("GitHub token validation failed: {e}")))?;
        let login = body
            .get("login")
            .and_then(Value::as_str)
            .filter(|l| !l.is_empty())
            .ok_or_else(|| unauthenticated("GitHub token validation failed: no login"))?;
        let id = match body.get("id") {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        // As in Llama Stack 0.7, organizations are not fetched.
        let claims = json!({"login": login, "id": id, "organizations": []});
        Ok(User {
            principal: login.to_owned(),
            attributes: map_claims(&claims, &self.config.claims_mapping),
        })
    }

    fn missing_message(&self) -> String {
        "Authentication required. Please provide a valid GitHub access token (https://github.com/settings/tokens) in the Authorization header (Bearer <token>)".to_owned()
    }
}
