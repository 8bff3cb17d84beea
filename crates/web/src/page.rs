//! [`PageError`]: what a dashboard page answers when it cannot be made: a short text; the
//! cause of a 500 goes to the log only, and the page shows the request id that finds it.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// A page that could not be made.
#[derive(Debug)]
pub struct PageError(pub StatusCode, pub String);

impl PageError {
    /// A 400 naming what is wrong with the request.
    pub fn bad_request(text: impl Into<String>) -> Self {
        PageError(StatusCode::BAD_REQUEST, text.into())
    }

    /// A 404 naming what is missing.
    pub fn not_found(text: impl Into<String>) -> Self {
        PageError(StatusCode::NOT_FOUND, text.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

impl<E: std::fmt::Display> From<E> for PageError {
    fn from(error: E) -> Self {
        tracing::error!(%error, "a dashboard page failed");
        let id = crate::metrics::current_request_id();
        PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The page could not be made; the server log has the cause (request id {id})."),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_page_shows_a_request_id_not_its_cause() {
        let cause =
            "error returned from database: password authentication failed for user \"root\"";
        let failed: PageError = cause.to_owned().into();
        let response = failed.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("request id"), "{text}");
        assert!(!text.contains("password authentication failed"), "{text}");
    }
}
