//! The job kinds. Indexing and cloning wait on hosts, so they run on queue `mining-fetch`;
//! analysis is CPU-bound and runs on queue `mining`, whose concurrency should match the
//! cores.
//!
//! - `mining.tick` (periodic): starts `mining.index` for every enabled, unpaused indexer.
//! - `mining.index {indexer}`: fetches batches while the backlog of discovered repositories
//!   is under its bound, storing repositories and the cursor in one transaction per batch;
//!   a throttled host pauses the indexer until its reset.
//! - `mining.process {repo}`: waits for room in the download area, clones (shallow, bounded
//!   in size and time), records HEAD, files and commits (replacing an earlier run's), and
//!   enqueues one `mining.analyze` per chunk of files as one engine group.
//! - `mining.analyze {repo, dir, files}`: runs the analyzers on a chunk of files, each under
//!   a size cap and a time limit, and records the results in one transaction.
//! - `mining.finish {repo, dir}`: the group's continuation, released exactly once by the
//!   engine: marks the repository analysed and removes the clone.
//!
//! The feeder admits discovered repositories to `queued` (one `mining.process` each) while
//! fewer than `queued_max` wait, so the backlog of downloads is bounded.
//!
//! Every step can run twice (a worker killed after its work but before its completion was
//! recorded): the processing job's id is on the repository row, so its rerun sees its own
//! finished work; file ids change when a repository is re-listed, so an old run's analysis
//! lands nowhere; removing a clone that is gone is a no-op.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use conveyor_queue::{JobContext, JobError, NewJob, Registry, Store, Tx};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::analyzer::{self, Analyzers, Source};
use crate::db::{self, FileResult};
use crate::git::{self, CloneLimits};
use crate::indexer::{Found, Hosts, IndexError};

/// The analysis queue (CPU-bound).
pub const QUEUE: &str = "mining";
/// The queue of indexing and cloning (waiting on hosts).
pub const FETCH_QUEUE: &str = "mining-fetch";
/// Starts the indexers.
pub const TICK: &str = "mining.tick";
/// Runs one indexer.
pub const INDEX: &str = "mining.index";
/// Clones and lists one repository.
pub const PROCESS: &str = "mining.process";
/// Analyses a chunk of files.
pub const ANALYZE: &str = "mining.analyze";
/// Removes a clone once its files are analysed.
pub const FINISH: &str = "mining.finish";

/// The pipeline's bounds and places.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The download area (clones live under it while their files are analysed). Workers on
    /// several machines share it, as the POC's volume; a worker that finds a clone missing
    /// clones it again.
    pub downloads: PathBuf,
    /// Bounds of one clone.
    pub clone: CloneLimits,
    /// Most bytes of clones at once; processing waits for room (the POC's 2 GB).
    pub area_max_bytes: u64,
    /// Most repositories queued for download (the POC's 24).
    pub queued_max: i64,
    /// Larger files are not analysed (recorded as failed, naming the limit).
    pub file_max_bytes: u64,
    /// Longest analysis of one file.
    pub file_timeout: Duration,
    /// Threads running analyzers in this process (default: the cores); the `mining` queue's
    /// concurrency should be at least this, so every thread has a file.
    pub analysis_threads: usize,
    /// Most files in one `mining.analyze` task.
    pub files_per_task: usize,
    /// Most bytes in one task (a larger file has a task of its own): tasks of about equal
    /// work, so a few large files do not hold back a run, and small files share their
    /// task's fixed cost (a `git cat-file`, a claim, a transaction: 4-5 ms of CPU, measured
    /// with `bench mining --files-per-task 16` against 256).
    pub task_bytes: u64,
    /// Most files recorded per repository.
    pub files_max: usize,
    /// Commit messages analysed per repository (the clone's depth).
    pub commits_max: usize,
    /// Batches an indexer fetches per run.
    pub index_batches: usize,
    /// Indexers wait while this many repositories are discovered and not yet queued.
    pub backlog_max: i64,
    /// How long a throttled indexer pauses when the host does not say (the POC's 30 min).
    pub pause: Duration,
    /// Which repository addresses may be cloned (network URLs to public hosts by default).
    pub sources: crate::source::SourcePolicy,
    /// The GitHub indexer's token, if any.
    pub github_token: Option<secrecy::SecretString>,
    /// The GitLab indexer's token, if any.
    pub gitlab_token: Option<secrecy::SecretString>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            downloads: PathBuf::from("mining-downloads"),
            clone: CloneLimits {
                timeout: Duration::from_secs(300),
                max_bytes: 1 << 30,
                depth: 20,
            },
            area_max_bytes: 2 << 30,
            queued_max: 24,
            file_max_bytes: 1 << 20,
            file_timeout: Duration::from_secs(10),
            analysis_threads: std::thread::available_parallelism().map_or(2, usize::from),
            files_per_task: 256,
            task_bytes: 1 << 20,
            files_max: 100_000,
            commits_max: 20,
            index_batches: 10,
            backlog_max: 1_000,
            pause: Duration::from_secs(30 * 60),
            sources: crate::source::SourcePolicy::default(),
            github_token: None,
            gitlab_token: None,
        }
    }
}

/// What the handlers share: settings, analyzers, indexer kinds, an HTTP client.
#[derive(Debug, Clone)]
pub struct Mining {
    /// Bounds and places.
    pub settings: Arc<Settings>,
    /// The analyzers.
    pub analyzers: Analyzers,
    /// The indexer kinds.
    pub hosts: Hosts,
    /// For the hosts' APIs.
    pub http: reqwest::Client,
    /// The threads that run the analyzers.
    pub pool: crate::pool::AnalysisPool,
}

impl Mining {
    /// The standard analyzers and hosts with `settings`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(settings: Settings) -> reqwest::Result<Self> {
        let settings_threads = settings.analysis_threads;
        conveyor_web::install_tls_provider();
        let http = reqwest::Client::builder()
            .user_agent("conveyor-mining")
            .timeout(Duration::from_secs(30))
            .build()?;
        let hosts =
            Hosts::with_tokens(settings.github_token.clone(), settings.gitlab_token.clone());
        Ok(Self {
            settings: Arc::new(settings),
            analyzers: Analyzers::standard(),
            hosts,
            http,
            pool: crate::pool::AnalysisPool::new(settings_threads),
        })
    }
}

/// `mining.index`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexArgs {
    /// The indexer's name.
    pub indexer: String,
}

/// `mining.process`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProcessArgs {
    /// The repository.
    pub repo: i64,
}

/// One file of an analysis task.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileRef {
    /// Its row.
    pub id: i64,
    /// Path in the repository.
    pub path: String,
    /// Its language.
    pub language: String,
    /// Its blob, read from the clone's objects. Empty in tasks made before clones lost their
    /// working tree: those read the checked-out file.
    #[serde(default)]
    pub blob: String,
}

/// `mining.analyze`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnalyzeArgs {
    /// The repository.
    pub repo: i64,
    /// The clone.
    pub dir: String,
    /// Where it was cloned from, to clone again if the clone is missing here.
    pub url: String,
    /// The commit listed.
    pub head: String,
    /// The files.
    pub files: Vec<FileRef>,
}

/// `mining.finish`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishArgs {
    /// The repository.
    pub repo: i64,
    /// The processing job whose run this ends.
    pub job: i64,
    /// The clone to remove.
    pub dir: String,
}

/// Registers the five kinds.
pub fn register(registry: &mut Registry, mining: Mining) {
    let m = mining.clone();
    registry.register(TICK, move |_: Value, ctx: JobContext| {
        let m = m.clone();
        async move { tick(&m, &ctx).await }
    });
    let m = mining.clone();
    registry.register(INDEX, move |args: IndexArgs, ctx: JobContext| {
        let m = m.clone();
        async move { index(&m, args, &ctx).await }
    });
    let m = mining.clone();
    registry.register(PROCESS, move |args: ProcessArgs, ctx: JobContext| {
        let m = m.clone();
        async move { process(&m, args, &ctx).await }
    });
    let m = mining.clone();
    registry.register(ANALYZE, move |args: AnalyzeArgs, ctx: JobContext| {
        let m = m.clone();
        async move { analyze(&m, args, &ctx).await }
    });
    registry.register(FINISH, move |args: FinishArgs, ctx: JobContext| {
        let m = mining.clone();
        async move { finish(&m, args, &ctx).await }
    });
}

/// The periodic tick's job.
pub fn tick_job() -> NewJob {
    NewJob::new(TICK, json!({})).queue(FETCH_QUEUE)
}

/// The job that runs indexer `name` (one live at a time).
pub fn index_job(name: &str) -> NewJob {
    NewJob::new(
        INDEX,
        json!(IndexArgs {
            indexer: name.to_owned()
        }),
    )
    .queue(FETCH_QUEUE)
    .unique_key(format!("{INDEX}:{name}"))
}

/// The job that processes repository `repo` (one live at a time).
pub fn process_job(repo: i64) -> NewJob {
    NewJob::new(PROCESS, json!(ProcessArgs { repo }))
        .queue(FETCH_QUEUE)
        .max_attempts(3)
        .unique_key(format!("{PROCESS}:{repo}"))
}

fn db_error(error: sqlx::Error) -> JobError {
    JobError::retry(format!("database: {error}"))
}

/// Admits queued repositories in `tx` and enqueues their processing.
///
/// # Errors
/// The database's.
pub async fn feed_in(tx: &mut Tx, settings: &Settings) -> conveyor_queue::Result<usize> {
    let now = conveyor_queue::clock::now_ms();
    let admitted = db::feed(tx, settings.queued_max, now).await?;
    let jobs: Vec<NewJob> = admitted.iter().map(|id| process_job(*id)).collect();
    if !jobs.is_empty() {
        tx.enqueue_many(&jobs).await?;
    }
    Ok(admitted.len())
}

/// [`feed_in`] in a transaction of its own.
///
/// # Errors
/// The database's.
pub async fn feed(store: &Store, settings: &Settings) -> conveyor_queue::Result<usize> {
    let mut tx = store.begin().await?;
    let admitted = feed_in(&mut tx, settings).await?;
    tx.commit().await?;
    Ok(admitted)
}

async fn tick(m: &Mining, ctx: &JobContext) -> Result<Value, JobError> {
    let store = ctx.store();
    let now = conveyor_queue::clock::now_ms();
    let mut started = Vec::new();
    for row in db::indexers(store).await.map_err(db_error)? {
        if row.enabled && row.paused_until.is_none_or(|until| until <= now) {
            store.enqueue(index_job(&row.name)).await?;
            started.push(row.name);
        }
    }
    feed(store, &m.settings).await?;
    Ok(json!({ "started": started }))
}

async fn index(m: &Mining, args: IndexArgs, ctx: &JobContext) -> Result<Value, JobError> {
    let store = ctx.store();
    let Some(row) = db::indexer(store, &args.indexer).await.map_err(db_error)? else {
        return Err(JobError::permanent(format!("no indexer {}", args.indexer)));
    };
    let Some(host) = m.hosts.get(&row.host) else {
        return Err(JobError::permanent(format!("no indexer kind {}", row.host)));
    };
    let settings: Value = serde_json::from_str(&row.settings)
        .map_err(|e| JobError::permanent(format!("settings: {e}")))?;
    let mut cursor: Value = serde_json::from_str(&row.cursor)
        .map_err(|e| JobError::permanent(format!("cursor: {e}")))?;
    let (mut batches, mut added) = (0, 0);
    while batches < m.settings.index_batches && !ctx.is_cancelled() {
        if db::discovered_backlog(store).await.map_err(db_error)? >= m.settings.backlog_max {
            break;
        }
        let outcome = host.next_batch(&m.http, &settings, &cursor).await;
        let now = conveyor_queue::clock::now_ms();
        batches += 1;
        let (batch, error, paused_until) = match outcome {
            Ok(batch) => {
                let pause = batch.pause_until;
                (Some(batch), None, pause)
            }
            Err(IndexError::Throttled { until, reason }) => {
                let until = until.unwrap_or(now + m.settings.pause.as_millis() as i64);
                tracing::info!(indexer = %row.name, until, %reason, "indexer throttled; paused");
                (None, Some(format!("throttled: {reason}")), Some(until))
            }
            Err(error) => (None, Some(error.to_string()), None),
        };
        let found: Vec<Found> = batch
            .as_ref()
            .map_or(&[][..], |b| &b.found[..])
            .iter()
            .filter(|found| match m.settings.sources.check(&found.url) {
                Ok(()) => true,
                Err(rule) => {
                    tracing::warn!(indexer = %row.name, %rule, "indexer found a URL it may not clone; skipped");
                    false
                }
            })
            .cloned()
            .collect();
        let run = db::IndexerRun {
            found: &found,
            cursor: batch.as_ref().map(|b| b.cursor.to_string()),
            paused_until,
            error: error.clone(),
        };
        let mut tx = store.begin().await?;
        added += db::record_batch(&mut tx, &row.name, &run, now)
            .await
            .map_err(db_error)?;
        feed_in(&mut tx, &m.settings).await?;
        tx.commit().await?;
        match batch {
            Some(batch) if !batch.exhausted && paused_until.is_none() => cursor = batch.cursor,
            _ => break,
        }
    }
    metrics::counter!("mining_repositories_discovered_total").increment(added);
    Ok(json!({ "batches": batches, "added": added }))
}

/// Waits until the download area has room, or the job is told to stop.
async fn wait_for_room(m: &Mining, ctx: &JobContext) -> Result<(), JobError> {
    loop {
        if git::size_of(&m.settings.downloads).await < m.settings.area_max_bytes {
            return Ok(());
        }
        tokio::select! {
            () = ctx.cancelled() => return Err(JobError::retry("stopped while waiting for room")),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    }
}

async fn process(m: &Mining, args: ProcessArgs, ctx: &JobContext) -> Result<Value, JobError> {
    let store = ctx.store();
    let Some(row) = db::repo(store, args.repo).await.map_err(db_error)? else {
        return Ok(json!({"skipped": "no such repository"}));
    };
    if row.job_id == Some(ctx.id()) && matches!(row.state.as_str(), "analyzing" | "analyzed") {
        return Ok(json!({"skipped": "this job processed it already"}));
    }
    let now = conveyor_queue::clock::now_ms();
    db::start_fetch(store, row.id, ctx.id(), now)
        .await
        .map_err(db_error)?;
    // One left `queued`: admit the next.
    feed(store, &m.settings).await?;
    wait_for_room(m, ctx).await?;

    let dir = clone_dir(&m.settings, row.id, ctx.id());
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&m.settings.downloads)
        .await
        .map_err(|e| JobError::retry(format!("download area: {e}")))?;
    let fail = |error: String, permanent: bool| async move {
        let last = permanent || ctx.attempt() >= ctx.max_attempts();
        if last {
            let now = conveyor_queue::clock::now_ms();
            db::fail_repo(store, row.id, ctx.id(), &error, now)
                .await
                .map_err(db_error)?;
            metrics::counter!("mining_repositories_processed_total", "outcome" => "failed")
                .increment(1);
            Err(JobError::permanent(error))
        } else {
            Err(JobError::retry(error))
        }
    };
    if let Err(rule) = m.settings.sources.check_resolved(&row.url).await {
        return fail(rule, true).await;
    }
    if let Err(error) = git::clone(&row.url, &dir, &m.settings.clone).await {
        let permanent = matches!(error, git::GitError::TooLarge(_));
        return fail(error.to_string(), permanent).await;
    }
    // Three git processes at once: the listing is the wait before any file can start.
    let listed = tokio::try_join!(
        git::head(&dir),
        git::files(&dir, m.settings.files_max),
        git::commits(&dir, m.settings.commits_max),
    );
    let (head, tracked, commits) = match listed {
        Ok(listed) => listed,
        Err(error) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return fail(error.to_string(), false).await;
        }
    };
    let kept: Vec<(&git::TrackedFile, &'static str)> = tracked
        .iter()
        .filter_map(|f| {
            let language = analyzer::language_of(&f.path)?;
            m.analyzers.serves(language).then_some((f, language))
        })
        .collect();
    let files: Vec<db::NewFile> = kept
        .iter()
        .map(|(f, language)| db::NewFile {
            path: f.path.clone(),
            language: (*language).to_owned(),
            bytes: f.bytes as i64,
        })
        .collect();
    let commits: Vec<db::NewCommit> = commits
        .iter()
        .map(|c| db::NewCommit {
            sha: c.sha.clone(),
            committed_at: c.time * 1000,
            kind: analyzer::commit::kind(&c.message, c.parents).as_str(),
            readability: analyzer::commit::fog(&c.message),
            summary: c
                .message
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(200)
                .collect(),
        })
        .collect();
    let fetched = db::Fetched {
        head: head.clone(),
        clone_bytes: git::size_of(&dir).await as i64,
        files_listed: tracked.len() as i32,
        files_total: files.len() as i32,
    };

    let now = conveyor_queue::clock::now_ms();
    let mut tx = store.begin().await?;
    let ids = db::replace_files(&mut tx, row.id, &files, &commits, now)
        .await
        .map_err(db_error)?;
    let dir_text = dir.to_string_lossy().into_owned();
    // Largest files first: tasks are claimed in the order they are enqueued, so the heavy
    // ones start early and the run ends on small ones, instead of a thread finishing a chunk
    // of big files while the others idle (longest processing time first). In path order a
    // directory of large files could land in one chunk at the end.
    let mut by_size: Vec<_> = kept.iter().zip(ids.iter().copied()).collect();
    by_size.sort_by_key(|((f, _), _)| std::cmp::Reverse(f.bytes));
    let chunks = chunks(
        by_size.into_iter().map(|((f, language), id)| {
            let file = FileRef {
                id,
                path: f.path.clone(),
                language: (*language).to_owned(),
                blob: f.blob.clone(),
            };
            (file, f.bytes)
        }),
        &m.settings,
    );
    let tasks: Vec<NewJob> = chunks
        .into_iter()
        .map(|files| {
            let args = AnalyzeArgs {
                repo: row.id,
                dir: dir_text.clone(),
                url: row.url.clone(),
                head: head.clone(),
                files,
            };
            NewJob::new(ANALYZE, json!(args))
                .queue(QUEUE)
                .max_attempts(5)
        })
        .collect();
    let group = if tasks.is_empty() {
        None
    } else {
        let finish = NewJob::new(
            FINISH,
            json!(FinishArgs {
                repo: row.id,
                job: ctx.id(),
                dir: dir_text.clone(),
            }),
        )
        .queue(QUEUE)
        .max_attempts(10);
        Some(tx.enqueue_group(&tasks, finish).await?.group_id)
    };
    if !db::set_analyzing(&mut tx, row.id, ctx.id(), group, &fetched, now)
        .await
        .map_err(db_error)?
    {
        drop(tx);
        let _ = tokio::fs::remove_dir_all(&dir).await;
        return Ok(json!({"skipped": "the repository was taken by another run"}));
    }
    tx.commit().await?;
    if group.is_none() {
        let _ = tokio::fs::remove_dir_all(&dir).await;
        metrics::counter!("mining_repositories_processed_total", "outcome" => "analyzed")
            .increment(1);
    }
    Ok(json!({ "head": head, "files": files.len(), "tasks": tasks.len() }))
}

/// Files (with their sizes) in tasks of at most `files_per_task` files and `task_bytes`
/// bytes, in the order given; a file larger than `task_bytes` has a task of its own. A file
/// past the size cap is skipped unread, so it weighs as much as the cap.
fn chunks(files: impl Iterator<Item = (FileRef, u64)>, settings: &Settings) -> Vec<Vec<FileRef>> {
    let mut chunks: Vec<Vec<FileRef>> = Vec::new();
    let mut weight = 0;
    for (file, bytes) in files {
        let bytes = bytes.min(settings.file_max_bytes);
        match chunks.last_mut() {
            Some(chunk)
                if chunk.len() < settings.files_per_task
                    && weight + bytes <= settings.task_bytes =>
            {
                weight += bytes;
                chunk.push(file);
            }
            _ => {
                weight = bytes;
                chunks.push(vec![file]);
            }
        }
    }
    chunks
}

/// Where the processing job `job` of repository `repo` clones it: the only directory its
/// tasks may read or remove (their arguments are checked against it, never trusted).
pub fn clone_dir(settings: &Settings, repo: i64, job: i64) -> PathBuf {
    settings.downloads.join(format!("{repo}-{job}"))
}

/// The clone a task of repository `repo` names in `dir`, in this worker's own download
/// area: only the name (`<repo>-<job>`) is taken from the task, never the place, so a task
/// can read or write nowhere else. Where the area is shared (the same path on every
/// machine, as deployed) it is the directory the processing job cloned into; a worker whose
/// area is elsewhere clones again into its own.
fn local_clone_dir(settings: &Settings, repo: i64, dir: &str) -> Result<PathBuf, String> {
    let name = Path::new(dir)
        .file_name()
        .and_then(|name| name.to_str())
        .filter(|name| {
            name.strip_prefix(&format!("{repo}-"))
                .is_some_and(|job| !job.is_empty() && job.bytes().all(|b| b.is_ascii_digit()))
        })
        .ok_or_else(|| format!("{dir:?} is not a clone of repository {repo}"))?;
    Ok(settings.downloads.join(name))
}

/// Makes sure the clone is at `dir`: a worker on another machine, or after the download
/// area was lost, clones again (into a temporary name first, so concurrent tasks do not
/// see a half clone) and checks that HEAD is still the commit listed.
async fn ensure_clone(m: &Mining, args: &AnalyzeArgs, store: &Store) -> Result<(), String> {
    let dir = local_clone_dir(&m.settings, args.repo, &args.dir)?;
    if tokio::fs::metadata(&dir).await.is_ok() {
        return Ok(());
    }
    // Cloning again: from the repository's own URL, as its row says, never the argument's.
    let row = db::repo(store, args.repo)
        .await
        .map_err(|e| format!("database: {e}"))?
        .ok_or_else(|| format!("no repository {}", args.repo))?;
    if row.url != args.url {
        return Err(format!(
            "{:?} is not the URL of repository {}",
            args.url, args.repo
        ));
    }
    m.settings.sources.check_resolved(&row.url).await?;
    let temporary = PathBuf::from(format!("{}.{:x}", dir.display(), rand::random::<u32>()));
    git::clone(&args.url, &temporary, &m.settings.clone)
        .await
        .map_err(|e| e.to_string())?;
    let head = git::head(&temporary).await.map_err(|e| e.to_string())?;
    if head != args.head {
        let _ = tokio::fs::remove_dir_all(&temporary).await;
        return Err(format!(
            "the clone was lost and the repository moved on from {} to {head}; re-process it",
            args.head
        ));
    }
    if tokio::fs::rename(&temporary, &dir).await.is_err() {
        // Another task got there first.
        let _ = tokio::fs::remove_dir_all(&temporary).await;
    }
    Ok(())
}

/// A task's files and the one `git cat-file` their bytes come from, shared by the analysis
/// threads: each piece of work takes the next file, reads it and analyses it, so the bytes
/// go from git's pipe to the analyzers on one thread and no file waits on the runtime.
struct TaskFiles {
    files: Vec<FileRef>,
    dir: PathBuf,
    max: u64,
    /// The reader, and the next file to take.
    next: std::sync::Mutex<(git::Blobs, usize)>,
    /// Set when the task ended: work still queued takes nothing.
    stopped: std::sync::atomic::AtomicBool,
    /// Kills the reader, so a thread blocked reading from a stuck git is let go.
    reader: git::BlobsStop,
}

/// A file's bytes, or why it has none (over the size cap, gone from the clone), or git
/// failing to read it.
type Bytes = Result<Result<Vec<u8>, String>, git::GitError>;

impl TaskFiles {
    /// The next file's index and its bytes; `None` when every file is taken or the task
    /// stopped.
    fn take(&self) -> Option<(usize, Bytes)> {
        use std::sync::atomic::Ordering;
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let too_large =
            |size: u64| format!("{size} bytes: larger than the {}-byte limit", self.max);
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let index = next.1;
        let file = self.files.get(index)?;
        next.1 += 1;
        if file.blob.is_empty() {
            // A task from before clones lost their working tree reads the file.
            drop(next);
            let path = self.dir.join(&file.path);
            return Some((
                index,
                Ok(match std::fs::metadata(&path) {
                    Ok(meta) if meta.len() > self.max => Err(too_large(meta.len())),
                    Ok(_) => std::fs::read(&path).map_err(|e| format!("cannot read: {e}")),
                    Err(e) => Err(format!("cannot read: {e}")),
                }),
            ));
        }
        let read = next.0.next(self.max).map(|blob| match blob {
            git::Blob::Bytes(bytes) => Ok(bytes),
            git::Blob::TooLarge(size) => Err(too_large(size)),
            git::Blob::Missing => Err(format!("blob {} is not in the clone", file.blob)),
        });
        Some((index, read))
    }
}

/// A task's pieces of work not yet ended; the last to end wakes the task.
struct Remaining {
    files: std::sync::atomic::AtomicUsize,
    all_done: tokio::sync::Notify,
    ctx: JobContext,
    total: usize,
}

/// Counts a piece of work as ended when dropped (returned, panicked or not), with the
/// task's progress.
struct Counted(Arc<Remaining>);

impl Drop for Counted {
    fn drop(&mut self) {
        let left = self
            .0
            .files
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            - 1;
        let total = self.0.total;
        self.0
            .ctx
            .progress((total - left) as i64, Some(total as i64), None);
        if left == 0 {
            self.0.all_done.notify_one();
        }
    }
}

/// Runs the analyzers on one file's bytes.
fn measure(analyzers: &Analyzers, file: &FileRef, bytes: &[u8]) -> FileResult {
    let analysis = analyzers.analyze(&Source {
        path: &file.path,
        language: &file.language,
        bytes,
    });
    FileResult {
        id: file.id,
        error: (!analysis.errors.is_empty()).then(|| analysis.errors.join("; ")),
        summary: analysis.summary,
        metrics: Some(Value::Object(analysis.reports).to_string()),
    }
}

async fn analyze(m: &Mining, args: AnalyzeArgs, ctx: &JobContext) -> Result<Value, JobError> {
    if let Err(error) = ensure_clone(m, &args, ctx.store()).await {
        if ctx.attempt() < ctx.max_attempts() {
            return Err(JobError::retry(error));
        }
        let results: Vec<FileResult> = args
            .files
            .iter()
            .map(|f| FileResult {
                id: f.id,
                error: Some(error.clone()),
                ..FileResult::default()
            })
            .collect();
        db::record_files(ctx.store(), &results, conveyor_queue::clock::now_ms()).await?;
        return Err(JobError::permanent(error));
    }
    let dir = local_clone_dir(&m.settings, args.repo, &args.dir).map_err(JobError::permanent)?;
    let total = args.files.len();
    let mut blobs = git::Blobs::open(&dir).map_err(|e| JobError::retry(e.to_string()))?;
    // Every blob asked for up front (git reads ahead), answered in the files' order.
    let ids = args
        .files
        .iter()
        .map(|f| f.blob.as_str())
        .filter(|b| !b.is_empty());
    blobs
        .queue(ids)
        .map_err(|e| JobError::permanent(e.to_string()))?;
    let task = Arc::new(TaskFiles {
        files: args.files,
        dir,
        max: m.settings.file_max_bytes,
        reader: blobs.stopper(),
        next: std::sync::Mutex::new((blobs, 0)),
        stopped: std::sync::atomic::AtomicBool::new(false),
    });
    // Whatever ends this task (done, cancelled, failed), work still queued takes nothing
    // and git stops.
    struct Stop(Arc<TaskFiles>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0
                .stopped
                .store(true, std::sync::atomic::Ordering::Relaxed);
            self.0.reader.stop();
        }
    }
    let _stop = Stop(task.clone());
    // One piece of work a file, all queued at once: the threads never wait for this task to
    // hand them the next file, and a task running alone (the end of a repository) keeps
    // every thread busy. Each records which file it took, to name it if it overruns, and
    // the last to end wakes this task once (see `AnalysisPool::submit`).
    let remaining = Arc::new(Remaining {
        files: std::sync::atomic::AtomicUsize::new(total),
        all_done: tokio::sync::Notify::new(),
        ctx: ctx.clone(),
        total,
    });
    let submitted: Vec<_> = (0..total)
        .map(|_| {
            let (task, analyzers) = (task.clone(), m.analyzers.clone());
            let taken = Arc::new(std::sync::OnceLock::new());
            let work = {
                let (taken, remaining) = (taken.clone(), remaining.clone());
                move || {
                    let _counted = Counted(remaining);
                    let (index, bytes) = task.take()?;
                    let _ = taken.set(index);
                    let file = &task.files[index];
                    Some(bytes.map(|bytes| match bytes {
                        Ok(bytes) => measure(&analyzers, file, &bytes),
                        Err(error) => FileResult {
                            id: file.id,
                            error: Some(error),
                            ..FileResult::default()
                        },
                    }))
                }
            };
            (m.pool.submit(m.settings.file_timeout, work), taken)
        })
        .collect();
    // Woken once, when the last piece ends; past a file's time limit (something is slow)
    // each piece is watched on its own, which names an overrunning file at its limit.
    tokio::select! {
        () = remaining.all_done.notified() => {}
        () = tokio::time::sleep(m.settings.file_timeout) => {}
        () = ctx.cancelled() => return Err(JobError::retry("stopped")),
    }
    let mut pending: FuturesUnordered<_> = submitted
        .into_iter()
        .map(|(piece, taken)| piece.wait().map(move |outcome| (outcome, taken)))
        .collect();
    let mut results = Vec::with_capacity(total);
    loop {
        let next = tokio::select! {
            next = pending.next() => next,
            () = ctx.cancelled() => return Err(JobError::retry("stopped")),
        };
        let Some((outcome, taken)) = next else { break };
        let result = match outcome {
            Ok(Some(Ok(result))) => result,
            Ok(Some(Err(error))) => return Err(JobError::retry(error.to_string())),
            // No file left for it: not while this task waits, as there is one piece a file.
            Ok(None) => continue,
            Err(error) => match taken.get() {
                Some(&index) => FileResult {
                    id: task.files[index].id,
                    error: Some(format!("analysis {error}")),
                    ..FileResult::default()
                },
                // Stuck before taking a file: in git, not in an analyzer.
                None => return Err(JobError::retry(format!("reading blobs {error}"))),
            },
        };
        results.push(result);
    }
    db::record_files(ctx.store(), &results, conveyor_queue::clock::now_ms()).await?;
    let failed = results.iter().filter(|r| r.metrics.is_none()).count() as u64;
    metrics::counter!("mining_files_analyzed_total", "outcome" => "analyzed")
        .increment(results.len() as u64 - failed);
    metrics::counter!("mining_files_analyzed_total", "outcome" => "failed").increment(failed);
    Ok(json!({ "files": results.len(), "failed": failed }))
}

async fn finish(m: &Mining, args: FinishArgs, ctx: &JobContext) -> Result<Value, JobError> {
    // The only directory this run may remove is its own clone, in this worker's area.
    let own = clone_dir(&m.settings, args.repo, args.job);
    if Path::new(&args.dir).file_name() != own.file_name() {
        return Err(JobError::permanent(format!(
            "{:?} is not the clone of repository {} by job {}",
            args.dir, args.repo, args.job
        )));
    }
    // Marked first: every result is recorded by now, and removing a clone of thousands of
    // files takes a while (25 ms for tokio's sources) that readers of the repository need
    // not wait for. A retry after a failed removal finds it marked and removes again.
    let store = ctx.store();
    let now = conveyor_queue::clock::now_ms();
    if db::finish_repo(store, args.repo, args.job, now)
        .await
        .map_err(db_error)?
    {
        metrics::counter!("mining_repositories_processed_total", "outcome" => "analyzed")
            .increment(1);
    }
    match tokio::fs::remove_dir_all(&own).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            return Err(JobError::retry(format!(
                "removing {}: {error}",
                own.display()
            )));
        }
    }
    Ok(json!({ "removed": own.display().to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_hold_about_equal_bytes() {
        let settings = Settings {
            files_per_task: 4,
            task_bytes: 1000,
            file_max_bytes: 5000,
            ..Settings::default()
        };
        let sizes = [9000, 1200, 600, 300, 300, 200, 100, 10, 10, 10, 10, 10, 10];
        let files = sizes.iter().enumerate().map(|(i, bytes)| {
            let file = FileRef {
                id: i as i64,
                path: format!("f{i}"),
                language: "Rust".into(),
                blob: String::new(),
            };
            (file, *bytes)
        });
        let tasks: Vec<Vec<i64>> = chunks(files, &settings)
            .iter()
            .map(|task| task.iter().map(|f| f.id).collect())
            .collect();
        // Past the cap or the budget: alone; then up to 1000 bytes, then up to 4 files.
        assert_eq!(
            tasks,
            [
                vec![0],
                vec![1],
                vec![2, 3],
                vec![4, 5, 6, 7],
                vec![8, 9, 10, 11],
                vec![12]
            ]
        );
        assert!(chunks(std::iter::empty(), &settings).is_empty());
    }
}
