//! [`ModelsRouter`]: the Models API over the models routing table, plus refreshing the
//! models that providers list by themselves.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::api::models::{
    ListModelsResponse, Model, ModelType, Models, OpenAiListModelsResponse, OpenAiModel,
    RegisterModelRequest,
};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::provider::InferenceProvider;
use crate::routing_table::RoutingTable;

/// The Models API.
pub struct ModelsRouter {
    table: Arc<RoutingTable<Model>>,
    providers: HashMap<String, Arc<dyn InferenceProvider>>,
}

impl ModelsRouter {
    /// A router over the models table and the inference providers by id.
    pub fn new(
        table: Arc<RoutingTable<Model>>,
        providers: HashMap<String, Arc<dyn InferenceProvider>>,
    ) -> Self {
        ModelsRouter { table, providers }
    }

    /// The routing table.
    pub fn table(&self) -> &Arc<RoutingTable<Model>> {
        &self.table
    }

    /// Builds the model a register request describes: picks the provider, forms the
    /// `<provider_id>/<provider_model_id>` identifier and checks the metadata.
    pub fn model_from_request(&self, req: RegisterModelRequest) -> Result<Model> {
        if req.model_id.is_empty() {
            return Err(Error::invalid_param("model_id", "''", "Must not be empty"));
        }
        let provider_id = match req.provider_id {
            Some(p) => {
                if !self.providers.contains_key(&p) {
                    let mut known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    return Err(Error::invalid_param(
                        "provider_id",
                        format!("'{p}'"),
                        &format!(
                            "No inference provider with this id; configured: [{}]",
                            known.join(", ")
                        ),
                    ));
                }
                p
            }
            None => {
                let mut ids = self.providers.keys();
                match (ids.next(), ids.next()) {
                    (Some(only), None) => only.clone(),
                    (None, _) => {
                        return Err(Error::invalid_request(
                            "cannot register a model: no inference provider is configured",
                        ))
                    }
                    _ => {
                        let mut known: Vec<&str> =
                            self.providers.keys().map(String::as_str).collect();
                        known.sort_unstable();
                        return Err(Error::invalid_param(
                            "provider_id",
                            "null",
                            &format!(
                                "Several inference providers are configured; name one of [{}]",
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        // As Llama Stack: the identifier is always `<provider_id>/<provider_model_id or
        // model_id>`, with no alias and no prefix stripping (a repo id such as
        // `sentence-transformers/all-MiniLM-L6-v2` must survive intact).
        let provider_model_id = req.provider_model_id.unwrap_or(req.model_id);
        let mut model = Model::new(&provider_id, &provider_model_id, req.model_type);
        model.metadata = req.metadata;
        model.model_validation = req.model_validation;
        if model.model_type == ModelType::Embedding && model.embedding_dimension().is_none() {
            return Err(Error::invalid_param(
                "metadata.embedding_dimension",
                "missing",
                "Embedding models need a positive integer 'embedding_dimension' in metadata",
            ));
        }
        Ok(model)
    }

    /// Asks `provider_id` for the models it lists and replaces its listed entries.
    pub async fn refresh_provider(&self, provider_id: &str) -> Result<()> {
        let Some(provider) = self.providers.get(provider_id) else {
            return Ok(());
        };
        if let Some(models) = provider.list_models().await? {
            self.table
                .replace_provider_listing(provider_id, models)
                .await?;
        }
        Ok(())
    }

    /// Ids of providers whose listed models are refreshed periodically, with their
    /// refresh intervals.
    pub fn refreshing_providers(&self) -> Vec<(String, std::time::Duration)> {
        self.providers
            .iter()
            .filter(|(_, p)| p.refresh_models())
            .map(|(id, p)| (id.clone(), p.refresh_interval()))
            .collect()
    }

    /// Registers a model from the run config (no owner; idempotent across rebuilds).
    pub async fn register_from_config(&self, req: RegisterModelRequest) -> Result<Model> {
        let model = self.model_from_request(req)?;
        let provider = self.provider(&model.provider_id)?;
        let model = provider.register_model(&model).await?;
        self.table.register_from_config(model).await
    }

    fn provider(&self, provider_id: &str) -> Result<&Arc<dyn InferenceProvider>> {
        self.providers.get(provider_id).ok_or_else(|| {
            Error::unavailable(format!(
                "inference provider '{provider_id}' is not configured"
            ))
        })
    }
}

#[async_trait]
impl Models for ModelsRouter {
    async fn list_models(&self, ctx: &RequestContext) -> Result<ListModelsResponse> {
        Ok(ListModelsResponse {
            data: self.table.list_current(ctx).await?,
        })
    }

    async fn openai_list_models(&self, ctx: &RequestContext) -> Result<OpenAiListModelsResponse> {
        let created = super::now_unix();
        Ok(OpenAiListModelsResponse {
            data: self
                .table
                .list_current(ctx)
                .await?
                .iter()
                .map(|m| OpenAiModel::from_model(m, created))
                .collect(),
        })
    }

    async fn get_model(&self, ctx: &RequestContext, model_id: &str) -> Result<Model> {
        Ok(self.table.get(ctx, model_id).await?.resource.clone())
    }

    async fn register_model(
        &self,
        ctx: &RequestContext,
        req: RegisterModelRequest,
    ) -> Result<Model> {
        let model = self.model_from_request(req)?;
        let provider = self.provider(&model.provider_id)?;
        let model = provider.register_model(&model).await?;
        self.table.register(ctx, model).await
    }

    async fn unregister_model(&self, ctx: &RequestContext, model_id: &str) -> Result<()> {
        let model = self.table.unregister(ctx, model_id).await?;
        if let Some(provider) = self.providers.get(&model.provider_id) {
            provider
                .unregister_model(&model.provider_resource_id)
                .await?;
        }
        Ok(())
    }
}
