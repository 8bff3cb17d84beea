//! # conveyor: one binary for every role
//!
//! ## Layout
//! - [`config`]: settings from defaults, a TOML file, environment and flags.
//! - [`alerts`]: `POST /api/alerts/webhook`, Alertmanager's notifications to a chat.
//! - [`app`]: the roles (`up`, `serve`, `work`) wired from the engine, the HTTP layer and the
//!   apps' registries; shutdown on Ctrl-C and SIGTERM.
//! - [`jobs_cmd`]: `conveyor jobs list|show|enqueue|cancel`, straight on the database.
//! - [`bench`]: `conveyor bench queue|longtask`, the engine's and the count's benchmarks.
//! - [`load`]: `conveyor load longtask`, the seed's k6 scenarios against a live server.
//! - [`average_cmd`]: `conveyor average run`, submit and watch an averaging job.
//! - [`mining_bench`]: `conveyor bench mining`, the pipeline against direct analysis.
//! - [`mining_cmd`]: `conveyor mining run|key`, analyse repositories here, make API keys.
//! - [`minitwit_cmd`]: `conveyor minitwit simulate|flag`, the course's simulator and
//!   `flag_tool`.
//!
//! [`main`] parses the command line and dispatches.

pub mod alerts;
pub mod app;
pub mod average_cmd;
pub mod bench;
pub mod config;
pub mod jobs_cmd;
pub mod load;
pub mod mining_bench;
pub mod mining_cmd;
pub mod minitwit_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

/// Durable jobs on SQLite or PostgreSQL, with the five Conveyor apps.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version, about)]
pub struct Cli {
    /// A TOML file of settings (keys as the flags, with underscores)
    #[arg(long, short, env = "CONVEYOR_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Settings, each also readable from the environment or the config file.
    #[command(flatten)]
    pub settings: Overrides,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// What to run.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: HTTP, workers, scheduler, cleaner (the default set-up)
    Up,
    /// The HTTP API only
    Serve,
    /// Workers (with the scheduler and the cleaner) only
    Work,
    /// Apply database migrations and exit
    Migrate,
    /// Inspect and steer jobs directly on the database
    Jobs {
        /// Which jobs command.
        #[command(subcommand)]
        command: jobs_cmd::JobsCommand,
    },
    /// Load tests against a running server
    Load {
        /// Which load test.
        #[command(subcommand)]
        command: load::LoadCommand,
    },
    /// average: submit an averaging job and watch it
    Average {
        /// Which average command.
        #[command(subcommand)]
        command: average_cmd::AverageCommand,
    },
    /// mining: analyse repositories end to end here; API keys
    Mining {
        /// Which mining command.
        #[command(subcommand)]
        command: mining_cmd::MiningCommand,
    },
    /// MiniTwit's tools: replay a simulator scenario, flag messages
    Minitwit {
        /// Which MiniTwit command.
        #[command(subcommand)]
        command: minitwit_cmd::MinitwitCommand,
    },
    /// A fake GitHub API for repostats' tests and demos (rate limits, ETags, latency)
    FakeGithub(FakeGithubArgs),
    /// Benchmarks
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// Parses the command line, runs the command, and reports errors on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command line.
///
/// # Errors
/// Configuration errors, an unreachable database, a failed bind.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = match &cli.config {
        Some(path) => Overrides::from_file(path)?,
        None => Overrides::default(),
    };
    let config = Config::resolve(cli.settings.or(file))?;
    let server = matches!(
        cli.command,
        Command::Up | Command::Serve | Command::Work | Command::Migrate | Command::FakeGithub(_)
    );
    app::init_logging(config.log_json, server);
    match cli.command {
        Command::Up => app::run_roles(&config, app::Roles::ALL).await,
        Command::Serve => app::run_roles(&config, app::Roles::HTTP).await,
        Command::Work => app::run_roles(&config, app::Roles::WORK).await,
        Command::Migrate => {
            app::connect(&config).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Jobs { command } => jobs_cmd::run(&config, command).await,
        Command::Bench { command } => bench::run(command).await,
        Command::Load { command } => load::run(command).await,
        Command::Minitwit { command } => minitwit_cmd::run(&config, command).await,
        Command::Average { command } => average_cmd::run(&config, command).await,
        Command::Mining { command } => mining_cmd::run(&config, command).await,
        Command::FakeGithub(args) => fake_github(args).await,
    }
}

/// An HTTP client for a Conveyor server's guarded routes: it sends the first of
/// `CONVEYOR_API_TOKEN`'s tokens, if set, as `Authorization: Bearer` (marked sensitive, so
/// reqwest never shows it in its `Debug` output).
///
/// # Errors
/// When the token cannot be a header or the client cannot be built.
pub fn api_client(
    config: &Config,
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::Client> {
    use secrecy::ExposeSecret;
    conveyor_web::install_tls_provider();
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = &config.api_token {
        let mut value =
            reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| anyhow::anyhow!("api_token: not a valid header value"))?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .default_headers(headers)
        .build()?)
}

/// `conveyor fake-github` options.
#[derive(Debug, clap::Args)]
pub struct FakeGithubArgs {
    /// Address to serve on
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: std::net::SocketAddr,
    /// A directory laid out like shared/data/github/; without it, generated data
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Generated repositories (without --data)
    #[arg(long, default_value_t = 150)]
    pub repos: usize,
    /// Latency added to every answer, in milliseconds
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Core requests per window and token (GitHub: 60 anonymous, 5000 with a token)
    #[arg(long, default_value_t = 5000)]
    pub core_limit: i64,
    /// Search requests per window and token
    #[arg(long, default_value_t = 30)]
    pub search_limit: i64,
    /// Length of a rate window, in seconds
    #[arg(long, default_value_t = 3600)]
    pub window_seconds: u64,
    /// Every n-th request answers 429 with retry-after (0: never)
    #[arg(long, default_value_t = 0)]
    pub throttle_every: u64,
}

async fn fake_github(args: FakeGithubArgs) -> anyhow::Result<()> {
    use conveyor_repostats::fake::{Fake, FakeConfig};
    let config = FakeConfig {
        latency: std::time::Duration::from_millis(args.latency_ms),
        core_limit: args.core_limit,
        search_limit: args.search_limit,
        window: std::time::Duration::from_secs(args.window_seconds),
        throttle_every: args.throttle_every,
    };
    let fake = match &args.data {
        Some(dir) => Fake::from_dir(dir, config)?,
        None => Fake::generated(args.repos, config),
    };
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(address = %args.addr, "fake GitHub serving; point GITHUB_API_URL at it");
    let stop = app::shutdown_signal();
    conveyor_web::serve(
        listener,
        std::sync::Arc::new(fake).router(),
        stop.cancelled_owned(),
    )
    .await?;
    Ok(())
}
