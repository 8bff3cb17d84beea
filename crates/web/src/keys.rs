//! API keys for third parties, each with its own requests-a-minute throttle: an app keeps
//! its keys (as SHA-256 hashes, [`hash`]) in its own table and hands [`KeyGate`] a [`Keys`]
//! that finds one; [`gate`] is the middleware.
//!
//! The operator's `CONVEYOR_API_TOKEN` (or a dashboard session) always passes, unthrottled.
//! Otherwise, with `require` on, every request needs a key and writes need an admin key;
//! with it off, a key given is still checked and throttled, and a request without one passes
//! only while the operator's surface is open (no token set). The throttle is a fixed
//! one-minute window per key in each server process (so N replicas allow up to N times the
//! rate; put a shared limiter in front when that matters).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use crate::ApiError;
use crate::auth::Auth;

/// How long a key lookup is trusted before the database is asked again (a revoked key
/// stops working within this).
const CACHE_FOR: Duration = Duration::from_secs(10);
/// Most keys cached or throttled at once.
const TRACKED_MAX: usize = 10_000;

/// A key as its app stores it.
#[derive(Debug, Clone)]
pub struct Key {
    /// Identifier.
    pub id: i64,
    /// Who it is for.
    pub name: String,
    /// Requests a minute allowed.
    pub per_minute: i32,
    /// May write.
    pub admin: bool,
}

/// Where an app keeps its keys.
pub trait Keys: Send + Sync {
    /// The live (not revoked) key whose hash is `hash`, if any.
    fn find<'a>(&'a self, hash: &'a str) -> BoxFuture<'a, Result<Option<Key>, ApiError>>;
}

/// The hex SHA-256 of a key.
pub fn hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random key: `prefix` and 48 hex digits.
pub fn generate(prefix: &str) -> String {
    let bytes: [u8; 24] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{hex}")
}

/// The key check and throttle of an app's routes.
#[derive(Clone)]
pub struct KeyGate {
    keys: Arc<dyn Keys>,
    require: bool,
    auth: Auth,
    inner: Arc<Mutex<Tracked>>,
}

#[derive(Debug, Default)]
struct Tracked {
    lookups: HashMap<String, (Option<Key>, Instant)>,
    windows: HashMap<i64, (Instant, u32)>,
}

impl KeyGate {
    /// A gate over `keys`; `require`: refuse requests without a key (or the operator's
    /// token, which `auth` holds).
    pub fn new(keys: Arc<dyn Keys>, require: bool, auth: Auth) -> Self {
        Self {
            keys,
            require,
            auth,
            inner: Arc::default(),
        }
    }

    async fn lookup(&self, key: &str) -> Result<Option<Key>, ApiError> {
        let hash = hash(key);
        {
            let tracked = self.inner.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((row, at)) = tracked.lookups.get(&hash)
                && at.elapsed() < CACHE_FOR
            {
                return Ok(row.clone());
            }
        }
        let row = self.keys.find(&hash).await?;
        let mut tracked = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if tracked.lookups.len() >= TRACKED_MAX {
            tracked.lookups.clear();
        }
        tracked.lookups.insert(hash, (row.clone(), Instant::now()));
        Ok(row)
    }

    /// Takes one request from the key's minute; `Err(seconds)` to wait when it is spent.
    fn take(&self, key: &Key) -> Result<(), u64> {
        let mut tracked = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if tracked.windows.len() >= TRACKED_MAX {
            tracked.windows.clear();
        }
        let now = Instant::now();
        let window = tracked.windows.entry(key.id).or_insert((now, 0));
        if now.duration_since(window.0) >= Duration::from_secs(60) {
            *window = (now, 0);
        }
        if window.1 >= key.per_minute.max(0) as u32 {
            let left = Duration::from_secs(60).saturating_sub(now.duration_since(window.0));
            return Err(left.as_secs().max(1));
        }
        window.1 += 1;
        Ok(())
    }
}

fn presented(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(key.trim());
    }
    crate::auth::bearer(headers)
}

/// The middleware: 401 for a missing (when required) or unknown key, 403 for a write
/// without an admin key (when required), 429 with `Retry-After` when a key's minute is
/// spent.
pub async fn gate(gate: KeyGate, request: Request, next: Next) -> Response {
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    if !gate.auth.is_open()
        && gate
            .auth
            .allows(request.headers(), conveyor_queue::clock::now_ms())
    {
        return next.run(request).await;
    }
    let key = match presented(&request) {
        None if gate.require || !gate.auth.is_open() => {
            return crate::auth::unauthorized(
                "an API key is required: send it as X-API-Key or Authorization: Bearer",
            );
        }
        None => return next.run(request).await,
        Some(key) => key.to_owned(),
    };
    let row = match gate.lookup(&key).await {
        Ok(Some(row)) => row,
        Ok(None) => {
            return ApiError::new(StatusCode::UNAUTHORIZED, "unknown or revoked API key")
                .into_response();
        }
        Err(error) => return error.into_response(),
    };
    if write && gate.require && !row.admin {
        return ApiError::new(StatusCode::FORBIDDEN, "this API key may only read").into_response();
    }
    if let Err(seconds) = gate.take(&row) {
        let mut response = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "API key {:?} is limited to {} requests a minute; retry in {seconds} s",
                row.name, row.per_minute
            ),
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_hashed_to_hex() {
        let (a, b) = (generate("cm_"), generate("cm_"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 48);
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
