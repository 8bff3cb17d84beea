//! Group commit: concurrent single-job enqueues ([`Store::enqueue`], [`Store::enqueue_each`])
//! share transactions.
//!
//! One request an HTTP call, one transaction a request, was 20-50x slower than the engine:
//! every job paid a commit (an fsync on PostgreSQL, the one writer's turn on SQLite), and on
//! SQLite fifty request handlers queued for the writer beside one claimer and one completer,
//! which then got a fiftieth of its turns and fell behind. Here requests go to one
//! committer task per store, which takes whatever has arrived (up to [`BATCH_MAX`]) and
//! writes it as one multi-row insert in one transaction, then answers each caller with its
//! own job. It does not wait for company: a lone request is written at once, and requests
//! gather by themselves while the previous batch commits, so batches grow with the load
//! and an idle server's latency does not.
//!
//! - Each caller gets its own outcome: a job whose unique key is held gets the live holder
//!   (inside the batch too: the second of two with one key gets the first), and if the
//!   shared transaction fails (a value the database refuses, a lost connection) every job
//!   of the batch is written again alone, so only the bad one gets the error.
//! - Nothing is answered before its transaction commits: a crash loses only jobs no caller
//!   was told about.
//! - On SQLite one batch is in flight at a time (there is one writer); on PostgreSQL up to
//!   [`PG_FLUSHERS`], so the next batch fills while one waits for its commit.
//! - The channel is bounded ([`QUEUED_MAX`]): beyond it, callers wait to be taken.

use std::any::Any;
use std::sync::{Arc, Weak};

use futures_util::future::BoxFuture;

use sqlx::types::Json;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::clock::now_ms;
use crate::enqueue::Enqueued;
use crate::error::{Error, Result};
use crate::job::{Job, NewJob, job_columns};
use crate::store::{Backend, Inner, Store, Tx, dispatch};

/// Most jobs one transaction takes.
pub const BATCH_MAX: usize = 1000;
/// Most requests waiting for the committer.
const QUEUED_MAX: usize = 10_000;
/// Batches in flight at once on PostgreSQL: one fills while one commits. Four measured
/// worse (8.2-8.7k against 10.4k jobs/s, `docs/bench/2026-12-07-http.md`): smaller batches,
/// more statements for the same jobs on a machine whose two cores are the limit.
const PG_FLUSHERS: usize = 2;

/// An app's unit of work that must commit with its jobs (its own rows and the jobs that
/// depend on them, as average's create and mining's add write them): run inside a shared
/// transaction under a savepoint, and again alone if the shared transaction fails (so it
/// may run more than once: `FnMut`, and nothing outside the transaction may depend on a run).
pub type Work =
    Box<dyn for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<Box<dyn Any + Send>>> + Send>;

/// What a caller hands the committer, and where the outcome goes.
pub(crate) enum Request {
    /// Jobs (one, or a batch that goes into one transaction).
    Jobs {
        jobs: Vec<NewJob>,
        reply: oneshot::Sender<Vec<Result<Enqueued>>>,
    },
    /// An app's unit of work.
    Work {
        work: Work,
        reply: oneshot::Sender<Result<Box<dyn Any + Send>>>,
    },
}

impl Request {
    /// How much of a batch it takes: its jobs, or one for a unit of work.
    fn size(&self) -> usize {
        match self {
            Request::Jobs { jobs, .. } => jobs.len(),
            Request::Work { .. } => 1,
        }
    }
}

/// The sending side, kept by the store; the committer task holds only a weak reference to
/// the store, so dropping the last `Store` ends it.
pub(crate) type Committer = mpsc::Sender<Request>;

/// Starts the committer of `inner`'s store on the current runtime.
pub(crate) fn start(inner: &Arc<Inner>, backend: Backend) -> Committer {
    let (sender, receiver) = mpsc::channel(QUEUED_MAX);
    let flushers = match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => PG_FLUSHERS,
    };
    tokio::spawn(run(Arc::downgrade(inner), receiver, flushers));
    sender
}

async fn run(store: Weak<Inner>, mut requests: mpsc::Receiver<Request>, flushers: usize) {
    let slots = Arc::new(Semaphore::new(flushers));
    while let Some(first) = requests.recv().await {
        // Waiting for a slot lets the batch grow while the others commit.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let mut size = first.size();
        let mut batch = vec![first];
        while size < BATCH_MAX {
            match requests.try_recv() {
                Ok(request) => {
                    size += request.size();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = Store::from_inner(inner);
        tokio::spawn(async move {
            flush(&store, batch).await;
            drop(slot);
        });
    }
}

/// Writes `batch` in one transaction and answers each caller; if that fails, writes each
/// job and runs each unit of work alone.
async fn flush(store: &Store, mut batch: Vec<Request>) {
    let plain_only = batch.iter().all(|r| match r {
        Request::Jobs { jobs, .. } => jobs.iter().all(|j| j.unique_key.is_none()),
        Request::Work { .. } => false,
    });
    let jobs: Vec<NewJob> = batch
        .iter()
        .flat_map(|r| match r {
            Request::Jobs { jobs, .. } => jobs.as_slice(),
            Request::Work { .. } => &[],
        })
        .cloned()
        .collect();
    let shared = async {
        let job_refs: Vec<&NewJob> = jobs.iter().collect();
        if store.backend() == Backend::Postgres && plain_only {
            return Ok((insert_pg_statement(store, &job_refs).await?, Vec::new()));
        }
        let mut tx = store.begin().await?;
        let outcomes = if job_refs.is_empty() {
            Vec::new()
        } else {
            insert_batch(&mut tx, &job_refs).await?
        };
        let mut done = Vec::new();
        for request in &mut batch {
            if let Request::Work { work, .. } = request {
                done.push(under_savepoint(&mut tx, work).await?);
            }
        }
        tx.commit().await?;
        Ok::<_, Error>((outcomes, done))
    };
    match shared.await {
        Ok((outcomes, done)) => {
            let mut outcomes = outcomes.into_iter();
            let mut done = done.into_iter();
            for request in batch {
                match request {
                    Request::Jobs { jobs, reply } => {
                        let mine = outcomes.by_ref().take(jobs.len()).map(Ok).collect();
                        let _ = reply.send(mine);
                    }
                    Request::Work { reply, .. } => {
                        let _ = reply.send(done.next().unwrap_or_else(|| Err(stopped())));
                    }
                }
            }
        }
        Err(error) if batch.len() == 1 && batch[0].size() == 1 => {
            match batch.pop().expect("one request") {
                Request::Jobs { reply, .. } => {
                    let _ = reply.send(vec![Err(error)]);
                }
                Request::Work { reply, .. } => {
                    let _ = reply.send(Err(error));
                }
            }
        }
        Err(error) => {
            tracing::debug!(%error, requests = batch.len(), "a shared transaction failed; writing each alone");
            for request in batch {
                match request {
                    Request::Jobs { jobs, reply } => {
                        let mut mine = Vec::with_capacity(jobs.len());
                        for job in jobs {
                            mine.push(alone(store, job).await);
                        }
                        let _ = reply.send(mine);
                    }
                    Request::Work { mut work, reply } => {
                        let _ = reply.send(work_alone(store, &mut work).await);
                    }
                }
            }
        }
    }
}

/// Runs `work` under a savepoint of `tx`: its outcome, with its writes undone if it failed.
/// Only the savepoint statements' own failure fails the shared transaction.
async fn under_savepoint(tx: &mut Tx, work: &mut Work) -> Result<Result<Box<dyn Any + Send>>> {
    execute(tx, "SAVEPOINT conveyor_work").await?;
    let outcome = work(tx).await;
    if outcome.is_err() {
        execute(tx, "ROLLBACK TO SAVEPOINT conveyor_work").await?;
    }
    execute(tx, "RELEASE SAVEPOINT conveyor_work").await?;
    Ok(outcome)
}

async fn execute(tx: &mut Tx, sql: &'static str) -> Result<()> {
    dispatch!(tx.conn(), conn => {
        sqlx::query(sql).execute(conn).await?;
    });
    Ok(())
}

async fn work_alone(store: &Store, work: &mut Work) -> Result<Box<dyn Any + Send>> {
    let mut tx = store.begin().await?;
    let value = work(&mut tx).await?;
    tx.commit().await?;
    Ok(value)
}

async fn alone(store: &Store, job: NewJob) -> Result<Enqueued> {
    let mut tx = store.begin().await?;
    let enqueued = tx.enqueue(job).await?;
    tx.commit().await?;
    Ok(enqueued)
}

/// PostgreSQL, jobs without unique keys: one statement, committed on its own, that inserts
/// the rows from arrays and notifies their queues. One round trip instead of four (begin,
/// insert, notify, commit), and one statement text whatever the batch's size, so it stays
/// prepared (a multi-row `VALUES` list is a new statement for every count of rows).
const INSERT_PG: &str = concat!(
    "WITH inserted AS (",
    "INSERT INTO job (queue, kind, args, state, priority, max_attempts, run_at, created_at) ",
    "SELECT q, k, a::jsonb, s, p, m, r, $9 ",
    "FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::bigint[]) ",
    "WITH ORDINALITY AS t(q, k, a, s, p, m, r, n) ORDER BY n ",
    "RETURNING ",
    job_columns!(),
    "), woken AS (",
    "SELECT pg_notify($8, 'q:' || queue) FROM (SELECT DISTINCT queue FROM inserted) AS queues",
    ") SELECT inserted.* FROM inserted, (SELECT count(*) FROM woken) AS notified"
);

async fn insert_pg_statement(store: &Store, jobs: &[&NewJob]) -> Result<Vec<Enqueued>> {
    let now = now_ms();
    let crate::store::Db::Pg(pool) = store.writer() else {
        unreachable!("called for PostgreSQL only");
    };
    let mut inserted: Vec<Job> = sqlx::query_as(INSERT_PG)
        .bind(jobs.iter().map(|j| j.queue.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.kind.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.args.to_string()).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.initial_state(now).as_str())
                .collect::<Vec<_>>(),
        )
        .bind(jobs.iter().map(|j| j.priority).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.max_attempts).collect::<Vec<_>>())
        .bind(
            jobs.iter()
                .map(|j| j.run_at.unwrap_or(now))
                .collect::<Vec<_>>(),
        )
        .bind(store.channel())
        .bind(now)
        .fetch_all(pool)
        .await?;
    // Ids are handed out in the order of the rows; RETURNING's order is not promised.
    inserted.sort_unstable_by_key(|job| job.id);
    if inserted.len() != jobs.len() {
        return Err(Error::InvalidJob(format!(
            "{} rows inserted for {} jobs",
            inserted.len(),
            jobs.len()
        )));
    }
    let mut queues: Vec<&str> = jobs.iter().map(|j| j.queue.as_str()).collect();
    queues.sort_unstable();
    queues.dedup();
    for queue in queues {
        store.wake().queue_has_work(queue);
    }
    crate::enqueue::count_enqueued(jobs);
    Ok(inserted
        .into_iter()
        .map(|job| Enqueued {
            job,
            duplicate: false,
        })
        .collect())
}

const INSERT_HEAD: &str = "INSERT INTO job (queue, kind, args, state, priority, max_attempts, run_at, unique_key, group_id, created_at) ";

/// Inserts `jobs` in `tx`, in order: those without a unique key in one multi-row statement,
/// those with one each through [`Tx::enqueue`] (which resolves a held key to its holder).
async fn insert_batch(tx: &mut Tx, jobs: &[&NewJob]) -> Result<Vec<Enqueued>> {
    let now = now_ms();
    let plain: Vec<&NewJob> = jobs
        .iter()
        .copied()
        .filter(|j| j.unique_key.is_none())
        .collect();
    let mut inserted: Vec<Job> = Vec::with_capacity(plain.len());
    if !plain.is_empty() {
        inserted = dispatch!(tx.conn(), conn => {
            let mut insert = sqlx::QueryBuilder::new(INSERT_HEAD);
            insert.push_values(&plain, |mut row, job| {
                row.push_bind(&job.queue)
                    .push_bind(&job.kind)
                    .push_bind(Json(&job.args))
                    .push_bind(job.initial_state(now).as_str())
                    .push_bind(job.priority)
                    .push_bind(job.max_attempts)
                    .push_bind(job.run_at.unwrap_or(now))
                    .push_bind(None::<String>)
                    .push_bind(None::<i64>)
                    .push_bind(now);
            });
            insert.push(concat!(" RETURNING ", job_columns!()));
            insert.build_query_as::<Job>().fetch_all(conn).await?
        });
        // Ids are handed out in the order of the rows; RETURNING's order is not promised.
        inserted.sort_unstable_by_key(|job| job.id);
        if inserted.len() != plain.len() {
            return Err(Error::InvalidJob(format!(
                "{} rows inserted for {} jobs",
                inserted.len(),
                plain.len()
            )));
        }
        tx.count_and_wake(&plain).await?;
    }
    let mut inserted = inserted.into_iter();
    let mut outcomes = Vec::with_capacity(jobs.len());
    for job in jobs {
        if job.unique_key.is_some() {
            outcomes.push(tx.enqueue((*job).clone()).await?);
        } else {
            let job = inserted.next().expect("one row per plain job");
            outcomes.push(Enqueued {
                job,
                duplicate: false,
            });
        }
    }
    Ok(outcomes)
}

impl Store {
    /// Enqueues one job, sharing a transaction with whatever other enqueues arrive at the
    /// same time (see [`crate::commit`]). With a unique key held by a live job, returns that
    /// job instead. The job is committed when this returns `Ok`.
    ///
    /// # Errors
    /// [`Error::InvalidJob`] for out-of-range fields; [`Error::Duplicate`] for a key
    /// contended beyond retries; [`Error::Database`].
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        job.validate()?;
        let mut outcomes = self.submit(vec![job]).await;
        outcomes.pop().unwrap_or_else(|| Err(stopped()))
    }

    /// Enqueues each job as [`Store::enqueue`] does, together in one transaction when they
    /// fit in one (up to [`BATCH_MAX`]): one outcome per job, in order, ids ascending; a bad
    /// job gets its error and the others are still enqueued.
    pub async fn enqueue_each(&self, jobs: Vec<NewJob>) -> Vec<Result<Enqueued>> {
        let mut outcomes: Vec<Option<Result<Enqueued>>> = Vec::with_capacity(jobs.len());
        let mut valid = Vec::with_capacity(jobs.len());
        for job in jobs {
            match job.validate() {
                Ok(()) => {
                    valid.push(job);
                    outcomes.push(None);
                }
                Err(error) => outcomes.push(Some(Err(error))),
            }
        }
        let mut taken = Vec::with_capacity(valid.len());
        let mut rest = valid;
        while !rest.is_empty() {
            let later = rest.split_off(rest.len().min(BATCH_MAX));
            taken.extend(self.submit(rest).await);
            rest = later;
        }
        let mut taken = taken.into_iter();
        outcomes
            .into_iter()
            .map(|slot| slot.unwrap_or_else(|| taken.next().unwrap_or_else(|| Err(stopped()))))
            .collect()
    }

    /// Hands `jobs` (validated) to the committer and waits for their outcomes.
    async fn submit(&self, jobs: Vec<NewJob>) -> Vec<Result<Enqueued>> {
        let count = jobs.len();
        let (reply, outcome) = oneshot::channel();
        if self
            .committer()
            .send(Request::Jobs { jobs, reply })
            .await
            .is_err()
        {
            return (0..count).map(|_| Err(stopped())).collect();
        }
        outcome
            .await
            .unwrap_or_else(|_| (0..count).map(|_| Err(stopped())).collect())
    }
}

impl Store {
    /// Runs `work` in a transaction shared with whatever other enqueues and units of work
    /// arrive at the same time (group commit), under a savepoint of its own: its writes
    /// commit with the rest, or, if it fails, are undone without touching the others. For
    /// an app that writes its own rows with the jobs that depend on them. `work` may run
    /// more than once (again alone, if the shared transaction fails); its outcome is
    /// returned once its transaction has committed.
    ///
    /// # Errors
    /// `work`'s error, or the database's.
    pub async fn transact<T, F>(&self, mut work: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'t> FnMut(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        let boxed: Work = Box::new(move |tx| {
            let run = work(tx);
            Box::pin(async move {
                run.await
                    .map(|value| Box::new(value) as Box<dyn Any + Send>)
            })
        });
        let (reply, outcome) = oneshot::channel();
        self.committer()
            .send(Request::Work { work: boxed, reply })
            .await
            .map_err(|_| stopped())?;
        let value = outcome.await.map_err(|_| stopped())??;
        Ok(*value
            .downcast::<T>()
            .expect("the committer hands back what the work returned"))
    }
}

fn stopped() -> Error {
    Error::Database(sqlx::Error::PoolClosed)
}
