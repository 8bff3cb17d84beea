//! The worker runtime: claims jobs of its queues, runs their handlers, reports outcomes.
//!
//! One [`Worker`] is one process's worth of agents, all stopped by one shutdown token:
//! - a *claimer* per queue (or several, `claimers`): takes free slots, claims that many jobs
//!   in one statement, spawns a task per job; when the queue is empty it sleeps until woken
//!   (see [`crate::wake`]), until the next delayed job is due, or one poll interval;
//! - the *completer*: drains outcomes from a bounded channel and records them in batches
//!   (one transaction each), which is what makes small jobs cheap;
//! - the *heartbeat*: renews the worker's lease (one row in `worker`, which covers every job
//!   it runs), reads which jobs it still holds (noticing cancellation requests and lost
//!   leases), and applies concurrency set through the API;
//! - the *progress flusher*: writes the latest progress of running jobs in one batch;
//! - the *rescuer*: returns jobs of dead workers to their queues (see [`Store::rescue_expired`]).
//!
//! Shutdown: claimers stop at once; running jobs get `grace` to finish; then they are told
//! to stop and whatever still runs is handed back to the queue without counting the attempt.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::clock::{ms, now_ms};
use crate::context::{JobContext, Running, StopReason};
use crate::error::Result;
use crate::handler::Registry;
use crate::lease::{End, Outcome};
use crate::store::{Store, dispatch};

/// A queue a worker serves and how many of its jobs may run at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// The queue's name.
    pub name: String,
    /// Jobs of this queue running at once in this process (until changed through the API).
    pub concurrency: usize,
}

/// How a worker runs. Every duration has a default suited to production.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Queues served (default: `default` with concurrency 8).
    pub queues: Vec<QueueConfig>,
    /// Claiming tasks per queue (default 1; more only helps very short jobs). They take
    /// turns: one claim statement per queue is in flight in a process at a time.
    pub claimers: usize,
    /// Most jobs one claimer asks for at a time (default 100). A claim statement takes that
    /// for each claimer waiting for its turn, so `claimers` x `batch` at most.
    pub batch: usize,
    /// Lease length: a crashed worker's jobs run again after this (default 15 s).
    pub lease: Duration,
    /// Longest wait for work when no wake-up arrives (default 1 s).
    pub poll_interval: Duration,
    /// How often progress is written (default 250 ms).
    pub progress_interval: Duration,
    /// Time running jobs get to finish at shutdown (default 30 s).
    pub grace: Duration,
    /// Longest an attempt may run before it is stopped and failed (default 1 hour).
    pub job_timeout: Duration,
    /// Delays between attempts.
    pub backoff: Backoff,
    /// Whether this worker also runs the rescuer (default true).
    pub rescue: bool,
    /// Most outcomes recorded per transaction (default 1000).
    pub completion_batch: usize,
    /// With fewer than half a batch of free slots, the longest a claimer waits for half a
    /// batch to free up before claiming what is free (default 5 ms). Without it, every job
    /// that ends would trigger a claim of one job, and batching would vanish exactly under
    /// load; with a plain sleep, a small pool of short jobs would idle a cooldown per job.
    pub fetch_cooldown: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            queues: vec![QueueConfig {
                name: crate::job::DEFAULT_QUEUE.to_owned(),
                concurrency: 8,
            }],
            claimers: 1,
            batch: 100,
            lease: Duration::from_secs(15),
            poll_interval: Duration::from_secs(1),
            progress_interval: Duration::from_millis(250),
            grace: Duration::from_secs(30),
            job_timeout: Duration::from_secs(3600),
            backoff: Backoff::default(),
            rescue: true,
            completion_batch: 1000,
            fetch_cooldown: Duration::from_millis(5),
        }
    }
}

impl WorkerConfig {
    /// Heartbeats come three times per lease, so two can be lost before a lease expires.
    pub fn heartbeat_interval(&self) -> Duration {
        self.lease / 3
    }
}

/// Counters a caller can watch while the worker runs (benchmarks, tests).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Jobs claimed.
    pub claimed: AtomicU64,
    /// Claim statements run (`claimed / claims` is the mean claim size).
    pub claims: AtomicU64,
    /// The most jobs one claim statement took.
    pub largest_claim: AtomicU64,
    /// Completion transactions run (`recorded / finishes` is the mean batch).
    pub finishes: AtomicU64,
    /// Outcomes recorded in the database.
    pub recorded: AtomicU64,
    /// Outcomes dropped because the lease had been lost.
    pub fenced_off: AtomicU64,
}

/// Free places for running jobs of one queue; the limit can change while jobs run.
struct Slots {
    state: Mutex<(usize, usize)>,
    freed: Notify,
    /// One claim statement of this queue at a time in this process: see [`Slots::turn`].
    gate: tokio::sync::Mutex<()>,
    /// Claimers waiting for the gate.
    waiting: AtomicUsize,
}

impl Slots {
    fn new(limit: usize) -> Self {
        Self {
            state: Mutex::new((limit, 0)),
            freed: Notify::new(),
            gate: tokio::sync::Mutex::new(()),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for this process's turn to claim from the queue, then takes the places for the
    /// claim: `batch` for this claimer and `batch` for each claimer still waiting, as far as
    /// places are free. The claimers of one process do not compete for the same rows: on
    /// PostgreSQL, concurrent `SKIP LOCKED` claims each walk past the rows the others hold,
    /// and eight concurrent claims of 100 moved half the jobs a second that claims of 800
    /// did (`conveyor bench queue` at `--workers 8 --batch 100` against `--workers 1 --batch
    /// 800`). Processes still claim side by side, kept apart by `SKIP LOCKED`. Returns the
    /// turn (held until the claim is over) and the places taken, 0 when none is free.
    async fn turn(&self, batch: usize) -> (tokio::sync::MutexGuard<'_, ()>, usize) {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let turn = self.gate.lock().await;
        let others = self.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        let taken = self.take(batch.saturating_mul(1 + others));
        (turn, taken)
    }

    /// Takes up to `wanted` free places.
    fn take(&self, wanted: usize) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let taken = state.0.saturating_sub(state.1).min(wanted);
        state.1 += taken;
        taken
    }

    fn give(&self, n: usize) {
        if n > 0 {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.1 = state.1.saturating_sub(n);
            drop(state);
            self.freed.notify_waiters();
        }
    }

    fn set_limit(&self, limit: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 != limit {
            state.0 = limit;
            drop(state);
            self.freed.notify_waiters();
        }
    }

    fn limit(&self) -> usize {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Free places now, and the limit.
    fn free(&self) -> (usize, usize) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (state.0.saturating_sub(state.1), state.0)
    }
}

/// A worker process's job runner. Build with [`Worker::new`], then [`Worker::run`].
pub struct Worker {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    registry: Registry,
    config: WorkerConfig,
    id: String,
    host: String,
    started_at: i64,
    slots: HashMap<String, Arc<Slots>>,
    running: Mutex<HashMap<i64, Arc<Running>>>,
    /// Signalled whenever a job ends, for the shutdown drain.
    job_ended: Notify,
    stats: Arc<WorkerStats>,
}

impl Worker {
    /// A worker over `store` running the kinds in `registry`.
    pub fn new(store: Store, registry: Registry, config: WorkerConfig) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "unknown".to_owned());
        let id = format!(
            "{host}-{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let slots = config
            .queues
            .iter()
            .map(|q| (q.name.clone(), Arc::new(Slots::new(q.concurrency))))
            .collect();
        Self {
            shared: Arc::new(Shared {
                store,
                registry,
                config,
                id,
                host,
                started_at: now_ms(),
                slots,
                running: Mutex::new(HashMap::new()),
                job_ended: Notify::new(),
                stats: Arc::new(WorkerStats::default()),
            }),
        }
    }

    /// This worker's id, as stored in `lease_owner` and the registry.
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Live counters.
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.shared.stats.clone()
    }

    /// Runs until `shutdown` is cancelled, then drains (see the module documentation).
    ///
    /// # Errors
    /// [`crate::Error::Database`] when the worker cannot register itself; later database
    /// errors are logged and retried, never fatal.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        // An operator's stop request (read at a heartbeat) drains like a shutdown.
        let shutdown = shutdown.child_token();
        let shared = self.shared;
        shared.register().await?;
        let queues = shared
            .config
            .queues
            .iter()
            .map(|q| format!("{}={}", q.name, q.concurrency))
            .collect::<Vec<_>>()
            .join(",");
        tracing::info!(worker = %shared.id, %queues, "worker started");

        let background = CancellationToken::new();
        let agents = TaskTracker::new();
        agents.spawn(crate::wake::listen(
            shared.store.clone(),
            background.clone(),
        ));
        agents.spawn(
            shared
                .clone()
                .heartbeat_loop(background.clone(), shutdown.clone()),
        );
        agents.spawn(shared.clone().progress_loop(background.clone()));
        agents.spawn(shared.clone().cancel_listener(background.clone()));
        if shared.config.rescue {
            agents.spawn(shared.clone().rescue_loop(background.clone()));
        }
        let capacity = shared.config.completion_batch.max(1) * 4;
        let (outcomes, outcome_rx) = mpsc::channel(capacity);
        let completer = tokio::spawn(shared.clone().complete_loop(outcome_rx));

        let jobs = TaskTracker::new();
        let claimers = TaskTracker::new();
        for queue in &shared.config.queues {
            for _ in 0..shared.config.claimers.max(1) {
                claimers.spawn(shared.clone().claim_loop(
                    queue.name.clone(),
                    shutdown.clone(),
                    jobs.clone(),
                    outcomes.clone(),
                ));
            }
        }
        drop(outcomes);
        claimers.close();
        claimers.wait().await;

        // Drain: running jobs get the grace period, then are told to stop.
        let deadline = tokio::time::Instant::now() + shared.config.grace;
        loop {
            let ended = shared.job_ended.notified();
            if shared.running_count() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!(
                    running = shared.running_count(),
                    "grace period over: stopping the jobs still running and handing them back"
                );
                for job in shared.running_jobs() {
                    job.stop(StopReason::Shutdown);
                }
                break;
            }
        }
        jobs.close();
        // Handlers that ignore cancellation are left behind; their jobs are handed back and
        // their late outcomes are fenced off by the lease.
        let _ = tokio::time::timeout(Duration::from_secs(2), jobs.wait()).await;
        // Every sender is gone once the job tasks are, so the completer flushes and ends.
        let _ = tokio::time::timeout(Duration::from_secs(10), completer).await;
        match shared.store.hand_back(&shared.id).await {
            Ok(rows) if !rows.is_empty() => {
                tracing::info!(jobs = rows.len(), "handed jobs back to their queues");
            }
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "could not hand jobs back; the rescuer will"),
        }
        background.cancel();
        agents.close();
        agents.wait().await;
        shared.unregister().await;
        tracing::info!(worker = %shared.id, "worker stopped");
        Ok(())
    }
}

impl Shared {
    fn running_count(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn running_jobs(&self) -> Vec<Arc<Running>> {
        let running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        running.values().cloned().collect()
    }

    fn lease_until(&self) -> i64 {
        now_ms() + ms(self.config.lease)
    }

    async fn claim_loop(
        self: Arc<Self>,
        queue: String,
        stop: CancellationToken,
        jobs: TaskTracker,
        outcomes: mpsc::Sender<Outcome>,
    ) {
        let slots = self.slots[&queue].clone();
        let woken = self.store.wake().queue(&queue);
        let mut error_backoff = Duration::from_millis(50);
        while !stop.is_cancelled() {
            // Registered before looking, so a signal between the look and the wait counts.
            let freed = slots.freed.notified();
            let work = woken.notified();
            tokio::pin!(freed, work);
            freed.as_mut().enable();
            work.as_mut().enable();

            let batch = self.config.batch.max(1);
            let (free, limit) = slots.free();
            if free == 0 {
                tokio::select! {
                    () = freed => {}
                    () = stop.cancelled() => {}
                }
                continue;
            }
            let enough = batch.min(limit).div_ceil(2);
            if free < enough {
                // Wait for half a batch of slots, but no longer than the cooldown: a small
                // pool of short jobs would otherwise idle a whole cooldown per job.
                let deadline = tokio::time::Instant::now() + self.config.fetch_cooldown;
                loop {
                    let more = slots.freed.notified();
                    tokio::pin!(more);
                    more.as_mut().enable();
                    if slots.free().0 >= enough {
                        break;
                    }
                    tokio::select! {
                        () = more => {}
                        () = tokio::time::sleep_until(deadline) => break,
                        () = stop.cancelled() => break,
                    }
                }
                if stop.is_cancelled() {
                    continue;
                }
            }
            let (turn, wanted) = slots.turn(batch).await;
            // Shutdown may have come while this claimer waited for its turn.
            if wanted == 0 || stop.is_cancelled() {
                slots.give(wanted);
                continue;
            }
            let claimed = self
                .store
                .claim(&queue, wanted, &self.id, self.lease_until())
                .await;
            drop(turn);
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(error) => {
                    slots.give(wanted);
                    tracing::warn!(%error, queue, "claim failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(error_backoff) => {}
                        () = stop.cancelled() => {}
                    }
                    error_backoff = (error_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            error_backoff = Duration::from_millis(50);
            let got = claimed.len();
            slots.give(wanted - got);
            self.stats.claimed.fetch_add(got as u64, Ordering::Relaxed);
            self.stats.claims.fetch_add(1, Ordering::Relaxed);
            self.stats
                .largest_claim
                .fetch_max(got as u64, Ordering::Relaxed);
            for mut job in claimed {
                // The handler owns the arguments; the context keeps the rest of the row.
                let args = std::mem::take(&mut job.args);
                // Every line logged while the job runs names it (its span's fields).
                let span = tracing::info_span!(
                    "job",
                    job_id = job.id,
                    kind = %job.kind,
                    queue = %job.queue,
                    attempt = job.attempt
                );
                let ctx = JobContext::new(job, self.store.clone());
                self.running
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(ctx.id(), ctx.inner.clone());
                jobs.spawn(
                    self.clone()
                        .execute(ctx, args, slots.clone(), outcomes.clone())
                        .instrument(span),
                );
            }
            if got == wanted {
                continue;
            }
            // The queue has nothing due: wait for a wake-up, the next delayed job, or a poll.
            let mut wait = self.config.poll_interval;
            if let Ok(Some(due)) = self.store.next_due(&queue).await {
                let until_due = Duration::from_millis(u64::try_from(due - now_ms()).unwrap_or(0));
                wait = wait.min(until_due.max(Duration::from_millis(1)));
            }
            tokio::select! {
                () = work => {}
                () = tokio::time::sleep(wait) => {}
                () = stop.cancelled() => {}
            }
        }
    }

    async fn execute(
        self: Arc<Self>,
        ctx: JobContext,
        args: serde_json::Value,
        slots: Arc<Slots>,
        outcomes: mpsc::Sender<Outcome>,
    ) {
        let job = &ctx.inner.job;
        let (id, attempt, max_attempts) = (job.id, job.attempt, job.max_attempts);
        let (queue, kind) = (job.queue.clone(), job.kind.clone());
        let started = Instant::now();
        let end = match self.registry.start(&kind, args, ctx.clone()) {
            None => self.failure(
                format!("no handler for kind {kind:?} in this worker"),
                false,
                attempt,
                max_attempts,
            ),
            Some(run) => {
                let run = AssertUnwindSafe(run).catch_unwind();
                match tokio::time::timeout(self.config.job_timeout, run).await {
                    Err(_) => {
                        ctx.inner.stop(StopReason::Timeout);
                        self.failure(
                            format!("timed out after {:?}", self.config.job_timeout),
                            false,
                            attempt,
                            max_attempts,
                        )
                    }
                    Ok(Err(panic)) => {
                        let message = crate::handler::panic_message(panic.as_ref());
                        self.failure(
                            format!("handler panicked: {message}"),
                            false,
                            attempt,
                            max_attempts,
                        )
                    }
                    // Work that finished is kept even if cancellation came too late to stop it.
                    Ok(Ok(Ok(result))) => End::Completed(result),
                    Ok(Ok(Err(error))) => match ctx.stop_reason() {
                        Some(StopReason::Requested) => {
                            End::Cancelled(format!("cancelled: {error}"))
                        }
                        _ => self.failure(error.message, error.permanent, attempt, max_attempts),
                    },
                }
            }
        };
        let elapsed = started.elapsed();
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        slots.give(1);
        self.job_ended.notify_waiters();

        match ctx.stop_reason() {
            // Rescued elsewhere, or to be handed back: this outcome must not be recorded.
            Some(StopReason::LeaseLost | StopReason::Shutdown)
                if !matches!(end, End::Completed(_)) =>
            {
                return;
            }
            _ => {}
        }
        let outcome_label = match &end {
            End::Completed(_) => "completed",
            End::Failed {
                retry_at: Some(_), ..
            } => "retried",
            End::Failed { .. } => "failed",
            End::Cancelled(_) => "cancelled",
        };
        match &end {
            End::Failed { error, .. } => {
                tracing::warn!(outcome = outcome_label, elapsed_ms = ms(elapsed), %error, "job failed");
            }
            _ => tracing::debug!(
                outcome = outcome_label,
                elapsed_ms = ms(elapsed),
                "job ended"
            ),
        }
        metrics::counter!("conveyor_jobs_finished_total", "queue" => queue.clone(), "kind" => kind.clone(), "outcome" => outcome_label).increment(1);
        metrics::histogram!("conveyor_job_duration_seconds", "queue" => queue.clone(), "kind" => kind)
            .record(elapsed.as_secs_f64());
        let outcome = Outcome {
            id,
            queue,
            attempt: ctx.attempt(),
            group_id: ctx.inner.job.group_id,
            end,
            progress: ctx.inner.take_dirty_progress(),
        };
        // The completer outlives every job task, so the channel is open.
        let _ = outcomes.send(outcome).await;
    }

    fn failure(&self, error: String, permanent: bool, attempt: i32, max_attempts: i32) -> End {
        let retry_at = (!permanent && attempt < max_attempts)
            .then(|| now_ms() + ms(self.config.backoff.delay(attempt)));
        End::Failed { error, retry_at }
    }

    async fn complete_loop(self: Arc<Self>, mut rx: mpsc::Receiver<Outcome>) {
        let limit = self.config.completion_batch.max(1);
        let mut batch = Vec::with_capacity(limit);
        while rx.recv_many(&mut batch, limit).await > 0 {
            let mut delay = Duration::from_millis(50);
            loop {
                match self.store.finish(&self.id, &batch).await {
                    Ok(done) => {
                        self.stats.finishes.fetch_add(1, Ordering::Relaxed);
                        self.stats
                            .recorded
                            .fetch_add(done.recorded as u64, Ordering::Relaxed);
                        self.stats
                            .fenced_off
                            .fetch_add(done.fenced_off as u64, Ordering::Relaxed);
                        if done.fenced_off > 0 {
                            tracing::warn!(
                                jobs = done.fenced_off,
                                "dropped outcomes of jobs whose lease was lost"
                            );
                        }
                        break;
                    }
                    // Past one lease the jobs have been rescued; recording is pointless then.
                    Err(error) if delay > self.config.lease => {
                        tracing::error!(%error, jobs = batch.len(), "giving up recording outcomes; the rescuer will re-run these jobs");
                        break;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "recording outcomes failed; retrying");
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
            batch.clear();
        }
    }

    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken, drain: CancellationToken) {
        let mut last_ok = Instant::now();
        let mut tick = tokio::time::interval(self.config.heartbeat_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let sent = Instant::now();
            // Renewing the worker's row renews the lease of every job it runs.
            match self.register().await {
                Ok(asked_to_stop) => {
                    last_ok = sent;
                    if asked_to_stop && !drain.is_cancelled() {
                        tracing::info!("asked to stop: finishing the running jobs, taking no more");
                        drain.cancel();
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "heartbeat failed");
                    if last_ok.elapsed() > self.config.lease {
                        for job in self.running_jobs() {
                            job.stop(StopReason::LeaseLost);
                        }
                    }
                }
            }
            match self.store.held_jobs(&self.id).await {
                Ok(rows) => {
                    let held: HashMap<i64, bool> = rows.into_iter().collect();
                    for job in self.running_jobs() {
                        match held.get(&job.job.id) {
                            Some(true) => job.stop(StopReason::Requested),
                            Some(false) => {}
                            None if job.claimed < sent => {
                                tracing::warn!(job = job.job.id, "lease lost; stopping the job");
                                job.stop(StopReason::LeaseLost);
                            }
                            None => {}
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "could not read the jobs this worker holds"),
            }
            if let Err(error) = self.apply_concurrency().await {
                tracing::warn!(%error, "could not read queue settings");
            }
        }
    }

    async fn progress_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.config.progress_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.cancelled() => return,
            }
            let dirty: Vec<_> = self
                .running_jobs()
                .iter()
                .filter_map(|job| Some((job.job.id, job.take_dirty_progress()?)))
                .collect();
            if let Err(error) = self.store.write_progress(&self.id, &dirty).await {
                tracing::warn!(%error, "could not write progress");
            }
        }
    }

    async fn cancel_listener(self: Arc<Self>, stop: CancellationToken) {
        let mut cancelled = self.store.wake().cancellations();
        loop {
            let id = tokio::select! {
                id = cancelled.recv() => id,
                () = stop.cancelled() => return,
            };
            match id {
                Ok(id) => {
                    let job = self
                        .running
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&id)
                        .cloned();
                    if let Some(job) = job {
                        job.stop(StopReason::Requested);
                    }
                }
                // Missed some: the next heartbeat reports every pending cancellation.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    async fn rescue_loop(self: Arc<Self>, stop: CancellationToken) {
        // Checking twice per lease bounds a dead worker's cost to 1.5 leases at worst.
        let period = (self.config.lease / 2).max(Duration::from_millis(100));
        loop {
            let jitter = Duration::from_millis(rand::random_range(0..=ms(period) as u64 / 4));
            tokio::select! {
                () = tokio::time::sleep(period - period / 8 + jitter) => {}
                () = stop.cancelled() => return,
            }
            loop {
                match self.store.rescue_expired(1000).await {
                    Ok(rows) if rows.len() == 1000 => continue,
                    Ok(_) => break,
                    Err(error) => {
                        tracing::warn!(%error, "rescuer failed");
                        break;
                    }
                }
            }
        }
    }

    /// Registers or renews the worker's row; whether an operator asked it to stop.
    async fn register(&self) -> Result<bool> {
        let queues: serde_json::Map<String, serde_json::Value> = self
            .slots
            .iter()
            .map(|(name, slots)| (name.clone(), slots.limit().into()))
            .collect();
        let running = self.running_count() as i64;
        let asked: bool = dispatch!(self.store.writer(), pool => {
            sqlx::query_scalar(
                "INSERT INTO worker (id, host, pid, lease_until, queues, running, started_at, last_seen_at) \
                 VALUES ($1, $2, $3, $8, $4, $5, $6, $7) \
                 ON CONFLICT (id) DO UPDATE \
                 SET lease_until = excluded.lease_until, queues = excluded.queues, \
                     running = excluded.running, last_seen_at = excluded.last_seen_at \
                 RETURNING stop_requested",
            )
            .bind(&self.id)
            .bind(&self.host)
            .bind(i64::from(std::process::id()))
            .bind(sqlx::types::Json(&queues))
            .bind(running)
            .bind(self.started_at)
            .bind(now_ms())
            .bind(self.lease_until())
            .fetch_one(pool)
            .await?
        });
        Ok(asked)
    }

    async fn unregister(&self) {
        let result = dispatch!(self.store.writer(), pool => {
            sqlx::query("DELETE FROM worker WHERE id = $1").bind(&self.id).execute(pool).await.map(|r| r.rows_affected())
        });
        if let Err(error) = result {
            tracing::warn!(%error, "could not remove the worker from the registry");
        }
    }

    /// Concurrency set through the API overrides the configured value, per queue.
    async fn apply_concurrency(&self) -> Result<()> {
        let settings: HashMap<String, usize> =
            self.store.queue_settings().await?.into_iter().collect();
        for queue in &self.config.queues {
            let limit = settings
                .get(&queue.name)
                .copied()
                .unwrap_or(queue.concurrency);
            self.slots[&queue.name].set_limit(limit);
        }
        Ok(())
    }
}
