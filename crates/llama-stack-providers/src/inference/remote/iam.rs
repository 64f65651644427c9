//! IBM Cloud IAM for `remote::watsonx`: the configured (or per-request) API key is exchanged
//! for a short-lived bearer token at `<iam_url>/identity/token`, as IBM documents at
//! <https://cloud.ibm.com/docs/account?topic=account-iamtoken_from_apikey>
//! (form `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=<key>`, answer
//! `{"access_token", "expires_in", ...}`). Tokens are cached per key until a minute before
//! they expire; one exchange runs at a time, so concurrent callers share its token.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use llama_stack_core::{Error, Result};
use reqwest::header::ACCEPT;
use serde::Deserialize;

use super::upstream::Upstream;

/// IBM Cloud's IAM endpoint.
pub(crate) const DEFAULT_IAM_URL: &str = "https://iam.cloud.ibm.com";
/// A token is renewed this long before it expires.
const RENEW_BEFORE: Duration = Duration::from_secs(60);
/// Keys whose tokens are kept (per-request keys included).
const MAX_CACHED_KEYS: usize = 64;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Bearer tokens obtained from IAM, per API key.
#[derive(Debug)]
pub(crate) struct IamTokens {
    token_url: String,
    cache: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
}

impl IamTokens {
    /// Tokens from the IAM service at `iam_url`.
    pub(crate) fn new(iam_url: &str) -> Self {
        IamTokens {
            token_url: format!("{}/identity/token", iam_url.trim_end_matches('/')),
            cache: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// A valid bearer token for `api_key`, exchanging the key when no cached token is fresh.
    pub(crate) async fn bearer(&self, upstream: &Upstream, api_key: &str) -> Result<String> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        if let Some((token, expires)) = cache.get(api_key) {
            if *expires > now + RENEW_BEFORE {
                return Ok(token.clone());
            }
        }
        let client = upstream.client();
        let resp = upstream
            .send(|| {
                client
                    .post(&self.token_url)
                    .header(ACCEPT, "application/json")
                    .form(&[
                        ("grant_type", "urn:ibm:params:oauth:grant-type:apikey"),
                        ("apikey", api_key),
                    ])
            })
            .await
            .map_err(|e| e.with_prefix("IBM Cloud IAM token exchange"))?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| upstream.transport_error(&e))?;
        let token: TokenResponse = serde_json::from_slice(&bytes).map_err(|e| {
            Error::upstream(
                upstream.provider_id(),
                502,
                format!("IBM Cloud IAM answered with an unreadable token: {e}"),
            )
        })?;
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(3600));
        cache.retain(|_, (_, expires)| *expires > now + RENEW_BEFORE);
        if cache.len() >= MAX_CACHED_KEYS {
            cache.clear();
        }
        cache.insert(
            api_key.to_string(),
            (token.access_token.clone(), now + lifetime),
        );
        Ok(token.access_token)
    }
}
