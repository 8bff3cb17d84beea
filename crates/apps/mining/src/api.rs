//! `/api/mining/...`: repositories and files with filters and cursor paging (100 a page),
//! per-repository and per-language aggregates, progress over time, the indexers' settings
//! and cursors (read and changed while the system runs, as the POC's admin panel), and a
//! live stream of repository and file activity.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use conveyor_web::extract::{Json, Path, Query};
use conveyor_web::{ApiError, AppState};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, FileRow, IndexerRow, LanguageTotals, RepoRow, RepoState};
use crate::indexer::Found;
use crate::jobs::{self, Mining};
use crate::key::{self, KeyGate};

/// Largest page.
pub const PAGE_MAX: i64 = 100;

/// The routes, behind the API-key gate.
pub fn router(mining: Mining, gate: KeyGate) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_repos, add_repo))
        .routes(routes!(show_repo))
        .routes(routes!(reprocess))
        .routes(routes!(list_files))
        .routes(routes!(export))
        .routes(routes!(show_file))
        .routes(routes!(languages))
        .routes(routes!(progress))
        .routes(routes!(list_indexers))
        .routes(routes!(show_indexer, change_indexer))
        .routes(routes!(run_indexer))
        .routes(routes!(events))
        .layer(axum::middleware::from_fn(move |request, next| {
            key::gate(gate.clone(), request, next)
        }))
        .layer(Extension(mining))
}

fn page_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(PAGE_MAX),
        Some(n) if (1..=PAGE_MAX).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::bad_request(format!(
            "limit must be from 1 to {PAGE_MAX}, not {n}"
        ))),
    }
}

fn one_of(
    field: &str,
    value: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, ApiError> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => Err(ApiError::bad_request(format!(
            "{field} must be one of {}, not {v:?}",
            allowed.join(", ")
        ))),
        other => Ok(other),
    }
}

/// Repository filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RepoQuery {
    /// discovered, queued, fetching, analyzing, analyzed or failed.
    pub state: Option<String>,
    /// `true`: analysed ones only (`state=analyzed`).
    pub analyzed: Option<bool>,
    /// `true`: failed ones only (`state=failed`).
    pub failed: Option<bool>,
    /// Found by this indexer (`manual`: added through the API or CLI).
    pub indexer: Option<String>,
    /// Having files in this language (case-insensitive).
    pub language: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Page size, 1 to 100 (default 100).
    pub limit: Option<i64>,
}

/// A page of repositories, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepoPage {
    /// The repositories.
    pub repositories: Vec<RepoRow>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<i64>,
}

const REPO_STATES: &[&str] = &[
    "discovered",
    "queued",
    "fetching",
    "analyzing",
    "analyzed",
    "failed",
];

/// Lists repositories.
#[utoipa::path(get, path = "/api/mining/repositories", tag = "mining", params(RepoQuery),
    responses((status = 200, body = RepoPage), (status = 400, description = "a bad parameter")))]
async fn list_repos(
    State(state): State<AppState>,
    Query(query): Query<RepoQuery>,
) -> Result<axum::Json<RepoPage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let mut wanted = one_of("state", query.state, REPO_STATES)?;
    for (flag, value, name) in [
        (query.analyzed, "analyzed", "analyzed"),
        (query.failed, "failed", "failed"),
    ] {
        match flag {
            Some(true) => {
                if wanted.as_deref().is_some_and(|w| w != value) {
                    return Err(ApiError::bad_request(format!(
                        "{name}=true contradicts state={}",
                        wanted.unwrap_or_default()
                    )));
                }
                wanted = Some(value.to_owned());
            }
            Some(false) if wanted.as_deref() == Some(value) => {
                return Err(ApiError::bad_request(format!(
                    "{name}=false contradicts state={value}"
                )));
            }
            _ => {}
        }
    }
    let filter = db::RepoFilter {
        state: wanted,
        indexer: query.indexer,
        language: query.language,
        before: query.cursor,
    };
    let mut repositories = db::repos(&state.store, &filter, limit).await?;
    // `analyzed=false` / `failed=false` without a state: drop those on this page.
    repositories.retain(|r| {
        !(query.analyzed == Some(false) && r.state == RepoState::Analyzed
            || query.failed == Some(false) && r.state == RepoState::Failed)
    });
    let next_cursor = (repositories.len() as i64 == limit)
        .then(|| repositories.last().map(|r| r.id))
        .flatten();
    Ok(axum::Json(RepoPage {
        repositories,
        next_cursor,
    }))
}

/// `POST /api/mining/repositories`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddRepo {
    #[schema(min_length = 1, max_length = 2048)]
    /// A git URL (https, http, git, ssh, scp-like `user@host:path`); `file://` and local
    /// paths (stored absolute) only where `MINING_ALLOW_LOCAL` is on.
    pub url: String,
}

/// Adds a repository by hand (indexer `manual`) and queues it; an existing URL is queued
/// again unless it is being processed.
#[utoipa::path(post, path = "/api/mining/repositories", tag = "mining", request_body = AddRepo,
    responses((status = 201, body = RepoRow), (status = 422, description = "a bad URL, or one the source policy refuses (local paths, private hosts, git options and remote helpers)")))]
async fn add_repo(
    State(state): State<AppState>,
    Extension(mining): Extension<Mining>,
    Json(body): Json<AddRepo>,
) -> Result<Response, ApiError> {
    let id = add(&state.store, mining.settings.sources, &body.url).await?;
    let row = db::repo(&state.store, id).await?;
    Ok((StatusCode::CREATED, axum::Json(row)).into_response())
}

/// Adds (or re-queues) the repository at `url` and starts its processing; its id.
///
/// # Errors
/// 422 for an empty or over-long URL or one `sources` refuses (naming the rule); the
/// database's.
pub async fn add(
    store: &conveyor_queue::Store,
    sources: crate::source::SourcePolicy,
    url: &str,
) -> Result<i64, ApiError> {
    let url = url.trim();
    if url.is_empty() || url.len() > 2048 || url.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "url must be 1 to 2048 characters without control characters",
        ));
    }
    sources
        .check_resolved(url)
        .await
        .map_err(ApiError::unprocessable)?;
    let url = crate::git::remote(url);
    let now = conveyor_queue::clock::now_ms();
    let found = Found {
        name: crate::indexer::list::name_of(&url),
        url,
    };
    // The row and its processing job commit together, in a transaction shared with the
    // enqueues arriving at the same time (group commit).
    let (id, new) = store
        .transact(move |tx| {
            let found = found.clone();
            Box::pin(async move {
                let (id, new) = db::insert_repo(tx, &found, "manual", now).await?;
                if db::requeue(tx, id, now).await? {
                    tx.enqueue(jobs::process_job(id)).await?;
                }
                Ok((id, new))
            })
        })
        .await?;
    if new {
        metrics::counter!("mining_repositories_discovered_total").increment(1);
    }
    Ok(id)
}

/// A repository with its aggregates.
#[derive(Debug, Serialize, ToSchema)]
pub struct RepoDetail {
    /// The row.
    #[serde(flatten)]
    pub repository: RepoRow,
    /// Per language.
    pub languages: Vec<LanguageTotals>,
    /// Commits by kind: count and mean readability (Gunning fog).
    #[schema(value_type = Object)]
    pub commits: Value,
}

/// One repository.
#[utoipa::path(get, path = "/api/mining/repositories/{id}", tag = "mining",
    responses((status = 200, body = RepoDetail), (status = 404)))]
async fn show_repo(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<RepoDetail>, ApiError> {
    let repository = db::repo(&state.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no repository {id}")))?;
    let languages = db::language_totals(&state.store, Some(id)).await?;
    let commits: serde_json::Map<String, Value> = db::commit_kinds(&state.store, id)
        .await?
        .into_iter()
        .map(|(kind, count, fog)| {
            (
                kind,
                serde_json::json!({"count": count, "readability": fog}),
            )
        })
        .collect();
    Ok(axum::Json(RepoDetail {
        repository,
        languages,
        commits: Value::Object(commits),
    }))
}

/// Processes a repository again: its old files and commits are replaced.
#[utoipa::path(post, path = "/api/mining/repositories/{id}/reprocess", tag = "mining",
    responses((status = 202, body = RepoRow), (status = 404), (status = 409, description = "being processed now")))]
async fn reprocess(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let now = conveyor_queue::clock::now_ms();
    let mut tx = state.store.begin().await?;
    if !db::requeue(&mut tx, id, now).await? {
        drop(tx);
        return match db::repo(&state.store, id).await? {
            None => Err(ApiError::not_found(format!("no repository {id}"))),
            Some(row) => Err(ApiError::conflict(format!(
                "repository {id} is {} now; re-process it when it has ended",
                row.state
            ))),
        };
    }
    tx.enqueue(jobs::process_job(id)).await?;
    tx.commit().await?;
    let row = db::repo(&state.store, id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(row)).into_response())
}

/// File filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct FileQuery {
    /// Of this repository.
    pub repository: Option<i64>,
    /// In this language (case-insensitive, tokei's names: `Rust`, `C++`...).
    pub language: Option<String>,
    /// pending, analyzed or failed.
    pub state: Option<String>,
    /// `true`: analysed only; `false`: not yet analysed (pending).
    pub analyzed: Option<bool>,
    /// `true`: failed only.
    pub failed: Option<bool>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<i64>,
    /// Page size, 1 to 100 (default 100).
    pub limit: Option<i64>,
}

/// A file as listed (its reports in `GET /api/mining/files/{id}`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    /// The row without its reports.
    #[serde(flatten)]
    pub file: FileRow,
}

/// A page of files.
#[derive(Debug, Serialize, ToSchema)]
pub struct FilePage {
    /// The files.
    pub files: Vec<FileView>,
    /// Pass as `cursor` for the next page; absent on the last.
    pub next_cursor: Option<i64>,
}

/// Lists files, in id order.
#[utoipa::path(get, path = "/api/mining/files", tag = "mining", params(FileQuery),
    responses((status = 200, body = FilePage), (status = 400, description = "a bad parameter")))]
async fn list_files(
    State(state): State<AppState>,
    Query(query): Query<FileQuery>,
) -> Result<axum::Json<FilePage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let filter = file_filter(
        query.repository,
        query.language,
        query.state,
        query.analyzed,
        query.failed,
    )?;
    let filter = db::FileFilter {
        after: query.cursor,
        ..filter
    };
    let mut rows = db::files(&state.store, &filter, limit).await?;
    if query.failed == Some(false) {
        rows.retain(|f| f.state != db::FileState::Failed);
    }
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|f| f.id))
        .flatten();
    let files = rows
        .into_iter()
        .map(|mut file| {
            file.metrics = None;
            FileView { file }
        })
        .collect();
    Ok(axum::Json(FilePage { files, next_cursor }))
}

/// The files the list's filters select: a state, or the analyzed/failed flags.
fn file_filter(
    repository: Option<i64>,
    language: Option<String>,
    state: Option<String>,
    analyzed: Option<bool>,
    failed: Option<bool>,
) -> Result<db::FileFilter, ApiError> {
    let given = one_of("state", state, &["pending", "analyzed", "failed"])?;
    let implied = match (analyzed, failed) {
        (Some(true), Some(true)) => {
            return Err(ApiError::bad_request(
                "analyzed=true contradicts failed=true",
            ));
        }
        (Some(true), _) => Some("analyzed"),
        (Some(false), _) => Some("pending"),
        (None, Some(true)) => Some("failed"),
        (None, _) => None,
    };
    let wanted = match (given, implied) {
        (Some(g), Some(i)) if g != i => {
            return Err(ApiError::bad_request(format!(
                "state={g} contradicts the analyzed/failed flags"
            )));
        }
        (g, i) => g.or(i.map(str::to_owned)),
    };
    Ok(db::FileFilter {
        repo: repository,
        language,
        state: wanted,
        after: None,
    })
}

/// `GET /api/mining/export` parameters: the files list's filters, a format and a level.
#[derive(Debug, Deserialize, IntoParams)]
pub struct ExportQuery {
    /// `ndjson` (default) or `csv`.
    pub format: Option<String>,
    /// `file` (default): a row per file; `function`: a row per function an analyzer listed.
    pub level: Option<String>,
    /// Of this repository.
    pub repository: Option<i64>,
    /// In this language (case-insensitive, tokei's names).
    pub language: Option<String>,
    /// pending, analyzed or failed.
    pub state: Option<String>,
    /// `true`: analysed only; `false`: not yet analysed (pending).
    pub analyzed: Option<bool>,
    /// `true`: failed only; `false`: leave failed files out.
    pub failed: Option<bool>,
}

impl ExportQuery {
    /// What to export.
    ///
    /// # Errors
    /// A bad format, level or filter, named.
    pub fn export(self) -> Result<crate::export::Export, ApiError> {
        use crate::export::{Export, Format, Level};
        let format = Format::parse(self.format.as_deref().unwrap_or("ndjson"))
            .map_err(ApiError::bad_request)?;
        let level =
            Level::parse(self.level.as_deref().unwrap_or("file")).map_err(ApiError::bad_request)?;
        let skip_failed = self.failed == Some(false);
        let filter = file_filter(
            self.repository,
            self.language,
            self.state,
            self.analyzed,
            self.failed,
        )?;
        Ok(Export {
            filter,
            skip_failed,
            level,
            format,
        })
    }
}

/// Stream every selected file with its metrics, or every function, as NDJSON or CSV.
///
/// Rows come a page of files at a time, in file id order, so any number of files is
/// exported in bounded memory. File rows: id, repository, path, language, bytes, state,
/// error, the line counts and the summed metrics. Function rows (`level=function`): the
/// file's id, repository, path and language, the analyzer, and the function's name, lines,
/// complexity, arguments, exits, Halstead volume and maintainability index.
#[utoipa::path(get, path = "/api/mining/export", tag = "mining", params(ExportQuery),
    responses((status = 200, description = "NDJSON or CSV rows",
                content((String = "application/x-ndjson"), (String = "text/csv"))),
              (status = 400, description = "a bad parameter")))]
async fn export(
    State(state): State<AppState>,
    Query(query): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    let export = query.export()?;
    let (content_type, name) = match export.format {
        crate::export::Format::Ndjson => (export.format.content_type(), "mining.ndjson"),
        crate::export::Format::Csv => (export.format.content_type(), "mining.csv"),
    };
    let stream = export.stream(state.store.clone());
    let body = axum::body::Body::from_stream(stream);
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
            (
                axum::http::header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response())
}

/// A file with every analyzer's report.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileDetail {
    /// The row.
    #[serde(flatten)]
    pub file: FileRow,
    /// By analyzer: tokei's counts; rust-code-analysis' metrics and functions.
    #[schema(value_type = Object)]
    pub reports: Value,
}

/// One file.
#[utoipa::path(get, path = "/api/mining/files/{id}", tag = "mining",
    responses((status = 200, body = FileDetail), (status = 404)))]
async fn show_file(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<FileDetail>, ApiError> {
    let mut file = db::file(&state.store, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no file {id}")))?;
    let reports = file
        .metrics
        .take()
        .and_then(|m| serde_json::from_str(&m).ok())
        .unwrap_or(Value::Null);
    Ok(axum::Json(FileDetail { file, reports }))
}

/// Per-language totals over every repository.
#[derive(Debug, Serialize, ToSchema)]
pub struct LanguagesView {
    /// By bytes, largest first.
    pub languages: Vec<LanguageTotals>,
}

/// Aggregates per language.
#[utoipa::path(get, path = "/api/mining/languages", tag = "mining",
    responses((status = 200, body = LanguagesView)))]
async fn languages(State(state): State<AppState>) -> Result<axum::Json<LanguagesView>, ApiError> {
    let languages = db::language_totals(&state.store, None).await?;
    Ok(axum::Json(LanguagesView { languages }))
}

/// Progress window.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ProgressQuery {
    /// How far back, in minutes (default 60).
    #[param(minimum = 1, maximum = 10080)]
    pub minutes: Option<i64>,
    /// Bucket width in seconds (default 60).
    #[param(minimum = 1, maximum = 86400)]
    pub bucket_seconds: Option<i64>,
}

/// One time bucket.
#[derive(Debug, Serialize, ToSchema)]
pub struct Bucket {
    /// Its start, ms since the epoch.
    pub at: i64,
    /// Repositories discovered.
    pub discovered: i64,
    /// Repositories cloned.
    pub fetched: i64,
    /// Repositories fully analysed.
    pub analyzed: i64,
    /// Files analysed.
    pub files: i64,
}

/// Counts now and over time.
#[derive(Debug, Serialize, ToSchema)]
pub struct MiningProgress {
    /// Repositories by state.
    #[schema(value_type = Object)]
    pub repositories: Value,
    /// Files by state.
    #[schema(value_type = Object)]
    pub files: Value,
    /// Over the window, oldest first.
    pub timeline: Vec<Bucket>,
}

/// Progress counts (discovered, fetched, analysed), now and over time.
#[utoipa::path(get, path = "/api/mining/progress", tag = "mining", params(ProgressQuery),
    responses((status = 200, body = MiningProgress), (status = 400)))]
async fn progress(
    State(state): State<AppState>,
    Query(query): Query<ProgressQuery>,
) -> Result<axum::Json<MiningProgress>, ApiError> {
    let minutes = query.minutes.unwrap_or(60);
    let bucket = query.bucket_seconds.unwrap_or(60);
    if !(1..=10_080).contains(&minutes) {
        return Err(ApiError::bad_request("minutes must be from 1 to 10080"));
    }
    if !(1..=86_400).contains(&bucket) {
        return Err(ApiError::bad_request(
            "bucket_seconds must be from 1 to 86400",
        ));
    }
    let since = conveyor_queue::clock::now_ms() - minutes * 60_000;
    let (repos, files) = db::counts(&state.store).await?;
    let as_map = |rows: Vec<(String, i64)>| {
        Value::Object(rows.into_iter().map(|(k, v)| (k, Value::from(v))).collect())
    };
    let timeline = db::timeline(&state.store, since, bucket * 1000)
        .await?
        .into_iter()
        .map(|(at, discovered, fetched, analyzed, files)| Bucket {
            at,
            discovered,
            fetched,
            analyzed,
            files,
        })
        .collect();
    Ok(axum::Json(MiningProgress {
        repositories: as_map(repos),
        files: as_map(files),
        timeline,
    }))
}

/// An indexer, its settings and cursor as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexerView {
    /// Its name.
    pub name: String,
    /// Which implementation.
    pub host: String,
    /// Whether the periodic tick runs it.
    pub enabled: bool,
    /// Settings.
    #[schema(value_type = Object)]
    pub settings: Value,
    /// Where it goes on from.
    #[schema(value_type = Object)]
    pub cursor: Value,
    /// Paused until then (throttled), ms since the epoch.
    pub paused_until: Option<i64>,
    /// Repositories found.
    pub discovered: i64,
    /// Last batch.
    pub last_run_at: Option<i64>,
    /// Last error.
    pub last_error: Option<String>,
}

impl From<IndexerRow> for IndexerView {
    fn from(row: IndexerRow) -> Self {
        Self {
            settings: serde_json::from_str(&row.settings).unwrap_or(Value::Null),
            cursor: serde_json::from_str(&row.cursor).unwrap_or(Value::Null),
            name: row.name,
            host: row.host,
            enabled: row.enabled,
            paused_until: row.paused_until,
            discovered: row.discovered,
            last_run_at: row.last_run_at,
            last_error: row.last_error,
        }
    }
}

/// Every indexer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexerList {
    /// By name.
    pub indexers: Vec<IndexerView>,
}

/// Lists the indexers.
#[utoipa::path(get, path = "/api/mining/indexers", tag = "mining",
    responses((status = 200, body = IndexerList)))]
async fn list_indexers(State(state): State<AppState>) -> Result<axum::Json<IndexerList>, ApiError> {
    let rows = db::indexers(&state.store).await?;
    Ok(axum::Json(IndexerList {
        indexers: rows.into_iter().map(IndexerView::from).collect(),
    }))
}

async fn indexer_or_404(state: &AppState, name: &str) -> Result<IndexerRow, ApiError> {
    db::indexer(&state.store, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no indexer {name:?}")))
}

/// One indexer.
#[utoipa::path(get, path = "/api/mining/indexers/{name}", tag = "mining",
    responses((status = 200, body = IndexerView), (status = 404)))]
async fn show_indexer(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<IndexerView>, ApiError> {
    Ok(axum::Json(indexer_or_404(&state, &name).await?.into()))
}

/// `PATCH /api/mining/indexers/{name}`: any of the fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IndexerPatch {
    /// Run it or not.
    pub enabled: Option<bool>,
    /// New settings (checked by the indexer; the whole object).
    #[serde(default, deserialize_with = "some_object")]
    #[schema(value_type = Object)]
    pub settings: Option<Value>,
    /// New cursor (checked by the indexer).
    #[serde(default, deserialize_with = "some_object")]
    #[schema(value_type = Object)]
    pub cursor: Option<Value>,
    /// `true` lifts a pause.
    pub resume: Option<bool>,
}

/// A field that, when given, must be a JSON object (`null` is not "leave it as it is":
/// that is leaving the field out).
fn some_object<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Value>, D::Error> {
    let value = Value::deserialize(deserializer)?;
    if value.is_object() {
        Ok(Some(value))
    } else {
        Err(serde::de::Error::custom(
            "must be a JSON object (leave the field out to keep it)",
        ))
    }
}

/// Changes an indexer's settings, cursor or switch while the system runs; the next batch
/// uses them.
#[utoipa::path(patch, path = "/api/mining/indexers/{name}", tag = "mining", request_body = IndexerPatch,
    responses((status = 200, body = IndexerView), (status = 404), (status = 422, description = "settings or cursor the indexer cannot read")))]
async fn change_indexer(
    State(state): State<AppState>,
    Extension(mining): Extension<Mining>,
    Path(name): Path<String>,
    Json(patch): Json<IndexerPatch>,
) -> Result<axum::Json<IndexerView>, ApiError> {
    let row = indexer_or_404(&state, &name).await?;
    let host = mining.hosts.get(&row.host).ok_or_else(|| {
        ApiError::conflict(format!("this process has no indexer kind {:?}", row.host))
    })?;
    let current = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
    let settings = patch
        .settings
        .clone()
        .unwrap_or_else(|| current(&row.settings));
    let cursor = patch.cursor.clone().unwrap_or_else(|| current(&row.cursor));
    host.check(&settings, &cursor)
        .map_err(ApiError::unprocessable)?;
    let change = db::IndexerChange {
        enabled: patch.enabled,
        settings: patch.settings.map(|s| s.to_string()),
        cursor: patch.cursor.map(|c| c.to_string()),
        paused_until: (patch.resume == Some(true)).then_some(None),
    };
    db::change_indexer(
        &state.store,
        &name,
        &change,
        conveyor_queue::clock::now_ms(),
    )
    .await?;
    Ok(axum::Json(indexer_or_404(&state, &name).await?.into()))
}

/// Runs an indexer now (whether enabled or not), unless it is running.
#[utoipa::path(post, path = "/api/mining/indexers/{name}/run", tag = "mining",
    responses((status = 202, description = "the index job"), (status = 404)))]
async fn run_indexer(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    indexer_or_404(&state, &name).await?;
    let enqueued = state.store.enqueue(jobs::index_job(&name)).await?;
    let body = serde_json::json!({"job": enqueued.job.id, "already_running": enqueued.duplicate});
    Ok((StatusCode::ACCEPTED, axum::Json(body)).into_response())
}

/// Streams repository and file activity (Server-Sent Events): `repository` events with the
/// repository's row at each change of state, `file` events as files are analysed.
#[utoipa::path(get, path = "/api/mining/events", tag = "mining",
    responses((status = 200, description = "An event stream", content_type = "text/event-stream"),
              (status = 503, description = "Too many open streams")))]
async fn events(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let permit = state.stream_permit()?;
    let watch = Watch {
        store: state.store.clone(),
        since: conveyor_queue::clock::now_ms(),
        seen: HashMap::new(),
    };
    Ok(conveyor_web::sse::polled(watch, POLL, permit))
}

/// How often a stream looks for changes.
const POLL: Duration = Duration::from_millis(500);
/// Rows are stamped before they commit, so a stream re-reads this far back and skips what
/// it has sent (by id and stamp).
const OVERLAP_MS: i64 = 2_000;
/// Most rows of each kind read per look.
const READ_MAX: i64 = 500;

struct Watch {
    store: conveyor_queue::Store,
    since: i64,
    seen: HashMap<(bool, i64), i64>,
}

impl conveyor_web::sse::Poll for Watch {
    async fn poll(&mut self) -> Option<Vec<Event>> {
        let from = self.since - OVERLAP_MS;
        let Ok((repos, files)) = db::changed_since(&self.store, from, READ_MAX).await else {
            return Some(Vec::new());
        };
        let mut events = Vec::new();
        for repo in repos {
            self.since = self.since.max(repo.updated_at);
            if self.seen.insert((true, repo.id), repo.updated_at) != Some(repo.updated_at) {
                events.push(Event::default().event("repository").json_data(&repo));
            }
        }
        for (id, repo_id, path, language, state, error, updated_at) in files {
            self.since = self.since.max(updated_at);
            if self.seen.insert((false, id), updated_at) != Some(updated_at) {
                let body = serde_json::json!({"id": id, "repository": repo_id, "path": path,
                    "language": language, "state": state, "error": error});
                events.push(Event::default().event("file").json_data(body));
            }
        }
        let horizon = self.since - 2 * OVERLAP_MS;
        self.seen.retain(|_, at| *at >= horizon);
        Some(events.into_iter().flatten().collect())
    }
}
