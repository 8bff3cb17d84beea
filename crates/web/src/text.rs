//! Text a store cannot keep, refused before any handler runs.
//!
//! PostgreSQL stores no NUL character in `text` or `jsonb` ("invalid byte sequence for
//! encoding UTF8: 0x00"); SQLite does. So that both stores answer alike, and no handler
//! gets as far as a statement that fails with a 500, the one middleware every listener runs
//! ([`crate::metrics::observe`]) refuses a NUL in the path or the query (400) or in a JSON
//! or form body (422), naming where it is. Lone surrogates need no check here: they are not
//! UTF-8, so neither axum's extractors nor `serde_json` let them through.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};

use crate::error::ApiError;

/// `%00` in a percent-encoded string (the only way a NUL reaches a URL).
fn has_encoded_nul(text: &str) -> bool {
    text.as_bytes().windows(3).any(|w| w == b"%00")
}

/// Refuses a NUL in `request`'s path or query, naming the query parameter.
///
/// # Errors
/// 400 naming where the NUL is.
pub fn check_uri(request: &Request) -> Result<(), ApiError> {
    let uri = request.uri();
    if has_encoded_nul(uri.path()) {
        return Err(ApiError::bad_request(
            "the path holds a NUL character (%00), which cannot be stored",
        ));
    }
    if let Some(query) = uri.query()
        && has_encoded_nul(query)
    {
        let name = query
            .split('&')
            .find(|pair| has_encoded_nul(pair))
            .map(|pair| pair.split('=').next().unwrap_or(pair))
            .unwrap_or_default();
        return Err(ApiError::bad_request(format!(
            "query parameter {name:?} holds a NUL character (%00), which cannot be stored"
        )));
    }
    Ok(())
}

/// What kind of body `request` has, if it is one we look into.
fn body_kind(request: &Request) -> Option<BodyKind> {
    let content_type = request.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Some(BodyKind::Json)
    } else if essence == "application/x-www-form-urlencoded" {
        Some(BodyKind::Form)
    } else {
        None
    }
}

#[derive(Clone, Copy)]
enum BodyKind {
    Json,
    Form,
}

/// Refuses a NUL in a JSON or form body, naming the field; hands back the request with its
/// body (read whole, at most `limit` bytes: a larger one is a 413 as the extractors would
/// say). Other bodies pass untouched.
///
/// # Errors
/// 413 over `limit`, 422 naming the field that holds a NUL.
pub async fn check_body(request: Request, limit: usize) -> Result<Request, ApiError> {
    let Some(kind) = body_kind(&request) else {
        return Ok(request);
    };
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("length limit exceeded: the body is larger than {limit} bytes"),
        )
    })?;
    let found = match kind {
        BodyKind::Json => json_nul(&bytes),
        BodyKind::Form => std::str::from_utf8(&bytes).ok().and_then(|text| {
            text.split('&')
                .find(|pair| has_encoded_nul(pair))
                .map(|pair| format!("field {:?}", pair.split('=').next().unwrap_or(pair)))
        }),
    };
    if let Some(place) = found {
        return Err(ApiError::unprocessable(format!(
            "{place} holds a NUL character, which cannot be stored"
        )));
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Where a JSON body holds a NUL, if it does: a quick scan for `\u0000`, then a parse to
/// name the place only when the scan finds one (a body that is not JSON is left to the
/// extractor to refuse).
fn json_nul(bytes: &[u8]) -> Option<String> {
    let candidate = bytes
        .windows(6)
        .any(|w| w[0] == b'\\' && w[1] == b'u' && w[2..].iter().all(|b| *b == b'0'));
    if !candidate {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    conveyor_queue::job::nul_path(&value, "body").map(|path| format!("`{path}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, content_type: Option<&str>, body: &str) -> Request {
        let mut builder = Request::builder().uri(uri);
        if let Some(content_type) = content_type {
            builder = builder.header(header::CONTENT_TYPE, content_type);
        }
        builder.body(Body::from(body.to_owned())).unwrap()
    }

    #[test]
    fn a_nul_in_the_url_is_refused_naming_the_parameter() {
        let error = check_uri(&request("/api/jobs?state=failed&kind=a%00b", None, "")).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.detail.contains("\"kind\""), "{}", error.detail);
        assert!(check_uri(&request("/user%00x", None, "")).is_err());
        assert!(check_uri(&request("/api/jobs?kind=a%2500b", None, "")).is_ok());
    }

    #[tokio::test]
    async fn a_nul_in_a_body_is_refused_naming_the_field() {
        let json = request(
            "/",
            Some("application/json"),
            r#"{"args": {"a": ["x", "y\u0000"]}}"#,
        );
        let error = check_body(json, 1024).await.unwrap_err();
        assert_eq!(error.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(error.detail.contains("body.args.a[1]"), "{}", error.detail);
        let escaped = request("/", Some("application/json"), r#"{"a": "\\u0000 is text"}"#);
        assert!(
            check_body(escaped, 1024).await.is_ok(),
            "an escaped backslash is no NUL"
        );
        let form = request(
            "/",
            Some("application/x-www-form-urlencoded"),
            "text=a%00b&x=1",
        );
        let error = check_body(form, 1024).await.unwrap_err();
        assert!(error.detail.contains("\"text\""), "{}", error.detail);
        let other = request("/", Some("text/plain"), "\u{0}");
        assert!(
            check_body(other, 1024).await.is_ok(),
            "other bodies are not looked into"
        );
        let big = request("/", Some("application/json"), &"1".repeat(2000));
        assert_eq!(
            check_body(big, 1024).await.unwrap_err().status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
