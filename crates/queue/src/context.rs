//! [`JobContext`]: what a running handler can see and do besides its arguments.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::group::MemberOutcome;
use crate::lease::Claimed;
use crate::store::Store;

/// How far a job has come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Units done.
    pub done: i64,
    /// Units in all, when known.
    pub total: Option<i64>,
    /// A note for people watching.
    pub message: Option<String>,
}

/// Why a running job was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled it: it ends `cancelled`.
    Requested,
    /// Its worker is shutting down and the grace period is over: it is handed back.
    Shutdown,
    /// Its worker lost the lease (it was rescued elsewhere): its outcome is discarded.
    LeaseLost,
    /// It ran past the worker's job timeout: the attempt fails.
    Timeout,
}

/// The handle a handler gets on its own run: identity, cancellation, progress, the store.
/// Cheap to clone.
#[derive(Clone)]
pub struct JobContext {
    pub(crate) inner: Arc<Running>,
}

/// A job while its handler runs; the worker keeps one per job to heartbeat and flush it.
pub(crate) struct Running {
    /// The claimed row (its `args` moved out to the handler, so `Null` here).
    pub job: Claimed,
    pub store: Store,
    pub cancel: CancellationToken,
    pub reason: OnceLock<StopReason>,
    /// The latest progress and whether it still has to be written.
    pub progress: Mutex<(Progress, bool)>,
    /// When the claim returned, to tell a lost lease from a claim the heartbeat did not see.
    pub claimed: Instant,
}

impl Running {
    /// Tells the handler to stop; the first reason given wins.
    pub(crate) fn stop(&self, reason: StopReason) {
        if self.reason.set(reason).is_ok() {
            self.cancel.cancel();
        }
    }

    /// Takes the progress if it changed since it was last written.
    pub(crate) fn take_dirty_progress(&self) -> Option<Progress> {
        let mut slot = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        if slot.1 {
            slot.1 = false;
            Some(slot.0.clone())
        } else {
            None
        }
    }
}

impl JobContext {
    pub(crate) fn new(job: Claimed, store: Store) -> Self {
        let progress = Progress {
            done: job.progress_done.unwrap_or(0),
            total: job.progress_total,
            message: job.progress_message.clone(),
        };
        Self {
            inner: Arc::new(Running {
                job,
                store,
                cancel: CancellationToken::new(),
                reason: OnceLock::new(),
                progress: Mutex::new((progress, false)),
                claimed: Instant::now(),
            }),
        }
    }

    /// A context outside any worker, for a handler's unit tests and benchmarks: progress is
    /// kept in memory (read it with [`JobContext::latest_progress`]); [`JobContext::cancel`]
    /// plays the part of a cancellation request.
    pub fn detached(store: Store, id: i64, kind: &str) -> Self {
        let job = Claimed {
            id,
            queue: crate::job::DEFAULT_QUEUE.to_owned(),
            kind: kind.to_owned(),
            args: serde_json::Value::Null,
            attempt: 1,
            max_attempts: 1,
            group_id: None,
            progress_done: None,
            progress_total: None,
            progress_message: None,
        };
        Self::new(job, store)
    }

    /// Asks the handler to stop, as a cancellation request would.
    pub fn cancel(&self) {
        self.inner.stop(StopReason::Requested);
    }

    /// The progress last reported.
    pub fn latest_progress(&self) -> Progress {
        self.inner
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// The job's id.
    pub fn id(&self) -> i64 {
        self.inner.job.id
    }

    /// The job's kind.
    pub fn kind(&self) -> &str {
        &self.inner.job.kind
    }

    /// The job's queue.
    pub fn queue(&self) -> &str {
        &self.inner.job.queue
    }

    /// This attempt's number, from 1.
    pub fn attempt(&self) -> i32 {
        self.inner.job.attempt
    }

    /// Attempts allowed in all.
    pub fn max_attempts(&self) -> i32 {
        self.inner.job.max_attempts
    }

    /// Progress recorded by an earlier attempt, to resume from.
    pub fn resumed_progress(&self) -> Option<i64> {
        self.inner.job.progress_done
    }

    /// Whether the handler should stop (cancelled, shutting down, lease lost, timed out).
    pub fn is_cancelled(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Completes when the handler should stop; use in `tokio::select!` around long awaits.
    pub async fn cancelled(&self) {
        self.inner.cancel.cancelled().await;
    }

    /// Why the handler was told to stop, if it was.
    pub fn stop_reason(&self) -> Option<StopReason> {
        self.inner.reason.get().copied()
    }

    /// Records progress. Cheap enough for a hot loop: it only stores the value; the worker
    /// writes the latest value of every running job in one batch per progress interval, and
    /// the final value with the outcome.
    pub fn progress(&self, done: i64, total: Option<i64>, message: Option<&str>) {
        let mut slot = self
            .inner
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        slot.0.done = done;
        slot.0.total = total;
        if slot.0.message.as_deref() != message {
            slot.0.message = message.map(str::to_owned);
        }
        slot.1 = true;
    }

    /// The store, to enqueue follow-up jobs or open a transaction.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// For a group's continuation: every member's final state, result and error.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn group_members(&self) -> Result<Vec<MemberOutcome>> {
        self.inner.store.group_members(self.id()).await
    }
}
