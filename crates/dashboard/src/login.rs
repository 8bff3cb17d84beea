//! The login page: a browser trades one of the operator's tokens for a session cookie
//! (`conveyor_web::auth`), and log-out clears it. Failed attempts are limited per client
//! address, so a token cannot be guessed at the server's speed.

use std::sync::LazyLock;

use askama::Template;
use axum::Form;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use conveyor_web::AppState;
use conveyor_web::auth::session_cookie;
use conveyor_web::client::ClientAddr;
use conveyor_web::limit::PerIp;
use serde::Deserialize;

/// Login attempts a second per client address (bursts of twice that).
const ATTEMPTS_PER_SECOND: u32 = 2;

static ATTEMPTS: LazyLock<PerIp> = LazyLock::new(|| PerIp::new(ATTEMPTS_PER_SECOND));

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    next: String,
    message: String,
    hours: u64,
}

/// Where to go after logging in.
#[derive(Debug, Deserialize)]
pub struct Next {
    #[serde(default)]
    next: String,
}

/// A path on this site only: anything else (`//evil.example`, `https://...`) becomes `/`.
fn local(next: &str) -> &str {
    let bytes = next.as_bytes();
    if bytes.first() == Some(&b'/') && bytes.get(1) != Some(&b'/') && bytes.get(1) != Some(&b'\\') {
        next
    } else {
        "/"
    }
}

fn page(status: StatusCode, next: &str, message: &str) -> Response {
    let page = LoginPage {
        next: local(next).to_owned(),
        message: message.to_owned(),
        hours: conveyor_web::auth::SESSION_FOR.as_secs() / 3600,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "the login page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET /login`.
pub async fn form(State(state): State<AppState>, Query(next): Query<Next>) -> Response {
    if state.settings.auth.is_open() {
        return Redirect::to(local(&next.next)).into_response();
    }
    page(StatusCode::OK, &next.next, "")
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct Login {
    token: String,
    #[serde(default)]
    next: String,
}

/// `POST /login`: a session cookie and back to `next`, or the form again with 401.
pub async fn submit(State(state): State<AppState>, request: Request) -> Response {
    let client = ClientAddr::of(request.extensions());
    let headers = request.headers().clone();
    let Ok(Form(login)) = Form::<Login>::from_request(request, &()).await else {
        return page(StatusCode::BAD_REQUEST, "/", "Send the form's token field.");
    };
    let auth = &state.settings.auth;
    if auth.is_open() {
        return Redirect::to(local(&login.next)).into_response();
    }
    if ATTEMPTS.take(client.ip).is_err() {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            &login.next,
            "Too many attempts from your address; wait a second.",
        );
    }
    if !auth.is_token(login.token.trim()) {
        tracing::warn!(client_ip = %client.ip, "dashboard login with a wrong token");
        return page(
            StatusCode::UNAUTHORIZED,
            &login.next,
            "That token is not valid.",
        );
    }
    let now = conveyor_queue::clock::now_ms();
    let session = auth.new_session(now);
    let mut response = Redirect::to(local(&login.next)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(session.as_deref(), client.https(&headers)),
    );
    response
}

/// `POST /logout`: clears the session cookie.
pub async fn logout(request: Request) -> Response {
    let client = ClientAddr::of(request.extensions());
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(None, client.https(request.headers())),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::local;

    #[test]
    fn only_local_paths_are_followed() {
        assert_eq!(local("/jobs?state=failed"), "/jobs?state=failed");
        for bad in [
            "//evil.example",
            "https://evil.example",
            "/\\evil",
            "",
            "jobs",
        ] {
            assert_eq!(local(bad), "/", "{bad}");
        }
    }
}
