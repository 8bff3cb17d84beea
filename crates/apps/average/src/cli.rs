//! `conveyor average run`: submits an averaging job to a running server, shows its progress,
//! and prints the result and the timings (the seed's frontend, on a terminal).

use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use conveyor_web::bail;
use conveyor_web::fail::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// `conveyor average ...`
#[derive(Debug, Subcommand)]
pub enum AverageCommand {
    /// Submit a job, watch it, print the averages' summary and timings
    Run(RunArgs),
}

/// `conveyor average run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// F: files to generate
    #[arg(long)]
    pub files: u64,
    /// C: integers per file
    #[arg(long)]
    pub entries: u64,
    /// Files summed per task
    #[arg(long, default_value_t = 5)]
    pub group_size: u64,
    /// Seed of the generated data (default: random)
    #[arg(long)]
    pub seed: Option<u64>,
    /// The server
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub url: String,
    /// Also run the serial validator and print its verdict
    #[arg(long)]
    pub validate: bool,
    /// Print the final job resource as JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs an average command.
///
/// # Errors
/// When the server is unreachable, refuses the job, or the job fails.
pub async fn run(
    platform: &conveyor_web::app::Platform,
    command: AverageCommand,
) -> conveyor_web::fail::Result<()> {
    let AverageCommand::Run(args) = command;
    let client = platform.api_client(Duration::from_secs(600))?;
    let base = args.url.trim_end_matches('/');
    let mut request = json!({
        "files": args.files,
        "entries_per_file": args.entries,
        "group_size": args.group_size,
    });
    if let Some(seed) = args.seed {
        request["seed"] = json!(seed);
    }
    let submitted = Instant::now();
    let response = client
        .post(format!("{base}/api/average/jobs"))
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .with_context(|| format!("submitting to {base}"))?;
    let status = response.status();
    let job: Value = serde_json::from_slice(&response.bytes().await?)?;
    if !status.is_success() {
        bail!(
            "the server refused the job ({status}): {}",
            job["detail"].as_str().unwrap_or("?")
        );
    }
    let id = job["id"]
        .as_i64()
        .context("the server's answer has no id")?;

    let bar = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(1000)
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} job {prefix} [{bar:40}] {percent:>3}% {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(id.to_string());
    let job = loop {
        let response = client
            .get(format!("{base}/api/average/jobs/{id}"))
            .send()
            .await?;
        let job: Value = serde_json::from_slice(&response.bytes().await?)?;
        let percent = job["progress"]["percent"].as_f64().unwrap_or(0.0);
        bar.set_position((percent * 10.0) as u64);
        let status = job["status"].as_str().unwrap_or("?").to_owned();
        bar.set_message(format!(
            "{status}, level {} of {}, {}/{} sums",
            job["progress"]["level"],
            job["progress"]["levels"],
            job["progress"]["sum_tasks"]["done"],
            job["progress"]["sum_tasks"]["total"]
        ));
        if matches!(status.as_str(), "completed" | "failed") {
            break job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    bar.finish_and_clear();
    let wall = submitted.elapsed().as_secs_f64();
    let verdict = if args.validate && job["status"] == "completed" {
        let response = client
            .post(format!("{base}/api/average/jobs/{id}/validate"))
            .send()
            .await?;
        Some(serde_json::from_slice::<Value>(&response.bytes().await?)?)
    } else {
        None
    };
    if args.json {
        println!(
            "{}",
            json!({"job": job, "validation": verdict, "wall_seconds": wall})
        );
    } else {
        print_summary(&job, verdict.as_ref(), wall);
    }
    if job["status"] != "completed" {
        bail!(
            "job {id} failed: {}",
            job["error"].as_str().unwrap_or("no error recorded")
        );
    }
    if verdict.as_ref().is_some_and(|v| v["valid"] != true) {
        bail!("the validator disagrees with job {id}'s output");
    }
    Ok(())
}

fn print_summary(job: &Value, verdict: Option<&Value>, wall: f64) {
    let seconds = |key: &str| {
        job["timings"][key]
            .as_f64()
            .map_or("-".to_owned(), |s| format!("{s:.3} s"))
    };
    println!(
        "job {}: {}",
        job["id"],
        job["status"].as_str().unwrap_or("?")
    );
    println!(
        "  {} files x {} entries, groups of {}, seed {}",
        job["files"], job["entries_per_file"], job["group_size"], job["seed"]
    );
    if let Some(mean) = job["mean"].as_f64() {
        println!("  mean of all numbers: {mean}");
        println!(
            "  averages (C numbers): {}",
            job["output_location"].as_str().unwrap_or("-")
        );
    }
    if let Some(error) = job["error"].as_str() {
        println!("  error: {error}");
    }
    println!(
        "  generation {}, processing {}, submit to result {wall:.3} s",
        seconds("generation_seconds"),
        seconds("processing_seconds")
    );
    if let Some(v) = verdict {
        println!(
            "  validator: {} ({} positions, {} mismatches, {:.3} s serial)",
            if v["valid"] == true {
                "agrees"
            } else {
                "DISAGREES"
            },
            v["positions"],
            v["mismatches"],
            v["seconds"].as_f64().unwrap_or(0.0)
        );
    }
}
