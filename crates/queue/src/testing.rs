//! Test support (feature `testing`): a fresh database per test on either backend.
//!
//! SQLite gets a new file in the temporary directory. PostgreSQL, used when
//! `TEST_DATABASE_URL` is set, gets a new schema in that database, selected through the
//! connection's `search_path`; [`TestDb::finish`] drops it.

use std::time::{Duration, Instant};

use crate::job::{Job, JobState};
use crate::store::Store;

/// A migrated store on a database made for one test.
pub struct TestDb {
    /// The store.
    pub store: Store,
    /// The URL the store connected to (for child processes).
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Schema { admin_url: String, schema: String },
}

impl TestDb {
    /// A new SQLite file.
    ///
    /// # Panics
    /// When the file cannot be created or migrated.
    pub async fn sqlite() -> Self {
        let path = std::env::temp_dir().join(format!(
            "conveyor-test-{}.db",
            uuid::Uuid::new_v4().simple()
        ));
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url)
            .await
            .expect("open the SQLite test database");
        store
            .migrate()
            .await
            .expect("migrate the SQLite test database");
        Self {
            store,
            url,
            cleanup: Cleanup::File(path),
        }
    }

    /// A new schema in `TEST_DATABASE_URL`, or `None` (with a note on stderr) when unset.
    ///
    /// # Panics
    /// When `TEST_DATABASE_URL` is set but unusable.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("skipped: set TEST_DATABASE_URL to run this test on PostgreSQL");
            return None;
        };
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        if let crate::Db::Pg(pool) = admin.writer() {
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(pool)
                .await
                .expect("create the test schema");
        }
        admin.close().await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let store = Store::connect(&url)
            .await
            .expect("connect to the test schema");
        store.migrate().await.expect("migrate the test schema");
        Some(Self {
            store,
            url,
            cleanup: Cleanup::Schema { admin_url, schema },
        })
    }

    /// Closes the store and removes the database.
    pub async fn finish(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                if let Ok(admin) = Store::connect(&admin_url).await {
                    if let crate::Db::Pg(pool) = admin.writer() {
                        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(pool).await;
                    }
                    admin.close().await;
                }
            }
        }
    }
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
    pub async fn claim_for_test(&self, queue: &str, limit: usize, worker: &str) -> Vec<Job> {
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
    pub async fn claim_expired_for_test(&self, queue: &str, worker: &str) -> Vec<Job> {
        let lease = crate::clock::now_ms() - 1;
        self.claim(queue, 10, worker, lease).await.expect("claim")
    }

    /// Records job `id` as completed by `worker`; returns (recorded, fenced off).
    ///
    /// # Panics
    /// On a database error.
    pub async fn finish_for_test(&self, worker: &str, id: i64) -> (usize, usize) {
        let outcome = crate::lease::Outcome {
            id,
            group_id: None,
            end: crate::lease::End::Completed(None),
            progress: None,
        };
        let done = self.finish(worker, &[outcome]).await.expect("finish");
        (done.recorded, done.fenced_off)
    }
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
