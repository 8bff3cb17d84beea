//! # conveyor-web: the HTTP layer shared by every Conveyor app
//!
//! ## Layout
//! - [`error`]: [`ApiError`], the one error type, rendered as `application/problem+json`.
//! - [`extract`]: `Json`, `Path`, `Query` whose rejections are problems.
//! - [`state`]: [`AppState`] and [`WebSettings`].
//! - [`jobs`]: the general job API (`/api/jobs`, `/api/queues`, `/api/workers`, events).
//! - [`metrics`]: the Prometheus recorder, HTTP metrics by matched route, `/metrics`.
//!
//! [`router`] assembles the API, its OpenAPI document (`/api/openapi.json`), Swagger UI
//! (`/api/docs`, served from the binary), the probes and the middleware; apps merge their own
//! routers into it. [`serve`] runs a router on a bound listener until a shutdown future.

pub mod error;
pub mod extract;
pub mod jobs;
pub mod metrics;
pub mod state;

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
/// merged with the job API, docs, probes and, unless served elsewhere, `/metrics`.
pub fn router(state: AppState, extra: OpenApiRouter<AppState>, metrics_here: bool) -> Router {
    router_with_pages(state, extra, Router::new(), metrics_here)
}

/// [`router`] with `pages` too (the dashboard's HTML routes, outside the OpenAPI document),
/// under the same middleware: request id, body and time bounds, panic guard, metrics by
/// route, request log.
pub fn router_with_pages(
    state: AppState,
    extra: OpenApiRouter<AppState>,
    pages: Router<AppState>,
    metrics_here: bool,
) -> Router {
    // Installed before any request, or the first requests' metrics would be lost.
    metrics::handle();
    let api = OpenApiRouter::with_openapi(ApiDoc::openapi()).nest("/api", jobs::router());
    let (api, openapi) = api.merge(extra).split_for_parts();
    let timeout = state.settings.request_timeout;
    let mut app = api
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", openapi))
        .merge(pages);
    if metrics_here {
        app = app.route("/metrics", get(metrics::render));
    }
    // The fallback goes in before the middleware, so unknown paths are counted and logged too.
    let app = app.fallback(|| async { ApiError::not_found("no such route") });
    let limits = metrics::Limits {
        body: state.settings.body_limit,
        time: timeout,
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
        metrics::observe(listener, limits, request, next)
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
