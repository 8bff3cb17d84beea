//! Prometheus metrics: the process-wide recorder, HTTP metrics by matched route, and the
//! `/metrics` page, which adds queue depths and workers online read at scrape time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::ApiError;
use crate::state::AppState;

/// An answer slower than this is logged at INFO.
const SLOW: Duration = Duration::from_secs(1);

/// How often histogram samples are folded into their buckets between scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

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
            // Histogram samples pile up in the recorder until something drains them into
            // their buckets: a scrape does, and so does this, so a process nobody scrapes
            // (or scrapes rarely) does not grow by 8 bytes a request and a job.
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                });
            if let Err(error) = spawned {
                tracing::warn!(%error, "metrics: cannot start the upkeep thread");
            }
            handle
        })
        .clone()
}

/// The header carrying a request's id, in from a proxy and back out in the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A fresh request id: 32 hex digits, a random per-process prefix and a counter, so ids are
/// unique across processes without a system call per request.
fn new_request_id() -> HeaderValue {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let next = NEXT.fetch_add(1, Ordering::Relaxed);
    let id = (u128::from(*prefix) << 64) | u128::from(next);
    let mut hex = [0u8; 32];
    for (i, digit) in hex.iter_mut().enumerate() {
        *digit = b"0123456789abcdef"[((id >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&hex).expect("hex digits are a valid header value")
}

/// The method as a label: the standard ones by name, any other as `other`, so a client
/// inventing methods cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Listener, method and status: with the route, what tells two series apart.
type SeriesKey = (&'static str, &'static str, u16);

/// Series by route, then by the rest of their key (a short list).
type SeriesByRoute = HashMap<Box<str>, Vec<(SeriesKey, Series)>>;

/// The two series of one listener, method, route and status.
struct Series {
    requests: metrics::Counter,
    duration: metrics::Histogram,
}

thread_local! {
    /// Series handles by route, then listener, method and status, so a request does not
    /// build a metric's key (label strings, hashing, the registry's lock) each time. Each
    /// thread keeps its own handles onto the same series, so lookups take no lock; the set
    /// is bounded by routes x methods x statuses.
    static SERIES: RefCell<SeriesByRoute> =
        RefCell::new(HashMap::new());
}

fn record(listener: &'static str, method: &'static str, route: &str, status: u16, seconds: f64) {
    SERIES.with_borrow_mut(|series| {
        if !series.contains_key(route) {
            series.insert(route.into(), Vec::new());
        }
        let Some(by_route) = series.get_mut(route) else {
            return;
        };
        let key = (listener, method, status);
        let index = match by_route.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                let route = route.to_owned();
                by_route.push((
                    key,
                    Series {
                        requests: metrics::counter!("conveyor_http_requests_total", "listener" => listener, "method" => method, "route" => route.clone(), "status" => status.to_string()),
                        duration: metrics::histogram!("conveyor_http_request_duration_seconds", "listener" => listener, "method" => method, "route" => route),
                    },
                ));
                by_route.len() - 1
            }
        };
        let series = &by_route[index].1;
        series.requests.increment(1);
        series.duration.record(seconds);
    });
}

/// The middleware every listener runs (see [`crate::observed`]), all in one layer because
/// each layer costs every request a boxed future and a service clone:
/// - refuses text no store can keep (a NUL in the URL or a JSON or form body, see
///   [`crate::text`]);
/// - gives the request an id (`x-request-id`, a proxy's kept when sane) that every line
///   logged meanwhile carries, and echoes it in the response;
/// - bounds the body to `body_limit` bytes for the extractors that read it (a larger body is
///   a 413);
/// - turns a panic in the handler into a 500 problem, counted and logged like any answer;
/// - bounds the time to `timeout` unless it is an event stream (a route ending in `/events`,
///   which lasts as long as its client watches);
/// - counts and times it by listener, method, matched route and status, and logs one line
///   (target `conveyor::http`, so `RUST_LOG=conveyor::http=warn` silences it). The route
///   template, not the raw path, keeps the label set bounded.
pub async fn observe(
    listener: &'static str,
    limits: Limits,
    mut request: Request,
    next: Next,
) -> Response {
    let client = limits
        .proxies
        .resolve(crate::client::peer(request.extensions()), request.headers());
    request.extensions_mut().insert(client);
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let method = method_label(request.method());
    let request_id = request
        .headers()
        .get(REQUEST_ID)
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.to_str().is_ok())
        .cloned()
        .unwrap_or_else(new_request_id);
    let id = request_id.to_str().unwrap_or_default();
    let span = tracing::info_span!(target: "conveyor::http", "request", request_id = %id);
    let started = Instant::now();
    // `Next` is always ready, so calling it through the limit's service skips `poll_ready`.
    let mut limited = DefaultBodyLimit::max(limits.body).layer(next);
    let body_limit = limits.body;
    let run = CURRENT_ID.scope(
        request_id.clone(),
        async move {
            // Text no store can keep is refused here, for every listener and route alike
            // (inside the time bound: the body is read whole for it).
            let request = match crate::text::check_uri(&request) {
                Ok(()) => crate::text::check_body(request, body_limit).await,
                Err(refused) => Err(refused),
            };
            match request {
                Err(refused) => Ok(Ok(refused.into_response())),
                Ok(request) => AssertUnwindSafe(limited.call(request)).catch_unwind().await,
            }
        }
        .instrument(span),
    );
    let ran = if route.ends_with("/events") {
        Some(run.await)
    } else {
        tokio::time::timeout(limits.time, run).await.ok()
    };
    let mut response = match ran {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(never))) => match never {},
        Some(Err(panic)) => {
            let message = conveyor_queue::handler::panic_message(panic.as_ref());
            ApiError::internal(&format_args!("the handler panicked: {message}")).into_response()
        }
        None => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the request took longer than {:?}", limits.time),
        )
        .into_response(),
    };
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    // One line per request at DEBUG (a busy server would flood INFO); a server error at
    // WARN and a slow answer at INFO, so they show at the default level.
    macro_rules! request_line {
        ($level:expr, $message:literal) => {
            tracing::event!(
                target: "conveyor::http",
                $level,
                request_id = id,
                client_ip = %client.ip,
                listener,
                method,
                route,
                status,
                latency_ms = elapsed.as_secs_f64() * 1000.0,
                $message
            )
        };
    }
    if status >= 500 {
        request_line!(tracing::Level::WARN, "request failed");
    } else if elapsed >= SLOW && !route.ends_with("/events") {
        request_line!(tracing::Level::INFO, "slow request");
    } else {
        request_line!(tracing::Level::DEBUG, "request");
    }
    record(listener, method, route, status, elapsed.as_secs_f64());
    response.headers_mut().insert(REQUEST_ID, request_id);
    response
}

/// What [`observe`] bounds a request to, and whose forwarded headers it believes.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The body's size in bytes.
    pub body: usize,
    /// The time to an answer (event streams are spared).
    pub time: Duration,
    /// Proxies whose `X-Forwarded-*` headers name the client.
    pub proxies: crate::client::TrustedProxies,
}

tokio::task_local! {
    static CURRENT_ID: HeaderValue;
}

/// The id of the request being handled on this task (empty outside [`observe`]), for error
/// pages that show it to the user so that the log line can be found.
pub fn current_request_id() -> String {
    CURRENT_ID
        .try_with(|id| id.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_hex_digits_and_distinct() {
        let (a, b) = (new_request_id(), new_request_id());
        for id in [&a, &b] {
            let id = id.to_str().unwrap();
            assert_eq!(id.len(), 32);
            assert!(
                id.bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
        }
        assert_ne!(a, b);
        // The prefix is per process, the counter follows it.
        assert_eq!(a.to_str().unwrap()[..16], b.to_str().unwrap()[..16]);
    }

    #[tokio::test]
    async fn a_panicking_handler_is_a_500_problem_and_a_slow_one_a_503() {
        use tower::ServiceExt;
        let router = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("boom");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late"
                }),
            );
        let limits = Limits {
            body: 1024,
            time: Duration::from_millis(50),
            proxies: crate::client::TrustedProxies::default(),
        };
        let app = crate::observed(router, "test", limits);
        for (path, status) in [
            ("/boom", StatusCode::INTERNAL_SERVER_ERROR),
            ("/slow", StatusCode::SERVICE_UNAVAILABLE),
        ] {
            let request = axum::http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let response = app.clone().oneshot(request).await.unwrap();
            assert_eq!(response.status(), status, "{path}");
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json"
            );
            assert_eq!(response.headers()[REQUEST_ID].len(), 32, "the id is echoed");
        }
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"FROBNICATE").unwrap()),
            "other"
        );
    }
}
