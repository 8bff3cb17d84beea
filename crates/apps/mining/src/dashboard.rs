//! mining's dashboard page: add a repository, the indexers' settings, and the pipeline's
//! counts, chart, repositories, languages and files, live.

use askama::Template;
use conveyor_dashboard::chart;
use conveyor_dashboard::view::ago;
use conveyor_queue::Store;
use conveyor_web::AppState;
use conveyor_web::app::Page;
use conveyor_web::page::PageError;
use futures_util::future::BoxFuture;

use crate::{MiningApp, db};

struct IndexerRow {
    name: String,
    enabled: bool,
    /// Its kind's settings as typed fields; empty for a kind this process does not know.
    fields: Vec<FieldView>,
    settings: String,
    cursor: String,
    discovered: i64,
    paused: Option<String>,
    error: Option<String>,
}

/// One setting in the form: its field and current value.
struct FieldView {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: String,
    checked: bool,
}

/// The form's fields for an indexer of `host` with `settings` (JSON text).
fn fields(hosts: &crate::indexer::Hosts, host: &str, settings: &str) -> Vec<FieldView> {
    let settings: serde_json::Value = serde_json::from_str(settings).unwrap_or_default();
    let Some(indexer) = hosts.get(host) else {
        return Vec::new();
    };
    indexer
        .fields()
        .iter()
        .map(|field| {
            let value = &settings[field.name];
            FieldView {
                name: field.name,
                kind: field.kind.as_str(),
                help: field.help,
                value: match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    serde_json::Value::Array(items) => items
                        .iter()
                        .filter_map(|i| i.as_str())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    _ => String::new(),
                },
                // An absent flag takes its default: forks are included unless excluded.
                checked: value.as_bool().unwrap_or(value.is_null()),
            }
        })
        .collect()
}

struct RepoRow {
    id: i64,
    name: String,
    state: String,
    files: String,
    commit: String,
    error: String,
}

struct FileRow {
    id: i64,
    repo: i64,
    path: String,
    language: String,
    code: String,
    functions: String,
    cyclomatic: String,
    mi: String,
}

struct MiningData {
    files: Vec<FileRow>,
    repo_counts: String,
    file_counts: String,
    chart: String,
    repos: Vec<RepoRow>,
    languages: Vec<(String, i64, String, String, String, String)>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Content {
    indexers: Vec<IndexerRow>,
    data: MiningData,
}

#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct Live {
    data: MiningData,
}

async fn mining_data(store: &Store) -> Result<MiningData, PageError> {
    let (repo_states, file_states) = db::counts(store).await?;
    let join = |rows: Vec<(String, i64)>| {
        if rows.is_empty() {
            "none".to_owned()
        } else {
            rows.iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    // A window that shows the activity: the last hour by minute when everything of the day
    // happened in it, else the last day by half hour (one spike in an hour told little).
    let now = conveyor_queue::clock::now_ms();
    let day_first = (now - 86_400_000) / 1_800_000 * 1_800_000 + 1_800_000;
    let day = db::timeline(store, day_first, 1_800_000).await?;
    let hour_first = (now - 3_600_000) / 60_000 * 60_000 + 60_000;
    let recent = day.iter().all(|b| b.0 + 1_800_000 > hour_first);
    let (first, step, buckets, title, since) = if recent {
        (
            hour_first,
            60_000,
            60,
            "repositories and files per minute, last hour",
            "an hour ago",
        )
    } else {
        (
            day_first,
            1_800_000,
            48,
            "repositories and files per half hour, last day",
            "a day ago",
        )
    };
    let timeline = if recent {
        db::timeline(store, first, step).await?
    } else {
        day
    };
    let starts: Vec<i64> = (0..buckets).map(|i| first + i * step).collect();
    let column = |f: fn(&(i64, i64, i64, i64, i64)) -> i64| {
        starts
            .iter()
            .map(|m| timeline.iter().find(|b| b.0 == *m).map_or(0, f))
            .collect::<Vec<_>>()
    };
    let chart = if timeline.is_empty() {
        String::new()
    } else {
        chart::lines(
            title,
            &[
                ("discovered", "#8250df", column(|b| b.1)),
                ("fetched", "#bf8700", column(|b| b.2)),
                ("analysed", "#2e7d32", column(|b| b.3)),
                ("files / 10", "#1f6feb", column(|b| b.4 / 10)),
            ],
            since,
            "now",
        )
    };
    let repos: Vec<RepoRow> = db::repos(store, &db::RepoFilter::default(), 20)
        .await?
        .into_iter()
        .map(|r| RepoRow {
            id: r.id,
            files: match (r.files_total, r.files_listed) {
                (Some(t), Some(l)) => format!("{t} of {l}"),
                _ => "-".into(),
            },
            commit: r
                .head_commit
                .map_or("-".into(), |c| c.chars().take(10).collect()),
            error: r.error.unwrap_or_default(),
            name: r.name,
            state: r.state.to_string(),
        })
        .collect();
    let number = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0}"));
    let languages = db::language_totals(store, None)
        .await?
        .into_iter()
        .take(20)
        .map(|l| {
            (
                l.language,
                l.files,
                l.code.map_or("-".into(), |c| c.to_string()),
                number(l.functions),
                number(l.cyclomatic),
                l.mi_mean.map_or("-".into(), |m| format!("{m:.1}")),
            )
        })
        .collect();
    // The newest repository's analysed files, first twenty.
    let newest = repos.first().map(|r| r.id);
    let filter = db::FileFilter {
        repo: newest,
        state: Some("analyzed".into()),
        ..db::FileFilter::default()
    };
    let files = if newest.is_none() {
        Vec::new()
    } else {
        db::files(store, &filter, 20).await?
    };
    let files = files
        .into_iter()
        .map(|f| FileRow {
            id: f.id,
            repo: f.repo_id,
            path: f.path,
            language: f.language,
            code: f.code.map_or("-".into(), |c| c.to_string()),
            functions: number(f.functions),
            cyclomatic: number(f.cyclomatic),
            mi: f.mi.map_or("-".into(), |m| format!("{m:.1}")),
        })
        .collect();
    Ok(MiningData {
        files,
        repo_counts: join(repo_states),
        file_counts: join(file_states),
        chart,
        repos,
        languages,
    })
}

impl Page for MiningApp {
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> BoxFuture<'a, Result<String, PageError>> {
        Box::pin(async move {
            let hosts = crate::indexer::Hosts::standard();
            let indexers = crate::db::indexers(&state.store)
                .await?
                .into_iter()
                .map(|i| IndexerRow {
                    paused: i
                        .paused_until
                        .filter(|p| *p > conveyor_queue::clock::now_ms())
                        .map(|p| ago(Some(p))),
                    fields: fields(&hosts, &i.host, &i.settings),
                    name: i.name,
                    enabled: i.enabled,
                    settings: i.settings,
                    cursor: i.cursor,
                    discovered: i.discovered,
                    error: i.last_error,
                })
                .collect();
            let data = mining_data(&state.store).await?;
            Ok(Content { indexers, data }.render()?)
        })
    }

    fn live<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> Option<BoxFuture<'a, Result<String, PageError>>> {
        Some(Box::pin(async move {
            Ok(Live {
                data: mining_data(&state.store).await?,
            }
            .render()?)
        }))
    }
}
