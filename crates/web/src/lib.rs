//! # conveyor-web: the HTTP layer shared by every Conveyor app
//!
//! ## Layout
//! - [`app`]: [`app::App`], the interface through which each app brings its kinds,
//!   schedules, routes, listeners and background tasks to a process.
//! - [`error`]: [`ApiError`], the one error type, rendered as `application/problem+json`.
//! - [`auth`]: the API tokens, the dashboard's session cookie, the gates.
//! - [`client`]: the client's address and public origin past trusted proxies.
//! - [`keys`]: API keys for third parties, checked and throttled per key.
//! - [`limit`]: per-client rate limiting.
//! - [`page`]: [`page::PageError`], what a dashboard page answers when it fails.
//! - [`sse`]: the one server-sent-events loop (poll, send what changed).
//! - [`openapi`]: the statuses every operation can answer, added to the document.
//! - [`text`]: text no store can keep (NUL), refused before any handler.
//! - [`fail`]: errors of commands and set-up steps, with what was being done.
//! - [`extract`]: `Json`, `Path`, `Query` whose rejections are problems.
//! - [`state`]: [`AppState`] and [`WebSettings`].
//! - [`jobs`]: the general job API (`/api/jobs`, `/api/queues`, `/api/workers`, events).
//! - [`metrics`]: the Prometheus recorder, HTTP metrics by matched route, `/metrics`.
//!
//! [`router_for`] assembles the API, its OpenAPI document (`/api/openapi.json`), Swagger UI
//! (`/api/docs`, served from the binary), the probes and the middleware from a [`Surface`]:
//! the apps' routes and pages, each either public or behind the token gate.
//! [`serve`] runs a router on a bound listener until a shutdown future.

pub mod app;
pub mod auth;
pub mod client;
pub mod error;
pub mod extract;
pub mod fail;
pub mod jobs;
pub mod keys;
pub mod limit;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod sse;
pub mod state;
pub mod text;

/// Installs the TLS crypto provider (ring) that every HTTP client here needs before it is
/// built (reqwest and object_store use rustls without a default provider, which spares the
/// build aws-lc). Call it before building a client; later calls do nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

pub use error::ApiError;
pub use state::{AppState, WebSettings};

#[derive(OpenApi)]
#[openapi(
    info(title = "Conveyor", description = "Durable jobs on SQLite or PostgreSQL: enqueue, watch, cancel, retry."),
    tags(
        (name = "jobs", description = "Jobs and their events"),
        (name = "queues", description = "Queues: counts and concurrency"),
        (name = "workers", description = "Live worker processes"),
    )
)]
struct ApiDoc;

/// The whole HTTP surface: `extra` (the apps' routes, with the OpenAPI paths they declare)
/// behind the token gate, merged with the job API, docs, probes and, unless served
/// elsewhere, `/metrics`.
pub fn router(state: AppState, extra: OpenApiRouter<AppState>, metrics_here: bool) -> Router {
    let surface = Surface {
        guarded: extra,
        ..Surface::default()
    };
    router_for(state, surface, metrics_here)
}

/// What the apps add to the main listener, sorted by who may call it.
pub struct Surface {
    /// Routes in the OpenAPI document that anyone may call (the seeds' own client-facing
    /// routes, and routes that check credentials of their own).
    pub public: OpenApiRouter<AppState>,
    /// Routes in the OpenAPI document behind the token gate.
    pub guarded: OpenApiRouter<AppState>,
    /// HTML pages behind the gate (a browser without a session is sent to `/login`).
    pub pages: Router<AppState>,
    /// HTML pages and assets anyone may fetch (the login page, style sheets).
    pub open_pages: Router<AppState>,
}

impl Default for Surface {
    fn default() -> Self {
        Self {
            public: OpenApiRouter::new(),
            guarded: OpenApiRouter::new(),
            pages: Router::new(),
            open_pages: Router::new(),
        }
    }
}

/// The main listener's router: the job API and `surface.guarded` behind the token gate,
/// `surface.public` open, the dashboard's pages, the docs and `/metrics` (when
/// `metrics_here`) behind the gate, the probes open; all under one middleware: request id,
/// client address, body and time bounds, panic guard, metrics by route, request log.
pub fn router_for(state: AppState, surface: Surface, metrics_here: bool) -> Router {
    // Installed before any request, or the first requests' metrics would be lost.
    metrics::handle();
    let auth = state.settings.auth.clone();
    let api_gate = axum::middleware::from_fn_with_state(auth.clone(), auth::require);
    let page_gate = axum::middleware::from_fn_with_state(auth, auth::require_page);
    let guarded = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api", jobs::router())
        .merge(surface.guarded)
        .route_layer(api_gate.clone());
    let (guarded, mut openapi) = guarded.split_for_parts();
    openapi::complete(&mut openapi, true);
    let (public, mut public_doc) = surface.public.split_for_parts();
    openapi::complete(&mut public_doc, false);
    openapi.merge(public_doc);
    let api = guarded.merge(public);
    let timeout = state.settings.request_timeout;
    let mut gated = Router::new()
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        .route_layer(api_gate.clone());
    if metrics_here {
        gated = gated.route("/metrics", get(metrics::render).route_layer(api_gate));
    }
    let mut app = api
        .merge(gated)
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(surface.open_pages);
    // axum refuses a route layer on a router without routes.
    if surface.pages.has_routes() {
        app = app.merge(surface.pages.route_layer(page_gate));
    }
    // The fallback goes in before the middleware, so unknown paths are counted and logged too.
    let app = app.fallback(|| async { ApiError::not_found("no such route") });
    let limits = metrics::Limits {
        body: state.settings.body_limit,
        time: timeout,
        proxies: state.settings.proxies.clone(),
    };
    observed(app, "api", limits).with_state(state)
}

/// Wraps `router` in what every listener runs, [`metrics::observe`]: request id, body and
/// time bounds, a panic guard that answers 500, metrics and one log line per request.
pub fn observed<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    listener: &'static str,
    limits: metrics::Limits,
) -> Router<S> {
    router.layer(axum::middleware::from_fn(move |request, next| {
        metrics::observe(listener, limits.clone(), request, next)
    }))
}

/// `/metrics` and the probes, for a separate internal listener (`--metrics-addr`), as the KEDA
/// seed does on 9001.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::render))
        // Probes for processes without the HTTP role (workers).
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => Ok("ready"),
        Err(error) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("database unreachable: {error}"),
        )),
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets in-flight requests end.
///
/// # Errors
/// When the listener fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
