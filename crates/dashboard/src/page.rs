//! The routes: `/` (overview), `/jobs`, `/jobs/{id}`, `/workers`, `/apps/<app>`, the live
//! regions `/dashboard/live/{region}/events` and the embedded assets `/dashboard/static/...`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::{Extension, Path, Query, RawQuery, State};
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use conveyor_queue::{JobFilter, JobState, Store};
use conveyor_web::AppState;
use conveyor_web::app::App;
use conveyor_web::page::PageError;
use futures_util::Stream;
use serde::Deserialize;

use crate::view::{self, JobRow, OverviewData, ago};

/// The apps whose pages the dashboard frames, in the order of its navigation.
#[derive(Clone, Default)]
pub struct Apps(pub Arc<[Arc<dyn App>]>);

impl Apps {
    /// The names of the apps that have a page.
    fn with_pages(&self) -> Vec<&'static str> {
        self.0
            .iter()
            .filter(|a| a.page().is_some())
            .map(|a| a.name())
            .collect()
    }

    fn find(&self, name: &str) -> Option<&dyn App> {
        self.0.iter().find(|a| a.name() == name).map(AsRef::as_ref)
    }
}

/// The dashboard's routes: the pages (behind the operator's token when one is set) and
/// the open ones (the login page, log-out, the assets).
pub fn routers(apps: Apps) -> (Router<AppState>, Router<AppState>) {
    let pages = Router::new()
        .route("/", get(overview))
        .route("/jobs", get(jobs))
        .route("/jobs/{id}", get(job))
        .route("/workers", get(workers))
        .route("/schedules", get(schedules))
        .route("/apps/{app}", get(app_page))
        .route("/dashboard/live/{region}/events", get(live))
        .layer(Extension(apps));
    let open = Router::new()
        .route("/login", get(crate::login::form).post(crate::login::submit))
        .route("/logout", axum::routing::post(crate::login::logout))
        .route("/dashboard/static/app.css", get(css))
        .route("/dashboard/static/live.js", get(js));
    (pages, open)
}

/// Every dashboard route in one router (the gate is [`conveyor_web::router_for`]'s).
pub fn router(apps: Apps) -> Router<AppState> {
    let (pages, open) = routers(apps);
    pages.merge(open)
}

/// The frame around every page: the layout, the navigation (with each app that has a
/// page), the script that sends forms to the API and keeps live regions fresh.
#[derive(Template)]
#[template(path = "layout.html")]
struct Frame<'a> {
    title: &'a str,
    apps: Vec<&'static str>,
    body: &'a str,
}

/// `body` in the frame, titled `title`.
fn framed(apps: &Apps, title: &str, body: &str) -> PageResult {
    Ok(Html(
        Frame {
            title,
            apps: apps.with_pages(),
            body,
        }
        .render()?,
    ))
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
    data: OverviewData,
}

#[derive(Template)]
#[template(path = "overview_live.html")]
struct OverviewLive {
    data: OverviewData,
}

async fn overview(State(state): State<AppState>, Extension(apps): Extension<Apps>) -> PageResult {
    let data = view::overview(&state.store).await?;
    framed(&apps, "Overview", &OverviewPage { data }.render()?)
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
    /// Text the arguments' JSON contains.
    #[serde(default)]
    args: String,
    /// "1": show the apps' internal kinds too.
    #[serde(default)]
    internal: String,
    before: Option<i64>,
}

impl JobsQuery {
    fn internal(&self) -> bool {
        matches!(self.internal.as_str(), "1" | "true" | "on")
    }

    /// The query string without the cursor (links to the next page, the live region).
    fn query_string(&self) -> String {
        let pairs = [
            ("state", &self.state),
            ("kind", &self.kind),
            ("queue", &self.queue),
            ("args", &self.args),
            ("internal", &self.internal),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Percent-encodes a query value.
fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Template)]
#[template(path = "jobs.html")]
struct JobsPage {
    states: Vec<String>,
    kinds: Vec<String>,
    queues: Vec<String>,
    filter: JobsQuery,
    jobs: Vec<JobRow>,
    next: Option<String>,
}

const PAGE: i64 = 50;

fn job_filter(query: &JobsQuery, state: &AppState) -> Result<JobFilter, PageError> {
    let job_state = match query.state.as_str() {
        "" => None,
        s => Some(
            JobState::ALL
                .into_iter()
                .find(|j| j.as_str() == s)
                .ok_or_else(|| {
                    PageError::bad_request(format!(
                        "state must be one of the job states, not {s:?}"
                    ))
                })?,
        ),
    };
    let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    // The apps' internal kinds (a reduction's hundreds of sums, a tick a minute) stay out
    // of the list unless asked for, or unless one is picked.
    let exclude_kinds = (!query.internal() && query.kind.is_empty())
        .then(|| conveyor_web::jobs::internal_kinds(state));
    let args_contain = conveyor_web::jobs::check_args_contain(some(&query.args))
        .map_err(|e| PageError::bad_request(e.detail))?;
    Ok(JobFilter {
        state: job_state,
        kind: some(&query.kind),
        queue: some(&query.queue),
        exclude_kinds,
        args_contain,
        before: query.before,
        limit: PAGE,
    })
}

#[derive(Template)]
#[template(path = "jobs_table.html")]
struct JobsLive {
    jobs: Vec<JobRow>,
}

/// The dashboard's table of jobs (id, kind, queue, state, progress, attempt, age, error),
/// for an app's page.
///
/// # Errors
/// When the template fails.
pub fn jobs_table(jobs: Vec<JobRow>) -> askama::Result<String> {
    JobsLive { jobs }.render()
}

async fn jobs(
    State(state): State<AppState>,
    Extension(apps): Extension<Apps>,
    Query(query): Query<JobsQuery>,
) -> PageResult {
    let jobs = view::jobs(&state.store, &job_filter(&query, &state)?).await?;
    let next = (jobs.len() as i64 == PAGE).then(|| {
        let last = jobs.last().map_or(0, |j| j.id);
        format!("/jobs?{}&before={last}", query.query_string())
    });
    let mut queues: Vec<String> = state
        .store
        .queue_counts()
        .await?
        .into_iter()
        .map(|q| q.queue)
        .collect();
    queues.sort();
    let body = JobsPage {
        states: JobState::ALL.iter().map(ToString::to_string).collect(),
        kinds: state
            .registry
            .kinds()
            .into_iter()
            .map(str::to_owned)
            .collect(),
        queues,
        filter: query,
        jobs,
        next,
    }
    .render()?;
    framed(&apps, "Jobs", &body)
}

struct JobDetail {
    id: i64,
    /// Not ended: it can be cancelled.
    active: bool,
    /// Ended or waiting: it can be run again or now.
    retryable: bool,
    /// It reported progress (a bar is shown).
    reports_progress: bool,
    /// Run time so far or in all, or "-".
    duration: String,
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

/// A row of the job's attempt table.
struct AttemptRow {
    attempt: i32,
    started: String,
    duration: String,
    worker: String,
    outcome: String,
    error: String,
}

#[derive(Template)]
#[template(path = "job.html")]
struct JobPage {
    job: JobDetail,
    attempts: Vec<AttemptRow>,
}

async fn job(
    State(state): State<AppState>,
    Extension(apps): Extension<Apps>,
    Path(id): Path<i64>,
) -> PageResult {
    let job = state
        .store
        .get(id)
        .await?
        .ok_or_else(|| PageError::not_found(format!("no job {id}")))?;
    let (done, total) = (job.progress_done.unwrap_or(0), job.progress_total);
    let progress_text = match total {
        Some(t) if t > 0 => format!(
            "{} % ({} of {})",
            done * 100 / t,
            view::thousands(done),
            view::thousands(t)
        ),
        _ => view::thousands(done),
    };
    let duration = match (job.started_at, job.finished_at) {
        (Some(start), Some(end)) => view::duration(end - start),
        (Some(start), None) if job.state == JobState::Running => format!(
            "{} so far",
            view::duration(conveyor_queue::clock::now_ms() - start)
        ),
        _ => "-".to_owned(),
    };
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let detail = JobDetail {
        id: job.id,
        active: !job.state.is_final(),
        retryable: matches!(
            job.state,
            JobState::Completed
                | JobState::Failed
                | JobState::Cancelled
                | JobState::Available
                | JobState::Scheduled
                | JobState::Retryable
        ),
        reports_progress: job.progress_done.is_some() || total.is_some(),
        duration,
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
    let attempts = state
        .store
        .attempts(id)
        .await?
        .into_iter()
        .map(|a| AttemptRow {
            attempt: a.attempt,
            started: ago(a.started_at),
            duration: a
                .started_at
                .map_or_else(|| "-".to_owned(), |s| view::duration(a.finished_at - s)),
            worker: a.worker.unwrap_or_else(|| "-".into()),
            outcome: a.outcome,
            error: a.error.unwrap_or_default(),
        })
        .collect();
    framed(
        &apps,
        &format!("Job {id}"),
        &JobPage {
            job: detail,
            attempts,
        }
        .render()?,
    )
}

#[derive(Template)]
#[template(path = "workers.html")]
struct WorkersPage {
    data: OverviewData,
    settings: Vec<(String, usize)>,
}

async fn workers(State(state): State<AppState>, Extension(apps): Extension<Apps>) -> PageResult {
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
    framed(&apps, "Workers", &WorkersPage { data, settings }.render()?)
}

/// A row of the schedules page.
struct ScheduleView {
    name: String,
    expression: String,
    next: String,
    job: Option<i64>,
    state: String,
    ended: String,
    error: String,
}

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    schedules: Vec<ScheduleView>,
}

async fn schedules(State(state): State<AppState>, Extension(apps): Extension<Apps>) -> PageResult {
    let rows = state.store.schedules().await?;
    let now = conveyor_queue::clock::now_ms();
    let schedules = rows
        .into_iter()
        .map(|s| ScheduleView {
            next: if s.next_run_at >= now {
                format!("in {}", view::duration(s.next_run_at - now))
            } else {
                "due".to_owned()
            },
            job: s.last_job.as_ref().map(|j| j.id),
            state: s
                .last_job
                .as_ref()
                .map_or("-".into(), |j| j.state.to_string()),
            ended: s
                .last_job
                .as_ref()
                .map_or("-".into(), |j| ago(j.finished_at)),
            error: s
                .last_job
                .as_ref()
                .and_then(|j| j.error.clone())
                .unwrap_or_default(),
            name: s.name,
            expression: s.expression,
        })
        .collect();
    framed(&apps, "Schedules", &SchedulesPage { schedules }.render()?)
}

/// The live region's query string (the page's filters) as `T`.
fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(query: &str) -> Result<T, PageError> {
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| PageError::bad_request("a bad query string"))?;
    Query::try_from_uri(&uri)
        .map(|Query(q)| q)
        .map_err(|e| PageError::bad_request(e.body_text()))
}

/// `/apps/{app}`: an app's page in the frame.
async fn app_page(
    State(state): State<AppState>,
    Extension(apps): Extension<Apps>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> PageResult {
    let page = apps
        .find(&name)
        .and_then(|a| a.page())
        .ok_or_else(|| PageError::not_found(format!("no app page {name:?}")))?;
    let body = page.render(&state, &query.unwrap_or_default()).await?;
    framed(&apps, &name, &body)
}

/// How often a live region is re-rendered; it is sent only when it changed.
const LIVE_EVERY: Duration = Duration::from_secs(1);

/// A live region: the dashboard's own (`overview`, `jobs`) or an app page's (its name).
#[derive(Clone)]
struct Region {
    state: AppState,
    apps: Apps,
    name: String,
    query: String,
}

impl Region {
    async fn render(&self) -> Result<String, PageError> {
        let store: &Store = &self.state.store;
        Ok(match self.name.as_str() {
            "jobs" => {
                let query: JobsQuery = serde_urlencoded_query(&self.query)?;
                JobsLive {
                    jobs: view::jobs(store, &job_filter(&query, &self.state)?).await?,
                }
                .render()?
            }
            "overview" => OverviewLive {
                data: view::overview(store).await?,
            }
            .render()?,
            name => {
                let live = self
                    .apps
                    .find(name)
                    .and_then(|a| a.page())
                    .and_then(|p| p.live(&self.state, &self.query))
                    .ok_or_else(|| PageError::not_found(format!("no live region {name:?}")))?;
                live.await?
            }
        })
    }
}

/// Sends the region again each time it changed.
struct Changes {
    region: Region,
    last: String,
}

impl conveyor_web::sse::Poll for Changes {
    async fn poll(&mut self) -> Option<Vec<Event>> {
        let Ok(html) = self.region.render().await else {
            return Some(Vec::new());
        };
        if html == self.last {
            return Some(Vec::new());
        }
        self.last.clone_from(&html);
        Some(vec![Event::default().data(html)])
    }
}

async fn live(
    State(state): State<AppState>,
    Extension(apps): Extension<Apps>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, PageError> {
    let permit = state
        .stream_permit()
        .map_err(|e| PageError(e.status, e.detail))?;
    let region = Region {
        state,
        apps,
        name,
        query: query.unwrap_or_default(),
    };
    // The page came with the region rendered; send only changes from now on.
    let last = region.render().await?;
    Ok(conveyor_web::sse::polled(
        Changes { region, last },
        LIVE_EVERY,
        permit,
    ))
}
