//! GitLab: `GET /api/v4/projects?pagination=keyset&order_by=id&sort=asc&id_after=<id>`,
//! every public project in id order, 100 a page; the cursor is the last id seen. A token
//! (`GITLAB_TOKEN`) is sent when set. `RateLimit-Remaining: 0` pauses until
//! `RateLimit-Reset`.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Batch, Field, Found, IndexError, Indexer, check_as, get_json, parse};

/// The GitLab indexer.
pub struct Gitlab {
    /// Sent as `PRIVATE-TOKEN` when set (`GITLAB_TOKEN`).
    pub token: Option<secrecy::SecretString>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(deserialize_with = "super::base_url")]
    base_url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    id_after: i64,
}

#[derive(Deserialize)]
struct Project {
    id: i64,
    path_with_namespace: String,
    http_url_to_repo: String,
}

impl Indexer for Gitlab {
    fn host(&self) -> &'static str {
        "gitlab"
    }

    fn fields(&self) -> &'static [Field] {
        &[super::BASE_URL]
    }

    fn defaults(&self) -> (Value, Value) {
        (
            json!({"base_url": "https://gitlab.com"}),
            json!({"id_after": 0}),
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
                "{}/api/v4/projects",
                settings.base_url.trim_end_matches('/')
            );
            let id_after = cursor.id_after.to_string();
            let mut request = http.get(url).query(&[
                ("pagination", "keyset"),
                ("order_by", "id"),
                ("sort", "asc"),
                ("per_page", "100"),
                ("visibility", "public"),
                ("id_after", id_after.as_str()),
            ]);
            if let Some(token) = &self.token {
                request =
                    request.header("PRIVATE-TOKEN", secrecy::ExposeSecret::expose_secret(token));
            }
            let (body, _, pause_until) = get_json(request).await?;
            let projects: Vec<Project> = serde_json::from_value(body)
                .map_err(|e| IndexError::Failed(format!("unexpected answer: {e}")))?;
            let last = projects
                .iter()
                .map(|p| p.id)
                .max()
                .unwrap_or(cursor.id_after);
            Ok(Batch {
                exhausted: projects.is_empty(),
                found: projects
                    .into_iter()
                    .map(|p| Found {
                        url: p.http_url_to_repo,
                        name: p.path_with_namespace,
                    })
                    .collect(),
                cursor: json!({ "id_after": last }),
                pause_until,
            })
        })
    }
}
