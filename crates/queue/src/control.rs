//! Reading and steering jobs from outside a worker: look up, list, cancel, retry, queue
//! counts, the worker registry, per-queue concurrency.

use serde_json::Value;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::job::{Job, JobState, job_columns};
use crate::store::{Db, Sql, Store, dispatch};

/// Which jobs [`Store::list`] returns: newest first, `limit` at most, ids below `before`.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this state.
    pub state: Option<JobState>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this queue.
    pub queue: Option<String>,
    /// None of these kinds (the dashboard hides apps' internal kinds unless asked).
    pub exclude_kinds: Option<Vec<String>>,
    /// Only jobs whose arguments' JSON text contains this (bounded by the caller).
    pub args_contain: Option<String>,
    /// The cursor: only ids lower than this.
    pub before: Option<i64>,
    /// Page size (the caller bounds it).
    pub limit: i64,
}

/// `SELECT` of [`Store::list`], with the list of excluded kinds read from JSON (`$6`) and
/// the arguments' text matched with `LIKE` (`$7`, `\` escapes). The text loses the space
/// after each `:` and `,` (as the pattern does, in [`like_pattern`]): PostgreSQL prints
/// `jsonb` with them and SQLite keeps the compact text, and a search must mean the same on
/// both.
macro_rules! list_sql {
    ($excluded:literal, $args:literal) => {
        concat!(
            "SELECT ",
            job_columns!(),
            " FROM job \
             WHERE ($1 IS NULL OR state = $1) \
               AND ($2 IS NULL OR kind = $2) \
               AND ($3 IS NULL OR queue = $3) \
               AND id < $4 \
               AND ($6 IS NULL OR kind NOT IN (",
            $excluded,
            ")) \
               AND ($7 IS NULL OR replace(replace(",
            $args,
            ", ': ', ':'), ', ', ',') LIKE $7 ESCAPE '\\') \
             ORDER BY id DESC \
             LIMIT $5"
        )
    };
}

const LIST: crate::store::Sql = crate::store::Sql {
    postgres: list_sql!(
        "SELECT json_array_elements_text(CAST($6 AS json))",
        "CAST(args AS text)"
    ),
    sqlite: list_sql!("SELECT value FROM json_each($6)", "args"),
};

/// `%text%` with `LIKE`'s wildcards in `text` escaped, without the space after each `:`
/// and `,` (as the text searched).
fn like_pattern(text: &str) -> String {
    let text = text.replace(": ", ":").replace(", ", ",");
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Counts of one queue's jobs by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// The queue.
    pub queue: String,
    /// Jobs per state, every state present.
    pub by_state: Vec<(JobState, i64)>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
}

/// A worker process as its heartbeats describe it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct WorkerInfo {
    /// Its id (also each of its jobs' `lease_owner`).
    pub id: String,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// Queue name → concurrency, as currently applied.
    #[sqlx(json)]
    pub queues: Value,
    /// Jobs running at its last heartbeat.
    pub running: i64,
    /// When it started (ms since epoch).
    pub started_at: i64,
    /// Its last heartbeat (ms since epoch).
    pub last_seen_at: i64,
}

impl Store {
    /// The job with this id.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn get(&self, id: i64) -> Result<Option<Job>> {
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_as(concat!("SELECT ", job_columns!(), " FROM job WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Jobs matching `filter`, newest first.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        // NULL parameters switch a condition off, so one statement serves every filter.
        let sql = self.sql(LIST);
        let excluded = filter
            .exclude_kinds
            .as_ref()
            .map(|kinds| serde_json::to_string(kinds).expect("strings serialise"));
        let pattern = filter.args_contain.as_deref().map(like_pattern);
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_as(sql)
            .bind(filter.state.map(JobState::as_str))
            .bind(filter.kind.as_deref())
            .bind(filter.queue.as_deref())
            .bind(filter.before.unwrap_or(i64::MAX))
            .bind(filter.limit)
            .bind(excluded.as_deref())
            .bind(pattern.as_deref())
            .fetch_all(pool)
            .await?
        }))
    }

    /// Cancels a job. A waiting job is cancelled at once and never runs; a running job is
    /// asked to stop (its worker is told at once, and at its next heartbeat at the latest)
    /// and ends `cancelled` when its handler returns. Returns the job as it now is.
    ///
    /// # Errors
    /// [`Error::WrongState`] for a job that has already ended; [`Error::Database`].
    pub async fn cancel(&self, id: i64) -> Result<Option<Job>> {
        let cancelled = self.cancel_page(&[id]).await?;
        let job = self.get(id).await?;
        match &job {
            Some(job) if cancelled == 0 => Err(Error::WrongState {
                id,
                state: job.state.to_string(),
                action: "cancel",
            }),
            _ => Ok(job),
        }
    }

    /// Runs an ended job (completed, failed or cancelled) again now, with a fresh count of
    /// attempts (and a fresh attempt history), or moves a waiting one's `run_at` to now. Its
    /// last error is kept.
    ///
    /// # Errors
    /// [`Error::WrongState`] for a running or pending job; [`Error::Duplicate`] when another
    /// live job now holds its unique key; [`Error::Database`].
    pub async fn retry(&self, id: i64) -> Result<Option<Job>> {
        let Some(mut retried) = self.retry_ids(&[id]).await? else {
            let job = self.get(id).await?;
            return Err(Error::Duplicate(
                job.and_then(|j| j.unique_key).unwrap_or_default(),
            ));
        };
        if let Some(job) = retried.pop() {
            return Ok(Some(job));
        }
        match self.get(id).await? {
            Some(job) => Err(Error::WrongState {
                id,
                state: job.state.to_string(),
                action: "retry",
            }),
            None => Ok(None),
        }
    }

    /// Job counts by queue and state, and each queue's completions in the last minute.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn queue_counts(&self) -> Result<Vec<QueueCounts>> {
        let since = now_ms() - 60_000;
        let rows: Vec<(String, String, i64, i64)> = dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT queue, state, COUNT(*), \
                        SUM(CASE WHEN state = 'completed' AND finished_at >= $1 THEN 1 ELSE 0 END) \
                 FROM job \
                 GROUP BY queue, state \
                 ORDER BY queue",
            )
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        let mut queues: Vec<QueueCounts> = Vec::new();
        for (queue, state, count, recent) in rows {
            if queues.last().is_none_or(|q| q.queue != queue) {
                queues.push(QueueCounts {
                    queue: queue.clone(),
                    by_state: JobState::ALL.iter().map(|s| (*s, 0)).collect(),
                    completed_last_minute: 0,
                });
            }
            let entry = queues.last_mut().expect("pushed above when missing");
            if let Ok(state) = state.parse::<JobState>()
                && let Some(slot) = entry.by_state.iter_mut().find(|(s, _)| *s == state)
            {
                slot.1 = count;
            }
            entry.completed_last_minute += recent;
        }
        Ok(queues)
    }

    /// Workers whose last heartbeat is at most `seen_within_ms` old.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn workers(&self, seen_within_ms: i64) -> Result<Vec<WorkerInfo>> {
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT id, host, pid, queues, running, started_at, last_seen_at \
                 FROM worker \
                 WHERE last_seen_at >= $1 \
                 ORDER BY started_at, id",
            )
            .bind(now_ms() - seen_within_ms)
            .fetch_all(pool)
            .await?
        }))
    }

    /// Sets how many jobs of `queue` each worker runs at once; workers apply it at their
    /// next heartbeat (a third of a lease). Zero pauses the queue.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn set_concurrency(&self, queue: &str, concurrency: u32) -> Result<()> {
        dispatch!(self.writer(), pool => {
            sqlx::query(
                "INSERT INTO queue_setting (name, concurrency, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE \
                 SET concurrency = excluded.concurrency, updated_at = excluded.updated_at",
            )
            .bind(queue)
            .bind(i64::from(concurrency))
            .bind(now_ms())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(())
    }

    /// Forgets the concurrency set for `queue`: workers go back to their own configured
    /// value at their next heartbeat (how a paused queue resumes). Whether one was set.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn clear_concurrency(&self, queue: &str) -> Result<bool> {
        let deleted = dispatch!(self.writer(), pool => {
            sqlx::query("DELETE FROM queue_setting WHERE name = $1")
                .bind(queue)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(deleted > 0)
    }

    /// Concurrency set through the API, by queue.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn queue_settings(&self) -> Result<Vec<(String, usize)>> {
        let rows: Vec<(String, i64)> = dispatch!(self.reader(), pool => {
            sqlx::query_as("SELECT name, CAST(concurrency AS BIGINT) FROM queue_setting ORDER BY name")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(name, n)| (name, usize::try_from(n).unwrap_or(0)))
            .collect())
    }
}

/// Runs a bulk statement over a page of job ids, `$1` (an array on PostgreSQL, JSON on
/// SQLite), then the bracketed values as `$2`...: its rows as `$row`, or with `execute`, how
/// many rows it changed.
macro_rules! over_ids {
    ($tx:ident, $statement:expr, $ids:expr, [$($value:expr),*], $row:ty) => {{
        let (sql, ids): (&str, &[i64]) = ($tx.sql($statement), $ids);
        match $tx.conn() {
            Db::Pg(conn) => sqlx::query_as::<_, $row>(sql).bind(ids)
                $(.bind($value))*.fetch_all(conn).await,
            Db::Lite(conn) => sqlx::query_as::<_, $row>(sql)
                .bind(serde_json::to_string(ids).expect("ids serialise"))
                $(.bind($value))*.fetch_all(conn).await,
        }
    }};
    (execute $tx:ident, $statement:expr, $ids:expr, [$($value:expr),*]) => {{
        let (sql, ids): (&str, &[i64]) = ($tx.sql($statement), $ids);
        match $tx.conn() {
            Db::Pg(conn) => sqlx::query(sql).bind(ids)
                $(.bind($value))*.execute(conn).await.map(|done| done.rows_affected()),
            Db::Lite(conn) => sqlx::query(sql)
                .bind(serde_json::to_string(ids).expect("ids serialise"))
                $(.bind($value))*.execute(conn).await.map(|done| done.rows_affected()),
        }
    }};
}

/// A statement over a page of job ids: `WHERE <column> IN $1 AND <condition>`.
macro_rules! bulk_sql {
    ($head:literal, $column:literal, $($tail:tt)*) => {
        Sql {
            postgres: concat!($head, " WHERE ", $column, " = ANY($1)", $($tail)*),
            sqlite: concat!(
                $head,
                " WHERE ",
                $column,
                " IN (SELECT value FROM json_each($1))",
                $($tail)*
            ),
        }
    };
}

/// [`Store::retry`]'s statement, over a page of ids (one for a single job).
const BULK_RETRY: Sql = bulk_sql!(
    "UPDATE job \
     SET state = 'available', run_at = $2, finished_at = NULL, cancel_requested = FALSE, \
         attempt = CASE WHEN state IN ('completed', 'failed', 'cancelled') THEN 0 ELSE attempt END",
    "id",
    " AND state IN ('scheduled', 'available', 'retryable', 'completed', 'failed', 'cancelled') \
     RETURNING ",
    job_columns!()
);

/// The attempt history of jobs retried afresh.
const BULK_FORGET_ATTEMPTS: Sql = bulk_sql!("DELETE FROM job_attempt", "job_id",);

/// [`Store::cancel`] of waiting jobs, over a page.
const BULK_CANCEL_WAITING: Sql = bulk_sql!(
    "UPDATE job SET state = 'cancelled', finished_at = $2, error = 'cancelled before it ran'",
    "id",
    " AND state IN ('pending', 'scheduled', 'available', 'retryable') RETURNING id, group_id"
);

/// [`Store::cancel`] of running jobs (their workers stop them), over a page.
const BULK_CANCEL_RUNNING: Sql = bulk_sql!(
    "UPDATE job SET cancel_requested = TRUE",
    "id",
    " AND state = 'running' RETURNING id"
);

/// [`Store::delete`]'s statement, over a page of ids (one for a single job).
const BULK_DELETE: Sql = bulk_sql!(
    "DELETE FROM job",
    "id",
    " AND state IN ('completed', 'failed', 'cancelled') \
     AND NOT EXISTS ( \
         SELECT 1 FROM job_group \
         JOIN job AS continuation ON continuation.id = job_group.continuation_id \
         WHERE job_group.id = job.group_id \
           AND continuation.state NOT IN ('completed', 'failed', 'cancelled'))"
);

/// What [`Store::bulk`] does to each job the filter selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// [`Store::retry`]: ended jobs run again, waiting ones now.
    Retry,
    /// [`Store::cancel`]: jobs that have not ended.
    Cancel,
    /// [`Store::delete`]: ended jobs.
    Delete,
}

/// Most jobs one bulk action touches; the answer says when more matched.
pub const BULK_MAX: usize = 10_000;

/// What [`Store::bulk`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BulkOutcome {
    /// Jobs the filter selected (at most [`BULK_MAX`]).
    pub matched: usize,
    /// Jobs the action changed (the others were in a state it does not apply to).
    pub done: usize,
    /// More than [`BULK_MAX`] matched: run it again for the rest.
    pub more: bool,
}

impl Store {
    /// Deletes an ended job (and, with it, its attempt history). A group member whose
    /// continuation still waits is kept, as the cleaner keeps it.
    ///
    /// # Errors
    /// [`Error::WrongState`] for a job that has not ended or that its group still needs;
    /// [`Error::Database`].
    pub async fn delete(&self, id: i64) -> Result<Option<()>> {
        if self.delete_page(&[id]).await? > 0 {
            return Ok(Some(()));
        }
        match self.get(id).await? {
            Some(job) => Err(Error::WrongState {
                id,
                state: job.state.to_string(),
                action: "delete",
            }),
            None => Ok(None),
        }
    }

    /// Applies `action` to every job `filter` selects (its cursor and page size ignored), at
    /// most [`BULK_MAX`], newest first; with `dry_run`, only counts them. A job in a state the
    /// action does not apply to is skipped, not an error. Each page of jobs is one
    /// transaction of a few statements, not a transaction a job.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn bulk(
        &self,
        action: BulkAction,
        filter: &JobFilter,
        dry_run: bool,
    ) -> Result<BulkOutcome> {
        const PAGE: usize = 500;
        let mut outcome = BulkOutcome::default();
        let mut before = None;
        loop {
            let page = self
                .list(&JobFilter {
                    before,
                    limit: PAGE as i64,
                    ..filter.clone()
                })
                .await?;
            let room = BULK_MAX - outcome.matched;
            let ids: Vec<i64> = page.iter().take(room).map(|job| job.id).collect();
            outcome.matched += ids.len();
            if !dry_run && !ids.is_empty() {
                outcome.done += match action {
                    BulkAction::Retry => self.retry_page(&ids).await?,
                    BulkAction::Cancel => self.cancel_page(&ids).await?,
                    BulkAction::Delete => self.delete_page(&ids).await?,
                };
            }
            if page.len() > room {
                outcome.more = true;
                return Ok(outcome);
            }
            match page.last() {
                Some(last) if page.len() == PAGE => before = Some(last.id),
                _ => return Ok(outcome),
            }
        }
    }

    /// [`Store::retry`] of each of `ids` in one transaction; how many ran again. When one
    /// would take a live job's unique key, the page goes job by job and skips that one.
    async fn retry_page(&self, ids: &[i64]) -> Result<usize> {
        match self.retry_ids(ids).await? {
            Some(retried) => Ok(retried.len()),
            None => self.one_by_one(ids, BulkAction::Retry).await,
        }
    }

    /// Runs each of `ids` again in one transaction: the jobs as it left them, or `None`
    /// (nothing done) when one would take a live job's unique key.
    async fn retry_ids(&self, ids: &[i64]) -> Result<Option<Vec<Job>>> {
        let mut tx = self.begin().await?;
        let retried: Vec<Job> = match over_ids!(tx, BULK_RETRY, ids, [now_ms()], Job) {
            Ok(jobs) => jobs,
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // Fresh attempts: their history starts again with them.
        let fresh: Vec<i64> = retried
            .iter()
            .filter(|job| job.attempt == 0)
            .map(|job| job.id)
            .collect();
        if !fresh.is_empty() {
            over_ids!(execute tx, BULK_FORGET_ATTEMPTS, &fresh, [])?;
        }
        for job in &retried {
            tx.wake_on_commit(&job.queue).await?;
        }
        tx.commit().await?;
        Ok(Some(retried))
    }

    /// [`Store::cancel`] of each of `ids` in one transaction; how many were cancelled or
    /// asked to stop.
    async fn cancel_page(&self, ids: &[i64]) -> Result<usize> {
        let mut tx = self.begin().await?;
        let waiting: Vec<(i64, Option<i64>)> =
            over_ids!(tx, BULK_CANCEL_WAITING, ids, [now_ms()], (i64, Option<i64>))?;
        tx.settle_groups(waiting.iter().filter_map(|w| w.1).collect())
            .await?;
        let running: Vec<(i64,)> = over_ids!(tx, BULK_CANCEL_RUNNING, ids, [], (i64,))?;
        if let Db::Pg(conn) = tx.conn() {
            for (id,) in &running {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(self.channel())
                    .bind(format!("c:{id}"))
                    .execute(&mut *conn)
                    .await?;
            }
        }
        tx.commit().await?;
        for (id,) in &running {
            self.wake().job_cancelled(*id);
        }
        Ok(waiting.len() + running.len())
    }

    /// [`Store::delete`] of each of `ids` in one statement; how many were deleted.
    async fn delete_page(&self, ids: &[i64]) -> Result<usize> {
        let mut tx = self.begin().await?;
        let deleted = over_ids!(execute tx, BULK_DELETE, ids, [])?;
        tx.commit().await?;
        Ok(deleted as usize)
    }

    /// `action` job by job, skipping those in a state it does not apply to.
    async fn one_by_one(&self, ids: &[i64], action: BulkAction) -> Result<usize> {
        let mut done = 0;
        for &id in ids {
            let applied = match action {
                BulkAction::Retry => self.retry(id).await.map(|j| j.is_some()),
                BulkAction::Cancel => self.cancel(id).await.map(|j| j.is_some()),
                BulkAction::Delete => self.delete(id).await.map(|j| j.is_some()),
            };
            match applied {
                Ok(true) => done += 1,
                Ok(false) | Err(Error::WrongState { .. } | Error::Duplicate(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(done)
    }
}

impl Store {
    /// Asks worker `id` to finish its running jobs and stop; it reads this at its next
    /// heartbeat (a third of a lease). Whether such a worker is registered.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn request_worker_stop(&self, id: &str) -> Result<bool> {
        let updated = dispatch!(self.writer(), pool => {
            sqlx::query("UPDATE worker SET stop_requested = TRUE WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(updated > 0)
    }
}
