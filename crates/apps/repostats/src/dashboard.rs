//! repostats' dashboard page: the snapshot's freshness and the last refresh's outcome (a live
//! region), the filters of `/repos`, the languages by bytes, the repositories, and the GitHub
//! budget.

use askama::Template;
use axum::extract::Query;
use conveyor_dashboard::chart;
use conveyor_dashboard::view::{ago, duration};
use conveyor_queue::{JobFilter, JobState, Store};
use conveyor_web::AppState;
use conveyor_web::app::Page;
use conveyor_web::page::PageError;
use futures_util::future::BoxFuture;

use crate::{Repostats, SnapshotCell};

#[derive(Debug, Default)]
struct RepostatsQuery {
    name: String,
    language: String,
    license: String,
    sort: String,
    /// Every boolean filter of `/repos` with its chosen value ("", "true" or "false").
    flags: Vec<(&'static str, String)>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Content {
    /// The live region, rendered once for the first paint.
    live: String,
    offline: Option<String>,
    query: RepostatsQuery,
    error: Option<String>,
    chart: String,
    repos: Vec<(String, String, String, String, i64)>,
    budget: Vec<(String, String, i64, String, String)>,
}

async fn content(
    state: &AppState,
    offline: Option<&str>,
    cell: &SnapshotCell,
    pairs: Vec<(String, String)>,
) -> Result<String, PageError> {
    let snapshot = cell.load();
    // Every filter `/repos` takes, with its checks; empty form fields mean "any".
    let given: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let value = |key: &str| {
        given
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map_or(String::new(), |(_, v)| (*v).to_owned())
    };
    let query = RepostatsQuery {
        name: value("name"),
        language: value("language"),
        license: value("license"),
        sort: value("sort"),
        flags: crate::snapshot::FLAGS
            .iter()
            .map(|f| (*f, value(f).to_ascii_lowercase()))
            .collect(),
    };
    let (filter, error) = match crate::snapshot::Filter::parse(given.iter().copied()) {
        Ok(filter) => (filter, None),
        Err(error) => (crate::snapshot::Filter::default(), Some(error)),
    };
    let stats = snapshot.stats(&filter);
    let mut languages: Vec<_> = stats.languages.iter().collect();
    languages.sort_by_key(|l| std::cmp::Reverse(l.1.bytes));
    let items: Vec<(String, f64, String)> = languages
        .iter()
        .take(15)
        .map(|(name, s)| {
            (
                (*name).clone(),
                s.bytes as f64,
                format!("{:.1} % · {} repos", s.share * 100.0, s.repositories),
            )
        })
        .collect();
    let repos = snapshot
        .select(&filter)
        .into_iter()
        .map(|r| {
            (
                r.full_name.clone(),
                r.created_at.clone(),
                r.language.clone().unwrap_or_else(|| "-".into()),
                r.license.as_ref().map_or("-".into(), |l| l.key.clone()),
                r.stargazers_count,
            )
        })
        .collect();
    let budget = crate::github::budget(&state.store)
        .await?
        .into_iter()
        .map(|(token, bucket, remaining, reset, blocked)| {
            (
                token,
                bucket,
                remaining,
                ago(Some(reset)),
                if blocked > 0 {
                    ago(Some(blocked))
                } else {
                    "-".into()
                },
            )
        })
        .collect();
    let chart = if items.is_empty() {
        String::new()
    } else {
        chart::bars("languages by bytes", &items)
    };
    Ok(Content {
        live: live(&state.store, cell).await?,
        offline: offline.map(str::to_owned),
        query,
        error,
        chart,
        repos,
        budget,
    }
    .render()?)
}

/// The live region: how fresh the snapshot is and how the last refresh went.
#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct Live {
    freshness: String,
    /// The last refresh job: id, state, when, how long, error.
    last: Option<(i64, String, String, String, Option<String>)>,
}

async fn live(store: &Store, cell: &SnapshotCell) -> Result<String, PageError> {
    let snapshot = cell.load();
    let stats = snapshot.stats(&crate::snapshot::Filter::default());
    let freshness = match snapshot.refreshed_at {
        Some(at) => format!(
            "Refreshed {} · snapshot version {} · {} of {} repositories have their languages",
            ago(Some(at)),
            snapshot.version,
            stats.with_languages,
            snapshot.repos.len()
        ),
        None => "Not refreshed yet.".into(),
    };
    let filter = JobFilter {
        kind: Some(crate::jobs::REFRESH.to_owned()),
        limit: 1,
        ..JobFilter::default()
    };
    let last = store.list(&filter).await?.into_iter().next().map(|job| {
        let when = match job.state {
            JobState::Running => format!("started {}", ago(job.started_at)),
            state if state.is_final() => ago(job.finished_at),
            _ => format!("due {}", ago(Some(job.run_at))),
        };
        let took = match (job.started_at, job.finished_at) {
            (Some(start), Some(end)) => duration(end - start),
            _ => String::new(),
        };
        let error = job.error.filter(|_| job.state != JobState::Completed);
        (job.id, job.state.as_str().to_owned(), when, took, error)
    });
    Ok(Live { freshness, last }.render()?)
}

impl Page for Repostats {
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        query: &'a str,
    ) -> BoxFuture<'a, Result<String, PageError>> {
        Box::pin(async move {
            let uri: axum::http::Uri = format!("/?{query}")
                .parse()
                .map_err(|_| PageError::bad_request("a bad query string"))?;
            let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
                .map_err(|e| PageError::bad_request(e.body_text()))?;
            content(state, self.offline.as_deref(), &self.snapshot, pairs).await
        })
    }

    fn live<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> Option<BoxFuture<'a, Result<String, PageError>>> {
        Some(Box::pin(live(&state.store, &self.snapshot)))
    }
}
