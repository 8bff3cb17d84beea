//! Prometheus metrics: the process-wide recorder, HTTP metrics by matched route, and the
//! `/metrics` page, which adds queue depths and workers online read at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// The process's Prometheus recorder, installed on first use.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let seconds = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                300.0, 900.0, 3600.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets(&seconds)
                .expect("the bucket list is not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder (a test harness's) may be installed first; then ours only
            // renders what it saw, which is nothing. Not worth failing for.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Middleware for the job API's listener: [`track_on`] labelled `api`.
pub async fn track(request: Request, next: Next) -> Response {
    track_on("api", request, next).await
}

/// Middleware: counts and times requests, labelled by listener, method, matched route and
/// status, and logs one structured line per request (target `conveyor::http`, so
/// `RUST_LOG=conveyor::http=warn` silences it). The route template, not the raw path, keeps
/// the label set bounded.
pub async fn track_on(listener: &'static str, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        target: "conveyor::http",
        listener,
        method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    metrics::counter!("conveyor_http_requests_total", "listener" => listener, "method" => method.clone(), "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("conveyor_http_request_duration_seconds", "listener" => listener, "method" => method, "route" => route)
        .record(elapsed.as_secs_f64());
    response
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    match state.store.queue_counts().await {
        Ok(queues) => {
            for queue in queues {
                for (job_state, count) in queue.by_state {
                    metrics::gauge!("conveyor_queue_jobs", "queue" => queue.queue.clone(), "state" => job_state.as_str())
                        .set(count as f64);
                }
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot read queue counts"),
    }
    match state
        .store
        .workers(state.settings.worker_seen_within_ms)
        .await
    {
        Ok(workers) => metrics::gauge!("conveyor_workers_online").set(workers.len() as f64),
        Err(error) => tracing::warn!(%error, "metrics: cannot read workers"),
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}
