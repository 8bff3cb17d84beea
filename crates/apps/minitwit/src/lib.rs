//! # conveyor-minitwit: the ITU DevOps course's microblog
//!
//! Two listeners, because the course's two kinds of client both define `POST /register`:
//! - [`web`]: the pages (default port 5000), driven by browsers and the course's web tests;
//! - [`cli`]: `conveyor minitwit simulate|seed|flag`.
//! - [`api`]: the simulator's JSON API (default port 5001), and `/metrics`.
//!
//! Both share [`Minitwit`]: the store (tables `minitwit_*`, migrated beside the engine's),
//! the password [`Hasher`] and the settings. [`db`] holds every statement; [`html`] the
//! MarkupSafe escaper the templates use; [`simulate`] replays the course's scenario file.
//! Nothing here uses the job queue: MiniTwit stands on the platform's store, HTTP and
//! metrics plumbing only.

pub mod api;
pub mod cli;
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
/// fix their ports and paths) and its count gauges. Unconfigured, it serves no listener.
#[derive(Default)]
pub struct MinitwitApp {
    /// Its settings.
    pub settings: Settings,
    /// The pages' address, if served.
    pub web: Option<std::net::SocketAddr>,
    /// The simulator API's address, if served.
    pub api: Option<std::net::SocketAddr>,
}

/// MiniTwit's settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "minitwit_settings")]
#[command(next_help_heading = "MiniTwit settings")]
pub struct Flags {
    /// MiniTwit's web pages: an address, or "off"
    #[arg(long, env = "MINITWIT_WEB", default_value = "127.0.0.1:5000")]
    pub minitwit_web: String,
    /// MiniTwit's simulator API: an address, or "off"
    #[arg(long, env = "MINITWIT_API", default_value = "127.0.0.1:5001")]
    pub minitwit_api: String,
    /// Mark MiniTwit's session cookie Secure (behind TLS)
    #[arg(long, env = "MINITWIT_SECURE_COOKIES", default_value_t = false, action = clap::ArgAction::Set)]
    pub minitwit_secure_cookies: bool,
    /// MiniTwit's pages as browsers reach them (https://minitwit.example.org), for its
    /// cross-site check [default: from a trusted proxy's X-Forwarded-* headers, else Host]
    #[arg(long, env = "MINITWIT_PUBLIC_URL")]
    pub minitwit_public_url: Option<String>,
}

/// An address, or `None` for "off".
fn optional_address(
    name: &str,
    text: &str,
) -> conveyor_web::fail::Result<Option<std::net::SocketAddr>> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!("{name} must be an address like 127.0.0.1:5000, or off, not {text:?}").into()
    })
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

    fn settings(&self, command: clap::Command) -> clap::Command {
        <Flags as clap::Args>::augment_args(command)
    }

    fn configure(
        &mut self,
        matches: &clap::ArgMatches,
        platform: &conveyor_web::app::Platform,
    ) -> conveyor_web::fail::Result<()> {
        use clap::FromArgMatches;
        let flags = Flags::from_arg_matches(matches)?;
        let public_origin = match flags.minitwit_public_url.as_deref() {
            None | Some("") => None,
            Some(url) => Some(
                conveyor_web::client::normalize_origin(url)
                    .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
                    .ok_or_else(|| {
                        format!(
                            "minitwit_public_url must be an http(s) URL like \
                             https://minitwit.example.org, not {url:?}"
                        )
                    })?,
            ),
        };
        self.web = optional_address("minitwit_web", &flags.minitwit_web)?;
        self.api = optional_address("minitwit_api", &flags.minitwit_api)?;
        self.settings = Settings {
            secure_cookies: flags.minitwit_secure_cookies,
            public_origin,
            proxies: platform.proxies.clone(),
            ..Settings::default()
        };
        Ok(())
    }

    fn commands(&self) -> Vec<(conveyor_web::app::Mount, clap::Command)> {
        vec![(
            conveyor_web::app::Mount::Top,
            conveyor_web::app::command_of::<cli::MinitwitCommand>(
                "minitwit",
                "MiniTwit's tools: replay a simulator scenario, seed, flag messages",
            ),
        )]
    }

    fn run<'a>(
        &'a self,
        _mount: conveyor_web::app::Mount,
        _name: &'a str,
        matches: &'a clap::ArgMatches,
        platform: &'a conveyor_web::app::Platform,
    ) -> futures_util::future::BoxFuture<'a, conveyor_web::fail::Result<()>> {
        use clap::FromArgMatches;
        Box::pin(async move {
            cli::run(platform, cli::MinitwitCommand::from_arg_matches(matches)?).await
        })
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;
    use conveyor_web::app::{App, Platform};

    fn configured(args: &[&str]) -> conveyor_web::fail::Result<MinitwitApp> {
        let mut app = MinitwitApp::default();
        let command = app.settings(clap::Command::new("up").no_binary_name(true));
        let matches = command.try_get_matches_from(args)?;
        app.configure(&matches, &Platform::default())?;
        Ok(app)
    }

    #[test]
    fn listeners_default_to_the_courses_ports_can_be_off_and_bad_addresses_are_named() {
        let app = configured(&[]).unwrap();
        assert_eq!(
            app.web,
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 5000)))
        );
        assert_eq!(
            app.api,
            Some(std::net::SocketAddr::from(([127, 0, 0, 1], 5001)))
        );
        assert_eq!(configured(&["--minitwit-web", "off"]).unwrap().web, None);
        let error = configured(&["--minitwit-api", "localhost"])
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("minitwit_api"), "{error}");
    }
}
