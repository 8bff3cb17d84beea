//! GitHub's REST API under a rate-limit governor shared through the database.
//!
//! Before each request a worker takes one unit of a bucket's budget (`core` or `search`)
//! from `repostats_rate`, under the store's write lock, so every worker on every machine
//! sees the same budget. Tokens are used in order: the next only when one is exhausted;
//! without tokens the budget is "anonymous" (60/hour core, 10/minute search). When every
//! token is exhausted or blocked, the worker waits until the earliest reset (its job's lease
//! is renewed meanwhile), and the request goes out then. Each answer's `x-ratelimit-*`
//! headers correct the budget; `retry-after` and 403/429 block the token until they allow;
//! a limit hit without those headers (a secondary limit) blocks it for 60 s, doubling.
//! 304 answers (conditional requests with a stored ETag) cost nothing, as on GitHub.

use std::time::Duration;

use conveyor_queue::Store;
use conveyor_queue::clock::now_ms;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

use crate::db;

/// Waited beyond a stated reset, which GitHub gives in whole seconds.
const RESET_MARGIN_MS: i64 = 1_000;

/// How long the first request for an unknown budget goes alone.
const PROBE_MS: i64 = 1_000;

/// Attempts of one request that met a rate limit the budget did not foresee.
const LIMITED_ATTEMPTS: usize = 5;

/// GitHub's rate buckets we use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// Repositories, languages: 60/hour anonymous, 5,000/hour per token.
    Core,
    /// Search: 10/minute anonymous, 30/minute per token.
    Search,
}

impl Bucket {
    fn name(self) -> &'static str {
        match self {
            Bucket::Core => "core",
            Bucket::Search => "search",
        }
    }

    /// The budget assumed before the first answer says otherwise.
    fn assumed(self, anonymous: bool) -> (i64, i64) {
        match (self, anonymous) {
            (Bucket::Core, true) => (60, 3_600_000),
            (Bucket::Core, false) => (5_000, 3_600_000),
            (Bucket::Search, true) => (10, 60_000),
            (Bucket::Search, false) => (30, 60_000),
        }
    }
}

/// Settings of the client.
#[derive(Debug, Clone)]
pub struct GithubConfig {
    /// `https://api.github.com`, or a fake's URL.
    pub api_url: String,
    /// Tokens, in the order to use them; empty for anonymous requests.
    pub tokens: Vec<SecretString>,
    /// Longest one wait for a reset (a job waits in steps of this).
    pub max_wait: Duration,
}

impl Default for GithubConfig {
    /// GitHub itself, anonymously.
    fn default() -> Self {
        Self {
            api_url: GITHUB.to_owned(),
            tokens: Vec::new(),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// GitHub's API.
pub const GITHUB: &str = "https://api.github.com";

/// An answer: status, body, ETag.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status (200 or 304 here; errors are [`GithubError`]).
    pub status: StatusCode,
    /// The body.
    pub body: bytes::Bytes,
    /// Its ETag.
    pub etag: Option<String>,
}

/// Why a request did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    /// Rate limited; the budget now says when to try again.
    #[error("GitHub rate limit ({status}); the budget waits until it resets")]
    Limited {
        /// 403 or 429.
        status: StatusCode,
    },
    /// Not found (a repository deleted since it was listed).
    #[error("not found on GitHub")]
    NotFound,
    /// Any other failure.
    #[error("GitHub request failed: {0}")]
    Other(String),
}

/// The client.
#[derive(Debug, Clone)]
pub struct Github {
    http: reqwest::Client,
    config: GithubConfig,
}

impl Github {
    /// A client for `config`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(config: GithubConfig) -> conveyor_web::fail::Result<Self> {
        conveyor_web::install_tls_provider();
        let http = reqwest::Client::builder()
            .user_agent("conveyor-repostats")
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, config })
    }

    fn token_names(&self) -> Vec<String> {
        if self.config.tokens.is_empty() {
            vec!["anonymous".to_owned()]
        } else {
            (1..=self.config.tokens.len())
                .map(|n| format!("token-{n}"))
                .collect()
        }
    }

    /// GETs `path` (with `If-None-Match: etag` when given) once the governor allows.
    ///
    /// # Errors
    /// [`GithubError`]; a rate limit has already been recorded in the budget.
    pub async fn get(
        &self,
        store: &Store,
        bucket: Bucket,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Answer, GithubError> {
        // A limit the budget did not foresee (another client on the same IP, a secondary
        // limit) is now in the budget: the next attempt waits for it.
        let mut attempt = 1;
        loop {
            match self.get_once(store, bucket, path, etag).await {
                Err(GithubError::Limited { .. }) if attempt < LIMITED_ATTEMPTS => attempt += 1,
                other => return other,
            }
        }
    }

    async fn get_once(
        &self,
        store: &Store,
        bucket: Bucket,
        path: &str,
        etag: Option<&str>,
    ) -> Result<Answer, GithubError> {
        let token = acquire(
            store,
            bucket,
            &self.token_names(),
            self.config.tokens.is_empty(),
            self.config.max_wait,
        )
        .await
        .map_err(|e| GithubError::Other(e.to_string()))?;
        let mut request = self
            .http
            .get(format!("{}{path}", self.config.api_url))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(index) = token
            .strip_prefix("token-")
            .and_then(|n| n.parse::<usize>().ok())
            && let Some(secret) = self.config.tokens.get(index - 1)
        {
            request = request.bearer_auth(secret.expose_secret());
        }
        if let Some(etag) = etag {
            request = request.header("If-None-Match", etag);
        }
        let response = request
            .send()
            .await
            .map_err(|e| GithubError::Other(e.to_string()))?;
        let status = response.status();
        let headers = response.headers().clone();
        record(store, bucket, &token, status, &headers)
            .await
            .map_err(|e| GithubError::Other(e.to_string()))?;
        match status {
            StatusCode::OK | StatusCode::NOT_MODIFIED => {
                let etag = headers
                    .get("etag")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| GithubError::Other(e.to_string()))?;
                Ok(Answer { status, body, etag })
            }
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
                Err(GithubError::Limited { status })
            }
            StatusCode::NOT_FOUND => Err(GithubError::NotFound),
            other => Err(GithubError::Other(format!("status {other}"))),
        }
    }
}

/// Takes one unit of `bucket`'s budget from the first token that has one, waiting (in steps
/// of at most `max_wait`) while none has. Returns the token's name.
async fn acquire(
    store: &Store,
    bucket: Bucket,
    tokens: &[String],
    anonymous: bool,
    max_wait: Duration,
) -> conveyor_web::fail::Result<String> {
    loop {
        let now = now_ms();
        let mut earliest = i64::MAX;
        let mut tx = store.begin().await?;
        for token in tokens {
            let row = db::rate_row(&mut tx, token, bucket.name()).await?;
            let (assumed, window) = bucket.assumed(anonymous);
            let (budget, remaining, reset_at, blocked_until) = match row {
                // Nothing known yet: one request goes alone and its answer states the
                // budget; the others look again within a second.
                // (reset_at 0 marks the window as unknown, so the answer's header sets it.)
                None => {
                    let inserted =
                        db::rate_probe(&mut tx, token, bucket.name(), assumed, now + PROBE_MS, now)
                            .await?;
                    if inserted {
                        tx.commit().await?;
                        return Ok(token.clone());
                    }
                    // Another worker's probe got there first.
                    earliest = earliest.min(now + 50);
                    continue;
                }
                // A window that has reset gives its whole budget again. GitHub states resets
                // in whole seconds, so a second's margin keeps us from arriving early.
                Some(db::RateRow {
                    budget,
                    reset_at,
                    blocked_until: blocked,
                    ..
                }) if reset_at + RESET_MARGIN_MS <= now => (budget, budget, now + window, blocked),
                Some(row) => (row.budget, row.remaining, row.reset_at, row.blocked_until),
            };
            if blocked_until > now {
                earliest = earliest.min(blocked_until);
                continue;
            }
            if remaining <= 0 {
                earliest = earliest.min(reset_at + RESET_MARGIN_MS);
                continue;
            }
            let taken = db::RateRow {
                budget,
                remaining: remaining - 1,
                reset_at,
                blocked_until,
            };
            db::rate_take(&mut tx, token, bucket.name(), taken, now).await?;
            tx.commit().await?;
            return Ok(token.clone());
        }
        drop(tx);
        let wait = Duration::from_millis(u64::try_from(earliest - now).unwrap_or(0).max(50));
        tracing::info!(
            bucket = bucket.name(),
            wait_ms = wait.as_millis() as u64,
            "GitHub budget exhausted; waiting for its reset"
        );
        metrics::counter!("repostats_rate_waits_total", "bucket" => bucket.name()).increment(1);
        tokio::time::sleep(wait.min(max_wait)).await;
    }
}

/// Corrects the budget from an answer's headers, and blocks the token after a limit.
async fn record(
    store: &Store,
    bucket: Bucket,
    token: &str,
    status: StatusCode,
    headers: &HeaderMap,
) -> conveyor_web::fail::Result<()> {
    let now = now_ms();
    let number =
        |name: &str| -> Option<i64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
    let remaining = number("x-ratelimit-remaining");
    let budget = number("x-ratelimit-limit");
    let reset_at = number("x-ratelimit-reset").map(|s| s * 1000);
    let retry_after = number("retry-after").map(|s| now + s * 1000);
    let limited = status == StatusCode::FORBIDDEN && remaining == Some(0)
        || status == StatusCode::TOO_MANY_REQUESTS
        || retry_after.is_some() && !status.is_success();
    let secondary = (status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS)
        && retry_after.is_none()
        && remaining != Some(0);
    let mut tx = store.begin().await?;
    let row = db::rate_strikes(&mut tx, token, bucket.name()).await?;
    let (strikes, known_remaining, known_reset) = row.unwrap_or((0, 0, 0));
    // Answers arrive after other units were handed out, and out of order: while our window
    // is current a header only ever lowers what is left. Only a window we consider over is
    // replaced by what the header says.
    let remaining = match remaining {
        Some(stated) if known_reset + RESET_MARGIN_MS > now => Some(stated.min(known_remaining)),
        stated => stated,
    };
    let blocked_until = if let Some(at) = retry_after {
        at
    } else if secondary {
        now + 60_000 * (1_i64 << strikes.min(6))
    } else if limited {
        reset_at.map_or(now + 60_000, |at| at.max(now) + RESET_MARGIN_MS)
    } else {
        0
    };
    let strikes = if secondary {
        strikes + 1
    } else if status.is_success() || status == StatusCode::NOT_MODIFIED {
        0
    } else {
        strikes
    };
    if status == StatusCode::NOT_MODIFIED {
        // Free on GitHub: give the unit back.
        db::rate_give_back(&mut tx, token, bucket.name()).await?;
    } else {
        let stated = db::Stated {
            remaining,
            reset_at,
            budget,
        };
        db::rate_record(
            &mut tx,
            token,
            bucket.name(),
            stated,
            blocked_until,
            strikes,
            now,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub use crate::db::budget;
