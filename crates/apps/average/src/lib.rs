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
//! - [`dashboard`]: its dashboard page (submit a job, set W, the last jobs, live).
//! - [`numbers`]: the file formats and the arithmetic (pure).
//! - [`plan`]: the reduction tree and the file names.
//! - [`storage`]: files through `object_store` (a local directory, or S3).
//! - [`tasks`]: the job kinds `average.generate`, `average.start`, `average.sum`,
//!   `average.clean`.
//! - [`db`]: the `average_job` rows.
//! - [`cli`]: `conveyor average run`, submit a job to a server and watch it.
//! - [`api`]: `/api/average/jobs...` and `/api/average/workers`.

pub mod api;
pub mod cli;
pub mod dashboard;
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

/// The app, as the binary lists it: its kinds on queue `average`, its routes behind the
/// operator's token, and the worker gauges an HTTP process publishes.
pub struct Average {
    /// Where the files live.
    pub files: Storage,
}

impl Default for Average {
    /// Files in memory, until [`App::configure`](conveyor_web::app::App::configure) opens
    /// the configured store.
    fn default() -> Self {
        Self {
            files: Storage::in_memory(),
        }
    }
}

/// average's settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "average_settings")]
#[command(next_help_heading = "average settings")]
pub struct Settings {
    /// Where average keeps its files: a directory, or s3://bucket[/prefix] (S3 settings
    /// from the AWS_* environment)
    #[arg(long, env = "AVERAGE_STORE", default_value = "average-data")]
    pub average_store: String,
}

impl conveyor_web::app::App for Average {
    fn name(&self) -> &'static str {
        "average"
    }

    fn migrate<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, conveyor_queue::Result<()>> {
        Box::pin(migrate(store))
    }

    fn register(&self, registry: &mut conveyor_queue::Registry) {
        register(registry, self.files.clone());
    }

    fn routes(&self, _store: &conveyor_queue::Store) -> conveyor_web::Surface {
        conveyor_web::Surface {
            guarded: router(self.files.clone()),
            ..conveyor_web::Surface::default()
        }
    }

    fn background(
        &self,
        state: &conveyor_web::AppState,
    ) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
        let state = state.clone();
        vec![conveyor_web::app::every(
            std::time::Duration::from_secs(5),
            "average's worker metrics",
            move || {
                let state = state.clone();
                async move {
                    api::worker_metrics(&state)
                        .await
                        .map(drop)
                        .map_err(|e| e.detail)
                }
            },
        )]
    }

    fn page(&self) -> Option<&dyn conveyor_web::app::Page> {
        Some(self)
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <Settings as clap::Args>::augment_args(command)
            .about("average: submit an averaging job and watch it")
    }

    fn configure(
        &mut self,
        matches: &clap::ArgMatches,
        _platform: &conveyor_web::app::Platform,
    ) -> conveyor_web::fail::Result<()> {
        use clap::FromArgMatches;
        use conveyor_web::fail::Context;
        let settings = Settings::from_arg_matches(matches)?;
        self.files = Storage::open(&settings.average_store)
            .with_context(|| format!("average's store {}", settings.average_store))?;
        Ok(())
    }

    fn commands(&self) -> Vec<(conveyor_web::app::Mount, clap::Command)> {
        vec![(
            conveyor_web::app::Mount::Top,
            conveyor_web::app::command_of::<cli::AverageCommand>(
                "average",
                "average: submit an averaging job and watch it",
            ),
        )]
    }

    fn run<'a>(
        &'a self,
        _mount: conveyor_web::app::Mount,
        _name: &'a str,
        matches: &'a clap::ArgMatches,
        platform: &'a conveyor_web::app::Platform,
    ) -> futures_util::future::BoxFuture<'a, conveyor_web::fail::Result<()>> {
        use clap::FromArgMatches;
        Box::pin(async move {
            cli::run(platform, cli::AverageCommand::from_arg_matches(matches)?).await
        })
    }
}

#[cfg(test)]
mod settings_tests {
    use clap::{Args, FromArgMatches};

    #[test]
    fn the_store_defaults_to_the_documented_directory() {
        let command = super::Settings::augment_args(clap::Command::new("up").no_binary_name(true));
        let matches = command.try_get_matches_from(Vec::<String>::new()).unwrap();
        let settings = super::Settings::from_arg_matches(&matches).unwrap();
        assert_eq!(settings.average_store, "average-data");
    }
}
