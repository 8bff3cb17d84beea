//! One error type for every route, rendered as RFC 9457 `application/problem+json`.
//!
//! 4xx bodies say what was wrong in terms of the request; 5xx bodies say nothing internal
//! (the cause is logged once, here).

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An HTTP error: a status and a sentence for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status to answer with.
    pub status: StatusCode,
    /// What went wrong, for the client.
    pub detail: String,
    /// Seconds the client should wait before trying again (`Retry-After`), if it should.
    pub retry_after: Option<u32>,
}

/// The body of a problem response.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means "see the status".
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The status's reason phrase.
    pub title: String,
    /// The status code.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
}

impl ApiError {
    /// An error with `status` and `detail`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 503 with `Retry-After`: the store cannot be reached now; nothing was done.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self {
            retry_after: Some(RETRY_AFTER_SECONDS),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
        }
    }

    /// The answer for a database error: 503 when the store is out of reach (a connection
    /// refused or lost, the pool exhausted, the server shutting down, SQLite's file busy),
    /// 500 otherwise (logged, not shown).
    pub fn database(error: &sqlx::Error) -> Self {
        if is_outage(error) {
            tracing::warn!(%error, "the store is out of reach");
            Self::unavailable("the database is out of reach; retry shortly")
        } else {
            Self::internal(error)
        }
    }

    /// 400: the request is malformed.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// 409: the resource's state forbids this.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// 422: well-formed, but the values are not acceptable.
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    /// 500, logging `cause` and telling the client nothing about it.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the server log",
        )
    }
}

/// What a 503 asks clients to wait, in seconds.
pub const RETRY_AFTER_SECONDS: u32 = 2;

/// Whether `error` means the store is out of reach rather than that the statement failed.
pub fn is_outage(error: &sqlx::Error) -> bool {
    use sqlx::Error as E;
    match error {
        E::PoolTimedOut | E::PoolClosed | E::Io(_) | E::Tls(_) | E::WorkerCrashed => true,
        E::Database(db) => {
            let code = db.code().unwrap_or_default();
            // PostgreSQL: class 08 (connection exception), 57P01-57P03 (shutting down,
            // cannot connect now), 53300 (too many connections); SQLite: 5 (busy), 6
            // (locked).
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "57P01" | "57P02" | "57P03" | "53300" | "5" | "6"
                )
        }
        _ => false,
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self::database(&error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem {
            kind: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail,
        };
        let mut response = (self.status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<conveyor_queue::Error> for ApiError {
    fn from(error: conveyor_queue::Error) -> Self {
        use conveyor_queue::Error as E;
        match &error {
            E::UnknownKind(_)
            | E::InternalKind(_)
            | E::InvalidArgs { .. }
            | E::InvalidJob(_)
            | E::Cron { .. } => Self::unprocessable(error.to_string()),
            E::Duplicate(_) | E::WrongState { .. } => Self::conflict(error.to_string()),
            E::Database(database) => Self::database(database),
            E::Unreachable(_) => Self::unavailable(error.to_string()),
            E::Migrate(_) | E::UnsupportedUrl(_) => Self::internal(&error),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        // axum's own status is right (400 syntax, 413 too large, 415 content type, 422
        // shape); its text names the problem, e.g. "missing field `kind` at line 1 column 2".
        Self::new(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::bad_request(rejection.body_text())
    }
}
