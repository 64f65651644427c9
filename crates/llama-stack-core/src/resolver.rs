//! The resolver: finds each configured provider's spec, orders APIs by their
//! dependencies, builds providers in that order and the routers over them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde_json::Value;

use crate::access::AccessPolicy;
use crate::api::models::Model;
use crate::api::vector_io::VectorStore;
use crate::api::Api;
use crate::error::{Error, Result};
use crate::provider::{
    ApiHandle, FilesProvider, InferenceProvider, ProviderContext, ProviderDeps, ProviderInstance,
    ProviderRegistry, StorageResolver, ToolRuntimeProvider, VectorIoProvider,
};
use crate::router::{
    FilesRouter, InferenceRouter, InspectService, ModelsRouter, ProviderEntry, ProvidersService,
    ToolRuntimeRouter, VectorIoRouter, VectorStoresConfig,
};
use crate::routing_table::RoutingTable;
use crate::storage::KvStore;

/// One enabled provider from the run config.
#[derive(Debug, Clone)]
pub struct ProviderConfigEntry {
    /// The API it is listed under.
    pub api: Api,
    /// Its id.
    pub provider_id: String,
    /// Its type.
    pub provider_type: String,
    /// Its config (after env substitution).
    pub config: Value,
    /// Its position in the run config, e.g. `providers.inference[1]`.
    pub path: String,
}

/// The routers and services a resolved stack exposes.
pub struct Resolved {
    /// The inference router.
    pub inference: Arc<InferenceRouter>,
    /// The models router.
    pub models: Arc<ModelsRouter>,
    /// The files router.
    pub files: Arc<FilesRouter>,
    /// The vector IO router.
    pub vector_io: Arc<VectorIoRouter>,
    /// The tool runtime router.
    pub tool_runtime: Arc<ToolRuntimeRouter>,
    /// The providers service.
    pub providers: Arc<ProvidersService>,
    /// The inspect service.
    pub inspect: Arc<InspectService>,
}

/// Orders `apis` so every API comes after the APIs it depends on. `deps` maps an API to
/// (required, optional) dependencies; a required dependency outside `apis` is an error
/// naming both, a cycle is an error naming the cycle.
pub fn dependency_order(
    apis: &BTreeSet<Api>,
    deps: &BTreeMap<Api, (BTreeSet<Api>, BTreeSet<Api>)>,
) -> Result<Vec<Api>> {
    for (api, (required, _)) in deps {
        for dep in required {
            if !apis.contains(dep) {
                return Err(Error::config(format!(
                    "providers.{api}: a provider of API '{api}' depends on API '{dep}', which has no provider configured; add one under providers.{dep}"
                )));
            }
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        api: Api,
        apis: &BTreeSet<Api>,
        deps: &BTreeMap<Api, (BTreeSet<Api>, BTreeSet<Api>)>,
        marks: &mut HashMap<Api, Mark>,
        stack: &mut Vec<Api>,
        out: &mut Vec<Api>,
    ) -> Result<()> {
        match marks.get(&api) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|a| *a == api).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].iter().map(|a| a.as_str()).collect();
                cycle.push(api.as_str());
                return Err(Error::config(format!(
                    "providers: API dependency cycle: {}",
                    cycle.join(" -> ")
                )));
            }
            None => {}
        }
        marks.insert(api, Mark::Visiting);
        stack.push(api);
        if let Some((required, optional)) = deps.get(&api) {
            for dep in required
                .iter()
                .chain(optional.iter().filter(|d| apis.contains(d)))
            {
                visit(*dep, apis, deps, marks, stack, out)?;
            }
        }
        stack.pop();
        marks.insert(api, Mark::Done);
        out.push(api);
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for api in apis {
        visit(*api, apis, deps, &mut marks, &mut stack, &mut out)?;
    }
    Ok(out)
}

/// Builds every provider in dependency order, then the routers and services.
pub async fn resolve(
    registry: &ProviderRegistry,
    entries: Vec<ProviderConfigEntry>,
    storage: Arc<dyn StorageResolver>,
    registry_kv: Arc<dyn KvStore>,
    policy: Arc<AccessPolicy>,
    vector_stores: VectorStoresConfig,
) -> Result<Resolved> {
    // Specs and dependencies.
    let mut seen_ids: HashMap<(Api, String), String> = HashMap::new();
    let mut deps: BTreeMap<Api, (BTreeSet<Api>, BTreeSet<Api>)> = BTreeMap::new();
    let mut apis = BTreeSet::new();
    let mut specs = Vec::with_capacity(entries.len());
    for entry in &entries {
        if let Some(first) =
            seen_ids.insert((entry.api, entry.provider_id.clone()), entry.path.clone())
        {
            return Err(Error::config(format!(
                "{}.provider_id: '{}' is already used by {first}; provider ids must be unique per API",
                entry.path, entry.provider_id
            )));
        }
        let spec = registry.find(entry.api, &entry.provider_type).ok_or_else(|| {
            let known: Vec<&str> = registry
                .specs(Some(entry.api))
                .map(|s| s.provider_type.as_str())
                .collect();
            Error::config(format!(
                "{}.provider_type: unknown provider type '{}' for API '{}' (known in this build: [{}]; a provider family may need its cargo feature enabled)",
                entry.path,
                entry.provider_type,
                entry.api,
                known.join(", ")
            ))
        })?;
        let d = deps.entry(entry.api).or_default();
        d.0.extend(spec.api_dependencies.iter().copied());
        d.1.extend(spec.optional_api_dependencies.iter().copied());
        apis.insert(entry.api);
        specs.push(spec.clone());
    }
    let order = dependency_order(&apis, &deps)?;

    let models_table = Arc::new(RoutingTable::<Model>::new(
        registry_kv.clone(),
        policy.clone(),
    ));
    models_table.reload().await?;
    let stores_table = Arc::new(RoutingTable::<VectorStore>::new(
        registry_kv,
        policy.clone(),
    ));
    stores_table.reload().await?;

    let mut handles = ProviderDeps::default();
    let mut built: Vec<ProviderEntry> = Vec::new();
    let mut inference_providers: HashMap<String, Arc<dyn InferenceProvider>> = HashMap::new();
    let mut inference_router = None;
    let mut files_provider: Option<(String, Arc<dyn FilesProvider>)> = None;
    let mut files_router: Option<Arc<FilesRouter>> = None;
    let mut vector_io_providers: HashMap<String, Arc<dyn VectorIoProvider>> = HashMap::new();
    let mut vector_io_router: Option<Arc<VectorIoRouter>> = None;
    let mut tool_runtimes: Vec<(String, Arc<dyn ToolRuntimeProvider>)> = Vec::new();
    let mut vector_stores = Some(vector_stores);
    let build_vector_io =
        |providers, inference: Arc<dyn crate::api::inference::Inference>, config| {
            VectorIoRouter::new(
                stores_table.clone(),
                models_table.clone(),
                providers,
                Some(inference),
                config,
            )
            .map(Arc::new)
        };
    let empty_inference = || Arc::new(InferenceRouter::new(models_table.clone(), HashMap::new()));
    for api in order {
        for (entry, spec) in entries.iter().zip(&specs).filter(|(e, _)| e.api == api) {
            let mut provider_deps = ProviderDeps::default();
            for dep in spec
                .api_dependencies
                .iter()
                .chain(&spec.optional_api_dependencies)
            {
                if let Some(h) = handles_get(&handles, *dep) {
                    provider_deps.insert(*dep, h);
                }
            }
            let ctx = ProviderContext {
                provider_id: entry.provider_id.clone(),
                provider_type: spec.provider_type.clone(),
                config: entry.config.clone(),
                config_path: format!("{}.config", entry.path),
                deps: provider_deps,
                storage: storage.clone(),
                policy: policy.clone(),
            };
            let instance = spec.factory.create(ctx).await.map_err(|e| {
                if e.kind() == crate::ErrorKind::Config {
                    e
                } else {
                    e.with_prefix(&format!(
                        "{}: provider '{}' ({}) failed to start",
                        entry.path, entry.provider_id, spec.provider_type
                    ))
                }
            })?;
            if instance.api() != api {
                return Err(Error::internal(format!(
                    "provider type '{}' built an instance for API '{}' instead of '{api}'",
                    spec.provider_type,
                    instance.api()
                )));
            }
            match &instance {
                ProviderInstance::Inference(p) => {
                    inference_providers.insert(entry.provider_id.clone(), p.clone());
                }
                ProviderInstance::Files(p) => {
                    if let Some((first, _)) = &files_provider {
                        return Err(Error::config(format!(
                            "{}: only one files provider can be configured ('{first}' is already)",
                            entry.path
                        )));
                    }
                    files_provider = Some((entry.provider_id.clone(), p.clone()));
                }
                ProviderInstance::VectorIo(p) => {
                    vector_io_providers.insert(entry.provider_id.clone(), p.clone());
                }
                ProviderInstance::ToolRuntime(p) => {
                    tool_runtimes.push((entry.provider_id.clone(), p.clone()));
                }
            }
            built.push(ProviderEntry {
                api,
                provider_id: entry.provider_id.clone(),
                provider_type: spec.provider_type.clone(),
                config: entry.config.clone(),
                instance,
            });
        }
        if api == Api::Inference {
            let router = Arc::new(InferenceRouter::new(
                models_table.clone(),
                inference_providers.clone(),
            ));
            handles.insert(Api::Inference, ApiHandle::Inference(router.clone()));
            inference_router = Some(router);
        }
        if api == Api::Files {
            let router = Arc::new(FilesRouter::new(files_provider.clone()));
            handles.insert(Api::Files, ApiHandle::Files(router.clone()));
            files_router = Some(router);
        }
        if api == Api::VectorIo {
            // Built here, before the APIs that depend on it (tool runtimes).
            let inference = inference_router.clone().unwrap_or_else(empty_inference);
            let router = build_vector_io(
                std::mem::take(&mut vector_io_providers),
                inference,
                vector_stores.take().unwrap_or_default(),
            )?;
            handles.insert(Api::VectorIo, ApiHandle::VectorIo(router.clone()));
            vector_io_router = Some(router);
        }
    }
    let inference = inference_router.unwrap_or_else(empty_inference);
    let vector_io = match vector_io_router {
        Some(router) => router,
        None => build_vector_io(
            vector_io_providers,
            inference.clone(),
            vector_stores.take().unwrap_or_default(),
        )?,
    };
    let tool_runtime = Arc::new(ToolRuntimeRouter::new(tool_runtimes));
    let files = files_router.unwrap_or_else(|| Arc::new(FilesRouter::new(None)));
    let models = Arc::new(ModelsRouter::new(models_table, inference_providers));

    let mut provider_types: BTreeMap<Api, Vec<String>> = BTreeMap::new();
    for entry in &entries {
        provider_types
            .entry(entry.api)
            .or_default()
            .push(entry.provider_type.clone());
    }
    Ok(Resolved {
        inference,
        models,
        files,
        vector_io,
        tool_runtime,
        providers: Arc::new(ProvidersService::new(built)),
        inspect: Arc::new(InspectService::new(provider_types)),
    })
}

fn handles_get(handles: &ProviderDeps, api: Api) -> Option<ApiHandle> {
    match api {
        Api::Inference => handles.inference().ok().map(ApiHandle::Inference),
        Api::Files => handles.files().map(ApiHandle::Files),
        Api::VectorIo => handles.vector_io().ok().map(ApiHandle::VectorIo),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn deps(pairs: &[(Api, &[Api])]) -> BTreeMap<Api, (BTreeSet<Api>, BTreeSet<Api>)> {
        pairs
            .iter()
            .map(|(a, d)| (*a, (d.iter().copied().collect(), BTreeSet::new())))
            .collect()
    }

    #[test]
    fn orders_dependencies_first() {
        let apis: BTreeSet<Api> = [Api::Responses, Api::VectorIo, Api::Inference].into();
        let d = deps(&[
            (Api::Responses, &[Api::Inference, Api::VectorIo]),
            (Api::VectorIo, &[Api::Inference]),
        ]);
        let order = dependency_order(&apis, &d).unwrap();
        let pos = |a| order.iter().position(|x| *x == a).unwrap();
        assert!(pos(Api::Inference) < pos(Api::VectorIo));
        assert!(pos(Api::VectorIo) < pos(Api::Responses));
    }

    #[test]
    fn missing_dependency_and_cycles_are_named() {
        let apis: BTreeSet<Api> = [Api::VectorIo].into();
        let err =
            dependency_order(&apis, &deps(&[(Api::VectorIo, &[Api::Inference])])).unwrap_err();
        assert!(err.message().contains("'inference'"), "{err}");
        let apis: BTreeSet<Api> = [Api::Eval, Api::Scoring].into();
        let err = dependency_order(
            &apis,
            &deps(&[(Api::Eval, &[Api::Scoring]), (Api::Scoring, &[Api::Eval])]),
        )
        .unwrap_err();
        assert!(err.message().contains("cycle"), "{err}");
        assert!(
            err.message().contains("scoring -> eval -> scoring"),
            "{err}"
        );
    }
}
