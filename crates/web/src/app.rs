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

/// An error of an app's setup, for the binary to report with its context.
pub type SetupError = Box<dyn std::error::Error + Send + Sync>;

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
