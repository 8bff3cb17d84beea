//! The analysis threads: a fixed set of long-lived threads that run analyzers, one piece of
//! work (one file) at a time, from a queue every analysis task feeds.
//!
//! Why not tokio's `spawn_blocking`: measured with `conveyor bench mining` on tokio's 380
//! sources, handing each file to the blocking pool ran at 0.7 of the direct rate, a fixed set
//! of threads at 0.9. The blocking pool starts a new thread whenever none is idle at the
//! instant of the call, and a fresh thread (fresh stack, fresh allocator arena) is slow for
//! the parser's first thousands of allocations; here the same threads parse every file.
//!
//! A file that overruns its time limit keeps its thread until the parser returns; the pool
//! starts a replacement at once (up to [`SPARE_MAX`] extra), so one pathological file costs
//! a thread for a while, never a slot, and the pool shrinks back when the overrun ends.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Most replacement threads alive at once for overrunning files.
pub const SPARE_MAX: usize = 8;

type Work = Box<dyn FnOnce() + Send>;
/// Where work is sent, and where the threads take it from.
type Queue = (Mutex<Sender<Work>>, Arc<Mutex<Receiver<Work>>>);

/// Why a piece of work has no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// It ran past its limit (it goes on in the background).
    #[error("took longer than {0:?}")]
    Overrun(Duration),
    /// It panicked.
    #[error("panicked")]
    Panicked,
}

/// A fixed set of analysis threads; cheap to clone.
#[derive(Clone)]
pub struct AnalysisPool {
    inner: Arc<Inner>,
}

struct Inner {
    threads: usize,
    alive: AtomicUsize,
    queue: OnceLock<Queue>,
}

impl std::fmt::Debug for AnalysisPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnalysisPool")
            .field("threads", &self.inner.threads)
            .field("alive", &self.inner.alive.load(Ordering::Relaxed))
            .finish()
    }
}

impl AnalysisPool {
    /// A pool of `threads` threads, started at the first use.
    pub fn new(threads: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                threads: threads.max(1),
                alive: AtomicUsize::new(0),
                queue: OnceLock::new(),
            }),
        }
    }

    fn queue(&self) -> &Queue {
        self.inner.queue.get_or_init(|| {
            let (tx, rx) = channel::<Work>();
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..self.inner.threads {
                self.start_thread(&rx);
            }
            (Mutex::new(tx), rx)
        })
    }

    fn start_thread(&self, rx: &Arc<Mutex<Receiver<Work>>>) {
        let (rx, inner) = (rx.clone(), self.inner.clone());
        inner.alive.fetch_add(1, Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("mining-analysis".into())
            .spawn(move || {
                loop {
                    // The lock is held only while waiting for the next piece of work.
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(work) = next else { break };
                    work();
                    // After an overrun a replacement took this thread's place: leave.
                    let alive = inner.alive.load(Ordering::SeqCst);
                    if alive > inner.threads
                        && inner
                            .alive
                            .compare_exchange(alive, alive - 1, Ordering::SeqCst, Ordering::SeqCst)
                            .is_ok()
                    {
                        return;
                    }
                }
                inner.alive.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.inner.alive.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs `work` on a pool thread and waits for its result at most `limit` after it
    /// starts (time spent queued behind other work does not count).
    ///
    /// # Errors
    /// [`PoolError::Overrun`] past the limit, [`PoolError::Panicked`].
    pub async fn run<T, F>(&self, limit: Duration, work: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        self.submit(limit, work).wait().await
    }

    /// Queues `work` now; its result is awaited with [`Submitted::wait`]. Until then nothing
    /// is woken when it ends: a task that queues all its files and waits once for the last
    /// is not woken for each of them (a thread switch a file, which cost the analysis
    /// threads' caches).
    pub fn submit<T, F>(&self, limit: Duration, work: F) -> Submitted<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let started = Arc::new(OnceLock::new());
        let job: Work = Box::new({
            let started = started.clone();
            move || {
                let _ = started.set(tokio::time::Instant::now());
                let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(|_| PoolError::Panicked);
                let _ = done.send(outcome);
            }
        });
        let (tx, _) = self.queue();
        let queued = tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .is_ok();
        Submitted {
            pool: self.clone(),
            limit,
            started,
            result: queued.then_some(result),
        }
    }
}

/// Work queued on the pool, not yet awaited.
pub struct Submitted<T> {
    pool: AnalysisPool,
    limit: Duration,
    started: Arc<OnceLock<tokio::time::Instant>>,
    /// `None` when the pool could not take it.
    result: Option<tokio::sync::oneshot::Receiver<Result<T, PoolError>>>,
}

impl<T> Submitted<T> {
    /// Its result, at most its limit after it started.
    ///
    /// # Errors
    /// [`PoolError::Overrun`] past the limit, [`PoolError::Panicked`].
    pub async fn wait(self) -> Result<T, PoolError> {
        let Some(mut result) = self.result else {
            return Err(PoolError::Panicked);
        };
        let (limit, inner) = (self.limit, &self.pool.inner);
        loop {
            // Not started yet: look again a limit later.
            let deadline = self
                .started
                .get()
                .map_or_else(|| tokio::time::Instant::now() + limit, |at| *at + limit);
            match tokio::time::timeout_at(deadline, &mut result).await {
                Ok(Ok(outcome)) => return outcome,
                Ok(Err(_)) => return Err(PoolError::Panicked),
                Err(_) if self.started.get().is_some_and(|at| at.elapsed() >= limit) => {
                    if inner.alive.load(Ordering::SeqCst) < inner.threads + SPARE_MAX {
                        let (_, rx) = self.pool.queue();
                        self.pool.start_thread(rx);
                    }
                    return Err(PoolError::Overrun(limit));
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_and_an_overrun_frees_the_caller_and_is_replaced() {
        let pool = AnalysisPool::new(1);
        assert_eq!(pool.run(Duration::from_secs(5), || 2 + 2).await, Ok(4));
        let slow = pool
            .run(Duration::from_millis(50), || {
                std::thread::sleep(Duration::from_millis(500))
            })
            .await;
        assert_eq!(slow, Err(PoolError::Overrun(Duration::from_millis(50))));
        // The replacement serves while the overrunning thread sleeps.
        let started = std::time::Instant::now();
        assert_eq!(
            pool.run(Duration::from_secs(5), || "next").await,
            Ok("next")
        );
        assert!(started.elapsed() < Duration::from_millis(400));
        assert_eq!(
            pool.run(Duration::from_secs(5), || panic!("boom")).await,
            Err::<(), _>(PoolError::Panicked)
        );
        // Once the overrun ends the pool shrinks back to one thread.
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert_eq!(pool.run(Duration::from_secs(5), || 1).await, Ok(1));
        assert_eq!(pool.inner.alive.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn submitted_work_runs_before_anyone_waits_for_it() {
        let pool = AnalysisPool::new(2);
        let (ran, seen) = std::sync::mpsc::channel();
        let pieces: Vec<_> = (0..10)
            .map(|i| {
                let ran = ran.clone();
                pool.submit(Duration::from_secs(5), move || {
                    let _ = ran.send(i);
                    i * 2
                })
            })
            .collect();
        // All ten ran with nothing awaiting them.
        let mut done: Vec<i32> = (0..10)
            .map(|_| seen.recv_timeout(Duration::from_secs(5)).expect("it ran"))
            .collect();
        done.sort_unstable();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
        for (i, piece) in pieces.into_iter().enumerate() {
            assert_eq!(piece.wait().await, Ok(i as i32 * 2));
        }
    }

    #[tokio::test]
    async fn time_spent_queued_is_not_an_overrun() {
        let pool = AnalysisPool::new(1);
        let sleep = |ms| move || std::thread::sleep(Duration::from_millis(ms));
        // Three pieces of 150 ms on one thread, each allowed 250 ms: the last waits 300 ms
        // for its turn and still finishes within its own limit.
        let limit = Duration::from_millis(250);
        let (a, b, c) = tokio::join!(
            pool.run(limit, sleep(150)),
            pool.run(limit, sleep(150)),
            pool.run(limit, sleep(150)),
        );
        assert_eq!((a, b, c), (Ok(()), Ok(()), Ok(())));
        assert_eq!(pool.inner.alive.load(Ordering::SeqCst), 1, "no replacement");
    }
}
