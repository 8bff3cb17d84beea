//! `conveyor bench mining --path DIR`: files analysed per second through the whole pipeline
//! (clone, listing, engine jobs, analysis, results written) against the same analyzers
//! (the tree-sitter metrics, tokei where no grammar serves) called directly on the same
//! files, in one process, with the same number of threads. Runs alternate so drift hits
//! both alike.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::analyzer::{self, Analyzers, Source};
use clap::Args;
use conveyor_queue::scratch::ScratchDb;
use conveyor_queue::{QueueConfig, Registry, Worker, WorkerConfig};
use conveyor_web::bail;
use conveyor_web::fail::Context;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// `conveyor bench mining` options.
#[derive(Debug, Clone, Args)]
pub struct MiningBench {
    /// A directory of sources (copied into a fresh git repository first)
    #[arg(long)]
    pub path: PathBuf,
    /// Threads for the direct run and analysis slots for the pipeline [default: cores]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Timed runs of each
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Files per analysis task in the pipeline [default: the setting's]
    #[arg(long)]
    pub files_per_task: Option<usize>,
    /// Most bytes per analysis task in the pipeline [default: the setting's]
    #[arg(long)]
    pub task_bytes: Option<u64>,
    /// postgres://... to run the pipeline on PostgreSQL; default SQLite
    #[arg(long)]
    pub on: Option<String>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// When the directory cannot be copied or committed, or a pipeline run fails.
pub async fn run(options: MiningBench) -> conveyor_web::fail::Result<()> {
    let report = measure(&options).await?;
    if options.json {
        println!("{report}");
    } else {
        println!(
            "{} files ({} bytes), {} threads, median of {} runs",
            report["files"], report["bytes"], report["threads"], report["runs"]
        );
        println!(
            "direct:   {:.1} files/s",
            report["direct_files_per_second"].as_f64().unwrap_or(0.0)
        );
        println!(
            "pipeline: {:.1} files/s",
            report["pipeline_files_per_second"].as_f64().unwrap_or(0.0)
        );
        println!("ratio:    {:.3}", report["ratio"].as_f64().unwrap_or(0.0));
        if let Some(phases) = report["pipeline_phases_ms"].as_array() {
            println!("pipeline runs, ms after submission (from the job table):");
            for phase in phases {
                println!("  {phase}");
            }
        }
    }
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> conveyor_web::fail::Result<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=bench", "-c", "user.email=bench@localhost"])
        .args(args)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

async fn measure(options: &MiningBench) -> conveyor_web::fail::Result<Value> {
    let threads = options
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from))
        .max(1);
    let work = std::env::temp_dir().join(format!("conveyor-bench-mining-{}", std::process::id()));
    let repo = work.join("repo");
    std::fs::create_dir_all(&work)?;
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&options.path)
        .arg(&repo)
        .status()?;
    if !copied.success() {
        bail!("cannot copy {}", options.path.display());
    }
    let _ = std::fs::remove_dir_all(repo.join(".git"));
    git(&repo, &["init", "-q"])?;
    git(&repo, &["add", "-A", "-f"])?;
    git(&repo, &["commit", "-q", "-m", "bench"])?;
    // Objects in a pack, as every clone holds them, not one loose file each as freshly
    // added: for the mixed tree's 1,446 blobs git's CPU (`perf stat`) is 40-50 ms packed
    // against 109 ms loose to read them, 3-5 ms against 42 ms for `ls-tree -l`. The
    // pipeline's rate moved within this machine's noise.
    git(&repo, &["repack", "-a", "-d", "-q"])?;

    // The files the pipeline will analyse: tracked, with an analyzer, under the size cap.
    let settings = crate::Settings::default();
    let analyzers = Analyzers::standard();
    let listed = git(&repo, &["ls-files", "-z"])?;
    let mut files: Vec<(String, &'static str, Vec<u8>)> = Vec::new();
    for path in listed.split('\0').filter(|p| !p.is_empty()) {
        let Some(language) = analyzer::language_of(path) else {
            continue;
        };
        if !analyzers.serves(language) {
            continue;
        }
        let bytes = std::fs::read(repo.join(path))?;
        if bytes.len() as u64 <= settings.file_max_bytes {
            files.push((path.to_owned(), language, bytes));
        }
    }
    if files.is_empty() {
        bail!("no file under {} has an analyzer", options.path.display());
    }
    let bytes: usize = files.iter().map(|f| f.2.len()).sum();

    let (mut direct, mut pipeline, mut phases) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..options.runs.max(1) {
        direct.push(direct_rate(&analyzers, &files, threads));
        let (rate, phase) = pipeline_rate(
            options,
            &repo,
            &work.join(format!("downloads-{run}")),
            threads,
        )
        .await?;
        pipeline.push(rate);
        phases.push(phase);
    }
    let _ = std::fs::remove_dir_all(&work);
    let (direct, pipeline) = (median(direct), median(pipeline));
    Ok(json!({
        "files": files.len(), "bytes": bytes, "threads": threads, "runs": options.runs.max(1),
        "direct_files_per_second": direct, "pipeline_files_per_second": pipeline,
        "ratio": pipeline / direct, "pipeline_phases_ms": phases,
    }))
}

/// Files a second with `threads` threads pulling files from a shared index.
fn direct_rate(
    analyzers: &Analyzers,
    files: &[(String, &'static str, Vec<u8>)],
    threads: usize,
) -> f64 {
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, language, bytes)) = files.get(i) else {
                        break;
                    };
                    std::hint::black_box(analyzers.analyze(&Source {
                        path,
                        language,
                        bytes,
                    }));
                }
            });
        }
    });
    files.len() as f64 / started.elapsed().as_secs_f64()
}

/// Files a second from submission to the repository's `analyzed`, on a fresh database, and
/// where the time went (see [`phases`]).
async fn pipeline_rate(
    options: &MiningBench,
    repo: &Path,
    downloads: &Path,
    threads: usize,
) -> conveyor_web::fail::Result<(f64, Value)> {
    let db = match options.on.as_deref() {
        Some(url) if url.starts_with("postgres") => ScratchDb::new_postgres(url).await?,
        Some(_) => bail!("--on takes a postgres:// URL"),
        None => ScratchDb::new_sqlite().await?,
    };
    let store = db.store.clone();
    crate::migrate(&store).await?;
    let mining = crate::Mining::new(crate::Settings {
        downloads: downloads.to_path_buf(),
        analysis_threads: threads,
        files_per_task: options
            .files_per_task
            .unwrap_or(crate::Settings::default().files_per_task),
        task_bytes: options
            .task_bytes
            .unwrap_or(crate::Settings::default().task_bytes),
        // What the operator runs here may clone local paths and private hosts.
        sources: crate::SourcePolicy::TRUSTING,
        ..crate::Settings::default()
    })?;
    let mut registry = Registry::new();
    crate::register(&mut registry, mining);
    let config = WorkerConfig {
        queues: vec![
            QueueConfig {
                name: crate::QUEUE.into(),
                // Twice the threads, as `conveyor up`: while one task writes its results,
                // another keeps its thread busy.
                concurrency: 2 * threads,
            },
            QueueConfig {
                name: crate::FETCH_QUEUE.into(),
                concurrency: 1,
            },
        ],
        ..WorkerConfig::default()
    };
    let stop = CancellationToken::new();
    let worker = Worker::new(store.clone(), registry, config);
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await }
    });
    // Let the worker register before the clock starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let submitted = conveyor_queue::clock::now_ms();
    let id = crate::api::add(
        &store,
        crate::SourcePolicy::TRUSTING,
        repo.to_str().context("a UTF-8 path")?,
    )
    .await
    .map_err(|e| e.detail)?;
    // Timed by the row's own `analyzed_at` (milliseconds), so the wait can poll slowly: a
    // query every 2 ms took about 4 % of the two cores from the run it was timing.
    let row = loop {
        let row = crate::db::repo(&store, id)
            .await?
            .context("the repository vanished")?;
        if matches!(row.state.as_str(), "analyzed" | "failed") {
            break row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    handle.await??;
    let phases = phases(&store, submitted).await?;
    db.finish().await;
    let Some(analyzed_at) = row
        .analyzed_at
        .filter(|_| row.state == crate::db::RepoState::Analyzed)
    else {
        bail!("the pipeline failed: {:?}", row.error);
    };
    let seconds = (analyzed_at - submitted).max(1) as f64 / 1000.0;
    Ok((f64::from(row.files_total.unwrap_or(0)) / seconds, phases))
}

/// A run's jobs by kind, in milliseconds after submission: when the first started, when
/// the last ended, and their summed running time (`busy`): `process` is the clone, listing
/// and enqueueing before any file starts; `analyze` the tasks; `finish` the end.
async fn phases(
    store: &conveyor_queue::Store,
    submitted: i64,
) -> conveyor_web::fail::Result<Value> {
    let rows: Vec<(String, i64, i64, i64, i64)> = conveyor_queue::dispatch!(store.reader(), pool => {
        sqlx::query_as(
            "SELECT kind, COUNT(*), MIN(started_at), MAX(finished_at), \
                    SUM(finished_at - started_at) \
             FROM job WHERE kind LIKE 'mining.%' AND started_at IS NOT NULL \
                 AND finished_at IS NOT NULL \
             GROUP BY kind ORDER BY MIN(started_at)",
        )
        .fetch_all(pool)
        .await?
    });
    let mut phases = serde_json::Map::new();
    for (kind, jobs, start, end, busy) in rows {
        let name = kind.trim_start_matches("mining.").to_owned();
        phases.insert(
            name,
            json!({ "jobs": jobs, "start": start - submitted, "end": end - submitted, "busy": busy }),
        );
    }
    Ok(Value::Object(phases))
}
