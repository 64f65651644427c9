//! The HTTP server (feature `server`): Llama Stack's and OpenAI's wire APIs over the same
//! [`Stack`] the library hands out, so existing clients (the `openai` SDKs with
//! `base_url=http://host:8321/v1`, `llama-stack-client`) work unchanged.
//!
//! ```no_run
//! # async fn run() -> llama_stack::Result<()> {
//! use llama_stack::server::{Server, ServerOptions};
//! let stack = llama_stack::Stack::builder().distribution("starter").build().await?;
//! let server = Server::bind(&stack, "127.0.0.1:8321".parse().unwrap(), ServerOptions::default()).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Handlers are thin: extract, build the [`RequestContext`](crate::RequestContext) from the
//! authenticated user, call the API trait, serialize. Routes are data ([`routes::table`]);
//! `/openapi.json` is generated from the same table and the types' JSON schemas.

pub mod auth;
mod error;
mod extract;
mod idle_poll;
mod middleware;
pub mod openapi;
pub mod quota;
pub mod routes;
mod sse;
mod tls;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, DefaultBodyLimit};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use llama_stack_core::provider::StorageResolver;
use llama_stack_core::{Error, Result};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use error::ApiError;
pub use extract::{Ctx, JsonBody, QueryArgs};
pub use middleware::{RequestId, REQUEST_ID_HEADER};

use crate::config::CorsConfig;
use crate::Stack;

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest accepted request body in bytes (default 16 MiB); larger → 413.
    pub body_limit: usize,
    /// Time a client has to send its request headers (default 30 s); slower connections
    /// are closed (slow-loris protection).
    pub header_read_timeout: Duration,
    /// How long in-flight requests and streams may run on after shutdown begins
    /// (default 30 s).
    pub shutdown_grace: Duration,
    /// How long a connection keeps reading for its next request after answering, before its
    /// task sleeps; `None` takes `server.idle_poll_us` from the config, else 50 µs.
    /// `Some(Duration::ZERO)` turns idle polling off.
    ///
    /// It runs only on the server's one open connection while no request is in flight, and
    /// not for a client that took longer than this to send its previous request: a client
    /// that sends its next request at once is answered without waking an idle CPU, at the
    /// cost of at most this much CPU time per response.
    pub idle_poll: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            body_limit: 16 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(30),
            idle_poll: None,
        }
    }
}

fn cors_layer(policy: &CorsConfig) -> Result<CorsLayer> {
    let parse_method = |m: &String| {
        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
            .map_err(|_| Error::config(format!("server.cors.allow_methods: invalid method '{m}'")))
    };
    let parse_header = |h: &String| {
        HeaderName::from_bytes(h.as_bytes())
            .map_err(|_| Error::config(format!("server.cors: invalid header name '{h}'")))
    };
    let any_origin = policy.allow_origins.iter().any(|o| o == "*");
    if any_origin && policy.allow_credentials {
        return Err(Error::config(
            "server.cors: allow_origins '*' cannot be combined with allow_credentials",
        ));
    }
    let exact: Vec<HeaderValue> = policy
        .allow_origins
        .iter()
        .filter(|o| *o != "*")
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    let regex = match &policy.allow_origin_regex {
        Some(r) => Some(
            regex::Regex::new(&format!("^(?:{r})$"))
                .map_err(|e| Error::config(format!("server.cors.allow_origin_regex: {e}")))?,
        ),
        None => None,
    };
    let origin = AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        if any_origin || exact.iter().any(|o| o == origin) {
            return true;
        }
        match (&regex, origin.to_str()) {
            (Some(re), Ok(o)) => re.is_match(o),
            _ => false,
        }
    });
    let methods = policy
        .allow_methods
        .iter()
        .filter(|m| *m != "*")
        .map(parse_method)
        .collect::<Result<Vec<_>>>()?;
    let mut layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_credentials(policy.allow_credentials)
        .max_age(Duration::from_secs(u64::from(policy.max_age)));
    layer = if policy.allow_methods.iter().any(|m| m == "*") {
        layer.allow_methods(tower_http::cors::AllowMethods::mirror_request())
    } else {
        layer.allow_methods(methods)
    };
    layer = if policy.allow_headers.iter().any(|h| h == "*") {
        layer.allow_headers(tower_http::cors::AllowHeaders::mirror_request())
    } else {
        layer.allow_headers(
            policy
                .allow_headers
                .iter()
                .map(parse_header)
                .collect::<Result<Vec<_>>>()?,
        )
    };
    layer = layer.expose_headers(
        policy
            .expose_headers
            .iter()
            .map(parse_header)
            .collect::<Result<Vec<_>>>()?,
    );
    Ok(layer)
}

/// The axum application for `stack`: every route of [`routes::table`], `/openapi.json`,
/// authentication, quotas, route policy, CORS, body limit and request ids, as the stack's
/// `server` config says.
pub async fn app(stack: &Stack, options: &ServerOptions) -> Result<Router> {
    let server = &stack.config().server;
    let auth = auth::from_config(
        server
            .auth
            .as_ref()
            .and_then(|a| a.provider_config.as_ref()),
    )?;
    let quota = match &server.quota {
        Some(q) => {
            let store = stack
                .storage()
                .kv_store(&q.kvstore.backend, &q.kvstore.namespace)
                .await
                .map_err(|e| e.with_prefix("server.quota.kvstore"))?;
            Some(quota::Quota::new(store, q, auth.is_some()))
        }
        None => None,
    };

    let table = routes::table();
    let public: HashSet<(Method, String)> = table
        .iter()
        .filter(|r| r.public)
        .filter_map(|r| {
            Method::from_bytes(r.method.as_bytes())
                .ok()
                .map(|m| (m, r.path.to_owned()))
        })
        .collect();
    // Built on the first request for it: generating every schema at start-up would cost
    // start-up time and keep the document (and the code that builds it) resident.
    let doc: Arc<std::sync::OnceLock<serde_json::Value>> = Arc::new(std::sync::OnceLock::new());
    let state = routes::AppState::new(stack);

    let mut router: Router<routes::AppState> = Router::new();
    for route in table {
        let path = route.axum_path();
        router = router.route(&path, route.handler);
    }
    let gate = Arc::new(middleware::Gate {
        auth,
        route_policy: stack.route_policy().clone(),
        quota,
        public,
        version_check: std::env::var_os("LLAMA_STACK_DISABLE_VERSION_CHECK").is_none(),
    });
    let mut app = router
        .route(
            "/openapi.json",
            get(move || {
                let doc = doc.clone();
                async move {
                    Json(
                        doc.get_or_init(|| openapi::document(&routes::table()))
                            .clone(),
                    )
                }
            }),
        )
        .fallback(|| async { error::detail(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            error::detail(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
        .with_state(state)
        .layer(axum::middleware::from_fn_with_state(gate, middleware::gate))
        .layer(DefaultBodyLimit::max(options.body_limit));
    if let Some(policy) = server.cors_policy() {
        app = app.layer(cors_layer(&policy)?);
    }
    Ok(app.layer(axum::middleware::from_fn(middleware::request_id)))
}

/// A bound server: the listener plus the application.
pub struct Server {
    listener: TcpListener,
    app: Router,
    options: ServerOptions,
    tls: Option<tokio_rustls::TlsAcceptor>,
    idle_poll: Duration,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Builds the application for `stack` and binds `addr` (port 0 = any free port).
    pub async fn bind(stack: &Stack, addr: SocketAddr, options: ServerOptions) -> Result<Server> {
        let tls = tls::acceptor(&stack.config().server)?;
        let idle_poll = options
            .idle_poll
            .unwrap_or_else(|| stack.config().server.idle_poll());
        let app = app(stack, &options).await?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| Error::unavailable(format!("cannot listen on {addr}: {e}")))?;
        Ok(Server {
            listener,
            app,
            options,
            tls,
            idle_poll,
        })
    }

    /// Whether the server speaks HTTPS (`server.tls_certfile` and `tls_keyfile` set).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until `shutdown` completes, then stops accepting connections and lets
    /// in-flight requests and streams finish (up to [`ServerOptions::shutdown_grace`]).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let Server {
            listener,
            app,
            options,
            tls,
            idle_poll,
        } = self;
        let mut builder = Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_read_timeout);
        builder.http2().timer(TokioTimer::new());
        let graceful = GracefulShutdown::new();
        let mut connections = JoinSet::new();
        let activity = Arc::<idle_poll::Activity>::default();
        let count_in_flight = !idle_poll.is_zero();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    let stream = idle_poll::IdlePoll::new(stream, idle_poll, activity.clone());
                    let app = app.clone();
                    let activity = activity.clone();
                    let service = tower::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnectInfo(peer));
                        // With idle polling, the request counts as in flight until its
                        // response body ends, so that no connection polls meanwhile.
                        let in_flight = count_in_flight.then(|| activity.enter());
                        let response = app.clone().oneshot(req);
                        async move {
                            let response = response.await?;
                            Ok::<_, std::convert::Infallible>(match in_flight {
                                Some(guard) => response.map(|body| idle_poll::GuardedBody::wrap(body, guard)),
                                None => response,
                            })
                        }
                    });
                    let service = TowerToHyperService::new(service);
                    match &tls {
                        None => {
                            let conn = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .into_owned();
                            let conn = graceful.watch(conn);
                            connections.spawn(async move {
                                if let Err(e) = conn.await {
                                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                                }
                            });
                        }
                        Some(acceptor) => {
                            // The handshake runs in the connection's task, bounded like a
                            // request head, so a slow client never stalls accepting others.
                            let (acceptor, builder, watcher) =
                                (acceptor.clone(), builder.clone(), graceful.watcher());
                            let handshake_timeout = options.header_read_timeout;
                            connections.spawn(async move {
                                let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                                    Ok(Ok(s)) => s,
                                    Ok(Err(e)) => {
                                        tracing::debug!(error = %e, %peer, "TLS handshake failed");
                                        return;
                                    }
                                    Err(_) => {
                                        tracing::debug!(%peer, "TLS handshake timed out");
                                        return;
                                    }
                                };
                                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                                if let Err(e) = watcher.watch(conn).await {
                                    tracing::debug!(error = %e, %peer, "connection ended with an error");
                                }
                            });
                        }
                    }
                }
                () = &mut shutdown => break,
            }
            while connections.try_join_next().is_some() {}
        }
        drop(listener);
        tracing::info!("shutting down: waiting for in-flight requests");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(options.shutdown_grace) => {
                tracing::warn!("shutdown grace period over; closing remaining connections");
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}
