//! The OpenAI-compatible services as data: one [`ServiceProfile`] per `remote::*` provider
//! type. Adding a compatible service is adding an entry to [`SERVICES`].

use llama_stack_core::provider::InferenceCaps;

/// Chat, completions, streaming, tools, structured output and embeddings; no rerank.
const FULL: InferenceCaps = InferenceCaps {
    chat: true,
    completion: true,
    streaming: true,
    tools: true,
    json_schema: true,
    embeddings: true,
    rerank: false,
};

/// Chat-only services (no legacy completions, no embeddings).
const CHAT_ONLY: InferenceCaps = InferenceCaps {
    completion: false,
    embeddings: false,
    ..FULL
};

/// What differs between OpenAI-compatible services. Everything else is the shared core.
#[derive(Debug, Clone, Copy)]
pub struct ServiceProfile {
    /// The provider type, e.g. `remote::openai`.
    pub provider_type: &'static str,
    /// One line for `/v1/providers` and the spec.
    pub description: &'static str,
    /// `base_url` when the config has none.
    pub default_base_url: Option<&'static str>,
    /// Appended to `base_url` for every call (Databricks serves under `/serving-endpoints`).
    pub path_suffix: &'static str,
    /// YAML name of the API key field (`api_key` or `api_token`); `None` = the service takes no key.
    pub key_field: Option<&'static str>,
    /// The environment variable sample configs read the key from (named in errors).
    pub key_env: Option<&'static str>,
    /// Whether a call without any key fails with "API key not provided".
    pub key_required: bool,
    /// The key used when none is configured (vLLM's `fake`).
    pub default_key: Option<&'static str>,
    /// The `X-LlamaStack-Provider-Data` field that overrides the key per request.
    pub provider_data_key: Option<&'static str>,
    /// The `X-LlamaStack-Provider-Data` field that overrides `base_url` per request.
    pub provider_data_url_key: Option<&'static str>,
    /// Config fields this service accepts beyond the shared ones.
    pub extra_fields: &'static [&'static str],
    /// `(field, JSON value)` defaults filled in when the config omits the field.
    pub field_defaults: &'static [(&'static str, &'static str)],
    /// `(field, ENV_VAR)`: the field's default is read from the environment, as Llama Stack's
    /// config classes do for these services.
    pub field_env_defaults: &'static [(&'static str, &'static str)],
    /// Config fields copied into every request body that does not set them.
    pub body_fields: &'static [&'static str],
    /// `(config field, query parameter)` added to every call when the field is set.
    pub query_fields: &'static [(&'static str, &'static str)],
    /// What the service can do.
    pub caps: InferenceCaps,
    /// Whether `GET /models` lists the service's models.
    pub lists_models: bool,
    /// Known embedding models among the listed ones: `(model id, dimension)`.
    pub embedding_models: &'static [(&'static str, u32)],
    /// Whether `forward_headers` / `extra_blocked_headers` apply (passthrough).
    pub forwards_headers: bool,
    /// Whether the API key is exchanged for an IBM Cloud IAM bearer token (`iam_url`).
    pub iam_exchange: bool,
}

impl ServiceProfile {
    pub(crate) const fn new(provider_type: &'static str, description: &'static str) -> Self {
        ServiceProfile {
            provider_type,
            description,
            default_base_url: None,
            path_suffix: "",
            key_field: Some("api_key"),
            key_env: None,
            key_required: true,
            default_key: None,
            provider_data_key: None,
            provider_data_url_key: None,
            extra_fields: &[],
            field_defaults: &[],
            field_env_defaults: &[],
            body_fields: &[],
            query_fields: &[],
            caps: FULL,
            lists_models: true,
            embedding_models: &[],
            forwards_headers: false,
            iam_exchange: false,
        }
    }

    pub(crate) const fn base_url(mut self, url: &'static str) -> Self {
        self.default_base_url = Some(url);
        self
    }

    pub(crate) const fn key(mut self, env: &'static str, provider_data_key: &'static str) -> Self {
        self.key_env = Some(env);
        self.provider_data_key = Some(provider_data_key);
        self
    }

    pub(crate) const fn token_field(mut self) -> Self {
        self.key_field = Some("api_token");
        self
    }

    pub(crate) const fn no_key(mut self) -> Self {
        self.key_field = None;
        self.key_required = false;
        self
    }

    pub(crate) const fn optional_key(mut self) -> Self {
        self.key_required = false;
        self
    }

    pub(crate) const fn caps(mut self, caps: InferenceCaps) -> Self {
        self.caps = caps;
        self
    }

    pub(crate) const fn extra(mut self, fields: &'static [&'static str]) -> Self {
        self.extra_fields = fields;
        self
    }

    pub(crate) const fn env_defaults(
        mut self,
        defaults: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.field_env_defaults = defaults;
        self
    }

    pub(crate) const fn defaults(
        mut self,
        defaults: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.field_defaults = defaults;
        self
    }

    pub(crate) const fn embeddings(mut self, models: &'static [(&'static str, u32)]) -> Self {
        self.embedding_models = models;
        self
    }
}

/// Every OpenAI-compatible service compiled in, by provider type.
pub const SERVICES: &[ServiceProfile] = &[
    ServiceProfile::new("remote::openai", "OpenAI's API (or any server at base_url speaking it)")
        .base_url("https://api.openai.com/v1")
        .key("OPENAI_API_KEY", "openai_api_key"),
    ServiceProfile {
        default_key: Some("fake"),
        ..ServiceProfile::new("remote::vllm", "A vLLM server's OpenAI-compatible API")
            .token_field()
            .optional_key()
            .key("VLLM_API_TOKEN", "vllm_api_token")
            .extra(&["max_tokens", "tls_verify"])
            .defaults(&[("max_tokens", "4096")])
    },
    ServiceProfile::new("remote::ollama", "Ollama's OpenAI-compatible API (base_url ends in /v1)")
        .base_url("http://localhost:11434/v1")
        .no_key(),
    ServiceProfile::new("remote::tgi", "Hugging Face Text Generation Inference's OpenAI-compatible API (base_url ends in /v1)")
        .no_key(),
    ServiceProfile::new("remote::fireworks", "Fireworks AI")
        .base_url("https://api.fireworks.ai/inference/v1")
        .key("FIREWORKS_API_KEY", "fireworks_api_key")
        .embeddings(&[("nomic-ai/nomic-embed-text-v1.5", 768), ("accounts/fireworks/models/qwen3-embedding-8b", 4096)]),
    ServiceProfile::new("remote::together", "Together AI")
        .base_url("https://api.together.xyz/v1")
        .key("TOGETHER_API_KEY", "together_api_key"),
    ServiceProfile::new("remote::groq", "Groq")
        .base_url("https://api.groq.com/openai/v1")
        .key("GROQ_API_KEY", "groq_api_key")
        .caps(CHAT_ONLY),
    ServiceProfile::new("remote::sambanova", "SambaNova Cloud")
        .base_url("https://api.sambanova.ai/v1")
        .key("SAMBANOVA_API_KEY", "sambanova_api_key"),
    ServiceProfile::new("remote::cerebras", "Cerebras Inference")
        .base_url("https://api.cerebras.ai/v1")
        .key("CEREBRAS_API_KEY", "cerebras_api_key")
        .env_defaults(&[("base_url", "CEREBRAS_BASE_URL")])
        .caps(InferenceCaps { embeddings: false, ..FULL }),
    ServiceProfile::new("remote::nvidia", "NVIDIA NIM / build.nvidia.com")
        .base_url("https://integrate.api.nvidia.com/v1")
        .key("NVIDIA_API_KEY", "nvidia_api_key")
        .env_defaults(&[("base_url", "NVIDIA_BASE_URL")])
        .extra(&["timeout", "rerank_model_to_url"])
        .defaults(&[("timeout", "60")])
        .caps(InferenceCaps { rerank: true, ..FULL })
        .embeddings(&[
            ("nvidia/llama-3.2-nv-embedqa-1b-v2", 2048),
            ("nvidia/nv-embedqa-e5-v5", 1024),
            ("nvidia/nv-embedqa-mistral-7b-v2", 4096),
            ("snowflake/arctic-embed-l", 1024),
        ]),
    ServiceProfile {
        path_suffix: "/serving-endpoints",
        ..ServiceProfile::new("remote::databricks", "Databricks model serving (base_url is the workspace host)")
            .token_field()
            .key("DATABRICKS_TOKEN", "databricks_api_token")
            .embeddings(&[("databricks-gte-large-en", 1024), ("databricks-bge-large-en", 1024)])
    },
    ServiceProfile::new("remote::runpod", "RunPod serverless vLLM endpoints")
        .token_field()
        .key("RUNPOD_API_TOKEN", "runpod_api_token"),
    ServiceProfile::new("remote::llama-openai-compat", "Meta's Llama API, OpenAI-compatible endpoint")
        .base_url("https://api.llama.com/compat/v1/")
        .key("LLAMA_API_KEY", "llama_api_key")
        .caps(CHAT_ONLY),
    ServiceProfile::new("remote::llama-cpp-server", "llama.cpp's server (llama-server, llama-cpp-python)")
        .base_url("http://localhost:8080/v1")
        .optional_key(),
    ServiceProfile {
        query_fields: &[("api_version", "api-version")],
        provider_data_url_key: Some("azure_api_base"),
        ..ServiceProfile::new("remote::azure", "Azure OpenAI (v1 API)")
            .key("AZURE_API_KEY", "azure_api_key")
            .extra(&["api_version", "api_type"])
            .env_defaults(&[("api_version", "AZURE_API_VERSION"), ("api_type", "AZURE_API_TYPE")])
            .defaults(&[("api_type", "\"azure\"")])
    },
    ServiceProfile {
        body_fields: &["project_id"],
        iam_exchange: true,
        ..ServiceProfile::new("remote::watsonx", "IBM watsonx.ai, OpenAI-compatible endpoints (base_url includes the API path); the API key is exchanged for an IBM Cloud IAM token")
            .base_url("https://us-south.ml.cloud.ibm.com")
            .key("WATSONX_API_KEY", "watsonx_api_key")
            .extra(&["project_id", "timeout", "iam_url"])
            .env_defaults(&[("base_url", "WATSONX_BASE_URL"), ("project_id", "WATSONX_PROJECT_ID")])
            .defaults(&[("timeout", "60")])
    },
    ServiceProfile {
        path_suffix: "/v1",
        provider_data_url_key: Some("passthrough_url"),
        forwards_headers: true,
        ..ServiceProfile::new("remote::passthrough", "Any OpenAI-compatible server at <base_url>/v1, forwarding chosen provider-data fields as headers")
            .optional_key()
            .key("PASSTHROUGH_API_KEY", "passthrough_api_key")
            .extra(&["forward_headers", "extra_blocked_headers"])
    },
];

/// The profile of `provider_type`.
pub fn profile(provider_type: &str) -> Option<&'static ServiceProfile> {
    SERVICES.iter().find(|s| s.provider_type == provider_type)
}
