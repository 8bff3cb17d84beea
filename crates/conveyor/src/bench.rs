//! `conveyor bench queue`: how fast the engine moves jobs, on a throwaway database (the
//! apps add their benchmarks under `bench`).
//!
//! 1. Enqueue `--jobs` no-op jobs in multi-row inserts of 1,000: the enqueue rate.
//! 2. Start one worker with `--workers` claimers, each asking for `--batch` jobs at a time
//!    (they take turns, one statement claiming for every claimer waiting: see
//!    `Slots::turn` in the engine), and time until every outcome is recorded: the
//!    end-to-end rate (claim, run, complete). The report gives the mean and the largest
//!    claim.
//! 3. On the now idle worker, enqueue single jobs one at a time and time each from the start
//!    of the enqueue call to the start of its handler: the wake-up latency.
//!
//! The database is a fresh SQLite file, or a fresh schema in `--database-url` when that is
//! PostgreSQL; it is dropped afterwards.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use conveyor_queue::scratch::ScratchDb;
use conveyor_queue::{JobContext, NewJob, QueueConfig, Registry, Worker, WorkerConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// `conveyor bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Enqueue rate, end-to-end rate and wake-up latency of no-op jobs
    Queue(QueueBench),
}

/// `conveyor bench queue` options.
#[derive(Debug, Clone, Args)]
pub struct QueueBench {
    /// Jobs to move
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Concurrent claimers
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Jobs each claimer asks for at a time (one statement claims for every claimer waiting)
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Single jobs timed for the wake-up latency
    #[arg(long, default_value_t = 50)]
    pub probes: usize,
    /// postgres://... to bench PostgreSQL (a scratch schema is made inside); default SQLite
    #[arg(long = "on", env = "BENCH_DATABASE_URL")]
    pub on: Option<String>,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs a benchmark.
///
/// # Errors
/// When the database cannot be made or a phase does not finish in time.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Queue(options) => {
            let report = queue(&options).await?;
            if options.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print_report(&report);
            }
            Ok(())
        }
    }
}

/// Runs `bench queue` and returns its figures as JSON.
///
/// # Errors
/// As [`run`].
pub async fn queue(options: &QueueBench) -> anyhow::Result<Value> {
    if options.jobs == 0 || options.workers == 0 || options.batch == 0 {
        bail!("--jobs, --workers and --batch must be positive");
    }
    let db = match options.on.as_deref() {
        Some(url) if url.starts_with("postgres") => ScratchDb::new_postgres(url).await?,
        Some(url) if !url.starts_with("sqlite") => bail!("--on takes a postgres:// URL"),
        _ => ScratchDb::new_sqlite().await?,
    };
    let result = measure(&db, options).await;
    db.finish().await;
    result
}

async fn measure(db: &ScratchDb, options: &QueueBench) -> anyhow::Result<Value> {
    let store = &db.store;
    let (probe_tx, mut probe_rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
    let mut registry = Registry::new();
    conveyor_queue::builtin::register(&mut registry);
    registry.register("probe", move |_: Value, _ctx: JobContext| {
        let started = Instant::now();
        let _ = probe_tx.send(started);
        async { Ok(()) }
    });

    let jobs: Vec<NewJob> = (0..options.jobs)
        .map(|_| NewJob::new("noop", json!({})).queue("bench"))
        .collect();
    let started = Instant::now();
    for chunk in jobs.chunks(1000) {
        store.enqueue_many(chunk).await?;
    }
    let enqueue = started.elapsed();

    let config = WorkerConfig {
        queues: vec![
            QueueConfig {
                name: "bench".into(),
                concurrency: options.workers * options.batch,
            },
            QueueConfig {
                name: "probe".into(),
                concurrency: 1,
            },
        ],
        claimers: options.workers,
        batch: options.batch,
        poll_interval: Duration::from_secs(5),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), registry, config);
    let stats = worker.stats();
    let stop = CancellationToken::new();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(stop.clone()));
    let deadline = started + Duration::from_secs(600);
    // Watching an in-memory counter, not the database, so the watching costs nothing.
    while stats.recorded.load(Ordering::Relaxed) < options.jobs as u64 {
        if Instant::now() > deadline {
            bail!("the jobs did not finish within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let end_to_end = started.elapsed();
    let claims = stats.claims.load(Ordering::Relaxed).max(1);
    let finishes = stats.finishes.load(Ordering::Relaxed).max(1);
    let mean_claim = stats.claimed.load(Ordering::Relaxed) as f64 / claims as f64;
    let mean_finish = stats.recorded.load(Ordering::Relaxed) as f64 / finishes as f64;

    // The claimers of `probe` are idle now: each single job must wake one.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latency = hdrhistogram::Histogram::<u64>::new(3).context("histogram")?;
    for _ in 0..options.probes {
        let sent = Instant::now();
        store
            .enqueue(NewJob::new("probe", json!({})).queue("probe"))
            .await?;
        let began = tokio::time::timeout(Duration::from_secs(30), probe_rx.recv())
            .await
            .context("a probe job did not start within 30 s")?
            .context("the probe handler is gone")?;
        latency.record(began.saturating_duration_since(sent).as_micros() as u64)?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await??;

    let backend = format!("{:?}", store.backend()).to_lowercase();
    let ms = |micros: u64| micros as f64 / 1000.0;
    Ok(json!({
        "backend": backend,
        "jobs": options.jobs,
        "workers": options.workers,
        "batch": options.batch,
        "enqueue_seconds": enqueue.as_secs_f64(),
        "enqueue_per_second": options.jobs as f64 / enqueue.as_secs_f64(),
        "end_to_end_seconds": end_to_end.as_secs_f64(),
        "end_to_end_per_second": options.jobs as f64 / end_to_end.as_secs_f64(),
        "claim_statements": claims,
        "mean_jobs_per_claim": mean_claim,
        "largest_claim": stats.largest_claim.load(Ordering::Relaxed),
        "completion_transactions": finishes,
        "mean_jobs_per_completion": mean_finish,
        "wakeup_latency_ms": {
            "samples": latency.len(),
            "p50": ms(latency.value_at_quantile(0.5)),
            "p99": ms(latency.value_at_quantile(0.99)),
            "max": ms(latency.max()),
        },
    }))
}

fn print_report(report: &Value) {
    let f = |key: &str| report[key].as_f64().unwrap_or_default();
    println!(
        "{} | {} jobs, {} claimers x {} per claim",
        report["backend"].as_str().unwrap_or_default(),
        report["jobs"],
        report["workers"],
        report["batch"]
    );
    println!(
        "enqueue:     {:>10.0} jobs/s ({:.3} s)",
        f("enqueue_per_second"),
        f("enqueue_seconds")
    );
    println!(
        "end to end:  {:>10.0} jobs/s ({:.3} s)",
        f("end_to_end_per_second"),
        f("end_to_end_seconds")
    );
    println!(
        "             {} claims of {:.1} jobs on average, {} completion transactions of {:.1}",
        report["claim_statements"],
        f("mean_jobs_per_claim"),
        report["completion_transactions"],
        f("mean_jobs_per_completion")
    );
    let latency = &report["wakeup_latency_ms"];
    println!(
        "wake-up latency (enqueue -> handler start, {} samples): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency["samples"],
        latency["p50"].as_f64().unwrap_or_default(),
        latency["p99"].as_f64().unwrap_or_default(),
        latency["max"].as_f64().unwrap_or_default()
    );
}
