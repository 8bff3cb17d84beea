//! Periodic jobs: cron schedules that enqueue exactly one job per tick, however many
//! schedulers run.
//!
//! Each schedule has a row in `periodic` holding its next tick. A scheduler whose clock has
//! passed that tick moves it forward with a compare-and-set (`... WHERE next_run_at = <the
//! tick it read>`) and enqueues the job in the same transaction: of several schedulers, the
//! one whose update matches a row wins the tick, the others match nothing. Ticks missed while
//! no scheduler ran are not replayed: the first scheduler back fires once and moves on.

use std::str::FromStr;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use croner::Cron;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::error::{Error, Result};
use crate::job::NewJob;
use crate::store::{Store, dispatch};

/// A named cron schedule and the job it enqueues.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    expression: String,
    cron: Cron,
    job: NewJob,
}

impl Schedule {
    /// A schedule named `name` (unique across the deployment) firing `job` on `expression`
    /// (five fields, or six with seconds first; UTC).
    ///
    /// # Errors
    /// [`Error::Cron`] when the expression does not parse; [`Error::InvalidJob`].
    pub fn new(name: impl Into<String>, expression: &str, job: NewJob) -> Result<Self> {
        job.validate()?;
        let cron = Cron::from_str(expression).map_err(|e| Error::Cron {
            expression: expression.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            name: name.into(),
            expression: expression.to_owned(),
            cron,
            job,
        })
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The first tick strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after = Utc.timestamp_millis_opt(after_ms).single()?;
        let next = self.cron.find_next_occurrence(&after, false).ok()?;
        Some(next.timestamp_millis())
    }
}

/// Enqueues the jobs of a set of schedules on time.
#[derive(Debug, Clone)]
pub struct Scheduler {
    store: Store,
    schedules: Vec<Schedule>,
}

impl Scheduler {
    /// A scheduler for `schedules` over `store`.
    pub fn new(store: Store, schedules: Vec<Schedule>) -> Self {
        Self { store, schedules }
    }

    /// Creates the schedules' rows, or resets a row whose expression changed.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn install(&self) -> Result<()> {
        let now = now_ms();
        for schedule in &self.schedules {
            let next = schedule.next_after(now).unwrap_or(i64::MAX);
            dispatch!(self.store.writer(), pool => {
                sqlx::query(
                    "INSERT INTO periodic (name, expression, next_run_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (name) DO UPDATE \
                     SET expression = excluded.expression, next_run_at = excluded.next_run_at \
                     WHERE periodic.expression <> excluded.expression",
                )
                .bind(&schedule.name)
                .bind(&schedule.expression)
                .bind(next)
                .execute(pool)
                .await?
                .rows_affected()
            });
        }
        Ok(())
    }

    /// Fires every schedule whose tick has come; returns the ids of the jobs this scheduler
    /// enqueued and when the next tick of any schedule is due.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn tick(&self) -> Result<(Vec<i64>, Option<i64>)> {
        let mut fired = Vec::new();
        let mut next_due: Option<i64> = None;
        for schedule in &self.schedules {
            let now = now_ms();
            let tick: Option<i64> = dispatch!(self.store.reader(), pool => {
                sqlx::query_scalar("SELECT next_run_at FROM periodic WHERE name = $1")
                    .bind(&schedule.name)
                    .fetch_optional(pool)
                    .await?
            });
            let Some(tick) = tick else { continue };
            if tick > now {
                next_due = Some(next_due.map_or(tick, |d| d.min(tick)));
                continue;
            }
            let next = schedule.next_after(now).unwrap_or(i64::MAX);
            let mut tx = self.store.begin().await?;
            let won = dispatch!(tx.conn(), conn => {
                sqlx::query("UPDATE periodic SET next_run_at = $1 WHERE name = $2 AND next_run_at = $3")
                    .bind(next)
                    .bind(&schedule.name)
                    .bind(tick)
                    .execute(conn)
                    .await?
                    .rows_affected()
            });
            if won == 1 {
                let job = tx.enqueue(schedule.job.clone()).await?;
                dispatch!(tx.conn(), conn => {
                    sqlx::query("UPDATE periodic SET last_job_id = $1 WHERE name = $2")
                        .bind(job.job.id)
                        .bind(&schedule.name)
                        .execute(conn)
                        .await?;
                });
                tx.commit().await?;
                tracing::info!(schedule = %schedule.name, job = job.job.id, "periodic job enqueued");
                fired.push(job.job.id);
            }
            next_due = Some(next_due.map_or(next, |d| d.min(next)));
        }
        Ok((fired, next_due))
    }

    /// Installs the schedules, then fires them on time until `shutdown`.
    ///
    /// # Errors
    /// [`Error::Database`] when the schedules cannot be installed; later errors are retried.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        if self.schedules.is_empty() {
            return Ok(());
        }
        self.install().await?;
        loop {
            // Re-read at least every few seconds: another scheduler may fire a tick first,
            // or an operator may change an expression.
            let wait = match self.tick().await {
                Ok((_, Some(due))) => Duration::from_millis(
                    u64::try_from(due - now_ms()).unwrap_or(0).clamp(5, 5_000),
                ),
                Ok((_, None)) => Duration::from_secs(5),
                Err(error) => {
                    tracing::warn!(%error, "scheduler tick failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schedules_accept_five_and_six_fields_and_reject_nonsense() {
        let job = NewJob::new("noop", json!({}));
        assert!(Schedule::new("a", "*/5 * * * *", job.clone()).is_ok());
        assert!(Schedule::new("b", "*/2 * * * * *", job.clone()).is_ok());
        let err = Schedule::new("c", "every tuesday", job).unwrap_err();
        assert!(err.to_string().contains("every tuesday"));
    }

    #[test]
    fn next_tick_follows_the_expression() {
        let every_two_seconds =
            Schedule::new("s", "*/2 * * * * *", NewJob::new("noop", json!({}))).unwrap();
        // 2026-01-01T00:00:01Z → the next even second.
        let start = 1_767_225_601_000;
        assert_eq!(every_two_seconds.next_after(start), Some(start + 1_000));
        assert_eq!(
            every_two_seconds.next_after(start + 1_000),
            Some(start + 3_000)
        );
    }
}

/// A schedule as stored, with its last tick's job.
#[derive(Debug, Clone)]
pub struct ScheduleRow {
    /// Its name.
    pub name: String,
    /// Its cron expression (UTC).
    pub expression: String,
    /// When it fires next (ms).
    pub next_run_at: i64,
    /// The job its last tick enqueued, if it still exists.
    pub last_job: Option<crate::Job>,
}

impl Store {
    /// Every installed schedule, by name, with its last tick's job.
    ///
    /// # Errors
    /// [`Error::Database`].
    pub async fn schedules(&self) -> Result<Vec<ScheduleRow>> {
        let rows: Vec<(String, String, i64, Option<i64>)> = dispatch!(self.reader(), pool => {
            sqlx::query_as("SELECT name, expression, next_run_at, last_job_id FROM periodic ORDER BY name")
                .fetch_all(pool)
                .await?
        });
        let mut schedules = Vec::with_capacity(rows.len());
        for (name, expression, next_run_at, last) in rows {
            let last_job = match last {
                Some(id) => self.get(id).await?,
                None => None,
            };
            schedules.push(ScheduleRow {
                name,
                expression,
                next_run_at,
                last_job,
            });
        }
        Ok(schedules)
    }
}
