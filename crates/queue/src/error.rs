//! The engine's error type.

/// What can go wrong in the job engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused or failed a statement, or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Applying the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be opened or reached (said before any pool waits for it).
    #[error("{0}")]
    Unreachable(String),
    /// The database URL names a backend the engine does not support.
    #[error("unsupported database URL {0:?}: use sqlite://path or postgres://...")]
    UnsupportedUrl(String),
    /// A job was submitted with a kind no handler is registered for.
    #[error("unknown job kind {0:?}")]
    UnknownKind(String),
    /// A job of an app-internal kind was submitted through the public job API.
    #[error("job kind {0:?} is internal to its app and cannot be enqueued through the job API")]
    InternalKind(String),
    /// A job's arguments do not fit its kind.
    #[error("invalid arguments for job kind {kind:?}: {reason}")]
    InvalidArgs {
        /// The job kind.
        kind: String,
        /// What the deserializer said.
        reason: String,
    },
    /// A field of a new job is out of range (queue name, attempts, ...).
    #[error("invalid job: {0}")]
    InvalidJob(String),
    /// A live job already holds this unique key (only from APIs that reject duplicates).
    #[error("a live job already holds unique key {0:?}")]
    Duplicate(String),
    /// The job is in a state that does not allow the operation.
    #[error("job {id} is {state}: cannot {action}")]
    WrongState {
        /// The job.
        id: i64,
        /// Its current state.
        state: String,
        /// What was asked.
        action: &'static str,
    },
    /// A cron expression did not parse.
    #[error("invalid cron expression {expression:?}: {reason}")]
    Cron {
        /// The expression.
        expression: String,
        /// The parser's message.
        reason: String,
    },
}

/// The engine's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
