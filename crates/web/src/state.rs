//! [`AppState`]: what every handler can reach.

use std::sync::Arc;
use std::time::Duration;

use conveyor_queue::{Registry, Store};
use tokio::sync::Semaphore;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// How often an event stream re-reads its job (default 250 ms).
    pub event_interval: Duration,
    /// Most event streams open at once (default 1,024).
    pub max_streams: usize,
    /// Longest a request other than an event stream may take (default 30 s).
    pub request_timeout: Duration,
    /// Largest request body (default 2 MiB: job arguments may take 1 MiB).
    pub body_limit: usize,
    /// A worker counts as online if seen within this many ms (default 60,000).
    pub worker_seen_within_ms: i64,
    /// The deployment's most `work` processes (its autoscaler's maximum), if declared;
    /// `/metrics` shows it as `conveyor_workers_max`.
    pub workers_max: Option<u32>,
    /// The tokens that open the guarded routes (none: open).
    pub auth: crate::auth::Auth,
    /// Proxies whose forwarded headers name the client.
    pub proxies: crate::client::TrustedProxies,
}

impl Default for WebSettings {
    fn default() -> Self {
        Self {
            event_interval: Duration::from_millis(250),
            max_streams: 1024,
            request_timeout: Duration::from_secs(30),
            body_limit: 2 << 20,
            worker_seen_within_ms: 60_000,
            workers_max: None,
            auth: crate::auth::Auth::open(),
            proxies: crate::client::TrustedProxies::default(),
        }
    }
}

/// Shared by every handler; one `Arc`, because axum clones the state for every request
/// (a clone per field showed up in `perf` under load).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
pub struct Shared {
    /// The job store.
    pub store: Store,
    /// The kinds jobs may have, to refuse unknown ones before storing them.
    pub registry: Registry,
    /// Settings.
    pub settings: WebSettings,
    /// Permits for open event streams.
    pub streams: Arc<Semaphore>,
    /// The queues live workers serve, and when that was read (at most once a second).
    served: std::sync::Mutex<(Option<std::time::Instant>, Vec<String>)>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// State over `store`, accepting the kinds of `registry`.
    pub fn new(store: Store, registry: Registry, settings: WebSettings) -> Self {
        Self(Arc::new(Shared {
            streams: Arc::new(Semaphore::new(settings.max_streams)),
            store,
            registry,
            settings,
            served: std::sync::Mutex::new((None, Vec::new())),
        }))
    }

    /// Whether a live worker serves `queue`, from a list read at most once a second (so
    /// the answer may lag a worker's start or end by that much).
    ///
    /// # Errors
    /// The store's.
    pub async fn is_served(&self, queue: &str) -> Result<bool, conveyor_queue::Error> {
        {
            let served = self.served.lock().expect("not poisoned");
            if let (Some(at), queues) = &*served
                && at.elapsed() < std::time::Duration::from_secs(1)
            {
                return Ok(queues.iter().any(|q| q == queue));
            }
        }
        let workers = self
            .store
            .workers(self.settings.worker_seen_within_ms)
            .await?;
        let mut queues: Vec<String> = workers
            .iter()
            .filter_map(|w| w.queues.as_object())
            .flat_map(|q| q.keys().cloned())
            .collect();
        queues.sort_unstable();
        queues.dedup();
        let answer = queues.iter().any(|q| q == queue);
        *self.served.lock().expect("not poisoned") = (Some(std::time::Instant::now()), queues);
        Ok(answer)
    }

    /// A permit for one event stream, held for as long as the stream is open.
    ///
    /// # Errors
    /// 503 when [`WebSettings::max_streams`] streams are open.
    pub fn stream_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, crate::ApiError> {
        self.streams.clone().try_acquire_owned().map_err(|_| {
            crate::ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "too many event streams open; retry later",
            )
        })
    }
}
