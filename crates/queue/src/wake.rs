//! Wake-ups: how an idle worker learns at once that its queue has work, and a running job
//! that it was cancelled, instead of waiting for the next poll.
//!
//! In-process, [`Wake`] holds one [`Notify`] per queue and a broadcast of cancelled job ids.
//! Across processes on PostgreSQL, writers send `NOTIFY` on the store's channel (`q:<queue>`
//! or `c:<job id>`) inside their transaction, so it is delivered only if they commit;
//! [`listen`] forwards those to the local [`Wake`]. SQLite has no cross-process signal:
//! there a separate worker process falls back to polling.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

use crate::store::{Db, Store};

/// In-process wake-up signals of one store.
pub(crate) struct Wake {
    queues: Mutex<HashMap<String, Arc<Notify>>>,
    cancelled: broadcast::Sender<i64>,
}

impl Default for Wake {
    fn default() -> Self {
        Self {
            queues: Mutex::new(HashMap::new()),
            // Lagging receivers lose ids; the heartbeat catches any cancellation they miss.
            cancelled: broadcast::channel(1024).0,
        }
    }
}

impl Wake {
    /// The signal for `queue`'s waiters.
    pub(crate) fn queue(&self, queue: &str) -> Arc<Notify> {
        // A poisoned lock means a panic while inserting into a map: the map is still sound.
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues.entry(queue.to_owned()).or_default().clone()
    }

    /// Wakes everyone waiting on `queue`.
    pub(crate) fn queue_has_work(&self, queue: &str) {
        self.queue(queue).notify_waiters();
    }

    /// Wakes every queue (after a lost listener connection, when notices may be missed).
    pub(crate) fn all_queues(&self) {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        for notify in queues.values() {
            notify.notify_waiters();
        }
    }

    /// Tells workers that job `id` was asked to stop.
    pub(crate) fn job_cancelled(&self, id: i64) {
        // No receiver means no worker runs in this process: nothing to tell.
        let _ = self.cancelled.send(id);
    }

    /// Subscribes to cancellations.
    pub(crate) fn cancellations(&self) -> broadcast::Receiver<i64> {
        self.cancelled.subscribe()
    }
}

/// Forwards PostgreSQL notices to the store's in-process [`Wake`] until `shutdown`; returns
/// at once on SQLite. Reconnects after errors, waking every queue in case notices were lost.
pub(crate) async fn listen(store: Store, shutdown: CancellationToken) {
    let Db::Pg(pool) = store.writer() else {
        return;
    };
    let pool = pool.clone();
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_cancelled() {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(error) => {
                tracing::warn!(%error, "cannot open the LISTEN connection; polling meanwhile");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        if let Err(error) = listener.listen(store.channel()).await {
            tracing::warn!(%error, "LISTEN failed");
            continue;
        }
        backoff = Duration::from_millis(100);
        // Anything enqueued while we were not listening must not wait for a poll.
        store.wake().all_queues();
        loop {
            let notice = tokio::select! {
                notice = listener.recv() => notice,
                () = shutdown.cancelled() => return,
            };
            match notice {
                Ok(notice) => dispatch_notice(&store, notice.payload()),
                Err(error) => {
                    tracing::warn!(%error, "LISTEN connection lost; reconnecting");
                    break;
                }
            }
        }
    }
}

fn dispatch_notice(store: &Store, payload: &str) {
    if let Some(queue) = payload.strip_prefix("q:") {
        store.wake().queue_has_work(queue);
    } else if let Some(id) = payload.strip_prefix("c:").and_then(|id| id.parse().ok()) {
        store.wake().job_cancelled(id);
    } else {
        tracing::debug!(payload, "ignoring an unknown notice");
    }
}
