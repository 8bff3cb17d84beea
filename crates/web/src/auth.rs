//! Who may use the operator's surface (the job API, the apps' management routes, the
//! dashboard, `/metrics`): holders of one of the `CONVEYOR_API_TOKEN` tokens.
//!
//! - API clients send `Authorization: Bearer <token>`; a missing or wrong one is a 401
//!   problem. Several tokens may be valid at once, so a token can be rotated without a gap.
//! - A browser logs in once on the dashboard's login page and then carries a session cookie:
//!   `<expiry>.<HMAC-SHA256 of the expiry>`, keyed by a key derived from the token. Any
//!   replica holding the same token accepts it (no session table), and removing the token
//!   ends its sessions. Log-out clears the browser's cookie; a copied cookie stays valid
//!   until it expires ([`SESSION_FOR`]) or its token is retired.
//! - Tokens are kept only as SHA-256 digests, compared in constant time (`subtle`), and
//!   never logged or printed (`Debug` shows how many there are).
//!
//! With no token set the surface is open ([`Auth::open`]): the binary allows that only on a
//! loopback address or with `--allow-anonymous`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "conveyor_session";
/// How long a dashboard session lasts.
pub const SESSION_FOR: Duration = Duration::from_secs(12 * 3600);
/// The shortest token accepted (a token is a password that cannot be rate-limited away).
pub const TOKEN_MIN_LEN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// One token, as kept: its digest (for bearer checks) and its session key.
struct Token {
    digest: [u8; 32],
    session_key: [u8; 32],
}

/// The valid tokens; none means open.
#[derive(Clone)]
pub struct Auth(Arc<[Token]>);

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.0.len())
            .finish()
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self::open()
    }
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

impl Auth {
    /// No token: every request passes.
    pub fn open() -> Self {
        Self(Arc::from(Vec::new()))
    }

    /// The comma-separated `tokens` (surrounding spaces ignored; an empty list is open).
    ///
    /// # Errors
    /// A token shorter than [`TOKEN_MIN_LEN`] or with characters other than printable
    /// ASCII (it travels in a header), naming its position, never its text.
    pub fn from_list(tokens: &str) -> Result<Self, String> {
        let mut kept = Vec::new();
        for (index, token) in tokens
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .enumerate()
        {
            if token.len() < TOKEN_MIN_LEN {
                return Err(format!(
                    "api_token: token {} is shorter than {TOKEN_MIN_LEN} characters \
                     (make one with `openssl rand -hex 24`)",
                    index + 1
                ));
            }
            if !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "api_token: token {} must be printable ASCII without spaces",
                    index + 1
                ));
            }
            kept.push(Token {
                digest: sha256(&[token.as_bytes()]),
                session_key: sha256(&[b"conveyor-dashboard-session\0", token.as_bytes()]),
            });
        }
        Ok(Self(Arc::from(kept)))
    }

    /// No token is set: everything passes.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `presented` is one of the tokens, in time independent of which (and of how
    /// much of it matches).
    pub fn is_token(&self, presented: &str) -> bool {
        let digest = sha256(&[presented.as_bytes()]);
        self.0
            .iter()
            .fold(subtle::Choice::from(0), |found, token| {
                found | token.digest.ct_eq(&digest)
            })
            .into()
    }

    /// Whether the request carries a valid bearer token or dashboard session.
    pub fn allows(&self, headers: &HeaderMap, now_ms: i64) -> bool {
        self.is_open()
            || bearer(headers).is_some_and(|t| self.is_token(t))
            || cookie(headers, SESSION_COOKIE).is_some_and(|c| self.is_session(c, now_ms))
    }

    /// A session cookie's value for a login at `now_ms` (signed with the first token's key;
    /// `None` when open).
    pub fn new_session(&self, now_ms: i64) -> Option<String> {
        let token = self.0.first()?;
        let expires = now_ms + SESSION_FOR.as_millis() as i64;
        let mac = mac(&token.session_key, expires).finalize().into_bytes();
        Some(format!("{expires}.{}", hex(&mac)))
    }

    /// Whether `value` is an unexpired session signed by one of the tokens.
    pub fn is_session(&self, value: &str, now_ms: i64) -> bool {
        let Some((expires, signature)) = value.split_once('.') else {
            return false;
        };
        let (Ok(expires), Some(signature)) = (expires.parse::<i64>(), unhex(signature)) else {
            return false;
        };
        if expires <= now_ms || expires > now_ms + SESSION_FOR.as_millis() as i64 {
            return false;
        }
        self.0.iter().any(|token| {
            mac(&token.session_key, expires)
                .verify_slice(&signature)
                .is_ok()
        })
    }
}

fn mac(key: &[u8; 32], expires: i64) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"v1.");
    mac.update(expires.to_string().as_bytes());
    mac
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

/// The bearer token of a request, if it sent one.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// The value of cookie `name`, if the request sent it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// 401 in problem+json, with the challenge a client needs.
pub fn unauthorized(detail: &str) -> Response {
    let mut response = ApiError::new(StatusCode::UNAUTHORIZED, detail).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"conveyor\""),
    );
    response
}

const MISSING: &str = "this route needs a token: send Authorization: Bearer <CONVEYOR_API_TOKEN>";
const WRONG: &str = "the token is not valid";

/// Middleware for API routes: passes a request with a valid token or session, answers 401
/// otherwise.
pub async fn require(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    if auth.allows(request.headers(), conveyor_queue::clock::now_ms()) {
        return next.run(request).await;
    }
    let presented = bearer(request.headers()).is_some();
    unauthorized(if presented { WRONG } else { MISSING })
}

/// Middleware for the dashboard's pages: like [`require`], but a browser asking for a page
/// is sent to the login page (and back here after it).
pub async fn require_page(State(auth): State<Auth>, request: Request, next: Next) -> Response {
    if auth.allows(request.headers(), conveyor_queue::clock::now_ms()) {
        return next.run(request).await;
    }
    let wants_html = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    if request.method() == Method::GET && wants_html {
        let next = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let target = format!("/login?next={}", url_encode(&next));
        return Redirect::to(&target).into_response();
    }
    unauthorized(MISSING)
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A `Set-Cookie` value for `session` (`None`: clear it): HttpOnly, SameSite=Strict, and
/// Secure when the browser came over TLS.
pub fn session_cookie(session: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = match session {
        Some(value) => format!(
            "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            SESSION_FOR.as_secs()
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).expect("the cookie is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbb";

    fn with(name: header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, value.parse().unwrap());
        headers
    }

    #[test]
    fn every_listed_token_is_valid_and_nothing_else() {
        let auth = Auth::from_list(&format!(" {A} , {B} ")).unwrap();
        assert!(auth.is_token(A) && auth.is_token(B));
        assert!(!auth.is_token("aaaaaaaaaaaaaaaaaaaaaaab") && !auth.is_token(""));
        let ok = with(header::AUTHORIZATION, &format!("Bearer {B}"));
        assert!(auth.allows(&ok, 0));
        let wrong = with(header::AUTHORIZATION, "Bearer nope");
        assert!(!auth.allows(&wrong, 0) && !auth.allows(&HeaderMap::new(), 0));
        assert!(Auth::open().allows(&HeaderMap::new(), 0));
        assert_eq!(format!("{auth:?}"), "Auth { tokens: 2 }");
    }

    #[test]
    fn short_or_odd_tokens_are_refused_without_echoing_them() {
        let error = Auth::from_list("short").unwrap_err();
        assert!(
            error.contains("16") && !error.contains("short\""),
            "{error}"
        );
        assert!(Auth::from_list("has a space in it, really").is_err());
        assert!(Auth::from_list(" , ").unwrap().is_open());
    }

    #[test]
    fn sessions_are_signed_expire_and_end_with_their_token() {
        let auth = Auth::from_list(A).unwrap();
        let session = auth.new_session(1_000).unwrap();
        assert!(auth.is_session(&session, 2_000));
        let later = 1_000 + SESSION_FOR.as_millis() as i64;
        assert!(!auth.is_session(&session, later), "expired");
        let (expires, signature) = session.split_once('.').unwrap();
        let stretched = format!("{}.{signature}", expires.parse::<i64>().unwrap() + 1);
        assert!(!auth.is_session(&stretched, 2_000), "the expiry is signed");
        let rotated = Auth::from_list(&format!("{B},{A}")).unwrap();
        assert!(
            rotated.is_session(&session, 2_000),
            "still valid while A is"
        );
        let retired = Auth::from_list(B).unwrap();
        assert!(!retired.is_session(&session, 2_000), "A retired");
        let headers = with(header::COOKIE, &format!("x=1; {SESSION_COOKIE}={session}"));
        assert!(auth.allows(&headers, 2_000));
    }

    #[test]
    fn cookies_carry_the_flags() {
        let set = session_cookie(Some("1.ab"), true);
        let set = set.to_str().unwrap();
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
        assert!(
            !session_cookie(None, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
        assert_eq!(
            url_encode("/jobs?state=failed&x"),
            "/jobs%3Fstate%3Dfailed%26x"
        );
    }
}
