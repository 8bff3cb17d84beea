//! `conveyor fake-github`: a stand-in for GitHub's REST API, for tests and demos. It serves a
//! directory laid out like `shared/data/github/` (`search-repositories.json`,
//! `languages/<owner>/<repo>.json`), or generated data of the same shape with the same edge
//! cases, and emulates what the governor must cope with: latency, `x-ratelimit-*` headers
//! per token and bucket, 403 with a reset when a budget is spent, optional 429s with
//! `retry-after`, and ETags with free 304s.
//!
//! Recorded repositories keep their order but are given creation times in the last minutes,
//! so a search for the newest finds them.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{SecondsFormat, Utc};
use serde_json::{Value, json};

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeConfig {
    /// Added to every answer.
    pub latency: Duration,
    /// Core requests per window and token (GitHub: 60 anonymous, 5,000 with a token).
    pub core_limit: i64,
    /// Search requests per window and token (GitHub: 10 a minute anonymous).
    pub search_limit: i64,
    /// Length of a rate window.
    pub window: Duration,
    /// Every n-th request answers 429 with `retry-after: 1` (0: never).
    pub throttle_every: u64,
}

impl Default for FakeConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(20),
            core_limit: 5_000,
            search_limit: 30,
            window: Duration::from_secs(3600),
            throttle_every: 0,
        }
    }
}

/// The fake's data and counters.
#[derive(Debug)]
pub struct Fake {
    items: Vec<Value>,
    languages: HashMap<String, Value>,
    config: FakeConfig,
    counters: Mutex<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    /// (token, bucket) → (used, window start in ms).
    used: HashMap<(String, &'static str), (i64, i64)>,
    requests: u64,
    /// Requests answered with a body (not 304, not limited), by bucket.
    served: HashMap<&'static str, u64>,
    /// Requests refused: 403 over the limit, or 429.
    refused: u64,
    /// 304s.
    not_modified: u64,
}

impl Fake {
    /// Generated data: `count` repositories, created one second apart, newest now.
    pub fn generated(count: usize, config: FakeConfig) -> Self {
        let now = Utc::now();
        let mut items = Vec::with_capacity(count);
        let mut languages = HashMap::new();
        let names = [
            "Rust",
            "Python",
            "Go",
            "TypeScript",
            "C",
            "Shell",
            "MATLAB",
            "Jupyter Notebook",
        ];
        for n in 0..count {
            let full_name = format!("owner{}/repo-{n}", n % 37);
            let created = (now - chrono::Duration::seconds(n as i64))
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            // The recorded data's edge cases, spread over the list.
            let primary = match n % 9 {
                0 => Value::Null,
                1 => json!("Matlab"),
                _ => json!(names[n % names.len()]),
            };
            let license = match n % 5 {
                0 | 1 => Value::Null,
                2 => json!({"key": "other", "name": "Other", "spdx_id": "NOASSERTION"}),
                3 => json!({"key": "mit", "name": "MIT License", "spdx_id": "MIT"}),
                _ => {
                    json!({"key": "apache-2.0", "name": "Apache License 2.0", "spdx_id": "Apache-2.0"})
                }
            };
            items.push(json!({
                "id": 900_000_000 + n as i64,
                "name": format!("repo-{n}"),
                "full_name": full_name,
                "owner": {"login": format!("owner{}", n % 37)},
                "created_at": created,
                "language": primary,
                "license": license,
                "description": format!("generated repository {n}"),
                "html_url": format!("https://github.com/{full_name}"),
                "stargazers_count": (n * 7) % 50,
                "forks_count": (n * 3) % 20,
                "open_issues_count": n % 4,
                "allow_forking": n % 10 != 0,
                "has_issues": n % 6 != 0,
                "has_projects": n % 2 == 0,
                "has_downloads": true,
                "has_wiki": n % 3 == 0,
                "has_pages": n % 8 == 0,
                "has_discussions": n % 11 == 0,
                "fork": n % 13 == 0,
                "archived": n % 17 == 0,
            }));
            let body = if n % 6 == 0 {
                json!({})
            } else {
                let mut map = serde_json::Map::new();
                map.insert(names[n % names.len()].to_owned(), json!(1_000 + n * 101));
                if n % 2 == 0 {
                    map.insert(names[(n + 3) % names.len()].to_owned(), json!(50 + n));
                }
                Value::Object(map)
            };
            languages.insert(full_name, body);
        }
        Self::new(items, languages, config)
    }

    /// A directory laid out like `shared/data/github/`.
    ///
    /// # Errors
    /// When a file is missing or not JSON.
    pub fn from_dir(dir: &Path, config: FakeConfig) -> conveyor_web::fail::Result<Self> {
        let search: Value =
            serde_json::from_slice(&std::fs::read(dir.join("search-repositories.json"))?)?;
        let mut items: Vec<Value> = search["items"].as_array().cloned().unwrap_or_default();
        let now = Utc::now();
        let mut languages = HashMap::new();
        for (rank, item) in items.iter_mut().enumerate() {
            item["created_at"] = json!(
                (now - chrono::Duration::seconds(rank as i64))
                    .to_rfc3339_opts(SecondsFormat::Secs, true)
            );
            let full_name = item["full_name"].as_str().unwrap_or_default().to_owned();
            let path = dir.join("languages").join(format!("{full_name}.json"));
            if let Ok(bytes) = std::fs::read(&path) {
                languages.insert(full_name, serde_json::from_slice(&bytes)?);
            }
        }
        Ok(Self::new(items, languages, config))
    }

    fn new(items: Vec<Value>, languages: HashMap<String, Value>, config: FakeConfig) -> Self {
        Self {
            items,
            languages,
            config,
            counters: Mutex::new(Counters::default()),
        }
    }

    /// Bodies served per bucket so far (not 304s, not refusals).
    pub fn served(&self, bucket: &str) -> u64 {
        let counters = self.counters.lock().expect("not poisoned");
        counters
            .served
            .iter()
            .filter(|(b, _)| **b == bucket)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Requests refused so far (403 over a limit, 429 throttled).
    pub fn refused(&self) -> u64 {
        self.counters.lock().expect("not poisoned").refused
    }

    /// 304s answered so far.
    pub fn not_modified(&self) -> u64 {
        self.counters.lock().expect("not poisoned").not_modified
    }

    /// The router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/search/repositories", get(search))
            .route("/repos/{owner}/{repo}/languages", get(repo_languages))
            .with_state(self)
    }

    /// Counts one request of `bucket` for the caller; `Err` is the refusal to send.
    fn spend(
        &self,
        headers: &HeaderMap,
        bucket: &'static str,
        free: bool,
    ) -> Result<HeaderMap, Box<Response>> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("anonymous")
            .to_owned();
        let limit = if bucket == "search" {
            self.config.search_limit
        } else {
            self.config.core_limit
        };
        let now = Utc::now().timestamp_millis();
        let window = self.config.window.as_millis() as i64;
        let mut counters = self.counters.lock().expect("not poisoned");
        counters.requests += 1;
        let throttle = self.config.throttle_every > 0
            && counters.requests.is_multiple_of(self.config.throttle_every);
        let entry = counters.used.entry((token, bucket)).or_insert((0, now));
        if now >= entry.1 + window {
            *entry = (0, now);
        }
        let reset = (entry.1 + window) / 1000;
        let exhausted = entry.0 >= limit;
        if !free && !exhausted && !throttle {
            entry.0 += 1;
        }
        let used = entry.0;
        let mut out = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            out.insert(name, HeaderValue::from_str(&value).expect("ASCII"));
        };
        put("x-ratelimit-limit", limit.to_string());
        put("x-ratelimit-remaining", (limit - used).max(0).to_string());
        put("x-ratelimit-used", used.to_string());
        put("x-ratelimit-reset", reset.to_string());
        put("x-ratelimit-resource", bucket.to_owned());
        if throttle {
            counters.refused += 1;
            out.insert("retry-after", HeaderValue::from_static("1"));
            let body = json!({"message": "You have exceeded a secondary rate limit."});
            return Err(Box::new(
                (StatusCode::TOO_MANY_REQUESTS, out, axum::Json(body)).into_response(),
            ));
        }
        if exhausted && !free {
            counters.refused += 1;
            let body = json!({
                "message": "API rate limit exceeded for 203.0.113.7.",
                "documentation_url": "https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting",
            });
            return Err(Box::new(
                (StatusCode::FORBIDDEN, out, axum::Json(body)).into_response(),
            ));
        }
        if free {
            counters.not_modified += 1;
        } else {
            *counters.served.entry(bucket).or_default() += 1;
        }
        Ok(out)
    }
}

fn etag_of(body: &Value) -> String {
    let mut hasher = DefaultHasher::new();
    body.to_string().hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == etag)
}

async fn search(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    tokio::time::sleep(fake.config.latency).await;
    let mut answer_headers = match fake.spend(&headers, "search", false) {
        Ok(h) => h,
        Err(refusal) => return *refusal,
    };
    let q = query.get("q").cloned().unwrap_or_default();
    let filter = match SearchFilter::parse(&q) {
        Ok(filter) => filter,
        Err(message) => return unprocessable(&message),
    };
    let per_page: usize = query
        .get("per_page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(30)
        .clamp(1, 100);
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    // GitHub shows the first 1,000 results of a query and refuses pages beyond.
    if (page - 1) * per_page >= 1000 {
        return unprocessable("Only the first 1000 search results are available");
    }
    let matching: Vec<&Value> = fake
        .items
        .iter()
        .filter(|item| filter.admits(item))
        .collect();
    let body = json!({
        "total_count": matching.len(),
        "incomplete_results": false,
        "items": matching.iter().skip((page - 1) * per_page).take(per_page).collect::<Vec<_>>(),
    });
    answer_headers.insert(
        header::ETAG,
        HeaderValue::from_str(&etag_of(&body)).expect("ASCII"),
    );
    (answer_headers, axum::Json(body)).into_response()
}

fn unprocessable(message: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(json!({ "message": message })),
    )
        .into_response()
}

/// The search qualifiers the fake understands: `created:>=T`, `created:A..B`, `stars:>=N`,
/// `forks:>=N` and `fork:false|only` (forks are included otherwise; GitHub leaves them out
/// unless `fork:true`, which the fake also reads as "include"). Others (`is:public`) are
/// accepted and ignored.
#[derive(Debug, Default)]
struct SearchFilter {
    created_from: Option<String>,
    created_to: Option<String>,
    min_stars: Option<i64>,
    min_forks: Option<i64>,
    forks: Option<bool>,
}

impl SearchFilter {
    fn parse(q: &str) -> Result<Self, String> {
        let mut filter = Self::default();
        let number = |text: &str, term: &str| {
            text.parse::<i64>()
                .map_err(|_| format!("{term}: not a number"))
        };
        for term in q.split_whitespace() {
            if let Some(from) = term.strip_prefix("created:>=") {
                filter.created_from = Some(from.to_owned());
            } else if let Some(range) = term.strip_prefix("created:") {
                let (from, to) = range
                    .split_once("..")
                    .ok_or_else(|| format!("{term}: expected created:A..B or created:>=A"))?;
                filter.created_from = Some(from.to_owned());
                filter.created_to = Some(to.to_owned());
            } else if let Some(n) = term.strip_prefix("stars:>=") {
                filter.min_stars = Some(number(n, term)?);
            } else if let Some(n) = term.strip_prefix("forks:>=") {
                filter.min_forks = Some(number(n, term)?);
            } else if let Some(which) = term.strip_prefix("fork:") {
                filter.forks = match which {
                    "false" => Some(false),
                    "only" => Some(true),
                    _ => None,
                };
            }
        }
        Ok(filter)
    }

    fn admits(&self, item: &Value) -> bool {
        let created = item["created_at"].as_str().unwrap_or("");
        let count = |field: &str| item[field].as_i64().unwrap_or(0);
        self.created_from.as_deref().is_none_or(|f| created >= f)
            && self.created_to.as_deref().is_none_or(|t| created <= t)
            && self
                .min_stars
                .is_none_or(|n| count("stargazers_count") >= n)
            && self.min_forks.is_none_or(|n| count("forks_count") >= n)
            && self
                .forks
                .is_none_or(|only| item["fork"].as_bool().unwrap_or(false) == only)
    }
}

async fn repo_languages(
    State(fake): State<Arc<Fake>>,
    UrlPath((owner, repo)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    tokio::time::sleep(fake.config.latency).await;
    let Some(body) = fake.languages.get(&format!("{owner}/{repo}")) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"message": "Not Found"})),
        )
            .into_response();
    };
    let etag = etag_of(body);
    let free = not_modified(&headers, &etag);
    let mut answer_headers = match fake.spend(&headers, "core", free) {
        Ok(h) => h,
        Err(refusal) => return *refusal,
    };
    answer_headers.insert(header::ETAG, HeaderValue::from_str(&etag).expect("ASCII"));
    if free {
        return (StatusCode::NOT_MODIFIED, answer_headers).into_response();
    }
    (answer_headers, axum::Json(body.clone())).into_response()
}
