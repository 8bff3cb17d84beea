//! # conveyor-queue: the durable job engine
//!
//! Jobs live in one table of the application's own database, PostgreSQL or SQLite, so a job
//! and the rows it depends on commit in one transaction. Workers claim jobs in batches under
//! a lease they renew by heartbeat; a dead worker's jobs run again one lease later.
//!
//! ## Layout (reading order)
//! - [`job`]: the row, its states, and [`NewJob`] with its bounds.
//! - [`store`]: [`Store`] over either backend, [`Tx`] for enqueueing inside a transaction.
//! - [`enqueue`]: one, many, groups; [`commit`]: concurrent single enqueues share
//!   transactions (group commit).
//! - [`lease`]: the worker's SQL: claim, heartbeat, finish (batched, fenced), rescue.
//! - [`group`]: fan-in: the continuation released exactly once.
//! - [`tree`]: trees of groups (tree reduction), each node ready as soon as its own members end.
//! - [`control`]: get, list, cancel, retry, counts, workers, concurrency.
//! - [`handler`], [`context`]: what applications write: handlers by kind and their context.
//! - [`worker`]: the runtime that claims, runs and reports.
//! - [`wake`]: `LISTEN/NOTIFY` and in-process wake-ups.
//! - [`periodic`], [`cleaner`]: cron schedules and retention.
//! - [`backoff`], [`clock`], [`builtin`] (`noop`, `sleep`, `fail`), [`scratch`] (throwaway
//!   databases for tests and benchmarks).
//!
//! `docs/job-states.md` in the repository draws the state machine.

pub mod backoff;
pub mod builtin;
pub mod cleaner;
pub mod clock;
pub mod commit;
pub mod context;
pub mod control;
pub mod enqueue;
pub mod error;
pub mod group;
pub mod handler;
pub mod job;
pub mod lease;
pub mod periodic;
pub mod scratch;
pub mod stats;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tree;
mod wake;
pub mod worker;

pub use backoff::Backoff;
pub use context::{JobContext, Progress, StopReason};
pub use control::{BULK_MAX, BulkAction, BulkOutcome, JobFilter, QueueCounts, WorkerInfo};
pub use enqueue::{Enqueued, GroupEnqueued};
pub use error::{Error, Result};
pub use group::MemberOutcome;
pub use handler::{JobError, Registry};
pub use job::{Job, JobState, NewJob};
pub use periodic::{Schedule, Scheduler};
pub use store::{Backend, Db, Sql, Store, StoreOptions, Tx};
pub use tree::TreeEnqueued;
pub use worker::{QueueConfig, Worker, WorkerConfig, WorkerStats};
