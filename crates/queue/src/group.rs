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
use crate::store::{Store, Tx, dispatch};

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
        // A fixed lock order keeps two concurrent settlers from deadlocking.
        group_ids.sort_unstable();
        let now = now_ms();
        for chunk in group_ids.chunk_by(|a, b| a == b) {
            let (group_id, finished) = (chunk[0], chunk.len() as i32);
            let settled: Option<(i32, Option<i64>)> = dispatch!(self.conn(), conn => {
                sqlx::query_as(
                    "UPDATE job_group \
                     SET remaining = CASE WHEN remaining > $2 THEN remaining - $2 ELSE 0 END \
                     WHERE id = $1 AND remaining > 0 \
                     RETURNING remaining, continuation_id",
                )
                .bind(group_id)
                .bind(finished)
                .fetch_optional(conn)
                .await?
            });
            let Some((0, Some(continuation_id))) = settled else {
                continue;
            };
            let queue: Option<String> = dispatch!(self.conn(), conn => {
                sqlx::query_scalar(
                    "UPDATE job \
                     SET state = CASE WHEN run_at > $2 THEN 'scheduled' ELSE 'available' END \
                     WHERE id = $1 AND state = 'pending' \
                     RETURNING queue",
                )
                .bind(continuation_id)
                .bind(now)
                .fetch_optional(conn)
                .await?
            });
            if let Some(queue) = queue {
                self.wake_on_commit(&queue).await?;
            }
        }
        Ok(())
    }
}

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

    /// A group's size and how many of its members have not ended yet; `None` for an
    /// unknown group.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn group_progress(&self, group_id: i64) -> Result<Option<(i64, i64)>> {
        Ok(dispatch!(self.reader(), pool => {
            sqlx::query_as(
                "SELECT CAST(total AS BIGINT), CAST(remaining AS BIGINT) FROM job_group WHERE id = $1",
            )
            .bind(group_id)
            .fetch_optional(pool)
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
