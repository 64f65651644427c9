//! Resources (models, shields, vector stores, ...) as the registry stores them: the
//! resource itself plus its owner and where it came from.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::context::User;

/// A registrable resource: it has an identifier, belongs to a provider and knows the
/// provider's own id for it.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The resource type in access rules and registry keys (`model`, `shield`, ...).
    const TYPE: &'static str;
    /// The name used in messages (`Model`, `Shield`, ...).
    const DISPLAY: &'static str;
    /// The client call that lists this type, for not-found hints (`client.models.list()`).
    const LIST_HINT: &'static str;

    /// The identifier clients use.
    fn identifier(&self) -> &str;
    /// The provider instance that serves it.
    fn provider_id(&self) -> &str;
    /// The provider's own id for it.
    fn provider_resource_id(&self) -> &str;
}

/// Where a registered resource came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceSource {
    /// Registered by a user or by the run config.
    #[default]
    ViaRegisterApi,
    /// Listed by its provider (replaced on every refresh).
    ListedFromProvider,
}

/// A resource as stored in the registry: the resource fields plus `owner` and `source`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound = "R: Resource")]
pub struct RegistryEntry<R: Resource> {
    /// The resource.
    #[serde(flatten)]
    pub resource: R,
    /// The user who created it (`None` for config- or provider-registered resources).
    #[serde(default)]
    pub owner: Option<User>,
    /// Where it came from.
    #[serde(default)]
    pub source: ResourceSource,
}

/// Shorthand for the access-policy view of a registry entry.
impl<R: Resource> RegistryEntry<R> {
    /// The access-policy view of this entry.
    pub fn protected(&self) -> crate::access::ProtectedResource<'_> {
        crate::access::ProtectedResource::new(
            R::TYPE,
            self.resource.identifier(),
            self.owner.as_ref(),
        )
    }
}
