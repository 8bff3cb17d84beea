//! # conveyor-mining: the Frege repository-mining pipeline
//!
//! Seed `000`: indexers discover repositories on code hosts; a processor clones each one,
//! lists its files and starts analysis of every file with an analyzer as one engine group;
//! analyzers compute per-file code metrics; the group's continuation removes the clone,
//! exactly once. Results are served over REST and a live stream.
//!
//! ## Layout (reading order)
//! - [`indexer`]: the [`indexer::Indexer`] trait and the GitHub, GitLab, Bitbucket and list
//!   indexers (no SQL, no queue).
//! - [`analyzer`]: the [`analyzer::Analyzer`] trait, tokei, rust-code-analysis, commit
//!   messages (no SQL, no queue).
//! - [`git`]: clone within bounds, HEAD, files, commits.
//! - [`jobs`]: the pipeline as job kinds; the feeder's back-pressure.
//! - [`pool`]: the analysis threads.
//! - [`db`]: the rows.
//! - [`api`]: `/api/mining/...`; [`key`]: API keys and their throttle.

pub mod analyzer;
pub mod api;
pub mod dashboard;
pub mod db;
pub mod git;
pub mod indexer;
pub mod jobs;
pub mod key;
pub mod pool;
pub mod source;

pub use api::router;
pub use jobs::{FETCH_QUEUE, Mining, QUEUE, Settings, register};
pub use key::KeyGate;
pub use source::SourcePolicy;

/// Applies the app's migrations (its tables beside the engine's).
///
/// # Errors
/// When a migration fails.
pub async fn migrate(store: &conveyor_queue::Store) -> conveyor_queue::Result<()> {
    store
        .migrate_with(
            sqlx::migrate!("./migrations/postgres"),
            sqlx::migrate!("./migrations/sqlite"),
        )
        .await
}

/// Creates a disabled indexer of every kind `mining` knows, named after its kind, unless one
/// exists (edits made through the API stay).
///
/// # Errors
/// The database's.
pub async fn ensure_indexers(store: &conveyor_queue::Store, mining: &Mining) -> sqlx::Result<()> {
    let now = conveyor_queue::clock::now_ms();
    for name in mining.hosts.names() {
        let Some(host) = mining.hosts.get(name) else {
            continue;
        };
        let (settings, cursor) = host.defaults();
        db::ensure_indexer(
            store,
            name,
            name,
            &settings.to_string(),
            &cursor.to_string(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// The app, as the binary lists it.
pub struct MiningApp {
    /// Settings, analyzers, hosts.
    pub mining: Mining,
    /// Requests need an API key (`MINING_REQUIRE_KEY`).
    pub require_key: bool,
    /// The operator's tokens, which pass mining's gate too.
    pub auth: conveyor_web::auth::Auth,
    /// When the enabled indexers run: a cron expression (UTC), or `off`.
    pub index: String,
}

impl conveyor_web::app::App for MiningApp {
    fn name(&self) -> &'static str {
        "mining"
    }

    fn migrate<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, conveyor_queue::Result<()>> {
        Box::pin(migrate(store))
    }

    fn prepare<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, Result<(), conveyor_web::app::SetupError>> {
        Box::pin(async move {
            ensure_indexers(store, &self.mining).await?;
            Ok(())
        })
    }

    fn register(&self, registry: &mut conveyor_queue::Registry) {
        register(registry, self.mining.clone());
    }

    fn schedules(&self) -> Result<Vec<conveyor_queue::Schedule>, conveyor_queue::Error> {
        if self.index == "off" {
            return Ok(Vec::new());
        }
        Ok(vec![conveyor_queue::Schedule::new(
            "mining-index",
            &self.index,
            jobs::tick_job(),
        )?])
    }

    /// Public to the token gate: mining's own gate takes the operator's token or a key.
    fn routes(&self, store: &conveyor_queue::Store) -> conveyor_web::Surface {
        let gate = KeyGate::new(store.clone(), self.require_key, self.auth.clone());
        conveyor_web::Surface {
            public: router(self.mining.clone(), gate),
            ..conveyor_web::Surface::default()
        }
    }

    fn page(&self) -> Option<&dyn conveyor_web::app::Page> {
        Some(self)
    }
}
