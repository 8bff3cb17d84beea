//! The web pages (default port 5000), as the course's web tests drive them: sessions in an
//! HttpOnly cookie, one-shot flash messages, MarkupSafe escaping, 30 messages per page.

use askama::Template;
use axum::Router;
use axum::extract::{Form, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use rand::RngCore;
use serde::Deserialize;

use conveyor_web::auth::cookie;
use conveyor_web::client::{ClientAddr, normalize_origin};

use crate::db::{self, Timeline, User};
use crate::html::{gravatar, percent_decode, percent_encode};
use crate::password::Verdict;
use crate::{Minitwit, now_seconds};

/// Messages per timeline page, as the original.
pub const PER_PAGE: i64 = 30;
const SESSION_COOKIE: &str = "minitwit_session";
const FLASH_COOKIE: &str = "minitwit_flash";

/// The page routes.
pub fn router(app: Minitwit) -> Router {
    Router::new()
        .route("/", get(my_timeline))
        .route("/public", get(public_timeline))
        .route("/static/style.css", get(stylesheet))
        .route("/login", get(login_form).post(login))
        .route("/register", get(register_form).post(register))
        .route("/logout", get(logout))
        .route("/add_message", post(add_message))
        .route("/{username}", get(user_timeline))
        .route("/{username}/follow", get(follow))
        .route("/{username}/unfollow", get(unfollow))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            same_origin_writes,
        ))
        .with_state(app)
}

/// What went wrong while serving a page.
#[derive(Debug)]
pub enum PageError {
    /// 401: the action needs a logged-in user.
    Unauthorized,
    /// 404.
    NotFound(String),
    /// 400.
    BadRequest(String),
    /// 500: logged, not shown.
    Internal(String),
}

impl From<sqlx::Error> for PageError {
    fn from(error: sqlx::Error) -> Self {
        Self::Internal(format!("database: {error}"))
    }
}

impl From<askama::Error> for PageError {
    fn from(error: askama::Error) -> Self {
        Self::Internal(format!("template: {error}"))
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, text) = match self {
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized: please sign in".into(),
            ),
            Self::NotFound(what) => (StatusCode::NOT_FOUND, what),
            Self::BadRequest(what) => (StatusCode::BAD_REQUEST, what),
            Self::Internal(error) => {
                tracing::error!(%error, "minitwit page failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Internal error".into())
            }
        };
        let body = format!(
            "<!doctype html><title>{} | MiniTwit</title><h1>{}</h1><p>{}</p>",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            escape(&text)
        );
        (status, Html(body)).into_response()
    }
}

fn escape(text: &str) -> String {
    let mut out = String::new();
    let _ = askama::filters::Escaper::write_escaped_str(&crate::html::MarkupSafe, &mut out, text);
    out
}

type PageResult = Result<Response, PageError>;

/// Refuses state-changing requests that a browser says come from another site. The course's
/// tests post plain forms without tokens and without an `Origin`, so only what a browser
/// marks as cross-site is refused: an `Origin` other than this site's public origin, or
/// `Sec-Fetch-Site: cross-site`. The public origin is [`crate::Settings::public_origin`]
/// when set, else what a trusted proxy forwarded (`X-Forwarded-Proto`, `-Host`, `-Port`),
/// else `Host` (see `conveyor_web::client`). Follow and unfollow are GETs in the original
/// and count as writes here.
async fn same_origin_writes(State(app): State<Minitwit>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let writes = request.method() != Method::GET && request.method() != Method::HEAD
        || path.ends_with("/follow")
        || path.ends_with("/unfollow")
        || path == "/logout";
    if writes {
        let client = ClientAddr::of(request.extensions());
        let site = match &app.settings.public_origin {
            Some(origin) => Some(origin.clone()),
            None => client.public_origin(request.headers()),
        };
        if is_cross_site(request.headers(), site.as_deref()) {
            return (
                StatusCode::FORBIDDEN,
                "cross-site request refused: the Origin does not match this site",
            )
                .into_response();
        }
    }
    next.run(request).await
}

fn is_cross_site(headers: &HeaderMap, site: Option<&str>) -> bool {
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    match (normalize_origin(origin), site) {
        (Some(origin), Some(site)) => origin != site,
        _ => true,
    }
}

/// The visitor: who is logged in (if anyone) and the flash messages waiting for them.
pub struct Visitor {
    me: Option<User>,
    token: Option<String>,
    flashes: Vec<String>,
}

impl FromRequestParts<Minitwit> for Visitor {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, app: &Minitwit) -> Result<Self, PageError> {
        let token = cookie(&parts.headers, SESSION_COOKIE).map(str::to_owned);
        let me = match &token {
            Some(token) => db::session_user(&app.store, token, now_seconds() * 1000).await?,
            None => None,
        };
        let flashes = cookie(&parts.headers, FLASH_COOKIE)
            .and_then(percent_decode)
            .map(|all| {
                all.split('\n')
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self { me, token, flashes })
    }
}

impl Visitor {
    fn user(&self) -> Result<&User, PageError> {
        self.me.as_ref().ok_or(PageError::Unauthorized)
    }

    /// A rendered page; shown flashes are spent, so their cookie is cleared.
    fn page(&self, html: String) -> Response {
        let mut response = Html(html).into_response();
        if !self.flashes.is_empty() {
            set_cookie(&mut response, FLASH_COOKIE, "", Some(0), false);
        }
        response
    }
}

fn set_cookie(
    response: &mut Response,
    name: &str,
    value: &str,
    max_age: Option<i64>,
    secure: bool,
) {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(seconds) = max_age {
        cookie.push_str(&format!("; Max-Age={seconds}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A 302 to `to` carrying one flash message for the next page.
fn redirect_with_flash(to: &str, flash: Option<&str>) -> Response {
    let mut response = redirect(to);
    if let Some(text) = flash {
        set_cookie(
            &mut response,
            FLASH_COOKIE,
            &percent_encode(text),
            None,
            false,
        );
    }
    response
}

fn redirect(to: &str) -> Response {
    let location = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/"));
    (StatusCode::FOUND, [(header::LOCATION, location)]).into_response()
}

/// `?p=2`: the page of a timeline, from 1.
#[derive(Debug, Deserialize)]
pub struct PageQuery {
    p: Option<String>,
}

impl PageQuery {
    fn page(&self) -> Result<i64, PageError> {
        match self.p.as_deref() {
            None | Some("") => Ok(1),
            Some(text) => text
                .parse::<i64>()
                .ok()
                .filter(|p| (1..=1_000_000).contains(p))
                .ok_or_else(|| {
                    PageError::BadRequest(format!(
                        "p must be a page number from 1 to 1000000, not {text:?}"
                    ))
                }),
        }
    }
}

/// A message as a timeline shows it.
struct MessageView {
    username: String,
    path: String,
    avatar: String,
    text: String,
    when: String,
}

/// The owner of a user timeline.
struct Profile {
    user_id: i64,
    username: String,
    path: String,
}

#[derive(Template)]
#[template(path = "timeline.html")]
struct TimelinePage<'a> {
    me: &'a Option<User>,
    flashes: &'a [String],
    public: bool,
    profile: Option<Profile>,
    followed: bool,
    messages: Vec<MessageView>,
    page: i64,
    more: bool,
    max_message: usize,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    me: &'a Option<User>,
    flashes: &'a [String],
    error: Option<&'a str>,
    username: &'a str,
}

#[derive(Template)]
#[template(path = "register.html")]
struct RegisterPage<'a> {
    me: &'a Option<User>,
    flashes: &'a [String],
    error: Option<&'a str>,
    username: &'a str,
    email: &'a str,
}

async fn render_timeline(
    app: &Minitwit,
    visitor: &Visitor,
    which: Timeline,
    profile: Option<Profile>,
    followed: bool,
    page: i64,
) -> PageResult {
    // One more than a page tells whether an older page exists.
    let mut rows = db::timeline(&app.store, which, PER_PAGE + 1, (page - 1) * PER_PAGE).await?;
    let more = rows.len() as i64 > PER_PAGE;
    rows.truncate(PER_PAGE as usize);
    let messages = rows
        .into_iter()
        .map(|m| MessageView {
            path: percent_encode(&m.username),
            avatar: gravatar(&m.email, 48),
            when: chrono::DateTime::from_timestamp(m.pub_date, 0)
                .map(|t| t.format("%Y-%m-%d @ %H:%M").to_string())
                .unwrap_or_default(),
            username: m.username,
            text: m.text,
        })
        .collect();
    let html = TimelinePage {
        me: &visitor.me,
        flashes: &visitor.flashes,
        public: matches!(which, Timeline::Public),
        profile,
        followed,
        messages,
        page,
        more,
        max_message: app.settings.max_message_chars,
    }
    .render()?;
    Ok(visitor.page(html))
}

async fn my_timeline(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let Some(me) = &visitor.me else {
        return Ok(redirect("/public"));
    };
    let which = Timeline::Personal(me.user_id);
    render_timeline(&app, &visitor, which, None, false, query.page()?).await
}

async fn public_timeline(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Query(query): Query<PageQuery>,
) -> PageResult {
    render_timeline(&app, &visitor, Timeline::Public, None, false, query.page()?).await
}

async fn user_timeline(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Path(username): Path<String>,
    Query(query): Query<PageQuery>,
) -> PageResult {
    let page = query.page()?;
    let user = known_user(&app, &username).await?;
    let followed = match &visitor.me {
        Some(me) if me.user_id != user.user_id => {
            db::follows(&app.store, me.user_id, user.user_id).await?
        }
        _ => false,
    };
    let profile = Profile {
        user_id: user.user_id,
        path: percent_encode(&user.username),
        username: user.username,
    };
    let which = Timeline::User(profile.user_id);
    render_timeline(&app, &visitor, which, Some(profile), followed, page).await
}

async fn known_user(app: &Minitwit, username: &str) -> Result<User, PageError> {
    db::user_by_name(&app.store, username)
        .await?
        .ok_or_else(|| PageError::NotFound(format!("There is no user called {username:?}")))
}

async fn follow(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Path(username): Path<String>,
) -> PageResult {
    change_follow(&app, &visitor, &username, true).await
}

async fn unfollow(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Path(username): Path<String>,
) -> PageResult {
    change_follow(&app, &visitor, &username, false).await
}

/// `/<user>/follow` and `/<user>/unfollow`: 401 logged out, 404 unknown, else a 302 back to
/// the user's page with the original's flash.
async fn change_follow(
    app: &Minitwit,
    visitor: &Visitor,
    username: &str,
    follow: bool,
) -> PageResult {
    let me = visitor.user()?;
    let whom = known_user(app, username).await?;
    let flash = if follow {
        db::follow(&app.store, me.user_id, whom.user_id).await?;
        format!("You are now following \"{}\"", whom.username)
    } else {
        db::unfollow(&app.store, me.user_id, whom.user_id).await?;
        format!("You are no longer following \"{}\"", whom.username)
    };
    Ok(redirect_with_flash(
        &format!("/{}", percent_encode(&whom.username)),
        Some(&flash),
    ))
}

/// The message form.
#[derive(Debug, Deserialize)]
pub struct MessageForm {
    #[serde(default)]
    text: String,
}

async fn add_message(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Form(form): Form<MessageForm>,
) -> PageResult {
    let me = visitor.user()?;
    if form.text.is_empty() {
        return Ok(redirect("/"));
    }
    let chars = form.text.chars().count();
    if chars > app.settings.max_message_chars {
        return Err(PageError::BadRequest(format!(
            "A message may have at most {} characters, not {chars}",
            app.settings.max_message_chars
        )));
    }
    db::add_message(&app.store, me.user_id, &form.text, now_seconds()).await?;
    metrics::counter!("minitwit_messages_posted_total").increment(1);
    Ok(redirect_with_flash("/", Some("Your message was recorded")))
}

async fn login_form(visitor: Visitor) -> PageResult {
    if visitor.me.is_some() {
        return Ok(redirect("/"));
    }
    let html = LoginPage {
        me: &visitor.me,
        flashes: &visitor.flashes,
        error: None,
        username: "",
    }
    .render()?;
    Ok(visitor.page(html))
}

/// The login form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

async fn login(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Form(form): Form<LoginForm>,
) -> PageResult {
    if visitor.me.is_some() {
        return Ok(redirect("/"));
    }
    let error = match db::credentials(&app.store, &form.username).await? {
        None => Some("Invalid username"),
        Some((user_id, stored)) => match app.verify(&form.password, &stored).await {
            Verdict::Wrong => Some("Invalid password"),
            verdict => {
                if verdict == Verdict::RightButOutdated {
                    let fresh = app.hash(&form.password).await;
                    db::set_password_hash(&app.store, user_id, &fresh).await?;
                }
                return start_session(&app, user_id).await;
            }
        },
    };
    let html = LoginPage {
        me: &visitor.me,
        flashes: &visitor.flashes,
        error,
        username: &form.username,
    }
    .render()?;
    Ok(visitor.page(html))
}

async fn start_session(app: &Minitwit, user_id: i64) -> PageResult {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let lifetime = app.settings.session_days * 86_400;
    db::add_session(
        &app.store,
        &token,
        user_id,
        (now_seconds() + lifetime) * 1000,
    )
    .await?;
    let mut response = redirect_with_flash("/", Some("You were logged in"));
    set_cookie(
        &mut response,
        SESSION_COOKIE,
        &token,
        Some(lifetime),
        app.settings.secure_cookies,
    );
    Ok(response)
}

async fn logout(State(app): State<Minitwit>, visitor: Visitor) -> PageResult {
    if let Some(token) = &visitor.token {
        db::end_session(&app.store, token, now_seconds() * 1000).await?;
    }
    let mut response = redirect_with_flash("/public", Some("You were logged out"));
    set_cookie(
        &mut response,
        SESSION_COOKIE,
        "",
        Some(0),
        app.settings.secure_cookies,
    );
    Ok(response)
}

async fn register_form(visitor: Visitor) -> PageResult {
    if visitor.me.is_some() {
        return Ok(redirect("/"));
    }
    let html = RegisterPage {
        me: &visitor.me,
        flashes: &visitor.flashes,
        error: None,
        username: "",
        email: "",
    }
    .render()?;
    Ok(visitor.page(html))
}

/// The sign-up form.
#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    password2: String,
}

async fn register(
    State(app): State<Minitwit>,
    visitor: Visitor,
    Form(form): Form<RegisterForm>,
) -> PageResult {
    if visitor.me.is_some() {
        return Ok(redirect("/"));
    }
    let mut error = crate::registration_error(&form.username, &form.email, &form.password)
        .map(str::to_owned)
        .or_else(|| {
            (form.password != form.password2).then(|| "The two passwords do not match".to_owned())
        });
    if error.is_none() {
        match app
            .register(&form.username, &form.email, &form.password)
            .await?
        {
            Ok(()) => {
                return Ok(redirect_with_flash(
                    "/login",
                    Some("You were successfully registered and can login now"),
                ));
            }
            Err(taken) => error = Some(taken.to_owned()),
        }
    }
    let html = RegisterPage {
        me: &visitor.me,
        flashes: &visitor.flashes,
        error: error.as_deref(),
        username: &form.username,
        email: &form.email,
    }
    .render()?;
    Ok(visitor.page(html))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../static/style.css"),
    )
}
