//! Bitbucket: `GET /2.0/repositories?after=<ISO date>&pagelen=100`, public repositories in
//! creation order; the cursor is the creation time of the last one seen. (Bitbucket's `next`
//! link carries the same `after`; keeping the date makes the cursor readable and editable.)
//! Repositories created in the same instant as the cursor may come twice; the store keeps
//! one row per URL.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Batch, Field, Found, IndexError, Indexer, check_as, get_json, parse};

/// The Bitbucket indexer.
pub struct Bitbucket;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(deserialize_with = "super::base_url")]
    base_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    after: String,
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    values: Vec<Repo>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Repo {
    full_name: String,
    created_on: String,
    links: Links,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default)]
    clone: Vec<CloneLink>,
}

#[derive(Deserialize)]
struct CloneLink {
    name: String,
    href: String,
}

impl Indexer for Bitbucket {
    fn host(&self) -> &'static str {
        "bitbucket"
    }

    fn fields(&self) -> &'static [Field] {
        &[super::BASE_URL]
    }

    fn defaults(&self) -> (Value, Value) {
        (
            json!({"base_url": "https://api.bitbucket.org"}),
            json!({"after": "2008-01-01T00:00:00Z"}),
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
            let url = format!(
                "{}/2.0/repositories",
                settings.base_url.trim_end_matches('/')
            );
            let request = http
                .get(url)
                .query(&[("after", cursor.after.as_str()), ("pagelen", "100")]);
            let (body, _, pause_until) = get_json(request).await?;
            let page: Page = serde_json::from_value(body)
                .map_err(|e| IndexError::Failed(format!("unexpected answer: {e}")))?;
            let after = page
                .values
                .last()
                .map_or(cursor.after.clone(), |r| r.created_on.clone());
            Ok(Batch {
                exhausted: page.next.is_none(),
                found: page
                    .values
                    .into_iter()
                    .filter_map(|r| {
                        let https = r.links.clone.into_iter().find(|l| l.name == "https")?;
                        Some(Found {
                            url: https.href,
                            name: r.full_name,
                        })
                    })
                    .collect(),
                cursor: json!({ "after": after }),
                pause_until,
            })
        })
    }
}
