//! Config parsing for every OpenAI-compatible provider type: fields, aliases, defaults.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llama_stack_core::{ErrorKind, RequestContext};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::config::{parse, OpenAiCompatConfig, TimeoutConfig, TlsVerify};
use super::services::{profile, SERVICES};
use super::OpenAiCompatProvider;

const PATH: &str = "providers.inference[0].config";

fn parse_with(
    kind: &str,
    raw: Value,
    env: &[(&str, &str)],
) -> llama_stack_core::Result<OpenAiCompatConfig> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    parse(profile(kind).unwrap(), &raw, PATH, &move |var| {
        env.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())
    })
}

fn ok(kind: &str, raw: Value) -> OpenAiCompatConfig {
    parse_with(kind, raw, &[]).unwrap_or_else(|e| panic!("{kind}: {e}"))
}

fn config_error(kind: &str, raw: Value, needle: &str) {
    let err = parse_with(kind, raw, &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{kind}: {err}");
    assert!(
        err.message().contains(needle),
        "{kind}: {err} should mention {needle}"
    );
}

#[test]
fn every_service_parses_its_shared_fields_and_rejects_unknown_ones() {
    for s in SERVICES {
        let mut raw = json!({
            "base_url": "http://127.0.0.1:1/v1",
            "allowed_models": ["m"],
            "refresh_models": true,
            "network": {"timeout": 5, "headers": {"x-team": "a"}},
        });
        if let Some(field) = s.key_field {
            raw[field] = json!("secret");
        }
        let c = ok(s.provider_type, raw.clone());
        assert_eq!(c.base_url.as_deref(), Some("http://127.0.0.1:1/v1"));
        assert!(c.refresh_models);
        assert_eq!(c.allowed_models, Some(vec!["m".to_string()]));
        if s.key_field.is_some() {
            assert_eq!(c.api_key.as_ref().unwrap().expose_secret(), "secret");
        }
        raw["temperature_default"] = json!(1);
        config_error(s.provider_type, raw, &format!("{PATH}.temperature_default"));
        // The provider builds from the parsed config.
        OpenAiCompatProvider::new(s, "p", c, PATH).unwrap();
    }
}

#[test]
fn key_field_names_follow_llama_stack() {
    for kind in ["remote::vllm", "remote::databricks", "remote::runpod"] {
        let c = ok(kind, json!({"base_url": "http://x/v1", "api_token": "t"}));
        assert_eq!(c.api_key.unwrap().expose_secret(), "t");
        config_error(
            kind,
            json!({"base_url": "http://x/v1", "api_key": "t"}),
            "api_key",
        );
    }
    for kind in ["remote::openai", "remote::groq", "remote::azure"] {
        config_error(
            kind,
            json!({"base_url": "http://x/v1", "api_token": "t"}),
            "api_token",
        );
    }
    config_error("remote::ollama", json!({"api_key": "t"}), "api_key");
    // Empty values from `${env.X:=}` mean "not set".
    let c = ok("remote::openai", json!({"api_key": "", "base_url": ""}));
    assert!(c.api_key.is_none());
    assert_eq!(c.base_url.as_deref(), Some("https://api.openai.com/v1"));
}

#[test]
fn defaults_and_env_defaults() {
    let defaults = [
        ("remote::openai", "https://api.openai.com/v1"),
        ("remote::ollama", "http://localhost:11434/v1"),
        ("remote::fireworks", "https://api.fireworks.ai/inference/v1"),
        ("remote::together", "https://api.together.xyz/v1"),
        ("remote::groq", "https://api.groq.com/openai/v1"),
        ("remote::sambanova", "https://api.sambanova.ai/v1"),
        ("remote::cerebras", "https://api.cerebras.ai/v1"),
        ("remote::nvidia", "https://integrate.api.nvidia.com/v1"),
        (
            "remote::llama-openai-compat",
            "https://api.llama.com/compat/v1/",
        ),
        ("remote::llama-cpp-server", "http://localhost:8080/v1"),
        ("remote::watsonx", "https://us-south.ml.cloud.ibm.com"),
    ];
    for (kind, url) in defaults {
        assert_eq!(ok(kind, json!({})).base_url.as_deref(), Some(url), "{kind}");
    }
    for kind in [
        "remote::vllm",
        "remote::tgi",
        "remote::databricks",
        "remote::runpod",
    ] {
        config_error(kind, json!({}), &format!("{PATH}.base_url"));
    }
    // Passthrough may take its URL from provider data per request.
    assert!(ok("remote::passthrough", json!({})).base_url.is_none());

    let env = [
        ("CEREBRAS_BASE_URL", "http://cerebras.local/v1"),
        ("NVIDIA_BASE_URL", "http://nim.local/v1"),
        ("WATSONX_BASE_URL", "http://wx.local"),
        ("WATSONX_PROJECT_ID", "proj-1"),
        ("AZURE_API_VERSION", "2025-04-01-preview"),
    ];
    let c = parse_with("remote::cerebras", json!({}), &env).unwrap();
    assert_eq!(c.base_url.as_deref(), Some("http://cerebras.local/v1"));
    let c = parse_with("remote::nvidia", json!({}), &env).unwrap();
    assert_eq!(c.base_url.as_deref(), Some("http://nim.local/v1"));
    assert_eq!(c.timeout, Some(60.0));
    let c = parse_with("remote::watsonx", json!({}), &env).unwrap();
    assert_eq!(c.base_url.as_deref(), Some("http://wx.local"));
    assert_eq!(c.project_id.as_deref(), Some("proj-1"));
    assert_eq!(c.timeout, Some(60.0));
    let c = parse_with(
        "remote::azure",
        json!({"base_url": "https://r.openai.azure.com/openai/v1"}),
        &env,
    )
    .unwrap();
    assert_eq!(c.api_version.as_deref(), Some("2025-04-01-preview"));
    assert_eq!(c.api_type.as_deref(), Some("azure"));
    // A configured value beats the environment.
    let c = parse_with(
        "remote::cerebras",
        json!({"base_url": "http://mine/v1"}),
        &env,
    )
    .unwrap();
    assert_eq!(c.base_url.as_deref(), Some("http://mine/v1"));

    let c = ok("remote::vllm", json!({"base_url": "http://v/v1"}));
    assert_eq!(c.max_tokens, Some(4096));
    let c = ok(
        "remote::vllm",
        json!({"base_url": "http://v/v1", "max_tokens": 128, "tls_verify": false}),
    );
    assert_eq!(c.max_tokens, Some(128));
    assert_eq!(c.tls_verify, Some(TlsVerify::Enabled(false)));
    config_error("remote::openai", json!({"max_tokens": 5}), "max_tokens");
    let c = ok(
        "remote::nvidia",
        json!({"rerank_model_to_url": {"nv-rerank": "http://r"}}),
    );
    assert_eq!(c.rerank_model_to_url.unwrap()["nv-rerank"], "http://r");
}

#[test]
fn network_section_parses_and_is_checked() {
    let c = ok(
        "remote::openai",
        json!({"network": {"timeout": {"connect": 1.5, "read": 30}, "tls": {"verify": "/etc/ssl/certs/ca-certificates.crt", "min_version": "TLSv1.2"}, "proxy": {"url": "http://proxy:3128", "no_proxy": ["localhost"]}}}),
    );
    let n = c.network.clone().unwrap();
    assert!(matches!(
        n.timeout,
        Some(TimeoutConfig::Split {
            connect: Some(_),
            read: Some(_)
        })
    ));
    assert!(matches!(n.tls.unwrap().verify, Some(TlsVerify::CaPath(_))));
    config_error(
        "remote::openai",
        json!({"network": {"tls": {"verify": true, "insecure": true}}}),
        "insecure",
    );

    let build = |network: Value| {
        let c = ok("remote::openai", json!({"network": network}));
        OpenAiCompatProvider::new(profile("remote::openai").unwrap(), "p", c, PATH).unwrap_err()
    };
    let e = build(json!({"tls": {"verify": "/nonexistent/ca.pem"}}));
    assert!(
        e.message().contains("network.tls.verify") && e.message().contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = build(json!({"tls": {"client_cert": "/nonexistent/c.pem"}}));
    assert!(e.message().contains("client_key"), "{e}");
    let e = build(json!({"tls": {"min_version": "TLSv1.0"}}));
    assert!(e.message().contains("min_version"), "{e}");
    let e = build(json!({"timeout": -1}));
    assert!(e.message().contains("network.timeout"), "{e}");
    let e = build(json!({"headers": {"bad header": "x"}}));
    assert!(e.message().contains("network.headers"), "{e}");
}

#[test]
fn passthrough_refuses_to_forward_security_headers() {
    let p = profile("remote::passthrough").unwrap();
    for header in ["Host", "x-llamastack-provider-data", "Cookie", "X-Secret"] {
        let c = ok(
            "remote::passthrough",
            json!({"base_url": "http://x", "forward_headers": {"k": header}, "extra_blocked_headers": ["x-secret"]}),
        );
        let e = OpenAiCompatProvider::new(p, "p", c, PATH).unwrap_err();
        assert!(e.message().contains("forward_headers.k"), "{e}");
    }
    let c = ok(
        "remote::passthrough",
        json!({"base_url": "http://x/", "forward_headers": {"tenant": "X-Tenant-Id"}}),
    );
    let prov = OpenAiCompatProvider::new(p, "p", c, PATH).unwrap();
    assert_eq!(prov.base_url(), Some("http://x/v1"));
}

#[tokio::test]
async fn a_missing_key_names_the_field_the_env_var_and_the_provider_data_key() {
    use llama_stack_core::api::inference::{ChatCompletionRequest, Inference, Message};
    for (kind, field, env, pd) in [
        (
            "remote::openai",
            "api_key",
            "OPENAI_API_KEY",
            "openai_api_key",
        ),
        (
            "remote::databricks",
            "api_token",
            "DATABRICKS_TOKEN",
            "databricks_api_token",
        ),
    ] {
        let c = ok(kind, json!({"base_url": "http://127.0.0.1:9/v1"}));
        let prov = OpenAiCompatProvider::new(profile(kind).unwrap(), "p", c, PATH).unwrap();
        let err = prov
            .chat_completion(
                &RequestContext::anonymous(),
                ChatCompletionRequest::new("m", [Message::user("hi")]),
            )
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
        assert_eq!(err.http_status(), 400);
        let m = err.message();
        assert!(m.starts_with("API key not provided"), "{m}");
        assert!(
            m.contains(field) && m.contains(env) && m.contains(pd),
            "{m}"
        );
        // Listing is skipped silently without a key.
        use llama_stack_core::provider::InferenceProvider;
        assert!(prov.list_models().await.unwrap().is_none());
    }
}
