//! [`OpenAiCompatProvider`]: the Inference API against any OpenAI-compatible service,
//! shaped by the service's [`ServiceProfile`].

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use llama_stack_core::api::inference::{
    ChatCompletion, ChatCompletionRequest, ChatCompletionStream, Completion, CompletionRequest,
    CompletionStream, ContentPart, EmbeddingsRequest, EmbeddingsResponse, Inference, RerankData,
    RerankItem, RerankRequest, RerankResponse, StreamOptions,
};
use llama_stack_core::api::models::{Model, ModelType};
use llama_stack_core::api::providers::Health;
use llama_stack_core::provider::{InferenceCaps, InferenceProvider};
use llama_stack_core::{Error, RequestContext, Result};
use reqwest::header::{HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::future::Future;

use super::config::OpenAiCompatConfig;
use super::iam::{self, IamTokens};
use super::services::ServiceProfile;
use super::stream::sse_json;
use super::upstream::Upstream;

/// Headers a passthrough provider never forwards, whatever `forward_headers` says.
const BLOCKED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
    "cookie",
    "set-cookie",
    "x-llamastack-provider-data",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-real-ip",
];

/// An inference provider for one OpenAI-compatible service.
pub struct OpenAiCompatProvider {
    profile: &'static ServiceProfile,
    provider_id: String,
    config: OpenAiCompatConfig,
    base_url: Option<String>,
    forward: Vec<(String, HeaderName)>,
    upstream: Upstream,
    /// IBM Cloud IAM tokens (watsonx), when the service exchanges its API key.
    iam: Option<IamTokens>,
    /// The endpoints on the configured base URL, parsed once (`None` where it does not
    /// parse), indexed by [`Endpoint`].
    endpoints: [Option<reqwest::Url>; Endpoint::ALL.len()],
    /// Other request URLs (on per-request base URLs, NVIDIA's per-model rerank URLs)
    /// parsed once, at most [`PARSED_URLS`] of them: parsing one costs more than the rest
    /// of building a request.
    urls: RwLock<HashMap<String, reqwest::Url>>,
    /// The `Authorization` header for the configured key, built once (absent when the
    /// service exchanges its key or has none).
    config_auth: Option<HeaderValue>,
}

/// A request body sent upstream as the caller typed it, with the stream flag and the
/// service's own fields set; serialized once, straight to bytes.
trait UpstreamBody: Serialize {
    /// The model the request names.
    fn model(&self) -> &str;
    /// Sets `stream` (and drops `stream_options` from a non-streaming request).
    fn set_stream(&mut self, stream: bool);
    /// The keys beyond the typed fields.
    fn extra_body(&mut self) -> &mut Map<String, Value>;
    /// Sets `max_tokens` to `limit` when the request bounds no output length (generation
    /// requests only).
    fn default_max_tokens(&mut self, _limit: u32) {}
}

/// `stream: true` for a stream; otherwise neither `stream` nor `stream_options`.
fn set_stream_fields(flag: &mut Option<bool>, options: &mut Option<StreamOptions>, stream: bool) {
    if stream {
        *flag = Some(true);
    } else {
        *flag = None;
        *options = None;
    }
}

impl UpstreamBody for ChatCompletionRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn set_stream(&mut self, stream: bool) {
        set_stream_fields(&mut self.stream, &mut self.stream_options, stream);
    }
    fn extra_body(&mut self) -> &mut Map<String, Value> {
        &mut self.extra_body
    }
    fn default_max_tokens(&mut self, limit: u32) {
        if self.max_tokens.is_none() && self.max_completion_tokens.is_none() {
            self.max_tokens = Some(limit);
        }
    }
}

impl UpstreamBody for CompletionRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn set_stream(&mut self, stream: bool) {
        set_stream_fields(&mut self.stream, &mut self.stream_options, stream);
    }
    fn extra_body(&mut self) -> &mut Map<String, Value> {
        &mut self.extra_body
    }
    fn default_max_tokens(&mut self, limit: u32) {
        if self.max_tokens.is_none() {
            self.max_tokens = Some(limit);
        }
    }
}

impl UpstreamBody for EmbeddingsRequest {
    fn model(&self) -> &str {
        &self.model
    }
    fn set_stream(&mut self, _stream: bool) {}
    fn extra_body(&mut self) -> &mut Map<String, Value> {
        &mut self.extra_body
    }
}

/// `value` as a JSON request body.
fn json_bytes<T: Serialize>(value: &T) -> Result<Bytes> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| Error::internal(format!("cannot serialize the request: {e}")))
}

/// `Bearer <key>` as a header value kept out of debug output.
fn bearer(provider_id: &str, key: &str) -> Result<HeaderValue> {
    let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
        Error::invalid_request(format!(
            "the API key of provider '{provider_id}' is not a valid header value"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// How many parsed request URLs beyond its own endpoints a provider keeps.
const PARSED_URLS: usize = 64;

/// The service paths the provider calls, below its base URL.
#[derive(Debug, Clone, Copy)]
enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Models,
}

impl Endpoint {
    const ALL: [Endpoint; 4] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Models,
    ];

    fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Models => "/models",
        }
    }
}

/// How one call authenticates.
enum Auth<'a> {
    /// With this `Authorization` header, or none.
    Header(Option<HeaderValue>),
    /// With a token obtained for this API key first (IBM Cloud IAM).
    Exchange(&'a IamTokens, String),
}

/// A response's whole body, as `reqwest::Response::bytes` reads it but with a smaller
/// future: a body that arrives in one chunk (the usual JSON answer) is kept as it came.
fn read_body(
    resp: reqwest::Response,
) -> impl Future<Output = reqwest::Result<Bytes>> + Send + 'static {
    let size = resp.content_length().unwrap_or(0);
    let chunks = resp.bytes_stream();
    async move {
        let mut chunks = std::pin::pin!(chunks);
        let Some(first) = chunks.next().await.transpose()? else {
            return Ok(Bytes::new());
        };
        let Some(second) = chunks.next().await.transpose()? else {
            return Ok(first);
        };
        let capacity = usize::try_from(size).unwrap_or(0).min(MAX_PREALLOCATED);
        let mut all = Vec::with_capacity(capacity.max(first.len() + second.len()));
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(chunk) = chunks.next().await.transpose()? {
            all.extend_from_slice(&chunk);
        }
        Ok(Bytes::from(all))
    }
}

/// The most a response body is given room for ahead of its bytes, whatever its
/// `Content-Length` says.
const MAX_PREALLOCATED: usize = 16 << 20;

/// Where one call goes.
enum RequestUrl<'a> {
    /// An endpoint on the configured base URL, parsed when the provider was built.
    Configured(&'a reqwest::Url),
    /// Any other URL that parses.
    Parsed(reqwest::Url),
    /// A URL that does not parse: the HTTP client fails the call with its own message.
    Unparsed(String),
}

impl std::fmt::Debug for OpenAiCompatProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiCompatProvider")
            .field("provider_type", &self.profile.provider_type)
            .field("provider_id", &self.provider_id)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn join_base(base: &str, suffix: &str) -> String {
    format!("{}{suffix}", base.trim_end_matches('/'))
}

impl OpenAiCompatProvider {
    /// A provider for `profile` with a parsed `config`; `path` is the config's place in the
    /// run config (for error messages).
    pub fn new(
        profile: &'static ServiceProfile,
        provider_id: &str,
        config: OpenAiCompatConfig,
        path: &str,
    ) -> Result<Self> {
        let upstream = Upstream::new(provider_id, &config, path)?;
        let mut forward = Vec::new();
        if profile.forwards_headers {
            let blocked: BTreeSet<String> = BLOCKED_HEADERS
                .iter()
                .map(|h| h.to_string())
                .chain(
                    config
                        .extra_blocked_headers
                        .iter()
                        .map(|h| h.to_ascii_lowercase()),
                )
                .collect();
            for (key, header) in config.forward_headers.iter().flatten() {
                let lower = header.to_ascii_lowercase();
                if blocked.contains(&lower) {
                    return Err(Error::config(format!(
                        "{path}.forward_headers.{key}: header '{header}' may not be forwarded"
                    )));
                }
                let name = HeaderName::from_bytes(lower.as_bytes()).map_err(|_| {
                    Error::config(format!(
                        "{path}.forward_headers.{key}: '{header}' is not a valid header name"
                    ))
                })?;
                forward.push((key.clone(), name));
            }
        }
        let base_url = config
            .base_url
            .as_deref()
            .map(|b| join_base(b, profile.path_suffix));
        let iam = profile
            .iam_exchange
            .then(|| IamTokens::new(config.field_str("iam_url").unwrap_or(iam::DEFAULT_IAM_URL)));
        let endpoints = Endpoint::ALL.map(|e| {
            base_url
                .as_deref()
                .and_then(|b| reqwest::Url::parse(&format!("{b}{}", e.path())).ok())
        });
        let config_auth = match &iam {
            Some(_) => None,
            None => api_key_for(profile, provider_id, &config, None)
                .ok()
                .flatten()
                .and_then(|k| bearer(provider_id, &k).ok()),
        };
        Ok(OpenAiCompatProvider {
            profile,
            provider_id: provider_id.to_string(),
            config,
            base_url,
            forward,
            upstream,
            iam,
            endpoints,
            urls: RwLock::new(HashMap::new()),
            config_auth,
        })
    }

    /// `url` parsed, from the cache when it was parsed before; `None` when it does not
    /// parse (the request then fails in the HTTP client with its own message).
    fn parsed_url(&self, url: &str) -> Option<reqwest::Url> {
        if let Some(parsed) = self
            .urls
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(url)
        {
            return Some(parsed.clone());
        }
        let parsed = reqwest::Url::parse(url).ok()?;
        let mut urls = self
            .urls
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if urls.len() < PARSED_URLS {
            urls.insert(url.to_string(), parsed.clone());
        }
        Some(parsed)
    }

    /// The service profile.
    pub fn profile(&self) -> &'static ServiceProfile {
        self.profile
    }

    /// The base URL calls go to (without provider-data overrides).
    pub fn base_url(&self) -> Option<&str> {
        self.base_url.as_deref()
    }

    /// The base URL the caller's provider data sets, if the service takes one there.
    fn base_override<'c>(&self, ctx: Option<&'c RequestContext>) -> Option<&'c str> {
        self.profile
            .provider_data_url_key
            .and_then(|k| ctx?.provider_data()?.get_str(k))
    }

    fn base(&self, ctx: Option<&RequestContext>) -> Result<String> {
        if let Some(url) = self.base_override(ctx) {
            return Ok(join_base(url, self.profile.path_suffix));
        }
        self.base_url.clone().ok_or_else(|| {
            Error::invalid_request(format!(
                "provider '{}' has no base_url: set `base_url` in its config{}",
                self.provider_id,
                self.profile
                    .provider_data_url_key
                    .map(|k| format!(" or pass `{k}` in the X-LlamaStack-Provider-Data header"))
                    .unwrap_or_default()
            ))
        })
    }

    /// The key for this call: provider data, then config, then the service default.
    fn api_key(&self, ctx: Option<&RequestContext>) -> Result<Option<String>> {
        api_key_for(self.profile, &self.provider_id, &self.config, ctx)
    }

    fn check_model(&self, model: &str) -> Result<()> {
        check_allowed(&self.provider_id, &self.config, model)
    }

    /// The upstream body of `req`, once its model passes `allowed_models`: the stream flag
    /// set, the service's configured body fields added where the request has none, and
    /// (generation requests) the configured `max_tokens` (vLLM) when the request bounds
    /// neither `max_tokens` nor `max_completion_tokens`.
    fn body<T: UpstreamBody>(&self, mut req: T, stream: bool) -> Result<Bytes> {
        self.check_model(req.model())?;
        req.set_stream(stream);
        for field in self.profile.body_fields {
            if let Some(v) = self.config.fields.get(*field).filter(|v| !v.is_null()) {
                req.extra_body()
                    .entry(field.to_string())
                    .or_insert_with(|| v.clone());
            }
        }
        if let Some(limit) = self.config.max_tokens {
            req.default_max_tokens(limit);
        }
        json_bytes(&req)
    }

    /// `url`, parsed (from the cache when it was parsed before) if it parses.
    fn request_url(&self, url: String) -> RequestUrl<'static> {
        match self.parsed_url(&url) {
            Some(parsed) => RequestUrl::Parsed(parsed),
            None => RequestUrl::Unparsed(url),
        }
    }

    // The calls below are plain functions returning futures: what can be done at once is
    // done before the future is built, so the future holds only what crosses an `.await`
    // (an `async fn` also holds each argument twice). Every call boxes the provider's
    // future, and one that outgrows the allocator's small size classes (about 1 KiB)
    // costs noticeably more to allocate.

    fn send<'a>(
        &'a self,
        ctx: Option<&'a RequestContext>,
        method: reqwest::Method,
        endpoint: Endpoint,
        body: Option<Bytes>,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send + 'a {
        let url = match &self.endpoints[endpoint as usize] {
            Some(url) if self.base_override(ctx).is_none() => Ok(RequestUrl::Configured(url)),
            _ => self
                .base(ctx)
                .map(|base| self.request_url(format!("{base}{}", endpoint.path()))),
        };
        self.send_to(ctx, method, url, body)
    }

    /// [`Self::send`] to a full URL (NVIDIA's per-model rerank endpoints).
    fn send_to<'a>(
        &'a self,
        ctx: Option<&'a RequestContext>,
        method: reqwest::Method,
        url: Result<RequestUrl<'a>>,
        body: Option<Bytes>,
    ) -> impl Future<Output = Result<reqwest::Response>> + Send + 'a {
        let query: Vec<(&str, String)> = self
            .profile
            .query_fields
            .iter()
            .filter_map(|(field, param)| Some((*param, self.config.field_str(field)?.to_string())))
            .collect();
        let mut forwarded = Vec::new();
        if let Some(pd) = ctx.and_then(RequestContext::provider_data) {
            for (pd_key, header) in &self.forward {
                if let Some(v) = pd.get_str(pd_key) {
                    if let Ok(v) = HeaderValue::from_str(v) {
                        forwarded.push((header.clone(), v));
                    }
                }
            }
        }
        let auth = url.and_then(|url| Ok((url, self.auth(ctx)?)));
        async move {
            let (url, auth) = auth?;
            let auth = match auth {
                Auth::Header(header) => header,
                Auth::Exchange(iam, key) => {
                    // Boxed: only this path carries the exchange's state.
                    let token = Box::pin(iam.bearer(&self.upstream, &key)).await?;
                    Some(bearer(&self.provider_id, &token)?)
                }
            };
            let client = self.upstream.client();
            self.upstream
                .send(|| {
                    let mut rb = match &url {
                        RequestUrl::Configured(parsed) => {
                            client.request(method.clone(), (*parsed).clone())
                        }
                        RequestUrl::Parsed(parsed) => {
                            client.request(method.clone(), parsed.clone())
                        }
                        RequestUrl::Unparsed(url) => client.request(method.clone(), url.as_str()),
                    };
                    if !query.is_empty() {
                        rb = rb.query(&query);
                    }
                    for (name, value) in &forwarded {
                        rb = rb.header(name.clone(), value.clone());
                    }
                    // A configured key wins over a forwarded Authorization header.
                    if let Some(auth) = &auth {
                        rb = rb.header(AUTHORIZATION, auth.clone());
                    }
                    if let Some(body) = &body {
                        rb = rb
                            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                            .body(body.clone());
                    }
                    rb
                })
                .await
        }
    }

    /// The `Authorization` header for this call, or the key to exchange for it first: the
    /// key from provider data, else the configured one (its header built once).
    fn auth(&self, ctx: Option<&RequestContext>) -> Result<Auth<'_>> {
        let from_pd = self
            .profile
            .provider_data_key
            .is_some_and(|k| ctx.and_then(|c| c.provider_data()?.get_str(k)).is_some());
        if !from_pd {
            if let Some(auth) = &self.config_auth {
                return Ok(Auth::Header(Some(auth.clone())));
            }
        }
        match (self.api_key(ctx)?, &self.iam) {
            (Some(key), Some(iam)) => Ok(Auth::Exchange(iam, key)),
            (key, _) => Ok(Auth::Header(
                key.map(|k| bearer(&self.provider_id, &k)).transpose()?,
            )),
        }
    }

    /// Sends the JSON `body` (or its error) to `endpoint` and reads the answer as `T`.
    #[allow(clippy::manual_async_fn)] // see above
    fn call_json<'a, T: DeserializeOwned + Send + 'a>(
        &'a self,
        ctx: &'a RequestContext,
        endpoint: Endpoint,
        body: Result<Bytes>,
        fixup: fn(&mut Value),
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        async move {
            let resp = self
                .send(Some(ctx), reqwest::Method::POST, endpoint, Some(body?))
                .await?;
            self.json(resp, fixup).await
        }
    }

    /// Sends the JSON `body` (or its error) to `endpoint` and decodes the answer's events
    /// as `T`s.
    #[allow(clippy::manual_async_fn)] // see above
    fn call_stream<'a, T: DeserializeOwned + Send + 'static>(
        &'a self,
        ctx: &'a RequestContext,
        endpoint: Endpoint,
        body: Result<Bytes>,
        fixup: fn(&mut Value),
    ) -> impl Future<Output = Result<BoxStream<'static, Result<T>>>> + Send + 'a {
        async move {
            let resp = self
                .send(Some(ctx), reqwest::Method::POST, endpoint, Some(body?))
                .await?;
            Ok(sse_json(resp, &self.upstream, fixup))
        }
    }

    /// `resp`'s body as `T`.
    fn json<'a, T: DeserializeOwned + Send + 'a>(
        &'a self,
        resp: reqwest::Response,
        fixup: fn(&mut Value),
    ) -> impl Future<Output = Result<T>> + Send + 'a {
        let body = read_body(resp);
        async move {
            let bytes = body.await.map_err(|e| self.upstream.transport_error(&e))?;
            // Straight into `T` when the upstream sent every field `T` requires; otherwise
            // through a `Value` where `fixup` fills them (fixups only fill required fields,
            // so both paths give the same result).
            if let Ok(parsed) = serde_json::from_slice::<T>(&bytes) {
                return Ok(parsed);
            }
            let mut value: Value = serde_json::from_slice(&bytes).map_err(|e| self.malformed(e))?;
            fixup(&mut value);
            serde_json::from_value(value).map_err(|e| self.malformed(e))
        }
    }

    fn malformed(&self, e: serde_json::Error) -> Error {
        Error::upstream(
            &self.provider_id,
            502,
            format!(
                "provider '{}': malformed response from the upstream: {e}",
                self.provider_id
            ),
        )
    }
}

/// The API key for one call of `profile`'s provider: the provider-data field, then the
/// configured key, then the service default. A required key that is missing is an
/// `InvalidRequest` naming the config field, its env var and the provider-data field.
pub(crate) fn api_key_for(
    profile: &ServiceProfile,
    provider_id: &str,
    config: &OpenAiCompatConfig,
    ctx: Option<&RequestContext>,
) -> Result<Option<String>> {
    if let Some(k) = profile
        .provider_data_key
        .and_then(|k| ctx?.provider_data()?.get_str(k))
    {
        return Ok(Some(k.to_string()));
    }
    if profile.key_field.is_none() {
        return Ok(None);
    }
    if let Some(k) = &config.api_key {
        return Ok(Some(k.expose_secret().to_string()));
    }
    if let Some(k) = profile.default_key {
        return Ok(Some(k.to_string()));
    }
    if !profile.key_required {
        return Ok(None);
    }
    let field = profile.key_field.unwrap_or("api_key");
    let env = profile
        .key_env
        .map(|e| format!(" (e.g. `{field}: ${{env.{e}}}`)"))
        .unwrap_or_default();
    let pd = profile
        .provider_data_key
        .map(|k| format!(", e.g. x-llamastack-provider-data: {{\"{k}\": \"<API_KEY>\"}}"))
        .unwrap_or_default();
    Err(Error::invalid_request(format!(
        "API key not provided. Please provide a valid API key in the provider data header{pd}, or set `{field}` in the config of provider '{provider_id}'{env}."
    ))
    .with_provider(provider_id)
    .with_context("param", field))
}

/// Fails with 400 when `config.allowed_models` is set and does not hold `model`.
pub(crate) fn check_allowed(
    provider_id: &str,
    config: &OpenAiCompatConfig,
    model: &str,
) -> Result<()> {
    match &config.allowed_models {
        Some(allowed) if !allowed.iter().any(|m| m == model) => Err(Error::invalid_param(
            "model",
            format!("'{model}'"),
            &format!(
                "Provider '{provider_id}' only serves its allowed_models: [{}]",
                allowed.join(", ")
            ),
        )),
        _ => Ok(()),
    }
}

fn fill(value: &mut Value, defaults: &[(&str, Value)]) {
    if let Value::Object(map) = value {
        for (k, v) in defaults {
            if map.get(*k).is_none_or(Value::is_null) {
                map.insert((*k).to_string(), v.clone());
            }
        }
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn fix_chat(v: &mut Value) {
    fill(
        v,
        &[
            ("object", json!("chat.completion")),
            ("created", json!(now())),
            ("id", json!("")),
        ],
    );
}

fn fix_chunk(v: &mut Value) {
    fill(
        v,
        &[
            ("object", json!("chat.completion.chunk")),
            ("created", json!(now())),
            ("id", json!("")),
            ("model", json!("")),
            ("choices", json!([])),
        ],
    );
    if let Some(choices) = v.get_mut("choices").and_then(Value::as_array_mut) {
        for c in choices {
            fill(c, &[("delta", json!({}))]);
        }
    }
}

fn fix_completion(v: &mut Value) {
    fill(
        v,
        &[
            ("object", json!("text_completion")),
            ("created", json!(now())),
            ("id", json!("")),
            ("model", json!("")),
            ("choices", json!([])),
        ],
    );
}

fn fix_embeddings(v: &mut Value) {
    fill(
        v,
        &[
            ("object", json!("list")),
            ("model", json!("")),
            ("usage", json!({"prompt_tokens": 0, "total_tokens": 0})),
        ],
    );
    if let Some(data) = v.get_mut("data").and_then(Value::as_array_mut) {
        for (i, d) in data.iter_mut().enumerate() {
            fill(d, &[("object", json!("embedding")), ("index", json!(i))]);
        }
    }
}

#[async_trait]
impl Inference for OpenAiCompatProvider {
    // The generation calls are written out as the functions `async_trait` makes of them, so
    // that the request becomes its body before the boxed future is built: the future then
    // holds the body, not the request (see `send`).

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
        let body = self.body(req, false);
        Box::pin(self.call_json(ctx, Endpoint::ChatCompletions, body, fix_chat))
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
        let body = self.body(req, true);
        Box::pin(self.call_stream(ctx, Endpoint::ChatCompletions, body, fix_chunk))
    }

    fn completion<'s, 'c, 'f>(
        &'s self,
        ctx: &'c RequestContext,
        req: CompletionRequest,
    ) -> BoxFuture<'f, Result<Completion>>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        let body = self.body(req, false);
        Box::pin(self.call_json(ctx, Endpoint::Completions, body, fix_completion))
    }

    fn completion_stream<'s, 'c, 'f>(
        &'s self,
        ctx: &'c RequestContext,
        req: CompletionRequest,
    ) -> BoxFuture<'f, Result<CompletionStream>>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        let body = self.body(req, true);
        Box::pin(self.call_stream(ctx, Endpoint::Completions, body, fix_completion))
    }

    fn embeddings<'s, 'c, 'f>(
        &'s self,
        ctx: &'c RequestContext,
        req: EmbeddingsRequest,
    ) -> BoxFuture<'f, Result<EmbeddingsResponse>>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        let body = self.body(req, false);
        Box::pin(self.call_json(ctx, Endpoint::Embeddings, body, fix_embeddings))
    }

    /// NVIDIA NIM ranking: `POST <rerank_model_to_url[model]>` or `<base_url>/ranking` with
    /// `{model, query: {text}, passages: [{text}], truncate: "END"}`; the answer's
    /// `rankings[].logit` becomes `relevance_score` (higher is more relevant).
    async fn rerank(&self, ctx: &RequestContext, req: RerankRequest) -> Result<RerankResponse> {
        self.check_model(&req.model)?;
        let text = |item: &RerankItem, field: String| -> Result<String> {
            match item {
                RerankItem::Text(t) | RerankItem::Part(ContentPart::Text { text: t }) => {
                    Ok(t.clone())
                }
                RerankItem::Part(_) => Err(Error::invalid_param(
                    &field,
                    "(non-text part)",
                    &format!(
                        "Provider '{}' ranks text only; {field} is not text",
                        self.provider_id
                    ),
                )),
            }
        };
        let query = text(&req.query, "query".into())?;
        let passages = req
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| Ok(json!({ "text": text(item, format!("items[{i}]"))? })))
            .collect::<Result<Vec<Value>>>()?;
        let url = match self
            .config
            .rerank_model_to_url
            .as_ref()
            .and_then(|m| m.get(&req.model))
        {
            Some(url) => url.clone(),
            None => format!("{}/ranking", self.base(Some(ctx))?),
        };
        let body = json!({
            "model": req.model,
            "query": { "text": query },
            "passages": passages,
            "truncate": "END",
        });
        let resp = self
            .send_to(
                Some(ctx),
                reqwest::Method::POST,
                Ok(self.request_url(url)),
                Some(json_bytes(&body)?),
            )
            .await?;
        let v: Value = self.json(resp, |_| {}).await?;
        let rankings = v.get("rankings").and_then(Value::as_array).ok_or_else(|| {
            Error::upstream(
                &self.provider_id,
                502,
                format!(
                    "provider '{}': the ranking answer has no `rankings` list",
                    self.provider_id
                ),
            )
        })?;
        let mut data = Vec::with_capacity(rankings.len());
        for r in rankings {
            let index = r.get("index").and_then(Value::as_u64);
            let logit = r.get("logit").and_then(Value::as_f64);
            match (index, logit) {
                (Some(index), Some(logit)) if (index as usize) < req.items.len() => {
                    data.push(RerankData {
                        index: index as u32,
                        relevance_score: logit as f32,
                    })
                }
                _ => {
                    return Err(Error::upstream(
                        &self.provider_id,
                        502,
                        format!(
                            "provider '{}': invalid ranking entry {r} for {} items",
                            self.provider_id,
                            req.items.len()
                        ),
                    ))
                }
            }
        }
        data.sort_by(|a, b| b.relevance_score.total_cmp(&a.relevance_score));
        if let Some(n) = req.max_num_results {
            data.truncate(n as usize);
        }
        Ok(RerankResponse { data })
    }
}

#[async_trait]
impl InferenceProvider for OpenAiCompatProvider {
    fn capabilities(&self) -> InferenceCaps {
        self.profile.caps
    }

    async fn list_models(&self) -> Result<Option<Vec<Model>>> {
        if !self.profile.lists_models || self.base_url.is_none() {
            return Ok(None);
        }
        // Listing uses the configured key only; without one it is skipped silently.
        if self.api_key(None).is_err() {
            return Ok(None);
        }
        let resp = self
            .send(None, reqwest::Method::GET, Endpoint::Models, None)
            .await?;
        let listing: Value = self.json(resp, |_| {}).await?;
        let ids = listing
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                Error::upstream(
                    &self.provider_id,
                    502,
                    format!(
                        "provider '{}': the upstream's model list has no `data` array",
                        self.provider_id
                    ),
                )
            })?
            .iter()
            .filter_map(|m| m.get("id")?.as_str().map(str::to_string));
        let mut models = Vec::new();
        for id in ids {
            if let Some(allowed) = &self.config.allowed_models {
                if !allowed.contains(&id) {
                    continue;
                }
            }
            let embedding = self
                .profile
                .embedding_models
                .iter()
                .find(|(m, _)| *m == id)
                .map(|(_, dim)| *dim);
            let reranks = self
                .config
                .rerank_model_to_url
                .as_ref()
                .is_some_and(|m| m.contains_key(&id));
            let mut model = Model::new(
                &self.provider_id,
                &id,
                if embedding.is_some() {
                    ModelType::Embedding
                } else if reranks {
                    ModelType::Rerank
                } else {
                    ModelType::Llm
                },
            );
            if let Some(dim) = embedding {
                model.metadata = Map::from_iter([("embedding_dimension".to_string(), json!(dim))]);
            }
            models.push(model);
        }
        Ok(Some(models))
    }

    fn refresh_models(&self) -> bool {
        self.config.refresh_models
    }

    fn refresh_interval(&self) -> std::time::Duration {
        self.config.refresh_interval()
    }

    async fn register_model(&self, model: &Model) -> Result<Model> {
        self.check_model(&model.provider_resource_id)?;
        Ok(model.clone())
    }

    async fn health(&self) -> Health {
        match self.list_models().await {
            Ok(_) => Health::ok(),
            Err(e) => Health::error(e.to_string()),
        }
    }
}
