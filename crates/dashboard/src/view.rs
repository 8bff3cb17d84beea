//! What the pages show: rows formatted for people, gathered from the store and the apps.

use std::collections::BTreeMap;

use conveyor_queue::{Job, JobFilter, JobState, Store};

/// A time in ms since the epoch as "12 s ago" / "in 3 min", or "-".
pub fn ago(ms: Option<i64>) -> String {
    let Some(ms) = ms else { return "-".into() };
    let delta = (conveyor_queue::clock::now_ms() - ms) / 1000;
    let (n, future) = (delta.abs(), delta < 0);
    let text = match n {
        0..=59 => format!("{n} s"),
        60..=3599 => format!("{} min", n / 60),
        3600..=86_399 => format!("{} h", n / 3600),
        _ => format!("{} d", n / 86_400),
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// A job as a table row.
#[derive(Debug, Clone)]
pub struct JobRow {
    /// Id.
    pub id: i64,
    /// Kind.
    pub kind: String,
    /// Queue.
    pub queue: String,
    /// State.
    pub state: String,
    /// Percent done, when the total is known.
    pub percent: Option<i64>,
    /// Attempt.
    pub attempt: i32,
    /// Created, relative.
    pub created: String,
    /// Last error.
    pub error: String,
    /// When it ended, relative, or "-".
    pub finished: String,
    /// How long its last attempt ran, or "-".
    pub duration: String,
}

impl From<&Job> for JobRow {
    fn from(job: &Job) -> Self {
        let percent = match (job.progress_done, job.progress_total) {
            // Only kinds that report progress get a bar.
            (Some(done), Some(total)) if total > 0 => Some((done * 100 / total).clamp(0, 100)),
            _ => None,
        };
        let duration = match (job.started_at, job.finished_at) {
            (Some(start), Some(end)) => duration(end - start),
            _ => "-".to_owned(),
        };
        Self {
            id: job.id,
            kind: job.kind.clone(),
            queue: job.queue.clone(),
            state: job.state.to_string(),
            percent,
            attempt: job.attempt,
            created: ago(Some(job.created_at)),
            error: job.error.clone().unwrap_or_default(),
            finished: job
                .finished_at
                .map_or_else(|| "-".to_owned(), |at| ago(Some(at))),
            duration,
        }
    }
}

/// One queue's counts.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// Name.
    pub name: String,
    /// Counts in the order of [`OverviewData::states`].
    pub counts: Vec<i64>,
    /// Completed in the last minute.
    pub per_minute: i64,
    /// No live worker serves it: its jobs wait (a typo, or no worker for it started).
    pub unserved: bool,
    /// Its concurrency is set to 0: no job starts until it resumes.
    pub paused: bool,
    /// Completed and failed attempts in the last hour, and the last day (with separators).
    pub hour: (String, String),
    /// See `hour`.
    pub day: (String, String),
    /// Completed and failed per minute over the last hour, and per hour over the day, as
    /// small charts.
    pub sparks: (String, String),
    /// Wait (due to started) and run time, p50 / p95, over its last 200 ended jobs.
    pub wait: String,
    /// See `wait`.
    pub run: String,
    /// How long its oldest due job has waited, or "-".
    pub oldest: String,
}

/// A live worker.
#[derive(Debug, Clone)]
pub struct WorkerRow {
    /// Id.
    pub id: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// `queue=concurrency, ...`.
    pub queues: String,
    /// Jobs running.
    pub running: i64,
    /// Started, relative.
    pub started: String,
    /// Last heartbeat, relative.
    pub last_seen: String,
}

/// The overview: queues, workers, recent failures.
#[derive(Debug, Clone)]
pub struct OverviewData {
    /// Column order of the counts.
    pub states: Vec<String>,
    /// Every queue with jobs.
    pub queues: Vec<QueueRow>,
    /// Workers seen in the last minute.
    pub workers: Vec<WorkerRow>,
    /// The ten newest failed jobs.
    pub failures: Vec<JobRow>,
    /// Completed and failed per minute over the last hour, every queue (SVG).
    pub chart_hour: String,
    /// Completed and failed per hour over the last day (SVG).
    pub chart_day: String,
}

/// `n` with thousands separators: `12,345`.
pub fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in milliseconds for people: `850 ms`, `4.2 s`, `3 min`, `2 h`.
pub fn duration(ms: i64) -> String {
    match ms {
        ..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{} min", ms / 60_000),
        _ => format!("{:.1} h", ms as f64 / 3_600_000.0),
    }
}

/// Completed and failed summed over the queues' `counts`, one value per bucket from `first`.
fn series<'a>(
    counts: impl IntoIterator<Item = &'a Vec<(i64, conveyor_queue::stats::Counts)>>,
    first: i64,
    step: i64,
    buckets: usize,
) -> (Vec<i64>, Vec<i64>) {
    let (mut completed, mut failed) = (vec![0; buckets], vec![0; buckets]);
    for (at, c) in counts.into_iter().flatten() {
        let index = (at - first) / step;
        if let Ok(i) = usize::try_from(index)
            && i < buckets
        {
            completed[i] += c.completed;
            failed[i] += c.failed;
        }
    }
    (completed, failed)
}

/// Reads the overview.
///
/// # Errors
/// The database's.
pub async fn overview(store: &Store) -> conveyor_queue::Result<OverviewData> {
    let states: Vec<JobState> = JobState::ALL.to_vec();
    let live = store.workers(60_000).await?;
    let served = |queue: &str| {
        live.iter()
            .any(|w| w.queues.as_object().is_some_and(|q| q.contains_key(queue)))
    };
    use conveyor_queue::stats::MINUTE_MS;
    let now = conveyor_queue::clock::now_ms();
    let hour_first = (now - 3_600_000) / MINUTE_MS * MINUTE_MS + MINUTE_MS;
    let day_first = (now - 86_400_000) / 3_600_000 * 3_600_000 + 3_600_000;
    let by_minute = store.queue_counts_since(hour_first, MINUTE_MS).await?;
    let by_hour = store.queue_counts_since(day_first, 3_600_000).await?;
    let oldest = store.oldest_waiting().await?;
    let settings = store.queue_settings().await?;
    let total = |counts: Option<&Vec<(i64, conveyor_queue::stats::Counts)>>| {
        let (c, f) = counts
            .into_iter()
            .flatten()
            .fold((0, 0), |(c, f), (_, n)| (c + n.completed, f + n.failed));
        (thousands(c), thousands(f))
    };
    let mut queues = Vec::new();
    for q in store.queue_counts().await? {
        let latency = store.latency(&q.queue, 200).await?;
        let pair = |a: i64, b: i64| {
            if latency.jobs == 0 {
                "-".to_owned()
            } else {
                format!("{} / {}", duration(a), duration(b))
            }
        };
        let spark = |by: &BTreeMap<String, Vec<(i64, conveyor_queue::stats::Counts)>>,
                     first: i64,
                     step: i64,
                     n: usize,
                     title: &str| {
            let (done, failed) = series(by.get(&q.queue), first, step, n);
            crate::chart::spark(
                &format!("{}, {title}", q.queue),
                &[
                    ("completed", "#2e7d32", done),
                    ("failed", "#c62828", failed),
                ],
            )
        };
        let sparks = (
            spark(
                &by_minute,
                hour_first,
                MINUTE_MS,
                60,
                "per minute, last hour",
            ),
            spark(&by_hour, day_first, 3_600_000, 24, "per hour, last day"),
        );
        queues.push(QueueRow {
            sparks,
            counts: states
                .iter()
                .map(|s| {
                    q.by_state
                        .iter()
                        .find(|(t, _)| t == s)
                        .map_or(0, |(_, n)| *n)
                })
                .collect(),
            unserved: !served(&q.queue),
            paused: settings.iter().any(|(name, c)| *name == q.queue && *c == 0),
            hour: total(by_minute.get(&q.queue)),
            day: total(by_hour.get(&q.queue)),
            wait: pair(latency.wait_p50, latency.wait_p95),
            run: pair(latency.run_p50, latency.run_p95),
            oldest: oldest
                .get(&q.queue)
                .map_or_else(|| "-".to_owned(), |due| duration(now - due)),
            name: q.queue,
            per_minute: q.completed_last_minute,
        });
    }
    let (hour_done, hour_failed) = series(by_minute.values(), hour_first, MINUTE_MS, 60);
    let (day_done, day_failed) = series(by_hour.values(), day_first, 3_600_000, 24);
    let chart = |title: &str, done: Vec<i64>, failed: Vec<i64>, first: &str| {
        if done.iter().chain(&failed).all(|v| *v == 0) {
            String::new()
        } else {
            crate::chart::lines(
                title,
                &[
                    ("completed", "#2e7d32", done),
                    ("failed", "#c62828", failed),
                ],
                first,
                "now",
            )
        }
    };
    let chart_hour = chart(
        "jobs completed and attempts failed per minute, last hour",
        hour_done,
        hour_failed,
        "an hour ago",
    );
    let chart_day = chart(
        "jobs completed and attempts failed per hour, last day",
        day_done,
        day_failed,
        "a day ago",
    );
    let workers = live
        .into_iter()
        .map(|w| WorkerRow {
            queues: w
                .queues
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(q, c)| format!("{q}={c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default(),
            id: w.id,
            host: w.host,
            pid: w.pid,
            running: w.running,
            started: ago(Some(w.started_at)),
            last_seen: ago(Some(w.last_seen_at)),
        })
        .collect();
    let failures = jobs(
        store,
        &JobFilter {
            state: Some(JobState::Failed),
            limit: 10,
            ..JobFilter::default()
        },
    )
    .await?;
    Ok(OverviewData {
        states: states.iter().map(ToString::to_string).collect(),
        queues,
        workers,
        failures,
        chart_hour,
        chart_day,
    })
}

/// Jobs as rows.
///
/// # Errors
/// The database's.
pub async fn jobs(store: &Store, filter: &JobFilter) -> conveyor_queue::Result<Vec<JobRow>> {
    Ok(store.list(filter).await?.iter().map(JobRow::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators_and_durations_units() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(-1_234_567), "-1,234,567");
        assert_eq!(duration(850), "850 ms");
        assert_eq!(duration(4_200), "4.2 s");
        assert_eq!(duration(180_000), "3 min");
        assert_eq!(duration(7_200_000), "2.0 h");
    }
}
