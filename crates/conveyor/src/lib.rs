//! # conveyor: one binary for every role
//!
//! ## Layout
//! - [`config`]: settings from defaults, a TOML file, environment and flags.
//! - [`alerts`]: `POST /api/alerts/webhook`, Alertmanager's notifications to a chat.
//! - [`app`]: the list of apps, and the roles (`up`, `serve`, `work`) wired from the engine,
//!   the HTTP layer and the apps; shutdown on Ctrl-C and SIGTERM.
//! - [`jobs_cmd`]: `conveyor jobs list|show|enqueue|cancel`, straight on the database.
//! - [`bench`]: `conveyor bench queue`, the engine's benchmark.
//!
//! [`main`] builds the command line (the platform's commands, each app's settings on the
//! commands that run the apps, each app's own commands), parses it and dispatches.

pub mod alerts;
pub mod app;
pub mod bench;
pub mod config;
pub mod jobs_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use conveyor_web::app::{App, Mount};

use crate::config::{Config, Database, File, Overrides, Token};

/// Durable jobs on SQLite or PostgreSQL, with the five Conveyor apps.
#[derive(Debug, Parser)]
#[command(name = "conveyor", version, about)]
pub struct Cli {
    /// A TOML file of settings (keys as the flags, with underscores)
    #[arg(long, short, env = "CONVEYOR_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "CONVEYOR_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The platform's commands; the apps add theirs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: HTTP, workers, scheduler, cleaner (the default set-up)
    Up(Overrides),
    /// The HTTP API only
    Serve(Overrides),
    /// Workers (with the scheduler and the cleaner) only
    Work(Overrides),
    /// Apply database migrations and exit
    Migrate(Database),
    /// Inspect and steer jobs directly on the database
    Jobs {
        /// The database.
        #[command(flatten)]
        database: Database,
        /// The token `enqueue --stdin` sends.
        #[command(flatten)]
        token: Token,
        /// Which jobs command.
        #[command(subcommand)]
        command: jobs_cmd::JobsCommand,
    },
    /// Benchmarks
    Bench {
        /// Which benchmark.
        #[command(subcommand)]
        command: bench::BenchCommand,
    },
}

/// The commands that run every app, and so take every app's settings.
const RUNS_APPS: [&str; 3] = ["up", "serve", "work"];

/// The whole command line: the platform's commands, each app's settings on the commands
/// that run the apps, and each app's own commands (with its settings, the database and the
/// token, for a command that talks to a server).
pub fn command_line(apps: &[Box<dyn App>]) -> clap::Command {
    use clap::Args;
    let mut command = Cli::command().subcommand(
        clap::Command::new("load")
            .about("Load tests against a running server")
            .subcommand_required(true),
    );
    for name in RUNS_APPS {
        command = command.mut_subcommand(name, |mut c| {
            // An `Args` derive sets the command's about from its doc comment: keep ours.
            let about = c.get_about().cloned();
            for app in apps {
                c = app.settings(c);
            }
            match about {
                Some(about) => c.about(about),
                None => c,
            }
        });
    }
    for app in apps {
        for (mount, own) in app.commands() {
            match mount {
                Mount::Top => {
                    let about = own.get_about().cloned().unwrap_or_default();
                    let own = Token::augment_args(Database::augment_args(app.settings(own)))
                        .mut_args(|a| a.global(true))
                        .about(about);
                    command = command.subcommand(own);
                }
                Mount::Bench => command = command.mut_subcommand("bench", |b| b.subcommand(own)),
                Mount::Load => command = command.mut_subcommand("load", |l| l.subcommand(own)),
            }
        }
    }
    command
}

/// Parses the command line, runs the command, and reports errors on stderr.
pub fn main() -> ExitCode {
    let apps = app::apps();
    let mut command = command_line(&apps);
    if let Some(path) = config_path() {
        match File::read(&path).and_then(|file| file.apply(command)) {
            Ok(with_file) => command = with_file,
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::from(2);
            }
        }
    }
    let matches = command.get_matches();
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
    match runtime.block_on(run(apps, &matches)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Each cause once: many errors repeat their source in their own message.
            eprintln!("error: {}", app::chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// `--config`/`-c` or `CONVEYOR_CONFIG`, found before parsing (the file's values become the
/// flags' defaults, so it is read first).
fn config_path() -> Option<PathBuf> {
    let mut args = std::env::args_os().skip(1);
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        if text == "--config" || text == "-c" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = text.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
        if text == "--" {
            break;
        }
    }
    std::env::var_os("CONVEYOR_CONFIG").map(PathBuf::from)
}

/// Runs one parsed command line.
///
/// # Errors
/// Configuration errors, an unreachable database, a failed bind.
pub async fn run(apps: Vec<Box<dyn App>>, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let log_format = matches.get_one::<String>("log_format").cloned();
    let log_json = log_format.as_deref() == Some("json");
    if let Some((name, sub)) = matches.subcommand()
        && let Some((index, mount, own)) = app_command(&apps, name, sub)
    {
        app::init_logging(log_json, false);
        return run_app_command(apps, index, mount, own, log_format).await;
    }
    let cli = Cli::from_arg_matches(matches)?;
    let server = matches!(
        cli.command,
        Command::Up(_) | Command::Serve(_) | Command::Work(_) | Command::Migrate(_)
    );
    app::init_logging(log_json, server);
    let resolve = |mut overrides: Overrides| {
        overrides.log_format.clone_from(&log_format);
        Config::resolve(overrides)
    };
    match cli.command {
        Command::Up(o) | Command::Serve(o) | Command::Work(o) => {
            let roles = match matches.subcommand_name() {
                Some("serve") => app::Roles::HTTP,
                Some("work") => app::Roles::WORK,
                _ => app::Roles::ALL,
            };
            let config = resolve(o)?;
            let sub = matches.subcommand().map(|(_, m)| m).unwrap_or(matches);
            let apps = app::configure(apps, sub, &config)?;
            app::run_roles(&config, &apps, roles).await
        }
        Command::Migrate(database) => {
            let config = resolve(Overrides {
                database,
                ..Overrides::default()
            })?;
            app::connect(&config, &apps).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Jobs {
            database,
            token,
            command,
        } => {
            let config = resolve(Overrides {
                database,
                token,
                ..Overrides::default()
            })?;
            jobs_cmd::run(&config, &apps, command).await
        }
        Command::Bench { command } => bench::run(command).await,
    }
}

/// Which app's command `name` (with its matches `sub`) is, if any: the app's index, where
/// the command goes, and the command's own matches.
fn app_command<'m>(
    apps: &[Box<dyn App>],
    name: &str,
    sub: &'m clap::ArgMatches,
) -> Option<(usize, Mount, &'m clap::ArgMatches)> {
    let (mount, name, own) = match name {
        "bench" | "load" => {
            let (inner, own) = sub.subcommand()?;
            let mount = if name == "bench" {
                Mount::Bench
            } else {
                Mount::Load
            };
            (mount, inner, own)
        }
        _ => (Mount::Top, name, sub),
    };
    apps.iter().enumerate().find_map(|(index, app)| {
        app.commands()
            .iter()
            .any(|(m, c)| *m == mount && c.get_name() == name)
            .then_some((index, mount, own))
    })
}

async fn run_app_command(
    apps: Vec<Box<dyn App>>,
    index: usize,
    mount: Mount,
    matches: &clap::ArgMatches,
    log_format: Option<String>,
) -> anyhow::Result<()> {
    use clap::FromArgMatches;
    let Some(mut app) = apps.into_iter().nth(index) else {
        anyhow::bail!("no such app");
    };
    let failed = |e: conveyor_web::fail::Error| anyhow::anyhow!(app::chain(&*e));
    let name = match mount {
        Mount::Top => app
            .commands()
            .into_iter()
            .find(|(m, _)| *m == Mount::Top)
            .map(|(_, c)| c.get_name().to_owned())
            .unwrap_or_default(),
        Mount::Bench | Mount::Load => app.name().to_owned(),
    };
    let config = if mount == Mount::Top {
        Config::resolve(Overrides {
            database: Database::from_arg_matches(matches)?,
            token: Token::from_arg_matches(matches)?,
            log_format,
            ..Overrides::default()
        })?
    } else {
        Config::resolve(Overrides::default())?
    };
    let platform = config.platform();
    if mount == Mount::Top {
        app.configure(matches, &platform).map_err(failed)?;
    }
    app.run(mount, &name, matches, &platform)
        .await
        .map_err(failed)
}
