//! Throwaway databases: a fresh SQLite file, or a fresh schema in a PostgreSQL database,
//! migrated, and removed again by [`ScratchDb::finish`]. Tests use one per test; `conveyor
//! bench` uses one per run so it never touches real data.
//!
//! PostgreSQL schemas are selected through the connection's `search_path`, so everything,
//! the `NOTIFY` channel included, stays inside the schema.

use crate::error::Result;
use crate::store::{Db, Store};

/// A migrated store on a database made for one test or benchmark run.
pub struct ScratchDb {
    /// The store.
    pub store: Store,
    /// The URL the store connected to (for child processes).
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Schema { admin_url: String, schema: String },
}

impl ScratchDb {
    /// A new SQLite file in the temporary directory.
    ///
    /// # Errors
    /// When the file cannot be created or migrated.
    pub async fn new_sqlite() -> Result<Self> {
        let name = format!("conveyor-scratch-{}.db", uuid::Uuid::new_v4().simple());
        let path = std::env::temp_dir().join(name);
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url).await?;
        store.migrate().await?;
        Ok(Self {
            store,
            url,
            cleanup: Cleanup::File(path),
        })
    }

    /// A new schema in the PostgreSQL database at `admin_url`.
    ///
    /// # Errors
    /// When the database is unreachable or the schema cannot be made or migrated.
    pub async fn new_postgres(admin_url: &str) -> Result<Self> {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = Store::connect(admin_url).await?;
        if let Db::Pg(pool) = admin.writer() {
            let create = format!("CREATE SCHEMA {schema}");
            sqlx::query(sqlx::AssertSqlSafe(create))
                .execute(pool)
                .await?;
        }
        admin.close().await;
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let store = Store::connect(&url).await?;
        store.migrate().await?;
        Ok(Self {
            store,
            url,
            cleanup: Cleanup::Schema {
                admin_url: admin_url.to_owned(),
                schema,
            },
        })
    }

    /// A new SQLite file (panics on failure: for tests).
    ///
    /// # Panics
    /// When the file cannot be created or migrated.
    pub async fn sqlite() -> Self {
        Self::new_sqlite().await.expect("a scratch SQLite database")
    }

    /// A new schema in `TEST_DATABASE_URL`, or `None` (with a note on stderr) when it is
    /// unset (for tests).
    ///
    /// # Panics
    /// When `TEST_DATABASE_URL` is set but unusable.
    pub async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            skip("set TEST_DATABASE_URL to run this test on PostgreSQL");
            return None;
        };
        Some(
            Self::new_postgres(&admin_url)
                .await
                .expect("a scratch schema in TEST_DATABASE_URL"),
        )
    }

    /// Closes the store and removes the database (best effort).
    pub async fn finish(self) {
        self.store.close().await;
        match self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Schema { admin_url, schema } => {
                if let Ok(admin) = Store::connect(&admin_url).await {
                    if let Db::Pg(pool) = admin.writer() {
                        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(pool).await;
                    }
                    admin.close().await;
                }
            }
        }
    }
}

/// The variable under which a test that would skip for a missing tool, service or database
/// fails instead (`.ci/run` sets it, so CI never passes by skipping).
pub const STRICT: &str = "CONVEYOR_TEST_STRICT";

/// Says that a test skipped, and why; call it and return. Under [`STRICT`]`=1` it fails the
/// test instead. (The repository's shared data is not a reason given here: a clone without
/// it must pass, so those tests say they skipped with `eprintln!` alone.)
///
/// # Panics
/// Under [`STRICT`]`=1`.
pub fn skip(reason: impl std::fmt::Display) {
    if std::env::var(STRICT).is_ok_and(|v| v == "1") {
        panic!("this test would skip, and {STRICT}=1 forbids that: {reason}");
    }
    eprintln!("skipped: {reason}");
}
