//! `conveyor bench longtask`: the count with progress reporting against the bare loop,
//! alternating runs so that drift hits both alike.

use std::time::Instant;

use clap::Args;
use conveyor_queue::JobContext;
use conveyor_web::bail;
use conveyor_web::fail::Result;
use serde_json::{Value, json};

/// `conveyor bench longtask` options.
#[derive(Debug, Clone, Args)]
pub struct LongtaskBench {
    /// Count to this
    #[arg(long, default_value_t = 100_000_000)]
    pub target: u64,
    /// Record progress every this many
    #[arg(long, default_value_t = 1_000_000)]
    pub step: u64,
    /// Timed runs of each loop (they alternate, so drift hits both alike)
    #[arg(long, default_value_t = 11)]
    pub runs: usize,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `bench longtask` and prints its figures.
///
/// # Errors
/// Bad options.
pub async fn run(options: LongtaskBench) -> Result<()> {
    let report = longtask(&options).await?;
    if options.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "count to {} (progress every {}), median of {} runs: bare {:.1} ms, with progress {:.1} ms: ratio {:.3}",
            options.target,
            options.step,
            options.runs,
            report["bare_ms"].as_f64().unwrap_or_default(),
            report["reporting_ms"].as_f64().unwrap_or_default(),
            report["ratio"].as_f64().unwrap_or_default(),
        );
    }
    Ok(())
}

/// Times the bare counting loop and the job's loop (progress and cancellation checks on a
/// real [`JobContext`]) alternately, `runs` times each; reports the medians and their ratio.
///
/// # Errors
/// Invalid arguments.
pub async fn longtask(options: &LongtaskBench) -> Result<Value> {
    use crate::count::count_bare;
    use crate::task::{CountArgs, count_reporting};
    let args = CountArgs {
        target: options.target,
        step: options.step,
    };
    args.validate()?;
    if options.runs == 0 {
        bail!("--runs must be positive");
    }
    // The context writes nothing: progress stays in memory, as between two flushes.
    let store = conveyor_queue::Store::connect("sqlite::memory:").await?;
    let ctx = JobContext::detached(store, 0, crate::KIND);
    let (mut bare, mut reporting) = (Vec::new(), Vec::new());
    for _ in 0..options.runs {
        let started = Instant::now();
        let n = count_bare(args.target);
        bare.push(started.elapsed().as_secs_f64() * 1000.0);
        let started = Instant::now();
        let m = count_reporting(&ctx, 0, args);
        reporting.push(started.elapsed().as_secs_f64() * 1000.0);
        if n != args.target || m != args.target {
            bail!("a loop did not reach the target");
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (bare_ms, reporting_ms) = (median(&mut bare), median(&mut reporting));
    Ok(json!({
        "target": args.target,
        "step": args.step,
        "runs": options.runs,
        "bare_ms": bare_ms,
        "reporting_ms": reporting_ms,
        "ratio": reporting_ms / bare_ms,
        "progress_reported": ctx.latest_progress().done,
    }))
}
