//! # conveyor-mining: the Frege repository-mining pipeline
//!
//! Seed `000`: indexers discover repositories on code hosts; a processor clones each one,
//! lists its files and starts analysis of every file with an analyzer as one engine group;
//! analyzers compute per-file code metrics; the group's continuation removes the clone,
//! exactly once. Results are served over REST and a live stream.
//!
//! ## Layout (reading order)
//! - [`indexer`]: the [`indexer::Indexer`] trait and the GitHub, GitLab, Bitbucket and list
//!   indexers (no SQL, no queue).
//! - [`analyzer`]: the [`analyzer::Analyzer`] trait, tokei, tree-sitter, commit
//!   messages (no SQL, no queue).
//! - [`git`]: clone within bounds, HEAD, files, commits.
//! - [`jobs`]: the pipeline as job kinds; the feeder's back-pressure.
//! - [`pool`]: the analysis threads.
//! - [`db`]: the rows.
//! - [`cli`]: `conveyor mining run|key`, analyse repositories here, make API keys.
//! - [`bench`]: `conveyor bench mining`, the pipeline against its analyzers called directly.
//! - [`export`]: every file or function as NDJSON or CSV, streamed.
//! - [`api`]: `/api/mining/...`; [`key`]: API keys and their throttle.

pub mod analyzer;
pub mod api;
pub mod bench;
pub mod cli;
pub mod dashboard;
pub mod db;
pub mod export;
pub mod git;
pub mod indexer;
pub mod jobs;
pub mod key;
pub mod pool;
pub mod source;

pub use api::router;
pub use jobs::{FETCH_QUEUE, Mining, QUEUE, Settings, register};
pub use key::KeyGate;
pub use source::SourcePolicy;

/// Applies the app's migrations (its tables beside the engine's).
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

/// Creates a disabled indexer of every kind `mining` knows, named after its kind, unless one
/// exists (edits made through the API stay).
///
/// # Errors
/// The database's.
pub async fn ensure_indexers(store: &conveyor_queue::Store, mining: &Mining) -> sqlx::Result<()> {
    let now = conveyor_queue::clock::now_ms();
    for name in mining.hosts.names() {
        let Some(host) = mining.hosts.get(name) else {
            continue;
        };
        let (settings, cursor) = host.defaults();
        db::ensure_indexer(
            store,
            name,
            name,
            &settings.to_string(),
            &cursor.to_string(),
            now,
        )
        .await?;
    }
    Ok(())
}

/// The app, as the binary lists it.
#[derive(Clone)]
pub struct MiningApp {
    /// Settings, analyzers, hosts.
    pub mining: Mining,
    /// Requests need an API key (`MINING_REQUIRE_KEY`).
    pub require_key: bool,
    /// The operator's tokens, which pass mining's gate too.
    pub auth: conveyor_web::auth::Auth,
    /// When the enabled indexers run: a cron expression (UTC), or `off`.
    pub index: String,
}

impl Default for MiningApp {
    fn default() -> Self {
        Self {
            mining: Mining::new(Settings::default()).expect("an HTTP client with no options"),
            require_key: false,
            auth: conveyor_web::auth::Auth::open(),
            index: DEFAULT_INDEX.to_owned(),
        }
    }
}

/// When enabled indexers run by default: every minute.
const DEFAULT_INDEX: &str = "* * * * *";

/// mining's settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "mining_settings")]
#[command(next_help_heading = "mining settings")]
pub struct Flags {
    /// mining's download area, where clones live while analysed; shared by the workers of
    /// several machines
    #[arg(long, env = "MINING_DOWNLOADS", default_value = "mining-downloads")]
    pub mining_downloads: String,
    /// When mining's enabled indexers run: a cron expression (UTC), or "off"
    #[arg(long, env = "MINING_INDEX", default_value = DEFAULT_INDEX)]
    pub mining_index: String,
    /// Refuse /api/mining requests without an API key; writes need an admin key
    #[arg(long, env = "MINING_REQUIRE_KEY", default_value_t = false, action = clap::ArgAction::Set)]
    pub mining_require_key: bool,
    /// mining may clone local paths and file:// URLs (`mining run` always may)
    #[arg(long, env = "MINING_ALLOW_LOCAL", default_value_t = false, action = clap::ArgAction::Set)]
    pub mining_allow_local: bool,
    /// mining may clone from hosts on loopback, link-local or private addresses
    #[arg(long, env = "MINING_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub mining_allow_private: bool,
    /// A token for the github indexer (higher rate limits) [default: none]
    #[arg(long, env = "MINING_GITHUB_TOKEN", value_parser = secret, hide_env_values = true)]
    pub mining_github_token: Option<secrecy::SecretString>,
    /// A token for the gitlab indexer [default: none]
    #[arg(long, env = "GITLAB_TOKEN", value_parser = secret, hide_env_values = true)]
    pub gitlab_token: Option<secrecy::SecretString>,
}

/// A flag's value as a secret: never printed by `Debug`.
fn secret(text: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(text))
}

impl conveyor_web::app::App for MiningApp {
    fn name(&self) -> &'static str {
        "mining"
    }

    fn migrate<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, conveyor_queue::Result<()>> {
        Box::pin(migrate(store))
    }

    fn prepare<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, Result<(), conveyor_web::app::SetupError>> {
        Box::pin(async move {
            ensure_indexers(store, &self.mining).await?;
            Ok(())
        })
    }

    fn register(&self, registry: &mut conveyor_queue::Registry) {
        register(registry, self.mining.clone());
    }

    fn schedules(&self) -> Result<Vec<conveyor_queue::Schedule>, conveyor_queue::Error> {
        if self.index == "off" {
            return Ok(Vec::new());
        }
        Ok(vec![conveyor_queue::Schedule::new(
            "mining-index",
            &self.index,
            jobs::tick_job(),
        )?])
    }

    /// Public to the token gate: mining's own gate takes the operator's token or a key.
    fn routes(&self, store: &conveyor_queue::Store) -> conveyor_web::Surface {
        let gate = key::gate_over(store.clone(), self.require_key, self.auth.clone());
        conveyor_web::Surface {
            public: router(self.mining.clone(), gate),
            ..conveyor_web::Surface::default()
        }
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <Flags as clap::Args>::augment_args(command)
    }

    fn configure(
        &mut self,
        matches: &clap::ArgMatches,
        platform: &conveyor_web::app::Platform,
    ) -> conveyor_web::fail::Result<()> {
        use clap::FromArgMatches;
        let flags = Flags::from_arg_matches(matches)?;
        self.mining = Mining::new(Settings {
            downloads: flags.mining_downloads.into(),
            sources: SourcePolicy {
                allow_local: flags.mining_allow_local,
                allow_private: flags.mining_allow_private,
            },
            github_token: flags.mining_github_token,
            gitlab_token: flags.gitlab_token,
            ..Settings::default()
        })?;
        self.require_key = flags.mining_require_key;
        self.auth = platform.auth.clone();
        self.index = flags.mining_index;
        Ok(())
    }

    fn commands(&self) -> Vec<(conveyor_web::app::Mount, clap::Command)> {
        use conveyor_web::app::{Mount, command_of, command_with};
        vec![
            (
                Mount::Top,
                command_of::<cli::MiningCommand>(
                    "mining",
                    "mining: analyse repositories end to end here; export; API keys",
                ),
            ),
            (
                Mount::Bench,
                command_with::<bench::MiningBench>(
                    "mining",
                    "mining's pipeline against its analyzers called directly on the same files",
                ),
            ),
        ]
    }

    fn run<'a>(
        &'a self,
        mount: conveyor_web::app::Mount,
        _name: &'a str,
        matches: &'a clap::ArgMatches,
        platform: &'a conveyor_web::app::Platform,
    ) -> futures_util::future::BoxFuture<'a, conveyor_web::fail::Result<()>> {
        use clap::FromArgMatches;
        Box::pin(async move {
            if mount == conveyor_web::app::Mount::Bench {
                bench::run(bench::MiningBench::from_arg_matches(matches)?).await
            } else {
                cli::run(
                    self,
                    platform,
                    cli::MiningCommand::from_arg_matches(matches)?,
                )
                .await
            }
        })
    }

    fn page(&self) -> Option<&dyn conveyor_web::app::Page> {
        Some(self)
    }
}

#[cfg(test)]
mod settings_tests {
    use clap::{Args, FromArgMatches};

    #[test]
    fn settings_default_to_the_documented_values() {
        let command = super::Flags::augment_args(clap::Command::new("up").no_binary_name(true));
        let matches = command.try_get_matches_from(Vec::<String>::new()).unwrap();
        let flags = super::Flags::from_arg_matches(&matches).unwrap();
        assert_eq!(flags.mining_downloads, "mining-downloads");
        assert_eq!(flags.mining_index, "* * * * *");
        assert!(!flags.mining_require_key);
        assert!(!flags.mining_allow_local && !flags.mining_allow_private);
    }
}
