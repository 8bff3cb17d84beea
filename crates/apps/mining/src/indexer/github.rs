//! GitHub, two ways.
//!
//! - **Every public repository** (no `min_stars`/`min_forks`): `GET /repositories?since=<id>`,
//!   in id order, 100 a page, with no cap. The cursor is the last id seen.
//! - **Selected as Frege did** (`min_stars` and/or `min_forks`): the search API, which
//!   stops at 1,000 results a query. The indexer walks the creation dates from
//!   `created_from` in windows: a window with more than 1,000 matches is halved (down to one
//!   second) before it is read; one with fewer than 250 makes the next window twice as long.
//!   The cursor is the window (start, length in seconds) and the page within it, so every
//!   match is found once, and a crash repeats at most one page.
//!
//! A token (`MINING_GITHUB_TOKEN`) raises the budget from 60 to 5,000 requests an hour (10
//! to 30 searches a minute); a spent budget pauses the indexer until the reset.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Batch, Field, FieldKind, Found, IndexError, Indexer, check_as, get_json, parse};

/// The GitHub indexer.
pub struct Github {
    /// Sent as a bearer token when set (`MINING_GITHUB_TOKEN`).
    pub token: Option<secrecy::SecretString>,
}

/// Most results one search query gives (GitHub's cap).
const SEARCH_CAP: i64 = 1_000;
/// Results a page.
const PER_PAGE: i64 = 100;
/// The first window, before it adapts: 30 days.
const FIRST_WINDOW: i64 = 30 * 86_400;
/// The longest window: ten years.
const LONGEST_WINDOW: i64 = 10 * 365 * 86_400;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(deserialize_with = "super::base_url")]
    base_url: String,
    #[serde(default = "yes")]
    include_forks: bool,
    /// Only repositories with at least this many stars (search mode).
    #[serde(default)]
    min_stars: Option<u32>,
    /// Only repositories with at least this many forks (search mode).
    #[serde(default)]
    min_forks: Option<u32>,
    /// Search mode starts at repositories created on this day (`YYYY-MM-DD`, UTC).
    #[serde(default, deserialize_with = "day")]
    created_from: Option<i64>,
}

impl Settings {
    fn searches(&self) -> bool {
        self.min_stars.is_some() || self.min_forks.is_some()
    }
}

fn yes() -> bool {
    true
}

/// `YYYY-MM-DD` as seconds since the epoch.
fn day<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(text) = Option::<String>::deserialize(d)? else {
        return Ok(None);
    };
    NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .map(|date| {
            Some(
                date.and_hms_opt(0, 0, 0)
                    .expect("midnight")
                    .and_utc()
                    .timestamp(),
            )
        })
        .map_err(|_| serde::de::Error::custom(format!("created_from: {text:?} is not YYYY-MM-DD")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    #[serde(default)]
    since: i64,
    /// Search mode: the window's first second (since the epoch).
    #[serde(default)]
    window_start: Option<i64>,
    /// Search mode: the window's length in seconds.
    #[serde(default)]
    window_seconds: Option<i64>,
    /// Search mode: the page within the window (from 1).
    #[serde(default)]
    page: Option<i64>,
}

#[derive(Deserialize)]
struct Repo {
    id: i64,
    full_name: String,
    html_url: String,
    #[serde(default)]
    fork: bool,
}

#[derive(Deserialize)]
struct SearchPage {
    total_count: i64,
    items: Vec<Repo>,
}

impl Indexer for Github {
    fn host(&self) -> &'static str {
        "github"
    }

    fn fields(&self) -> &'static [Field] {
        &[
            super::BASE_URL,
            Field {
                name: "include_forks",
                kind: FieldKind::Check,
                help: "forks too",
            },
            Field {
                name: "min_stars",
                kind: FieldKind::Number,
                help: "at least this many stars (searches instead of listing)",
            },
            Field {
                name: "min_forks",
                kind: FieldKind::Number,
                help: "at least this many forks (searches instead of listing)",
            },
            Field {
                name: "created_from",
                kind: FieldKind::Date,
                help: "searches from repositories created on this day",
            },
        ]
    }

    fn defaults(&self) -> (Value, Value) {
        (
            json!({"base_url": "https://api.github.com", "include_forks": true}),
            json!({"since": 0}),
        )
    }

    fn check(&self, settings: &Value, cursor: &Value) -> Result<(), String> {
        check_as::<Settings, Cursor>(settings, cursor)
    }

    fn next_batch<'a>(
        &'a self,
        http: &'a reqwest::Client,
        settings: &'a Value,
        cursor: &'a Value,
    ) -> BoxFuture<'a, Result<Batch, IndexError>> {
        Box::pin(async move {
            let settings: Settings = parse(settings, "settings")?;
            let cursor: Cursor = parse(cursor, "cursor")?;
            if settings.searches() {
                self.search(http, &settings, &cursor).await
            } else {
                self.list(http, &settings, &cursor).await
            }
        })
    }
}

impl Github {
    fn get(&self, http: &reqwest::Client, url: String) -> reqwest::RequestBuilder {
        let request = http
            .get(url)
            .header("accept", "application/vnd.github+json");
        match &self.token {
            Some(token) => request.bearer_auth(secrecy::ExposeSecret::expose_secret(token)),
            None => request,
        }
    }

    /// Every public repository, in id order.
    async fn list(
        &self,
        http: &reqwest::Client,
        settings: &Settings,
        cursor: &Cursor,
    ) -> Result<Batch, IndexError> {
        let url = format!("{}/repositories", settings.base_url.trim_end_matches('/'));
        let request = self.get(http, url).query(&[("since", cursor.since)]);
        let (body, _, pause_until) = get_json(request).await?;
        let repos: Vec<Repo> = serde_json::from_value(body)
            .map_err(|e| IndexError::Failed(format!("unexpected answer: {e}")))?;
        let since = repos.iter().map(|r| r.id).max().unwrap_or(cursor.since);
        Ok(Batch {
            exhausted: repos.is_empty(),
            found: found(repos, settings.include_forks),
            cursor: json!({ "since": since }),
            pause_until,
        })
    }

    /// One page of one window of the search, or a smaller window when this one holds more
    /// than the search shows.
    async fn search(
        &self,
        http: &reqwest::Client,
        settings: &Settings,
        cursor: &Cursor,
    ) -> Result<Batch, IndexError> {
        let now = conveyor_queue::clock::now_ms() / 1000;
        let start = cursor
            .window_start
            .or(settings.created_from)
            .unwrap_or(GITHUB_BEGAN);
        let span = cursor
            .window_seconds
            .unwrap_or(FIRST_WINDOW)
            .clamp(1, LONGEST_WINDOW);
        let page = cursor.page.unwrap_or(1).max(1);
        if start > now {
            // Caught up: the next run looks again from here.
            return Ok(Batch {
                found: Vec::new(),
                cursor: window(start, span, 1),
                exhausted: true,
                pause_until: None,
            });
        }
        let end = (start + span - 1).min(now);
        let mut terms = Vec::new();
        if let Some(stars) = settings.min_stars {
            terms.push(format!("stars:>={stars}"));
        }
        if let Some(forks) = settings.min_forks {
            terms.push(format!("forks:>={forks}"));
        }
        if settings.include_forks {
            terms.push("fork:true".to_owned());
        }
        terms.push(format!("created:{}..{}", iso(start), iso(end)));
        let url = format!(
            "{}/search/repositories",
            settings.base_url.trim_end_matches('/')
        );
        let request = self.get(http, url).query(&[
            ("q", terms.join(" ")),
            ("per_page", PER_PAGE.to_string()),
            ("page", page.to_string()),
        ]);
        let (body, _, pause_until) = get_json(request).await?;
        let answer: SearchPage = serde_json::from_value(body)
            .map_err(|e| IndexError::Failed(format!("unexpected answer: {e}")))?;
        if answer.total_count > SEARCH_CAP && span > 1 && page == 1 {
            // More than a query shows: the same start, half as long.
            return Ok(Batch {
                found: Vec::new(),
                cursor: window(start, span / 2, 1),
                exhausted: false,
                pause_until,
            });
        }
        let shown = answer.total_count.min(SEARCH_CAP);
        let cursor = if page * PER_PAGE < shown && !answer.items.is_empty() {
            window(start, span, page + 1)
        } else {
            // The window is read; a sparse one makes the next twice as long.
            let next = if answer.total_count < SEARCH_CAP / 4 {
                span.saturating_mul(2)
            } else {
                span
            };
            window(end + 1, next.min(LONGEST_WINDOW), 1)
        };
        Ok(Batch {
            exhausted: cursor["window_start"].as_i64().is_some_and(|s| s > now),
            found: found(answer.items, settings.include_forks),
            cursor,
            pause_until,
        })
    }
}

/// GitHub's first repositories (2008).
const GITHUB_BEGAN: i64 = 1_199_145_600;

fn window(start: i64, seconds: i64, page: i64) -> Value {
    json!({"window_start": start, "window_seconds": seconds, "page": page})
}

/// Seconds since the epoch as GitHub's search reads a time.
fn iso(seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn found(repos: Vec<Repo>, include_forks: bool) -> Vec<Found> {
    repos
        .into_iter()
        .filter(|r| include_forks || !r.fork)
        .map(|r| Found {
            url: format!("{}.git", r.html_url),
            name: r.full_name,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_and_cursors_of_both_modes_are_checked() {
        let github = Github { token: None };
        let list = json!({"base_url": "https://api.github.com"});
        assert!(github.check(&list, &json!({"since": 5})).is_ok());
        let search = json!({"base_url": "https://api.github.com", "min_stars": 10,
            "min_forks": 2, "created_from": "2015-01-01"});
        let cursor = json!({"window_start": 1_420_070_400, "window_seconds": 3600, "page": 2});
        assert!(github.check(&search, &cursor).is_ok());
        let bad_day = json!({"base_url": "https://api.github.com", "created_from": "2015-13-01"});
        let error = github.check(&bad_day, &json!({})).unwrap_err();
        assert!(error.contains("created_from"), "{error}");
        assert!(github.check(&search, &json!({"colour": 1})).is_err());
    }
}
