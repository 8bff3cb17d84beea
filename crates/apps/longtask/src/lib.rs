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
//! - [`dashboard`]: its dashboard page (start a task, the last tasks, live).
//! - [`bench`]: `conveyor bench longtask`, the count with progress against the bare loop.
//! - [`load`]: `conveyor load longtask`, the seed's k6 scenarios against a live server.
//! - [`api`]: `POST /api/tasks/add`, `GET /api/tasks/status/{id}`.

pub mod api;
pub mod bench;
pub mod count;
pub mod dashboard;
pub mod load;
pub mod task;

pub use api::router;
pub use task::{KIND, QUEUE, register};

use conveyor_web::app::Mount;

/// The app, as the binary lists it: the `longtask` kind (public) and the seed's two routes
/// (open to the seed's clients).
pub struct Longtask;

impl conveyor_web::app::App for Longtask {
    fn name(&self) -> &'static str {
        "longtask"
    }

    fn migrate<'a>(
        &'a self,
        _store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, conveyor_queue::Result<()>> {
        // No tables of its own: its tasks are engine jobs.
        Box::pin(async { Ok(()) })
    }

    fn register(&self, registry: &mut conveyor_queue::Registry) {
        register(registry);
    }

    fn routes(&self, _store: &conveyor_queue::Store) -> conveyor_web::Surface {
        conveyor_web::Surface {
            public: router(),
            ..conveyor_web::Surface::default()
        }
    }

    fn page(&self) -> Option<&dyn conveyor_web::app::Page> {
        Some(self)
    }

    fn commands(&self) -> Vec<(Mount, clap::Command)> {
        use conveyor_web::app::command_with;
        vec![
            (
                Mount::Bench,
                command_with::<bench::LongtaskBench>(
                    "longtask",
                    "The longtask count with progress reporting against the bare loop",
                ),
            ),
            (
                Mount::Load,
                command_with::<load::LongtaskLoad>("longtask", "The longtask seed's k6 scenarios"),
            ),
        ]
    }

    fn run<'a>(
        &'a self,
        mount: Mount,
        _name: &'a str,
        matches: &'a clap::ArgMatches,
        _platform: &'a conveyor_web::app::Platform,
    ) -> futures_util::future::BoxFuture<'a, conveyor_web::fail::Result<()>> {
        use clap::FromArgMatches;
        Box::pin(async move {
            if mount == Mount::Bench {
                bench::run(bench::LongtaskBench::from_arg_matches(matches)?).await
            } else {
                load::run(load::LongtaskLoad::from_arg_matches(matches)?).await
            }
        })
    }
}
