//! Jobs ended per queue and minute: `completed` and `failed` (every failed attempt, retried
//! or not, as Sidekiq counts failures), written by the completer in the transaction that
//! records the outcomes, read by the dashboard's charts. Latency (wait and run time) and
//! the oldest waiting job are read from the job rows, bounded.

use std::collections::BTreeMap;

use crate::clock::now_ms;
use crate::error::Result;
use crate::store::{Store, Tx, dispatch};

/// One minute.
pub const MINUTE_MS: i64 = 60_000;

/// How long the counts are kept (the day chart needs one).
pub const KEPT_MS: i64 = 2 * 86_400_000;

/// One queue's counts in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Jobs completed.
    pub completed: i64,
    /// Attempts failed.
    pub failed: i64,
}

/// A queue's wait and run times, in milliseconds, over its recently ended jobs.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Jobs measured.
    pub jobs: usize,
    /// From due (`run_at`) to started, median and 95th percentile.
    pub wait_p50: i64,
    /// See `wait_p50`.
    pub wait_p95: i64,
    /// From started to finished, median and 95th percentile.
    pub run_p50: i64,
    /// See `run_p50`.
    pub run_p95: i64,
}

/// One attempt of a job, as its history keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Attempt {
    /// Its number, from 1.
    pub attempt: i32,
    /// When it started (ms).
    pub started_at: Option<i64>,
    /// When it ended (ms).
    pub finished_at: i64,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// completed, failed or cancelled.
    pub outcome: String,
    /// Its error.
    pub error: Option<String>,
}

/// Copies running jobs' current attempt into their history (before the outcome's update
/// clears the lease), those of worker `$5` or, when it is NULL, of any (the rescuer's):
/// PostgreSQL takes the ids as an array, SQLite as JSON.
const RECORD_ATTEMPTS: crate::store::Sql = crate::store::Sql {
    postgres: "INSERT INTO job_attempt \
                   (job_id, attempt, started_at, finished_at, worker, outcome, error) \
               SELECT id, attempt, started_at, $2, lease_owner, $3, $4 FROM job \
               WHERE id = ANY($1) AND ($5 IS NULL OR lease_owner = $5) AND state = 'running' \
               ON CONFLICT (job_id, attempt) DO NOTHING",
    sqlite: "INSERT INTO job_attempt \
                 (job_id, attempt, started_at, finished_at, worker, outcome, error) \
             SELECT id, attempt, started_at, $2, lease_owner, $3, $4 FROM job \
             WHERE id IN (SELECT value FROM json_each($1)) AND ($5 IS NULL OR lease_owner = $5) \
               AND state = 'running' \
             ON CONFLICT (job_id, attempt) DO NOTHING",
};

impl Tx {
    /// Records the attempt now ending of each of `ids` that `worker` runs (any worker's
    /// for `None`).
    pub(crate) async fn record_attempts(
        &mut self,
        worker: Option<&str>,
        now: i64,
        ids: &[i64],
        outcome: &str,
        error: Option<&str>,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let sql = self.sql(RECORD_ATTEMPTS);
        match self.conn() {
            crate::store::Db::Pg(conn) => {
                sqlx::query(sql)
                    .bind(ids)
                    .bind(now)
                    .bind(outcome)
                    .bind(error)
                    .bind(worker)
                    .execute(conn)
                    .await?;
            }
            crate::store::Db::Lite(conn) => {
                sqlx::query(sql)
                    .bind(serde_json::to_string(ids).expect("ids serialise"))
                    .bind(now)
                    .bind(outcome)
                    .bind(error)
                    .bind(worker)
                    .execute(conn)
                    .await?;
            }
        }
        Ok(())
    }

    /// Adds `counts` to each queue's current minute.
    pub(crate) async fn count_outcomes(&mut self, counts: &BTreeMap<&str, Counts>) -> Result<()> {
        let minute = now_ms() / MINUTE_MS * MINUTE_MS;
        for (queue, c) in counts {
            dispatch!(self.conn(), conn => {
                sqlx::query(
                    "INSERT INTO queue_minute (queue, minute, completed, failed) \
                     VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (queue, minute) DO UPDATE \
                     SET completed = queue_minute.completed + excluded.completed, \
                         failed = queue_minute.failed + excluded.failed",
                )
                .bind(queue)
                .bind(minute)
                .bind(c.completed)
                .bind(c.failed)
                .execute(conn)
                .await?;
            });
        }
        Ok(())
    }
}

impl Store {
    /// Every queue's counts from `since` (ms) to now, in buckets of `step` ms (a multiple
    /// of a minute): by queue, each bucket's start and counts, oldest first, empty buckets
    /// left out.
    ///
    /// # Errors
    /// The database's.
    pub async fn queue_counts_since(
        &self,
        since: i64,
        step: i64,
    ) -> Result<BTreeMap<String, Vec<(i64, Counts)>>> {
        let step = (step / MINUTE_MS).max(1) * MINUTE_MS;
        let rows: Vec<(String, i64, i64, i64)> = dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT queue, minute / $2 * $2 AS bucket, \
                        CAST(SUM(completed) AS BIGINT), CAST(SUM(failed) AS BIGINT) \
                 FROM queue_minute WHERE minute >= $1 \
                 GROUP BY queue, minute / $2 * $2 ORDER BY queue, bucket",
            )
            .bind(since)
            .bind(step)
            .fetch_all(pool)
            .await?
        });
        let mut by_queue: BTreeMap<String, Vec<(i64, Counts)>> = BTreeMap::new();
        for (queue, bucket, completed, failed) in rows {
            by_queue
                .entry(queue)
                .or_default()
                .push((bucket, Counts { completed, failed }));
        }
        Ok(by_queue)
    }

    /// `queue`'s wait and run times over its last `recent` jobs that ran and ended.
    ///
    /// # Errors
    /// The database's.
    pub async fn latency(&self, queue: &str, recent: i64) -> Result<Latency> {
        let rows: Vec<(i64, i64)> = dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT started_at - run_at, finished_at - started_at FROM job \
                 WHERE queue = $1 AND finished_at IS NOT NULL AND started_at IS NOT NULL \
                 ORDER BY finished_at DESC LIMIT $2",
            )
            .bind(queue)
            .bind(recent)
            .fetch_all(pool)
            .await?
        });
        let (mut wait, mut run): (Vec<i64>, Vec<i64>) =
            rows.into_iter().map(|(w, r)| (w.max(0), r.max(0))).unzip();
        wait.sort_unstable();
        run.sort_unstable();
        let at = |v: &[i64], p: usize| {
            if v.is_empty() {
                0
            } else {
                v[((v.len() - 1) * p).div_ceil(100)]
            }
        };
        Ok(Latency {
            jobs: wait.len(),
            wait_p50: at(&wait, 50),
            wait_p95: at(&wait, 95),
            run_p50: at(&run, 50),
            run_p95: at(&run, 95),
        })
    }

    /// When each queue's oldest claimable job became due (ms), by queue.
    ///
    /// # Errors
    /// The database's.
    pub async fn oldest_waiting(&self) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<(String, i64)> = dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT queue, MIN(run_at) FROM job \
                 WHERE state IN ('available', 'retryable', 'scheduled') AND run_at <= $1 \
                 GROUP BY queue",
            )
            .bind(now_ms())
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().collect())
    }

    /// Job `id`'s recorded attempts, oldest first (none for a job that completed on its
    /// first attempt, or that has not ended an attempt).
    ///
    /// # Errors
    /// The database's.
    pub async fn attempts(&self, id: i64) -> Result<Vec<Attempt>> {
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT attempt, started_at, finished_at, worker, outcome, error \
                 FROM job_attempt WHERE job_id = $1 ORDER BY attempt",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Deletes counts older than [`KEPT_MS`].
    pub(crate) async fn prune_counts(&self) -> Result<()> {
        dispatch!(self.writer(), pool => {
            sqlx::query("DELETE FROM queue_minute WHERE minute < $1")
                .bind(now_ms() - KEPT_MS)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
