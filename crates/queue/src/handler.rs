//! Handlers by kind: the [`Registry`] an application fills, and [`JobError`], what a
//! handler returns when an attempt fails.
//!
//! A handler is `Fn(Args, JobContext) -> impl Future<Output = Result<Output, JobError>>`
//! with `Args: Deserialize` and `Output: Serialize`; it knows nothing of SQL. The context is
//! passed by value (it is an `Arc`) because a borrowed context cannot live in the `'static`,
//! `Send` future a worker spawns. Resources (HTTP clients, pools) are captured by the closure.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::context::JobContext;
use crate::error::{Error, Result};
use crate::job::NewJob;

/// Why an attempt failed, and whether another attempt can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// What went wrong, stored as the job's `error`.
    pub message: String,
    /// When true the job fails at once, whatever attempts remain.
    pub permanent: bool,
}

impl JobError {
    /// A failure worth retrying (after backoff, while attempts remain).
    pub fn retry(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: false,
        }
    }

    /// A failure no retry can fix (bad input): the job fails now.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            permanent: true,
        }
    }
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Any error converts to a retryable failure, so handlers can use `?`.
/// (`JobError` itself is not `std::error::Error`, which is what makes this blanket possible.)
impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(error: E) -> Self {
        Self::retry(error.to_string())
    }
}

pub(crate) type HandlerFuture =
    Pin<Box<dyn Future<Output = Result<Option<Value>, JobError>> + Send>>;
type RunFn = dyn Fn(Value, JobContext) -> HandlerFuture + Send + Sync;
type CheckFn = dyn Fn(&Value) -> Result<(), String> + Send + Sync;

struct Entry {
    run: Box<RunFn>,
    check: Box<CheckFn>,
    public: bool,
}

/// The handlers a process can run, by kind. Fill it at start, then share it.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: HashMap<String, Arc<Entry>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for an internal `kind` (enqueued by the app itself, never through
    /// the public job API), replacing any earlier one.
    pub fn register<A, O, F, Fut>(&mut self, kind: &str, handler: F) -> &mut Self
    where
        A: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    {
        self.insert(kind, handler, false)
    }

    /// Registers `handler` for a public `kind`: one that anybody allowed to use the job API
    /// may enqueue with arguments of their choosing, so its handler must be safe with any
    /// arguments that deserialize.
    pub fn register_public<A, O, F, Fut>(&mut self, kind: &str, handler: F) -> &mut Self
    where
        A: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    {
        self.insert(kind, handler, true)
    }

    fn insert<A, O, F, Fut>(&mut self, kind: &str, handler: F, public: bool) -> &mut Self
    where
        A: DeserializeOwned + Send + 'static,
        O: Serialize + 'static,
        F: Fn(A, JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let run = move |args: Value, ctx: JobContext| -> HandlerFuture {
            let handler = handler.clone();
            Box::pin(async move {
                let args = A::deserialize(&args)
                    .map_err(|e| JobError::permanent(format!("invalid arguments: {e}")))?;
                let output = handler(args, ctx).await?;
                let value = serde_json::to_value(output)
                    .map_err(|e| JobError::permanent(format!("unserializable result: {e}")))?;
                Ok((!value.is_null()).then_some(value))
            })
        };
        let check = |args: &Value| A::deserialize(args).map(drop).map_err(|e| e.to_string());
        self.kinds.insert(
            kind.to_owned(),
            Arc::new(Entry {
                run: Box::new(run),
                check: Box::new(check),
                public,
            }),
        );
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        kinds
    }

    /// The kinds the public job API may enqueue, sorted.
    pub fn public_kinds(&self) -> Vec<&str> {
        let mut kinds: Vec<&str> = self
            .kinds
            .iter()
            .filter(|(_, entry)| entry.public)
            .map(|(kind, _)| kind.as_str())
            .collect();
        kinds.sort_unstable();
        kinds
    }

    /// [`Registry::check`], and that the kind is public: what the job API accepts.
    ///
    /// # Errors
    /// [`Error::InternalKind`] for a kind only its app may enqueue, else as `check`.
    pub fn check_public(&self, job: &NewJob) -> Result<()> {
        if self.kinds.get(&job.kind).is_some_and(|entry| !entry.public) {
            return Err(Error::InternalKind(job.kind.clone()));
        }
        self.check(job)
    }

    /// Checks that a job names a registered kind, fits its bounds, and that its arguments
    /// deserialize into what the handler takes, before anything is stored.
    ///
    /// # Errors
    /// [`Error::UnknownKind`], [`Error::InvalidArgs`] or [`Error::InvalidJob`].
    pub fn check(&self, job: &NewJob) -> Result<()> {
        let entry = self
            .kinds
            .get(&job.kind)
            .ok_or_else(|| Error::UnknownKind(job.kind.clone()))?;
        (entry.check)(&job.args).map_err(|reason| Error::InvalidArgs {
            kind: job.kind.clone(),
            reason,
        })?;
        job.validate()
    }

    pub(crate) fn start(&self, kind: &str, args: Value, ctx: JobContext) -> Option<HandlerFuture> {
        self.kinds.get(kind).map(|entry| (entry.run)(args, ctx))
    }
}

/// The text a panic carried (`panic!("...")` or a formatted one), or empty.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}
