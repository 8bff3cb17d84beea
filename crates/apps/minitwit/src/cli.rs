//! `conveyor minitwit simulate`: the course's simulator against a running API;
//! `conveyor minitwit flag`: the original's `flag_tool`, hiding messages by id.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use conveyor_web::bail;
use conveyor_web::fail::Context;

use conveyor_web::app::Platform;

/// `conveyor minitwit ...`
#[derive(Debug, Subcommand)]
pub enum MinitwitCommand {
    /// Replay a scenario file against the simulator API, one request at a time
    Simulate(SimulateArgs),
    /// Fill the database with generated users and messages (for benchmarks)
    Seed {
        /// Users to add (`seed user 1`..., password `password`)
        #[arg(long, default_value_t = 1000)]
        users: i64,
        /// Messages to add, spread over the users
        #[arg(long, default_value_t = 1_000_000)]
        messages: i64,
    },
    /// Hide messages (or show them again with --unflag)
    Flag {
        /// Message ids
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Show them again instead
        #[arg(long)]
        unflag: bool,
    },
}

/// `conveyor minitwit simulate` options.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The scenario: tab-separated id, delay, timestamp, command, user, arguments
    #[arg(
        long,
        required_unless_present = "generate",
        conflicts_with = "generate"
    )]
    pub scenario: Option<PathBuf>,
    /// Instead of a file, a scenario of the course's shape made here with this many actions
    /// (registrations, tweets, follows, unfollows; the same for the same --seed)
    #[arg(long)]
    pub generate: Option<usize>,
    /// Seed of --generate
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The simulator API's base URL
    #[arg(long, default_value = "http://127.0.0.1:5001")]
    pub url: String,
    /// Replay only the first N actions
    #[arg(long)]
    pub limit: Option<usize>,
    /// Per-request timeout in milliseconds, as the course's simulator (0.3 s)
    #[arg(long, default_value_t = 300)]
    pub timeout_ms: u64,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs a MiniTwit command.
///
/// # Errors
/// An unreadable scenario, an unreachable database; a replay with errors exits non-zero.
pub async fn run(platform: &Platform, command: MinitwitCommand) -> conveyor_web::fail::Result<()> {
    match command {
        MinitwitCommand::Simulate(args) => {
            let mut actions = match (&args.scenario, args.generate) {
                (Some(path), _) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    crate::simulate::parse(&text)?
                }
                (None, Some(n)) if (1..=10_000_000).contains(&n) => {
                    crate::simulate::generate(n, args.seed)
                }
                (None, _) => bail!("--generate takes 1 to 10000000 actions"),
            };
            if let Some(limit) = args.limit {
                actions.truncate(limit);
            }
            let timeout = Duration::from_millis(args.timeout_ms);
            let url = args.url.clone();
            let report = tokio::task::spawn_blocking(move || {
                crate::simulate::replay(&url, &actions, timeout)
            })
            .await??;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
            if report.errors > 0 || !report.latest_matches {
                bail!("{} errors during the replay", report.errors);
            }
            Ok(())
        }
        MinitwitCommand::Seed { users, messages } => {
            if !((1..=1_000_000).contains(&users) && (0..=100_000_000).contains(&messages)) {
                bail!("seed at most 1,000,000 users and 100,000,000 messages");
            }
            let store = connect(platform).await?;
            let hash = crate::Hasher::standard().hash("password");
            let started = std::time::Instant::now();
            let now = crate::now_seconds();
            let added = crate::db::seed(&store, users, messages, &hash, now).await?;
            println!(
                "added {added} messages over {users} users in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            store.close().await;
            Ok(())
        }
        MinitwitCommand::Flag { ids, unflag } => {
            let store = connect(platform).await?;
            let changed = crate::db::set_flagged(&store, &ids, !unflag).await?;
            println!(
                "{} {changed} of {} messages",
                if unflag { "unflagged" } else { "flagged" },
                ids.len()
            );
            store.close().await;
            Ok(())
        }
    }
}

/// The database with the engine's and MiniTwit's tables.
async fn connect(platform: &Platform) -> conveyor_web::fail::Result<conveyor_queue::Store> {
    let store = platform.store().await?;
    crate::migrate(&store)
        .await
        .context("applying MiniTwit's migrations")?;
    Ok(store)
}
