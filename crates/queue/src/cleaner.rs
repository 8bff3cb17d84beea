//! Retention: the cleaner deletes jobs that ended long enough ago, so the table does not
//! grow without bound, plus the groups and worker rows nothing refers to any more.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::{ms, now_ms};
use crate::error::Result;
use crate::store::{Backend, Store, dispatch};

/// Rows deleted per statement, so a large backlog never holds locks for long.
const PRUNE_CHUNK: i64 = 5_000;

impl Store {
    /// Deletes jobs that reached a final state before `now - older_than`, except members of
    /// groups whose continuation has not ended (it may still read their results); then groups
    /// whose continuation is gone, and workers unseen for a day. Returns the jobs deleted.
    ///
    /// # Errors
    /// [`crate::Error::Database`].
    pub async fn prune(&self, older_than: Duration) -> Result<u64> {
        let cutoff = now_ms() - ms(older_than);
        let mut deleted = 0;
        loop {
            let n = dispatch!(self.writer(), pool => {
                sqlx::query(
                    "DELETE FROM job \
                     WHERE id IN ( \
                         SELECT id \
                         FROM job \
                         WHERE state IN ('completed', 'failed', 'cancelled') AND finished_at < $1 \
                           AND NOT EXISTS ( \
                               SELECT 1 \
                               FROM job_group \
                               JOIN job AS continuation ON continuation.id = job_group.continuation_id \
                               WHERE job_group.id = job.group_id \
                                 AND continuation.state NOT IN ('completed', 'failed', 'cancelled')) \
                         LIMIT $2)",
                )
                .bind(cutoff)
                .bind(PRUNE_CHUNK)
                .execute(pool)
                .await?
                .rows_affected()
            });
            deleted += n;
            if n < PRUNE_CHUNK as u64 {
                break;
            }
        }
        dispatch!(self.writer(), pool => {
            sqlx::query(
                "DELETE FROM job_group \
                 WHERE continuation_id IS NOT NULL \
                   AND NOT EXISTS (SELECT 1 FROM job WHERE job.id = job_group.continuation_id)",
            )
            .execute(pool)
            .await?;
            sqlx::query("DELETE FROM worker WHERE last_seen_at < $1")
                .bind(now_ms() - 24 * 3600 * 1000)
                .execute(pool)
                .await?;
        });
        self.prune_counts().await?;
        if deleted > 0 && self.backend() == Backend::Sqlite {
            // Hand freed pages back without blocking: at most 1,000 per run.
            dispatch!(self.writer(), pool => {
                sqlx::query("PRAGMA incremental_vacuum(1000)").execute(pool).await?;
            });
        }
        Ok(deleted)
    }
}

/// Runs [`Store::prune`] every `every` until `shutdown`, keeping ended jobs for `retention`.
pub async fn run_cleaner(
    store: Store,
    retention: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match store.prune(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(jobs = n, "pruned ended jobs past retention"),
            Err(error) => tracing::warn!(%error, "cleaner failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
