//! # conveyor-repostats: the newest public GitHub repositories and their languages
//!
//! Seed `001`: list the last 100 public repositories, filter them, fetch each one's languages
//! in parallel, aggregate by language, and answer as fast as possible.
//!
//! ## Layout
//! - [`model`]: what we keep of a repository.
//! - [`github`]: the client and the rate-limit governor shared through the database.
//! - [`jobs`]: `repostats.refresh` (periodic) and `repostats.languages` (one per repository).
//! - [`db`]: the rows; every write bumps a version.
//! - [`snapshot`]: the immutable in-memory view, filters and statistics.
//! - [`api`]: `/ping`, `/repos`, `/stats` served from the snapshot; status and refresh.
//! - [`fake`]: `conveyor fake-github`, GitHub's behaviour for tests and demos.

pub mod api;
pub mod db;
pub mod fake;
pub mod github;
pub mod jobs;
pub mod model;
pub mod snapshot;

pub use api::{admin_router, keep_fresh, public_router, router};
pub use github::{Github, GithubConfig};
pub use jobs::{QUEUE, register};
pub use snapshot::SnapshotCell;

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
