//! The seed's routes, byte-compatible with its clients:
//!
//! - `POST /api/tasks/add` (optional body `{"target": n, "step": n}`) → 200
//!   `{"success":true,"result":{"id":"<id>","message":"Task queued."}}`
//! - `GET /api/tasks/status/{id}` → 200 `{"success":true,"result":{"progress":{"status":
//!   "Queued|Processing|Completed|Failed","timeElapsed":"<seconds>","progress":"<percent>"}}}`;
//!   unknown id → 404 `{"success":false,"error":{"message":"Task not found."}}`.
//!
//! Errors keep the seed's envelope rather than problem documents, because its clients read
//! `success` and `error.message`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use conveyor_queue::{Job, JobState, NewJob};
use conveyor_web::AppState;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::task::{CountArgs, CountResult, KIND, QUEUE};

/// The seed's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_task))
        .routes(routes!(task_status))
}

/// The seed's success envelope.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Success<T> {
    /// Always true.
    pub success: bool,
    /// The payload.
    pub result: T,
}

/// `POST /api/tasks/add`'s result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Queued {
    /// The task's id (a job id, as a string).
    pub id: String,
    /// Always "Task queued.".
    pub message: String,
}

/// `GET /api/tasks/status/{id}`'s result.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusResult {
    /// The task's progress.
    pub progress: TaskProgress,
}

/// A task's progress, every value a string as in the seed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TaskProgress {
    /// Queued, Processing, Completed or Failed.
    pub status: String,
    /// Seconds counted so far, e.g. "1.25".
    #[serde(rename = "timeElapsed")]
    pub time_elapsed: String,
    /// Percent done, e.g. "42".
    pub progress: String,
}

/// The seed's error envelope (fields in the seed's order: its clients may compare bytes).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Failure {
    /// Always false.
    pub success: bool,
    /// What went wrong.
    pub error: FailureMessage,
}

/// The error inside [`Failure`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FailureMessage {
    /// A sentence, e.g. "Task not found.".
    pub message: String,
}

/// An error in the seed's envelope.
struct TaskError(StatusCode, String);

impl IntoResponse for TaskError {
    fn into_response(self) -> Response {
        let body = Failure {
            success: false,
            error: FailureMessage { message: self.1 },
        };
        (self.0, axum::Json(body)).into_response()
    }
}

impl From<conveyor_queue::Error> for TaskError {
    fn from(error: conveyor_queue::Error) -> Self {
        // The engine's 4xx cases cannot happen for a job this module built; anything else
        // is internal, and logged once by the common error type.
        let api = conveyor_web::ApiError::from(error);
        Self(api.status, api.detail)
    }
}

fn not_found() -> TaskError {
    TaskError(StatusCode::NOT_FOUND, "Task not found.".to_owned())
}

/// Queue a counting task (the seed's route).
#[utoipa::path(post, path = "/api/tasks/add", tag = "longtask",
    request_body(content = Option<CountArgs>, description = "Optional: override the count and the progress step"),
    responses(
        (status = 200, description = "Queued", body = Success<Queued>),
        (status = 422, description = "Bad body", body = Failure),
    ))]
async fn add_task(State(state): State<AppState>, body: Bytes) -> Result<Response, TaskError> {
    // The seed's clients send no body; anything sent (whitespace too) must be a valid
    // override.
    let args: CountArgs = if body.is_empty() {
        CountArgs::default()
    } else {
        // An object, as the document says: serde would take a struct from an array too.
        let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            TaskError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid body: {e}"),
            )
        })?;
        if !value.is_object() {
            return Err(TaskError(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid body: it must be a JSON object, like {\"target\": 1000}".to_owned(),
            ));
        }
        serde_json::from_value(value).map_err(|e| {
            TaskError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid body: {e}"),
            )
        })?
    };
    args.validate()
        .map_err(|e| TaskError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    let job = NewJob::new(KIND, json!(args)).queue(QUEUE);
    let enqueued = state.store.enqueue(job).await?;
    let body = Success {
        success: true,
        result: Queued {
            id: enqueued.job.id.to_string(),
            message: "Task queued.".to_owned(),
        },
    };
    Ok(axum::Json(body).into_response())
}

/// A task's status and progress (the seed's route).
#[utoipa::path(get, path = "/api/tasks/status/{id}", tag = "longtask", params(("id" = String, Path)),
    responses(
        (status = 200, body = Success<StatusResult>),
        (status = 404, description = "Task not found.", body = Failure),
    ))]
async fn task_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, TaskError> {
    let id: i64 = id.parse().map_err(|_| not_found())?;
    let job = state.store.get(id).await?.ok_or_else(not_found)?;
    if job.kind != KIND {
        return Err(not_found());
    }
    let body = Success {
        success: true,
        result: StatusResult {
            progress: progress_of(&job, conveyor_queue::clock::now_ms()),
        },
    };
    Ok(axum::Json(body).into_response())
}

/// The seed's view of a job at time `now` (ms).
fn progress_of(job: &Job, now: i64) -> TaskProgress {
    let seconds = |ms: i64| format!("{:.2}", ms.max(0) as f64 / 1000.0);
    let percent = match (job.progress_done, job.progress_total) {
        (Some(done), Some(total)) if total > 0 => (done.saturating_mul(100) / total).clamp(0, 100),
        _ => 0,
    };
    let (status, elapsed, percent) = match job.state {
        JobState::Running => (
            "Processing",
            seconds(now - job.started_at.unwrap_or(now)),
            percent,
        ),
        JobState::Completed => {
            let elapsed = job
                .result
                .as_ref()
                .and_then(|r| serde_json::from_value::<CountResult>(r.clone()).ok())
                .map_or(0, |r| i64::try_from(r.elapsed_ms).unwrap_or(i64::MAX));
            ("Completed", seconds(elapsed), 100)
        }
        JobState::Failed | JobState::Cancelled => {
            let elapsed = match (job.started_at, job.finished_at) {
                (Some(start), Some(end)) => end - start,
                _ => 0,
            };
            ("Failed", seconds(elapsed), percent)
        }
        JobState::Pending | JobState::Scheduled | JobState::Available | JobState::Retryable => {
            ("Queued", seconds(0), percent)
        }
    };
    TaskProgress {
        status: status.to_owned(),
        time_elapsed: elapsed,
        progress: percent.to_string(),
    }
}
