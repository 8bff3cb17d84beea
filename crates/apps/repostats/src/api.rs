//! The seed's API, served from the snapshot: `/ping`, `/repos`, `/stats`; plus
//! `/api/repostats/status` (freshness and the GitHub budget) and `/api/repostats/refresh`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use conveyor_queue::{NewJob, Store};
use conveyor_web::{ApiError, AppState};
use serde::Serialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;

use crate::snapshot::{Answer, Filter, RepoView, Snapshot, SnapshotCell, Stats};
use crate::{db, jobs};

/// Every route, reading `cell`: [`public_router`] and [`admin_router`].
pub fn router(cell: SnapshotCell, per_ip: u32) -> OpenApiRouter<AppState> {
    public_router(cell.clone(), per_ip).merge(admin_router(cell))
}

/// The seed's routes, open to its clients: `/ping`, `/repos` and `/stats`, limited to
/// `per_ip` requests a second per client address (0: no limit).
pub fn public_router(cell: SnapshotCell, per_ip: u32) -> OpenApiRouter<AppState> {
    // The handlers hold the cell themselves: an `Extension` layer would cost every request
    // of every route here a boxed future, a service clone and an insert into its extensions.
    let (for_repos, for_stats) = (cell.clone(), cell);
    let mut public = OpenApiRouter::with_openapi(<PublicDoc as utoipa::OpenApi>::openapi())
        .route("/ping", get(ping))
        .route(
            "/repos",
            get(move |request: Request| std::future::ready(repos(&for_repos, &request))),
        )
        .route(
            "/stats",
            get(move |request: Request| std::future::ready(stats(&for_stats, &request))),
        );
    if per_ip > 0 {
        let limiter = conveyor_web::limit::PerIp::new(per_ip);
        public = public.layer(axum::middleware::from_fn(move |request, next| {
            conveyor_web::limit::limit(
                limiter.clone(),
                "repostats_rate_limited_total",
                request,
                next,
            )
        }));
    }
    public
}

/// The seed's three routes as the document describes them. They are served by the
/// closures of [`public_router`], which hold the snapshot (an `Extension` would cost every
/// request); these functions only carry the description and are never routed.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(doc_ping, doc_repos, doc_stats),
    tags((name = "repostats", description = "The newest public GitHub repositories and their languages (the seed's routes)"))
)]
struct PublicDoc;

/// Filters of `/repos` and `/stats`; an unknown parameter is a 400 naming it.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct RepoQuery {
    /// Part of the repository's name, any case.
    name: Option<String>,
    /// A language the repository uses (as GitHub names it), any case.
    language: Option<String>,
    /// An SPDX license id, any case.
    license: Option<String>,
    /// At most this many repositories (default: all).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
    /// Skip this many first (default 0).
    #[param(minimum = 0, maximum = 100000)]
    offset: Option<u32>,
    /// `newest` (or `created`), `oldest`, `stars`, `name` or `bytes`.
    #[param(
        pattern = "^([Nn][Ee][Ww][Ee][Ss][Tt]|[Cc][Rr][Ee][Aa][Tt][Ee][Dd]|[Oo][Ll][Dd][Ee][Ss][Tt]|[Ss][Tt][Aa][Rr][Ss]|[Nn][Aa][Mm][Ee]|[Bb][Yy][Tt][Ee][Ss])$"
    )]
    sort: Option<String>,
    /// Only forkable (true) or not (false); `1`/`0` and `yes`/`no` too, as for every flag.
    allow_forking: Option<bool>,
    /// Only with open issues, or without.
    has_open_issues: Option<bool>,
    /// Only with issues enabled, or not.
    has_issues: Option<bool>,
    /// Only with projects enabled, or not.
    has_projects: Option<bool>,
    /// Only with downloads enabled, or not.
    has_downloads: Option<bool>,
    /// Only with a wiki, or not.
    has_wiki: Option<bool>,
    /// Only with pages, or not.
    has_pages: Option<bool>,
    /// Only with discussions, or not.
    has_discussions: Option<bool>,
    /// Only forks, or no forks.
    fork: Option<bool>,
    /// Only archived, or not.
    archived: Option<bool>,
}

/// Liveness of the seed's API: `{"status": "pong"}`.
#[utoipa::path(get, path = "/ping", tag = "repostats",
    responses((status = 200, description = "`{\"status\": \"pong\"}`", content_type = "application/json"),
        (status = 429, description = "More requests than REPOSTATS_PER_IP a second from this client; see Retry-After")))]
#[allow(dead_code)]
fn doc_ping() {}

/// The newest repositories of the last refresh, filtered: `{repositories, count, freshness}`.
/// Sends an `ETag` and answers 304 to `If-None-Match` with it.
#[utoipa::path(get, path = "/repos", tag = "repostats", params(RepoQuery),
    responses((status = 200, description = "`{repositories: [...], count, freshness}`", body = Object),
        (status = 304, description = "Unchanged since the ETag sent"),
        (status = 400, description = "An unknown parameter or a bad value, named", body = conveyor_web::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "More requests than REPOSTATS_PER_IP a second from this client; see Retry-After")))]
#[allow(dead_code)]
fn doc_repos() {}

/// Statistics of the repositories that pass the filters: languages by repository count and
/// bytes, licenses, flags. `ETag` and 304 as `/repos`.
#[utoipa::path(get, path = "/stats", tag = "repostats", params(RepoQuery),
    responses((status = 200, description = "The statistics, the language asked for, and freshness", body = Object),
        (status = 304, description = "Unchanged since the ETag sent"),
        (status = 400, description = "An unknown parameter or a bad value, named", body = conveyor_web::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "More requests than REPOSTATS_PER_IP a second from this client; see Retry-After")))]
#[allow(dead_code)]
fn doc_stats() {}

/// The operator's routes: `/api/repostats/status` and `/api/repostats/refresh`.
pub fn admin_router(cell: SnapshotCell) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .route(
            "/api/repostats/status",
            get(move |state: State<AppState>| status(state, cell.clone())),
        )
        .route("/api/repostats/refresh", post(refresh_now))
}

/// Keeps `cell` at the database's version: reloads within `every` of a change (each API
/// replica runs one; a request never touches the database).
pub async fn keep_fresh(store: Store, cell: SnapshotCell, every: Duration) {
    loop {
        match db::version(&store).await {
            Ok(version) if version != cell.load().version => {
                match db::load_snapshot(&store).await {
                    Ok(snapshot) => {
                        metrics::gauge!("repostats_snapshot_repositories")
                            .set(snapshot.repos.len() as f64);
                        cell.store(snapshot);
                    }
                    Err(error) => tracing::warn!(%error, "repostats: cannot load the snapshot"),
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "repostats: cannot read the version"),
        }
        tokio::time::sleep(every).await;
    }
}

async fn ping() -> impl IntoResponse {
    axum::Json(json!({"status": "pong"}))
}

fn pairs(query: Option<&str>) -> Result<Vec<(String, String)>, ApiError> {
    let Some(query) = query else {
        return Ok(Vec::new());
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

fn decode(text: &str) -> Result<String, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        match bytes[at] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = text
                    .get(at + 1..at + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("bad percent-encoding in {text:?}"))
                    })?;
                out.push(hex);
                at += 2;
            }
            b => out.push(b),
        }
        at += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::bad_request("the query is not UTF-8"))
}

fn filter_of(query: Option<&str>) -> Result<Filter, ApiError> {
    let pairs = pairs(query)?;
    Filter::parse(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(ApiError::bad_request)
}

/// An answer that carries an ETag (the snapshot's version and the query) and a short
/// `Cache-Control`; `If-None-Match` with the same tag gets a 304. The body is rendered once
/// per snapshot and query, then served from the snapshot's cache with its tag.
fn cached<T: Serialize>(
    headers: &HeaderMap,
    snapshot: &Snapshot,
    route: &'static str,
    query: Option<&str>,
    body: impl FnOnce() -> Result<T, ApiError>,
) -> Result<Response, ApiError> {
    let query = query.unwrap_or("");
    let cache = HeaderValue::from_static("public, max-age=5");
    // Only a valid query is ever rendered, so a hit needs no parsing.
    let answer = match snapshot.rendered.get(route, query) {
        Some(answer) => answer,
        None => {
            let body = body()?;
            let mut hasher = DefaultHasher::new();
            (route, query).hash(&mut hasher);
            let etag = format!("\"{}-{:x}\"", snapshot.version, hasher.finish());
            let answer = Answer {
                body: bytes::Bytes::from(serde_json::to_vec(&body).expect("answers serialise")),
                etag: HeaderValue::from_str(&etag).expect("an ASCII tag"),
            };
            snapshot.rendered.insert(route, query, answer.clone());
            answer
        }
    };
    let etag = answer.etag.to_str().unwrap_or_default();
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    if matches {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, answer.etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    let json = HeaderValue::from_static("application/json");
    Ok((
        [
            (header::ETAG, answer.etag),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_TYPE, json),
        ],
        answer.body,
    )
        .into_response())
}

/// `/repos`.
#[derive(Serialize)]
struct ReposBody<'a> {
    repositories: Vec<&'a RepoView>,
    count: usize,
    freshness: Freshness,
}

/// How fresh the data is.
#[derive(Serialize)]
struct Freshness {
    /// The snapshot's version.
    version: i64,
    /// When the list was last refreshed (ms since the epoch).
    refreshed_at: Option<i64>,
    /// Repositories listed, and of those with languages fetched.
    repositories: usize,
    with_languages: usize,
}

fn freshness(snapshot: &crate::snapshot::Snapshot) -> Freshness {
    Freshness {
        version: snapshot.version,
        refreshed_at: snapshot.refreshed_at,
        repositories: snapshot.repos.len(),
        with_languages: snapshot
            .repos
            .iter()
            .filter(|r| r.languages.is_some())
            .count(),
    }
}

// The whole request, not `HeaderMap` and `RawQuery`: those copy the headers and the query.
fn repos(cell: &SnapshotCell, request: &Request) -> Result<Response, ApiError> {
    let snapshot = cell.load();
    let query = request.uri().query();
    cached(request.headers(), &snapshot, "repos", query, || {
        let filter = filter_of(query)?;
        let repositories = snapshot.select(&filter);
        Ok(ReposBody {
            count: repositories.len(),
            repositories,
            freshness: freshness(&snapshot),
        })
    })
}

#[derive(Serialize)]
struct StatsBody {
    #[serde(flatten)]
    stats: Stats,
    language: Option<String>,
    freshness: Freshness,
}

// The whole request, not `HeaderMap` and `RawQuery`: those copy the headers and the query.
fn stats(cell: &SnapshotCell, request: &Request) -> Result<Response, ApiError> {
    let snapshot = cell.load();
    let query = request.uri().query();
    cached(request.headers(), &snapshot, "stats", query, || {
        let filter = filter_of(query)?;
        Ok(StatsBody {
            stats: snapshot.stats(&filter),
            language: filter.language.clone(),
            freshness: freshness(&snapshot),
        })
    })
}

async fn status(State(state): State<AppState>, cell: SnapshotCell) -> Result<Response, ApiError> {
    let budget = crate::github::budget(&state.store).await?;
    let budget: Vec<_> = budget
        .into_iter()
        .map(|(token, bucket, remaining, reset_at, blocked_until)| {
            json!({"token": token, "bucket": bucket, "remaining": remaining, "reset_at": reset_at, "blocked_until": blocked_until})
        })
        .collect();
    let snapshot = cell.load();
    Ok(axum::Json(json!({"freshness": freshness(&snapshot), "budget": budget})).into_response())
}

async fn refresh_now(State(state): State<AppState>) -> Result<Response, ApiError> {
    let job = NewJob::new(jobs::REFRESH, json!({}))
        .queue(jobs::QUEUE)
        .unique_key("repostats-refresh");
    let enqueued = state.store.enqueue(job).await?;
    let status = if enqueued.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        axum::Json(json!({"job": enqueued.job.id, "already_waiting": enqueued.duplicate})),
    )
        .into_response())
}
