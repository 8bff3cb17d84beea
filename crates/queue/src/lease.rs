//! The worker's side of the table: claiming jobs under a lease, extending leases by
//! heartbeat, recording outcomes in batches, handing jobs back at shutdown, and rescuing the
//! jobs of workers that died.
//!
//! Every write after the claim is fenced by `lease_owner = <worker id> AND state =
//! 'running'`: a worker whose lease expired and whose job was rescued cannot overwrite the
//! rescued run's outcome.

use serde_json::Value;
use sqlx::types::Json;

use crate::clock::now_ms;
use crate::error::Result;
use crate::job::JobState;
use crate::store::{Db, Store, Tx, dispatch};

/// What a claim returns: only what running the job needs. Returning whole rows cost SQLite
/// about a seventh of its time in copying values nobody reads.
macro_rules! claimed_columns {
    () => {
        "id, queue, kind, args, attempt, max_attempts, group_id, progress_done, progress_total, \
         progress_message"
    };
}

const CLAIM_PG: &str = concat!(
    "UPDATE job \
     SET state = 'running', attempt = attempt + 1, lease_owner = $1, lease_until = $2, \
         started_at = $3, cancel_requested = FALSE \
     WHERE id IN ( \
         SELECT id \
         FROM job \
         WHERE queue = $4 AND state IN ('scheduled', 'available', 'retryable') AND run_at <= $3 \
         ORDER BY priority DESC, run_at, id \
         LIMIT $5 \
         FOR UPDATE SKIP LOCKED) \
     RETURNING ",
    claimed_columns!()
);

/// The condition of SQLite's claimable index, as its migration (0003) writes it: a query
/// uses a partial index only when its WHERE contains the index's condition as written.
macro_rules! claimable_sqlite {
    () => {
        "(state = 'available' OR state = 'retryable' OR state = 'scheduled')"
    };
}

/// SQLite has one writer, so the plain subquery cannot race another claimer. Each job comes
/// back as one JSON value: sqlx copies every value of every row from its SQLite thread (the
/// engine's bottleneck on SQLite) to the caller, so one value a row instead of ten.
const CLAIM_SQLITE: &str = concat!(
    "UPDATE job \
     SET state = 'running', attempt = attempt + 1, lease_owner = $1, lease_until = $2, \
         started_at = $3, cancel_requested = FALSE \
     WHERE id IN ( \
         SELECT id \
         FROM job \
         WHERE queue = $4 AND ",
    claimable_sqlite!(),
    " AND run_at <= $3 \
         ORDER BY priority DESC, run_at, id \
         LIMIT $5) \
     RETURNING json_array(id, queue, kind, args, attempt, max_attempts, group_id, \
         progress_done, progress_total, progress_message)"
);

/// When the next waiting job of a queue is due; SQLite's spells the claimable index's condition.
const NEXT_DUE_PG: &str = "SELECT MIN(run_at) FROM job \
     WHERE queue = $1 AND state IN ('scheduled', 'available', 'retryable')";
const NEXT_DUE_SQLITE: &str = concat!(
    "SELECT MIN(run_at) FROM job WHERE queue = $1 AND ",
    claimable_sqlite!()
);

/// One claimed job as [`CLAIM_SQLITE`] renders it; `args` is the stored JSON text.
type Picked = (
    i64,
    String,
    String,
    String,
    i32,
    i32,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// A job as a worker claims it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Claimed {
    /// Identifier.
    pub id: i64,
    /// Queue.
    pub queue: String,
    /// Kind.
    pub kind: String,
    /// Arguments (moved out to the handler when it starts).
    #[sqlx(json)]
    pub args: Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The group it belongs to.
    pub group_id: Option<i64>,
    /// Progress recorded by an earlier attempt.
    pub progress_done: Option<i64>,
    /// Its total.
    pub progress_total: Option<i64>,
    /// Its note.
    pub progress_message: Option<String>,
}

/// The final outcome of one attempt, as the worker reports it.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub id: i64,
    /// The job's queue (for the per-minute counts).
    pub queue: String,
    /// The attempt that ended (from 1).
    pub attempt: i32,
    pub group_id: Option<i64>,
    pub end: End,
    /// Progress not yet written when the attempt ended.
    pub progress: Option<crate::context::Progress>,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub(crate) enum End {
    Completed(Option<Value>),
    /// `retry_at` is when to try again, or `None` when this failure is final.
    Failed {
        error: String,
        retry_at: Option<i64>,
    },
    Cancelled(String),
}

/// What [`Store::finish`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Finished {
    /// Outcomes recorded.
    pub recorded: usize,
    /// Outcomes dropped because the lease was lost (the job was rescued meanwhile).
    pub fenced_off: usize,
}

/// A job the rescuer moved.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Rescued {
    /// The job.
    pub id: i64,
    /// Where it went: `available`, or `failed`/`cancelled`.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// Its queue.
    pub queue: String,
    /// Its kind.
    pub kind: String,
    /// Its group.
    pub group_id: Option<i64>,
}

impl Store {
    /// Claims up to `limit` due jobs of `queue` for `worker`, leased until `lease_until`.
    pub(crate) async fn claim(
        &self,
        queue: &str,
        limit: usize,
        worker: &str,
        lease_until: i64,
    ) -> Result<Vec<Claimed>> {
        let now = now_ms();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        // The same parameters in the same order for both statements.
        macro_rules! bound {
            ($query:expr) => {
                $query
                    .bind(worker)
                    .bind(lease_until)
                    .bind(now)
                    .bind(queue)
                    .bind(limit)
            };
        }
        match self.writer() {
            Db::Pg(pool) => {
                let pool = self.claimer().unwrap_or(pool);
                Ok(bound!(sqlx::query_as(CLAIM_PG)).fetch_all(pool).await?)
            }
            Db::Lite(pool) => {
                let rows: Vec<String> = bound!(sqlx::query_scalar(CLAIM_SQLITE))
                    .fetch_all(pool)
                    .await?;
                rows.iter().map(|row| claimed_from_json(row)).collect()
            }
        }
    }

    /// When the next waiting job of `queue` becomes due, if any waits.
    pub(crate) async fn next_due(&self, queue: &str) -> Result<Option<i64>> {
        let sql = match self.reader() {
            Db::Pg(_) => NEXT_DUE_PG,
            Db::Lite(_) => NEXT_DUE_SQLITE,
        };
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_scalar(sql).bind(queue).fetch_one(pool).await?
        }))
    }

    /// The jobs `worker` holds and whether cancellation was asked of each. A job the worker
    /// runs that is missing here has been rescued: its lease was lost. A read: the lease
    /// itself lives on the worker's row (see [`crate::worker`]), so a heartbeat writes one
    /// row however many jobs run, and never contends with the worker's own completions.
    pub(crate) async fn held_jobs(&self, worker: &str) -> Result<Vec<(i64, bool)>> {
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT id, cancel_requested \
                 FROM job \
                 WHERE lease_owner = $1 AND state = 'running'",
            )
            .bind(worker)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Writes progress of running jobs (`id`, progress), one statement each: a transaction
    /// holding several rows could deadlock against a batch of completions holding others.
    pub(crate) async fn write_progress(
        &self,
        worker: &str,
        updates: &[(i64, crate::context::Progress)],
    ) -> Result<()> {
        for (id, progress) in updates {
            dispatch!(self.writer(), pool => {
                sqlx::query(WRITE_PROGRESS)
                    .bind(id)
                    .bind(progress.done)
                    .bind(progress.total)
                    .bind(progress.message.as_deref())
                    .bind(worker)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
        }
        Ok(())
    }

    /// Records a batch of outcomes in one transaction, settling groups.
    pub(crate) async fn finish(&self, worker: &str, outcomes: &[Outcome]) -> Result<Finished> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let mut report = Finished::default();
        let mut settled_groups = Vec::new();
        for outcome in outcomes {
            if let Some(progress) = &outcome.progress {
                tx.write_progress(worker, outcome.id, progress).await?;
            }
        }
        // Completions are the hot path: one statement per batch. Only group members need
        // their row back (to settle the group); for the rest the count of rows updated says
        // how many were fenced off, and no result rows cross over from the database.
        let (members, loners): (Vec<_>, Vec<_>) = outcomes
            .iter()
            .filter_map(|o| match &o.end {
                End::Completed(result) => Some((o.id, result.as_ref(), o.group_id)),
                _ => None,
            })
            .partition(|c| c.2.is_some());
        // Jobs completing after a failed attempt keep this last one in their history too.
        let retried: Vec<i64> = outcomes
            .iter()
            .filter(|o| o.attempt > 1 && matches!(o.end, End::Completed(_)))
            .map(|o| o.id)
            .collect();
        tx.record_attempts(Some(worker), now, &retried, "completed", None)
            .await?;
        let updated = tx.complete(worker, now, &loners).await?;
        report.recorded += updated;
        report.fenced_off += loners.len() - updated;
        // Counted per queue as the outcomes say; a completion fenced off (its lease lost,
        // so it runs again) is not counted, taken from the batch's first queues. Keyed by
        // the outcomes' own names: no allocation per job.
        let mut counts: std::collections::BTreeMap<&str, crate::stats::Counts> =
            std::collections::BTreeMap::new();
        let mut uncounted = loners.len() - updated;
        for outcome in outcomes {
            match &outcome.end {
                End::Completed(_) if outcome.group_id.is_none() && uncounted > 0 => uncounted -= 1,
                End::Completed(_) if outcome.group_id.is_none() => {
                    counts.entry(&outcome.queue).or_default().completed += 1;
                }
                End::Completed(_) | End::Cancelled(_) => {}
                End::Failed { .. } => counts.entry(&outcome.queue).or_default().failed += 1,
            }
        }
        let done = tx.complete_returning(worker, now, &members).await?;
        report.recorded += done.len();
        report.fenced_off += members.len() - done.len();
        if !done.is_empty() {
            let queue_of: std::collections::HashMap<i64, &str> =
                outcomes.iter().map(|o| (o.id, o.queue.as_str())).collect();
            for (id, _) in &done {
                if let Some(queue) = queue_of.get(id) {
                    counts.entry(queue).or_default().completed += 1;
                }
            }
        }
        settled_groups.extend(done.iter().filter_map(|d| d.1));

        for outcome in outcomes {
            let (state, run_at, error) = match &outcome.end {
                End::Completed(_) => continue,
                End::Failed {
                    error,
                    retry_at: Some(at),
                } => (JobState::Retryable, *at, error.as_str()),
                End::Failed {
                    error,
                    retry_at: None,
                } => (JobState::Failed, now, error.as_str()),
                End::Cancelled(reason) => (JobState::Cancelled, now, reason.as_str()),
            };
            let finished_at = state.is_final().then_some(now);
            let how = match state {
                JobState::Cancelled => "cancelled",
                _ => "failed",
            };
            tx.record_attempts(Some(worker), now, &[outcome.id], how, Some(error))
                .await?;
            let row: Option<(i64,)> = dispatch!(tx.conn(), conn => {
                sqlx::query_as(
                    "UPDATE job \
                     SET state = $2, run_at = $3, error = $4, finished_at = $5, \
                         lease_owner = NULL, lease_until = NULL \
                     WHERE id = $1 AND lease_owner = $6 AND state = 'running' \
                     RETURNING id",
                )
                .bind(outcome.id)
                .bind(state.as_str())
                .bind(run_at)
                .bind(error)
                .bind(finished_at)
                .bind(worker)
                .fetch_optional(conn)
                .await?
            });
            if row.is_some() {
                report.recorded += 1;
                if state.is_final() {
                    settled_groups.extend(outcome.group_id);
                }
            } else {
                report.fenced_off += 1;
            }
        }
        tx.count_outcomes(&counts).await?;
        tx.settle_groups(settled_groups).await?;
        tx.commit().await?;
        Ok(report)
    }

    /// Returns every job `worker` still runs to the queue, as if never started (its attempt
    /// is not counted); jobs whose cancellation was asked end `cancelled` instead.
    pub(crate) async fn hand_back(&self, worker: &str) -> Result<Vec<Rescued>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        let rows: Vec<Rescued> = dispatch!(tx.conn(), conn => {
            sqlx::query_as(
                "UPDATE job \
                 SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'available' END, \
                     finished_at = CASE WHEN cancel_requested THEN $1 ELSE NULL END, \
                     attempt = CASE WHEN cancel_requested THEN attempt ELSE attempt - 1 END, \
                     lease_owner = NULL, lease_until = NULL \
                 WHERE lease_owner = $2 AND state = 'running' \
                 RETURNING id, state, queue, kind, group_id",
            )
            .bind(now)
            .bind(worker)
            .fetch_all(conn)
            .await?
        });
        tx.release(&rows).await?;
        tx.commit().await?;
        Ok(rows)
    }

    /// The rescuer: moves running jobs whose lease expired back to `available` (or to
    /// `failed` when their attempts are spent, `cancelled` when cancellation was asked).
    /// A job's lease has expired when the lease taken at its claim has passed and its worker
    /// holds no live lease (its row is gone or its `lease_until` has passed): the worker's
    /// heartbeat renews the lease of all its jobs at once. Safe to run in many processes at
    /// once. Handles at most `limit` jobs per call.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn rescue_expired(&self, limit: i64) -> Result<Vec<Rescued>> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        // Which jobs (locked on PostgreSQL, where rescuers may race), then each one's lost
        // attempt into its history while its lease owner is still known, then the rescue.
        let pick = tx.sql(PICK_EXPIRED);
        let picked: Vec<i64> = dispatch!(tx.conn(), conn => {
            sqlx::query_scalar(pick).bind(now).bind(limit).fetch_all(conn).await?
        });
        if picked.is_empty() {
            tx.commit().await?;
            return Ok(Vec::new());
        }
        tx.record_attempts(None, now, &picked, "lost", Some(LEASE_EXPIRED))
            .await?;
        let rows: Vec<Rescued> = match tx.conn() {
            crate::store::Db::Pg(conn) => {
                sqlx::query_as(RESCUE.postgres)
                    .bind(now)
                    .bind(&picked)
                    .bind(LEASE_EXPIRED)
                    .fetch_all(conn)
                    .await?
            }
            crate::store::Db::Lite(conn) => {
                sqlx::query_as(RESCUE.sqlite)
                    .bind(now)
                    .bind(serde_json::to_string(&picked).expect("ids serialise"))
                    .bind(LEASE_EXPIRED)
                    .fetch_all(conn)
                    .await?
            }
        };
        tx.release(&rows).await?;
        tx.commit().await?;
        for row in &rows {
            tracing::warn!(job = row.id, kind = %row.kind, to = %row.state, "rescued a job whose lease expired");
            metrics::counter!("conveyor_lease_rescues_total", "queue" => row.queue.clone(), "kind" => row.kind.clone()).increment(1);
        }
        Ok(rows)
    }
}

/// A running job whose lease has expired, at time `$1`.
macro_rules! lease_expired {
    () => {
        "state = 'running' AND lease_until < $1 \
         AND NOT EXISTS ( \
             SELECT 1 FROM worker \
             WHERE worker.id = job.lease_owner AND worker.lease_until >= $1)"
    };
}

/// Why a rescued attempt ended, in the job's error and its attempt's row.
const LEASE_EXPIRED: &str = "lease expired: the worker stopped heartbeating (crashed or cut off)";

/// Up to `$2` running jobs whose lease expired at `$1`.
const PICK_EXPIRED: crate::store::Sql = crate::store::Sql {
    postgres: concat!(
        "SELECT id FROM job WHERE ",
        lease_expired!(),
        " LIMIT $2 FOR UPDATE SKIP LOCKED"
    ),
    sqlite: concat!("SELECT id FROM job WHERE ", lease_expired!(), " LIMIT $2"),
};

/// Rescues jobs `$2` (picked above) whose lease expired at `$1`, with error `$3`.
const RESCUE: crate::store::Sql = crate::store::Sql {
    postgres: concat!(
        "UPDATE job SET ",
        rescue_set!(),
        " WHERE id = ANY($2) AND ",
        lease_expired!(),
        " RETURNING id, state, queue, kind, group_id"
    ),
    sqlite: concat!(
        "UPDATE job SET ",
        rescue_set!(),
        " WHERE id IN (SELECT value FROM json_each($2)) AND ",
        lease_expired!(),
        " RETURNING id, state, queue, kind, group_id"
    ),
};

/// The `SET` list of a rescue.
macro_rules! rescue_set {
    () => {
        "state = CASE WHEN cancel_requested THEN 'cancelled' \
                      WHEN attempt >= max_attempts THEN 'failed' \
                      ELSE 'available' END, \
         finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN $1 ELSE NULL END, \
         error = $3, \
         lease_owner = NULL, lease_until = NULL"
    };
}
use rescue_set;

const WRITE_PROGRESS: &str = "UPDATE job \
     SET progress_done = $2, progress_total = $3, progress_message = $4 \
     WHERE id = $1 AND lease_owner = $5 AND state = 'running'";

/// Completes a batch on PostgreSQL; `$1` ids, `$2` results, `$3` now, `$4` worker.
macro_rules! complete_pg {
    ($returning:literal) => {
        concat!(
            "UPDATE job \
             SET state = 'completed', result = NULLIF(done.result, 'null'::JSONB), \
                 finished_at = $3, lease_owner = NULL, lease_until = NULL \
             FROM UNNEST($1::BIGINT[], $2::JSONB[]) AS done(id, result) \
             WHERE job.id = done.id AND job.lease_owner = $4 AND job.state = 'running'",
            $returning
        )
    };
}

/// Completes a batch on SQLite; `$1` a JSON array of `[id, result]`, `$2` now, `$3` worker.
/// sqlx runs each SQLite statement on a worker thread behind a channel, so a statement per
/// row would cost a thread hand-off each. MATERIALIZED makes SQLite scan the batch and look
/// each row up by rowid; without it, it walks the worker's running rows and re-reads the JSON
/// for each.
macro_rules! complete_sqlite {
    ($returning:literal) => {
        concat!(
            "WITH done (id, result) AS MATERIALIZED ( \
                 SELECT value ->> 0, NULLIF(value -> 1, 'null') FROM json_each($1)) \
             UPDATE job \
             SET state = 'completed', result = done.result, \
                 finished_at = $2, lease_owner = NULL, lease_until = NULL \
             FROM done \
             WHERE job.id = done.id AND job.lease_owner = $3 AND job.state = 'running'",
            $returning
        )
    };
}

/// A completed job: id, result, group.
type Completion<'a> = (i64, Option<&'a Value>, Option<i64>);

impl Tx {
    /// Completes `batch` for `worker`; returns how many rows it updated.
    async fn complete(
        &mut self,
        worker: &str,
        now: i64,
        batch: &[Completion<'_>],
    ) -> Result<usize> {
        if batch.is_empty() {
            return Ok(0);
        }
        let updated = match self.conn() {
            Db::Pg(conn) => {
                let (ids, results) = pg_arrays(batch);
                sqlx::query(complete_pg!(""))
                    .bind(ids)
                    .bind(results)
                    .bind(now)
                    .bind(worker)
                    .execute(conn)
                    .await?
                    .rows_affected()
            }
            Db::Lite(conn) => sqlx::query(complete_sqlite!(""))
                .bind(Json(sqlite_array(batch)))
                .bind(now)
                .bind(worker)
                .execute(conn)
                .await?
                .rows_affected(),
        };
        Ok(usize::try_from(updated).unwrap_or(usize::MAX))
    }

    /// Completes `batch` for `worker`; returns the id and group of each row it updated.
    async fn complete_returning(
        &mut self,
        worker: &str,
        now: i64,
        batch: &[Completion<'_>],
    ) -> Result<Vec<(i64, Option<i64>)>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        Ok(match self.conn() {
            Db::Pg(conn) => {
                let (ids, results) = pg_arrays(batch);
                sqlx::query_as(complete_pg!(" RETURNING job.id, job.group_id"))
                    .bind(ids)
                    .bind(results)
                    .bind(now)
                    .bind(worker)
                    .fetch_all(conn)
                    .await?
            }
            Db::Lite(conn) => {
                sqlx::query_as(complete_sqlite!(" RETURNING job.id, job.group_id"))
                    .bind(Json(sqlite_array(batch)))
                    .bind(now)
                    .bind(worker)
                    .fetch_all(conn)
                    .await?
            }
        })
    }

    async fn write_progress(
        &mut self,
        worker: &str,
        id: i64,
        progress: &crate::context::Progress,
    ) -> Result<()> {
        dispatch!(self.conn(), conn => {
            sqlx::query(WRITE_PROGRESS)
            .bind(id)
            .bind(progress.done)
            .bind(progress.total)
            .bind(progress.message.as_deref())
            .bind(worker)
            .execute(conn)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// After jobs left `running` without a worker's outcome: settle the groups of those that
    /// ended and wake the queues of those that wait again.
    async fn release(&mut self, rows: &[Rescued]) -> Result<()> {
        let ended = rows
            .iter()
            .filter(|r| r.state.is_final())
            .filter_map(|r| r.group_id);
        self.settle_groups(ended.collect()).await?;
        for row in rows.iter().filter(|r| !r.state.is_final()) {
            self.wake_on_commit(&row.queue).await?;
        }
        Ok(())
    }
}

/// A job as [`CLAIM_SQLITE`] returns it.
fn claimed_from_json(row: &str) -> Result<Claimed> {
    let p: Picked = serde_json::from_str(row).map_err(|e| {
        crate::Error::Database(sqlx::Error::Decode(
            format!("a claimed row as JSON: {e}").into(),
        ))
    })?;
    Ok(Claimed {
        id: p.0,
        queue: p.1,
        kind: p.2,
        // Always JSON written by the engine; text that is not stays a string, and the
        // handler's decoding names the problem.
        args: serde_json::from_str(&p.3).unwrap_or(Value::String(p.3)),
        attempt: p.4,
        max_attempts: p.5,
        group_id: p.6,
        progress_done: p.7,
        progress_total: p.8,
        progress_message: p.9,
    })
}

/// A batch as PostgreSQL's `UNNEST` takes it: ids, and results (`null` for none).
fn pg_arrays<'a>(batch: &[Completion<'a>]) -> (Vec<i64>, Vec<Json<&'a Value>>) {
    let ids = batch.iter().map(|c| c.0).collect();
    let results = batch
        .iter()
        .map(|c| Json(c.1.unwrap_or(&Value::Null)))
        .collect();
    (ids, results)
}

/// A batch as SQLite's `json_each` takes it: `[[id, result], ...]`.
fn sqlite_array<'a>(batch: &[Completion<'a>]) -> Vec<(i64, &'a Value)> {
    batch
        .iter()
        .map(|c| (c.0, c.1.unwrap_or(&Value::Null)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 0004 rebuilds SQLite's job table: rows survive, an id is never reused, and
    /// the state check still refuses an unknown state.
    #[tokio::test]
    async fn rebuilding_the_sqlite_job_table_keeps_rows_and_ids() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        let Db::Lite(pool) = store.writer() else {
            unreachable!("an SQLite store")
        };
        let mut before = sqlx::migrate!("./migrations/sqlite");
        before.migrations = before
            .migrations
            .iter()
            .filter(|m| m.version < 4)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        before.run(pool).await.unwrap();
        let insert = "INSERT INTO job (queue, kind, args, state, max_attempts, run_at, created_at) \
                      VALUES ('q', 'noop', '{}', $1, 1, 0, 0) RETURNING id";
        for _ in 0..3 {
            sqlx::query(insert)
                .bind("available")
                .execute(pool)
                .await
                .unwrap();
        }
        sqlx::query("DELETE FROM job WHERE id = 3")
            .execute(pool)
            .await
            .unwrap();

        store.migrate().await.unwrap();
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM job ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
        assert_eq!(ids, [1, 2]);
        let next: i64 = sqlx::query_scalar(insert)
            .bind("running")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(next, 4, "the deleted job's id is not reused");
        let bogus = sqlx::query(insert).bind("bogus").execute(pool).await;
        assert!(bogus.is_err(), "an unknown state passed the check");
    }

    /// The claim and `next_due` must spell the claimable condition as SQLite's partial index
    /// does, or SQLite scans the whole table for them.
    #[tokio::test]
    async fn sqlite_claims_through_the_claimable_index() {
        let store = Store::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let Db::Lite(pool) = store.writer() else {
            unreachable!("an SQLite store")
        };
        for (name, sql) in [("claim", CLAIM_SQLITE), ("next_due", NEXT_DUE_SQLITE)] {
            let plan: Vec<(i64, i64, i64, String)> =
                sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
                    .bind("w")
                    .bind(1_i64)
                    .bind(1_i64)
                    .bind("q")
                    .bind(10_i64)
                    .fetch_all(pool)
                    .await
                    .unwrap();
            assert!(
                plan.iter().any(|row| row.3.contains("job_claimable_idx")),
                "{name}: {plan:?}"
            );
        }
    }
}
