//! GitHub: `GET /repositories?since=<id>`, every public repository in id order, 100 a page.
//! Search would allow `stars:>=M` filters but stops at 1,000 results a query; this list has
//! no cap, so it is the complete enumeration. The cursor is the last id seen. A token
//! (the first of `GITHUB_TOKENS`) raises the budget from 60 to 5,000 requests an hour.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Batch, Found, IndexError, Indexer, check_as, get_json, parse};

/// The GitHub indexer.
pub struct Github {
    /// Sent as a bearer token when set (`MINING_GITHUB_TOKEN`).
    pub token: Option<secrecy::SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(deserialize_with = "super::base_url")]
    base_url: String,
    #[serde(default = "yes")]
    include_forks: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    since: i64,
}

#[derive(Deserialize)]
struct Repo {
    id: i64,
    full_name: String,
    html_url: String,
    #[serde(default)]
    fork: bool,
}

impl Indexer for Github {
    fn host(&self) -> &'static str {
        "github"
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
            let url = format!("{}/repositories", settings.base_url.trim_end_matches('/'));
            let mut request = http
                .get(url)
                .query(&[("since", cursor.since)])
                .header("accept", "application/vnd.github+json");
            if let Some(token) = &self.token {
                request = request.bearer_auth(secrecy::ExposeSecret::expose_secret(token));
            }
            let (body, _, pause_until) = get_json(request).await?;
            let repos: Vec<Repo> = serde_json::from_value(body)
                .map_err(|e| IndexError::Failed(format!("unexpected answer: {e}")))?;
            let since = repos.iter().map(|r| r.id).max().unwrap_or(cursor.since);
            Ok(Batch {
                exhausted: repos.is_empty(),
                found: repos
                    .into_iter()
                    .filter(|r| settings.include_forks || !r.fork)
                    .map(|r| Found {
                        url: format!("{}.git", r.html_url),
                        name: r.full_name,
                    })
                    .collect(),
                cursor: json!({ "since": since }),
                pause_until,
            })
        })
    }
}
