//! The job kinds, all on queue `average`:
//!
//! - `average.generate`: writes input files `from..to` of a job (a group of these generates
//!   every file in parallel);
//! - `average.start`: the generation group's continuation. It enqueues the reduction tree
//!   (the engine's [`Tx::enqueue_tree`](conveyor_queue::Tx::enqueue_tree)) in one
//!   transaction with the row's move to `processing`;
//! - `average.sum`: sums some files element by element into one partial file. Level 0 (the
//!   tree's leaves) reads input files; a node of level k sums the partial files of its own
//!   `group_size` members of level k - 1, as soon as they have ended: levels overlap, with
//!   no barrier between them. The root, instead of a partial file, writes the averages and
//!   completes the job;
//! - `average.clean`: deletes a deleted job's files once more, after its last tasks ended.
//!
//! Every step can run twice (a worker killed after its work but before its completion is
//! recorded): file names are a function of (level, index) and the contents of the inputs,
//! so a rerun writes the same bytes; `average.start` moves the job's level by compare-and-set
//! in the transaction that enqueues the tree, so a rerun enqueues nothing. A task that fails
//! (a malformed input) writes no file; the node above finds the file missing and fails with
//! that task's error, and so on up to the root, which fails the job with it. Deleting a job
//! cancels its waiting tasks; one running then may still write a file, which
//! `average.clean`, run a lease and a grace period later, removes.

use std::cell::RefCell;

use conveyor_queue::{JobContext, JobError, JobState, NewJob, Registry};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::storage::Storage;
use crate::{db, numbers, plan};

/// The queue of every average task, so W (its concurrency) is set apart.
pub const QUEUE: &str = "average";
/// Writes input files.
pub const GENERATE: &str = "average.generate";
/// Sums files.
pub const SUM: &str = "average.sum";
/// Starts the reduction tree once the files are generated.
pub const START: &str = "average.start";
/// Deletes a deleted job's files once more, later.
pub const CLEAN: &str = "average.clean";
/// Input files written per generation task.
pub const FILES_PER_GENERATE_TASK: u64 = 10;

/// `average.generate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateArgs {
    /// The average job.
    pub job: i64,
    /// Its files' prefix.
    pub location: String,
    /// C.
    pub entries: u64,
    /// Seed.
    pub seed: u64,
    /// First file.
    pub from: u64,
    /// One past the last file.
    pub to: u64,
}

/// `average.sum`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SumArgs {
    /// The average job.
    pub job: i64,
    /// 0 reads input text; above, partial sums.
    pub level: u32,
    /// C.
    pub entries: u64,
    /// The files to add.
    pub inputs: Vec<String>,
    /// Where the sum goes (the root: where the averages go).
    pub output: String,
    /// The root only: F, to divide the totals by; the root then completes the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub divide_by: Option<u64>,
}

/// `average.clean`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanArgs {
    /// The deleted job's files' prefix: `average/<job>`, and no job of that id may exist.
    pub location: String,
}

/// `average.start`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartArgs {
    /// The average job.
    pub job: i64,
}

/// Registers the four kinds, reading and writing files through `storage`.
pub fn register(registry: &mut Registry, storage: Storage) {
    let store_for_generate = storage.clone();
    registry.register(GENERATE, move |args: GenerateArgs, ctx: JobContext| {
        let storage = store_for_generate.clone();
        async move { generate(&storage, args, &ctx).await }
    });
    let store_for_sum = storage.clone();
    registry.register(SUM, move |args: SumArgs, ctx: JobContext| {
        let storage = store_for_sum.clone();
        async move { sum(&storage, args, &ctx).await }
    });
    registry.register(START, |args: StartArgs, ctx: JobContext| async move {
        start(args, &ctx).await
    });
    registry.register(CLEAN, move |args: CleanArgs, ctx: JobContext| {
        let storage = storage.clone();
        async move { clean(&storage, args, &ctx).await }
    });
}

/// The generation group of a new job: its tasks and its continuation.
pub fn generation_jobs(job: i64, files: u64, entries: u64, seed: u64) -> (Vec<NewJob>, NewJob) {
    let location = plan::location(job);
    let tasks = (0..files)
        .step_by(FILES_PER_GENERATE_TASK as usize)
        .map(|from| {
            let args = GenerateArgs {
                job,
                location: location.clone(),
                entries,
                seed,
                from,
                to: (from + FILES_PER_GENERATE_TASK).min(files),
            };
            NewJob::new(GENERATE, json!(args)).queue(QUEUE)
        })
        .collect();
    let start = NewJob::new(START, json!(StartArgs { job })).queue(QUEUE);
    (tasks, start)
}

/// `average.generate`'s handler.
///
/// # Errors
/// When a file cannot be written.
pub async fn generate(
    storage: &Storage,
    args: GenerateArgs,
    ctx: &JobContext,
) -> Result<(), JobError> {
    // Written only while the job is generating, where its own row says its files are: a
    // task rerun after the job moved on, or arguments naming another place, write nothing.
    let row = db::get(ctx.store(), args.job).await?;
    match row {
        Some(row) if row.status == db::Status::Generating && row.location == args.location => {}
        Some(row) if row.location != args.location => {
            return Err(JobError::permanent(format!(
                "{:?} is not the location of average job {}",
                args.location, args.job
            )));
        }
        _ => return Ok(()),
    }
    let (storage, ctx) = (storage.clone(), ctx.clone());
    // One blocking call for the whole task: generating is CPU work, writing is file I/O.
    blocking(move || {
        let total = (args.to - args.from) as i64;
        for (done, index) in (args.from..args.to).enumerate() {
            if ctx.is_cancelled() {
                return Err(JobError::permanent("cancelled"));
            }
            let bytes = numbers::generate(args.seed, index, args.entries as usize);
            storage.write_blocking(&plan::input_path(&args.location, index), &bytes)?;
            ctx.progress(done as i64 + 1, Some(total), None);
        }
        Ok(())
    })
    .await?
}

/// Runs `work` on a blocking thread; a panic in it is a retryable failure.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| JobError::retry(e.to_string()))
}

/// `average.sum`'s handler; the root's result is the output and the mean.
///
/// # Errors
/// Permanent when an input is malformed or missing (naming it, or carrying the error of
/// the member that did not write it); retryable on store errors.
pub async fn sum(storage: &Storage, args: SumArgs, ctx: &JobContext) -> Result<Value, JobError> {
    let (job, root) = (args.job, args.divide_by.is_some());
    // A path check, not a database read: sums are the hot path (0.3 ms of work each).
    if let Some(path) = args
        .inputs
        .iter()
        .chain([&args.output])
        .find(|path| !plan::owned_by(job, path))
    {
        return Err(JobError::permanent(format!(
            "{path:?} is not a file of average job {job}"
        )));
    }
    let summed = sum_files(storage, args, ctx).await;
    if !root {
        return summed.map(|_| Value::Null);
    }
    // The root decides the job's end, with the time its output is written.
    let now = conveyor_queue::clock::now_ms();
    match summed {
        Ok(Some((output, mean))) => {
            db::finish(ctx.store(), job, Ok((&output, mean)), now).await?;
            Ok(json!({"output": output, "mean": mean}))
        }
        Ok(None) => Ok(json!({"skipped": "the job was deleted"})),
        Err(error) => {
            if error.permanent {
                db::finish(ctx.store(), job, Err(&error.message), now).await?;
            }
            Err(error)
        }
    }
}

/// Sums `args.inputs` into `args.output`: a partial file, or on the root the averages,
/// whose location and mean it returns. `None` when the job was deleted meanwhile.
async fn sum_files(
    storage: &Storage,
    args: SumArgs,
    ctx: &JobContext,
) -> Result<Option<(String, f64)>, JobError> {
    let (job, level, storage) = (args.job, args.level, storage.clone());
    // One blocking call for the whole task: on a local directory, reading five files,
    // adding them up and writing the sum take about 0.3 ms, and each hand-off between
    // threads saved is a good part of that. Store errors come out apart from malformed
    // input (the inner error): a missing file may only mean the job was deleted.
    let summed = blocking(move || {
        // The sums and their bytes live in buffers kept by the blocking thread: fresh ones
        // of 80 kB a task were page-faulted in and handed back by the allocator each time.
        // They go with the thread, which tokio ends after 10 s without work.
        thread_local! {
            static SCRATCH: RefCell<(Vec<u64>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
        }
        SCRATCH.with_borrow_mut(|(sums, bytes)| {
            sums.clear();
            sums.resize(args.entries as usize, 0);
            let added = storage.read_each_blocking(&args.inputs, |path, file| {
                let added = if args.level == 0 {
                    numbers::add_text(file, sums)
                } else {
                    numbers::add_binary(file, sums)
                };
                added.map_err(|problem| JobError::permanent(format!("{path}: {problem}")))
            })?;
            if let Err(error) = added {
                return Ok(Err(error));
            }
            let Some(files) = args.divide_by else {
                numbers::encode_sums(sums, bytes);
                return storage.write_blocking(&args.output, bytes).map(|()| Ok(None));
            };
            let (text, mean) = numbers::averages(sums, files);
            storage
                .write_blocking(&args.output, text.as_bytes())
                .map(|()| Ok(Some((args.output, mean))))
        })
    })
    .await?;
    match summed {
        Ok(done) => done,
        Err(error) if job_gone(ctx, job).await => {
            tracing::debug!(%error, job, "average job deleted; sum skipped");
            Ok(None)
        }
        Err(object_store::Error::NotFound { path, .. }) => {
            // A member that failed wrote nothing: its error is the one to report.
            if level > 0
                && let Some(failed) = ctx
                    .group_members()
                    .await?
                    .into_iter()
                    .find(|m| m.state != JobState::Completed)
            {
                return Err(JobError::permanent(failed.error.unwrap_or_else(|| {
                    format!("task {} ended {} with no error", failed.id, failed.state)
                })));
            }
            Err(JobError::permanent(format!("input file {path} is missing")))
        }
        Err(error) => Err(error.into()),
    }
}

/// `average.clean`: deletes a deleted job's files again, after any task that was running
/// when it was deleted has ended (so nothing it wrote is left behind).
///
/// # Errors
/// The store's.
pub async fn clean(storage: &Storage, args: CleanArgs, ctx: &JobContext) -> Result<(), JobError> {
    // Only a deleted job's own directory: `average/<id>` with no row `<id>`.
    let job = args
        .location
        .strip_prefix("average/")
        .and_then(|id| id.parse::<i64>().ok())
        .filter(|id| plan::location(*id) == args.location);
    let Some(job) = job else {
        return Err(JobError::permanent(format!(
            "{:?} is not an average job's location",
            args.location
        )));
    };
    if db::get(ctx.store(), job).await?.is_some() {
        return Err(JobError::permanent(format!(
            "average job {job} still exists; only a deleted job's files are cleaned"
        )));
    }
    storage.delete_under(&args.location).await?;
    Ok(())
}

async fn job_gone(ctx: &JobContext, job: i64) -> bool {
    matches!(db::get(ctx.store(), job).await, Ok(None))
}

/// `average.start`'s handler: once the files are generated, enqueues the reduction tree.
///
/// # Errors
/// On database errors (retried).
pub async fn start(args: StartArgs, ctx: &JobContext) -> Result<Value, JobError> {
    let store = ctx.store();
    let Some(row) = db::get(store, args.job).await? else {
        return Ok(json!({"skipped": "the job was deleted"}));
    };
    if row.level != -1 || row.finished_at.is_some() {
        return Ok(json!({"skipped": "already started"}));
    }
    let now = conveyor_queue::clock::now_ms();
    let members = ctx.group_members().await?;
    if let Some(failed) = members.iter().find(|m| m.state != JobState::Completed) {
        let error = format!(
            "task {} {}: {}",
            failed.id,
            failed.state,
            failed.error.as_deref().unwrap_or("no error recorded")
        );
        db::finish(store, row.id, Err(&error), now).await?;
        return Ok(json!({"failed": error}));
    }

    let (files, group) = (row.files as u64, row.group_size as u64);
    let levels = plan::level_tasks(files, group);
    let task = |level: u32, index: u64| {
        let root = level as usize == levels.len() - 1;
        let args = SumArgs {
            job: row.id,
            level,
            entries: row.entries as u64,
            inputs: plan::task_inputs(&row.location, files, group, level, index),
            output: if root {
                plan::output_path(&row.location)
            } else {
                plan::partial_path(&row.location, level, index)
            },
            divide_by: root.then_some(files),
        };
        // A node ready to run goes before the leaves still waiting: it frees its members'
        // files sooner and brings the end nearer.
        NewJob::new(SUM, json!(args))
            .queue(QUEUE)
            .priority(level as i32)
    };
    let leaves: Vec<NewJob> = (0..levels[0]).map(|index| task(0, index)).collect();
    let mut tx = store.begin().await?;
    let tree = tx.enqueue_tree(&leaves, group as usize, &task).await?;
    if db::advance(&mut tx, row.id, tree.root_group_id, now).await? {
        tx.commit().await?;
        Ok(json!({"tasks": levels.iter().sum::<u64>()}))
    } else {
        // Another run of this job got there first; dropping `tx` rolls back.
        Ok(json!({"skipped": "another run started the tree"}))
    }
}
