//! [`RoutingTable`]: resource id → resource (provider id, provider resource id, owner),
//! access-checked on every operation and persisted in the registry namespace of a
//! [`KvStore`].
//!
//! # Consistency
//!
//! The store is the source of truth; the table keeps a read-through cache in front of it.
//!
//! - **Writes** go to the store first, then to the cache. Registration is an atomic
//!   set-if-absent, so when several instances sharing one store register the same id at
//!   once, exactly one succeeds and the others get `Conflict`.
//! - **`get` / `lookup`** serve a cached entry while it is younger than the table's
//!   *max staleness*; an older one (or a miss) is re-read from the store, so an entry
//!   registered by another instance is visible on first use and one unregistered by
//!   another instance disappears within the max staleness. The hot path (a fresh cache
//!   hit) takes a read lock and a clock read, nothing more.
//! - **[`RoutingTable::list_current`]** is always current: it serves the cache when the
//!   store's [change token](crate::storage::KvStore::change_token) shows no write since the
//!   cache was last filled from a scan (for `kv_sqlite`, SQLite's `data_version`, a
//!   shared-memory read), and otherwise scans the store and refreshes the cache.
//!   [`RoutingTable::list`] is the cached snapshot.
//!
//! The max staleness defaults to [`SHARED_MAX_STALENESS`] when the store can be shared
//! between processes (every backend except `kv_memory` and `kv_sled`, which one process
//! owns) and to "never stale" otherwise, where this table sees every write;
//! [`RoutingTable::with_max_staleness`] overrides it. When the store cannot be reached,
//! calls that must read it fail with its `Unavailable` error rather than serve stale data.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::access::{AccessPolicy, Action, ProtectedResource};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::resource::{RegistryEntry, Resource, ResourceSource};
use crate::storage::{ChangeToken, KvStore};

/// The registry key prefix, as Llama Stack writes it.
pub const REGISTRY_KEY_PREFIX: &str = "distributions:registry:v10::";

/// How many identifiers a not-found message lists at most.
const NOT_FOUND_LISTED: usize = 20;

/// How long a cached entry is trusted when the registry store may be shared with other
/// processes (see the module doc).
pub const SHARED_MAX_STALENESS: Duration = Duration::from_millis(500);

/// Backends that one process owns: the table sees every write, so the cache never goes stale.
const PROCESS_LOCAL_BACKENDS: [&str; 2] = ["kv_memory", "kv_sled"];

/// A cached entry and when it was read from (or written to) the store.
struct Cached<R: Resource> {
    entry: Arc<RegistryEntry<R>>,
    at: Instant,
}

impl<R: Resource> Cached<R> {
    fn new(entry: Arc<RegistryEntry<R>>) -> Self {
        Cached {
            entry,
            at: Instant::now(),
        }
    }
}

type Cache<R> = BTreeMap<String, Cached<R>>;

/// A table of resources of one type.
pub struct RoutingTable<R: Resource> {
    kv: Arc<dyn KvStore>,
    policy: Arc<AccessPolicy>,
    cache: RwLock<Cache<R>>,
    /// The store's change token read just before the scan the cache was last filled
    /// from; written only while holding the cache's write lock.
    scanned_at: RwLock<Option<ChangeToken>>,
    max_staleness: Option<Duration>,
}

impl<R: Resource> RoutingTable<R> {
    /// A table over the registry store `kv`, enforcing `policy`. Call [`reload`](Self::reload) to load.
    pub fn new(kv: Arc<dyn KvStore>, policy: Arc<AccessPolicy>) -> Self {
        let max_staleness = if PROCESS_LOCAL_BACKENDS.contains(&kv.backend()) {
            None
        } else {
            Some(SHARED_MAX_STALENESS)
        };
        RoutingTable {
            kv,
            policy,
            cache: RwLock::new(BTreeMap::new()),
            scanned_at: RwLock::new(None),
            max_staleness,
        }
    }

    /// Sets how long a cached entry is served before it is re-read from the store
    /// (`None` = until this table changes it; `Some(ZERO)` = always re-read).
    pub fn with_max_staleness(mut self, max_staleness: Option<Duration>) -> Self {
        self.max_staleness = max_staleness;
        self
    }

    /// How long a cached entry is served before it is re-read (`None` = never re-read).
    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    fn is_fresh(&self, cached: &Cached<R>) -> bool {
        match self.max_staleness {
            None => true,
            Some(limit) => cached.at.elapsed() < limit,
        }
    }

    fn key(identifier: &str) -> String {
        format!("{REGISTRY_KEY_PREFIX}{}:{identifier}", R::TYPE)
    }

    fn prefix() -> String {
        format!("{REGISTRY_KEY_PREFIX}{}:", R::TYPE)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, Cache<R>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_cache(&self) -> std::sync::RwLockWriteGuard<'_, Cache<R>> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn encode(id: &str, entry: &RegistryEntry<R>) -> Result<String> {
        serde_json::to_string(entry)
            .map_err(|e| Error::internal(format!("cannot encode {} '{id}': {e}", R::DISPLAY)))
    }

    fn decode(key: &str, value: &str) -> Result<RegistryEntry<R>> {
        serde_json::from_str(value)
            .map_err(|e| Error::internal(format!("registry entry '{key}' cannot be read: {e}")))
    }

    /// Reloads every entry of this type from the store.
    pub async fn reload(&self) -> Result<()> {
        self.reload_from(self.kv.change_token()).await
    }

    /// Reloads from a scan started after the store showed `token`.
    async fn reload_from(&self, token: Option<ChangeToken>) -> Result<()> {
        let pairs = self.kv.scan_prefix(&Self::prefix()).await?;
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let entry = Self::decode(&key, &value)?;
            map.insert(
                entry.resource.identifier().to_string(),
                Cached::new(Arc::new(entry)),
            );
        }
        let mut cache = self.write_cache();
        *cache = map;
        *self.scanned_at.write().unwrap_or_else(|e| e.into_inner()) = token;
        Ok(())
    }

    /// The access policy this table enforces.
    pub fn policy(&self) -> &AccessPolicy {
        &self.policy
    }

    /// Registers a resource owned by the caller. An existing id is a `Conflict`; a caller
    /// the policy does not allow to create it gets `Forbidden`.
    pub async fn register(&self, ctx: &RequestContext, resource: R) -> Result<R> {
        let entry = RegistryEntry {
            resource,
            owner: ctx.user().cloned(),
            source: ResourceSource::ViaRegisterApi,
        };
        self.policy
            .check(ctx.user(), Action::Create, &entry.protected())?;
        self.insert_new(entry).await
    }

    /// Registers a resource from the run config (no owner); an identical existing entry is
    /// kept as it is, so rebuilding never duplicates.
    pub async fn register_from_config(&self, resource: R) -> Result<R> {
        let id = resource.identifier().to_string();
        let entry = RegistryEntry {
            resource,
            owner: None,
            source: ResourceSource::ViaRegisterApi,
        };
        let value = Self::encode(&id, &entry)?;
        let key = Self::key(&id);
        // Rebuilds register the same resources again: write only what changed.
        if self.kv.get(&key).await?.as_deref() != Some(value.as_str()) {
            self.kv.set(&key, &value, None).await?;
        }
        let resource = entry.resource.clone();
        self.write_cache().insert(id, Cached::new(Arc::new(entry)));
        Ok(resource)
    }

    async fn insert_new(&self, entry: RegistryEntry<R>) -> Result<R> {
        let id = entry.resource.identifier().to_string();
        if id.is_empty() {
            return Err(Error::invalid_request(format!(
                "{} identifier must not be empty",
                R::DISPLAY
            )));
        }
        let value = Self::encode(&id, &entry)?;
        if !self.kv.set_if_absent(&Self::key(&id), &value, None).await? {
            return Err(Error::conflict(format!(
                "{} '{id}' already exists; unregister it first or choose another identifier",
                R::DISPLAY
            ))
            .with_context("resource_id", id));
        }
        let resource = entry.resource.clone();
        self.write_cache().insert(id, Cached::new(Arc::new(entry)));
        Ok(resource)
    }

    /// Replaces every `listed_from_provider` entry of `provider_id` with `resources`;
    /// entries registered through the API are kept (and win on an id clash).
    pub async fn replace_provider_listing(
        &self,
        provider_id: &str,
        resources: Vec<R>,
    ) -> Result<()> {
        // One scan of what is stored, so unchanged entries are not written again.
        let stored: std::collections::HashMap<String, String> = self
            .kv
            .scan_prefix(&Self::prefix())
            .await?
            .into_iter()
            .collect();
        let mut listed = std::collections::HashSet::new();
        for resource in resources {
            let id = resource.identifier().to_string();
            let key = Self::key(&id);
            if let Some(value) = stored.get(&key) {
                if Self::decode(&id, value)?.source == ResourceSource::ViaRegisterApi {
                    continue;
                }
            }
            listed.insert(id.clone());
            let entry = RegistryEntry {
                resource,
                owner: None,
                source: ResourceSource::ListedFromProvider,
            };
            let value = Self::encode(&id, &entry)?;
            if stored.get(&key) != Some(&value) {
                self.kv.set(&key, &value, None).await?;
            }
            self.write_cache().insert(id, Cached::new(Arc::new(entry)));
        }
        let prefix = Self::prefix();
        for (key, value) in &stored {
            let Some(id) = key.strip_prefix(&prefix) else {
                continue;
            };
            let entry = Self::decode(id, value)?;
            if entry.source == ResourceSource::ListedFromProvider
                && entry.resource.provider_id() == provider_id
                && !listed.contains(id)
            {
                self.kv.delete(key).await?;
                self.write_cache().remove(id);
            }
        }
        Ok(())
    }

    /// The entry with `identifier` if it exists and the caller may read it; otherwise
    /// `NotFound` naming the id and listing what the caller can see.
    pub async fn get(
        &self,
        ctx: &RequestContext,
        identifier: &str,
    ) -> Result<Arc<RegistryEntry<R>>> {
        if let Some(entry) = self.lookup(identifier).await? {
            if self
                .policy
                .is_allowed(ctx.user(), Action::Read, &entry.protected())
            {
                return Ok(entry);
            }
        }
        Err(self.not_found(ctx, identifier))
    }

    /// The entry with `identifier`, with no access check: a fresh cached entry, else the
    /// store's (see the module doc for how fresh).
    pub async fn lookup(&self, identifier: &str) -> Result<Option<Arc<RegistryEntry<R>>>> {
        if let Some(cached) = self.read_cache().get(identifier) {
            if self.is_fresh(cached) {
                return Ok(Some(cached.entry.clone()));
            }
        }
        match self.kv.get(&Self::key(identifier)).await? {
            Some(value) => {
                let entry = Arc::new(Self::decode(identifier, &value)?);
                self.write_cache()
                    .insert(identifier.to_string(), Cached::new(entry.clone()));
                Ok(Some(entry))
            }
            None => {
                self.write_cache().remove(identifier);
                Ok(None)
            }
        }
    }

    /// The `NotFound` error for `identifier`, listing what the caller may see.
    pub fn not_found(&self, ctx: &RequestContext, identifier: &str) -> Error {
        let visible = self.list(ctx);
        let mut names: Vec<&str> = visible.iter().map(|r| r.identifier()).collect();
        let more = names.len().saturating_sub(NOT_FOUND_LISTED);
        names.truncate(NOT_FOUND_LISTED);
        let available = if names.is_empty() {
            "none are registered".to_string()
        } else if more > 0 {
            format!("available: {} (and {more} more)", names.join(", "))
        } else {
            format!("available: {}", names.join(", "))
        };
        Error::new(
            crate::ErrorKind::NotFound,
            format!(
                "{} '{identifier}' not found ({available}). Use '{}' to list available {}s.",
                R::DISPLAY,
                R::LIST_HINT,
                R::DISPLAY
            ),
        )
        .with_context("resource_id", identifier)
    }

    /// Every resource the caller may read, ordered by identifier, as the store holds them
    /// now: for a store other processes may share, this scans it and refreshes the cache
    /// unless the store's change token shows it unchanged since the last scan.
    pub async fn list_current(&self, ctx: &RequestContext) -> Result<Vec<R>> {
        if self.max_staleness.is_some() {
            let token = self.kv.change_token();
            let unchanged = token.is_some()
                && *self.scanned_at.read().unwrap_or_else(|e| e.into_inner()) == token;
            if !unchanged {
                self.reload_from(token).await?;
            }
        }
        Ok(self.list(ctx))
    }

    /// Every resource the caller may read, ordered by identifier, from the cache (a
    /// snapshot; see [`Self::list_current`]).
    pub fn list(&self, ctx: &RequestContext) -> Vec<R> {
        self.read_cache()
            .values()
            .map(|c| &c.entry)
            .filter(|e| {
                self.policy
                    .is_allowed(ctx.user(), Action::Read, &e.protected())
            })
            .map(|e| e.resource.clone())
            .collect()
    }

    /// Every entry, unchecked (for internal refresh and inspection).
    pub fn entries(&self) -> Vec<Arc<RegistryEntry<R>>> {
        self.read_cache()
            .values()
            .map(|c| c.entry.clone())
            .collect()
    }

    /// Removes a resource. Unreadable looks like not found; readable but not deletable is `Forbidden`.
    pub async fn unregister(&self, ctx: &RequestContext, identifier: &str) -> Result<R> {
        let entry = self.get(ctx, identifier).await?;
        self.policy
            .check(ctx.user(), Action::Delete, &entry.protected())?;
        self.kv.delete(&Self::key(identifier)).await?;
        self.write_cache().remove(identifier);
        Ok(entry.resource.clone())
    }

    /// Checks an action on a resource that is not in the table (e.g. a model addressed as
    /// `<provider_id>/<id>` without registration), treated as unowned.
    pub fn check_unregistered(
        &self,
        ctx: &RequestContext,
        action: Action,
        identifier: &str,
    ) -> Result<()> {
        self.policy.check(
            ctx.user(),
            action,
            &ProtectedResource::new(R::TYPE, identifier, None),
        )
    }
}
