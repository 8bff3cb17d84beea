//! A list of git URLs or local paths in the settings (`{"urls": [...]}`), 100 a batch; the
//! cursor is the position reached. Appending to the list through the API makes the
//! indexer go on from where it was.

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Batch, Field, FieldKind, Found, IndexError, Indexer, check_as, parse};

/// Entries per batch.
const BATCH: usize = 100;

/// The list indexer.
pub struct List;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    urls: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cursor {
    position: usize,
}

impl Indexer for List {
    fn host(&self) -> &'static str {
        "list"
    }

    fn fields(&self) -> &'static [Field] {
        &[Field {
            name: "urls",
            kind: FieldKind::Lines,
            help: "git URLs or local paths, one a line",
        }]
    }

    fn defaults(&self) -> (Value, Value) {
        (json!({"urls": []}), json!({"position": 0}))
    }

    fn check(&self, settings: &Value, cursor: &Value) -> Result<(), String> {
        check_as::<Settings, Cursor>(settings, cursor)?;
        let settings: Settings = parse(settings, "settings").map_err(|e| e.to_string())?;
        match settings.urls.iter().find(|u| u.trim().is_empty()) {
            Some(_) => Err("settings: urls: an entry is empty".into()),
            None => Ok(()),
        }
    }

    fn next_batch<'a>(
        &'a self,
        _http: &'a reqwest::Client,
        settings: &'a Value,
        cursor: &'a Value,
    ) -> BoxFuture<'a, Result<Batch, IndexError>> {
        Box::pin(async move {
            let settings: Settings = parse(settings, "settings")?;
            let cursor: Cursor = parse(cursor, "cursor")?;
            let start = cursor.position.min(settings.urls.len());
            let end = (start + BATCH).min(settings.urls.len());
            Ok(Batch {
                found: settings.urls[start..end]
                    .iter()
                    .map(|url| Found {
                        url: url.trim().to_owned(),
                        name: name_of(url),
                    })
                    .collect(),
                cursor: json!({ "position": end }),
                exhausted: end == settings.urls.len(),
                pause_until: None,
            })
        })
    }
}

/// `owner/name` of a URL or path: its last two segments, without `.git`.
pub fn name_of(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/').trim_end_matches(".git");
    let segments: Vec<&str> = trimmed
        .rsplit(['/', ':'])
        .filter(|s| !s.is_empty())
        .take(2)
        .collect();
    segments.into_iter().rev().collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::name_of;

    #[test]
    fn names_are_the_last_two_segments() {
        assert_eq!(
            name_of("https://github.com/rust-lang/rust.git"),
            "rust-lang/rust"
        );
        assert_eq!(name_of("git@github.com:a/b.git"), "a/b");
        assert_eq!(name_of("/tmp/work/repo/"), "work/repo");
    }
}
