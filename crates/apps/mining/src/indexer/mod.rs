//! Indexers: they discover repositories, one batch at a time, from a cursor they hand back.
//! They know nothing of SQL or the queue: `jobs::index` stores the cursor and the
//! repositories in one transaction, so a crash between batches loses and repeats nothing.
//!
//! - [`github`]: `GET /repositories?since=<id>`, the complete public enumeration (search
//!   stops at 1,000 results a query; this does not).
//! - [`gitlab`]: `GET /api/v4/projects` with keyset pagination on id.
//! - [`bitbucket`]: `GET /2.0/repositories?after=<date>`.
//! - [`list`]: a list of git URLs or local paths in its settings.
//!
//! Adding a host is a new file implementing [`Indexer`] and a line in [`Hosts::with_tokens`].

pub mod bitbucket;
pub mod github;
pub mod gitlab;
pub mod list;

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A repository an indexer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// What git clones.
    pub url: String,
    /// `owner/name`, or the path.
    pub name: String,
}

/// One step of an indexer.
#[derive(Debug, Clone)]
pub struct Batch {
    /// What it found (possibly nothing).
    pub found: Vec<Found>,
    /// Where the next batch starts.
    pub cursor: Value,
    /// Nothing more for now (the end of a list; the newest repository of a host).
    pub exhausted: bool,
    /// The host said the budget is spent: do not ask again before this (ms since the epoch).
    pub pause_until: Option<i64>,
}

/// Why a batch could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IndexError {
    /// The host refused for now (403/429); retry after `until` (ms since the epoch), or
    /// after the indexer's default pause when the host did not say.
    #[error("throttled: {reason}")]
    Throttled {
        /// When to ask again, if the host said.
        until: Option<i64>,
        /// Status and headers, for people.
        reason: String,
    },
    /// The settings or cursor are not what this indexer reads.
    #[error("bad settings: {0}")]
    Settings(String),
    /// Anything else (network, unexpected answer); the next run retries.
    #[error("{0}")]
    Failed(String),
}

/// One setting of an indexer kind, for the dashboard's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// Its key in the settings object.
    pub name: &'static str,
    /// What kind of value it takes.
    pub kind: FieldKind,
    /// What it does, for people.
    pub help: &'static str,
}

/// The value a [`Field`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A string (a URL).
    Text,
    /// A whole number, or nothing.
    Number,
    /// True or false.
    Check,
    /// A day, `YYYY-MM-DD`, or nothing.
    Date,
    /// A list of strings, one a line.
    Lines,
}

impl FieldKind {
    /// Its name in the form's markup.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Check => "checkbox",
            Self::Date => "date",
            Self::Lines => "lines",
        }
    }
}

/// The API base URL setting every host kind has.
pub const BASE_URL: Field = Field {
    name: "base_url",
    kind: FieldKind::Text,
    help: "the host's API base URL",
};

/// An indexer of one kind of host.
pub trait Indexer: Send + Sync {
    /// The kind's name (`github`, `gitlab`, ...).
    fn host(&self) -> &'static str;
    /// Its settings, every key [`Indexer::check`] accepts.
    fn fields(&self) -> &'static [Field];
    /// Default settings and cursor of a new indexer of this kind.
    fn defaults(&self) -> (Value, Value);
    /// Checks settings and a cursor before they are stored.
    ///
    /// # Errors
    /// What is wrong with them.
    fn check(&self, settings: &Value, cursor: &Value) -> Result<(), String>;
    /// The next batch after `cursor`.
    fn next_batch<'a>(
        &'a self,
        http: &'a reqwest::Client,
        settings: &'a Value,
        cursor: &'a Value,
    ) -> BoxFuture<'a, Result<Batch, IndexError>>;
}

/// The kinds of indexer a process knows, by host name.
#[derive(Clone)]
pub struct Hosts {
    by_name: BTreeMap<&'static str, Arc<dyn Indexer>>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

impl Hosts {
    /// GitHub, GitLab, Bitbucket and lists.
    pub fn standard() -> Self {
        Self::with_tokens(None, None)
    }

    /// The standard hosts, GitHub's and GitLab's with these tokens.
    pub fn with_tokens(
        github: Option<secrecy::SecretString>,
        gitlab: Option<secrecy::SecretString>,
    ) -> Self {
        let mut hosts = Self {
            by_name: BTreeMap::new(),
        };
        hosts.add(Arc::new(github::Github { token: github }));
        hosts.add(Arc::new(gitlab::Gitlab { token: gitlab }));
        hosts.add(Arc::new(bitbucket::Bitbucket));
        hosts.add(Arc::new(list::List));
        hosts
    }

    /// Adds (or replaces) a kind.
    pub fn add(&mut self, indexer: Arc<dyn Indexer>) {
        self.by_name.insert(indexer.host(), indexer);
    }

    /// The kind called `host`.
    pub fn get(&self, host: &str) -> Option<&Arc<dyn Indexer>> {
        self.by_name.get(host)
    }

    /// Every kind's name.
    pub fn names(&self) -> Vec<&'static str> {
        self.by_name.keys().copied().collect()
    }
}

/// Deserializes settings or a cursor into an indexer's own type.
///
/// # Errors
/// [`IndexError::Settings`] naming the problem.
pub fn parse<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, IndexError> {
    T::deserialize(value).map_err(|e| IndexError::Settings(format!("{what}: {e}")))
}

/// Deserializes a host's `base_url`: an `http://` or `https://` URL with a host (the
/// settings are editable at run time, so a typo must be refused when it is made).
pub(crate) fn base_url<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<String, D::Error> {
    let text = String::deserialize(deserializer)?;
    let valid = url::Url::parse(&text).is_ok_and(|url| {
        matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|h| !h.is_empty())
            && url.query().is_none()
            && url.fragment().is_none()
    });
    if valid {
        Ok(text)
    } else {
        Err(serde::de::Error::custom(format!(
            "base_url must be an http:// or https:// URL like https://api.github.com, not {text:?}"
        )))
    }
}

/// Checks that `settings` and `cursor` deserialize into an indexer's types `S` and `C`.
///
/// # Errors
/// What does not fit, naming settings or cursor.
pub fn check_as<S: DeserializeOwned, C: DeserializeOwned>(
    settings: &Value,
    cursor: &Value,
) -> Result<(), String> {
    parse::<S>(settings, "settings").map_err(|e| e.to_string())?;
    parse::<C>(cursor, "cursor").map_err(|e| e.to_string())?;
    Ok(())
}

/// GETs `url` for JSON. 403 and 429 become [`IndexError::Throttled`] with the time the
/// host gave (`Retry-After`, or the reset of a spent budget); other failures
/// [`IndexError::Failed`]. Also returns when the budget the answer reports is spent.
///
/// # Errors
/// As above.
pub async fn get_json(
    request: reqwest::RequestBuilder,
) -> Result<(Value, HeaderMap, Option<i64>), IndexError> {
    let response = request
        .send()
        .await
        .map_err(|e| IndexError::Failed(format!("request failed: {e}")))?;
    let status = response.status();
    let headers = response.headers().clone();
    let now = conveyor_queue::clock::now_ms();
    if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
        let until = retry_after(&headers, now).or_else(|| spent_until(&headers));
        // A 403 with budget left and no Retry-After is a real refusal, not a limit.
        if status == StatusCode::FORBIDDEN && until.is_none() && remaining(&headers) != Some(0) {
            return Err(IndexError::Failed(format!("403 from {}", response.url())));
        }
        return Err(IndexError::Throttled {
            until,
            reason: format!("{status} from {}", response.url().path()),
        });
    }
    if !status.is_success() {
        return Err(IndexError::Failed(format!(
            "{status} from {}",
            response.url()
        )));
    }
    let body = response
        .json::<Value>()
        .await
        .map_err(|e| IndexError::Failed(format!("unreadable answer: {e}")))?;
    let pause = if remaining(&headers) == Some(0) {
        spent_until(&headers)
    } else {
        None
    };
    Ok((body, headers, pause))
}

fn header_i64(headers: &HeaderMap, names: &[&str]) -> Option<i64> {
    names.iter().find_map(|name| {
        headers
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    })
}

/// Requests left in the window (GitHub's `x-ratelimit-remaining`, GitLab's
/// `RateLimit-Remaining`).
fn remaining(headers: &HeaderMap) -> Option<i64> {
    header_i64(headers, &["x-ratelimit-remaining", "ratelimit-remaining"])
}

/// When a spent window resets, ms since the epoch (the headers give seconds).
fn spent_until(headers: &HeaderMap) -> Option<i64> {
    if remaining(headers) != Some(0) {
        return None;
    }
    header_i64(headers, &["x-ratelimit-reset", "ratelimit-reset"]).map(|s| s * 1000 + 1000)
}

fn retry_after(headers: &HeaderMap, now: i64) -> Option<i64> {
    header_i64(headers, &["retry-after"]).map(|s| now + s * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn a_spent_budget_pauses_until_its_reset() {
        let mut headers = HeaderMap::new();
        headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("ratelimit-reset", HeaderValue::from_static("1700000000"));
        assert_eq!(spent_until(&headers), Some(1_700_000_001_000));
        headers.insert("ratelimit-remaining", HeaderValue::from_static("3"));
        assert_eq!(spent_until(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("30"));
        assert_eq!(retry_after(&headers, 1_000), Some(31_000));
    }
}
