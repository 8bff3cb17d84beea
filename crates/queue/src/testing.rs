//! Test support (feature `testing`): a fresh database per test on either backend (see
//! [`crate::scratch`]) and helpers that wait with a deadline instead of sleeping.

use std::time::{Duration, Instant};

use crate::job::{Job, JobState};
use crate::lease::Claimed;
use crate::store::Store;

pub use crate::scratch::ScratchDb as TestDb;

pub use crate::scratch::{STRICT, skip};

/// Instantiates async test functions once per backend: `sqlite::<name>` always,
/// `postgres::<name>` when `TEST_DATABASE_URL` is set (it says it skipped otherwise). Each gets
/// a fresh database. With `store:` the functions take a [`Store`]; with `db:`, a `&TestDb`
/// (for tests that need its URL, to start child processes). After each test the job table
/// is checked against the engine's invariants ([`assert_job_invariants`]).
///
/// ```ignore
/// conveyor_queue::on_both_backends!(store: a_job_can_be_read_back, another_test);
/// async fn a_job_can_be_read_back(store: Store) { /* ... */ }
/// ```
#[macro_export]
macro_rules! on_both_backends {
    (store: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@each $crate::testing::store_of, $($name),*);
    };
    (db: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@each $crate::testing::db_itself, $($name),*);
    };
    (@each $adapt:path, $($name:ident),*) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = $crate::testing::TestDb::sqlite().await;
                    super::$name($adapt(&db)).await;
                    $crate::testing::assert_job_invariants(&db.store).await;
                    db.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = $crate::testing::TestDb::postgres().await else { return };
                    super::$name($adapt(&db)).await;
                    $crate::testing::assert_job_invariants(&db.store).await;
                    db.finish().await;
                }
            )*
        }
    };
}

/// Checks what every path through the state machine must leave true: a job has
/// `finished_at` exactly while it is in a final state (the cleaner's partial index is keyed
/// on it, see migration 0002). A store the test closed is not checked.
///
/// # Panics
/// With the offending rows.
pub async fn assert_job_invariants(store: &Store) {
    const BROKEN: &str = "SELECT id, state, finished_at FROM job \
        WHERE (finished_at IS NOT NULL) <> (state IN ('completed', 'failed', 'cancelled')) \
        LIMIT 10";
    let rows: Result<Vec<(i64, String, Option<i64>)>, sqlx::Error> = crate::store::dispatch!(store.reader(), pool => sqlx::query_as(BROKEN).fetch_all(pool).await);
    if let Ok(rows) = rows {
        assert!(
            rows.is_empty(),
            "jobs whose finished_at disagrees with their state: {rows:?}"
        );
    }
}

/// Enqueues `job` and returns its id.
///
/// # Panics
/// When the job is refused or the database fails.
pub async fn enqueue_id(store: &Store, job: crate::NewJob) -> i64 {
    store.enqueue(job).await.expect("enqueue").job.id
}

/// What `on_both_backends!(store: ...)` hands each test.
pub fn store_of(db: &TestDb) -> Store {
    db.store.clone()
}

/// What `on_both_backends!(db: ...)` hands each test.
pub fn db_itself(db: &TestDb) -> &TestDb {
    db
}

/// Polls job `id` until `done` holds for it, or panics after `within`.
///
/// # Panics
/// When the deadline passes or the job disappears.
pub async fn wait_for_job(
    store: &Store,
    id: i64,
    within: Duration,
    done: impl Fn(&Job) -> bool,
) -> Job {
    let deadline = Instant::now() + within;
    loop {
        let job = store
            .get(id)
            .await
            .expect("read the job")
            .expect("the job exists");
        if done(&job) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} did not get there within {within:?}: {job:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls job `id` until it is in `state`.
///
/// # Panics
/// As [`wait_for_job`].
pub async fn wait_for_state(store: &Store, id: i64, state: JobState, within: Duration) -> Job {
    wait_for_job(store, id, within, |job| job.state == state).await
}

/// Polls `check` until it returns true, or panics with `what` after `within`.
///
/// # Panics
/// When the deadline passes.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Direct access to the worker's statements, for tests that play a worker by hand.
impl Store {
    /// Claims up to `limit` jobs of `queue` for `worker` with a one-minute lease.
    ///
    /// # Panics
    /// On a database error.
    pub async fn claim_for_test(&self, queue: &str, limit: usize, worker: &str) -> Vec<Claimed> {
        let lease = crate::clock::now_ms() + 60_000;
        self.claim(queue, limit, worker, lease)
            .await
            .expect("claim")
    }

    /// Claims up to ten jobs of `queue` for `worker` with a lease that has already expired,
    /// as if the worker had died right after claiming.
    ///
    /// # Panics
    /// On a database error.
    pub async fn claim_expired_for_test(&self, queue: &str, worker: &str) -> Vec<Claimed> {
        let lease = crate::clock::now_ms() - 1;
        self.claim(queue, 10, worker, lease).await.expect("claim")
    }

    /// Hands `worker`'s running jobs back, as its shutdown does.
    ///
    /// # Panics
    /// On a database error.
    pub async fn hand_back_for_test(&self, worker: &str) {
        self.hand_back(worker).await.expect("hand back");
    }

    /// Records job `id` as completed by `worker`; returns (recorded, fenced off).
    ///
    /// # Panics
    /// On a database error.
    pub async fn finish_for_test(&self, worker: &str, id: i64) -> (usize, usize) {
        // The attempt the job is at, as the worker that claimed it would know it.
        let attempt = self.get(id).await.ok().flatten().map_or(1, |j| j.attempt);
        let outcome = crate::lease::Outcome {
            id,
            queue: crate::job::DEFAULT_QUEUE.to_owned(),
            attempt,
            group_id: None,
            end: crate::lease::End::Completed(None),
            progress: None,
        };
        let done = self.finish(worker, &[outcome]).await.expect("finish");
        (done.recorded, done.fenced_off)
    }
}

/// Registers (or renews) a worker row named `worker` whose lease ends at `lease_until`, as
/// a worker's heartbeat would.
///
/// # Panics
/// On a database error.
pub async fn set_worker_lease(store: &Store, worker: &str, lease_until: i64) {
    crate::store::dispatch!(store.writer(), pool => {
        sqlx::query(
            "INSERT INTO worker (id, host, pid, lease_until, queues, running, started_at, last_seen_at) \
             VALUES ($1, 'test', 0, $2, '{}', 0, 0, 0) \
             ON CONFLICT (id) DO UPDATE SET lease_until = excluded.lease_until",
        )
        .bind(worker)
        .bind(lease_until)
        .execute(pool)
        .await
        .expect("register the worker")
        .rows_affected()
    });
}

/// Runs one statement of the application's inside `tx`, on either backend.
///
/// # Panics
/// On a database error.
pub async fn execute(tx: &mut crate::Tx, sql: &'static str) {
    crate::store::dispatch!(tx.conn(), conn => {
        sqlx::query(sql).execute(conn).await.expect("execute").rows_affected()
    });
}
