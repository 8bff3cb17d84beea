//! `/api/average/...`: submit, watch, validate, download and delete averaging jobs, and read
//! or change W, the number of worker slots of queue `average` (the seed's Flower grow and
//! shrink), with the seed's worker metrics.

use std::time::Instant;

use axum::extract::{Extension, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use conveyor_queue::{JobState, NewJob};
use conveyor_web::extract::{Json, Path};
use conveyor_web::{ApiError, AppState};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::storage::Storage;
use crate::tasks::{self, QUEUE};
use crate::{db, numbers, plan};

/// Largest F.
pub const FILES_MAX: u64 = 100_000;
/// Largest C.
pub const ENTRIES_MAX: u64 = 1_000_000;
/// Largest F x C: about 600 MB of input text.
pub const NUMBERS_MAX: u64 = 200_000_000;
/// Largest group size.
pub const GROUP_MAX: u64 = 1_000;
/// Largest W.
pub const W_MAX: u32 = 1_000;
/// When a deleted job's files are deleted once more: after the default lease and grace.
pub const CLEAN_DELAY_MS: i64 = 60_000;

/// The routes; `storage` is where the files are.
pub fn router(storage: Storage) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(show, remove))
        .routes(routes!(validate))
        .routes(routes!(download))
        .routes(routes!(workers, set_workers))
        .layer(Extension(storage))
}

/// `POST /api/average/jobs`. The original's names `noOfFiles` and `noOfEntriesPerFile` are
/// accepted too.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// F: files to generate (1 to 100,000).
    #[serde(alias = "noOfFiles")]
    #[schema(minimum = 1, maximum = 100_000)]
    pub files: u64,
    /// C: integers per file (1 to 1,000,000; F x C at most 200,000,000).
    #[serde(alias = "noOfEntriesPerFile")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub entries_per_file: u64,
    /// Files summed per task (2 to 1,000; default 5, as the original).
    #[serde(default = "default_group")]
    #[schema(minimum = 2, maximum = 1_000)]
    pub group_size: u64,
    /// Seed of the generated data (default: random).
    #[schema(minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub seed: Option<u64>,
}

fn default_group() -> u64 {
    5
}

impl CreateJob {
    fn check(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::unprocessable(m));
        if !(1..=FILES_MAX).contains(&self.files) {
            return bad(format!(
                "files must be from 1 to {FILES_MAX}, not {}",
                self.files
            ));
        }
        if !(1..=ENTRIES_MAX).contains(&self.entries_per_file) {
            return bad(format!(
                "entries_per_file must be from 1 to {ENTRIES_MAX}, not {}",
                self.entries_per_file
            ));
        }
        if self.files * self.entries_per_file > NUMBERS_MAX {
            return bad(format!(
                "files x entries_per_file must be at most {NUMBERS_MAX}, not {}",
                self.files * self.entries_per_file
            ));
        }
        if !(2..=GROUP_MAX).contains(&self.group_size) {
            return bad(format!(
                "group_size must be from 2 to {GROUP_MAX}, not {}",
                self.group_size
            ));
        }
        if self.seed.is_some_and(|s| s > i64::MAX as u64) {
            return bad(format!("seed must be at most {}", i64::MAX));
        }
        Ok(())
    }
}

/// Tasks of one kind: how many and how many have ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskCount {
    /// Planned.
    pub total: u64,
    /// Ended.
    pub done: u64,
}

/// Progress of a job.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobProgress {
    /// Percent of all tasks ended, 0 to 100.
    pub percent: f64,
    /// File generation tasks.
    pub generate_tasks: TaskCount,
    /// Summing tasks over every level.
    pub sum_tasks: TaskCount,
    /// The lowest reduction level with a task not ended (-1 while generating); levels above
    /// it may be running too.
    pub level: i32,
    /// Reduction levels in all.
    pub levels: usize,
}

/// Times, in seconds.
#[derive(Debug, Serialize, ToSchema)]
pub struct Timings {
    /// Submission, ms since the epoch.
    pub created_at: i64,
    /// Generation's end, ms since the epoch.
    pub generated_at: Option<i64>,
    /// Completion or failure, ms since the epoch.
    pub finished_at: Option<i64>,
    /// Generating the files.
    pub generation_seconds: Option<f64>,
    /// Summing and averaging (after generation).
    pub processing_seconds: Option<f64>,
}

/// An averaging job.
#[derive(Debug, Serialize, ToSchema)]
pub struct AverageJob {
    /// Identifier.
    pub id: i64,
    /// generating, processing, aggregating, completed or failed.
    pub status: String,
    /// F.
    pub files: i64,
    /// C.
    pub entries_per_file: i64,
    /// Files per task.
    pub group_size: i32,
    /// Seed of the data.
    pub seed: i64,
    /// Progress.
    pub progress: JobProgress,
    /// Where the input files are.
    pub input_location: String,
    /// The averages' file (C numbers), once completed; download it from `output_url`.
    pub output_location: Option<String>,
    /// `GET` this for the averages.
    pub output_url: Option<String>,
    /// Whether the averages' file is still in the store (checked by `GET
    /// /api/average/jobs/{id}` only; absent in lists): false when it was removed behind the
    /// job's back, and `output_url` then answers 410.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_present: Option<bool>,
    /// Mean of all F x C numbers, once completed.
    pub mean: Option<f64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Times.
    pub timings: Timings,
}

/// A job's status and progress, from its row and the engine's counts for the group running
/// (generation's, or the reduction tree's per depth): the API's and the dashboard's.
///
/// # Errors
/// [`conveyor_queue::Error::Database`].
pub async fn progress(
    store: &conveyor_queue::Store,
    row: &db::Row,
) -> conveyor_queue::Result<(String, JobProgress)> {
    let levels = plan::level_tasks(row.files as u64, row.group_size as u64);
    let completed = row.status == db::Status::Completed;
    let depths = match row.group_id {
        Some(group) if !completed => store.tree_progress(group).await?,
        _ => Vec::new(),
    };
    let ended_in = |&(total, remaining): &(i64, i64)| (total - remaining) as u64;
    let generating = row.level < 0;
    let generate_done = if generating {
        depths.first().map_or(0, ended_in)
    } else {
        row.generate_tasks as u64
    };
    let sum_done = if generating {
        0
    } else if completed {
        row.sum_tasks as u64
    } else {
        // Every task but the root is a member of a group of the tree.
        depths.iter().map(ended_in).sum::<u64>()
    };
    let sum_done = sum_done.min(row.sum_tasks as u64);
    // The lowest level with a task not ended; the root's once all below have.
    let root_level = levels.len() as i32 - 1;
    let level = if generating {
        -1
    } else if completed {
        root_level
    } else {
        let waiting = depths.iter().rposition(|&(_, remaining)| remaining > 0);
        waiting.map_or(root_level, |depth| root_level - 1 - depth as i32)
    };
    let status = if row.status == db::Status::Processing && level > 0 {
        "aggregating".to_owned()
    } else {
        row.status.to_string()
    };
    let all = (row.generate_tasks + row.sum_tasks) as f64;
    let percent = if completed {
        100.0
    } else {
        ((generate_done + sum_done) as f64 * 100.0 / all).min(100.0)
    };
    let progress = JobProgress {
        percent: (percent * 10.0).round() / 10.0,
        generate_tasks: TaskCount {
            total: row.generate_tasks as u64,
            done: generate_done,
        },
        sum_tasks: TaskCount {
            total: row.sum_tasks as u64,
            done: sum_done,
        },
        level,
        levels: levels.len(),
    };
    Ok((status, progress))
}

async fn resource(
    state: &AppState,
    storage: &Storage,
    row: db::Row,
) -> Result<AverageJob, ApiError> {
    let (status, progress) = progress(&state.store, &row).await?;
    let seconds = |from: Option<i64>, to: Option<i64>| match (from, to) {
        (Some(a), Some(b)) => Some((b - a) as f64 / 1000.0),
        _ => None,
    };
    Ok(AverageJob {
        id: row.id,
        status,
        files: row.files,
        entries_per_file: row.entries,
        group_size: row.group_size,
        seed: row.seed,
        progress,
        input_location: format!("{}/{}/input/", storage.url, row.location),
        output_url: row
            .output
            .as_ref()
            .map(|_| format!("/api/average/jobs/{}/output", row.id)),
        output_location: row.output.map(|o| format!("{}/{o}", storage.url)),
        output_present: None,
        mean: row.mean,
        error: row.error,
        timings: Timings {
            created_at: row.created_at,
            generated_at: row.generated_at,
            finished_at: row.finished_at,
            generation_seconds: seconds(Some(row.created_at), row.generated_at),
            processing_seconds: seconds(row.generated_at, row.finished_at),
        },
    })
}

/// Submits a job: its files are generated in parallel, then summed by tree reduction.
#[utoipa::path(post, path = "/api/average/jobs", tag = "average", request_body = CreateJob,
    responses((status = 202, body = AverageJob), (status = 422, description = "out of bounds")))]
async fn create(
    State(state): State<AppState>,
    Extension(storage): Extension<Storage>,
    Json(request): Json<CreateJob>,
) -> Result<Response, ApiError> {
    request.check()?;
    let seed = request.seed.unwrap_or_else(|| rand::random::<u64>() >> 1);
    let levels = plan::level_tasks(request.files, request.group_size);
    let generate_tasks = request.files.div_ceil(tasks::FILES_PER_GENERATE_TASK);
    let now = conveyor_queue::clock::now_ms();
    let new = db::NewRow {
        files: request.files as i64,
        entries: request.entries_per_file as i64,
        group_size: request.group_size as i32,
        seed: seed as i64,
        generate_tasks: generate_tasks as i32,
        sum_tasks: levels.iter().sum::<u64>() as i32,
        now,
    };
    let (files, entries) = (request.files, request.entries_per_file);
    // The row and its generation group commit together, in a transaction shared with
    // the enqueues arriving at the same time (group commit).
    let id = state
        .store
        .transact(move |tx| {
            let new = new.clone();
            Box::pin(async move {
                let id = db::insert(tx, &new).await?;
                let (members, continuation) = tasks::generation_jobs(id, files, entries, seed);
                let group = tx.enqueue_group(&members, continuation).await?;
                db::advance_generation(tx, id, group.group_id).await?;
                Ok(id)
            })
        })
        .await?;
    metrics::counter!("average_jobs_submitted_total").increment(1);
    let row = db::get(&state.store, id).await?;
    let row = row.ok_or_else(|| ApiError::not_found("the job vanished"))?;
    let body = resource(&state, &storage, row).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// A page of jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// The jobs.
    pub jobs: Vec<AverageJob>,
}

/// Lists the 100 newest jobs.
#[utoipa::path(get, path = "/api/average/jobs", tag = "average", responses((status = 200, body = JobList)))]
async fn list(
    State(state): State<AppState>,
    Extension(storage): Extension<Storage>,
) -> Result<axum::Json<JobList>, ApiError> {
    let rows = db::list(&state.store, None, 100).await?;
    let mut jobs = Vec::with_capacity(rows.len());
    for row in rows {
        jobs.push(resource(&state, &storage, row).await?);
    }
    Ok(axum::Json(JobList { jobs }))
}

async fn row_or_404(state: &AppState, id: i64) -> Result<db::Row, ApiError> {
    db::get(&state.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no average job {id}")))
}

/// One job.
#[utoipa::path(get, path = "/api/average/jobs/{id}", tag = "average",
    responses((status = 200, body = AverageJob), (status = 404)))]
async fn show(
    State(state): State<AppState>,
    Extension(storage): Extension<Storage>,
    Path(id): Path<i64>,
) -> Result<axum::Json<AverageJob>, ApiError> {
    let row = row_or_404(&state, id).await?;
    let output = row.output.clone();
    let mut job = resource(&state, &storage, row).await?;
    if let Some(output) = output {
        job.output_present = Some(match storage.head(&output).await {
            Ok(()) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(other) => return Err(ApiError::internal(&other)),
        });
    }
    Ok(axum::Json(job))
}

/// Deletes a job and its files; tasks still queued find it gone and do nothing.
#[utoipa::path(delete, path = "/api/average/jobs/{id}", tag = "average",
    responses((status = 204), (status = 404)))]
async fn remove(
    State(state): State<AppState>,
    Extension(storage): Extension<Storage>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    let row = row_or_404(&state, id).await?;
    if let Some(group) = row.group_id
        && row.finished_at.is_none()
    {
        cancel_group(&state, group).await?;
    }
    db::delete(&state.store, id).await?;
    storage
        .delete_under(&row.location)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    if row.finished_at.is_none() {
        // Tasks running now may still write a file; delete once more when they are surely
        // over (a lease and a grace period, at the defaults).
        let later = conveyor_queue::clock::now_ms() + CLEAN_DELAY_MS;
        let clean = tasks::CleanArgs {
            location: row.location,
        };
        let job = NewJob::new(tasks::CLEAN, serde_json::json!(clean))
            .queue(QUEUE)
            .run_at(later);
        state.store.enqueue(job).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Cancels a running group's waiting members and its continuation, so a deleted job stops
/// without running out its level.
async fn cancel_group(state: &AppState, group: i64) -> Result<(), ApiError> {
    for id in state.store.group_job_ids(group).await? {
        match state.store.cancel(id).await {
            // A member that has already ended stays as it is.
            Ok(_) | Err(conveyor_queue::Error::WrongState { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// What the validator found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Verdict {
    /// The output equals the serial recomputation, position by position, exactly.
    pub valid: bool,
    /// Positions compared (C).
    pub positions: usize,
    /// Positions that differ.
    pub mismatches: usize,
    /// The first that differs: position, expected, found.
    pub first_mismatch: Option<(usize, String, String)>,
    /// Time the serial recomputation took.
    pub seconds: f64,
}

/// Recomputes the averages serially from the input files and compares them with the output.
#[utoipa::path(post, path = "/api/average/jobs/{id}/validate", tag = "average",
    responses((status = 200, body = Verdict), (status = 404), (status = 409, description = "not completed")))]
async fn validate(
    State(state): State<AppState>,
    Extension(storage): Extension<Storage>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Verdict>, ApiError> {
    let row = row_or_404(&state, id).await?;
    let Some(output) = row.output.clone() else {
        return Err(ApiError::conflict(format!(
            "job {id} is {}, not completed",
            row.status
        )));
    };
    let started = Instant::now();
    let mut sums = vec![0u64; row.entries as usize];
    for index in 0..row.files as u64 {
        let path = plan::input_path(&row.location, index);
        let bytes = storage
            .get(&path)
            .await
            .map_err(|e| file_error(id, &path, e))?;
        numbers::add_text(&bytes, &mut sums)
            .map_err(|problem| ApiError::internal(&format!("{path}: {problem}")))?;
    }
    let (expected, _) = numbers::averages(&sums, row.files as u64);
    let found = storage
        .get(&output)
        .await
        .map_err(|e| file_error(id, &output, e))?;
    let found = String::from_utf8_lossy(&found);
    let expected: Vec<&str> = expected.split_whitespace().collect();
    let found: Vec<&str> = found.split_whitespace().collect();
    let mut mismatches = expected.len().abs_diff(found.len());
    let mut first_mismatch = None;
    for (position, (e, f)) in expected.iter().zip(&found).enumerate() {
        if e != f {
            mismatches += 1;
            first_mismatch.get_or_insert((position, (*e).to_owned(), (*f).to_owned()));
        }
    }
    Ok(axum::Json(Verdict {
        valid: mismatches == 0,
        positions: expected.len(),
        mismatches,
        first_mismatch,
        seconds: started.elapsed().as_secs_f64(),
    }))
}

/// A file of job `id` could not be read: 410 when it is gone from the store (removed by
/// hand, or the store was wiped), so a client is told its data no longer exists rather
/// than that the server failed; 500 for any other store error.
fn file_error(id: i64, path: &str, error: object_store::Error) -> ApiError {
    match error {
        object_store::Error::NotFound { .. } => ApiError::new(
            StatusCode::GONE,
            format!(
                "job {id}'s file {path} is gone from the store: its data can no longer be read"
            ),
        ),
        other => ApiError::internal(&other),
    }
}

/// The averages: C numbers, one space apart.
#[utoipa::path(get, path = "/api/average/jobs/{id}/output", tag = "average",
    responses((status = 200, content_type = "text/plain"), (status = 404), (status = 409),
        (status = 410, description = "the job's files are gone from the store")))]
async fn download(
    State(state): State<AppState>,
    Extension(storage): Extension<Storage>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let row = row_or_404(&state, id).await?;
    let Some(output) = row.output else {
        return Err(ApiError::conflict(format!(
            "job {id} is {}, not completed",
            row.status
        )));
    };
    let bytes = storage
        .get(&output)
        .await
        .map_err(|e| file_error(id, &output, e))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"average-{id}.txt\""),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// W and the seed's worker metrics for queue `average`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Workers {
    /// The queue.
    pub queue: String,
    /// W set through the API (each worker's slots for this queue), if set.
    pub w: Option<u32>,
    /// Live workers serving the queue.
    pub workers: usize,
    /// Their slots for it, in all.
    pub slots: u64,
    /// Slots running a task.
    pub busy: u64,
    /// Slots free.
    pub idle: u64,
    /// Average jobs not ended.
    pub jobs_in_queue: i64,
    /// Tasks waiting to run.
    pub tasks_in_queue: i64,
}

/// Reads W and the worker metrics (also exported on /metrics).
pub async fn worker_metrics(state: &AppState) -> Result<Workers, ApiError> {
    let w = state
        .store
        .queue_settings()
        .await?
        .into_iter()
        .find(|(name, _)| name == QUEUE)
        .map(|(_, w)| w as u32);
    let live = state
        .store
        .workers(state.settings.worker_seen_within_ms)
        .await?;
    let serving: Vec<u64> = live
        .iter()
        .filter_map(|worker| worker.queues.get(QUEUE).and_then(serde_json::Value::as_u64))
        .collect();
    let counts = state.store.queue_counts().await?;
    let count = |job_state: JobState| {
        counts
            .iter()
            .filter(|q| q.queue == QUEUE)
            .flat_map(|q| q.by_state.iter())
            .filter(|(s, _)| *s == job_state)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let busy = count(JobState::Running) as u64;
    let slots: u64 = serving.iter().sum();
    let workers = Workers {
        queue: QUEUE.to_owned(),
        w,
        workers: serving.len(),
        slots,
        busy,
        idle: slots.saturating_sub(busy),
        jobs_in_queue: db::active(&state.store).await?,
        tasks_in_queue: count(JobState::Available)
            + count(JobState::Scheduled)
            + count(JobState::Retryable),
    };
    metrics::gauge!("average_jobs_in_queue").set(workers.jobs_in_queue as f64);
    metrics::gauge!("average_tasks_in_queue").set(workers.tasks_in_queue as f64);
    metrics::gauge!("average_slots_busy").set(workers.busy as f64);
    metrics::gauge!("average_slots_idle").set(workers.idle as f64);
    Ok(workers)
}

/// W and the worker metrics.
#[utoipa::path(get, path = "/api/average/workers", tag = "average", responses((status = 200, body = Workers)))]
async fn workers(State(state): State<AppState>) -> Result<axum::Json<Workers>, ApiError> {
    Ok(axum::Json(worker_metrics(&state).await?))
}

/// `PUT /api/average/workers`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetWorkers {
    /// Slots per worker for queue `average` (1 to 1,000); workers apply it at their next
    /// heartbeat, without a restart.
    pub w: u32,
}

/// Sets W.
#[utoipa::path(put, path = "/api/average/workers", tag = "average", request_body = SetWorkers,
    responses((status = 200, body = Workers), (status = 422)))]
async fn set_workers(
    State(state): State<AppState>,
    Json(request): Json<SetWorkers>,
) -> Result<axum::Json<Workers>, ApiError> {
    if !(1..=W_MAX).contains(&request.w) {
        return Err(ApiError::unprocessable(format!(
            "w must be from 1 to {W_MAX}, not {}",
            request.w
        )));
    }
    state.store.set_concurrency(QUEUE, request.w).await?;
    Ok(axum::Json(worker_metrics(&state).await?))
}
