//! The request pipeline in front of every handler, outermost first: request id
//! (`X-Request-Id` in and out) and tracing span → authentication (every route but the
//! public ones, unknown paths included) → quota (keyed on the authenticated principal) →
//! route policy → client version check → route.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use llama_stack_core::access::RoutePolicy;
use llama_stack_core::api::inspect::LLAMA_STACK_VERSION;
use llama_stack_core::{Error, RequestContext};
use tracing::Instrument;

use super::auth::{unauthenticated, AuthRequest, Authenticator};
use super::error::ApiError;
use super::extract::Caller;
use super::quota::Quota;

/// Header carrying the request id, in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request (from `X-Request-Id`, or generated).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Everything the gate needs.
pub(crate) struct Gate {
    pub(crate) auth: Option<Arc<dyn Authenticator>>,
    pub(crate) route_policy: Arc<RoutePolicy>,
    pub(crate) quota: Option<Quota>,
    pub(crate) public: HashSet<(Method, String)>,
    pub(crate) version_check: bool,
}

fn valid_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

/// Assigns the request id, opens the request's span and echoes the id on the response.
pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(valid_request_id)
        .unwrap_or_else(|| RequestContext::anonymous().into_request_id());
    let header = HeaderValue::from_str(&id).ok();
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
        principal = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestId(id));
    let mut response = next.run(req).instrument(span.clone()).await;
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    if let Some(v) = header {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    response
}

fn auth_request(req: &Request) -> AuthRequest {
    let mut headers = BTreeMap::new();
    for (name, value) in req.headers() {
        if name == axum::http::header::AUTHORIZATION {
            continue;
        }
        if let Ok(v) = value.to_str() {
            headers.insert(name.as_str().to_owned(), v.to_owned());
        }
    }
    let mut params: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(q) = req.uri().query() {
        if let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(q) {
            for (k, v) in pairs {
                params.entry(k).or_default().push(v);
            }
        }
    }
    AuthRequest {
        path: req.uri().path().to_owned(),
        headers,
        params,
    }
}

/// The bearer token of `req` and what the provider may see of the request (taken
/// before any await: the request itself is not `Sync`).
fn credentials(auth: &dyn Authenticator, req: &Request) -> Result<(String, AuthRequest), Error> {
    let Some(header) = req.headers().get(axum::http::header::AUTHORIZATION) else {
        return Err(unauthenticated(auth.missing_message()));
    };
    let token = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthenticated("Invalid Authorization header format"))?;
    Ok((token.to_owned(), auth_request(req)))
}

/// `X-LlamaStack-Client-Version` with another major.minor than ours → 426.
fn check_client_version(req: &Request) -> Option<Response> {
    let v = req
        .headers()
        .get("x-llamastack-client-version")?
        .to_str()
        .ok()?;
    let major_minor = |s: &str| {
        let mut it = s.split('.');
        (it.next().map(str::to_owned), it.next().map(str::to_owned))
    };
    if major_minor(v) == major_minor(LLAMA_STACK_VERSION) {
        return None;
    }
    let body = serde_json::json!({"error": {"message": format!(
        "Client version {v} is not compatible with server version {LLAMA_STACK_VERSION}. Please update your client."
    )}});
    Some((axum::http::StatusCode::UPGRADE_REQUIRED, axum::Json(body)).into_response())
}

/// Authentication, quota, route policy and the client version check.
pub(crate) async fn gate(State(gate): State<Arc<Gate>>, mut req: Request, next: Next) -> Response {
    let public = gate
        .public
        .contains(&(req.method().clone(), req.uri().path().to_owned()));
    let user = match (&gate.auth, public) {
        (Some(auth), false) => {
            let checked = match credentials(auth.as_ref(), &req) {
                Ok((token, info)) => auth.authenticate(&token, &info).await,
                Err(e) => Err(e),
            };
            match checked {
                Ok(user) => Some(user),
                Err(e) => return ApiError(e).into_response(),
            }
        }
        _ => None,
    };
    if let Some(user) = &user {
        tracing::Span::current().record("principal", user.principal.as_str());
    }
    if let Some(quota) = &gate.quota {
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        if let Err(e) = quota.check(user.as_ref(), ip).await {
            return ApiError(e).into_response();
        }
    }
    if let Err(e) = gate.route_policy.check(user.as_ref(), req.uri().path()) {
        return ApiError(e).into_response();
    }
    if gate.version_check {
        if let Some(resp) = check_client_version(&req) {
            return resp;
        }
    }
    req.extensions_mut().insert(Caller(user));
    next.run(req).await
}
