//! `conveyor mining run <git-url-or-path>...`: analyses repositories end to end in this
//! process (workers included) on the configured database, with a progress bar, then prints
//! a summary; `conveyor mining key create` makes an API key for third parties.

use std::time::{Duration, Instant};

use crate::db;
use clap::{Args, Subcommand};
use conveyor_queue::{QueueConfig, Registry, Worker};
use conveyor_web::bail;
use conveyor_web::fail::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use conveyor_web::app::Platform;

/// `conveyor mining ...`
#[derive(Debug, Subcommand)]
pub enum MiningCommand {
    /// Clone and analyse repositories here and now, then print a summary
    Run(RunArgs),
    /// Write every file's metrics, or every function's, to a file (NDJSON or CSV), as
    /// GET /api/mining/export streams them
    Export(ExportArgs),
    /// API keys for /api/mining
    Key {
        /// Which key command.
        #[command(subcommand)]
        command: KeyCommand,
    },
}

/// `conveyor mining export` options.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where to write
    #[arg(long, short)]
    pub output: std::path::PathBuf,
    /// ndjson or csv
    #[arg(long, default_value = "ndjson")]
    pub format: String,
    /// file (a row per file) or function (a row per function)
    #[arg(long, default_value = "file")]
    pub level: String,
    /// Only this repository (its id)
    #[arg(long)]
    pub repository: Option<i64>,
    /// Only this language (tokei's names: Rust, C++, ...)
    #[arg(long)]
    pub language: Option<String>,
    /// Only this state: pending, analyzed or failed
    #[arg(long)]
    pub state: Option<String>,
}

/// `conveyor mining run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Git URLs (https, ssh, file://) or local paths
    #[arg(required = true)]
    pub repositories: Vec<String>,
    /// Analysis threads [default: the number of cores]
    #[arg(long)]
    pub workers: Option<usize>,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

/// `conveyor mining key ...`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it (it is shown only once)
    Create {
        /// Who it is for
        #[arg(long)]
        name: String,
        /// Requests a minute
        #[arg(long, default_value_t = 500)]
        per_minute: i32,
        /// May change indexers and add repositories
        #[arg(long)]
        admin: bool,
    },
}

/// Runs a mining command.
///
/// # Errors
/// An unreachable database, or (for `run`) a repository that failed.
pub async fn run(
    mining: &crate::MiningApp,
    platform: &Platform,
    command: MiningCommand,
) -> conveyor_web::fail::Result<()> {
    let store = platform.store().await?;
    crate::migrate(&store)
        .await
        .context("applying mining's migrations")?;
    match command {
        MiningCommand::Key {
            command:
                KeyCommand::Create {
                    name,
                    per_minute,
                    admin,
                },
        } => {
            if !(1..=1_000_000).contains(&per_minute) {
                bail!("per_minute must be from 1 to 1000000");
            }
            let (id, key) = crate::key::create(&store, &name, per_minute, admin).await?;
            println!(
                "key {id} for {name:?} ({per_minute}/min{}):",
                if admin { ", admin" } else { "" }
            );
            println!("{key}");
            Ok(())
        }
        MiningCommand::Run(args) => analyse(mining, store, args).await,
        MiningCommand::Export(args) => export(&store, args).await,
    }
}

async fn analyse(
    app: &crate::MiningApp,
    store: conveyor_queue::Store,
    args: RunArgs,
) -> conveyor_web::fail::Result<()> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let threads = args.workers.unwrap_or(cores).max(1);
    let mining = crate::Mining::new(crate::Settings {
        downloads: app.mining.settings.downloads.clone(),
        analysis_threads: threads,
        // What the operator runs here may clone local paths and private hosts.
        sources: crate::SourcePolicy::TRUSTING,
        ..crate::Settings::default()
    })?;
    let mut registry = Registry::new();
    crate::register(&mut registry, mining.clone());
    let worker_config = conveyor_queue::WorkerConfig {
        queues: vec![
            QueueConfig {
                name: crate::QUEUE.into(),
                // Twice the threads: while one task writes results, another feeds a thread.
                concurrency: 2 * threads,
            },
            QueueConfig {
                name: crate::FETCH_QUEUE.into(),
                concurrency: 2,
            },
        ],
        ..conveyor_queue::WorkerConfig::default()
    };
    let stop = CancellationToken::new();
    let worker = Worker::new(store.clone(), registry, worker_config);
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });

    let started = Instant::now();
    let mut ids = Vec::new();
    for url in &args.repositories {
        let id = crate::api::add(&store, crate::SourcePolicy::TRUSTING, url)
            .await
            .map_err(|e| format!("{url}: {}", e.detail))?;
        ids.push(id);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} files {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rows = loop {
        let mut rows = Vec::new();
        for id in &ids {
            rows.push(
                db::repo(&store, *id)
                    .await?
                    .context("a repository vanished")?,
            );
        }
        let (mut total, mut done) = (0u64, 0u64);
        for row in &rows {
            total += row.files_total.unwrap_or(0) as u64;
            if row.state == db::RepoState::Analyzing {
                let pending = db::pending_files(&store, row.id).await? as u64;
                done += (row.files_total.unwrap_or(0) as u64).saturating_sub(pending);
            } else if matches!(row.state.as_str(), "analyzed" | "failed") {
                done += row.files_total.unwrap_or(0) as u64;
            }
        }
        bar.set_length(total);
        bar.set_position(done);
        let ended = rows
            .iter()
            .filter(|r| matches!(r.state.as_str(), "analyzed" | "failed"))
            .count();
        bar.set_message(format!("{ended}/{} repositories", rows.len()));
        if ended == rows.len() {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    stop.cancel();
    handle.await??;

    let mut summary = Vec::new();
    for row in &rows {
        let languages = db::language_totals(&store, Some(row.id)).await?;
        let commits = db::commit_kinds(&store, row.id).await?;
        summary.push(serde_json::json!({
            "repository": row, "languages": languages,
            "commits": commits.iter().map(|(k, n, fog)| serde_json::json!({"kind": k, "count": n, "readability": fog})).collect::<Vec<_>>(),
        }));
    }
    let files: i64 = rows
        .iter()
        .map(|r| i64::from(r.files_total.unwrap_or(0)))
        .sum();
    if args.json {
        println!(
            "{}",
            serde_json::json!({"seconds": seconds, "files": files, "repositories": summary})
        );
    } else {
        for (row, entry) in rows.iter().zip(&summary) {
            println!(
                "{} [{}] {} at {}: {} of {} files analysed",
                row.name,
                row.state,
                row.url,
                row.head_commit.as_deref().unwrap_or("-"),
                row.files_total.unwrap_or(0),
                row.files_listed.unwrap_or(0)
            );
            if let Some(error) = &row.error {
                println!("  error: {error}");
            }
            println!(
                "  {:<16} {:>6} {:>9} {:>9} {:>9} {:>11} {:>6}",
                "language", "files", "code", "comments", "functions", "cyclomatic", "MI"
            );
            for l in entry["languages"].as_array().into_iter().flatten() {
                let f = |k: &str| l[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}"));
                println!(
                    "  {:<16} {:>6} {:>9} {:>9} {:>9} {:>11} {:>6}",
                    l["language"].as_str().unwrap_or("?"),
                    f("files"),
                    f("code"),
                    f("comments"),
                    f("functions"),
                    f("cyclomatic"),
                    l["mi_mean"]
                        .as_f64()
                        .map_or("-".to_owned(), |v| format!("{v:.1}")),
                );
            }
            let kinds: Vec<String> = entry["commits"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| format!("{} {}", c["count"], c["kind"].as_str().unwrap_or("?")))
                .collect();
            if !kinds.is_empty() {
                println!("  commits: {}", kinds.join(", "));
            }
        }
        println!(
            "{files} files in {} repositories in {seconds:.2} s ({:.0} files/s)",
            rows.len(),
            files as f64 / seconds.max(1e-9)
        );
    }
    if rows.iter().any(|r| r.state == db::RepoState::Failed) {
        bail!("some repositories failed");
    }
    Ok(())
}

/// Writes the export to a file, a page of files at a time, with a progress bar.
async fn export(store: &conveyor_queue::Store, args: ExportArgs) -> conveyor_web::fail::Result<()> {
    use std::io::Write;
    let query = crate::api::ExportQuery {
        format: Some(args.format),
        level: Some(args.level),
        repository: args.repository,
        language: args.language,
        state: args.state,
        analyzed: None,
        failed: None,
    };
    let export = query.export().map_err(|e| e.detail)?;
    let total = crate::export::count(store, &export.filter).await?;
    let file = std::fs::File::create(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let bar = ProgressBar::new(u64::try_from(total).unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} files {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    if let Some(header) = export.header() {
        out.write_all(header.as_bytes())?;
    }
    let mut after = None;
    let mut rows = 0_usize;
    loop {
        let filter = db::FileFilter {
            after,
            ..export.filter.clone()
        };
        let files = db::files(store, &filter, crate::export::PAGE).await?;
        for file in &files {
            let (text, count) = export.rows(file);
            rows += count;
            out.write_all(text.as_bytes())?;
            bar.inc(1);
        }
        if (files.len() as i64) < crate::export::PAGE {
            break;
        }
        after = files.last().map(|f| f.id);
    }
    out.flush()
        .with_context(|| format!("writing {}", args.output.display()))?;
    bar.finish_and_clear();
    println!(
        "{rows} rows from {total} files written to {}",
        args.output.display()
    );
    Ok(())
}
