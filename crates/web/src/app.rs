//! [`App`]: the one interface through which an app brings everything it has to a process,
//! as a bevy `Plugin` does: its tables, its job kinds (public or internal), its schedules,
//! its routes (public and guarded), the listeners of its own, the background tasks an
//! HTTP process runs for it and its dashboard page. The binary keeps a list of apps, one line each, and assembles
//! a process from the list without knowing what any of them holds (`crates/conveyor/src/app.rs`).
//!
//! Every method but [`App::name`] and [`App::migrate`] has a default that brings nothing,
//! so an app implements only what it has.

use std::net::SocketAddr;

use axum::Router;
use conveyor_queue::{Registry, Schedule, Store};
use futures_util::future::BoxFuture;

use crate::page::PageError;
use crate::{AppState, Surface};

/// An error of an app's setup or command, for the binary to report with its context.
pub type SetupError = crate::fail::Error;

/// What the platform's settings tell every app, and what an app's command may ask of the
/// platform: a database and an HTTP client for a Conveyor server.
#[derive(Debug, Clone, Default)]
pub struct Platform {
    /// The operator's tokens (mining's gate accepts them beside its keys).
    pub auth: crate::auth::Auth,
    /// Proxies whose forwarded headers are believed (MiniTwit's origin check).
    pub proxies: crate::client::TrustedProxies,
    /// The token a command sends to a server (the first of `CONVEYOR_API_TOKEN`'s).
    pub api_token: Option<secrecy::SecretString>,
    /// The database.
    pub database_url: String,
    /// Its connection settings.
    pub store_options: conveyor_queue::StoreOptions,
}

impl Platform {
    /// Connects to the database and applies the engine's migrations (a command applies
    /// its app's own with [`App::migrate`]).
    ///
    /// # Errors
    /// When the database is unreachable or a migration fails.
    pub async fn store(&self) -> crate::fail::Result<Store> {
        use crate::fail::Context;
        let store = Store::connect_with(&self.database_url, &self.store_options)
            .await
            .with_context(|| format!("connecting to {}", redact(&self.database_url)))?;
        store.migrate().await.context("applying migrations")?;
        Ok(store)
    }

    /// An HTTP client for a Conveyor server's guarded routes: it sends the token, if set, as
    /// `Authorization: Bearer` (marked sensitive, so reqwest never shows it).
    ///
    /// # Errors
    /// When the token cannot be a header or the client cannot be built.
    pub fn api_client(&self, timeout: std::time::Duration) -> crate::fail::Result<reqwest::Client> {
        use secrecy::ExposeSecret;
        crate::install_tls_provider();
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(token) = &self.api_token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!(
                "Bearer {}",
                token.expose_secret()
            ))
            .map_err(|_| "api_token: not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        Ok(reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(headers)
            .build()?)
    }
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// An app's command `name` whose subcommands are `S`'s (`conveyor average run`). The
/// `about` is set after the derive's, which would otherwise take `S`'s doc comment.
pub fn command_of<S: clap::Subcommand>(name: &'static str, about: &'static str) -> clap::Command {
    S::augment_subcommands(clap::Command::new(name).subcommand_required(true)).about(about)
}

/// An app's command `name` whose arguments are `A`'s (`conveyor bench mining --path`).
pub fn command_with<A: clap::Args>(name: &'static str, about: &'static str) -> clap::Command {
    A::augment_args(clap::Command::new(name)).about(about)
}

/// Where an app's command goes on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// `conveyor <command>` (`conveyor average run`, `conveyor fake-github`).
    Top,
    /// `conveyor bench <command>`: a benchmark.
    Bench,
    /// `conveyor load <command>`: a load test against a running server.
    Load,
}

/// A listener of an app's own (MiniTwit's pages and simulator API have fixed ports of
/// their clients'), served by the binary beside the main one.
pub struct Listener {
    /// Where to listen.
    pub address: SocketAddr,
    /// What to serve there (with its own middleware).
    pub router: Router,
    /// What it is, for messages ("MiniTwit's pages").
    pub what: &'static str,
}

/// A background task that runs `tick` every `period` until dropped, logging a failed tick
/// (naming `what`) and going on: the shape of every gauge an app reads from the database.
pub fn every<F, Fut, E>(
    period: std::time::Duration,
    what: &'static str,
    mut tick: F,
) -> BoxFuture<'static, ()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), E>> + Send,
    E: std::fmt::Display,
{
    Box::pin(async move {
        loop {
            if let Err(error) = tick().await {
                tracing::warn!(%error, "cannot read {what}");
            }
            tokio::time::sleep(period).await;
        }
    })
}

/// What an app brings to a process.
pub trait App: Send + Sync {
    /// A short lower-case name (`average`): logs, messages, its dashboard page.
    fn name(&self) -> &'static str;

    /// Applies the app's migrations to `store` (its tables beside the engine's).
    fn migrate<'a>(&'a self, store: &'a Store) -> BoxFuture<'a, conveyor_queue::Result<()>>;

    /// Prepares what the app needs in the database before any role starts (mining's
    /// indexer rows).
    fn prepare<'a>(&'a self, _store: &'a Store) -> BoxFuture<'a, Result<(), SetupError>> {
        Box::pin(async { Ok(()) })
    }

    /// Registers the app's job kinds: `register_public` for what the job API may enqueue,
    /// `register` for the app's own pipeline.
    fn register(&self, _registry: &mut Registry) {}

    /// The app's periodic schedules.
    ///
    /// # Errors
    /// A schedule whose expression does not parse.
    fn schedules(&self) -> Result<Vec<Schedule>, conveyor_queue::Error> {
        Ok(Vec::new())
    }

    /// The app's routes on the main listener, public and guarded.
    fn routes(&self, _store: &Store) -> Surface {
        Surface::default()
    }

    /// The app's own listeners (bound by the binary, which names the app when that fails).
    fn listeners(&self, _store: &Store) -> Vec<Listener> {
        Vec::new()
    }

    /// Tasks an HTTP process runs for the app until shutdown (a snapshot kept fresh,
    /// gauges read from the database); each runs until it is dropped.
    fn background(&self, _state: &AppState) -> Vec<BoxFuture<'static, ()>> {
        Vec::new()
    }

    /// The app's dashboard page (`/apps/<name>`, in the dashboard's navigation), if any.
    fn page(&self) -> Option<&dyn Page> {
        None
    }

    /// The app's section of the settings: arguments, each with its environment variable,
    /// added to the commands that run the app (`up`, `serve`, `work`) and to its own. A
    /// config file's values reach them as defaults (below the environment and flags).
    fn settings(&self, command: clap::Command) -> clap::Command {
        command
    }

    /// Takes the app's settings from a command line that [`App::settings`] extended.
    ///
    /// # Errors
    /// Naming the setting that is out of range or unusable.
    fn configure(
        &mut self,
        _matches: &clap::ArgMatches,
        _platform: &Platform,
    ) -> crate::fail::Result<()> {
        Ok(())
    }

    /// The app's own commands, each with where it goes (configured before it runs).
    fn commands(&self) -> Vec<(Mount, clap::Command)> {
        Vec::new()
    }

    /// Runs the app's command `name` (one of [`App::commands`]) with its arguments.
    fn run<'a>(
        &'a self,
        _mount: Mount,
        name: &'a str,
        _matches: &'a clap::ArgMatches,
        _platform: &'a Platform,
    ) -> BoxFuture<'a, crate::fail::Result<()>> {
        Box::pin(async move { Err(format!("{} has no command {name:?}", self.name()).into()) })
    }
}

/// An app's dashboard page: HTML that the dashboard puts in its frame (layout, navigation,
/// the script that sends forms to the API and keeps live regions fresh).
pub trait Page: Send + Sync {
    /// The page's content, from its query string (its filters).
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        query: &'a str,
    ) -> BoxFuture<'a, Result<String, PageError>>;

    /// The page's live region (an element with `data-live="/dashboard/live/<name>/events"`),
    /// re-rendered every second and sent when it changed; `None` when the page has none.
    fn live<'a>(
        &'a self,
        _state: &'a AppState,
        _query: &'a str,
    ) -> Option<BoxFuture<'a, Result<String, PageError>>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://conveyor.db"), "sqlite://conveyor.db");
    }
}
