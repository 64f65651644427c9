//! `oauth2_token`: bearer JWTs verified with keys from a JWKS (cached, refetched after
//! `key_recheck_period` and — rate-limited — when a token names an unknown `kid`), or
//! opaque tokens checked by RFC 7662 token introspection.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use llama_stack_core::{Error, Result, User};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

use super::{
    default_oauth2_mapping, host_of, http_client, map_claims, unauthenticated, AuthRequest,
    Authenticator,
};

fn default_audience() -> String {
    "llama-stack".to_owned()
}
fn yes() -> bool {
    true
}
fn default_recheck() -> u64 {
    3600
}
fn default_min_refetch() -> u64 {
    10
}

/// `provider_config` of `type: oauth2_token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// Required `aud` (default `llama-stack`); always verified.
    #[serde(default = "default_audience")]
    pub audience: String,
    /// Required `iss`, verified when set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Verify TLS of the JWKS / introspection endpoint.
    #[serde(default = "yes")]
    pub verify_tls: bool,
    /// Extra CA (PEM) for the JWKS / introspection endpoint.
    #[serde(default)]
    pub tls_cafile: Option<String>,
    /// Claim → attribute name.
    #[serde(default = "default_oauth2_mapping")]
    pub claims_mapping: BTreeMap<String, String>,
    /// Verify JWTs locally with these keys.
    #[serde(default)]
    pub jwks: Option<JwksConfig>,
    /// Ask an introspection endpoint instead.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
}

/// `oauth2_token.jwks`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksConfig {
    /// The JWKS URL.
    pub uri: String,
    /// Bearer token sent when fetching the JWKS (e.g. Kubernetes).
    #[serde(default)]
    pub token: Option<String>,
    /// Seconds after which the keys are fetched again (default 3600).
    #[serde(default = "default_recheck")]
    pub key_recheck_period: u64,
    /// Minimum seconds between two fetches caused by unknown `kid`s (default 10; a
    /// llama-stack-rs addition that keeps forged tokens from hammering the JWKS endpoint).
    #[serde(default = "default_min_refetch")]
    pub min_refetch_interval: u64,
}

/// `oauth2_token.introspection` (RFC 7662).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// The introspection endpoint.
    pub url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: String,
    /// Send the credentials as form fields instead of HTTP Basic.
    #[serde(default)]
    pub send_secret_in_body: bool,
}

struct CachedKey {
    key: DecodingKey,
    alg: Option<Algorithm>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, CachedKey>,
    fetched_at: Option<Instant>,
}

pub(super) struct OAuth2Provider {
    config: OAuth2Config,
    client: reqwest::Client,
    cache: RwLock<KeyCache>,
    fetching: Mutex<()>,
}

const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn invalid(reason: impl std::fmt::Display) -> Error {
    unauthenticated(format!("Invalid JWT token: {reason}"))
}

impl OAuth2Provider {
    pub(super) fn new(config: OAuth2Config) -> Result<Self> {
        match (&config.jwks, &config.introspection) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "server.auth.provider_config: set either jwks or introspection, not both",
                ))
            }
            (None, None) => {
                return Err(Error::config(
                    "server.auth.provider_config: oauth2_token needs jwks or introspection",
                ))
            }
            _ => {}
        }
        let client = http_client(
            config.verify_tls,
            config.tls_cafile.as_deref(),
            Duration::from_secs(10),
        )?;
        Ok(OAuth2Provider {
            config,
            client,
            cache: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        })
    }

    async fn fetch_keys(&self, jwks: &JwksConfig) -> Result<HashMap<String, CachedKey>> {
        let mut req = self.client.get(&jwks.uri);
        if let Some(token) = &jwks.token {
            req = req.bearer_auth(token);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Error::unavailable(format!("cannot fetch the JWKS: {e}")))?;
        if !resp.status().is_success() {
            return Err(Error::unavailable(format!(
                "cannot fetch the JWKS: HTTP {}",
                resp.status()
            )));
        }
        let set: JwkSet = resp
            .json()
            .await
            .map_err(|e| Error::unavailable(format!("the JWKS is not a key set: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                tracing::warn!(kid = ?jwk.common.key_id, "skipping a JWKS key that cannot be used");
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().and_then(|s| s.parse::<Algorithm>().ok()));
            let kid = jwk.common.key_id.clone().unwrap_or_default();
            keys.insert(kid, CachedKey { key, alg });
        }
        Ok(keys)
    }

    /// Refetches the keys unless another task just did, or `min_gap` has not passed.
    async fn refresh(&self, jwks: &JwksConfig, min_gap: Duration) -> Result<()> {
        let _one_at_a_time = self.fetching.lock().await;
        if let Some(at) = self.cache.read().await.fetched_at {
            if at.elapsed() < min_gap {
                return Ok(());
            }
        }
        let keys = self.fetch_keys(jwks).await;
        let mut cache = self.cache.write().await;
        // A failed fetch still counts, so a broken endpoint is not hammered either.
        cache.fetched_at = Some(Instant::now());
        cache.keys = keys?;
        Ok(())
    }

    async fn verify_jwt(&self, jwks: &JwksConfig, token: &str) -> Result<User> {
        let header = decode_header(token).map_err(invalid)?;
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(invalid(format!(
                "algorithm {:?} is not accepted",
                header.alg
            )));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let recheck = Duration::from_secs(jwks.key_recheck_period);
        let stale = match self.cache.read().await.fetched_at {
            None => true,
            Some(at) => at.elapsed() >= recheck,
        };
        if stale {
            self.refresh(jwks, recheck)
                .await
                .map_err(|e| invalid(e.message()))?;
        }
        let known = self.cache.read().await.keys.contains_key(&kid);
        if !known {
            // Key rotation: a new kid may have been published since the last fetch.
            self.refresh(jwks, Duration::from_secs(jwks.min_refetch_interval))
                .await
                .map_err(|e| invalid(e.message()))?;
        }
        let cache = self.cache.read().await;
        let entry = match cache.keys.get(&kid) {
            Some(k) => k,
            None if kid.is_empty() && cache.keys.len() == 1 => cache
                .keys
                .values()
                .next()
                .ok_or_else(|| invalid("no signing key"))?,
            None => return Err(invalid(format!("unknown signing key id '{kid}'"))),
        };
        if let Some(alg) = entry.alg {
            if alg != header.alg {
                return Err(invalid(format!(
                    "algorithm {:?} does not match the key's {alg:?}",
                    header.alg
                )));
            }
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&[self.config.audience.as_str()]);
        if let Some(issuer) = &self.config.issuer {
            validation.set_issuer(&[issuer.as_str()]);
        }
        validation.set_required_spec_claims(&["aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        let data = decode::<Value>(token, &entry.key, &validation).map_err(invalid)?;
        drop(cache);
        self.user_from_claims(&data.claims, "sub")
    }

    fn user_from_claims(&self, claims: &Value, principal_claim: &str) -> Result<User> {
        let principal = claims
            .get(principal_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .or_else(|| claims.get("username").and_then(Value::as_str))
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("the token has no subject ('sub')"))?;
        Ok(User {
            principal: principal.to_owned(),
            attributes: map_claims(claims, &self.config.claims_mapping),
        })
    }

    async fn introspect(&self, cfg: &IntrospectionConfig, token: &str) -> Result<User> {
        let mut form = vec![("token", token.to_owned())];
        let mut req = self.client.post(&cfg.url);
        if cfg.send_secret_in_body {
            form.push(("client_id", cfg.client_id.clone()));
            form.push(("client_secret", cfg.client_secret.clone()));
        } else {
            req = req.basic_auth(&cfg.client_id, Some(&cfg.client_secret));
        }
        let resp = req.form(&form).send().await.map_err(|e| {
            if e.is_timeout() {
                unauthenticated("Token introspection timed out")
            } else {
                unauthenticated(format!("Token introspection failed: {e}"))
            }
        })?;
        let status = resp.status();
        if status != reqwest::StatusCode::OK {
            return Err(unauthenticated(format!(
                "Token introspection failed: {}",
                status.as_u16()
            )));
        }
        let claims: Value = resp
            .json()
            .await
            .map_err(|e| unauthenticated(format!("Token introspection failed: {e}")))?;
        if claims.get("active").and_then(Value::as_bool) != Some(true) {
            return Err(unauthenticated("Token not active"));
        }
        self.user_from_claims(&claims, "sub")
            .map_err(|_| unauthenticated("Token introspection returned no subject"))
    }
}

#[async_trait]
impl Authenticator for OAuth2Provider {
    async fn authenticate(&self, token: &str, _request: &AuthRequest) -> Result<User> {
        match (&self.config.jwks, &self.config.introspection) {
            (Some(jwks), _) => self.verify_jwt(jwks, token).await,
            (None, Some(cfg)) => self.introspect(cfg, token).await,
            (None, None) => Err(unauthenticated("no token validation method is configured")),
        }
    }

    fn missing_message(&self) -> String {
        let from = match (&self.config.issuer, &self.config.introspection) {
            (Some(issuer), _) => issuer.clone(),
            (None, Some(i)) => host_of(&i.url),
            (None, None) => "your identity provider".to_owned(),
        };
        format!("Authentication required. Please provide a valid OAuth2 Bearer token from {from}")
    }
}
