//! The job kinds, all on queue `average`:
//!
//! - `average.generate`: writes input files `from..to` of a job (a group of these generates
//!   every file in parallel);
//! - `average.sum`: sums some files element by element into one partial file;
//! - `average.clean`: deletes a deleted job's files once more, after its last tasks ended;
//! - `average.reduce`: the continuation of each group. After generation it starts level 0;
//!   after a level it starts the next, `group_size` partial files per task, as one new
//!   group whose continuation is again `average.reduce`; after the level with a single
//!   task it writes the averages and completes the job.
//!
//! Every step can run twice (a worker killed after its work but before its completion is
//! recorded): file names are a function of (level, index) and the contents of the inputs,
//! so a rerun writes the same bytes; `average.reduce` moves the job's level by
//! compare-and-set in the transaction that enqueues the next group, so a rerun enqueues
//! nothing. Deleting a job cancels its waiting tasks; one running then may still write a
//! file, which `average.clean`, run a lease and a grace period later, removes.

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
/// Plans the next level, or finishes.
pub const REDUCE: &str = "average.reduce";
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
    /// Where the sum goes.
    pub output: String,
}

/// `average.clean`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanArgs {
    /// The deleted job's files' prefix.
    pub location: String,
}

/// `average.reduce`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReduceArgs {
    /// The average job.
    pub job: i64,
    /// The level that just ended (-1: generation).
    pub level: i32,
}

/// Registers the three kinds, reading and writing files through `storage`.
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
    let store_for_reduce = storage.clone();
    registry.register(REDUCE, move |args: ReduceArgs, ctx: JobContext| {
        let storage = store_for_reduce.clone();
        async move { reduce(&storage, args, &ctx).await }
    });
    registry.register(CLEAN, move |args: CleanArgs, _ctx: JobContext| {
        let storage = storage.clone();
        async move { clean(&storage, args).await }
    });
}

/// The generation group of a new job: its tasks and its continuation.
pub fn generation_jobs(job: i64, files: u64, entries: u64, seed: u64) -> (Vec<NewJob>, NewJob) {
    let location = format!("average/{job}");
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
    (tasks, continuation(job, -1))
}

fn continuation(job: i64, level: i32) -> NewJob {
    NewJob::new(REDUCE, json!(ReduceArgs { job, level })).queue(QUEUE)
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

/// `average.sum`'s handler.
///
/// # Errors
/// Permanent when an input is missing or malformed (naming it); retryable on store errors.
pub async fn sum(storage: &Storage, args: SumArgs, ctx: &JobContext) -> Result<(), JobError> {
    let (job, storage) = (args.job, storage.clone());
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
            if added.is_err() {
                return Ok(added);
            }
            numbers::encode_sums(sums, bytes);
            storage.write_blocking(&args.output, bytes).map(Ok)
        })
    })
    .await?;
    match summed {
        Ok(done) => done,
        Err(error) if job_gone(ctx, job).await => {
            tracing::debug!(%error, job, "average job deleted; sum skipped");
            Ok(())
        }
        Err(object_store::Error::NotFound { path, .. }) => {
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
pub async fn clean(storage: &Storage, args: CleanArgs) -> Result<(), JobError> {
    storage.delete_under(&args.location).await?;
    Ok(())
}

async fn job_gone(ctx: &JobContext, job: i64) -> bool {
    matches!(db::get(ctx.store(), job).await, Ok(None))
}

/// `average.reduce`'s handler: plans the next level, or writes the averages.
///
/// # Errors
/// On store or database errors (retried).
pub async fn reduce(
    storage: &Storage,
    args: ReduceArgs,
    ctx: &JobContext,
) -> Result<Value, JobError> {
    let store = ctx.store();
    let Some(row) = db::get(store, args.job).await? else {
        return Ok(json!({"skipped": "the job was deleted"}));
    };
    if row.level != args.level || row.finished_at.is_some() {
        return Ok(json!({"skipped": "already past this level"}));
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
        db::finish(store, row.id, row.level, Err(&error), now).await?;
        return Ok(json!({"failed": error}));
    }

    let (files, group) = (row.files as u64, row.group_size as u64);
    let levels = plan::level_tasks(files, group);
    if args.level >= 0 && levels[args.level as usize] == 1 {
        // The last level's single partial file holds the totals.
        let totals = storage
            .get(&plan::partial_path(&row.location, args.level as u32, 0))
            .await?;
        let mut sums = vec![0u64; row.entries as usize];
        numbers::add_binary(&totals, &mut sums).map_err(JobError::permanent)?;
        let (text, mean) = numbers::averages(&sums, files);
        let output = plan::output_path(&row.location);
        storage.put(&output, text.into_bytes()).await?;
        db::finish(store, row.id, row.level, Ok((&output, mean)), now).await?;
        return Ok(json!({"output": output, "mean": mean}));
    }

    let next = (args.level + 1) as u32;
    let tasks: Vec<NewJob> = (0..levels[next as usize])
        .map(|index| {
            let args = SumArgs {
                job: row.id,
                level: next,
                entries: row.entries as u64,
                inputs: plan::task_inputs(&row.location, files, group, next, index),
                output: plan::partial_path(&row.location, next, index),
            };
            NewJob::new(SUM, json!(args)).queue(QUEUE)
        })
        .collect();
    let done_before: u64 = levels[..next as usize].iter().sum();
    let mut tx = store.begin().await?;
    let enqueued = tx
        .enqueue_group(&tasks, continuation(row.id, next as i32))
        .await?;
    if db::advance(
        &mut tx,
        row.id,
        args.level,
        enqueued.group_id,
        done_before as i32,
        now,
    )
    .await?
    {
        tx.commit().await?;
        Ok(json!({"level": next, "tasks": tasks.len()}))
    } else {
        // Another run of this continuation got there first; dropping `tx` rolls back.
        Ok(json!({"skipped": "another run started the level"}))
    }
}
