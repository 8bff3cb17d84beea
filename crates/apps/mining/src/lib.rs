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
