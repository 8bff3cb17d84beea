//! Groups (fan-in): members and a continuation that becomes ready exactly once.
//!
//! The continuation is inserted with the group, in state `pending`, so its id is known at
//! once (a client can watch the final result from the start). Whenever a member reaches a
//! final state, the same transaction decrements `job_group.remaining` (a row lock on
//! PostgreSQL, the single writer on SQLite, serialises the decrements); the one decrement
//! that reaches zero moves the continuation from `pending` to `available`. `remaining > 0`
//! in the `WHERE` makes a second arrival at zero impossible, so the continuation is released
//! exactly once even if a member is retried by hand after the group settled.

use serde_json::Value;
use sqlx::types::Json;

use crate::clock::now_ms;
use crate::error::Result;
use crate::job::JobState;
use crate::store::{Db, Store, Tx, dispatch};

/// A member's outcome, as the continuation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberOutcome {
    /// The member job.
    pub id: i64,
    /// Its state (final once the continuation runs).
    pub state: JobState,
    /// Its result, when completed.
    pub result: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
}

impl Tx {
    /// Counts `group_ids` (one entry per member that just reached a final state) against
    /// their groups, releasing each continuation whose group is now complete.
    pub(crate) async fn settle_groups(&mut self, mut group_ids: Vec<i64>) -> Result<()> {
        if group_ids.is_empty() {
            return Ok(());
        }
        // A fixed lock order keeps two concurrent settlers from deadlocking.
        group_ids.sort_unstable();
        let counts: Vec<(i64, i32)> = group_ids
            .chunk_by(|a, b| a == b)
            .map(|chunk| (chunk[0], chunk.len() as i32))
            .collect();
        let released = match self.conn() {
            // PostgreSQL locks the rows one statement at a time, in that order.
            Db::Pg(conn) => {
                let mut released = Vec::new();
                for (group_id, finished) in counts {
                    let settled: Option<(i32, Option<i64>)> = sqlx::query_as(concat!(
                        settle_set!(),
                        " FROM (SELECT $1::BIGINT AS id, $2::INT AS n) AS done",
                        settle_where!()
                    ))
                    .bind(group_id)
                    .bind(finished)
                    .fetch_optional(&mut *conn)
                    .await?;
                    released.extend(settled.and_then(|(left, next)| next.filter(|_| left == 0)));
                }
                released
            }
            // SQLite has one writer, so no lock order to keep: one statement for the batch
            // (each statement is a hand-off to sqlx's SQLite thread and back).
            Db::Lite(conn) => {
                let settled: Vec<(i32, Option<i64>)> = sqlx::query_as(concat!(
                    settle_set!(),
                    " FROM (SELECT value ->> 0 AS id, value ->> 1 AS n FROM json_each($1)) AS done",
                    settle_where!()
                ))
                .bind(Json(&counts))
                .fetch_all(&mut *conn)
                .await?;
                settled
                    .into_iter()
                    .filter_map(|(left, next)| next.filter(|_| left == 0))
                    .collect()
            }
        };
        self.release_continuations(&released).await
    }

    /// Moves the continuations `ids` from `pending` to ready, waking their queues.
    async fn release_continuations(&mut self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        let queues: Vec<String> = dispatch!(self.conn(), conn => {
            let mut update = sqlx::QueryBuilder::new(
                "UPDATE job SET state = CASE WHEN run_at > ",
            );
            update.push_bind(now).push(" THEN 'scheduled' ELSE 'available' END WHERE id IN (");
            let mut list = update.separated(", ");
            for id in ids {
                list.push_bind(id);
            }
            update.push(") AND state = 'pending' RETURNING queue");
            update.build_query_scalar().fetch_all(conn).await?
        });
        for queue in queues {
            self.wake_on_commit(&queue).await?;
        }
        Ok(())
    }
}

/// Takes `done.n` members off group `done.id`; `remaining > 0` makes the arrival at zero
/// happen once.
macro_rules! settle_set {
    () => {
        "UPDATE job_group \
         SET remaining = CASE WHEN remaining > done.n THEN remaining - done.n ELSE 0 END"
    };
}
use settle_set;

macro_rules! settle_where {
    () => {
        " WHERE job_group.id = done.id AND job_group.remaining > 0 \
          RETURNING job_group.remaining, job_group.continuation_id"
    };
}
use settle_where;

impl Store {
    /// The ids of a group's jobs, ascending: its members and its continuation, and, in a
    /// tree ([`crate::tree`]), the members of every group below. Continuations are inserted
    /// before their members, so cancelling in this order stops a node before its members'
    /// ends could release it.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn group_job_ids(&self, group_id: i64) -> Result<Vec<i64>> {
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_scalar(concat!(
                "WITH RECURSIVE tree (id, depth) AS (",
                crate::tree::subgroups!(),
                ") SELECT job.id FROM job JOIN tree ON job.group_id = tree.id \
                 UNION SELECT continuation_id FROM job_group \
                 WHERE id = $1 AND continuation_id IS NOT NULL \
                 ORDER BY 1",
            ))
            .bind(group_id)
            .fetch_all(pool)
            .await?
        }))
    }

    /// The members of the group whose continuation is `continuation_id`, in enqueue order;
    /// empty when that job is no continuation.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn group_members(&self, continuation_id: i64) -> Result<Vec<MemberOutcome>> {
        type Row = (i64, String, Option<Json<Value>>, Option<String>);
        let rows: Vec<Row> = dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT job.id, job.state, job.result, job.error \
                 FROM job \
                 JOIN job_group ON job_group.id = job.group_id \
                 WHERE job_group.continuation_id = $1 \
                 ORDER BY job.id",
            )
            .bind(continuation_id)
            .fetch_all(pool)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(id, state, result, error)| {
                Some(MemberOutcome {
                    id,
                    state: state.parse().ok()?,
                    result: result.map(|r| r.0),
                    error,
                })
            })
            .collect())
    }
}
