//! repostats' dashboard page: the snapshot's freshness, the filters of `/repos`, the
//! languages by bytes, the repositories, and the GitHub budget.

use askama::Template;
use axum::extract::Query;
use conveyor_dashboard::chart;
use conveyor_dashboard::view::ago;
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
    offline: Option<String>,
    freshness: String,
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
    let chart = if items.is_empty() {
        String::new()
    } else {
        chart::bars("languages by bytes", &items)
    };
    Ok(Content {
        offline: offline.map(str::to_owned),
        freshness,
        query,
        error,
        chart,
        repos,
        budget,
    }
    .render()?)
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
}
