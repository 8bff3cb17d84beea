//! `conveyor jobs`: list, show, enqueue and cancel jobs straight on the database, printing
//! JSON in the API's shapes; `jobs enqueue --stdin` sends JSON lines to a server's
//! `POST /api/jobs/batch` instead.

use anyhow::{Context, bail};
use clap::Subcommand;
use conveyor_queue::{JobFilter, JobState, NewJob};
use conveyor_web::jobs::JobView;

use crate::config::Config;

/// `conveyor jobs ...`
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Newest jobs first
    List {
        /// Only this state
        #[arg(long)]
        state: Option<JobState>,
        /// Only this kind
        #[arg(long)]
        kind: Option<String>,
        /// Only this queue
        #[arg(long)]
        queue: Option<String>,
        /// How many (at most 500)
        #[arg(long, default_value_t = 20)]
        limit: i64,
        /// JSON in the API's shape instead of a table
        #[arg(long)]
        json: bool,
    },
    /// One job
    Show {
        /// Job id
        id: i64,
    },
    /// Enqueue a job; with --stdin, every JSON line of standard input, through a server
    Enqueue {
        /// Kind, e.g. sleep
        #[arg(required_unless_present = "stdin")]
        kind: Option<String>,
        /// Arguments as JSON, e.g. '{"ms": 500}'
        #[arg(default_value = "{}")]
        args: String,
        /// Queue
        #[arg(long, default_value = "default")]
        queue: String,
        /// Priority (higher first)
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Attempts
        #[arg(long, default_value_t = 3)]
        max_attempts: i32,
        /// Unique key
        #[arg(long)]
        unique_key: Option<String>,
        /// Start no sooner than this many milliseconds from now
        #[arg(long)]
        delay_ms: Option<u64>,
        /// Read jobs from standard input, one JSON object a line as POST /api/jobs takes
        /// it ({"kind": "noop", "args": {}}), and send them 1,000 at a time to --url's
        /// POST /api/jobs/batch (with CONVEYOR_API_TOKEN); prints each outcome as a line
        #[arg(long, conflicts_with_all = ["kind", "unique_key", "delay_ms"])]
        stdin: bool,
        /// The server, with --stdin
        #[arg(long, default_value = "http://127.0.0.1:8000")]
        url: String,
    },
    /// Cancel a job
    Cancel {
        /// Job id
        id: i64,
    },
}

/// Runs one `jobs` command.
///
/// # Errors
/// Unknown job, invalid input, unreachable database.
pub async fn run(
    config: &Config,
    apps: &[Box<dyn conveyor_web::app::App>],
    command: JobsCommand,
) -> anyhow::Result<()> {
    if let JobsCommand::Enqueue {
        stdin: true, url, ..
    } = &command
    {
        return enqueue_lines(config, url, std::io::stdin().lock()).await;
    }
    let store = crate::app::connect(config, apps).await?;
    let output = match command {
        JobsCommand::List {
            state,
            kind,
            queue,
            limit,
            json,
        } => {
            if !(1..=500).contains(&limit) {
                bail!("--limit must be between 1 and 500");
            }
            let filter = JobFilter {
                state,
                kind,
                queue,
                before: None,
                limit,
                ..JobFilter::default()
            };
            let jobs: Vec<JobView> = store
                .list(&filter)
                .await?
                .into_iter()
                .map(JobView::from)
                .collect();
            if json {
                serde_json::to_string_pretty(&jobs)?
            } else {
                table(&jobs)
            }
        }
        JobsCommand::Show { id } => {
            let job = store
                .get(id)
                .await?
                .with_context(|| format!("no job with id {id}"))?;
            serde_json::to_string_pretty(&JobView::from(job))?
        }
        JobsCommand::Enqueue {
            kind,
            args,
            queue,
            priority,
            max_attempts,
            unique_key,
            delay_ms,
            ..
        } => {
            let kind = kind.context("name the job's KIND (or pass --stdin)")?;
            let args = serde_json::from_str(&args).context("ARGS must be JSON")?;
            let mut job = NewJob::new(kind, args)
                .queue(queue)
                .priority(priority)
                .max_attempts(max_attempts);
            if let Some(key) = unique_key {
                job = job.unique_key(key);
            }
            if let Some(delay) = delay_ms {
                let delay = i64::try_from(delay).context("--delay-ms is too large")?;
                job = job.run_at(conveyor_queue::clock::now_ms().saturating_add(delay));
            }
            let mut registry = conveyor_queue::Registry::new();
            conveyor_queue::builtin::register(&mut registry);
            for app in apps {
                app.register(&mut registry);
            }
            registry.check(&job)?;
            let enqueued = store.enqueue(job).await?;
            serde_json::to_string_pretty(&JobView::from(enqueued.job))?
        }
        JobsCommand::Cancel { id } => {
            let job = store
                .cancel(id)
                .await?
                .with_context(|| format!("no job with id {id}"))?;
            serde_json::to_string_pretty(&JobView::from(job))?
        }
    };
    println!("{output}");
    store.close().await;
    Ok(())
}

/// `jobs enqueue --stdin`: JSON lines from `input` to `url`'s batch route, 1,000 a request;
/// each outcome printed as a JSON line, a summary on stderr.
///
/// # Errors
/// A line that is not JSON (naming it; nothing after it is sent), an unreachable server,
/// a refused request.
pub async fn enqueue_lines(
    config: &Config,
    url: &str,
    input: impl std::io::BufRead,
) -> anyhow::Result<()> {
    use std::io::Write;
    let client = config
        .platform()
        .api_client(std::time::Duration::from_secs(60))
        .map_err(|e| anyhow::anyhow!(crate::app::chain(&*e)))?;
    let endpoint = format!("{}/api/jobs/batch", url.trim_end_matches('/'));
    let (mut enqueued, mut refused) = (0usize, 0usize);
    let mut batch: Vec<serde_json::Value> = Vec::new();
    let mut lines = input.lines().enumerate().peekable();
    let stdout = std::io::stdout();
    while let Some((number, line)) = lines.next() {
        let line = line.context("reading standard input")?;
        if !line.trim().is_empty() {
            let job: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("line {} is not JSON", number + 1))?;
            batch.push(job);
        }
        if batch.len() == conveyor_web::jobs::BATCH_MAX
            || (lines.peek().is_none() && !batch.is_empty())
        {
            let response = client
                .post(&endpoint)
                .json(&serde_json::json!({ "jobs": batch }))
                .send()
                .await
                .with_context(|| format!("sending jobs to {endpoint}"))?;
            let status = response.status();
            let text = response.text().await?;
            if !status.is_success() {
                bail!("{endpoint} refused the batch ({status}): {text}");
            }
            let answer: conveyor_web::jobs::BatchAnswer =
                serde_json::from_str(&text).context("the server's answer")?;
            enqueued += answer.enqueued;
            refused += answer.refused;
            let mut out = stdout.lock();
            for outcome in answer.results {
                writeln!(out, "{}", serde_json::to_string(&outcome)?)?;
            }
            batch.clear();
        }
    }
    eprintln!("{enqueued} enqueued, {refused} refused");
    Ok(())
}

/// Jobs as a table for a terminal: one line each, the error cut to the width left.
fn table(jobs: &[JobView]) -> String {
    if jobs.is_empty() {
        return "no jobs".to_owned();
    }
    let rows: Vec<[String; 7]> = jobs
        .iter()
        .map(|job| {
            let error: String = job
                .error
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(60)
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            [
                job.id.to_string(),
                job.state.to_string(),
                job.kind.clone(),
                job.queue.clone(),
                format!("{}/{}", job.attempt, job.max_attempts),
                job.created_at
                    .replace('T', " ")
                    .trim_end_matches('Z')
                    .to_owned(),
                error,
            ]
        })
        .collect();
    let header = [
        "ID",
        "STATE",
        "KIND",
        "QUEUE",
        "ATTEMPT",
        "CREATED (UTC)",
        "ERROR",
    ];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == 0 {
                text.push_str(&format!("{cell:>w$}", w = widths[0]));
            } else if i + 1 == cells.len() {
                text.push_str(&format!("  {cell}"));
            } else {
                text.push_str(&format!("  {cell:<w$}", w = widths[i]));
            }
        }
        text.trim_end().to_owned()
    };
    let mut out = vec![line(&header)];
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        out.push(line(&cells));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_print_as_an_aligned_table() {
        let job = JobView {
            id: 7,
            queue: "default".into(),
            kind: "fail".into(),
            args: serde_json::json!({}),
            state: JobState::Failed,
            priority: 0,
            attempt: 3,
            max_attempts: 3,
            run_at: "2026-12-07T10:00:00.000Z".into(),
            cancel_requested: false,
            progress: None,
            result: None,
            error: Some("boom\nsecond line".into()),
            group_id: None,
            unique_key: None,
            worker: None,
            created_at: "2026-12-07T10:00:00.000Z".into(),
            started_at: None,
            finished_at: None,
            warning: None,
        };
        let text = table(&[job]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("ID  STATE"), "{text}");
        assert!(lines[1].trim_start().starts_with("7  "), "{text}");
        assert!(lines[1].ends_with("boom second line"), "{text}");
        assert_eq!(table(&[]), "no jobs");
    }
}
