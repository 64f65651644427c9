//! `custom`: the token and a summary of the request are POSTed as JSON to an endpoint,
//! which answers `{principal, attributes?, message?}` with 200, or refuses.

use std::time::Duration;

use async_trait::async_trait;
use llama_stack_core::{Result, User};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    attributes_from_json, host_of, http_client, unauthenticated, AuthRequest, Authenticator,
};

/// `provider_config` of `type: custom`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomAuthConfig {
    /// The endpoint that validates tokens.
    pub endpoint: String,
}

pub(super) struct CustomProvider {
    config: CustomAuthConfig,
    client: reqwest::Client,
}

impl CustomProvider {
    pub(super) fn new(config: CustomAuthConfig) -> Result<Self> {
        let client = http_client(true, None, Duration::from_secs(10))?;
        Ok(CustomProvider { config, client })
    }
}

#[async_trait]
impl Authenticator for CustomProvider {
    async fn authenticate(&self, token: &str, request: &AuthRequest) -> Result<User> {
        let body = json!({
            "api_key": token,
            "request": {"path": request.path, "headers": request.headers, "params": request.params},
        });
        let resp = self
            .client
            .post(&self.config.endpoint)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    unauthenticated("Authentication service timeout")
                } else {
                    unauthenticated("Authentication service error")
                }
            })?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(unauthenticated(format!(
                "Authentication failed: {}",
                status.as_u16()
            )));
        }
        let answer: Value = resp
            .json()
            .await
            .map_err(|_| unauthenticated("Invalid authentication response format"))?;
        let principal = answer
            .get("principal")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| unauthenticated("Invalid authentication response format"))?;
        Ok(User {
            principal: principal.to_owned(),
            attributes: answer
                .get("attributes")
                .map(attributes_from_json)
                .unwrap_or_default(),
        })
    }

    fn missing_message(&self) -> String {
        format!(
            "Authentication required. Please provide a valid token for {}",
            host_of(&self.config.endpoint)
        )
    }
}
