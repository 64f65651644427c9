//! [`RoutingTable`]: resource id → resource (provider id, provider resource id, owner),
//! access-checked on every operation and persisted in the registry namespace of a
//! [`KvStore`].
//!
//! Consistency: the table keeps a read-through cache. Writes go to the store first (an
//! atomic set-if-absent for registration, so concurrent registrations of one id yield
//! exactly one winner, even across processes sharing the store), then to the cache. A
//! lookup that misses the cache reads the store, so resources registered by another
//! instance become visible on first use; [`RoutingTable::reload`] refreshes lists.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::access::{AccessPolicy, Action, ProtectedResource};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::resource::{RegistryEntry, Resource, ResourceSource};
use crate::storage::KvStore;

/// The registry key prefix, as Llama Stack writes it.
pub const REGISTRY_KEY_PREFIX: &str = "distributions:registry:v10::";

/// How many identifiers a not-found message lists at most.
const NOT_FOUND_LISTED: usize = 20;

/// A table of resources of one type.
pub struct RoutingTable<R: Resource> {
    kv: Arc<dyn KvStore>,
    policy: Arc<AccessPolicy>,
    cache: RwLock<BTreeMap<String, Arc<RegistryEntry<R>>>>,
}

impl<R: Resource> RoutingTable<R> {
    /// A table over the registry store `kv`, enforcing `policy`. Call [`reload`](Self::reload) to load.
    pub fn new(kv: Arc<dyn KvStore>, policy: Arc<AccessPolicy>) -> Self {
        RoutingTable {
            kv,
            policy,
            cache: RwLock::new(BTreeMap::new()),
        }
    }

    fn key(identifier: &str) -> String {
        format!("{REGISTRY_KEY_PREFIX}{}:{identifier}", R::TYPE)
    }

    fn prefix() -> String {
        format!("{REGISTRY_KEY_PREFIX}{}:", R::TYPE)
    }

    fn read_cache(
        &self,
    ) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<RegistryEntry<R>>>> {
        self.cache.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_cache(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<RegistryEntry<R>>>> {
        self.cache.write().unwrap_or_else(|e| e.into_inner())
    }

    fn decode(key: &str, value: &str) -> Result<RegistryEntry<R>> {
        serde_json::from_str(value)
            .map_err(|e| Error::internal(format!("registry entry '{key}' cannot be read: {e}")))
    }

    /// Reloads every entry of this type from the store.
    pub async fn reload(&self) -> Result<()> {
        let pairs = self.kv.scan_prefix(&Self::prefix()).await?;
        let mut map = BTreeMap::new();
        for (key, value) in pairs {
            let entry = Self::decode(&key, &value)?;
            map.insert(entry.resource.identifier().to_string(), Arc::new(entry));
        }
        *self.write_cache() = map;
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
        let value = serde_json::to_string(&entry)
            .map_err(|e| Error::internal(format!("cannot encode {} '{id}': {e}", R::DISPLAY)))?;
        self.kv.set(&Self::key(&id), &value, None).await?;
        let resource = entry.resource.clone();
        self.write_cache().insert(id, Arc::new(entry));
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
        let value = serde_json::to_string(&entry)
            .map_err(|e| Error::internal(format!("cannot encode {} '{id}': {e}", R::DISPLAY)))?;
        if !self.kv.set_if_absent(&Self::key(&id), &value, None).await? {
            return Err(Error::conflict(format!(
                "{} '{id}' already exists; unregister it first or choose another identifier",
                R::DISPLAY
            ))
            .with_context("resource_id", id));
        }
        let resource = entry.resource.clone();
        self.write_cache().insert(id, Arc::new(entry));
        Ok(resource)
    }

    /// Replaces every `listed_from_provider` entry of `provider_id` with `resources`;
    /// entries registered through the API are kept (and win on an id clash).
    pub async fn replace_provider_listing(
        &self,
        provider_id: &str,
        resources: Vec<R>,
    ) -> Result<()> {
        let stale: Vec<String> = self
            .read_cache()
            .values()
            .filter(|e| {
                e.source == ResourceSource::ListedFromProvider
                    && e.resource.provider_id() == provider_id
            })
            .map(|e| e.resource.identifier().to_string())
            .collect();
        for id in &stale {
            self.kv.delete(&Self::key(id)).await?;
            self.write_cache().remove(id);
        }
        for resource in resources {
            let id = resource.identifier().to_string();
            if let Some(existing) = self.read_cache().get(&id) {
                if existing.source == ResourceSource::ViaRegisterApi {
                    continue;
                }
            }
            let entry = RegistryEntry {
                resource,
                owner: None,
                source: ResourceSource::ListedFromProvider,
            };
            let value = serde_json::to_string(&entry).map_err(|e| {
                Error::internal(format!("cannot encode {} '{id}': {e}", R::DISPLAY))
            })?;
            self.kv.set(&Self::key(&id), &value, None).await?;
            self.write_cache().insert(id, Arc::new(entry));
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

    /// The entry with `identifier`, with no access check (cache first, then the store).
    pub async fn lookup(&self, identifier: &str) -> Result<Option<Arc<RegistryEntry<R>>>> {
        if let Some(entry) = self.read_cache().get(identifier) {
            return Ok(Some(entry.clone()));
        }
        match self.kv.get(&Self::key(identifier)).await? {
            Some(value) => {
                let entry = Arc::new(Self::decode(identifier, &value)?);
                self.write_cache()
                    .insert(identifier.to_string(), entry.clone());
                Ok(Some(entry))
            }
            None => Ok(None),
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

    /// Every resource the caller may read, ordered by identifier.
    pub fn list(&self, ctx: &RequestContext) -> Vec<R> {
        self.read_cache()
            .values()
            .filter(|e| {
                self.policy
                    .is_allowed(ctx.user(), Action::Read, &e.protected())
            })
            .map(|e| e.resource.clone())
            .collect()
    }

    /// Every entry, unchecked (for internal refresh and inspection).
    pub fn entries(&self) -> Vec<Arc<RegistryEntry<R>>> {
        self.read_cache().values().cloned().collect()
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
