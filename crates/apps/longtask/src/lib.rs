//! # conveyor-longtask: the seed's long task
//!
//! The KEDA/Huey seed (`004`) runs one task: count from 0 to 100,000,000, recording progress
//! every 1,000,000, while clients poll its status. Here it is a Conveyor job kind with the
//! seed's two routes on top, byte-compatible so the seed's own clients (its k6 scripts) run
//! unchanged; the same tasks are ordinary jobs in `/api/jobs` (progress, events, cancel).
//!
//! ## Layout
//! - [`count`]: the counting loop, pure and benchmarked.
//! - [`task`]: the job kind `longtask` (arguments, handler, result).
//! - [`api`]: `POST /api/tasks/add`, `GET /api/tasks/status/{id}`.

pub mod api;
pub mod count;
pub mod task;

pub use api::router;
pub use task::{KIND, QUEUE, register};
