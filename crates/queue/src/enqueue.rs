//! Putting jobs in: one, many (multi-row inserts), and groups with a continuation; on the
//! [`Store`] (its own transaction) or inside a caller's [`Tx`].

use sqlx::types::Json;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::job::{Job, JobState, NewJob, job_columns};
use crate::store::{Store, Tx, dispatch};

/// The outcome of enqueueing one job.
#[derive(Debug, Clone)]
pub struct Enqueued {
    /// The job: new, or the live one holding the same unique key.
    pub job: Job,
    /// True when `job` already existed (its unique key was taken).
    pub duplicate: bool,
}

/// The ids of an enqueued group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEnqueued {
    /// The group.
    pub group_id: i64,
    /// The continuation: `pending` until every member has finished, then `available`.
    pub continuation_id: i64,
    /// The members, in the order given.
    pub member_ids: Vec<i64>,
}

/// Rows per multi-row `INSERT`: 11 binds each keeps well under both backends' limits
/// (SQLite 32,766, PostgreSQL 65,535) while amortising the round trip.
const INSERT_CHUNK: usize = 1000;

/// The unique index's predicate, repeated so `ON CONFLICT` can infer the partial index.
macro_rules! on_unique_conflict {
    () => {
        " ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL \
          AND state IN ('pending', 'scheduled', 'available', 'running', 'retryable') DO NOTHING"
    };
}

const INSERT_ONE: &str = concat!(
    "INSERT INTO job (queue, kind, args, state, priority, max_attempts, run_at, unique_key, group_id, created_at)",
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    on_unique_conflict!(),
    " RETURNING ",
    job_columns!()
);

const SELECT_LIVE_BY_KEY: &str = concat!(
    "SELECT ",
    job_columns!(),
    " FROM job WHERE unique_key = $1",
    " AND state IN ('pending', 'scheduled', 'available', 'running', 'retryable')"
);

impl Store {
    /// Enqueues many jobs in one transaction with multi-row inserts. Jobs whose unique key
    /// is held by a live job are skipped; returns the ids of the jobs inserted, in order.
    ///
    /// # Errors
    /// [`Error::InvalidJob`] for out-of-range fields (nothing is stored); [`Error::Database`].
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<i64>> {
        let mut tx = self.begin().await?;
        let ids = tx.enqueue_many(jobs).await?;
        tx.commit().await?;
        Ok(ids)
    }

    /// Enqueues `members` as a group whose `continuation` runs once, after the last member
    /// reaches a final state (completed, failed or cancelled).
    ///
    /// # Errors
    /// As [`Store::enqueue_many`]; unique keys are not allowed in groups.
    pub async fn enqueue_group(
        &self,
        members: &[NewJob],
        continuation: NewJob,
    ) -> Result<GroupEnqueued> {
        let mut tx = self.begin().await?;
        let group = tx.enqueue_group(members, continuation).await?;
        tx.commit().await?;
        Ok(group)
    }
}

impl Tx {
    /// Enqueues one job inside this transaction; it exists only if the transaction commits.
    ///
    /// # Errors
    /// As [`Store::enqueue`].
    pub async fn enqueue(&mut self, job: NewJob) -> Result<Enqueued> {
        job.validate()?;
        let now = now_ms();
        let state = job.initial_state(now);
        // A unique key's holder can finish between our conflicting insert and our lookup;
        // then the insert succeeds on the next round. Two rounds always settle it unless the
        // key is contended by a tight enqueue-and-finish loop, which we report as a duplicate.
        for _ in 0..3 {
            let inserted: Option<Job> = dispatch!(self.conn(), conn => {
                sqlx::query_as(INSERT_ONE)
                    .bind(&job.queue)
                    .bind(&job.kind)
                    .bind(Json(&job.args))
                    .bind(state.as_str())
                    .bind(job.priority)
                    .bind(job.max_attempts)
                    .bind(job.run_at.unwrap_or(now))
                    .bind(&job.unique_key)
                    .bind(None::<i64>)
                    .bind(now)
                    .fetch_optional(conn)
                    .await?
            });
            if let Some(job) = inserted {
                self.wake_on_commit(&job.queue).await?;
                metrics::counter!("conveyor_jobs_enqueued_total", "queue" => job.queue.clone(), "kind" => job.kind.clone()).increment(1);
                return Ok(Enqueued {
                    job,
                    duplicate: false,
                });
            }
            let key = job.unique_key.as_deref().unwrap_or_default();
            let existing: Option<Job> = dispatch!(self.conn(), conn => {
                sqlx::query_as(SELECT_LIVE_BY_KEY).bind(key).fetch_optional(conn).await?
            });
            if let Some(job) = existing {
                return Ok(Enqueued {
                    job,
                    duplicate: true,
                });
            }
        }
        Err(Error::Duplicate(job.unique_key.unwrap_or_default()))
    }

    /// Enqueues many jobs inside this transaction (see [`Store::enqueue_many`]).
    ///
    /// # Errors
    /// As [`Store::enqueue_many`].
    pub async fn enqueue_many(&mut self, jobs: &[NewJob]) -> Result<Vec<i64>> {
        self.insert_many(jobs, |_| None, false).await
    }

    /// Enqueues a group inside this transaction (see [`Store::enqueue_group`]).
    ///
    /// # Errors
    /// As [`Store::enqueue_group`].
    pub async fn enqueue_group(
        &mut self,
        members: &[NewJob],
        continuation: NewJob,
    ) -> Result<GroupEnqueued> {
        continuation.validate()?;
        if members
            .iter()
            .chain([&continuation])
            .any(|j| j.unique_key.is_some())
        {
            return Err(Error::InvalidJob(
                "jobs of a group cannot carry unique keys".to_owned(),
            ));
        }
        let now = now_ms();
        let total = i32::try_from(members.len())
            .map_err(|_| Error::InvalidJob("too many members in one group".to_owned()))?;
        let group_id: i64 = dispatch!(self.conn(), conn => {
            sqlx::query_scalar(
                "INSERT INTO job_group (total, remaining, created_at) VALUES ($1, $1, $2) RETURNING id",
            )
            .bind(total)
            .bind(now)
            .fetch_one(conn)
            .await?
        });
        // An empty group is already complete: its continuation is ready at once.
        let state = if members.is_empty() {
            continuation.initial_state(now)
        } else {
            JobState::Pending
        };
        let continuation_id: i64 = dispatch!(self.conn(), conn => {
            sqlx::query_scalar(
                "INSERT INTO job (queue, kind, args, state, priority, max_attempts, run_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(&continuation.queue)
            .bind(&continuation.kind)
            .bind(Json(&continuation.args))
            .bind(state.as_str())
            .bind(continuation.priority)
            .bind(continuation.max_attempts)
            .bind(continuation.run_at.unwrap_or(now))
            .bind(now)
            .fetch_one(conn)
            .await?
        });
        dispatch!(self.conn(), conn => {
            sqlx::query("UPDATE job_group SET continuation_id = $1 WHERE id = $2")
                .bind(continuation_id)
                .bind(group_id)
                .execute(conn)
                .await?
                .rows_affected()
        });
        if state != JobState::Pending {
            self.wake_on_commit(&continuation.queue).await?;
        }
        let member_ids = self.insert_many(members, |_| Some(group_id), false).await?;
        Ok(GroupEnqueued {
            group_id,
            continuation_id,
            member_ids,
        })
    }

    /// Inserts `jobs`, job `i` a member of group `group_of(i)`; `pending` ones wait for
    /// their group (tree nodes), the rest start as their `run_at` says. Returns the ids in
    /// the order given.
    pub(crate) async fn insert_many(
        &mut self,
        jobs: &[NewJob],
        group_of: impl Fn(usize) -> Option<i64>,
        pending: bool,
    ) -> Result<Vec<i64>> {
        for job in jobs {
            job.validate()?;
        }
        let now = now_ms();
        let mut ids = Vec::with_capacity(jobs.len());
        for (chunk_index, chunk) in jobs.chunks(INSERT_CHUNK).enumerate() {
            let mut row_index = chunk_index * INSERT_CHUNK;
            let mut inserted: Vec<i64> = dispatch!(self.conn(), conn => {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO job (queue, kind, args, state, priority, max_attempts, run_at, unique_key, group_id, created_at) ",
                );
                insert.push_values(chunk, |mut row, job| {
                    let state = if pending { JobState::Pending } else { job.initial_state(now) };
                    row.push_bind(&job.queue)
                        .push_bind(&job.kind)
                        .push_bind(Json(&job.args))
                        .push_bind(state.as_str())
                        .push_bind(job.priority)
                        .push_bind(job.max_attempts)
                        .push_bind(job.run_at.unwrap_or(now))
                        .push_bind(&job.unique_key)
                        .push_bind(group_of(row_index))
                        .push_bind(now);
                    row_index += 1;
                });
                insert.push(on_unique_conflict!());
                insert.push(" RETURNING id");
                insert.build_query_scalar().fetch_all(conn).await?
            });
            // Ids are handed out in the order of the rows; RETURNING's order is not promised.
            inserted.sort_unstable();
            ids.extend(inserted);
        }
        if pending {
            // Nothing to wake: the jobs wait for their groups.
            return Ok(ids);
        }
        self.count_and_wake(jobs).await?;
        Ok(ids)
    }

    /// After inserting `jobs`: wakes their queues at commit and counts them.
    pub(crate) async fn count_and_wake<J: std::borrow::Borrow<NewJob>>(
        &mut self,
        jobs: &[J],
    ) -> Result<()> {
        let mut queues: Vec<&str> = jobs.iter().map(|j| j.borrow().queue.as_str()).collect();
        queues.sort_unstable();
        queues.dedup();
        for queue in queues {
            self.wake_on_commit(queue).await?;
        }
        count_enqueued(jobs);
        Ok(())
    }
}

/// Counts enqueued `jobs` by (queue, kind): one counter update each, not one per job
/// (labels cost allocations).
pub(crate) fn count_enqueued<J: std::borrow::Borrow<NewJob>>(jobs: &[J]) {
    let mut counts: Vec<((&str, &str), u64)> = Vec::new();
    for job in jobs {
        let job = job.borrow();
        let key = (job.queue.as_str(), job.kind.as_str());
        match counts.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => counts.push((key, 1)),
        }
    }
    for ((queue, kind), n) in counts {
        metrics::counter!("conveyor_jobs_enqueued_total", "queue" => queue.to_owned(), "kind" => kind.to_owned()).increment(n);
    }
}
