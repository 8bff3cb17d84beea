//! The engine's conformance suite: every test runs on SQLite and on PostgreSQL (when
//! `TEST_DATABASE_URL` is set), each on a fresh database.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use conveyor_queue::clock::now_ms;
use conveyor_queue::testing::{enqueue_id, eventually, wait_for_job, wait_for_state};
use conveyor_queue::{
    Backoff, BulkAction, BulkOutcome, Error, JobContext, JobError, JobFilter, JobState, NewJob,
    QueueConfig, Registry, Schedule, Scheduler, Store, Worker, WorkerConfig, builtin,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

conveyor_queue::on_both_backends!(
    store:
    enqueued_jobs_can_be_read_back,
    many_jobs_are_inserted_in_batches_in_order,
    a_job_enqueued_in_a_transaction_exists_only_if_it_commits,
    claims_follow_queue_priority_and_run_at,
    concurrent_claimers_never_get_the_same_job,
    a_process_claimers_take_turns_and_claim_for_each_other,
    a_worker_runs_jobs_to_completion,
    a_failed_attempt_waits_for_its_backoff_in_the_row,
    failures_retry_until_success,
    exhausted_attempts_fail_with_the_last_error,
    permanent_errors_and_panics_fail_without_retry,
    a_job_cancelled_before_it_starts_never_runs,
    a_running_job_is_stopped_when_cancelled,
    cancelling_an_ended_job_is_refused,
    a_unique_key_returns_the_live_job,
    a_group_continuation_runs_once_and_reads_member_results,
    many_groups_under_concurrent_workers_get_exactly_one_continuation,
    a_tree_reduces_level_by_level_without_barriers,
    two_schedulers_enqueue_one_job_per_tick,
    progress_is_recorded_while_running_and_at_the_end,
    retention_prunes_only_old_ended_jobs,
    an_idle_worker_is_woken_without_waiting_for_a_poll,
    shutdown_lets_short_jobs_finish_and_hands_long_ones_back,
    expired_leases_are_rescued_and_late_outcomes_fenced_off,
    a_live_workers_lease_covers_its_jobs_until_it_lapses,
    a_job_longer_than_its_lease_runs_once,
    concurrency_changes_at_run_time,
    workers_appear_in_the_registry_while_they_run,
    listing_filters_and_pages_with_a_cursor,
    an_ended_job_can_be_retried,
    invalid_jobs_are_refused_and_nothing_is_stored,
    concurrent_enqueues_share_transactions_and_keep_their_own_outcomes,
    a_unique_key_twice_in_one_batch_gives_one_job,
    workers_keep_up_and_keep_their_leases_under_a_flood_of_enqueues,
    a_rescued_job_goes_before_newer_jobs_of_its_priority,
    values_outside_their_ranges_are_refused_naming_them,
    units_of_work_share_transactions_and_fail_alone,
    ended_jobs_are_counted_per_queue_and_minute,
    lists_leave_out_kinds_and_search_arguments,
    attempts_of_a_retried_job_are_kept,
    a_worker_asked_to_stop_finishes_its_jobs_and_stops,
    bulk_actions_treat_each_job_as_its_own_action_would,
);

const WAIT: Duration = Duration::from_secs(20);

fn registry() -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    registry.register(
        "echo",
        |args: Value, _ctx: JobContext| async move { Ok(args) },
    );
    registry
}

fn quick_config(queue: &str, concurrency: usize) -> WorkerConfig {
    WorkerConfig {
        queues: vec![QueueConfig {
            name: queue.to_owned(),
            concurrency,
        }],
        lease: Duration::from_secs(3),
        poll_interval: Duration::from_millis(200),
        progress_interval: Duration::from_millis(50),
        grace: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        ..WorkerConfig::default()
    }
}

/// A worker running in the background until the returned token is cancelled.
fn spawn_worker(
    store: &Store,
    registry: Registry,
    config: WorkerConfig,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let worker = Worker::new(store.clone(), registry, config);
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.expect("worker runs") }
    });
    (stop, handle)
}

async fn stop_worker((stop, handle): (CancellationToken, tokio::task::JoinHandle<()>)) {
    stop.cancel();
    handle.await.expect("worker task ends cleanly");
}

async fn enqueued_jobs_can_be_read_back(store: Store) {
    let job = store
        .enqueue(
            NewJob::new("echo", json!({"n": 1}))
                .queue("q")
                .priority(5)
                .max_attempts(7),
        )
        .await
        .unwrap()
        .job;
    let read = store.get(job.id).await.unwrap().unwrap();
    assert_eq!(read, job);
    assert_eq!(
        (read.state, read.queue.as_str(), read.kind.as_str()),
        (JobState::Available, "q", "echo")
    );
    assert_eq!((read.priority, read.max_attempts, read.attempt), (5, 7, 0));
    assert_eq!(read.args, json!({"n": 1}));
    assert!(store.get(job.id + 1000).await.unwrap().is_none());
}

async fn many_jobs_are_inserted_in_batches_in_order(store: Store) {
    let jobs: Vec<NewJob> = (0..2500).map(|i| NewJob::new("echo", json!(i))).collect();
    let ids = store.enqueue_many(&jobs).await.unwrap();
    assert_eq!(ids.len(), 2500);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow the order given"
    );
    let last = store.get(*ids.last().unwrap()).await.unwrap().unwrap();
    assert_eq!(last.args, json!(2499));
}

async fn a_job_enqueued_in_a_transaction_exists_only_if_it_commits(store: Store) {
    let mut tx = store.begin().await.unwrap();
    let rolled_back = tx
        .enqueue(NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    drop(tx);
    assert!(store.get(rolled_back).await.unwrap().is_none());

    let mut tx = store.begin().await.unwrap();
    let committed = tx
        .enqueue(NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    // The application's own write in the same transaction, on either backend.
    conveyor_queue::testing::execute(&mut tx, "CREATE TABLE app_row (id INTEGER)").await;
    tx.commit().await.unwrap();
    assert_eq!(
        store.get(committed).await.unwrap().unwrap().state,
        JobState::Available
    );
}

async fn claims_follow_queue_priority_and_run_at(store: Store) {
    let now = now_ms();
    let low = enqueue_id(&store, NewJob::new("noop", json!({})).queue("a")).await;
    let high = enqueue_id(
        &store,
        NewJob::new("noop", json!({})).queue("a").priority(10),
    )
    .await;
    let later = store
        .enqueue(
            NewJob::new("noop", json!({}))
                .queue("a")
                .priority(99)
                .run_at(now + 60_000),
        )
        .await
        .unwrap()
        .job;
    assert_eq!(later.state, JobState::Scheduled);
    store
        .enqueue(NewJob::new("noop", json!({})).queue("b"))
        .await
        .unwrap();

    let claimed = store.claim_for_test("a", 10, "w1").await;
    let ids: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(
        ids.len(),
        2,
        "the delayed job and the other queue's job stay"
    );
    assert!(ids.contains(&low) && ids.contains(&high));
    assert!(claimed.iter().all(|j| j.attempt == 1));
    for id in ids {
        let job = store.get(id).await.unwrap().unwrap();
        assert_eq!(
            (job.state, job.lease_owner.as_deref()),
            (JobState::Running, Some("w1"))
        );
    }

    // Priority decides which job one slot gets.
    let first = enqueue_id(&store, NewJob::new("noop", json!({})).queue("c")).await;
    let urgent = enqueue_id(
        &store,
        NewJob::new("noop", json!({})).queue("c").priority(1),
    )
    .await;
    let one = store.claim_for_test("c", 1, "w1").await;
    assert_eq!(one[0].id, urgent);
    assert_eq!(store.claim_for_test("c", 1, "w1").await[0].id, first);
}

/// One claim statement per queue at a time in a process; it takes a batch for each claimer
/// waiting, never more than claimers x batch.
async fn a_process_claimers_take_turns_and_claim_for_each_other(store: Store) {
    let jobs: Vec<NewJob> = (0..400)
        .map(|_| NewJob::new("noop", json!({})).queue("turns"))
        .collect();
    store.enqueue_many(&jobs).await.unwrap();
    let config = WorkerConfig {
        claimers: 4,
        batch: 10,
        ..quick_config("turns", 40)
    };
    let worker = Worker::new(store.clone(), registry(), config);
    let stats = worker.stats();
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    eventually("every job recorded", WAIT, || {
        let stats = stats.clone();
        async move { stats.recorded.load(Ordering::Relaxed) == 400 }
    })
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
    let largest = stats.largest_claim.load(Ordering::Relaxed);
    // The first claim is in flight while the other three claimers queue for their turn, so
    // the next statement takes for three.
    assert!(
        (11..=40).contains(&largest),
        "the largest claim took {largest} jobs"
    );
    assert_eq!(stats.claimed.load(Ordering::Relaxed), 400);
}

async fn concurrent_claimers_never_get_the_same_job(store: Store) {
    let jobs: Vec<NewJob> = (0..2000).map(|i| NewJob::new("noop", json!(i))).collect();
    store.enqueue_many(&jobs).await.unwrap();
    let mut claimers = Vec::new();
    for c in 0..8 {
        let store = store.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_for_test("default", 37, &format!("w{c}")).await;
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|j| j.id));
            }
        }));
    }
    let mut seen = HashSet::new();
    for claimer in claimers {
        for id in claimer.await.unwrap() {
            assert!(seen.insert(id), "job {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 2000);
}

async fn a_worker_runs_jobs_to_completion(store: Store) {
    let jobs: Vec<NewJob> = (0..300)
        .map(|i| NewJob::new("echo", json!({"i": i})))
        .collect();
    let ids = store.enqueue_many(&jobs).await.unwrap();
    let worker = spawn_worker(&store, registry(), quick_config("default", 16));
    let last = wait_for_state(&store, *ids.last().unwrap(), JobState::Completed, WAIT).await;
    assert_eq!(last.result, Some(json!({"i": 299})));
    eventually("all 300 complete", WAIT, || async {
        let done = store
            .list(&JobFilter {
                state: Some(JobState::Completed),
                limit: 1000,
                ..JobFilter::default()
            })
            .await
            .unwrap();
        done.len() == 300
    })
    .await;
    let job = store.get(ids[0]).await.unwrap().unwrap();
    assert!(job.finished_at.is_some() && job.started_at.is_some() && job.lease_owner.is_none());
    stop_worker(worker).await;
}

async fn a_failed_attempt_waits_for_its_backoff_in_the_row(store: Store) {
    let id = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 5})).max_attempts(5),
    )
    .await;
    let mut config = quick_config("default", 1);
    config.backoff = Backoff {
        base: Duration::from_secs(60),
        cap: Duration::from_secs(600),
    };
    let worker = spawn_worker(&store, registry(), config);
    let before = now_ms();
    let job = wait_for_state(&store, id, JobState::Retryable, WAIT).await;
    assert_eq!(job.attempt, 1);
    assert!(job.error.as_deref().unwrap().contains("attempt 1"));
    // Attempt 1 waits between half and all of the base delay, jitter included.
    let wait = job.run_at - before;
    assert!(
        (29_000..=61_000).contains(&wait),
        "run_at is {wait} ms away"
    );
    stop_worker(worker).await;
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Retryable
    );
}

async fn failures_retry_until_success(store: Store) {
    let id = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 2})).max_attempts(3),
    )
    .await;
    let worker = spawn_worker(&store, registry(), quick_config("default", 2));
    let job = wait_for_state(&store, id, JobState::Completed, WAIT).await;
    assert_eq!(job.attempt, 3);
    assert_eq!(job.result, Some(json!({"succeeded_on_attempt": 3})));
    assert!(
        job.error.unwrap().contains("attempt 2"),
        "the last error is kept"
    );
    stop_worker(worker).await;
}

async fn exhausted_attempts_fail_with_the_last_error(store: Store) {
    let id = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 10})).max_attempts(2),
    )
    .await;
    let worker = spawn_worker(&store, registry(), quick_config("default", 2));
    let job = wait_for_state(&store, id, JobState::Failed, WAIT).await;
    assert_eq!(job.attempt, 2);
    assert!(job.error.unwrap().contains("attempt 2"));
    assert!(job.finished_at.is_some());
    stop_worker(worker).await;
}

async fn permanent_errors_and_panics_fail_without_retry(store: Store) {
    let mut registry = registry();
    registry.register("refuse", |_: Value, _ctx: JobContext| async {
        Err::<(), _>(JobError::permanent("bad input"))
    });
    registry.register("panic", |_: Value, _ctx: JobContext| async {
        if true {
            panic!("boom");
        }
        Ok(())
    });
    let refuse = enqueue_id(&store, NewJob::new("refuse", json!({})).max_attempts(5)).await;
    let panics = enqueue_id(&store, NewJob::new("panic", json!({})).max_attempts(1)).await;
    let bad_args = enqueue_id(&store, NewJob::new("sleep", json!({"ms": "soon"}))).await;
    let worker = spawn_worker(&store, registry, quick_config("default", 2));
    let job = wait_for_state(&store, refuse, JobState::Failed, WAIT).await;
    assert_eq!((job.attempt, job.error.as_deref()), (1, Some("bad input")));
    let job = wait_for_state(&store, panics, JobState::Failed, WAIT).await;
    assert!(job.error.unwrap().contains("panicked: boom"));
    let job = wait_for_state(&store, bad_args, JobState::Failed, WAIT).await;
    assert_eq!(job.attempt, 1);
    assert!(job.error.unwrap().contains("invalid arguments"));
    stop_worker(worker).await;
}

async fn a_job_cancelled_before_it_starts_never_runs(store: Store) {
    let ran = Arc::new(AtomicUsize::new(0));
    let mut registry = registry();
    registry.register("count", {
        let ran = ran.clone();
        move |_: Value, _ctx: JobContext| {
            let ran = ran.clone();
            async move {
                ran.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    });
    let id = enqueue_id(&store, NewJob::new("count", json!({}))).await;
    let job = store.cancel(id).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled);
    let marker = enqueue_id(&store, NewJob::new("count", json!({}))).await;
    let worker = spawn_worker(&store, registry, quick_config("default", 2));
    wait_for_state(&store, marker, JobState::Completed, WAIT).await;
    assert_eq!(ran.load(Ordering::SeqCst), 1, "only the marker ran");
    let job = store.get(id).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Cancelled, 0));
    stop_worker(worker).await;
}

async fn a_running_job_is_stopped_when_cancelled(store: Store) {
    let id = enqueue_id(&store, NewJob::new("sleep", json!({"ms": 600_000}))).await;
    let worker = spawn_worker(&store, registry(), quick_config("default", 1));
    wait_for_state(&store, id, JobState::Running, WAIT).await;
    let asked = store.cancel(id).await.unwrap().unwrap();
    assert!(asked.cancel_requested);
    let job = wait_for_state(&store, id, JobState::Cancelled, WAIT).await;
    assert!(
        job.error.unwrap().contains("stopped while sleeping"),
        "the handler saw it"
    );
    stop_worker(worker).await;
}

async fn cancelling_an_ended_job_is_refused(store: Store) {
    let id = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    store.cancel(id).await.unwrap();
    match store.cancel(id).await {
        Err(Error::WrongState {
            action: "cancel", ..
        }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert!(store.cancel(id + 100).await.unwrap().is_none());
}

async fn a_unique_key_returns_the_live_job(store: Store) {
    let first = store
        .enqueue(NewJob::new("noop", json!({})).unique_key("k"))
        .await
        .unwrap();
    let second = store
        .enqueue(NewJob::new("noop", json!({})).unique_key("k"))
        .await
        .unwrap();
    assert!(!first.duplicate && second.duplicate);
    assert_eq!(first.job.id, second.job.id);
    let batch = store
        .enqueue_many(&[
            NewJob::new("noop", json!({})).unique_key("k"),
            NewJob::new("noop", json!({})).unique_key("k2"),
        ])
        .await
        .unwrap();
    assert_eq!(batch.len(), 1, "the batch skips the key already held");
    // Once the holder has ended, the key is free again.
    store.cancel(first.job.id).await.unwrap();
    let third = store
        .enqueue(NewJob::new("noop", json!({})).unique_key("k"))
        .await
        .unwrap();
    assert!(!third.duplicate && third.job.id != first.job.id);
}

async fn a_group_continuation_runs_once_and_reads_member_results(store: Store) {
    let mut registry = registry();
    registry.register("sum", |_: Value, ctx: JobContext| async move {
        let members = ctx
            .group_members()
            .await
            .map_err(|e| JobError::retry(e.to_string()))?;
        let total: i64 = members
            .iter()
            .filter_map(|m| m.result.as_ref()?.as_i64())
            .sum();
        Ok(json!({"members": members.len(), "total": total}))
    });
    let members: Vec<NewJob> = (1..=5).map(|i| NewJob::new("echo", json!(i))).collect();
    let group = store
        .enqueue_group(&members, NewJob::new("sum", json!({})))
        .await
        .unwrap();
    assert_eq!(group.member_ids.len(), 5);
    assert_eq!(
        store
            .get(group.continuation_id)
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Pending
    );
    let worker = spawn_worker(&store, registry, quick_config("default", 4));
    let done = wait_for_state(&store, group.continuation_id, JobState::Completed, WAIT).await;
    assert_eq!(done.result, Some(json!({"members": 5, "total": 15})));
    assert_eq!(done.attempt, 1);
    // An empty group's continuation is ready at once.
    let empty = store
        .enqueue_group(&[], NewJob::new("sum", json!({})))
        .await
        .unwrap();
    let done = wait_for_state(&store, empty.continuation_id, JobState::Completed, WAIT).await;
    assert_eq!(done.result, Some(json!({"members": 0, "total": 0})));
    stop_worker(worker).await;
}

async fn many_groups_under_concurrent_workers_get_exactly_one_continuation(store: Store) {
    let runs: Arc<Mutex<HashMap<i64, usize>>> = Arc::default();
    let mut registry = registry();
    registry.register("tally", {
        let runs = runs.clone();
        move |_: Value, ctx: JobContext| {
            let runs = runs.clone();
            async move {
                *runs.lock().unwrap().entry(ctx.id()).or_default() += 1;
                Ok(())
            }
        }
    });
    let mut continuations = Vec::new();
    for g in 0..60 {
        let members: Vec<NewJob> = (0..10)
            .map(|i| NewJob::new("echo", json!([g, i])))
            .collect();
        continuations.push(
            store
                .enqueue_group(&members, NewJob::new("tally", json!(g)))
                .await
                .unwrap()
                .continuation_id,
        );
    }
    let config = WorkerConfig {
        claimers: 3,
        batch: 7,
        ..quick_config("default", 12)
    };
    let workers = vec![
        spawn_worker(&store, registry.clone(), config.clone()),
        spawn_worker(&store, registry.clone(), config),
    ];
    for id in &continuations {
        wait_for_state(&store, *id, JobState::Completed, WAIT).await;
    }
    for worker in workers {
        stop_worker(worker).await;
    }
    let runs = runs.lock().unwrap();
    assert_eq!(runs.len(), continuations.len());
    assert!(
        runs.values().all(|&n| n == 1),
        "a continuation ran twice: {runs:?}"
    );
}

async fn a_tree_reduces_level_by_level_without_barriers(store: Store) {
    // Each node adds up its members' results and counts the members that did not complete.
    let mut registry = registry();
    registry.register("add", |_: Value, ctx: JobContext| async move {
        let members = ctx
            .group_members()
            .await
            .map_err(|e| JobError::retry(e.to_string()))?;
        let (mut sum, mut failed) = (0, 0);
        for member in &members {
            match (&member.state, &member.result) {
                (JobState::Completed, Some(Value::Number(n))) => sum += n.as_i64().unwrap(),
                (JobState::Completed, Some(result)) => {
                    sum += result["sum"].as_i64().unwrap();
                    failed += result["failed"].as_i64().unwrap();
                }
                _ => failed += 1,
            }
        }
        Ok(json!({"sum": sum, "failed": failed, "members": members.len()}))
    });
    registry.register("boom", |_: Value, _ctx: JobContext| async move {
        Err::<(), _>(JobError::permanent("boom"))
    });
    // 13 leaves, three at a time: levels of 13, 5, 2 and 1 jobs.
    let leaves: Vec<NewJob> = (1..=13)
        .map(|i| match i {
            7 => NewJob::new("boom", json!(i)),
            _ => NewJob::new("echo", json!(i)),
        })
        .collect();
    let mut made = Vec::new();
    let tree = store
        .enqueue_tree(&leaves, 3, |level, index| {
            made.push((level, index));
            NewJob::new("add", json!([level, index])).priority(level as i32)
        })
        .await
        .unwrap();
    assert_eq!(made.len(), 5 + 2 + 1);
    assert_eq!(tree.leaf_ids.len(), 13);
    let ids = store.group_job_ids(tree.root_group_id).await.unwrap();
    assert_eq!(ids.len(), 13 + 5 + 2 + 1, "every job of the tree: {ids:?}");
    assert!(ids.contains(&tree.root_id) && tree.leaf_ids.iter().all(|id| ids.contains(id)));
    assert_eq!(
        store.tree_progress(tree.root_group_id).await.unwrap(),
        [(2, 2), (5, 5), (13, 13)]
    );
    let root = store.get(tree.root_id).await.unwrap().unwrap();
    assert_eq!(
        (root.state, root.args.clone()),
        (JobState::Pending, json!([3, 0]))
    );

    let worker = spawn_worker(&store, registry, quick_config("default", 4));
    let done = wait_for_state(&store, tree.root_id, JobState::Completed, WAIT).await;
    stop_worker(worker).await;
    // Every leaf counted once, the failed one as failed, not lost.
    assert_eq!(
        done.result,
        Some(json!({"sum": 91 - 7, "failed": 1, "members": 2}))
    );
    assert_eq!(
        store.tree_progress(tree.root_group_id).await.unwrap(),
        [(2, 0), (5, 0), (13, 0)]
    );
    for id in ids {
        let job = store.get(id).await.unwrap().unwrap();
        assert!(job.state.is_final() && job.attempt == 1, "{job:?}");
    }
    // Bad trees are refused, and nothing is stored.
    let jobs_stored = || async {
        let counts = store.queue_counts().await.unwrap();
        counts
            .iter()
            .flat_map(|q| q.by_state.iter().map(|(_, n)| n))
            .sum::<i64>()
    };
    let before = jobs_stored().await;
    let leaf = || NewJob::new("echo", json!(1));
    let good_node = |_, _| NewJob::new("add", json!({}));
    let bad_trees: Vec<(Vec<NewJob>, usize, bool)> = vec![
        (vec![], 3, false),
        (vec![leaf()], 1, false),
        (vec![leaf(), leaf().unique_key("k")], 2, false),
        (vec![leaf(), leaf(), leaf().max_attempts(0)], 2, false),
        (vec![leaf(), leaf(), leaf()], 2, true),
    ];
    for (leaves, fan_in, bad_node) in bad_trees {
        let refused = if bad_node {
            store
                .enqueue_tree(&leaves, fan_in, |_, _| NewJob::new("", json!({})))
                .await
        } else {
            store.enqueue_tree(&leaves, fan_in, good_node).await
        };
        assert!(matches!(refused, Err(Error::InvalidJob(_))), "{refused:?}");
    }
    assert_eq!(jobs_stored().await, before);
}

async fn two_schedulers_enqueue_one_job_per_tick(store: Store) {
    let schedule = || {
        vec![
            Schedule::new(
                "every-second",
                "* * * * * *",
                NewJob::new("noop", json!({})).queue("cron"),
            )
            .unwrap(),
        ]
    };
    let a = Scheduler::new(store.clone(), schedule());
    let b = Scheduler::new(store.clone(), schedule());
    a.install().await.unwrap();
    b.install().await.unwrap();
    let started = now_ms();
    let mut fired = Vec::new();
    // Both tick as fast as they can for a little over three seconds.
    while now_ms() - started < 3_300 {
        let (x, y) = tokio::join!(a.tick(), b.tick());
        fired.extend(x.unwrap().0);
        fired.extend(y.unwrap().0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let jobs = store
        .list(&JobFilter {
            queue: Some("cron".into()),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), fired.len());
    assert!(
        (3..=4).contains(&jobs.len()),
        "{} jobs for three to four ticks",
        jobs.len()
    );
    let seconds: HashSet<i64> = jobs.iter().map(|j| j.created_at / 1000).collect();
    assert_eq!(seconds.len(), jobs.len(), "one job per tick");
    // The schedule's row names its last tick's job, and the next tick is ahead.
    let rows = store.schedules().await.unwrap();
    let row = rows.iter().find(|r| r.name == "every-second").unwrap();
    assert_eq!(row.expression, "* * * * * *");
    assert_eq!(
        row.last_job.as_ref().map(|j| j.id),
        jobs.iter().map(|j| j.id).max()
    );
    assert!(row.next_run_at > started);
}

async fn progress_is_recorded_while_running_and_at_the_end(store: Store) {
    let release = Arc::new(tokio::sync::Notify::new());
    let mut registry = registry();
    registry.register("steps", {
        let release = release.clone();
        move |_: Value, ctx: JobContext| {
            let release = release.clone();
            async move {
                for done in 1..=500 {
                    ctx.progress(done, Some(1000), Some("first half"));
                }
                release.notified().await;
                ctx.progress(1000, Some(1000), None);
                Ok(())
            }
        }
    });
    let id = enqueue_id(&store, NewJob::new("steps", json!({}))).await;
    let worker = spawn_worker(&store, registry, quick_config("default", 1));
    let job = wait_for_job(&store, id, WAIT, |j| j.progress_done == Some(500)).await;
    assert_eq!(
        (job.progress_total, job.progress_message.as_deref()),
        (Some(1000), Some("first half"))
    );
    assert_eq!(job.state, JobState::Running);
    release.notify_one();
    let job = wait_for_state(&store, id, JobState::Completed, WAIT).await;
    assert_eq!(
        (job.progress_done, job.progress_message),
        (Some(1000), None)
    );
    stop_worker(worker).await;
}

async fn retention_prunes_only_old_ended_jobs(store: Store) {
    let done = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    store.cancel(done).await.unwrap();
    let waiting = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    let group = store
        .enqueue_group(
            &[NewJob::new("noop", json!({}))],
            NewJob::new("noop", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(
        store.prune(Duration::from_secs(3600)).await.unwrap(),
        0,
        "nothing is old enough"
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    // The group's only member ends; its continuation becomes available, not ended.
    store.cancel(group.member_ids[0]).await.unwrap();
    assert_eq!(store.prune(Duration::ZERO).await.unwrap(), 1);
    assert!(store.get(done).await.unwrap().is_none());
    assert!(store.get(waiting).await.unwrap().is_some());
    assert!(
        store.get(group.member_ids[0]).await.unwrap().is_some(),
        "its continuation still needs it"
    );
}

async fn an_idle_worker_is_woken_without_waiting_for_a_poll(store: Store) {
    let config = WorkerConfig {
        poll_interval: Duration::from_secs(30),
        ..quick_config("default", 1)
    };
    let worker = spawn_worker(&store, registry(), config);
    // Let the worker go idle on an empty queue.
    let marker = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    wait_for_state(&store, marker, JobState::Completed, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    // A poll would take 30 s; a wake-up takes milliseconds. 10 s leaves room for a slow CI.
    wait_for_state(&store, id, JobState::Completed, Duration::from_secs(10)).await;
    stop_worker(worker).await;
}

async fn shutdown_lets_short_jobs_finish_and_hands_long_ones_back(store: Store) {
    let short = enqueue_id(&store, NewJob::new("sleep", json!({"ms": 300}))).await;
    let long = enqueue_id(&store, NewJob::new("sleep", json!({"ms": 600_000}))).await;
    let config = WorkerConfig {
        grace: Duration::from_secs(2),
        ..quick_config("default", 2)
    };
    let worker = spawn_worker(&store, registry(), config);
    wait_for_state(&store, long, JobState::Running, WAIT).await;
    wait_for_state(&store, short, JobState::Running, WAIT).await;
    stop_worker(worker).await;
    assert_eq!(
        store.get(short).await.unwrap().unwrap().state,
        JobState::Completed
    );
    let job = store.get(long).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempt, job.lease_owner),
        (JobState::Available, 0, None)
    );
}

async fn expired_leases_are_rescued_and_late_outcomes_fenced_off(store: Store) {
    let id = enqueue_id(&store, NewJob::new("noop", json!({})).max_attempts(2)).await;
    let claimed = store.claim_expired_for_test("default", "dead").await;
    assert_eq!(claimed.len(), 1);
    let rescued = store.rescue_expired(100).await.unwrap();
    assert_eq!(
        rescued.iter().map(|r| (r.id, r.state)).collect::<Vec<_>>(),
        vec![(id, JobState::Available)]
    );
    // Someone else runs it now; the dead worker's late outcome must not count.
    assert_eq!(
        store.claim_for_test("default", 1, "alive").await[0].attempt,
        2
    );
    let fenced = store.finish_for_test("dead", id).await;
    assert_eq!(fenced, (0, 1));
    let job = store.get(id).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.lease_owner.as_deref()),
        (JobState::Running, Some("alive"))
    );
    // The holder's own outcome counts.
    assert_eq!(store.finish_for_test("alive", id).await, (1, 0));
    assert_eq!(
        store.get(id).await.unwrap().unwrap().state,
        JobState::Completed
    );
    // Its history keeps the lost attempt, with the worker that lost it.
    let attempts: Vec<_> = store
        .attempts(id)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.attempt, a.outcome, a.worker))
        .collect();
    assert_eq!(
        attempts,
        vec![
            (1, "lost".to_owned(), Some("dead".to_owned())),
            (2, "completed".to_owned(), Some("alive".to_owned())),
        ]
    );
    // With its attempts spent, a rescued job fails instead.
    let spent = enqueue_id(&store, NewJob::new("noop", json!({})).max_attempts(1)).await;
    store.claim_expired_for_test("default", "dead").await;
    let rescued = store.rescue_expired(100).await.unwrap();
    assert_eq!(
        rescued.iter().map(|r| (r.id, r.state)).collect::<Vec<_>>(),
        vec![(spent, JobState::Failed)]
    );
    assert!(
        store
            .get(spent)
            .await
            .unwrap()
            .unwrap()
            .error
            .unwrap()
            .contains("lease expired")
    );
}

async fn a_job_longer_than_its_lease_runs_once(store: Store) {
    let id = enqueue_id(&store, NewJob::new("sleep", json!({"ms": 2_500}))).await;
    let config = WorkerConfig {
        lease: Duration::from_millis(600),
        ..quick_config("default", 1)
    };
    // A second worker's rescuer watches too: it must find nothing to rescue.
    let workers = vec![
        spawn_worker(&store, registry(), config.clone()),
        spawn_worker(&store, registry(), config),
    ];
    let job = wait_for_state(&store, id, JobState::Completed, WAIT).await;
    assert_eq!(job.attempt, 1, "ran once");
    assert!(job.error.is_none());
    for worker in workers {
        stop_worker(worker).await;
    }
}

async fn concurrency_changes_at_run_time(store: Store) {
    let jobs: Vec<NewJob> = (0..4)
        .map(|_| NewJob::new("sleep", json!({"ms": 600_000})))
        .collect();
    store.enqueue_many(&jobs).await.unwrap();
    let config = WorkerConfig {
        lease: Duration::from_millis(600),
        grace: Duration::from_millis(100),
        ..quick_config("default", 1)
    };
    let worker = spawn_worker(&store, registry(), config);
    let running = || async {
        let counts = store.queue_counts().await.unwrap();
        counts
            .iter()
            .flat_map(|q| &q.by_state)
            .filter(|(s, _)| *s == JobState::Running)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    eventually("one job runs", WAIT, || async { running().await == 1 }).await;
    store.set_concurrency("default", 3).await.unwrap();
    eventually("three jobs run after the change", WAIT, || async {
        running().await == 3
    })
    .await;
    assert_eq!(
        store.queue_settings().await.unwrap(),
        vec![("default".to_owned(), 3)]
    );
    stop_worker(worker).await;
}

async fn workers_appear_in_the_registry_while_they_run(store: Store) {
    let worker = Worker::new(store.clone(), registry(), quick_config("reg", 5));
    let id = worker.id().to_owned();
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.unwrap() }
    });
    eventually("the worker registers", WAIT, || async {
        !store.workers(60_000).await.unwrap().is_empty()
    })
    .await;
    let listed = store.workers(60_000).await.unwrap();
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].pid, i64::from(std::process::id()));
    assert_eq!(listed[0].queues, json!({"reg": 5}));
    stop.cancel();
    handle.await.unwrap();
    assert!(
        store.workers(60_000).await.unwrap().is_empty(),
        "it leaves at shutdown"
    );
}

async fn listing_filters_and_pages_with_a_cursor(store: Store) {
    let jobs: Vec<NewJob> = (0..25)
        .map(|i| {
            NewJob::new(if i % 2 == 0 { "noop" } else { "echo" }, json!(i)).queue(if i < 10 {
                "a"
            } else {
                "b"
            })
        })
        .collect();
    store.enqueue_many(&jobs).await.unwrap();
    let page = |before: Option<i64>| JobFilter {
        kind: Some("noop".into()),
        before,
        limit: 5,
        ..JobFilter::default()
    };
    let first = store.list(&page(None)).await.unwrap();
    let second = store.list(&page(first.last().map(|j| j.id))).await.unwrap();
    let third = store
        .list(&page(second.last().map(|j| j.id)))
        .await
        .unwrap();
    assert_eq!((first.len(), second.len(), third.len()), (5, 5, 3));
    assert!(
        first
            .iter()
            .chain(&second)
            .chain(&third)
            .all(|j| j.kind == "noop")
    );
    assert!(
        first[0].id > first[4].id && first[4].id > second[0].id,
        "newest first, no overlap"
    );
    let in_a = store
        .list(&JobFilter {
            queue: Some("a".into()),
            state: Some(JobState::Available),
            limit: 100,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(in_a.len(), 10);
    let counts = store.queue_counts().await.unwrap();
    assert_eq!(
        counts.iter().map(|q| q.queue.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
}

async fn an_ended_job_can_be_retried(store: Store) {
    let failed_once = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut registry = registry();
    registry.register("flaky", {
        let failed_once = failed_once.clone();
        move |_: Value, _ctx: JobContext| {
            let first = !failed_once.swap(true, Ordering::SeqCst);
            async move {
                if first {
                    Err(JobError::retry("first run fails"))
                } else {
                    Ok(())
                }
            }
        }
    });
    let id = enqueue_id(&store, NewJob::new("flaky", json!({})).max_attempts(1)).await;
    let worker = spawn_worker(&store, registry, quick_config("default", 1));
    wait_for_state(&store, id, JobState::Failed, WAIT).await;
    let retried = store.retry(id).await.unwrap().unwrap();
    assert_eq!((retried.state, retried.attempt), (JobState::Available, 0));
    let job = wait_for_state(&store, id, JobState::Completed, WAIT).await;
    assert_eq!(job.attempt, 1, "attempts start afresh");
    stop_worker(worker).await;
    let running = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    store.claim_for_test("default", 1, "w").await;
    assert!(matches!(
        store.retry(running).await,
        Err(Error::WrongState { .. })
    ));
}

async fn invalid_jobs_are_refused_and_nothing_is_stored(store: Store) {
    let registry = registry();
    assert!(matches!(
        registry.check(&NewJob::new("nope", json!({}))),
        Err(Error::UnknownKind(_))
    ));
    assert!(matches!(
        registry.check(&NewJob::new("sleep", json!({"ms": -1}))),
        Err(Error::InvalidArgs { .. })
    ));
    assert!(
        registry
            .check(&NewJob::new("sleep", json!({"ms": 5})))
            .is_ok()
    );
    let too_long = registry.check(&NewJob::new("sleep", json!({"ms": 100_000_000_000u64})));
    assert!(too_long.unwrap_err().to_string().contains("at most"));
    let bad = vec![
        NewJob::new("noop", json!({})),
        NewJob::new("noop", json!({})).max_attempts(0),
    ];
    assert!(matches!(
        store.enqueue_many(&bad).await,
        Err(Error::InvalidJob(_))
    ));
    assert!(matches!(
        store
            .enqueue(NewJob::new("noop", json!({})).queue(""))
            .await,
        Err(Error::InvalidJob(_))
    ));
    let all = store
        .list(&JobFilter {
            limit: 10,
            ..JobFilter::default()
        })
        .await
        .unwrap();
    assert!(all.is_empty(), "nothing was stored: {all:?}");
}

async fn a_live_workers_lease_covers_its_jobs_until_it_lapses(store: Store) {
    let id = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    // The lease taken at the claim has passed, but the worker renews its own.
    conveyor_queue::testing::set_worker_lease(&store, "alive", now_ms() + 60_000).await;
    store.claim_expired_for_test("default", "alive").await;
    assert!(
        store.rescue_expired(100).await.unwrap().is_empty(),
        "a live worker keeps its jobs"
    );
    // The worker stops heartbeating: its lease lapses, and its jobs go back.
    conveyor_queue::testing::set_worker_lease(&store, "alive", now_ms() - 1).await;
    let rescued = store.rescue_expired(100).await.unwrap();
    assert_eq!(rescued.iter().map(|r| r.id).collect::<Vec<_>>(), vec![id]);
}

/// SQLite only: a store closed after writing leaves just the database file. The writer
/// closes last, and only a writable last connection checkpoints the WAL and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_sqlite_store_leaves_no_wal() {
    let path = std::env::temp_dir().join(format!(
        "conveyor-close-{}.db",
        uuid::Uuid::new_v4().simple()
    ));
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    let wal = format!("{}-wal", path.display());
    assert!(std::path::Path::new(&wal).exists(), "writes go to the WAL");
    store.close().await;
    assert!(
        !std::path::Path::new(&wal).exists(),
        "the WAL is folded back and removed at close"
    );
    let _ = std::fs::remove_file(&path);
}

/// A job the database refuses (a trigger here; in life a value the store cannot hold) among
/// concurrent single enqueues: it alone gets an error.
async fn concurrent_enqueues_share_transactions_and_keep_their_own_outcomes(store: Store) {
    let mut tx = store.begin().await.unwrap();
    match store.backend() {
        conveyor_queue::Backend::Sqlite => {
            conveyor_queue::testing::execute(
                &mut tx,
                "CREATE TRIGGER poison BEFORE INSERT ON job WHEN NEW.kind = 'poison' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END",
            )
            .await;
        }
        conveyor_queue::Backend::Postgres => {
            conveyor_queue::testing::execute(
                &mut tx,
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ \
                 BEGIN IF NEW.kind = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF; \
                 RETURN NEW; END $$",
            )
            .await;
            conveyor_queue::testing::execute(
                &mut tx,
                "CREATE TRIGGER poison BEFORE INSERT ON job FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .await;
        }
    }
    tx.commit().await.unwrap();
    let mut tasks = Vec::new();
    for n in 0..200 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let kind = match n {
                77 => "poison",
                _ => "noop",
            };
            let mut job = NewJob::new(kind, json!({ "n": n }));
            if n == 133 {
                job = job.max_attempts(0);
            }
            store.enqueue(job).await
        }));
    }
    let mut ids = Vec::new();
    for (n, task) in tasks.into_iter().enumerate() {
        let outcome = task.await.unwrap();
        match n {
            77 => {
                let error = outcome.unwrap_err().to_string();
                assert!(error.contains("poisoned"), "{error}");
            }
            133 => assert!(matches!(outcome, Err(Error::InvalidJob(_))), "{outcome:?}"),
            _ => {
                let enqueued = outcome.unwrap();
                assert!(!enqueued.duplicate);
                assert_eq!(
                    enqueued.job.args,
                    json!({ "n": n }),
                    "each caller gets its own job"
                );
                ids.push(enqueued.job.id);
            }
        }
    }
    let stored = store
        .list(&JobFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 198, "every good job, once");
    let mut stored_ids: Vec<i64> = stored.iter().map(|j| j.id).collect();
    stored_ids.sort_unstable();
    ids.sort_unstable();
    assert_eq!(stored_ids, ids);
    // Many at once through `enqueue_each`: outcomes in order.
    let jobs = (0..5)
        .map(|n| NewJob::new(if n == 2 { "poison" } else { "noop" }, json!({ "each": n })))
        .collect();
    let outcomes = store.enqueue_each(jobs).await;
    assert_eq!(outcomes.len(), 5);
    for (n, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(enqueued) => assert_eq!(enqueued.job.args, json!({ "each": n })),
            Err(error) => assert_eq!((n, error.to_string().contains("poisoned")), (2, true)),
        }
    }
}

async fn a_unique_key_twice_in_one_batch_gives_one_job(store: Store) {
    let jobs = vec![
        NewJob::new("noop", json!({"a": 1})).unique_key("once"),
        NewJob::new("noop", json!({"b": 2})),
        NewJob::new("noop", json!({"a": 2})).unique_key("once"),
    ];
    let outcomes = store.enqueue_each(jobs).await;
    let outcomes: Vec<_> = outcomes.into_iter().map(Result::unwrap).collect();
    assert!(!outcomes[0].duplicate && !outcomes[1].duplicate);
    assert!(
        outcomes[2].duplicate,
        "the second holder of the key gets the first"
    );
    assert_eq!(outcomes[2].job.id, outcomes[0].job.id);
    assert_eq!(outcomes[2].job.args, json!({"a": 1}));
    // And concurrently, from many callers.
    let mut tasks = Vec::new();
    for n in 0..50 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .enqueue(NewJob::new("noop", json!({ "n": n })).unique_key("shared"))
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut new = 0;
    for task in tasks {
        let enqueued = task.await.unwrap();
        ids.insert(enqueued.job.id);
        new += usize::from(!enqueued.duplicate);
    }
    assert_eq!((ids.len(), new), (1, 1), "one job holds the key");
}

/// Fifty callers enqueue one job at a time without pause while a worker runs a job longer
/// than its lease and the rest: the heartbeat is never starved into a lost lease, and the
/// worker completes the flood soon after it stops.
async fn workers_keep_up_and_keep_their_leases_under_a_flood_of_enqueues(store: Store) {
    let long = enqueue_id(&store, NewJob::new("sleep", json!({"ms": 3_000}))).await;
    let config = WorkerConfig {
        lease: Duration::from_millis(900),
        ..quick_config("default", 8)
    };
    let worker = spawn_worker(&store, registry(), config);
    wait_for_state(&store, long, JobState::Running, WAIT).await;
    let stop = CancellationToken::new();
    let sent = Arc::new(AtomicUsize::new(0));
    let mut callers = Vec::new();
    for _ in 0..50 {
        let (store, stop, sent) = (store.clone(), stop.clone(), sent.clone());
        callers.push(tokio::spawn(async move {
            while !stop.is_cancelled() {
                store.enqueue(NewJob::new("noop", json!({}))).await.unwrap();
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    wait_for_state(&store, long, JobState::Completed, WAIT).await;
    stop.cancel();
    for caller in callers {
        caller.await.unwrap();
    }
    let job = store.get(long).await.unwrap().unwrap();
    assert_eq!(job.attempt, 1, "the long job kept its lease: {job:?}");
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 100, "the flood enqueued only {sent} jobs");
    eventually("the flood is worked off", WAIT, || async {
        store
            .list(&JobFilter {
                state: Some(JobState::Available),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    stop_worker(worker).await;
}

async fn a_rescued_job_goes_before_newer_jobs_of_its_priority(store: Store) {
    let first = enqueue_id(&store, NewJob::new("noop", json!({"first": true}))).await;
    let claimed = store.claim_expired_for_test("default", "dead").await;
    assert_eq!(claimed.len(), 1);
    let newer: Vec<NewJob> = (0..50)
        .map(|n| NewJob::new("noop", json!({ "n": n })))
        .collect();
    store.enqueue_many(&newer).await.unwrap();
    let rescued = store.rescue_expired(100).await.unwrap();
    assert_eq!(rescued.len(), 1);
    let next = store.claim_for_test("default", 1, "alive").await;
    assert_eq!(
        next[0].id, first,
        "the rescued job waits one lease, not the backlog too"
    );
    // So does a job handed back at shutdown.
    let handed = enqueue_id(
        &store,
        NewJob::new("noop", json!({"handed": true})).priority(5),
    )
    .await;
    let claimed = store.claim_for_test("default", 1, "leaving").await;
    assert_eq!(claimed[0].id, handed);
    let later: Vec<NewJob> = (0..5)
        .map(|n| NewJob::new("noop", json!({ "later": n })).priority(5))
        .collect();
    store.enqueue_many(&later).await.unwrap();
    store.hand_back_for_test("leaving").await;
    let next = store.claim_for_test("default", 1, "alive").await;
    assert_eq!(next[0].id, handed);
}

async fn values_outside_their_ranges_are_refused_naming_them(store: Store) {
    let far = now_ms() + 11 * 366 * 86_400_000;
    for (job, named) in [
        (NewJob::new("noop", json!({})).queue("../../etc"), "queue"),
        (NewJob::new("noop", json!({})).queue("a b"), "queue"),
        (NewJob::new("noop", json!({})).queue("-x"), "queue"),
        (NewJob::new("noop", json!({})).run_at(far), "run_at"),
        (NewJob::new("noop", json!({})).run_at(-1), "run_at"),
        (
            NewJob::new("noop", json!({"a": ["x", "b\u{0}c"]})),
            "args.a[1]",
        ),
        (NewJob::new("noop", json!({"k\u{0}": 1})), "args (a key)"),
    ] {
        let error = store.enqueue(job.clone()).await.unwrap_err().to_string();
        assert!(error.contains(named), "{job:?}: {error}");
        let error = store.enqueue_many(&[job]).await.unwrap_err().to_string();
        assert!(error.contains(named), "{error}");
    }
    for queue in ["default", "mining-fetch", "a.b:c_d", "Q1"] {
        store
            .enqueue(NewJob::new("noop", json!({})).queue(queue))
            .await
            .unwrap();
    }
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    let error = registry
        .check(&NewJob::new("fail", json!({"times": 1_000_000_000})))
        .unwrap_err()
        .to_string();
    assert!(error.contains("at most 100"), "{error}");
    assert_eq!(
        store
            .list(&JobFilter {
                limit: 50,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        4,
        "only the good jobs are stored"
    );
}

/// Apps' units of work (their rows with their jobs) share transactions with each other and
/// with single enqueues; one that fails leaves nothing behind and fails nobody else.
async fn units_of_work_share_transactions_and_fail_alone(store: Store) {
    let mut tasks = Vec::new();
    for n in 0..40_i64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            if n % 2 == 0 {
                return store
                    .enqueue(NewJob::new("noop", json!({ "single": n })))
                    .await
                    .map(|e| e.job.id);
            }
            store
                .transact(move |tx| {
                    Box::pin(async move {
                        let group = tx
                            .enqueue_group(
                                &[NewJob::new("noop", json!({ "unit": n }))],
                                NewJob::new("noop", json!({ "after": n })),
                            )
                            .await?;
                        if n == 21 {
                            return Err(Error::InvalidJob("unit 21 changes its mind".into()));
                        }
                        Ok(group.member_ids[0])
                    })
                })
                .await
        }));
    }
    let mut ok = 0;
    for (n, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(id) => {
                ok += 1;
                assert!(
                    store.get(id).await.unwrap().is_some(),
                    "job of {n} is stored"
                );
            }
            Err(error) => {
                assert_eq!(n, 21, "{error}");
                assert!(error.to_string().contains("changes its mind"));
            }
        }
    }
    assert_eq!(ok, 39);
    let stored = store
        .list(&JobFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    // 20 singles, 19 units of a member and a continuation each; nothing of unit 21.
    assert_eq!(stored.len(), 20 + 19 * 2, "{stored:?}");
    assert!(
        !stored
            .iter()
            .any(|j| j.args == json!({"unit": 21}) || j.args == json!({"after": 21})),
        "the failed unit left nothing"
    );
}

async fn ended_jobs_are_counted_per_queue_and_minute(store: Store) {
    let since = conveyor_queue::clock::now_ms() - 60_000;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            enqueue_id(
                &store,
                NewJob::new("echo", json!({"n": n})).queue("counted"),
            )
            .await,
        );
    }
    // Fails twice, then completes: two failed attempts and one completion.
    ids.push(
        enqueue_id(
            &store,
            NewJob::new("fail", json!({"times": 2}))
                .queue("counted")
                .max_attempts(3),
        )
        .await,
    );
    // Fails its only attempt.
    let failed = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 5}))
            .queue("counted")
            .max_attempts(1),
    )
    .await;
    let worker = spawn_worker(&store, registry(), quick_config("counted", 4));
    for id in &ids {
        wait_for_state(&store, *id, JobState::Completed, WAIT).await;
    }
    wait_for_state(&store, failed, JobState::Failed, WAIT).await;
    stop_worker(worker).await;

    let counts = store.queue_counts_since(since, 3_600_000).await.unwrap();
    let buckets = &counts["counted"];
    let completed: i64 = buckets.iter().map(|(_, c)| c.completed).sum();
    let failures: i64 = buckets.iter().map(|(_, c)| c.failed).sum();
    assert_eq!((completed, failures), (6, 3), "{buckets:?}");
    assert!(
        buckets.iter().all(|(at, _)| *at % 3_600_000 == 0),
        "hour buckets"
    );

    let latency = store.latency("counted", 100).await.unwrap();
    assert_eq!(latency.jobs, 7);
    assert!(latency.run_p50 <= latency.run_p95);
    assert!(latency.wait_p50 <= latency.wait_p95);
    assert!(
        !store
            .oldest_waiting()
            .await
            .unwrap()
            .contains_key("counted")
    );

    let waiting = enqueue_id(&store, NewJob::new("echo", json!({})).queue("counted")).await;
    let oldest = store.oldest_waiting().await.unwrap();
    let job = store.get(waiting).await.unwrap().unwrap();
    assert_eq!(oldest.get("counted"), Some(&job.run_at));
}

async fn lists_leave_out_kinds_and_search_arguments(store: Store) {
    let ann = enqueue_id(&store, NewJob::new("echo", json!({"who": "ann_%1"}))).await;
    let bob = enqueue_id(&store, NewJob::new("echo", json!({"who": "bob"}))).await;
    let noop = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    let ids = |jobs: Vec<conveyor_queue::Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let list = |filter: JobFilter| {
        let store = store.clone();
        async move {
            store
                .list(&JobFilter {
                    limit: 50,
                    ..filter
                })
                .await
                .unwrap()
        }
    };
    let without_echo = list(JobFilter {
        exclude_kinds: Some(vec!["echo".into(), "steps".into()]),
        ..JobFilter::default()
    })
    .await;
    assert_eq!(ids(without_echo), vec![noop]);
    // LIKE's wildcards in the text are literal: "_%" matches only ann's arguments.
    let literal = list(JobFilter {
        args_contain: Some("ann_%".into()),
        ..JobFilter::default()
    })
    .await;
    assert_eq!(ids(literal), vec![ann]);
    let nothing = list(JobFilter {
        args_contain: Some("a_n".into()),
        ..JobFilter::default()
    })
    .await;
    assert!(nothing.is_empty());
    let both = list(JobFilter {
        args_contain: Some("\"who\"".into()),
        exclude_kinds: Some(Vec::new()),
        ..JobFilter::default()
    })
    .await;
    assert_eq!(ids(both), vec![bob, ann]);
    // A key and its value match with or without a space after the colon, on both stores
    // (PostgreSQL prints jsonb as `{"who": "bob"}`, SQLite keeps `{"who":"bob"}`).
    for needle in ["\"who\":\"bob\"", "\"who\": \"bob\""] {
        let found = list(JobFilter {
            args_contain: Some(needle.into()),
            ..JobFilter::default()
        })
        .await;
        assert_eq!(ids(found), vec![bob], "{needle}");
    }
}

async fn attempts_of_a_retried_job_are_kept(store: Store) {
    let first_time = enqueue_id(&store, NewJob::new("echo", json!({}))).await;
    let retried = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 2})).max_attempts(3),
    )
    .await;
    let failed = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 5})).max_attempts(2),
    )
    .await;
    let worker = spawn_worker(&store, registry(), quick_config("default", 2));
    wait_for_state(&store, first_time, JobState::Completed, WAIT).await;
    wait_for_state(&store, retried, JobState::Completed, WAIT).await;
    wait_for_state(&store, failed, JobState::Failed, WAIT).await;
    stop_worker(worker).await;

    assert!(
        store.attempts(first_time).await.unwrap().is_empty(),
        "its row says it all"
    );
    let attempts = store.attempts(retried).await.unwrap();
    let outcomes: Vec<(i32, &str)> = attempts
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        vec![(1, "failed"), (2, "failed"), (3, "completed")]
    );
    assert!(attempts[0].error.as_deref().unwrap().contains("attempt 1"));
    assert!(
        attempts
            .iter()
            .all(|a| a.worker.is_some() && a.started_at.is_some())
    );
    assert!(
        attempts
            .iter()
            .all(|a| a.started_at.unwrap() <= a.finished_at)
    );
    let failures = store.attempts(failed).await.unwrap();
    assert_eq!(failures.len(), 2);

    // A retry by hand starts a fresh history; pruning the job takes its history along.
    store.retry(failed).await.unwrap();
    assert!(store.attempts(failed).await.unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await;
    store.prune(Duration::ZERO).await.unwrap();
    assert!(store.get(retried).await.unwrap().is_none());
    assert!(store.attempts(retried).await.unwrap().is_empty());
}

async fn a_worker_asked_to_stop_finishes_its_jobs_and_stops(store: Store) {
    let long = enqueue_id(&store, NewJob::new("sleep", json!({"ms": 800}))).await;
    let (stop, handle) = spawn_worker(&store, registry(), quick_config("default", 2));
    wait_for_state(&store, long, JobState::Running, WAIT).await;
    let workers = store.workers(60_000).await.unwrap();
    assert_eq!(workers.len(), 1);
    assert!(store.request_worker_stop(&workers[0].id).await.unwrap());
    assert!(!store.request_worker_stop("no-such-worker").await.unwrap());
    // It stops by itself (nobody cancels `stop`), after the running job completed.
    tokio::time::timeout(WAIT, handle)
        .await
        .expect("the worker stops within the deadline")
        .unwrap();
    assert!(!stop.is_cancelled());
    let job = store.get(long).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Completed, "the running job finished");
    let later = enqueue_id(&store, NewJob::new("noop", json!({}))).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        store.get(later).await.unwrap().unwrap().state,
        JobState::Available
    );
}

/// `action` on every job of `queue`.
async fn bulk(store: &Store, action: BulkAction, queue: &str, dry_run: bool) -> BulkOutcome {
    let filter = JobFilter {
        queue: Some(queue.to_owned()),
        ..Default::default()
    };
    store.bulk(action, &filter, dry_run).await.unwrap()
}

/// Bulk retry, cancel and delete act a page of jobs at a time, and each job ends as the
/// action on it alone would leave it: states it does not apply to are skipped, a cancelled
/// member settles its group, a retried job's history starts afresh, a running job is asked
/// to stop, a member whose continuation waits is not deleted, and a retry that would take a
/// live job's unique key skips that job alone.
async fn bulk_actions_treat_each_job_as_its_own_action_would(store: Store) {
    let states = |store: Store, queue: &'static str| async move {
        let jobs = store
            .list(&JobFilter {
                queue: Some(queue.to_owned()),
                limit: 5_000,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut counts: HashMap<JobState, usize> = HashMap::new();
        for job in jobs {
            *counts.entry(job.state).or_default() += 1;
        }
        counts
    };
    // More than two pages (500 a page).
    let many: Vec<NewJob> = (0..1_203)
        .map(|n| NewJob::new("noop", json!({ "n": n })).queue("bulk"))
        .collect();
    store.enqueue_many(&many).await.unwrap();
    let counted = bulk(&store, BulkAction::Cancel, "bulk", true).await;
    assert_eq!(
        counted,
        BulkOutcome {
            matched: 1_203,
            done: 0,
            more: false
        }
    );
    let cancelled = bulk(&store, BulkAction::Cancel, "bulk", false).await;
    assert_eq!((cancelled.matched, cancelled.done), (1_203, 1_203));
    assert_eq!(
        states(store.clone(), "bulk").await,
        HashMap::from([(JobState::Cancelled, 1_203)])
    );
    // Cancelling them again: nothing applies.
    let again = bulk(&store, BulkAction::Cancel, "bulk", false).await;
    assert_eq!((again.matched, again.done), (1_203, 0));

    // A group's members cancelled in bulk release its continuation (in another queue).
    let group = store
        .enqueue_group(
            &[
                NewJob::new("noop", json!({})).queue("members"),
                NewJob::new("noop", json!({})).queue("members"),
            ],
            NewJob::new("noop", json!({})).queue("after"),
        )
        .await
        .unwrap();
    // The continuation waits, so its members are kept from a bulk delete meanwhile.
    store.cancel(group.member_ids[0]).await.unwrap();
    let kept = bulk(&store, BulkAction::Delete, "members", false).await;
    assert_eq!((kept.matched, kept.done), (2, 0));
    let done = bulk(&store, BulkAction::Cancel, "members", false).await;
    assert_eq!(
        (done.matched, done.done),
        (2, 1),
        "one was cancelled already"
    );
    let continuation = store.get(group.continuation_id).await.unwrap().unwrap();
    assert_eq!(continuation.state, JobState::Available, "the group settled");

    // A failed job with a history, and a unique key now held by another job.
    let failed = enqueue_id(
        &store,
        NewJob::new("fail", json!({"times": 5}))
            .max_attempts(2)
            .queue("bulk"),
    )
    .await;
    let worker = spawn_worker(&store, registry(), quick_config("bulk", 2));
    wait_for_state(&store, failed, JobState::Failed, WAIT).await;
    stop_worker(worker).await;
    assert_eq!(store.attempts(failed).await.unwrap().len(), 2);
    let keyed = enqueue_id(
        &store,
        NewJob::new("noop", json!({})).queue("bulk").unique_key("k"),
    )
    .await;
    store.cancel(keyed).await.unwrap();
    let holder = enqueue_id(
        &store,
        NewJob::new("noop", json!({})).queue("bulk").unique_key("k"),
    )
    .await;
    // Alone, its retry is refused naming the key.
    assert!(matches!(store.retry(keyed).await, Err(Error::Duplicate(key)) if key == "k"));
    let retried = bulk(&store, BulkAction::Retry, "bulk", false).await;
    // Everything but the keyed job: the 1,203, the failed one, and the holder (waiting:
    // its run_at moves to now).
    assert_eq!((retried.matched, retried.done), (1_206, 1_205));
    let job = store.get(keyed).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Cancelled, "its key is held");
    let job = store.get(failed).await.unwrap().unwrap();
    assert_eq!((job.state, job.attempt), (JobState::Available, 0));
    assert!(
        store.attempts(failed).await.unwrap().is_empty(),
        "a fresh history"
    );
    assert_eq!(
        store.get(holder).await.unwrap().unwrap().state,
        JobState::Available
    );

    // A running job is asked to stop; the others are cancelled at once.
    let sleeper = enqueue_id(
        &store,
        NewJob::new("sleep", json!({"ms": 600_000})).queue("slow"),
    )
    .await;
    let worker = spawn_worker(&store, registry(), quick_config("slow", 1));
    wait_for_state(&store, sleeper, JobState::Running, WAIT).await;
    enqueue_id(&store, NewJob::new("noop", json!({})).queue("slow")).await;
    let stopped = bulk(&store, BulkAction::Cancel, "slow", false).await;
    assert_eq!((stopped.matched, stopped.done), (2, 2));
    wait_for_state(&store, sleeper, JobState::Cancelled, WAIT).await;
    stop_worker(worker).await;

    // Deleting ended jobs; the waiting ones stay.
    bulk(&store, BulkAction::Cancel, "bulk", false).await;
    enqueue_id(&store, NewJob::new("noop", json!({})).queue("bulk")).await;
    let deleted = bulk(&store, BulkAction::Delete, "bulk", false).await;
    assert_eq!((deleted.matched, deleted.done), (1_207, 1_206));
    assert_eq!(
        states(store.clone(), "bulk").await,
        HashMap::from([(JobState::Available, 1)])
    );
}
