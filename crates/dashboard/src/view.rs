//! What the pages show: rows formatted for people, gathered from the store and the apps.

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
}

impl From<&Job> for JobRow {
    fn from(job: &Job) -> Self {
        let percent = match (job.progress_done, job.progress_total) {
            (Some(done), Some(total)) if total > 0 => Some((done * 100 / total).clamp(0, 100)),
            _ if job.state == JobState::Completed => Some(100),
            _ => None,
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
    let queues = store
        .queue_counts()
        .await?
        .into_iter()
        .map(|q| QueueRow {
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
            name: q.queue,
            per_minute: q.completed_last_minute,
        })
        .collect();
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
    })
}

/// Jobs as rows.
///
/// # Errors
/// The database's.
pub async fn jobs(store: &Store, filter: &JobFilter) -> conveyor_queue::Result<Vec<JobRow>> {
    Ok(store.list(filter).await?.iter().map(JobRow::from).collect())
}
