//! What a job is: the stored row ([`Job`]), its lifecycle ([`JobState`]) and the request to
//! create one ([`NewJob`]).

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// The columns of `job` in the order [`Job`] decodes them; a macro so queries stay `&'static`.
macro_rules! job_columns {
    () => {
        "id, queue, kind, args, state, priority, attempt, max_attempts, run_at, lease_owner, \
         lease_until, cancel_requested, progress_done, progress_total, progress_message, result, \
         error, group_id, unique_key, created_at, started_at, finished_at"
    };
}
pub(crate) use job_columns;

/// Where a job is in its life. `docs/job-states.md` says who moves a job in and out of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// A group's continuation, waiting for the last member to finish.
    Pending,
    /// Waiting for a `run_at` in the future (claimable once it has passed).
    Scheduled,
    /// Ready to be claimed.
    Available,
    /// Claimed by a worker that holds its lease.
    Running,
    /// Failed an attempt; waits for its backoff `run_at`, then is claimable again.
    Retryable,
    /// Finished with a result.
    Completed,
    /// Failed its last attempt, or failed with a permanent error.
    Failed,
    /// Cancelled before or while running.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 8] = [
        Self::Pending,
        Self::Scheduled,
        Self::Available,
        Self::Running,
        Self::Retryable,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The name stored in the `state` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Scheduled => "scheduled",
            Self::Available => "available",
            Self::Running => "running",
            Self::Retryable => "retryable",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job has ended (nothing will move it again unless retried by hand).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown job state {s:?}"))
    }
}

impl TryFrom<String> for JobState {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

/// A job as stored. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Job {
    /// Identifier, increasing with creation.
    pub id: i64,
    /// The queue it waits in; workers subscribe to queues.
    pub queue: String,
    /// Which handler runs it.
    pub kind: String,
    /// The handler's input.
    #[sqlx(json)]
    pub args: Value,
    /// Where it is in its life.
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// Higher runs first within a queue.
    pub priority: i32,
    /// Attempts started so far (the running one included).
    pub attempt: i32,
    /// Attempts allowed before it fails for good.
    pub max_attempts: i32,
    /// Not claimed before this time.
    pub run_at: i64,
    /// The worker holding the lease while running.
    pub lease_owner: Option<String>,
    /// When the lease expires unless its worker heartbeats.
    pub lease_until: Option<i64>,
    /// Cancellation was asked while it ran; its worker stops it.
    pub cancel_requested: bool,
    /// Progress: units done.
    pub progress_done: Option<i64>,
    /// Progress: units in all, when known.
    pub progress_total: Option<i64>,
    /// Progress: a human-readable note.
    pub progress_message: Option<String>,
    /// The handler's output, once completed.
    #[sqlx(json(nullable))]
    pub result: Option<Value>,
    /// The last error, kept even when a later attempt succeeds.
    pub error: Option<String>,
    /// The group this job is a member of.
    pub group_id: Option<i64>,
    /// While the job is live, no other live job has this key.
    pub unique_key: Option<String>,
    /// When it was enqueued.
    pub created_at: i64,
    /// When its latest attempt started.
    pub started_at: Option<i64>,
    /// When it reached a final state.
    pub finished_at: Option<i64>,
}

/// Bounds on what a job may carry, checked before anything is stored.
pub mod limits {
    /// Longest queue name, kind or unique key, in bytes.
    pub const NAME_MAX: usize = 128;
    /// Most attempts a job may ask for.
    pub const MAX_ATTEMPTS: i32 = 100;
    /// Priorities run from `-PRIORITY_MAX` to `PRIORITY_MAX`.
    pub const PRIORITY_MAX: i32 = 1000;
    /// Largest serialized arguments, in bytes.
    pub const ARGS_MAX_BYTES: usize = 1 << 20;
    /// Furthest ahead a job may be scheduled: ten years, in milliseconds.
    pub const RUN_AT_AHEAD_MAX_MS: i64 = 10 * 366 * 86_400_000;
}

/// Whether `name` is a valid queue name: 1 to 128 characters of letters, digits and
/// `_ . : -`, starting with a letter or digit (so it is safe in a URL path, a metric label
/// and a log line, and `../../etc` is not one).
pub fn is_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::NAME_MAX
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// What a queue name must look like, for messages.
pub const QUEUE_NAME_RULE: &str =
    "1 to 128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit";

/// The path (`args.a[2].b`) of the first string or key in `value` holding a NUL character,
/// which PostgreSQL cannot store in text or JSONB (SQLite can: refusing it everywhere keeps
/// the two stores alike).
pub fn nul_path(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::String(s) => s.contains('\0').then(|| path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(format!("{path} (a key)"))
            } else {
                nul_path(item, &format!("{path}.{key}"))
            }
        }),
        _ => None,
    }
}

/// The default queue.
pub const DEFAULT_QUEUE: &str = "default";
/// Attempts a job gets unless it asks otherwise.
pub const DEFAULT_MAX_ATTEMPTS: i32 = 3;

/// A job to enqueue. Build with [`NewJob::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Which handler runs it.
    pub kind: String,
    /// The handler's input.
    pub args: Value,
    /// Queue; default `default`.
    pub queue: String,
    /// Higher runs first; default 0.
    pub priority: i32,
    /// Earliest start (ms since epoch); default now.
    pub run_at: Option<i64>,
    /// Attempts before it fails; default 3.
    pub max_attempts: i32,
    /// While a live job holds this key, enqueueing another returns the live one.
    pub unique_key: Option<String>,
}

impl NewJob {
    /// A job of `kind` with `args`, on the default queue.
    pub fn new(kind: impl Into<String>, args: Value) -> Self {
        Self {
            kind: kind.into(),
            args,
            queue: DEFAULT_QUEUE.to_owned(),
            priority: 0,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            unique_key: None,
        }
    }

    /// Sets the queue.
    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queue = queue.into();
        self
    }

    /// Sets the priority (higher runs first).
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Delays the job until `run_at` (ms since epoch).
    pub fn run_at(mut self, run_at: i64) -> Self {
        self.run_at = Some(run_at);
        self
    }

    /// Sets the number of attempts.
    pub fn max_attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the unique key.
    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    /// Checks every bound; the error names the field.
    ///
    /// # Errors
    /// [`Error::InvalidJob`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let name = |field: &str, value: &str| -> Result<()> {
            if value.is_empty() || value.len() > limits::NAME_MAX {
                return Err(Error::InvalidJob(format!(
                    "{field} must be 1 to {} bytes long",
                    limits::NAME_MAX
                )));
            }
            if value.chars().any(|c| c.is_control()) {
                return Err(Error::InvalidJob(format!(
                    "{field} must not contain control characters"
                )));
            }
            Ok(())
        };
        name("kind", &self.kind)?;
        if !is_queue_name(&self.queue) {
            return Err(Error::InvalidJob(format!(
                "queue {:?} is not a queue name: {QUEUE_NAME_RULE}",
                self.queue
            )));
        }
        if let Some(key) = &self.unique_key {
            name("unique_key", key)?;
        }
        if !(1..=limits::MAX_ATTEMPTS).contains(&self.max_attempts) {
            return Err(Error::InvalidJob(format!(
                "max_attempts must be between 1 and {}",
                limits::MAX_ATTEMPTS
            )));
        }
        if self.priority.abs() > limits::PRIORITY_MAX {
            return Err(Error::InvalidJob(format!(
                "priority must be between -{0} and {0}",
                limits::PRIORITY_MAX
            )));
        }
        if let Some(run_at) = self.run_at {
            let latest = crate::clock::now_ms() + limits::RUN_AT_AHEAD_MAX_MS;
            if !(0..=latest).contains(&run_at) {
                return Err(Error::InvalidJob(
                    "run_at must be between 1970 and ten years from now".to_owned(),
                ));
            }
        }
        if let Some(path) = nul_path(&self.args, "args") {
            return Err(Error::InvalidJob(format!(
                "{path} holds a NUL character (\\u0000), which the store cannot keep"
            )));
        }
        // Serializing twice (here and at insert) costs little next to the round trip.
        let size = serde_json::to_vec(&self.args).map_or(usize::MAX, |v| v.len());
        if size > limits::ARGS_MAX_BYTES {
            return Err(Error::InvalidJob(format!(
                "args must serialize to at most {} bytes",
                limits::ARGS_MAX_BYTES
            )));
        }
        Ok(())
    }

    /// The state the job starts in, given the current time.
    pub(crate) fn initial_state(&self, now: i64) -> JobState {
        match self.run_at {
            Some(at) if at > now => JobState::Scheduled,
            _ => JobState::Available,
        }
    }
}

/// An enum stored as text: its `as_str`, `ALL`, `Display`, `FromStr` and `TryFrom<String>`
/// (which `FromRow` reads through `#[sqlx(try_from = "String")]`), as [`JobState`] has.
/// Apps keep their row states in these instead of comparing strings.
#[macro_export]
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored text.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = ::std::string::String;

            fn from_str(text: &str) -> ::std::result::Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    other => Err(::std::format!(
                        "{other:?} is not a {}: one of {}",
                        stringify!($name),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl ::std::convert::TryFrom<::std::string::String> for $name {
            type Error = ::std::string::String;

            fn try_from(text: ::std::string::String) -> ::std::result::Result<Self, Self::Error> {
                text.parse()
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn states_round_trip_through_their_names() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
        }
        assert!("done".parse::<JobState>().is_err());
    }

    #[test]
    fn validation_names_the_field_out_of_range() {
        let ok = NewJob::new("noop", json!({}));
        assert!(ok.validate().is_ok());
        let err = |job: NewJob| job.validate().unwrap_err().to_string();
        assert!(err(ok.clone().queue("")).contains("queue"));
        assert!(err(ok.clone().max_attempts(0)).contains("max_attempts"));
        assert!(err(ok.clone().priority(5000)).contains("priority"));
        assert!(err(ok.clone().unique_key("x".repeat(200))).contains("unique_key"));
        assert!(err(NewJob::new("", json!(null))).contains("kind"));
    }

    #[test]
    fn a_future_run_at_starts_scheduled() {
        let job = NewJob::new("noop", json!({})).run_at(2_000);
        assert_eq!(job.initial_state(1_000), JobState::Scheduled);
        assert_eq!(job.initial_state(3_000), JobState::Available);
    }
}
