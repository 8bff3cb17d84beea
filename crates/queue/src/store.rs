//! The database seam: one [`Store`] over PostgreSQL or SQLite, and [`Tx`], a transaction
//! that jobs can be enqueued into alongside an application's own writes.
//!
//! Most of the engine's SQL is the same text on both backends; [`dispatch!`] expands one
//! body once per backend so it is type-checked against each driver. Where the semantics
//! differ (claiming with `SKIP LOCKED`, batched updates through `UNNEST`, `NOTIFY`) the
//! callers match on [`Db`] and keep both statements side by side.
//!
//! SQLite allows one writer at a time. Letting several pooled connections race for the write
//! lock makes SQLite's busy handler sleep in steps of up to 100 ms, so the store keeps a
//! writer pool of exactly one connection (writes queue in-process, in order) and a separate
//! pool of readers; WAL lets readers run beside the writer, and one more connection
//! checkpoints the WAL in the background.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, PgPool, Postgres, Sqlite, SqlitePool, Transaction};

use crate::error::{Error, Result};
use crate::wake::Wake;

/// One value per backend.
#[derive(Debug, Clone)]
pub enum Db<P, L> {
    /// PostgreSQL.
    Pg(P),
    /// SQLite.
    Lite(L),
}

/// Runs `$body` with `$name` bound to the inner value of a [`Db`], once per backend.
/// Apps use it for their own SQL: `dispatch!(store.reader(), pool => sqlx::query(...)...)`.
#[macro_export]
macro_rules! dispatch {
    ($value:expr, $name:ident => $body:expr) => {
        match $value {
            $crate::store::Db::Pg($name) => $body,
            $crate::store::Db::Lite($name) => $body,
        }
    };
}
pub use dispatch;

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL: many processes on many machines.
    Postgres,
    /// SQLite: one file, processes on one machine.
    Sqlite,
}

/// A statement of an app's own, written once per SQL dialect: apps keep theirs as named
/// constants in their `db.rs` and ask the store for the text (`store.sql(LOCK_BUDGET)`),
/// so no handler branches on the backend.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    /// PostgreSQL's text.
    pub postgres: &'static str,
    /// SQLite's text.
    pub sqlite: &'static str,
}

impl Sql {
    /// A statement both dialects read alike.
    pub const fn same(text: &'static str) -> Self {
        Self {
            postgres: text,
            sqlite: text,
        }
    }

    /// The text for `backend`.
    pub const fn text(&self, backend: Backend) -> &'static str {
        match backend {
            Backend::Postgres => self.postgres,
            Backend::Sqlite => self.sqlite,
        }
    }
}

/// Connection settings beyond the URL.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections in the PostgreSQL pool (default 16), plus half as many for claims.
    pub max_connections: u32,
    /// Most reader connections in the SQLite pool (default 4; there is always one writer).
    pub sqlite_readers: u32,
    /// How long a statement waits for a connection or SQLite's lock (default 10 s).
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            sqlite_readers: 4,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// A handle on the job database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Where writes go; on SQLite a single connection.
    writer: Db<PgPool, SqlitePool>,
    /// Where reads go; on PostgreSQL the same pool as `writer`.
    reader: Db<PgPool, SqlitePool>,
    /// A SQLite file's WAL checkpointer (see `checkpoints`).
    checkpointer: Option<SqlitePool>,
    /// Where PostgreSQL claims go: connections that commit without waiting for the disk.
    claimer: Option<PgPool>,
    /// In-process wake-ups: queue has work, job was cancelled.
    wake: Wake,
    /// PostgreSQL `NOTIFY` channel, named after the schema so that schemas sharing a database
    /// (as tests do) do not wake each other.
    channel: String,
    /// The group-commit task's queue, started by the first single-job enqueue.
    committer: std::sync::OnceLock<crate::commit::Committer>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// How often the WAL of a SQLite store is checkpointed while it is written. At full speed
/// the engine writes about 1,000 pages (SQLite's own checkpoint threshold) in this time.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How often while nothing is written, or after a failure.
const CHECKPOINT_IDLE: Duration = Duration::from_secs(1);

/// A PostgreSQL connection idle this long is pinged before use (see [`Store::connect_with`]).
const PING_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A PostgreSQL pool of at most `max` connections. sqlx pings a connection when it comes back
/// to the pool, and by default again when it is taken out: a round trip before every
/// statement, which on one-statement requests (MiniTwit's) is half their database time. Only
/// a connection idle for a while can have been cut since its last ping.
fn pg_pool(options: &StoreOptions, max: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_AFTER_IDLE {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// Copies the WAL of a SQLite store back into the database file, on the store's
/// checkpointer connection and thread, until the store is dropped or closed. A passive
/// checkpoint waits for no one: the writer keeps appending meanwhile. SQLite's default leaves
/// each checkpoint (copying about 1,000 pages, then two fsyncs) to the commit that crosses
/// the threshold, on the writer's thread, the engine's bottleneck. Measured with `conveyor
/// bench queue --jobs 100000`, three interleaved runs each: 72.9k jobs/s by default, 72.3k
/// with only the threshold raised to 4,000 pages, 77.8k with this as well.
async fn checkpoints(store: std::sync::Weak<Inner>) {
    let mut last_frames = -1;
    loop {
        let Some(pool) = store.upgrade().and_then(|inner| inner.checkpointer.clone()) else {
            break;
        };
        if pool.is_closed() {
            break;
        }
        // (busy, frames in the WAL, frames copied back)
        let wait = match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok((_, frames, copied)) if frames == copied && frames == last_frames => CHECKPOINT_IDLE,
            Ok((_, frames, _)) => {
                last_frames = frames;
                CHECKPOINT_EVERY
            }
            Err(error) => {
                tracing::warn!(%error, "checkpointing the SQLite WAL failed; retrying");
                CHECKPOINT_IDLE
            }
        };
        drop(pool);
        tokio::time::sleep(wait).await;
    }
}

impl Store {
    /// Connects to `url` (`sqlite://path`, `sqlite::memory:`, or `postgres://...`).
    ///
    /// # Errors
    /// [`Error::UnsupportedUrl`] for other schemes, [`Error::Database`] when unreachable.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, &StoreOptions::default()).await
    }

    /// Connects with explicit pool settings.
    ///
    /// # Errors
    /// As [`Store::connect`].
    pub async fn connect_with(url: &str, options: &StoreOptions) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)?;
            // One connection first: a refused or unknown server fails now with its cause,
            // not after the pool's acquire timeout as "pool timed out".
            match tokio::time::timeout(
                options.acquire_timeout,
                sqlx::PgConnection::connect_with(&connect),
            )
            .await
            {
                Ok(Ok(first)) => first.close().await?,
                Ok(Err(error)) => return Err(error.into()),
                Err(_) => {
                    return Err(Error::Unreachable(format!(
                        "no answer from the PostgreSQL server within {:?}",
                        options.acquire_timeout
                    )));
                }
            }
            let pool = pg_pool(options, options.max_connections)
                .connect_with(connect.clone())
                .await?;
            // Claims commit without waiting for the WAL flush: a claim acknowledges nothing
            // to anyone, and every write that depends on it (the job's outcome) commits
            // durably, which flushes the WAL up to and including the claim. A crash of the
            // server can only lose a claim whose job then runs again, as after a lost lease.
            let claimer = pg_pool(options, (options.max_connections / 2).max(1))
                .connect_with(connect.options([("synchronous_commit", "off")]))
                .await?;
            let schema: String = sqlx::query_scalar("SELECT current_schema()")
                .fetch_one(&pool)
                .await?;
            let channel = format!("conveyor_{schema}");
            Ok(Self::from_parts(
                Db::Pg(pool.clone()),
                Db::Pg(pool),
                channel,
                None,
                Some(claimer),
            ))
        } else if url.starts_with("sqlite:") {
            let file = SqliteConnectOptions::from_str(url)?;
            let path = file.get_filename();
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
                && !dir.is_dir()
                && !url.contains(":memory:")
            {
                return Err(Error::Unreachable(format!(
                    "the directory {} does not exist (for the SQLite file {}); create it or \
                     point DATABASE_URL elsewhere",
                    dir.display(),
                    path.display()
                )));
            }
            let connect = file
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(options.acquire_timeout)
                .foreign_keys(true)
                // SQLite's default page cache is 2 MiB; the job table and its indexes outgrow
                // that quickly, and every claim and completion then re-reads pages.
                .pragma("cache_size", "-65536")
                .pragma("temp_store", "memory")
                // Pages read straight from the kernel's cache instead of copied by `pread`:
                // a connection drops its own cache whenever another connection writes, so
                // readers re-read often (`conveyor bench queue`, SQLite, alternated: medians
                // 101k → 112k and 104k → 116k jobs/s). 256 MiB of address space, not memory.
                .pragma("mmap_size", "268435456")
                // sqlx hands rows from its SQLite thread through a channel of this many; at
                // the default (50) a claim of 100 blocks that thread halfway until the
                // claimer drains it.
                .row_buffer_size(1024);
            // An in-memory database exists once per connection: one connection must do all.
            let memory = url.contains(":memory:") || url.contains("mode=memory");
            // A connection of its own copies the WAL back into the file in the background
            // (see `checkpoints`). The writer checkpoints only past 4,000 pages (16 MiB),
            // which bounds the WAL: under steady writes a passive checkpoint never catches
            // up with the end, and only a checkpoint between two of the writer's own
            // transactions lets SQLite start the WAL over. By then little is left to copy.
            let writer_options = if memory {
                connect.clone()
            } else {
                connect.clone().pragma("wal_autocheckpoint", "4000")
            };
            // No pings: an SQLite connection lives in this process and cannot be cut.
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .test_before_acquire(false)
                // Lets the cleaner hand pruned pages back (`PRAGMA incremental_vacuum`); takes
                // effect in databases created from now on. A write, so not on the readers.
                .connect_with(writer_options.auto_vacuum(SqliteAutoVacuum::Incremental))
                .await?;
            let reader = if memory {
                writer.clone()
            } else {
                SqlitePoolOptions::new()
                    .max_connections(options.sqlite_readers.max(1))
                    .acquire_timeout(options.acquire_timeout)
                    .test_before_acquire(false)
                    .connect_with(connect.clone().read_only(true))
                    .await?
            };
            let checkpointer = if memory {
                None
            } else {
                Some(
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .acquire_timeout(options.acquire_timeout)
                        .connect_with(connect)
                        .await?,
                )
            };
            let store = Self::from_parts(
                Db::Lite(writer),
                Db::Lite(reader),
                String::new(),
                checkpointer,
                None,
            );
            if !memory {
                tokio::spawn(checkpoints(Arc::downgrade(&store.inner)));
            }
            Ok(store)
        } else {
            Err(Error::UnsupportedUrl(url.to_owned()))
        }
    }

    fn from_parts(
        writer: Db<PgPool, SqlitePool>,
        reader: Db<PgPool, SqlitePool>,
        channel: String,
        checkpointer: Option<SqlitePool>,
        claimer: Option<PgPool>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                writer,
                reader,
                checkpointer,
                claimer,
                wake: Wake::default(),
                channel,
                committer: std::sync::OnceLock::new(),
            }),
        }
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// The group-commit queue, started on the current runtime at first use.
    pub(crate) fn committer(&self) -> &crate::commit::Committer {
        self.inner
            .committer
            .get_or_init(|| crate::commit::start(&self.inner, self.backend()))
    }

    /// Applies the schema migrations that have not run yet (safe with several processes:
    /// PostgreSQL takes an advisory lock, SQLite its write lock).
    ///
    /// # Errors
    /// [`Error::Migrate`] when a migration fails or a landed one was edited.
    pub async fn migrate(&self) -> Result<()> {
        self.migrate_with(
            sqlx::migrate!("./migrations/postgres"),
            sqlx::migrate!("./migrations/sqlite"),
        )
        .await
    }

    /// Applies an app's own migrations, `postgres` or `sqlite` by backend. Every migrator
    /// shares sqlx's one bookkeeping table, so each keeps to its own range of versions (the
    /// engine 1-9999, each app a block of 10,000 above) and ignores the others' rows.
    ///
    /// # Errors
    /// [`Error::Migrate`] when a migration fails or a landed one was edited.
    pub async fn migrate_with(
        &self,
        mut postgres: sqlx::migrate::Migrator,
        mut sqlite: sqlx::migrate::Migrator,
    ) -> Result<()> {
        match &self.inner.writer {
            Db::Pg(pool) => postgres.set_ignore_missing(true).run(pool).await?,
            Db::Lite(pool) => {
                sqlite.set_ignore_missing(true);
                // sqlx takes no lock on SQLite: two processes starting on one new file can
                // both read "20002 not applied", and the second's copy fails on what the
                // first changed (its transaction rolls back). Reading the list again after
                // a short wait finds it applied. A migration that really fails fails each
                // time and is reported.
                let mut attempt = 1;
                loop {
                    match sqlite.run(pool).await {
                        Ok(()) => break,
                        Err(error) if attempt < 5 => {
                            tracing::debug!(%error, attempt, "migrating again: another process may be migrating");
                            tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                            attempt += 1;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
            }
        }
        Ok(())
    }

    /// Which backend this store runs on.
    pub fn backend(&self) -> Backend {
        match self.inner.writer {
            Db::Pg(_) => Backend::Postgres,
            Db::Lite(_) => Backend::Sqlite,
        }
    }

    /// `statement`'s text in this store's dialect.
    pub fn sql(&self, statement: Sql) -> &'static str {
        statement.text(self.backend())
    }

    /// The pool for writes (on SQLite, the single writer connection).
    pub fn writer(&self) -> Db<&PgPool, &SqlitePool> {
        match &self.inner.writer {
            Db::Pg(p) => Db::Pg(p),
            Db::Lite(p) => Db::Lite(p),
        }
    }

    /// The pool for reads.
    pub fn reader(&self) -> Db<&PgPool, &SqlitePool> {
        match &self.inner.reader {
            Db::Pg(p) => Db::Pg(p),
            Db::Lite(p) => Db::Lite(p),
        }
    }

    /// The pool for PostgreSQL claims (see [`Store::connect_with`]).
    pub(crate) fn claimer(&self) -> Option<&PgPool> {
        self.inner.claimer.as_ref()
    }

    pub(crate) fn wake(&self) -> &Wake {
        &self.inner.wake
    }

    pub(crate) fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Whether the database answers (for readiness probes).
    ///
    /// # Errors
    /// [`Error::Database`] when it does not.
    pub async fn ping(&self) -> Result<()> {
        dispatch!(self.reader(), pool => {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    /// Opens a write transaction. Jobs enqueued through it exist only if it commits; workers
    /// are woken at commit. On SQLite the transaction holds the single writer: keep it short
    /// and do not call other writing [`Store`] methods while it is open.
    ///
    /// # Errors
    /// [`Error::Database`] when no connection can be had.
    pub async fn begin(&self) -> Result<Tx> {
        let conn = match &self.inner.writer {
            Db::Pg(pool) => Db::Pg(pool.begin().await?),
            // IMMEDIATE takes the write lock now, so a transaction that reads before it
            // writes cannot fail with SQLITE_BUSY halfway (another process may hold the file).
            Db::Lite(pool) => Db::Lite(pool.begin_with("BEGIN IMMEDIATE").await?),
        };
        Ok(Tx {
            conn,
            store: self.clone(),
            woken_queues: Vec::new(),
        })
    }

    /// Closes every pool, waiting for connections in use. The writer closes last: on SQLite
    /// the last connection to close checkpoints the WAL and deletes it, which a read-only
    /// one cannot.
    pub async fn close(&self) {
        dispatch!(&self.inner.reader, pool => pool.close().await);
        if let Some(pool) = &self.inner.claimer {
            pool.close().await;
        }
        if let Some(pool) = &self.inner.checkpointer {
            pool.close().await;
        }
        dispatch!(&self.inner.writer, pool => pool.close().await);
    }
}

/// A write transaction on either backend. Dropping it without [`Tx::commit`] rolls back.
pub struct Tx {
    pub(crate) conn: Db<Transaction<'static, Postgres>, Transaction<'static, Sqlite>>,
    store: Store,
    /// Queues to wake in-process once the transaction commits (SQLite; PostgreSQL sends
    /// `NOTIFY`, which the server delivers at commit).
    woken_queues: Vec<String>,
}

impl Tx {
    /// `statement`'s text in this transaction's dialect.
    pub fn sql(&self, statement: Sql) -> &'static str {
        self.store.sql(statement)
    }

    /// The PostgreSQL connection, for the application's own statements.
    pub fn postgres(&mut self) -> Option<&mut sqlx::PgConnection> {
        match &mut self.conn {
            Db::Pg(tx) => Some(&mut **tx),
            Db::Lite(_) => None,
        }
    }

    /// The SQLite connection, for the application's own statements.
    pub fn sqlite(&mut self) -> Option<&mut sqlx::SqliteConnection> {
        match &mut self.conn {
            Db::Lite(tx) => Some(&mut **tx),
            Db::Pg(_) => None,
        }
    }

    /// The connection as a [`Db`], to run one statement text on either backend.
    pub fn conn(&mut self) -> Db<&mut sqlx::PgConnection, &mut sqlx::SqliteConnection> {
        match &mut self.conn {
            Db::Pg(tx) => Db::Pg(&mut **tx),
            Db::Lite(tx) => Db::Lite(&mut **tx),
        }
    }

    /// The store this transaction belongs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Arranges for workers of `queue` to be woken when this transaction commits.
    pub(crate) async fn wake_on_commit(&mut self, queue: &str) -> Result<()> {
        if self.woken_queues.iter().any(|q| q == queue) {
            return Ok(());
        }
        self.woken_queues.push(queue.to_owned());
        if let Db::Pg(tx) = &mut self.conn {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(self.store.channel())
                .bind(format!("q:{queue}"))
                .execute(&mut **tx)
                .await?;
        }
        Ok(())
    }

    /// Commits, then wakes the workers of every queue that received jobs.
    ///
    /// # Errors
    /// [`Error::Database`] when the commit fails; nothing was stored then.
    pub async fn commit(self) -> Result<()> {
        dispatch!(self.conn, tx => tx.commit().await?);
        for queue in &self.woken_queues {
            self.store.wake().queue_has_work(queue);
        }
        Ok(())
    }
}
