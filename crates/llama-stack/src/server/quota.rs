//! Request quotas (`server.quota`): a counter per client and period in the configured KV
//! store, bumped with the store's atomic `increment`, so replicas sharing the store share
//! one count.
//!
//! Counting happens **after** authentication and is keyed on the authenticated principal
//! (`quota:user:<principal>:<window>`), or on the client IP for anonymous requests
//! (`quota:ip:<addr>:<window>`). Llama Stack 0.7 runs its quota middleware before
//! authentication and keys authenticated requests on the raw bearer token, so in practice
//! everyone is counted by IP with the anonymous limit, and a client rotating tokens would
//! get a fresh quota each time; keying on the principal fixes both.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use llama_stack_core::storage::KvStore;
use llama_stack_core::{Error, ErrorKind, Result, User};

use super::error::RETRY_AFTER;
use crate::config::QuotaConfig;

/// A quota checker over one KV store.
#[derive(Clone)]
pub struct Quota {
    store: Arc<dyn KvStore>,
    anonymous_max: u64,
    authenticated_max: u64,
    period: u64,
    auth_enabled: bool,
}

impl std::fmt::Debug for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quota")
            .field("anonymous_max", &self.anonymous_max)
            .field("authenticated_max", &self.authenticated_max)
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl Quota {
    /// A quota counting in `store` with the limits of `config`. Without authentication
    /// everyone gets the anonymous limit, as in Llama Stack.
    pub fn new(store: Arc<dyn KvStore>, config: &QuotaConfig, auth_enabled: bool) -> Self {
        Quota {
            store,
            anonymous_max: config.anonymous_max_requests,
            authenticated_max: config.authenticated_max_requests,
            period: config.period.seconds().max(1),
            auth_enabled,
        }
    }

    /// Counts one request by `user` (or by `ip` when anonymous); `RateLimited` with a
    /// `retry_after` context when the client is over its limit, `Unavailable` (503) when the store
    /// fails.
    pub async fn check(&self, user: Option<&User>, ip: Option<IpAddr>) -> Result<()> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let window = now / self.period;
        let (client, limit) = match user {
            Some(u) if self.auth_enabled => {
                (format!("user:{}", u.principal), self.authenticated_max)
            }
            _ => (
                ip.map(|ip| format!("ip:{ip}"))
                    .unwrap_or_else(|| "anonymous".to_owned()),
                self.anonymous_max,
            ),
        };
        let key = format!("quota:{client}:{window}");
        let count = self
            .store
            .increment(&key, 1, Some(Duration::from_secs(self.period)))
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "quota store failed");
                Error::unavailable("Quota service error")
            })?;
        if count > 0 && (count as u64) > limit {
            let retry_after = (window + 1) * self.period - now;
            return Err(Error::new(
                ErrorKind::RateLimited,
                format!(
                    "Quota exceeded: {limit} requests per {} s; retry after {retry_after} s",
                    self.period
                ),
            )
            .with_context(RETRY_AFTER, retry_after.to_string()));
        }
        Ok(())
    }
}
