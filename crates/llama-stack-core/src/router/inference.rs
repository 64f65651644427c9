//! [`InferenceRouter`]: resolves `model` through the models routing table and calls the
//! provider that serves it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::StreamExt;
use tracing::Instrument;

use crate::access::Action;
use crate::api::inference::{
    ChatCompletion, ChatCompletionAccumulator, ChatCompletionChunk, ChatCompletionList,
    ChatCompletionRequest, ChatCompletionStream, Completion, CompletionRequest, CompletionStream,
    EmbeddingsRequest, EmbeddingsResponse, Inference, ListChatCompletionsRequest, Message,
    RerankRequest, RerankResponse, ResponseFormat, StoredChatCompletion, ToolChoice,
};
use crate::api::models::{Model, ModelType};
use crate::context::RequestContext;
use crate::error::{Error, Result};
use crate::inference_store::InferenceStore;
use crate::provider::InferenceProvider;
use crate::resource::RegistryEntry;
use crate::routing_table::RoutingTable;

/// Routes inference calls to providers by model.
pub struct InferenceRouter {
    models: Arc<RoutingTable<Model>>,
    providers: HashMap<String, Arc<dyn InferenceProvider>>,
    store: OnceLock<Arc<dyn InferenceStore>>,
}

/// The provider a call goes to, and the model id it knows the model by.
struct Target {
    provider: Arc<dyn InferenceProvider>,
    served: Served,
}

/// Where a target's ids come from: the registered model (shared, not copied), or an
/// unregistered `<provider_id>/<model>`.
enum Served {
    Registered(Arc<RegistryEntry<Model>>),
    Unregistered {
        provider_id: String,
        provider_model_id: String,
    },
}

impl Target {
    fn provider_id(&self) -> &str {
        match &self.served {
            Served::Registered(entry) => &entry.resource.provider_id,
            Served::Unregistered { provider_id, .. } => provider_id,
        }
    }

    fn provider_model_id(&self) -> &str {
        match &self.served {
            Served::Registered(entry) => &entry.resource.provider_resource_id,
            Served::Unregistered {
                provider_model_id, ..
            } => provider_model_id,
        }
    }

    /// Puts the provider's model id into `model` and returns the id the caller asked for.
    fn swap_model(&self, model: &mut String) -> String {
        std::mem::replace(model, self.provider_model_id().to_owned())
    }
}

impl InferenceRouter {
    /// A router over `models` and the inference providers by provider id.
    pub fn new(
        models: Arc<RoutingTable<Model>>,
        providers: HashMap<String, Arc<dyn InferenceProvider>>,
    ) -> Self {
        InferenceRouter {
            models,
            providers,
            store: OnceLock::new(),
        }
    }

    /// Records chat completions in `store` from now on (once; a second store is refused).
    pub fn set_store(&self, store: Arc<dyn InferenceStore>) -> Result<()> {
        self.store
            .set(store)
            .map_err(|_| Error::internal("the inference store is already set"))
    }

    /// The store to record `req`'s completion in, with its input messages, unless the
    /// request says `"store": false`.
    fn recorder(&self, req: &ChatCompletionRequest) -> Option<Recorder> {
        let store = self.store.get()?;
        if req.extra_body.get("store") == Some(&serde_json::Value::Bool(false)) {
            return None;
        }
        Some((store.clone(), req.messages.clone()))
    }

    fn store(&self) -> Result<&Arc<dyn InferenceStore>> {
        self.store.get().ok_or_else(|| {
            Error::unsupported(
                "stored chat completions need an inference store (storage.stores.inference)",
            )
        })
    }

    /// The provider instance `provider_id`, if configured.
    pub fn provider(&self, provider_id: &str) -> Option<&Arc<dyn InferenceProvider>> {
        self.providers.get(provider_id)
    }

    async fn resolve(
        &self,
        ctx: &RequestContext,
        model_id: &str,
        expected: ModelType,
    ) -> Result<Target> {
        if let Some(entry) = self.models.lookup(model_id).await? {
            if !self
                .models
                .policy()
                .is_allowed(ctx.user(), Action::Read, &entry.protected())
            {
                return Err(self.models.not_found(ctx, model_id));
            }
            let model = &entry.resource;
            if model.model_type != expected {
                return Err(Error::invalid_request(format!(
                    "Model '{model_id}' is of type '{}' rather than the expected type '{}'",
                    model.model_type.as_str(),
                    expected.as_str()
                ))
                .with_context("param", "model"));
            }
            let provider = self.providers.get(&model.provider_id).ok_or_else(|| {
                Error::unavailable(format!(
                    "Model '{model_id}' is served by provider '{}', which is not configured",
                    model.provider_id
                ))
            })?;
            return Ok(Target {
                provider: provider.clone(),
                served: Served::Registered(entry),
            });
        }
        // An unregistered `<provider_id>/<model>` goes straight to that provider.
        if let Some((provider_id, rest)) = model_id.split_once('/') {
            if let Some(provider) = self.providers.get(provider_id) {
                if !rest.is_empty() {
                    self.models
                        .check_unregistered(ctx, Action::Read, model_id)
                        .map_err(|_| self.models.not_found(ctx, model_id))?;
                    return Ok(Target {
                        provider: provider.clone(),
                        served: Served::Unregistered {
                            provider_id: provider_id.to_string(),
                            provider_model_id: rest.to_string(),
                        },
                    });
                }
            }
        }
        Err(self.models.not_found(ctx, model_id))
    }
}

fn require(ok: bool, what: &str, provider_id: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(
            Error::unsupported(format!("provider '{provider_id}' does not support {what}"))
                .with_provider(provider_id),
        )
    }
}

fn check_chat_caps(target: &Target, req: &ChatCompletionRequest, stream: bool) -> Result<()> {
    let caps = target.provider.capabilities();
    let pid = target.provider_id();
    require(caps.chat, "chat completions", pid)?;
    if stream {
        require(caps.streaming, "streaming", pid)?;
    }
    if req.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        require(caps.tools, "tool calling", pid)?;
    }
    if matches!(
        req.response_format,
        Some(ResponseFormat::JsonObject | ResponseFormat::JsonSchema { .. })
    ) {
        require(caps.json_schema, "structured output (response_format)", pid)?;
    }
    Ok(())
}

/// Rewrites every chunk's `model` to the id the client asked for.
fn echo_model<T: Send + 'static>(
    stream: futures::stream::BoxStream<'static, Result<T>>,
    requested: String,
    field: fn(&mut T) -> &mut String,
) -> futures::stream::BoxStream<'static, Result<T>> {
    stream
        .map(move |chunk| {
            chunk.map(|mut c| {
                field(&mut c).clone_from(&requested);
                c
            })
        })
        .boxed()
}

/// Records a completion; a failure is logged, never returned to the caller whose
/// completion succeeded.
async fn record(
    store: Arc<dyn InferenceStore>,
    ctx: &RequestContext,
    completion: ChatCompletion,
    messages: Vec<Message>,
) {
    let id = completion.id.clone();
    if let Err(e) = store.store(ctx, completion, messages).await {
        tracing::warn!(completion_id = %id, error = %e, "recording the chat completion failed");
    }
}

/// Passes `stream` through and records the assembled completion after its last chunk (not
/// if it fails or is dropped before the end).
fn record_stream(
    stream: ChatCompletionStream,
    store: Arc<dyn InferenceStore>,
    ctx: RequestContext,
    messages: Vec<Message>,
) -> ChatCompletionStream {
    let acc = Arc::new(Mutex::new(Some(ChatCompletionAccumulator::new())));
    let seen = acc.clone();
    let passed = stream.inspect(move |item| {
        let mut acc = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match item {
            Ok(chunk) => {
                if let Some(acc) = acc.as_mut() {
                    acc.push(chunk);
                }
            }
            Err(_) => *acc = None,
        }
    });
    let tail = futures::stream::once(async move {
        let done = acc
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(completion) = done.and_then(ChatCompletionAccumulator::finish) {
            record(store, &ctx, completion, messages).await;
        }
    })
    .filter_map(|()| async { None::<Result<ChatCompletionChunk>> });
    passed.chain(tail).boxed()
}

/// `tool_choice: "none"` drops both tools and tool_choice, as Llama Stack does.
fn normalize_tools(req: &mut ChatCompletionRequest) {
    if matches!(&req.tool_choice, Some(ToolChoice::Mode(m)) if m == "none") {
        req.tools = None;
        req.tool_choice = None;
    }
}

/// A chat call ready for its provider.
struct Prepared {
    target: Target,
    /// The model id the caller asked for, echoed back in the response.
    requested: String,
    recorder: Option<Recorder>,
}

/// Where a completion is recorded, and the messages it answered.
type Recorder = (Arc<dyn InferenceStore>, Vec<Message>);

impl InferenceRouter {
    /// Validates `req`, resolves its model and checks that the provider can serve it, then
    /// puts the provider's model id into `req`.
    async fn prepare_chat(
        &self,
        ctx: &RequestContext,
        req: &mut ChatCompletionRequest,
        stream: bool,
    ) -> Result<Prepared> {
        req.validate()?;
        let target = self.resolve(ctx, &req.model, ModelType::Llm).await?;
        check_chat_caps(&target, req, stream)?;
        normalize_tools(req);
        let requested = target.swap_model(&mut req.model);
        let recorder = self.recorder(req);
        Ok(Prepared {
            target,
            requested,
            recorder,
        })
    }

    async fn chat(
        &self,
        ctx: &RequestContext,
        mut req: Box<ChatCompletionRequest>,
    ) -> Result<ChatCompletion> {
        let Prepared {
            target,
            requested,
            recorder,
        } = self.prepare_chat(ctx, &mut req, false).await?;
        let span = tracing::info_span!("inference.chat_completion", provider_id = %target.provider_id(), model = %requested, stream = false, request_id = %ctx.request_id());
        let mut resp = target
            .provider
            .chat_completion(ctx, *req)
            .instrument(span)
            .await?;
        resp.model = requested;
        for choice in &mut resp.choices {
            if choice
                .message
                .tool_calls
                .as_ref()
                .is_some_and(Vec::is_empty)
            {
                choice.message.tool_calls = None;
            }
        }
        if let Some((store, messages)) = recorder {
            record(store, ctx, resp.clone(), messages).await;
        }
        Ok(resp)
    }

    async fn chat_stream(
        &self,
        ctx: &RequestContext,
        mut req: Box<ChatCompletionRequest>,
    ) -> Result<ChatCompletionStream> {
        let Prepared {
            target,
            requested,
            recorder,
        } = self.prepare_chat(ctx, &mut req, true).await?;
        let span = tracing::info_span!("inference.chat_completion", provider_id = %target.provider_id(), model = %requested, stream = true, request_id = %ctx.request_id());
        let stream = target
            .provider
            .chat_completion_stream(ctx, *req)
            .instrument(span)
            .await?;
        let stream = echo_model(stream, requested, |c: &mut ChatCompletionChunk| {
            &mut c.model
        });
        Ok(match recorder {
            Some((store, messages)) => record_stream(stream, store, ctx.clone(), messages),
            None => stream,
        })
    }
}

#[async_trait]
impl Inference for InferenceRouter {
    // The chat calls are written out as the functions `async_trait` makes of them, so that
    // the request travels boxed: their futures, boxed on every call, then hold a pointer
    // rather than the request and stay within the allocator's small size classes.

    fn chat_completion<'s, 'c, 'f>(
        &'s self,
        ctx: &'c RequestContext,
        req: ChatCompletionRequest,
    ) -> BoxFuture<'f, Result<ChatCompletion>>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        Box::pin(self.chat(ctx, Box::new(req)))
    }

    fn chat_completion_stream<'s, 'c, 'f>(
        &'s self,
        ctx: &'c RequestContext,
        req: ChatCompletionRequest,
    ) -> BoxFuture<'f, Result<ChatCompletionStream>>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        Box::pin(self.chat_stream(ctx, Box::new(req)))
    }

    async fn completion(
        &self,
        ctx: &RequestContext,
        mut req: CompletionRequest,
    ) -> Result<Completion> {
        req.validate()?;
        let target = self.resolve(ctx, &req.model, ModelType::Llm).await?;
        let caps = target.provider.capabilities();
        require(caps.completion, "text completions", target.provider_id())?;
        let requested = target.swap_model(&mut req.model);
        let span = tracing::info_span!("inference.completion", provider_id = %target.provider_id(), model = %requested, stream = false, request_id = %ctx.request_id());
        let mut resp = target
            .provider
            .completion(ctx, req)
            .instrument(span)
            .await?;
        resp.model = requested;
        Ok(resp)
    }

    async fn completion_stream(
        &self,
        ctx: &RequestContext,
        mut req: CompletionRequest,
    ) -> Result<CompletionStream> {
        req.validate()?;
        let target = self.resolve(ctx, &req.model, ModelType::Llm).await?;
        let caps = target.provider.capabilities();
        require(caps.completion, "text completions", target.provider_id())?;
        require(caps.streaming, "streaming", target.provider_id())?;
        let requested = target.swap_model(&mut req.model);
        let span = tracing::info_span!("inference.completion", provider_id = %target.provider_id(), model = %requested, stream = true, request_id = %ctx.request_id());
        let stream = target
            .provider
            .completion_stream(ctx, req)
            .instrument(span)
            .await?;
        Ok(echo_model(stream, requested, |c: &mut Completion| {
            &mut c.model
        }))
    }

    async fn embeddings(
        &self,
        ctx: &RequestContext,
        mut req: EmbeddingsRequest,
    ) -> Result<EmbeddingsResponse> {
        req.validate()?;
        let target = self.resolve(ctx, &req.model, ModelType::Embedding).await?;
        let caps = target.provider.capabilities();
        require(caps.embeddings, "embeddings", target.provider_id())?;
        let requested = target.swap_model(&mut req.model);
        let span = tracing::info_span!("inference.embeddings", provider_id = %target.provider_id(), model = %requested, request_id = %ctx.request_id());
        let mut resp = target
            .provider
            .embeddings(ctx, req)
            .instrument(span)
            .await?;
        resp.model = requested;
        Ok(resp)
    }

    async fn rerank(&self, ctx: &RequestContext, mut req: RerankRequest) -> Result<RerankResponse> {
        req.validate()?;
        let target = self.resolve(ctx, &req.model, ModelType::Rerank).await?;
        let caps = target.provider.capabilities();
        require(caps.rerank, "rerank", target.provider_id())?;
        req.model.clear();
        req.model.push_str(target.provider_model_id());
        let span = tracing::info_span!("inference.rerank", provider_id = %target.provider_id(), request_id = %ctx.request_id());
        target.provider.rerank(ctx, req).instrument(span).await
    }

    async fn list_chat_completions(
        &self,
        ctx: &RequestContext,
        req: ListChatCompletionsRequest,
    ) -> Result<ChatCompletionList> {
        req.checked_limit()?;
        self.store()?.list(ctx, &req).await
    }

    async fn get_chat_completion(
        &self,
        ctx: &RequestContext,
        completion_id: &str,
    ) -> Result<StoredChatCompletion> {
        self.store()?.get(ctx, completion_id).await
    }
}
