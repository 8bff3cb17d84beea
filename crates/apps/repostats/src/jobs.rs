//! The job kinds, on queue `repostats` (its concurrency bounds requests in flight to GitHub;
//! GitHub asks for about 20 at most):
//!
//! - `repostats.refresh` (periodic): finds the 100 newest public repositories with a
//!   `created:>=` window narrowed until at most 100 match, records them as the current list,
//!   and enqueues `repostats.languages` for each whose languages are missing (a unique key
//!   per repository, so overlapping refreshes do not duplicate work);
//! - `repostats.languages`: fetches one repository's languages, conditionally (a 304 is
//!   free), and stores them. Every write bumps the version that API replicas poll.
//!
//! Both wait on the shared budget ([`crate::github`]) rather than fail when it is spent, so
//! an anonymous deployment makes steady progress across hourly windows and keeps what it has.

use chrono::{Duration as Span, SecondsFormat, Utc};
use conveyor_queue::clock::now_ms;
use conveyor_queue::{JobContext, JobError, NewJob, Registry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::db;
use crate::github::{Bucket, Github, GithubError};
use crate::model::{Item, Languages};

/// The queue.
pub const QUEUE: &str = "repostats";
/// Lists the newest repositories.
pub const REFRESH: &str = "repostats.refresh";
/// Fetches one repository's languages.
pub const LANGUAGES: &str = "repostats.languages";
/// How many repositories the list keeps.
pub const NEWEST: usize = 100;

/// `repostats.refresh` takes no arguments.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshArgs {}

/// `repostats.languages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LanguagesArgs {
    /// GitHub's id.
    pub id: i64,
    /// `owner/name`.
    pub full_name: String,
}

#[derive(Debug, Deserialize)]
struct SearchPage {
    total_count: i64,
    #[serde(default)]
    incomplete_results: bool,
    items: Vec<Item>,
}

/// Registers both kinds with `github`.
pub fn register(registry: &mut Registry, github: Github) {
    let for_refresh = github.clone();
    registry.register(REFRESH, move |_: RefreshArgs, ctx: JobContext| {
        let github = for_refresh.clone();
        async move { refresh(&github, &ctx).await }
    });
    registry.register(LANGUAGES, move |args: LanguagesArgs, ctx: JobContext| {
        let github = github.clone();
        async move { languages(&github, args, &ctx).await }
    });
}

fn limited(error: GithubError) -> JobError {
    JobError::retry(error.to_string())
}

/// Lists the newest repositories and enqueues the missing languages.
///
/// # Errors
/// Retryable on GitHub or database errors.
pub async fn refresh(github: &Github, ctx: &JobContext) -> Result<Value, JobError> {
    let store = ctx.store();
    // Start with the last 10 minutes; halve while more than 100 match (at most 12 times,
    // down to under a second), widen while none do.
    let mut window = Span::minutes(10);
    let mut page = None;
    for _ in 0..12 {
        let since = (Utc::now() - window).to_rfc3339_opts(SecondsFormat::Secs, true);
        let query = format!("is:public created:>={since}");
        let path = format!("/search/repositories?q={}&per_page=100", encode(&query));
        let answer = github
            .get(store, Bucket::Search, &path, None)
            .await
            .map_err(limited)?;
        let found: SearchPage = serde_json::from_slice(&answer.body)
            .map_err(|e| JobError::retry(format!("search answer: {e}")))?;
        if found.total_count > NEWEST as i64 && window > Span::seconds(1) {
            window = window / 2;
            page = Some(found);
            continue;
        }
        if found.items.len() < NEWEST && found.total_count < NEWEST as i64 && window < Span::days(7)
        {
            if let Some(previous) = page.take()
                && previous.items.len() >= found.items.len()
            {
                page = Some(previous);
                break;
            }
            window = window * 4;
            page = Some(found);
            continue;
        }
        page = Some(found);
        break;
    }
    let page = page.ok_or_else(|| JobError::retry("no search answer"))?;
    let mut items = page.items;
    items.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
    items.truncate(NEWEST);
    let now = now_ms();
    let missing = db::record_listing(store, &items, now).await?;
    let jobs: Vec<NewJob> = missing
        .iter()
        .map(|(id, full_name)| {
            NewJob::new(
                LANGUAGES,
                json!(LanguagesArgs {
                    id: *id,
                    full_name: full_name.clone()
                }),
            )
            .queue(QUEUE)
            .unique_key(format!("repostats-languages-{id}"))
        })
        .collect();
    let mut enqueued = 0;
    for job in jobs {
        // A repository already waiting from an earlier refresh keeps its one job.
        if !store.enqueue(job).await?.duplicate {
            enqueued += 1;
        }
    }
    metrics::counter!("repostats_refreshes_total").increment(1);
    Ok(json!({
        "listed": items.len(),
        "incomplete_results": page.incomplete_results,
        "languages_enqueued": enqueued,
    }))
}

/// Minimal percent-encoding for a query value.
fn encode(text: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Fetches one repository's languages.
///
/// # Errors
/// Retryable on GitHub or database errors.
pub async fn languages(
    github: &Github,
    args: LanguagesArgs,
    ctx: &JobContext,
) -> Result<Value, JobError> {
    let store = ctx.store();
    let etag = db::languages_etag(store, args.id).await?;
    let path = format!("/repos/{}/languages", args.full_name);
    match github
        .get(store, Bucket::Core, &path, etag.as_deref())
        .await
    {
        Ok(answer) if answer.status == reqwest::StatusCode::NOT_MODIFIED => {
            db::record_languages(store, args.id, None, now_ms()).await?;
            Ok(json!({"unchanged": true}))
        }
        Ok(answer) => {
            let languages: Languages = serde_json::from_slice(&answer.body).map_err(|e| {
                JobError::permanent(format!("languages of {}: {e}", args.full_name))
            })?;
            db::record_languages(
                store,
                args.id,
                Some((&languages, answer.etag.as_deref())),
                now_ms(),
            )
            .await?;
            Ok(json!({"languages": languages.len()}))
        }
        Err(GithubError::NotFound) => {
            // Deleted or made private since it was listed: no languages to show.
            db::record_languages(store, args.id, Some((&Languages::new(), None)), now_ms()).await?;
            Ok(json!({"gone": true}))
        }
        Err(error) => Err(limited(error)),
    }
}
