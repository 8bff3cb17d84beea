//! # conveyor-minitwit: the ITU DevOps course's microblog
//!
//! Two listeners, because the course's two kinds of client both define `POST /register`:
//! - [`web`]: the pages (default port 5000), driven by browsers and the course's web tests;
//! - [`api`]: the simulator's JSON API (default port 5001), and `/metrics`.
//!
//! Both share [`Minitwit`]: the store (tables `minitwit_*`, migrated beside the engine's),
//! the password [`Hasher`] and the settings. [`db`] holds every statement; [`html`] the
//! MarkupSafe escaper the templates use; [`simulate`] replays the course's scenario file.
//! Nothing here uses the job queue: MiniTwit stands on the platform's store, HTTP and
//! metrics plumbing only.

pub mod api;
pub mod dashboard;
pub mod db;
pub mod html;
pub mod password;
pub mod simulate;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use conveyor_queue::Store;
pub use password::Hasher;

/// MiniTwit's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Longest message, in characters (default 1,000; the scenario's are at most 140).
    pub max_message_chars: usize,
    /// Days a login lasts (default 30).
    pub session_days: i64,
    /// Mark the session cookie `Secure` (default off: the pages are plain HTTP until a
    /// TLS proxy fronts them, and browsers drop `Secure` cookies over HTTP).
    pub secure_cookies: bool,
    /// The pages' origin as browsers reach it (`https://minitwit.example.org`), for the
    /// cross-site check; without it, the origin a trusted proxy forwards, else `Host`.
    pub public_origin: Option<String>,
    /// Proxies whose `X-Forwarded-*` headers are believed (loopback by default).
    pub proxies: conveyor_web::client::TrustedProxies,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_message_chars: 1000,
            session_days: 30,
            secure_cookies: false,
            public_origin: None,
            proxies: conveyor_web::client::TrustedProxies::default(),
        }
    }
}

/// What every MiniTwit handler reaches; cheap to clone.
#[derive(Clone)]
pub struct Minitwit {
    /// The store.
    pub store: Store,
    hasher: Arc<Hasher>,
    settings: Arc<Settings>,
}

impl Minitwit {
    /// MiniTwit over `store`.
    pub fn new(store: Store, hasher: Hasher, settings: Settings) -> Self {
        Self {
            store,
            hasher: Arc::new(hasher),
            settings: Arc::new(settings),
        }
    }

    /// Hashes off the async threads: argon2 is meant to be slow.
    async fn hash(&self, password: &str) -> String {
        let hasher = self.hasher.clone();
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hasher.hash(&password))
            .await
            .expect("hashing does not panic")
    }

    async fn verify(&self, password: &str, stored: &str) -> password::Verdict {
        let hasher = self.hasher.clone();
        let (password, stored) = (password.to_owned(), stored.to_owned());
        tokio::task::spawn_blocking(move || hasher.verify(&password, &stored))
            .await
            .expect("verifying does not panic")
    }

    /// Adds a user whose input already passed [`registration_error`]; the inner `Err` is
    /// the taken-name message.
    async fn register(
        &self,
        username: &str,
        email: &str,
        password: &str,
    ) -> sqlx::Result<Result<(), &'static str>> {
        const TAKEN: &str = "The username is already taken";
        // Checked before hashing, so a taken name costs no hash; the insert's conflict
        // clause settles a race between two registrations of one name.
        if db::user_by_name(&self.store, username).await?.is_some() {
            return Ok(Err(TAKEN));
        }
        let hash = self.hash(password).await;
        if db::add_user(&self.store, username, email, &hash).await? {
            metrics::counter!("minitwit_registrations_total").increment(1);
            Ok(Ok(()))
        } else {
            Ok(Err(TAKEN))
        }
    }
}

/// The first problem with a registration, in the original's order (the taken name is
/// checked last, against the database).
pub fn registration_error(username: &str, email: &str, password: &str) -> Option<&'static str> {
    if username.is_empty() {
        Some("You have to enter a username")
    } else if username.chars().any(char::is_control) || email.chars().any(char::is_control) {
        Some("The username and email address must not contain control characters")
    } else if email.is_empty() || !email.contains('@') {
        Some("You have to enter a valid email address")
    } else if password.is_empty() {
        Some("You have to enter a password")
    } else if username.chars().count() > 100 || email.chars().count() > 254 {
        Some("The username (at most 100 characters) or email address (254) is too long")
    } else {
        None
    }
}

/// Unix seconds.
pub fn now_seconds() -> i64 {
    conveyor_queue::clock::now_ms() / 1000
}

/// Applies MiniTwit's migrations (its tables beside the engine's).
///
/// # Errors
/// When a migration fails.
pub async fn migrate(store: &Store) -> conveyor_queue::Result<()> {
    store
        .migrate_with(
            sqlx::migrate!("./migrations/postgres"),
            sqlx::migrate!("./migrations/sqlite"),
        )
        .await
}

/// Largest request body either listener takes: a message is at most a few KiB.
const BODY_LIMIT: usize = 64 << 10;

/// Longest a page or API request may take.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The pages' router, with request metrics and logs.
pub fn web_router(app: Minitwit) -> Router {
    let proxies = app.settings.proxies.clone();
    finish(web::router(app), "minitwit-web", proxies)
}

/// The simulator API's router, with request metrics and logs.
pub fn api_router(app: Minitwit) -> Router {
    let proxies = app.settings.proxies.clone();
    finish(api::router(app), "minitwit-api", proxies)
}

fn finish(
    router: Router,
    listener: &'static str,
    proxies: conveyor_web::client::TrustedProxies,
) -> Router {
    // Installed before any request, or the first requests' metrics would be lost.
    conveyor_web::metrics::handle();
    let limits = conveyor_web::metrics::Limits {
        body: BODY_LIMIT,
        time: REQUEST_TIMEOUT,
        proxies,
    };
    conveyor_web::observed(router, listener, limits)
}

/// `GET /metrics` on the API listener: the process's metrics, MiniTwit's counts included.
async fn metrics(State(app): State<Minitwit>) -> Response {
    refresh_counts(&app.store).await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        conveyor_web::metrics::handle().render(),
    )
        .into_response()
}

async fn refresh_counts(store: &Store) {
    match db::counts(store).await {
        Ok((users, messages, follows)) => {
            metrics::gauge!("minitwit_users").set(users as f64);
            metrics::gauge!("minitwit_messages").set(messages as f64);
            metrics::gauge!("minitwit_follows").set(follows as f64);
        }
        Err(error) => tracing::warn!(%error, "minitwit: cannot count users and messages"),
    }
}

/// Keeps the count gauges fresh for the main `/metrics` too, every `every`.
pub async fn refresh_counts_every(store: Store, every: Duration) {
    loop {
        refresh_counts(&store).await;
        tokio::time::sleep(every).await;
    }
}

/// The app, as the binary lists it: no jobs, two listeners of its own (the course's clients
/// fix their ports and paths) and its count gauges.
pub struct MinitwitApp {
    /// Its settings.
    pub settings: Settings,
    /// The pages' address, if served.
    pub web: Option<std::net::SocketAddr>,
    /// The simulator API's address, if served.
    pub api: Option<std::net::SocketAddr>,
}

impl conveyor_web::app::App for MinitwitApp {
    fn name(&self) -> &'static str {
        "minitwit"
    }

    fn migrate<'a>(
        &'a self,
        store: &'a Store,
    ) -> futures_util::future::BoxFuture<'a, conveyor_queue::Result<()>> {
        Box::pin(migrate(store))
    }

    fn listeners(&self, store: &Store) -> Vec<conveyor_web::app::Listener> {
        let app = Minitwit::new(store.clone(), Hasher::standard(), self.settings.clone());
        let mut listeners = Vec::new();
        if let Some(address) = self.web {
            listeners.push(conveyor_web::app::Listener {
                address,
                router: web_router(app.clone()),
                what: "MiniTwit's pages",
            });
        }
        if let Some(address) = self.api {
            listeners.push(conveyor_web::app::Listener {
                address,
                router: api_router(app),
                what: "MiniTwit's simulator API",
            });
        }
        listeners
    }

    fn background(
        &self,
        state: &conveyor_web::AppState,
    ) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
        vec![Box::pin(refresh_counts_every(
            state.store.clone(),
            Duration::from_secs(10),
        ))]
    }

    fn page(&self) -> Option<&dyn conveyor_web::app::Page> {
        Some(self)
    }
}
