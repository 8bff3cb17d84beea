//! The routes: `/` (overview), `/jobs`, `/jobs/{id}`, `/workers`, `/apps/<app>`, the live
//! regions `/dashboard/live/{region}/events` and the embedded assets `/dashboard/static/...`.

use std::convert::Infallible;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use conveyor_queue::{JobFilter, JobState, Store};
use conveyor_repostats::SnapshotCell;
use conveyor_web::AppState;
use futures_util::Stream;
use serde::Deserialize;

use crate::chart;
use crate::view::{self, JobRow, OverviewData, ago};

/// What the pages need beyond the store.
#[derive(Debug, Clone, Default)]
pub struct Dashboard {
    /// repostats' snapshot.
    pub snapshot: SnapshotCell,
    /// Where MiniTwit's pages are served, if they are.
    pub minitwit_url: Option<String>,
}

/// The dashboard's routes: the pages (behind the operator's token when one is set) and
/// the open ones (the login page, log-out, the assets).
pub fn routers(dashboard: Dashboard) -> (Router<AppState>, Router<AppState>) {
    let pages = Router::new()
        .route("/", get(overview))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/workers", get(workers))
        .route("/apps/longtask", get(longtask))
        .route("/apps/average", get(average))
        .route("/apps/mining", get(mining))
        .route("/apps/repostats", get(repostats))
        .route("/apps/minitwit", get(minitwit))
        .route("/dashboard/live/{region}/events", get(live))
        .layer(Extension(dashboard));
    let open = Router::new()
        .route("/login", get(crate::login::form).post(crate::login::submit))
        .route("/logout", axum::routing::post(crate::login::logout))
        .route("/dashboard/static/app.css", get(css))
        .route("/dashboard/static/live.js", get(js));
    (pages, open)
}

/// Every dashboard route in one router (the gate is [`conveyor_web::router_for`]'s).
pub fn router(dashboard: Dashboard) -> Router<AppState> {
    let (pages, open) = routers(dashboard);
    pages.merge(open)
}

/// A page that could not be made: a short text; the cause of a 500 goes to the log only,
/// and the page shows the request id that finds it there.
pub struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        (
            self.0,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.1,
        )
            .into_response()
    }
}

impl<E: std::fmt::Display> From<E> for PageError {
    fn from(error: E) -> Self {
        tracing::error!(%error, "a dashboard page failed");
        let id = conveyor_web::metrics::current_request_id();
        PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The page could not be made; the server log has the cause (request id {id})."),
        )
    }
}

type PageResult = Result<Html<String>, PageError>;

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../static/app.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("../static/live.js"),
    )
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    title: &'static str,
    data: OverviewData,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
struct OverviewLive {
    data: OverviewData,
}

async fn overview(State(state): State<AppState>) -> PageResult {
    let data = view::overview(&state.store).await?;
    Ok(Html(
        OverviewPage {
            title: "Overview",
            data,
        }
        .render()?,
    ))
}

/// `/jobs` filters (empty values mean any).
#[derive(Debug, Default, Deserialize)]
struct JobsQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    queue: String,
    before: Option<i64>,
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    title: &'static str,
    states: Vec<String>,
    kinds: Vec<String>,
    filter: JobsQuery,
    jobs: Vec<JobRow>,
    next: Option<String>,
}

const PAGE: i64 = 50;

fn job_filter(query: &JobsQuery) -> Result<JobFilter, PageError> {
    let job_state = match query.state.as_str() {
        "" => None,
        s => Some(
            JobState::ALL
                .into_iter()
                .find(|j| j.as_str() == s)
                .ok_or_else(|| {
                    PageError(
                        StatusCode::BAD_REQUEST,
                        format!("state must be one of the job states, not {s:?}"),
                    )
                })?,
        ),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(JobFilter {
        state: job_state,
        kind: some(&query.kind),
        queue: some(&query.queue),
        before: query.before,
        limit: PAGE,
    })
}

#[derive(Template)]
#[template(path = "jobs_table.html")]
struct JobsLive {
    jobs: Vec<JobRow>,
}

async fn jobs(State(state): State<AppState>, Query(query): Query<JobsQuery>) -> PageResult {
    let jobs = view::jobs(&state.store, &job_filter(&query)?).await?;
    let next = (jobs.len() as i64 == PAGE).then(|| {
        let last = jobs.last().map_or(0, |j| j.id);
        format!(
            "/jobs?state={}&kind={}&queue={}&before={last}",
            query.state, query.kind, query.queue
        )
    });
    Ok(Html(
        JobsPage {
            title: "Jobs",
            states: JobState::ALL.iter().map(ToString::to_string).collect(),
            kinds: state
                .registry
                .kinds()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            filter: query,
            jobs,
            next,
        }
        .render()?,
    ))
}

struct JobDetail {
    id: i64,
    kind: String,
    queue: String,
    state: String,
    attempt: i32,
    max_attempts: i32,
    progress_known: bool,
    progress_done: i64,
    progress_max: i64,
    progress_text: String,
    created: String,
    started: String,
    finished: String,
    worker: String,
    args: String,
    result: String,
    error: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    title: String,
    job: JobDetail,
}

async fn job(State(state): State<AppState>, Path(id): Path<i64>) -> PageResult {
    let job = state
        .store
        .get(id)
        .await?
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, format!("no job {id}")))?;
    let (done, total) = (job.progress_done.unwrap_or(0), job.progress_total);
    let progress_text = match total {
        Some(t) if t > 0 => format!("{} % ({done} of {t})", done * 100 / t),
        _ => done.to_string(),
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let detail = JobDetail {
        id: job.id,
        kind: job.kind.clone(),
        queue: job.queue.clone(),
        state: job.state.to_string(),
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        progress_known: total.is_some() || job.state == JobState::Completed,
        progress_done: if job.state == JobState::Completed && total.is_none() {
            1
        } else {
            done
        },
        progress_max: total.unwrap_or(1).max(1),
        progress_text,
        created: ago(Some(job.created_at)),
        started: ago(job.started_at),
        finished: ago(job.finished_at),
        worker: job.lease_owner.clone().unwrap_or_else(|| "-".into()),
        args: pretty(&job.args),
        result: job.result.as_ref().map(pretty).unwrap_or_default(),
        error: job.error.clone().unwrap_or_default(),
    };
    Ok(Html(
        JobPage {
            title: format!("Job {id}"),
            job: detail,
        }
        .render()?,
    ))
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    title: &'static str,
    data: OverviewData,
    settings: Vec<(String, usize)>,
}

async fn workers(State(state): State<AppState>) -> PageResult {
    let data = view::overview(&state.store).await?;
    let mut settings = state.store.queue_settings().await?;
    // Queues that have jobs or workers but no setting yet show what the workers apply.
    for name in data.queues.iter().map(|q| q.name.clone()) {
        if !settings.iter().any(|(q, _)| *q == name) {
            let applied = state
                .store
                .workers(60_000)
                .await?
                .iter()
                .find_map(|w| w.queues.get(&name).and_then(serde_json::Value::as_u64))
                .unwrap_or(0) as usize;
            settings.push((name, applied));
        }
    }
    settings.sort();
    Ok(Html(
        WorkersPage {
            title: "Workers",
            data,
            settings,
        }
        .render()?,
    ))
}

#[derive(Template)]
#[template(path = "longtask.html")]
struct LongtaskPage {
    title: &'static str,
    data: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "longtask_live.html")]
struct LongtaskLive {
    data: Vec<JobRow>,
}

async fn longtask_rows(store: &Store) -> conveyor_queue::Result<Vec<JobRow>> {
    view::jobs(
        store,
        &JobFilter {
            kind: Some("longtask".into()),
            limit: 20,
            ..JobFilter::default()
        },
    )
    .await
}

async fn longtask(State(state): State<AppState>) -> PageResult {
    let data = longtask_rows(&state.store).await?;
    Ok(Html(
        LongtaskPage {
            title: "longtask",
            data,
        }
        .render()?,
    ))
}

struct AverageRow {
    id: i64,
    files: i64,
    entries: i64,
    status: String,
    percent: i64,
    mean: String,
    timings: String,
    error: String,
}

struct AverageData {
    w: String,
    slots: i64,
    busy: i64,
    waiting: i64,
    jobs: Vec<AverageRow>,
}

#[derive(Template)]
#[template(path = "average.html")]
struct AveragePage {
    title: &'static str,
    w: String,
    data: AverageData,
}

#[derive(Template)]
#[template(path = "average_live.html")]
struct AverageLive {
    data: AverageData,
}

async fn average_data(store: &Store) -> Result<AverageData, PageError> {
    let queue = conveyor_average::QUEUE;
    let w = store
        .queue_settings()
        .await?
        .into_iter()
        .find(|(q, _)| q == queue)
        .map(|(_, c)| c);
    let live = store.workers(60_000).await?;
    let slots: i64 = live
        .iter()
        .filter_map(|w| w.queues.get(queue).and_then(serde_json::Value::as_i64))
        .sum();
    let counts = store.queue_counts().await?;
    let count = |s: JobState| {
        counts
            .iter()
            .filter(|q| q.queue == queue)
            .flat_map(|q| q.by_state.iter())
            .filter(|(t, _)| *t == s)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let rows = conveyor_average::db::list(store, None, 20).await?;
    let seconds = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2} s", (b - a) as f64 / 1000.0),
        _ => "-".into(),
    };
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        // The same status and progress as the API's resource.
        let (status, progress) = conveyor_average::api::progress(store, &r).await?;
        jobs.push(AverageRow {
            id: r.id,
            files: r.files,
            entries: r.entries,
            percent: progress.percent as i64,
            mean: r.mean.map_or("-".into(), |m| format!("{m:.4}")),
            timings: format!(
                "generation {}, processing {}",
                seconds(Some(r.created_at), r.generated_at),
                seconds(r.generated_at, r.finished_at)
            ),
            error: r.error.unwrap_or_default(),
            status,
        });
    }
    Ok(AverageData {
        w: w.map_or_else(|| "(workers' default)".into(), |w| w.to_string()),
        slots,
        busy: count(JobState::Running),
        waiting: count(JobState::Available),
        jobs,
    })
}

async fn average(State(state): State<AppState>) -> PageResult {
    let data = average_data(&state.store).await?;
    let w = data
        .w
        .parse::<u32>()
        .map_or_else(|_| "4".into(), |w| w.to_string());
    Ok(Html(
        AveragePage {
            title: "average",
            w,
            data,
        }
        .render()?,
    ))
}

struct IndexerRow {
    name: String,
    enabled: bool,
    settings: String,
    cursor: String,
    discovered: i64,
    paused: Option<String>,
    error: Option<String>,
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
#[template(path = "mining.html")]
struct MiningPage {
    title: &'static str,
    indexers: Vec<IndexerRow>,
    data: MiningData,
}

#[derive(Template)]
#[template(path = "mining_live.html")]
struct MiningLive {
    data: MiningData,
}

async fn mining_data(store: &Store) -> Result<MiningData, PageError> {
    use conveyor_mining::db;
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
    // The last hour in one-minute buckets, empty minutes included, so the x axis is time.
    let now = conveyor_queue::clock::now_ms();
    let first = (now - 3_600_000) / 60_000 * 60_000 + 60_000;
    let timeline = db::timeline(store, first, 60_000).await?;
    let minutes: Vec<i64> = (0..60).map(|i| first + i * 60_000).collect();
    let column = |f: fn(&(i64, i64, i64, i64, i64)) -> i64| {
        minutes
            .iter()
            .map(|m| timeline.iter().find(|b| b.0 == *m).map_or(0, f))
            .collect::<Vec<_>>()
    };
    let chart = if timeline.is_empty() {
        String::new()
    } else {
        chart::lines(
            "repositories and files per minute, last hour",
            &[
                ("discovered", "#8250df", column(|b| b.1)),
                ("fetched", "#bf8700", column(|b| b.2)),
                ("analysed", "#2e7d32", column(|b| b.3)),
                ("files / 10", "#1f6feb", column(|b| b.4 / 10)),
            ],
            "an hour ago",
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
            state: r.state,
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

async fn mining(State(state): State<AppState>) -> PageResult {
    let indexers = conveyor_mining::db::indexers(&state.store)
        .await?
        .into_iter()
        .map(|i| IndexerRow {
            paused: i
                .paused_until
                .filter(|p| *p > conveyor_queue::clock::now_ms())
                .map(|p| ago(Some(p))),
            name: i.name,
            enabled: i.enabled,
            settings: i.settings,
            cursor: i.cursor,
            discovered: i.discovered,
            error: i.last_error,
        })
        .collect();
    let data = mining_data(&state.store).await?;
    Ok(Html(
        MiningPage {
            title: "mining",
            indexers,
            data,
        }
        .render()?,
    ))
}

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
#[template(path = "repostats.html")]
struct RepostatsPage {
    title: &'static str,
    freshness: String,
    query: RepostatsQuery,
    error: Option<String>,
    chart: String,
    repos: Vec<(String, String, String, String, i64)>,
    budget: Vec<(String, String, i64, String, String)>,
}

async fn repostats(
    State(state): State<AppState>,
    Extension(dashboard): Extension<Dashboard>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> PageResult {
    let snapshot = dashboard.snapshot.load();
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
        flags: conveyor_repostats::snapshot::FLAGS
            .iter()
            .map(|f| (*f, value(f).to_ascii_lowercase()))
            .collect(),
    };
    let (filter, error) = match conveyor_repostats::snapshot::Filter::parse(given.iter().copied()) {
        Ok(filter) => (filter, None),
        Err(error) => (conveyor_repostats::snapshot::Filter::default(), Some(error)),
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
    let budget = conveyor_repostats::github::budget(&state.store)
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
    Ok(Html(
        RepostatsPage {
            title: "repostats",
            freshness,
            query,
            error,
            chart,
            repos,
            budget,
        }
        .render()?,
    ))
}

#[derive(Template)]
#[template(path = "minitwit.html")]
struct MinitwitPage {
    title: &'static str,
    url: Option<String>,
    users: i64,
    messages: i64,
    follows: i64,
}

async fn minitwit(
    State(state): State<AppState>,
    Extension(dashboard): Extension<Dashboard>,
) -> PageResult {
    let (users, messages, follows) = conveyor_minitwit::db::counts(&state.store).await?;
    Ok(Html(
        MinitwitPage {
            title: "minitwit",
            url: dashboard.minitwit_url,
            users,
            messages,
            follows,
        }
        .render()?,
    ))
}

/// The live region's query string (the page's filters) as `T`.
fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, PageError> {
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| PageError(StatusCode::BAD_REQUEST, "a bad query string".into()))?;
    Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .map_err(|e| PageError(StatusCode::BAD_REQUEST, e.body_text()))
}

/// How often a live region is re-rendered; it is sent only when it changed.
const LIVE_EVERY: Duration = Duration::from_secs(1);

async fn render_region(store: &Store, region: &str, query: &str) -> Result<String, PageError> {
    Ok(match region {
        "jobs" => {
            let query: JobsQuery = serde_urlencoded_query(query)?;
            JobsLive {
                jobs: view::jobs(store, &job_filter(&query)?).await?,
            }
            .render()?
        }
        "overview" => OverviewLive {
            data: view::overview(store).await?,
        }
        .render()?,
        "longtask" => LongtaskLive {
            data: longtask_rows(store).await?,
        }
        .render()?,
        "average" => AverageLive {
            data: average_data(store).await?,
        }
        .render()?,
        "mining" => MiningLive {
            data: mining_data(store).await?,
        }
        .render()?,
        other => {
            return Err(PageError(
                StatusCode::NOT_FOUND,
                format!("no live region {other:?}"),
            ));
        }
    })
}

async fn live(
    State(state): State<AppState>,
    Path(region): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let query = query.unwrap_or_default();
    let permit = state
        .stream_permit()
        .map_err(|e| PageError(e.status, e.detail))?;
    let first = render_region(&state.store, &region, &query).await?;
    let store = state.store.clone();
    // The page came with the region rendered; send only changes from now on.
    let stream = futures_util::stream::unfold(
        (store, region, query, first, permit),
        |(store, region, query, last, permit)| async move {
            loop {
                tokio::time::sleep(LIVE_EVERY).await;
                let Ok(html) = render_region(&store, &region, &query).await else {
                    continue;
                };
                if html != last {
                    let event = Event::default().data(html.clone());
                    return Some((Ok(event), (store, region, query, html, permit)));
                }
            }
        },
    );
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_page_shows_a_request_id_not_its_cause() {
        let failed: PageError = sqlx_like_error().into();
        let response = failed.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("request id"), "{text}");
        assert!(!text.contains("password authentication failed"), "{text}");
    }

    fn sqlx_like_error() -> String {
        "error returned from database: password authentication failed for user \"root\"".into()
    }
}
