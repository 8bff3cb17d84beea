//! # conveyor-average: distributed averaging by tree reduction
//!
//! The DFL seed (`002`): generate F files of C random integers, sum them element by element
//! in groups of 5 on the workers, regroup the partial sums by 5 until one remains, and divide
//! by F: the per-position average vector. Here the regrouping is the engine's tree of groups:
//! each sum of a higher level is the continuation of its own members, and runs as soon as
//! they have ended, so completion is exact without a side structure (the original's "DSU"
//! had races) and levels overlap.
//!
//! ## Layout
//! - [`numbers`]: the file formats and the arithmetic (pure).
//! - [`plan`]: the reduction tree and the file names.
//! - [`storage`]: files through `object_store` (a local directory, or S3).
//! - [`tasks`]: the job kinds `average.generate`, `average.start`, `average.sum`,
//!   `average.clean`.
//! - [`db`]: the `average_job` rows.
//! - [`api`]: `/api/average/jobs...` and `/api/average/workers`.

pub mod api;
pub mod db;
pub mod numbers;
pub mod plan;
pub mod storage;
pub mod tasks;

pub use api::router;
pub use storage::Storage;
pub use tasks::{QUEUE, register};

/// Applies the app's migrations (its table beside the engine's).
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
