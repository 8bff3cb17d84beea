//! The general job API under `/api`: jobs, their events, queues, workers, kinds.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use chrono::{DateTime, SecondsFormat};
use conveyor_queue::{Job, JobFilter, JobState, NewJob};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, Problem};
use crate::extract::{Json, Path, Query};
use crate::state::AppState;

/// Largest page of `GET /api/jobs`.
pub const PAGE_MAX: i64 = 500;
/// Most concurrency a queue may be given through the API.
pub const CONCURRENCY_MAX: u32 = 10_000;

/// The job routes, with their OpenAPI description.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_job, list_jobs))
        .routes(routes!(create_jobs))
        .routes(routes!(get_job, delete_job))
        .routes(routes!(bulk_jobs))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
        .routes(routes!(job_events))
        .routes(routes!(list_queues))
        .routes(routes!(set_concurrency, clear_concurrency))
        .routes(routes!(list_workers))
        .routes(routes!(stop_worker))
        .routes(routes!(list_kinds))
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// A job as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// Identifier.
    pub id: i64,
    /// Queue.
    pub queue: String,
    /// Kind (which handler runs it).
    pub kind: String,
    /// Arguments.
    #[schema(value_type = Object)]
    pub args: Value,
    /// State: pending, scheduled, available, running, retryable, completed, failed, cancelled.
    #[schema(value_type = String)]
    pub state: JobState,
    /// Higher runs first.
    pub priority: i32,
    /// Attempts started.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Not started before (RFC 3339).
    pub run_at: String,
    /// Cancellation was asked while it ran.
    pub cancel_requested: bool,
    /// Progress, once reported.
    pub progress: Option<ProgressView>,
    /// Result, once completed.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Last error.
    pub error: Option<String>,
    /// Group it belongs to.
    pub group_id: Option<i64>,
    /// Unique key.
    pub unique_key: Option<String>,
    /// Worker holding it, while running.
    pub worker: Option<String>,
    /// Enqueued at (RFC 3339).
    pub created_at: String,
    /// Latest attempt started at.
    pub started_at: Option<String>,
    /// Ended at.
    pub finished_at: Option<String>,
    /// Only in the answer to an enqueue: why the job may not run soon (no live worker
    /// serves its queue: a typo, or no worker started yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Progress of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressView {
    /// Units done.
    pub done: i64,
    /// Units in all, when known.
    pub total: Option<i64>,
    /// `done / total` in percent, when the total is known.
    pub percent: Option<f64>,
    /// Note.
    pub message: Option<String>,
}

impl ProgressView {
    fn of(job: &Job) -> Option<Self> {
        let done = job.progress_done?;
        let percent = job
            .progress_total
            .filter(|t| *t > 0)
            .map(|t| (done as f64 * 100.0 / t as f64).clamp(0.0, 100.0));
        Some(Self {
            done,
            total: job.progress_total,
            percent,
            message: job.progress_message.clone(),
        })
    }
}

impl From<Job> for JobView {
    fn from(job: Job) -> Self {
        Self {
            progress: ProgressView::of(&job),
            id: job.id,
            queue: job.queue,
            kind: job.kind,
            args: job.args,
            state: job.state,
            priority: job.priority,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            run_at: rfc3339(job.run_at),
            cancel_requested: job.cancel_requested,
            result: job.result,
            error: job.error,
            group_id: job.group_id,
            unique_key: job.unique_key,
            worker: job.lease_owner,
            created_at: rfc3339(job.created_at),
            started_at: job.started_at.map(rfc3339),
            finished_at: job.finished_at.map(rfc3339),
            warning: None,
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// Kind: one of `GET /api/kinds`.
    #[schema(min_length = 1, max_length = 128)]
    pub kind: String,
    /// Arguments for the kind's handler, a JSON object (default `{}`).
    #[serde(default = "empty_object", deserialize_with = "object")]
    #[schema(value_type = Object)]
    pub args: Value,
    /// Queue (default `default`): 1 to 128 letters, digits, `_ . : -`, starting with a
    /// letter or digit.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")]
    pub queue: Option<String>,
    /// Higher runs first (default 0).
    #[schema(minimum = -1000, maximum = 1000)]
    pub priority: Option<i32>,
    /// Earliest start, RFC 3339 (default now; at most ten years ahead).
    pub run_at: Option<String>,
    /// Attempts before failing (default 3).
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<i32>,
    /// While a live job holds this key, the request returns that job (200) instead.
    #[schema(min_length = 1, max_length = 128)]
    pub unique_key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// `args` must be a JSON object, as the document says.
fn object<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
    let value = Value::deserialize(deserializer)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(serde::de::Error::custom("args must be a JSON object"))
    }
}

impl CreateJob {
    /// The bounds the document states, checked alone (no registry, no clock): a batch
    /// holding a job outside them is refused whole, as its schema says.
    fn check_shape(&self) -> Result<(), String> {
        let length = |field: &str, value: &str| {
            (value.is_empty() || value.len() > 128)
                .then(|| format!("{field} must be 1 to 128 bytes long"))
        };
        if let Some(problem) = length("kind", &self.kind).or_else(|| {
            self.unique_key
                .as_deref()
                .and_then(|k| length("unique_key", k))
        }) {
            return Err(problem);
        }
        if let Some(queue) = &self.queue
            && !conveyor_queue::job::is_queue_name(queue)
        {
            return Err(format!(
                "queue {queue:?} is not a queue name: {}",
                conveyor_queue::job::QUEUE_NAME_RULE
            ));
        }
        if self.priority.is_some_and(|p| !(-1000..=1000).contains(&p)) {
            return Err("priority must be between -1000 and 1000".to_owned());
        }
        if self.max_attempts.is_some_and(|m| !(1..=100).contains(&m)) {
            return Err("max_attempts must be between 1 and 100".to_owned());
        }
        Ok(())
    }

    fn into_new_job(self) -> Result<NewJob, ApiError> {
        let mut job = NewJob::new(self.kind, self.args);
        if let Some(queue) = self.queue {
            job = job.queue(queue);
        }
        if let Some(priority) = self.priority {
            job = job.priority(priority);
        }
        if let Some(max_attempts) = self.max_attempts {
            job = job.max_attempts(max_attempts);
        }
        if let Some(key) = self.unique_key {
            job = job.unique_key(key);
        }
        if let Some(run_at) = self.run_at {
            let at = DateTime::parse_from_rfc3339(&run_at).map_err(|e| {
                ApiError::unprocessable(format!("run_at must be an RFC 3339 time: {e}"))
            })?;
            job = job.run_at(at.timestamp_millis());
        }
        Ok(job)
    }
}

/// Enqueue a job.
#[utoipa::path(post, path = "/jobs", tag = "jobs", request_body = CreateJob,
    responses(
        (status = 201, description = "Enqueued", body = JobView),
        (status = 200, description = "A live job holds the unique key; here it is", body = JobView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Unknown or app-internal kind, bad arguments or fields", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_job(
    State(state): State<AppState>,
    Json(request): Json<CreateJob>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let job = request.into_new_job()?;
    check_public(&state, &job)?;
    let enqueued = state.store.enqueue(job).await?;
    let status = if enqueued.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut view = JobView::from(enqueued.job);
    // Accepted either way (a worker may start later), but said, so a typo'd queue does not
    // wait unnoticed.
    if !state.is_served(&view.queue).await.unwrap_or(true) {
        view.warning = Some(format!(
            "no live worker serves queue {:?}: the job waits until one does",
            view.queue
        ));
    }
    Ok((status, Json(view)))
}

/// Most jobs in one `POST /api/jobs/batch`.
pub const BATCH_MAX: usize = conveyor_queue::commit::BATCH_MAX;

/// Jobs to enqueue together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobs {
    /// From 1 to 1,000 jobs, each as `POST /api/jobs` takes it.
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<CreateJob>,
}

/// One job's outcome in a batch.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchOutcome {
    /// What `POST /api/jobs` would have answered for this job alone: 201 enqueued, 200 a
    /// live job holds its unique key (`id` is that job), 4xx refused.
    pub status: u16,
    /// The job's id, unless it was refused.
    pub id: Option<i64>,
    /// Why it was refused.
    pub error: Option<String>,
}

/// The outcomes of a batch, in the order of its jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BatchAnswer {
    /// One per job, in order.
    pub results: Vec<BatchOutcome>,
    /// How many were enqueued (201).
    pub enqueued: usize,
    /// How many were refused (4xx).
    pub refused: usize,
}

/// Enqueue up to 1,000 jobs in one request: each is checked and enqueued as `POST /api/jobs`
/// would, and gets its own outcome; a bad job does not stop the others. The jobs share
/// transactions.
#[utoipa::path(post, path = "/jobs/batch", tag = "jobs", request_body = CreateJobs,
    responses(
        (status = 200, description = "Each job's outcome, in order", body = BatchAnswer),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No jobs, more than 1,000, or a field of the wrong shape", body = Problem, content_type = "application/problem+json"),
    ))]
async fn create_jobs(
    State(state): State<AppState>,
    Json(request): Json<CreateJobs>,
) -> Result<Json<BatchAnswer>, ApiError> {
    let count = request.jobs.len();
    if !(1..=BATCH_MAX).contains(&count) {
        return Err(ApiError::unprocessable(format!(
            "a batch holds 1 to {BATCH_MAX} jobs, not {count}"
        )));
    }
    // What breaks the document's schema refuses the batch; what only its kind or the store
    // refuses is that job's own outcome.
    if let Some((index, problem)) = request
        .jobs
        .iter()
        .enumerate()
        .find_map(|(i, job)| job.check_shape().err().map(|p| (i, p)))
    {
        return Err(ApiError::unprocessable(format!("jobs[{index}]: {problem}")));
    }
    let mut results: Vec<Option<BatchOutcome>> = Vec::with_capacity(count);
    let mut accepted = Vec::with_capacity(count);
    for job in request.jobs {
        let checked = job.into_new_job().and_then(|job| {
            check_public(&state, &job)?;
            Ok(job)
        });
        match checked {
            Ok(job) => {
                accepted.push(job);
                results.push(None);
            }
            Err(error) => results.push(Some(refused(error))),
        }
    }
    let mut outcomes = state.store.enqueue_each(accepted).await.into_iter();
    let results: Vec<BatchOutcome> = results
        .into_iter()
        .map(|slot| {
            slot.unwrap_or_else(|| match outcomes.next().expect("one outcome per job") {
                Ok(enqueued) => BatchOutcome {
                    status: if enqueued.duplicate { 200 } else { 201 },
                    id: Some(enqueued.job.id),
                    error: None,
                },
                Err(error) => refused(error.into()),
            })
        })
        .collect();
    // A job the store failed to take says so in its own outcome (5xx) beside the ones it
    // took: the batch is not one transaction, so one error for all would hide what happened.
    let enqueued = results.iter().filter(|r| r.status == 201).count();
    let refused = results.iter().filter(|r| r.status >= 400).count();
    Ok(Json(BatchAnswer {
        results,
        enqueued,
        refused,
    }))
}

/// The registry's check of a job the API was asked for, with a suggestion when the kind is
/// unknown but close to a public one (`nop` → `noop`).
fn check_public(state: &AppState, job: &NewJob) -> Result<(), ApiError> {
    state.registry.check_public(job).map_err(|error| {
        let mut refused = ApiError::from(error);
        if let Some(near) = nearest(&job.kind, &state.registry.public_kinds())
            && refused.status == StatusCode::UNPROCESSABLE_ENTITY
            && near != job.kind
        {
            refused.detail = format!("{}; did you mean {near:?}?", refused.detail);
        }
        refused
    })
}

/// The candidate closest to `word` by edit distance, if it is within a third of its length
/// (at least 1): close enough to be a typo.
pub fn nearest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word: Vec<char> = word.chars().collect();
    let distance = |other: &str| {
        let other: Vec<char> = other.chars().collect();
        let mut row: Vec<usize> = (0..=other.len()).collect();
        for (i, a) in word.iter().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, b) in other.iter().enumerate() {
                let substituted = previous + usize::from(a != b);
                previous = row[j + 1];
                row[j + 1] = substituted.min(row[j] + 1).min(previous + 1);
            }
        }
        row[other.len()]
    };
    let allowed = (word.len() / 3).max(1);
    candidates
        .iter()
        .map(|c| (distance(c), *c))
        .filter(|(d, _)| *d <= allowed)
        .min()
        .map(|(_, c)| c)
}

fn refused(error: ApiError) -> BatchOutcome {
    BatchOutcome {
        status: error.status.as_u16(),
        id: None,
        error: Some(error.detail),
    }
}

/// Filters and cursor of `GET /api/jobs`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only jobs in this state.
    #[param(value_type = Option<String>)]
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs whose arguments (as JSON text) contain this, 1 to 200 characters.
    #[param(max_length = 200)]
    pub args_contain: Option<String>,
    /// `false`: leave out the apps' internal kinds (`average.sum`, `mining.tick`, ...).
    pub internal: Option<bool>,
    /// Cursor: only jobs with a lower id (pass the previous page's `next_cursor`).
    pub before: Option<i64>,
    /// Page size (default 50, at most 500).
    pub limit: Option<i64>,
}

/// Bounds `args_contain`: 1 to [`ARGS_CONTAIN_MAX`] characters.
pub fn check_args_contain(text: Option<String>) -> Result<Option<String>, ApiError> {
    match text {
        Some(t) if t.is_empty() || t.chars().count() > ARGS_CONTAIN_MAX => {
            Err(ApiError::bad_request(format!(
                "args_contain must be 1 to {ARGS_CONTAIN_MAX} characters"
            )))
        }
        other => Ok(other),
    }
}

/// Longest `args_contain`.
pub const ARGS_CONTAIN_MAX: usize = 200;

/// A page of jobs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobPage {
    /// Jobs, newest first.
    pub jobs: Vec<JobView>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_cursor: Option<i64>,
}

/// List jobs, newest first.
#[utoipa::path(get, path = "/jobs", tag = "jobs", params(ListParams),
    responses(
        (status = 200, body = JobPage),
        (status = 400, description = "Bad parameter", body = Problem, content_type = "application/problem+json"),
    ))]
async fn list_jobs(
    State(state): State<AppState>,
    Query(params): Query<ListParams>,
) -> Result<Json<JobPage>, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=PAGE_MAX).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {PAGE_MAX}"
        )));
    }
    let exclude_kinds = (params.internal == Some(false)).then(|| internal_kinds(&state));
    let filter = JobFilter {
        state: params.state,
        kind: params.kind,
        queue: params.queue,
        exclude_kinds,
        args_contain: check_args_contain(params.args_contain)?,
        before: params.before,
        limit,
    };
    let jobs = state.store.list(&filter).await?;
    let next_cursor = (jobs.len() as i64 == limit)
        .then(|| jobs.last().map(|j| j.id))
        .flatten();
    Ok(Json(JobPage {
        jobs: jobs.into_iter().map(JobView::from).collect(),
        next_cursor,
    }))
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("no job with id {id}"))
}

/// Delete an ended job (with its attempt history).
#[utoipa::path(delete, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not ended, or its group still needs it", body = Problem, content_type = "application/problem+json"),
    ))]
async fn delete_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    state.store.delete(id).await?.ok_or_else(|| not_found(id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// A bulk action: what to do to every job the filters select.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    /// `retry` (ended jobs run again, waiting ones now), `cancel` (jobs not ended) or
    /// `delete` (ended jobs).
    pub action: String,
    /// Only jobs in this state.
    #[schema(value_type = Option<String>)]
    pub state: Option<JobState>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs whose arguments (as JSON text) contain this, 1 to 200 characters.
    #[schema(max_length = 200)]
    pub args_contain: Option<String>,
    /// `false`: leave out the apps' internal kinds.
    pub internal: Option<bool>,
    /// Only count what would be touched (to confirm first).
    #[serde(default)]
    pub dry_run: bool,
}

/// What a bulk action did.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct BulkDone {
    /// Jobs the filters selected (at most 10,000).
    pub matched: usize,
    /// Jobs changed (0 with `dry_run`; jobs in a state the action does not apply to are
    /// skipped).
    pub done: usize,
    /// More than 10,000 matched: send it again for the rest.
    pub more: bool,
}

/// Retry, cancel or delete every job the filters select (at most 10,000 a call, newest
/// first); `dry_run` counts them first.
#[utoipa::path(post, path = "/jobs/bulk", tag = "jobs", request_body = Bulk,
    responses(
        (status = 200, body = BulkDone),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn bulk_jobs(
    State(state): State<AppState>,
    Json(body): Json<Bulk>,
) -> Result<Json<BulkDone>, ApiError> {
    let action = match body.action.as_str() {
        "retry" => conveyor_queue::BulkAction::Retry,
        "cancel" => conveyor_queue::BulkAction::Cancel,
        "delete" => conveyor_queue::BulkAction::Delete,
        other => {
            return Err(ApiError::unprocessable(format!(
                "action must be retry, cancel or delete, not {other:?}"
            )));
        }
    };
    let filter = JobFilter {
        state: body.state,
        kind: body.kind,
        queue: body.queue,
        exclude_kinds: (body.internal == Some(false)).then(|| internal_kinds(&state)),
        args_contain: check_args_contain(body.args_contain)?,
        before: None,
        limit: 0,
    };
    let outcome = state.store.bulk(action, &filter, body.dry_run).await?;
    Ok(Json(BulkDone {
        matched: outcome.matched,
        done: outcome.done,
        more: outcome.more,
    }))
}

/// The apps' internal kinds (registered, not public).
pub fn internal_kinds(state: &AppState) -> Vec<String> {
    let public = state.registry.public_kinds();
    state
        .registry
        .kinds()
        .into_iter()
        .filter(|k| !public.contains(k))
        .map(str::to_owned)
        .collect()
}

/// Read one job.
#[utoipa::path(get, path = "/jobs/{id}", tag = "jobs", params(("id" = i64, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.store.get(id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(job.into()))
}

/// Cancel a job: a waiting job never runs; a running one is told to stop.
#[utoipa::path(post, path = "/jobs/{id}/cancel", tag = "jobs", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "Cancelled, or asked to stop", body = JobView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Already ended", body = Problem, content_type = "application/problem+json"),
    ))]
async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.store.cancel(id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(job.into()))
}

/// Run an ended job again (fresh attempts), or a waiting one now.
#[utoipa::path(post, path = "/jobs/{id}/retry", tag = "jobs", params(("id" = i64, Path)),
    responses(
        (status = 200, body = JobView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Running or pending, or its unique key is taken", body = Problem, content_type = "application/problem+json"),
    ))]
async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.store.retry(id).await?.ok_or_else(|| not_found(id))?;
    Ok(Json(job.into()))
}

/// Stream a job's progress and state changes (Server-Sent Events) until it ends.
///
/// Events: `state` (the whole job, first and at every change of state) and `progress`
/// (a [`ProgressView`]). The stream ends after the `state` event of a final state.
#[utoipa::path(get, path = "/jobs/{id}/events", tag = "jobs", params(("id" = i64, Path)),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many open streams", body = Problem, content_type = "application/problem+json"),
    ))]
async fn job_events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.stream_permit()?;
    let first = state.store.get(id).await?.ok_or_else(|| not_found(id))?;
    let interval = state.settings.event_interval;
    let watch = Watch {
        state,
        last: None,
        pending: Some(first),
        ended: false,
    };
    Ok(crate::sse::polled(watch, interval, permit))
}

/// Reads the job and tells what changed. Reading the row (rather than a broadcast from the
/// worker) works the same whichever process runs the job; the cost is one indexed read per
/// stream per interval, bounded by the number of streams.
struct Watch {
    state: AppState,
    last: Option<Job>,
    pending: Option<Job>,
    ended: bool,
}

impl crate::sse::Poll for Watch {
    async fn poll(&mut self) -> Option<Vec<Event>> {
        if self.ended {
            return None;
        }
        let job = match self.pending.take() {
            Some(job) => job,
            None => match self.state.store.get(self.last.as_ref()?.id).await {
                Ok(Some(job)) => job,
                // Pruned, or the database is gone: nothing more to tell.
                Ok(None) | Err(_) => return None,
            },
        };
        let event = match &self.last {
            Some(last) if last.state == job.state => {
                let progress = ProgressView::of(&job);
                if progress == ProgressView::of(last) {
                    self.last = Some(job);
                    return Some(Vec::new());
                }
                Event::default().event("progress").json_data(progress)
            }
            _ => {
                self.ended = job.state.is_final();
                Event::default()
                    .event("state")
                    .json_data(JobView::from(job.clone()))
            }
        };
        self.last = Some(job);
        // Serializing our own types cannot fail; an empty event is harmless if it did.
        Some(vec![event.unwrap_or_default()])
    }
}

/// One queue's counts.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueueView {
    /// Queue name.
    pub queue: String,
    /// Jobs by state.
    #[schema(value_type = Object)]
    pub counts: serde_json::Map<String, Value>,
    /// Jobs completed in the last minute.
    pub completed_last_minute: i64,
    /// Concurrency set through the API, if any.
    pub concurrency: Option<usize>,
}

/// Queues with their job counts by state and recent throughput.
#[utoipa::path(get, path = "/queues", tag = "queues", responses((status = 200, body = [QueueView])))]
async fn list_queues(State(state): State<AppState>) -> Result<Json<Vec<QueueView>>, ApiError> {
    let counts = state.store.queue_counts().await?;
    let settings = state.store.queue_settings().await?;
    let mut views: Vec<QueueView> = counts
        .into_iter()
        .map(|q| QueueView {
            concurrency: settings.iter().find(|s| s.0 == q.queue).map(|s| s.1),
            counts: q
                .by_state
                .iter()
                .map(|(s, n)| (s.as_str().to_owned(), Value::from(*n)))
                .collect(),
            queue: q.queue,
            completed_last_minute: q.completed_last_minute,
        })
        .collect();
    // Queues configured but still empty are queues too.
    for (queue, concurrency) in settings {
        if !views.iter().any(|v| v.queue == queue) {
            views.push(QueueView {
                queue,
                counts: JobState::ALL
                    .iter()
                    .map(|s| (s.as_str().to_owned(), Value::from(0)))
                    .collect(),
                completed_last_minute: 0,
                concurrency: Some(concurrency),
            });
        }
    }
    Ok(Json(views))
}

/// New concurrency for a queue.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// Jobs of the queue each worker runs at once (0 pauses the queue; at most 10,000).
    pub concurrency: u32,
}

/// A queue's concurrency as set, with a warning when no live worker serves the queue.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ConcurrencySet {
    /// Jobs of the queue each worker runs at once (0: paused).
    pub concurrency: u32,
    /// Set when no live worker serves the queue, so the setting changes nothing yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Change a queue's concurrency on every worker, without a restart (applied within a
/// heartbeat, a third of the lease); 0 pauses the queue (running jobs finish, no new ones
/// start) until `DELETE` resumes it.
#[utoipa::path(put, path = "/queues/{queue}/concurrency", tag = "queues", params(("queue" = String, Path)),
    request_body = Concurrency,
    responses(
        (status = 200, body = ConcurrencySet),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
async fn set_concurrency(
    State(state): State<AppState>,
    Path(queue): Path<String>,
    Json(body): Json<Concurrency>,
) -> Result<Json<ConcurrencySet>, ApiError> {
    if body.concurrency > CONCURRENCY_MAX {
        return Err(ApiError::unprocessable(format!(
            "concurrency must be at most {CONCURRENCY_MAX}"
        )));
    }
    NewJob::new("-", Value::Null)
        .queue(queue.clone())
        .validate()?;
    state
        .store
        .set_concurrency(&queue, body.concurrency)
        .await?;
    let warning = (!state.is_served(&queue).await.unwrap_or(true)).then(|| {
        format!("no live worker serves queue {queue:?}: the setting applies when one does")
    });
    Ok(Json(ConcurrencySet {
        concurrency: body.concurrency,
        warning,
    }))
}

/// Forget the concurrency set for a queue: every worker goes back to its own configured
/// value within a heartbeat (this resumes a paused queue).
#[utoipa::path(delete, path = "/queues/{queue}/concurrency", tag = "queues", params(("queue" = String, Path)),
    responses(
        (status = 204, description = "Workers use their configured concurrency again"),
        (status = 404, description = "No concurrency was set for the queue", body = Problem, content_type = "application/problem+json"),
    ))]
async fn clear_concurrency(
    State(state): State<AppState>,
    Path(queue): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.clear_concurrency(&queue).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!(
            "no concurrency is set for queue {queue:?}"
        )))
    }
}

/// A live worker process.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WorkerView {
    /// Id (the `worker` of its running jobs).
    pub id: String,
    /// Host.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// Queue → concurrency.
    #[schema(value_type = Object)]
    pub queues: Value,
    /// Jobs running at its last heartbeat.
    pub running: i64,
    /// Started at.
    pub started_at: String,
    /// Last heartbeat.
    pub last_seen_at: String,
}

/// Ask a worker to finish its running jobs and stop (read at its next heartbeat, a third
/// of the lease). A `work` process whose worker stops exits; `up` keeps its other roles.
#[utoipa::path(post, path = "/workers/{id}/stop", tag = "workers", params(("id" = String, Path)),
    responses(
        (status = 202, description = "Asked; it stops within a heartbeat and the grace period"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ))]
async fn stop_worker(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if state.store.request_worker_stop(&id).await? {
        Ok(StatusCode::ACCEPTED)
    } else {
        Err(ApiError::not_found(format!("no worker {id:?}")))
    }
}

/// Workers that heartbeated within the last minute.
#[utoipa::path(get, path = "/workers", tag = "workers", responses((status = 200, body = [WorkerView])))]
async fn list_workers(State(state): State<AppState>) -> Result<Json<Vec<WorkerView>>, ApiError> {
    let workers = state
        .store
        .workers(state.settings.worker_seen_within_ms)
        .await?;
    Ok(Json(
        workers
            .into_iter()
            .map(|w| WorkerView {
                id: w.id,
                host: w.host,
                pid: w.pid,
                queues: w.queues,
                running: w.running,
                started_at: rfc3339(w.started_at),
                last_seen_at: rfc3339(w.last_seen_at),
            })
            .collect(),
    ))
}

/// The job kinds the job API accepts (the public ones; each app enqueues its own others).
#[utoipa::path(get, path = "/kinds", tag = "jobs", responses((status = 200, body = [String])))]
async fn list_kinds(State(state): State<AppState>) -> Json<Vec<String>> {
    Json(
        state
            .registry
            .public_kinds()
            .into_iter()
            .map(str::to_owned)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn typos_find_their_kind_and_strangers_find_none() {
        let kinds = ["fail", "longtask", "noop", "sleep"];
        assert_eq!(nearest("nop", &kinds), Some("noop"));
        assert_eq!(nearest("slep", &kinds), Some("sleep"));
        assert_eq!(nearest("longtsak", &kinds), Some("longtask"));
        assert_eq!(nearest("average.sum", &kinds), None);
        assert_eq!(nearest("x", &kinds), None);
    }
}
