//! Per-client rate limiting: a token bucket per client address, refilled at `per_second` up
//! to twice that; a request without a token gets a 429 problem with `Retry-After`. The
//! address is the [`ClientAddr`] the middleware resolved, so clients behind a trusted proxy
//! are counted apart (see [`crate::client`]). The table forgets idle addresses when it grows
//! past 10,000.
//!
//! Hand-written rather than `governor`: a keyed `governor` limiter brings `dashmap`,
//! `quanta` and `nonzero_ext` for what is a 20-line bucket here, and its keyed store needs
//! the same forgetting step.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::client::ClientAddr;

/// The buckets.
#[derive(Debug, Clone)]
pub struct PerIp {
    per_second: f64,
    buckets: Arc<Mutex<HashMap<IpAddr, (f64, Instant)>>>,
}

const FORGET_ABOVE: usize = 10_000;

impl PerIp {
    /// `per_second` requests a second per address, bursts of twice that.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second: f64::from(per_second),
            buckets: Arc::default(),
        }
    }

    /// Takes a token for `ip`; `Err(seconds)` to wait when there is none.
    pub fn take(&self, ip: IpAddr) -> Result<(), u64> {
        let burst = self.per_second * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("not poisoned");
        if buckets.len() > FORGET_ABOVE {
            let per_second = self.per_second;
            buckets.retain(|_, (tokens, at)| {
                *tokens + at.elapsed().as_secs_f64() * per_second < burst
            });
        }
        let (tokens, at) = buckets.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *tokens) / self.per_second).ceil().max(1.0) as u64)
        }
    }
}

/// Middleware: refuses a client over its rate with 429 and `Retry-After`.
/// `counter` names the Prometheus counter of refusals.
pub async fn limit(
    limiter: PerIp,
    counter: &'static str,
    request: Request,
    next: Next,
) -> Response {
    let ip = ClientAddr::of(request.extensions()).ip;
    if let Err(wait) = limiter.take(ip) {
        metrics::counter!(counter).increment(1);
        let body = serde_json::json!({
            "type": "about:blank",
            "title": "Too Many Requests",
            "status": 429,
            "detail": format!("more than {} requests a second from {ip}; retry in {wait} s", limiter.per_second),
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusals_then_refills() {
        let limiter = PerIp::new(5);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..10 {
            limiter.take(ip).unwrap();
        }
        assert_eq!(limiter.take(ip), Err(1));
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        assert!(limiter.take(other).is_ok(), "addresses are counted apart");
        std::thread::sleep(std::time::Duration::from_millis(450));
        assert!(limiter.take(ip).is_ok(), "refilled at 5 a second");
    }
}
