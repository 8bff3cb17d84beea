//! `conveyor jobs`: list, show, enqueue and cancel jobs straight on the database, printing
//! JSON in the API's shapes.

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
    },
    /// One job
    Show {
        /// Job id
        id: i64,
    },
    /// Enqueue a job
    Enqueue {
        /// Kind, e.g. sleep
        kind: String,
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
pub async fn run(config: &Config, command: JobsCommand) -> anyhow::Result<()> {
    let store = crate::app::connect(config).await?;
    let output = match command {
        JobsCommand::List {
            state,
            kind,
            queue,
            limit,
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
            };
            let jobs: Vec<JobView> = store
                .list(&filter)
                .await?
                .into_iter()
                .map(JobView::from)
                .collect();
            serde_json::to_string_pretty(&jobs)?
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
        } => {
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
            let apps = crate::app::AppResources::from_config(config)?;
            crate::app::registry(&apps).check(&job)?;
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
