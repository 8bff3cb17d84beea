//! The simulator API (default port 5001), as the course's simulator drives it: `latest` is
//! recorded before anything else, then the Basic credentials are checked, then the input.

use axum::Router;
use axum::body::Bytes;
use std::sync::{Arc, Mutex};

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::db::{self, Timeline};
use crate::{Minitwit, now_seconds};

/// `simulator:super_safe!`, the only credentials the simulator sends.
const SIMULATOR_AUTH: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";
/// How many results `?no=` gives when absent or not a number.
const DEFAULT_NO: i64 = 100;
/// The most any list returns, whatever `?no=` asks.
const MAX_NO: i64 = 10_000;

/// The API routes, `/metrics` among them.
pub fn router(app: Minitwit) -> Router {
    Router::new()
        .route("/latest", get(get_latest))
        .route("/register", axum::routing::post(register))
        .route("/msgs", get(all_messages))
        .route("/msgs/{username}", get(user_messages).post(post_message))
        .route("/fllws/{username}", get(follows).post(change_follow))
        .route("/metrics", get(crate::metrics))
        .route("/api/openapi.json", get(document))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            record_latest,
        ))
        .with_state(app)
}

/// The simulator API's OpenAPI document, `GET /api/openapi.json` on its own listener (its
/// routes live on another port than the job API's, so they have a document of their own).
async fn document() -> Response {
    axum::Json(<SimulatorDoc as utoipa::OpenApi>::openapi()).into_response()
}

/// The routes as the course's simulator uses them; the functions below only carry the
/// description (the handlers keep the original's loose parsing: `latest` and `no` that
/// are not integers are ignored, not refused).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "MiniTwit simulator API", description = "The ITU DevOps course's simulator API. Every request may carry `?latest=N`, recorded even when the request fails; the routes under /msgs and /fllws need `Authorization: Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh`."),
    paths(doc_latest, doc_register, doc_messages, doc_user_messages, doc_post_message, doc_follows, doc_change_follow),
    components(schemas(DocError, DocRegistration, DocMessage, DocNewMessage, DocFollows, DocFollowChange, DocLatest)),
    modifiers(&BasicAuth),
    tags((name = "minitwit-simulator", description = "MiniTwit's simulator API (seed 003)"))
)]
struct SimulatorDoc;

struct BasicAuth;

impl utoipa::Modify for BasicAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "simulator",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
            );
    }
}

/// An error: `{"status": 403, "error_msg": "..."}`.
#[derive(utoipa::ToSchema)]
#[schema(as = SimulatorError)]
#[allow(dead_code)]
struct DocError {
    status: u16,
    error_msg: String,
}

/// A registration; a missing field is the original's message for it.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DocRegistration {
    username: Option<String>,
    email: Option<String>,
    pwd: Option<String>,
}

/// A message as listed.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DocMessage {
    content: String,
    /// Unix seconds.
    pub_date: i64,
    user: String,
}

/// A message to post (at most 1,000 characters).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DocNewMessage {
    content: Option<String>,
}

/// Whom a user follows.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DocFollows {
    follows: Vec<String>,
}

/// Follow or unfollow a user: one of the two keys.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DocFollowChange {
    follow: Option<String>,
    unfollow: Option<String>,
}

/// The last `latest` recorded, -1 before any.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct DocLatest {
    latest: i64,
}

/// `?latest=` and `?no=` as the simulator sends them (strings: what is not an integer is
/// ignored).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DocList {
    /// The simulator's counter, recorded even if the request fails.
    latest: Option<String>,
    /// How many results: 0 to 10,000 (a 400 beyond); 100 when absent or not an integer.
    no: Option<String>,
}

/// `?latest=` alone.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct DocLatestParam {
    /// The simulator's counter, recorded even if the request fails.
    latest: Option<String>,
}

/// The last `latest` recorded.
#[utoipa::path(get, path = "/latest", tag = "minitwit-simulator", params(DocLatestParam),
    responses((status = 200, body = DocLatest), (status = 400, description = "A NUL character in the URL"),
        (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_latest() {}

/// Registers a user.
#[utoipa::path(post, path = "/register", tag = "minitwit-simulator", params(DocLatestParam), request_body = DocRegistration,
    responses((status = 204, description = "Registered"),
        (status = 400, description = "The original's message for the first problem", body = DocError),
        (status = 413, description = "A body over 64 KiB"), (status = 422, description = "A NUL character in the body"),
        (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_register() {}

/// Every user's messages, newest first (flagged ones hidden).
#[utoipa::path(get, path = "/msgs", tag = "minitwit-simulator", params(DocList), security(("simulator" = [])),
    responses((status = 200, body = [DocMessage]), (status = 400, description = "`no` beyond 10,000, or a NUL in the URL", body = DocError),
        (status = 403, body = DocError), (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_messages() {}

/// One user's messages, newest first.
#[utoipa::path(get, path = "/msgs/{username}", tag = "minitwit-simulator", params(("username" = String, Path), DocList), security(("simulator" = [])),
    responses((status = 200, body = [DocMessage]), (status = 400, description = "`no` beyond 10,000, or a NUL in the URL", body = DocError),
        (status = 403, body = DocError), (status = 404, description = "No such user", body = DocError),
        (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_user_messages() {}

/// Posts a message as the user.
#[utoipa::path(post, path = "/msgs/{username}", tag = "minitwit-simulator", params(("username" = String, Path), DocLatestParam), request_body = DocNewMessage, security(("simulator" = [])),
    responses((status = 204, description = "Posted"), (status = 400, description = "No content, too long, or not JSON", body = DocError),
        (status = 403, body = DocError), (status = 404, description = "No such user", body = DocError),
        (status = 413, description = "A body over 64 KiB"), (status = 422, description = "A NUL character in the body"),
        (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_post_message() {}

/// Whom the user follows.
#[utoipa::path(get, path = "/fllws/{username}", tag = "minitwit-simulator", params(("username" = String, Path), DocList), security(("simulator" = [])),
    responses((status = 200, body = DocFollows), (status = 400, description = "`no` beyond 10,000, or a NUL in the URL", body = DocError),
        (status = 403, body = DocError), (status = 404, description = "No such user", body = DocError),
        (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_follows() {}

/// Follows or unfollows another user.
#[utoipa::path(post, path = "/fllws/{username}", tag = "minitwit-simulator", params(("username" = String, Path), DocLatestParam), request_body = DocFollowChange, security(("simulator" = [])),
    responses((status = 204, description = "Done (unfollowing who is not followed too)"),
        (status = 400, description = "Neither key, or not JSON", body = DocError),
        (status = 403, body = DocError), (status = 404, description = "No such user or target", body = DocError),
        (status = 413, description = "A body over 64 KiB"), (status = 422, description = "A NUL character in the body"),
        (status = 503, description = "The database is out of reach", body = DocError)))]
#[allow(dead_code)]
fn doc_change_follow() {}

/// An API error in the simulator's shape, `{"status": 403, "error_msg": "..."}`: the
/// platform's [`conveyor_web::ApiError`] (its status, message and `Retry-After`, and its
/// handling of database errors), rendered as the course's clients read it.
#[derive(Debug)]
pub struct ApiError(conveyor_web::ApiError);

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: u16,
    error_msg: &'a str,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(conveyor_web::ApiError::new(status, message))
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self(conveyor_web::ApiError::bad_request(message))
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        Self(conveyor_web::ApiError::database(&error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let ApiError(error) = self;
        let body = ErrorBody {
            status: error.status.as_u16(),
            error_msg: &error.detail,
        };
        let mut response = (error.status, axum::Json(body)).into_response();
        if let Some(seconds) = error.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// A request's `?latest=N` (an integer other than -1), until it is recorded.
///
/// It must be recorded whatever the request's fate (403, 400, 404 included). Writes that
/// succeed record it in their own statement ([`LatestSlot::get`], then
/// [`LatestSlot::recorded`]); [`record_latest`] writes whatever is left once the handler
/// has answered, before the answer leaves. So each simulator write is one round trip to
/// PostgreSQL instead of two.
#[derive(Clone, Default)]
pub struct LatestSlot(Arc<Mutex<Option<i64>>>);

impl LatestSlot {
    /// The value still to record.
    fn get(&self) -> Option<i64> {
        *self.0.lock().expect("not poisoned")
    }

    /// The handler's own statement recorded it.
    fn recorded(&self) {
        *self.0.lock().expect("not poisoned") = None;
    }
}

/// Middleware around every API request: makes the [`LatestSlot`] and records what the
/// handler left in it.
async fn record_latest(State(app): State<Minitwit>, mut request: Request, next: Next) -> Response {
    let latest = request.uri().query().and_then(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .filter(|(key, _)| *key == "latest")
            .filter_map(|(_, value)| value.parse::<i64>().ok())
            .next_back()
    });
    let slot = LatestSlot(Arc::new(Mutex::new(latest.filter(|v| *v != -1))));
    request.extensions_mut().insert(slot.clone());
    let response = next.run(request).await;
    if let Some(value) = slot.get()
        && let Err(error) = db::set_latest(&app.store, value).await
    {
        return ApiError::from(error).into_response();
    }
    response
}

fn authorize(headers: &HeaderMap) -> ApiResult<()> {
    match headers.get(header::AUTHORIZATION) {
        Some(value) if value.as_bytes() == SIMULATOR_AUTH.as_bytes() => Ok(()),
        _ => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "You are not authorized to use this resource!",
        )),
    }
}

/// `?no=N`: how many results; 100 when absent or not an integer.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    no: Option<String>,
}

impl ListQuery {
    /// The count asked for: 100 when absent or not an integer (the course's clients rely
    /// on that), a 400 naming the range for an integer outside 0 to 10,000.
    fn limit(&self) -> ApiResult<i64> {
        match self.no.as_deref().map(str::parse::<i64>) {
            Some(Ok(n)) if (0..=MAX_NO).contains(&n) => Ok(n),
            Some(Ok(n)) => Err(ApiError::bad_request(format!(
                "no must be between 0 and {MAX_NO}, not {n}"
            ))),
            _ => Ok(DEFAULT_NO),
        }
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not the expected JSON: {e}")))
}

async fn user_id(app: &Minitwit, username: &str) -> ApiResult<i64> {
    match db::user_by_name(&app.store, username).await? {
        Some(user) => Ok(user.user_id),
        None => Err(unknown_user(username)),
    }
}

fn unknown_user(username: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("There is no user called {username:?}"),
    )
}

#[derive(Serialize)]
struct Latest {
    latest: i64,
}

async fn get_latest(State(app): State<Minitwit>) -> ApiResult<axum::Json<Latest>> {
    Ok(axum::Json(Latest {
        latest: db::latest(&app.store).await?,
    }))
}

/// `POST /register`.
#[derive(Debug, Deserialize)]
pub struct Registration {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    pwd: Option<String>,
}

async fn register(State(app): State<Minitwit>, body: Bytes) -> ApiResult<StatusCode> {
    let form: Registration = parse_body(&body)?;
    let username = form.username.unwrap_or_default();
    let email = form.email.unwrap_or_default();
    let password = form.pwd.unwrap_or_default();
    if let Some(error) = crate::registration_error(&username, &email, &password) {
        return Err(ApiError::bad_request(error));
    }
    match app.register(&username, &email, &password).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(taken) => Err(ApiError::bad_request(taken)),
    }
}

/// A message as the simulator reads it; the field order is the original's.
#[derive(Serialize)]
struct ApiMessage {
    content: String,
    pub_date: i64,
    user: String,
}

async fn messages(app: &Minitwit, which: Timeline, limit: i64) -> ApiResult<Response> {
    let rows = db::timeline(&app.store, which, limit, 0).await?;
    let body: Vec<ApiMessage> = rows
        .into_iter()
        .map(|m| ApiMessage {
            content: m.text,
            pub_date: m.pub_date,
            user: m.username,
        })
        .collect();
    Ok(axum::Json(body).into_response())
}

async fn all_messages(
    State(app): State<Minitwit>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    authorize(&headers)?;
    messages(&app, Timeline::Public, query.limit()?).await
}

async fn user_messages(
    State(app): State<Minitwit>,
    headers: HeaderMap,
    Path(username): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Response> {
    authorize(&headers)?;
    let id = user_id(&app, &username).await?;
    messages(&app, Timeline::User(id), query.limit()?).await
}

/// `POST /msgs/<u>`.
#[derive(Debug, Deserialize)]
pub struct NewMessage {
    content: Option<String>,
}

async fn post_message(
    State(app): State<Minitwit>,
    Extension(latest): Extension<LatestSlot>,
    headers: HeaderMap,
    Path(username): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    authorize(&headers)?;
    let message: NewMessage = parse_body(&body)?;
    let content = message
        .content
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::bad_request("You have to enter a message (\"content\")"))?;
    let chars = content.chars().count();
    if chars > app.settings.max_message_chars {
        return Err(ApiError::bad_request(format!(
            "A message may have at most {} characters, not {chars}",
            app.settings.max_message_chars
        )));
    }
    // The author is looked up by the insert itself: one statement, one commit.
    let posted =
        db::post_message(&app.store, latest.get(), &username, &content, now_seconds()).await?;
    latest.recorded();
    if !posted {
        return Err(unknown_user(&username));
    }
    metrics::counter!("minitwit_messages_posted_total").increment(1);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct Follows {
    follows: Vec<String>,
}

async fn follows(
    State(app): State<Minitwit>,
    headers: HeaderMap,
    Path(username): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<axum::Json<Follows>> {
    authorize(&headers)?;
    let id = user_id(&app, &username).await?;
    let follows = db::followed_names(&app.store, id, query.limit()?).await?;
    Ok(axum::Json(Follows { follows }))
}

/// `POST /fllws/<u>`: `{"follow": name}` or `{"unfollow": name}`.
#[derive(Debug, Deserialize)]
pub struct FollowChange {
    follow: Option<String>,
    unfollow: Option<String>,
}

async fn change_follow(
    State(app): State<Minitwit>,
    Extension(latest): Extension<LatestSlot>,
    headers: HeaderMap,
    Path(username): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    authorize(&headers)?;
    let change: FollowChange = parse_body(&body)?;
    let (follow, whom) = match (change.follow, change.unfollow) {
        (Some(name), _) => (true, name),
        (None, Some(name)) => (false, name),
        (None, None) => {
            return Err(ApiError::bad_request(
                "the body needs \"follow\" or \"unfollow\" with a username",
            ));
        }
    };
    let found = db::change_follow(&app.store, latest.get(), &username, &whom, follow).await?;
    latest.recorded();
    match found {
        (None, _) => Err(unknown_user(&username)),
        (_, None) => Err(unknown_user(&whom)),
        _ => Ok(StatusCode::NO_CONTENT),
    }
}
