//! Authentication, access policy, route policy and quotas over HTTP, against real local
//! servers: a JWKS / introspection endpoint serving keys this test generates (real RS256
//! and ES256 signatures), and fakes of the GitHub, Kubernetes and custom endpoints that
//! follow their documented wire:
//! - GitHub "Get the authenticated user": `GET /user`, Bearer token, answers `{login, id, …}`
//!   (https://docs.github.com/en/rest/users/users#get-the-authenticated-user);
//! - Kubernetes SelfSubjectReview: `POST /apis/authentication.k8s.io/v1/selfsubjectreviews`,
//!   answers 201 with `status.userInfo {username, uid, groups}`
//!   (https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/self-subject-review-v1/);
//! - Llama Stack's custom endpoint: `POST {api_key, request {path, headers, params}}` →
//!   `{principal, attributes}` (Llama Stack `core/server/auth_providers.py`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod serving;

#[cfg(feature = "postgres-redis")]
#[path = "../crates/llama-stack-storage/tests/support/services.rs"]
mod services;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use llama_stack::server::ServerOptions;
use serde_json::{json, Value};
use serving::{scripted_stack, start};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and its public JWK.
struct Key {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
}

fn rsa_key(kid: &str) -> Key {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    let pem = private.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
    let public = private.to_public_key();
    Key {
        kid: kid.to_owned(),
        alg: Algorithm::RS256,
        enc: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
            "n": b64(&public.n().to_bytes_be()), "e": b64(&public.e().to_bytes_be())}),
    }
}

fn ec_key(kid: &str) -> Key {
    use p256::pkcs8::EncodePrivateKey;
    let secret = p256::SecretKey::random(&mut rand::thread_rng());
    let pem = secret.to_pkcs8_pem(p256::pkcs8::LineEnding::LF).unwrap();
    let point = secret.public_key().as_affine().to_owned();
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    let encoded = point.to_encoded_point(false);
    Key {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        enc: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
        jwk: json!({"kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256",
            "x": b64(encoded.x().unwrap()), "y": b64(encoded.y().unwrap())}),
    }
}

fn token(key: &Key, claims: Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.clone());
    encode(&header, &claims, &key.enc).unwrap()
}

fn claims(sub: &str, extra: Value) -> Value {
    let mut c =
        json!({"sub": sub, "aud": "llama-stack", "iss": "https://issuer.test", "exp": now() + 600});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// The identity-provider side: JWKS, introspection, GitHub, Kubernetes and custom fakes.
#[derive(Default)]
struct Idp {
    jwks: Mutex<Vec<Value>>,
    jwks_fetches: AtomicUsize,
    custom_requests: Mutex<Vec<Value>>,
}

async fn serve_idp(idp: Arc<Idp>) -> String {
    async fn jwks(State(idp): State<Arc<Idp>>) -> Json<Value> {
        idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
        Json(json!({"keys": idp.jwks.lock().unwrap().clone()}))
    }
    async fn introspect(
        headers: HeaderMap,
        Form(form): Form<Vec<(String, String)>>,
    ) -> (StatusCode, Json<Value>) {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("client:s3cret")
        );
        if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some(basic.as_str()) {
            return (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "invalid_client"})),
            );
        }
        let token = form
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let body = match token {
            "opaque-alice" => {
                json!({"active": true, "sub": "alice", "scope": "read write", "groups": ["ml"]})
            }
            _ => json!({"active": false}),
        };
        (StatusCode::OK, Json(body))
    }
    async fn github_user(headers: HeaderMap) -> (StatusCode, Json<Value>) {
        match headers.get("authorization").and_then(|h| h.to_str().ok()) {
            Some("Bearer gho_octocat") => {
                assert_eq!(headers["accept"], "application/vnd.github.v3+json");
                (
                    StatusCode::OK,
                    Json(json!({"login": "octocat", "id": 1, "type": "User"})),
                )
            }
            _ => (
                StatusCode::UNAUTHORIZED,
                Json(
                    json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
                ),
            ),
        }
    }
    async fn self_subject_review(
        headers: HeaderMap,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        assert_eq!(
            body,
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
        );
        match headers.get("authorization").and_then(|h| h.to_str().ok()) {
            Some("Bearer sa-token") => (
                StatusCode::CREATED,
                Json(
                    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
                    "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {"username": "system:serviceaccount:ns:app", "uid": "u-1",
                        "groups": ["system:serviceaccounts", "system:authenticated"]}}}),
                ),
            ),
            _ => (
                StatusCode::UNAUTHORIZED,
                Json(
                    json!({"kind": "Status", "status": "Failure", "reason": "Unauthorized", "code": 401}),
                ),
            ),
        }
    }
    async fn custom(
        State(idp): State<Arc<Idp>>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        idp.custom_requests.lock().unwrap().push(body.clone());
        match body["api_key"].as_str() {
            Some("key-bob") => (
                StatusCode::OK,
                Json(
                    json!({"principal": "bob", "attributes": {"roles": ["dev"], "teams": "blue"}}),
                ),
            ),
            Some("key-garbled") => (StatusCode::OK, Json(json!({"who": "bob"}))),
            _ => (StatusCode::FORBIDDEN, Json(json!({"message": "no"}))),
        }
    }
    let app = Router::new()
        .route("/jwks", get(jwks))
        .route("/introspect", post(introspect))
        .route("/gh/user", get(github_user))
        .route(
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            post(self_subject_review),
        )
        .route("/custom", post(custom))
        .with_state(idp);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

async fn call(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn msg(v: &Value) -> String {
    v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn model_ids(v: &Value) -> BTreeSet<String> {
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn oauth2_jwks_tokens_rs256_es256_and_every_bad_token() {
    let idp = Arc::new(Idp::default());
    let rs = rsa_key("rs-1");
    let es = ec_key("es-1");
    *idp.jwks.lock().unwrap() = vec![rs.jwk.clone(), es.jwk.clone()];
    let idp_url = serve_idp(idp.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "  auth:\n    provider_config:\n      type: oauth2_token\n      issuer: https://issuer.test\n      jwks: {{uri: '{idp_url}/jwks', min_refetch_interval: 0}}\n"
    );
    let stack = scripted_stack(dir.path(), &server).await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = reqwest::Client::new();
    let models = format!("{}/v1/models", srv.base);
    use reqwest::Method as M;

    // Public routes only.
    assert_eq!(
        call(&c, M::GET, &format!("{}/v1/health", srv.base), None, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&c, M::GET, &format!("{}/v1/version", srv.base), None, None)
            .await
            .0,
        200
    );
    for path in [
        "/v1/models",
        "/v1alpha/admin/health",
        "/openapi.json",
        "/v1/unknown",
    ] {
        let (s, body) = call(&c, M::GET, &format!("{}{path}", srv.base), None, None).await;
        assert_eq!(s, 401, "{path}: {body}");
        assert!(msg(&body).starts_with("Authentication required"), "{body}");
    }

    let good_rs = token(&rs, claims("alice", json!({"groups": ["ml"]})));
    let good_es = token(&es, claims("bob", json!({})));
    assert_eq!(call(&c, M::GET, &models, Some(&good_rs), None).await.0, 200);
    assert_eq!(call(&c, M::GET, &models, Some(&good_es), None).await.0, 200);

    let other = rsa_key("rs-1"); // same kid, different key: a forgery
    let bad: Vec<(&str, String, &str)> = vec![
        (
            "expired",
            token(&rs, claims("alice", json!({"exp": now() - 3600}))),
            "ExpiredSignature",
        ),
        (
            "wrong audience",
            token(&rs, claims("alice", json!({"aud": "someone-else"}))),
            "InvalidAudience",
        ),
        (
            "no audience",
            token(
                &rs,
                json!({"sub": "alice", "iss": "https://issuer.test", "exp": now() + 60}),
            ),
            "aud",
        ),
        (
            "wrong issuer",
            token(&rs, claims("alice", json!({"iss": "https://evil.test"}))),
            "InvalidIssuer",
        ),
        (
            "forged",
            token(&other, claims("alice", json!({}))),
            "InvalidSignature",
        ),
        ("garbage", "not.a.jwt".to_owned(), "Invalid JWT token"),
        (
            "unknown kid",
            token(&rsa_key("rs-unknown"), claims("alice", json!({}))),
            "unknown signing key",
        ),
        (
            "hs256 with the public key as secret",
            encode(
                &Header {
                    kid: Some("rs-1".into()),
                    ..Header::new(Algorithm::HS256)
                },
                &claims("alice", json!({})),
                &EncodingKey::from_secret(b"x"),
            )
            .unwrap(),
            "not accepted",
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(br#"{"alg":"none","typ":"JWT"}"#),
                b64(claims("alice", json!({})).to_string().as_bytes())
            ),
            "Invalid JWT token",
        ),
        (
            "no subject",
            token(
                &rs,
                json!({"aud": "llama-stack", "iss": "https://issuer.test", "exp": now() + 60}),
            ),
            "subject",
        ),
    ];
    for (name, t, needle) in bad {
        let (s, body) = call(&c, M::GET, &models, Some(&t), None).await;
        assert_eq!(s, 401, "{name}: {body}");
        assert!(msg(&body).contains(needle), "{name}: {body}");
        assert!(body["data"].is_null(), "{name}: no data leaks");
    }
    let resp = c
        .get(&models)
        .header("Authorization", format!("Basic {good_rs}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"error": {"message": "Invalid Authorization header format"}})
    );

    // Key rotation: a new kid published later is picked up by a refetch.
    let rotated = ec_key("es-2");
    idp.jwks.lock().unwrap().push(rotated.jwk.clone());
    let fresh = token(&rotated, claims("carol", json!({})));
    assert_eq!(call(&c, M::GET, &models, Some(&fresh), None).await.0, 200);
    srv.stop().await;
}

#[tokio::test]
async fn unknown_kids_refetch_the_jwks_at_a_limited_rate() {
    let idp = Arc::new(Idp::default());
    let rs = rsa_key("k1");
    *idp.jwks.lock().unwrap() = vec![rs.jwk.clone()];
    let idp_url = serve_idp(idp.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = format!("  auth:\n    provider_config:\n      type: oauth2_token\n      jwks: {{uri: '{idp_url}/jwks', min_refetch_interval: 3600}}\n");
    let stack = scripted_stack(dir.path(), &server).await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = reqwest::Client::new();
    let models = format!("{}/v1/models", srv.base);
    let good = token(&rs, claims("alice", json!({})));
    assert_eq!(
        call(&c, reqwest::Method::GET, &models, Some(&good), None)
            .await
            .0,
        200
    );
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 1);
    for i in 0..20 {
        let forged = token(&rsa_key(&format!("bogus-{i}")), claims("alice", json!({})));
        assert_eq!(
            call(&c, reqwest::Method::GET, &models, Some(&forged), None)
                .await
                .0,
            401
        );
    }
    assert_eq!(
        idp.jwks_fetches.load(Ordering::SeqCst),
        1,
        "forged kids must not hammer the JWKS endpoint"
    );
    assert_eq!(
        call(&c, reqwest::Method::GET, &models, Some(&good), None)
            .await
            .0,
        200
    );
    srv.stop().await;
}

#[tokio::test]
async fn introspection_github_kubernetes_and_custom_providers() {
    let idp = Arc::new(Idp::default());
    let idp_url = serve_idp(idp.clone()).await;
    use reqwest::Method as M;
    let c = reqwest::Client::new();
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            format!("      type: oauth2_token\n      introspection: {{url: '{idp_url}/introspect', client_id: client, client_secret: s3cret}}\n"),
            "opaque-alice",
            "opaque-mallory",
            "Token not active",
        ),
        (
            format!("      type: github_token\n      github_api_base_url: '{idp_url}/gh'\n"),
            "gho_octocat",
            "gho_wrong",
            "GitHub token validation failed",
        ),
        (
            format!("      type: kubernetes\n      api_server_url: '{idp_url}'\n"),
            "sa-token",
            "sa-wrong",
            "Token validation error",
        ),
        (format!("      type: custom\n      endpoint: '{idp_url}/custom'\n"), "key-bob", "key-nope", "Authentication failed: 403"),
    ];
    for (provider, good, bad, bad_msg) in cases {
        let dir = tempfile::tempdir().unwrap();
        let server = format!("  auth:\n    provider_config:\n{provider}");
        let stack = scripted_stack(dir.path(), &server).await;
        let srv = start(&stack, ServerOptions::default()).await;
        let url = format!("{}/v1/models?x=1", srv.base);
        let (s, body) = call(&c, M::GET, &url, Some(good), None).await;
        assert_eq!(s, 200, "{provider}: {body}");
        let (s, body) = call(&c, M::GET, &url, Some(bad), None).await;
        assert_eq!(s, 401, "{provider}: {body}");
        assert!(msg(&body).contains(bad_msg), "{provider}: {body}");
        let (s, _) = call(&c, M::GET, &url, None, None).await;
        assert_eq!(s, 401);
        srv.stop().await;
    }
    // The custom endpoint saw Llama Stack's request shape (no authorization header).
    let seen = idp.custom_requests.lock().unwrap().clone();
    let first = &seen[0];
    assert_eq!(first["api_key"], "key-bob");
    assert_eq!(first["request"]["path"], "/v1/models");
    assert_eq!(first["request"]["params"], json!({"x": ["1"]}));
    assert!(first["request"]["headers"].get("authorization").is_none());
    assert!(first["request"]["headers"].get("host").is_some());
}

/// Two users and shared resources: list filtering, get/use/delete of another user's
/// model, team sharing by attribute, and the route policy.
#[tokio::test]
async fn access_policy_never_leaks_another_users_models() {
    let idp = Arc::new(Idp::default());
    let key = rsa_key("k");
    *idp.jwks.lock().unwrap() = vec![key.jwk.clone()];
    let idp_url = serve_idp(idp.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "  auth:\n    provider_config:\n      type: oauth2_token\n      jwks: {{uri: '{idp_url}/jwks'}}\n      claims_mapping: {{groups: teams, roles: roles}}\n    route_policy:\n    - forbid: {{paths: '/v1/providers*'}}\n      unless: user with admin in roles\n    - permit: {{paths: '*'}}\n"
    );
    let stack = scripted_stack(dir.path(), &server).await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = reqwest::Client::new();
    use reqwest::Method as M;
    let alice = token(&key, claims("alice", json!({"groups": ["red"]})));
    let bob = token(&key, claims("bob", json!({"groups": ["blue"]})));
    let carol = token(&key, claims("carol", json!({"groups": ["red"]})));
    let admin = token(&key, claims("root", json!({"roles": ["admin"]})));
    let base = &srv.base;

    // Alice registers a private model; the config/provider models stay shared (unowned).
    let (s, m) = call(
        &c,
        M::POST,
        &format!("{base}/v1/models"),
        Some(&alice),
        Some(json!({"model_id": "private", "provider_id": "scripted"})),
    )
    .await;
    assert_eq!(s, 200, "{m}");
    let id = "scripted/private";

    let (_, la) = call(&c, M::GET, &format!("{base}/v1/models"), Some(&alice), None).await;
    let (_, lb) = call(&c, M::GET, &format!("{base}/v1/models"), Some(&bob), None).await;
    let (_, lc) = call(&c, M::GET, &format!("{base}/v1/models"), Some(&carol), None).await;
    assert!(model_ids(&la).contains(id));
    assert!(model_ids(&lc).contains(id), "same team sees it");
    assert!(!model_ids(&lb).contains(id), "bob must not see it: {lb}");
    assert!(
        model_ids(&lb).contains("scripted/chat-1"),
        "shared models stay visible"
    );

    // Bob: read → 404, use → 404, delete → 404 (never 403, which would confirm it exists).
    let (s, body) = call(
        &c,
        M::GET,
        &format!("{base}/v1/models/{id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(s, 404, "{body}");
    let chat = json!({"model": id, "messages": [{"role": "user", "content": "hi"}]});
    let (s, body) = call(
        &c,
        M::POST,
        &format!("{base}/v1/chat/completions"),
        Some(&bob),
        Some(chat.clone()),
    )
    .await;
    assert_eq!(s, 404, "{body}");
    assert!(!body.to_string().contains("hi\""), "{body}");
    let (s, _) = call(
        &c,
        M::DELETE,
        &format!("{base}/v1/models/{id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(s, 404);
    // Update (re-register over it) is refused for bob.
    let (s, _) = call(
        &c,
        M::POST,
        &format!("{base}/v1/models"),
        Some(&bob),
        Some(json!({"model_id": "private", "provider_id": "scripted"})),
    )
    .await;
    assert!(s == 409 || s == 403 || s == 404, "{s}");

    // Alice and her team can use it.
    let (s, body) = call(
        &c,
        M::POST,
        &format!("{base}/v1/chat/completions"),
        Some(&carol),
        Some(chat.clone()),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        call(
            &c,
            M::GET,
            &format!("{base}/v1/models/{id}"),
            Some(&alice),
            None
        )
        .await
        .0,
        200
    );

    // Route policy: providers only for admins.
    let (s, body) = call(
        &c,
        M::GET,
        &format!("{base}/v1/providers"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        msg(&body),
        "Access denied: insufficient permissions for route /v1/providers"
    );
    assert_eq!(
        call(
            &c,
            M::GET,
            &format!("{base}/v1/providers"),
            Some(&admin),
            None
        )
        .await
        .0,
        200
    );

    // Still there for alice after bob's attempts; alice deletes it.
    assert_eq!(
        call(
            &c,
            M::DELETE,
            &format!("{base}/v1/models/{id}"),
            Some(&alice),
            None
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &c,
            M::GET,
            &format!("{base}/v1/models/{id}"),
            Some(&alice),
            None
        )
        .await
        .0,
        404
    );
    srv.stop().await;
}

#[tokio::test]
async fn quotas_count_exactly_under_50_concurrent_clients() {
    let idp = Arc::new(Idp::default());
    let key = rsa_key("k");
    *idp.jwks.lock().unwrap() = vec![key.jwk.clone()];
    let idp_url = serve_idp(idp.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let server = format!(
        "  auth:\n    provider_config:\n      type: oauth2_token\n      jwks: {{uri: '{idp_url}/jwks'}}\n  quota:\n    kvstore: {{backend: kv_default, namespace: quota}}\n    anonymous_max_requests: 5\n    authenticated_max_requests: 30\n    period: day\n"
    );
    let stack = scripted_stack(dir.path(), &server).await;
    let srv = start(&stack, ServerOptions::default()).await;
    let c = reqwest::Client::new();
    let alice = token(&key, claims("alice", json!({})));
    // Two tokens for the same principal share one quota (keyed on the principal).
    let alice2 = token(&key, claims("alice", json!({"jti": "second"})));
    let bob = token(&key, claims("bob", json!({})));

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        let url = format!("{}/v1/models", srv.base);
        let t = if i % 2 == 0 {
            alice.clone()
        } else {
            alice2.clone()
        };
        tasks.spawn(async move {
            let resp = c.get(url).bearer_auth(t).send().await.unwrap();
            let retry = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            (status, retry, body)
        });
    }
    let mut ok = 0;
    let mut limited = 0;
    while let Some(r) = tasks.join_next().await {
        let (status, retry, body) = r.unwrap();
        match status {
            200 => ok += 1,
            429 => {
                limited += 1;
                let secs = retry.expect("Retry-After on 429");
                assert!((1..=86_400).contains(&secs));
                assert!(msg(&body).starts_with("Quota exceeded"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((ok, limited), (30, 20), "exactly the limit is served");
    // Another principal has its own count.
    let (s, _) = call(
        &c,
        reqwest::Method::GET,
        &format!("{}/v1/models", srv.base),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(s, 200);
    // Anonymous (public route) clients are counted by IP with the anonymous limit.
    let mut statuses = Vec::new();
    for _ in 0..7 {
        statuses.push(
            call(
                &c,
                reqwest::Method::GET,
                &format!("{}/v1/health", srv.base),
                None,
                None,
            )
            .await
            .0,
        );
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 429, 429]);
    srv.stop().await;
}

/// Two server replicas counting one quota in Redis: 50 concurrent requests of one principal,
/// spread over both, pass exactly the limit.
#[cfg(feature = "postgres-redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_quota_in_redis() {
    if !services::redis_available("replicas_share_one_quota_in_redis") {
        return;
    }
    let idp = Arc::new(Idp::default());
    let key = rsa_key("k");
    *idp.jwks.lock().unwrap() = vec![key.jwk.clone()];
    let idp_url = serve_idp(idp.clone()).await;
    let namespace = format!("quota_{}", services::unique_suffix());
    let server = format!(
        "  auth:\n    provider_config:\n      type: oauth2_token\n      jwks: {{uri: '{idp_url}/jwks'}}\n  quota:\n    kvstore: {{backend: quota_redis, namespace: {namespace}}}\n    anonymous_max_requests: 5\n    authenticated_max_requests: 30\n    period: day\n"
    );
    let replica = |dir: &std::path::Path| {
        let yaml = serving::scripted_config(dir, &server).replace(
            "  backends:\n",
            &format!(
                "  backends:\n    quota_redis: {{type: kv_redis, host: {}, port: {}}}\n",
                services::HOST,
                services::REDIS_PORT
            ),
        );
        async move {
            llama_stack::Stack::builder()
                .config_yaml(yaml)
                .with_provider(serving::scripted_spec())
                .build()
                .await
                .unwrap()
        }
    };
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (replica(d1.path()).await, replica(d2.path()).await);
    let (r1, r2) = (
        start(&s1, ServerOptions::default()).await,
        start(&s2, ServerOptions::default()).await,
    );
    let c = reqwest::Client::new();
    let alice = token(&key, claims("alice", json!({})));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let c = c.clone();
        let base = if i % 2 == 0 { &r1.base } else { &r2.base };
        let url = format!("{base}/v1/models");
        let t = alice.clone();
        tasks.spawn(async move {
            c.get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let mut statuses = Vec::new();
    while let Some(s) = tasks.join_next().await {
        statuses.push(s.unwrap());
    }
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    let limited = statuses.iter().filter(|&&s| s == 429).count();
    assert_eq!((ok, limited), (30, 20), "{statuses:?}");
    // Either replica now refuses alice.
    for base in [&r1.base, &r2.base] {
        let s = c
            .get(format!("{base}/v1/models"))
            .bearer_auth(&alice)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(s, 429);
    }
    r1.stop().await;
    r2.stop().await;
}
