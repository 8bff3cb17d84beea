//! Prometheus metrics: the process-wide recorder, HTTP metrics by matched route, and the
//! `/metrics` page, which adds queue depths and workers online read at scrape time.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing::Instrument;

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

/// The header carrying a request's id, in from a proxy and back out in the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A fresh request id: 32 hex digits, a random per-process prefix and a counter, so ids are
/// unique across processes without a system call per request.
fn new_request_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    format!("{prefix:016x}{:016x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Middleware: counts and times requests, labelled by listener, method, matched route and
/// status, and logs one structured line per request with its id (`x-request-id`) (target `conveyor::http`, so
/// `RUST_LOG=conveyor::http=warn` silences it). The route template, not the raw path, keeps
/// the label set bounded.
pub async fn track_on(listener: &'static str, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    // A proxy's request id is kept (bounded, printable); otherwise one is made here.
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(new_request_id, str::to_owned);
    // Every line logged while the request runs carries the id (its span's field).
    let span = tracing::info_span!(target: "conveyor::http", "request", request_id = %request_id);
    let started = Instant::now();
    let mut response = next.run(request).instrument(span).await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    tracing::info!(
        target: "conveyor::http",
        request_id,
        listener,
        method,
        route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request"
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
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
        Ok(workers) => {
            metrics::gauge!("conveyor_workers_online").set(workers.len() as f64);
            // Slots per queue over the workers online: with conveyor_queue_jobs{state=
            // "running"} it tells how close a queue is to its capacity.
            let mut slots = std::collections::BTreeMap::<String, f64>::new();
            for worker in &workers {
                if let Some(queues) = worker.queues.as_object() {
                    for (queue, n) in queues {
                        *slots.entry(queue.clone()).or_default() += n.as_f64().unwrap_or(0.0);
                    }
                }
            }
            for (queue, n) in slots {
                metrics::gauge!("conveyor_queue_slots", "queue" => queue).set(n);
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: cannot read workers"),
    }
    if let Some(max) = state.settings.workers_max {
        metrics::gauge!("conveyor_workers_max").set(f64::from(max));
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle().render(),
    )
        .into_response()
}
