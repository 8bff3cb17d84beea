//! average end to end through its HTTP API, on SQLite and on PostgreSQL (when
//! `TEST_DATABASE_URL` is set): generation, tree reduction, validation, download, bad input,
//! a malformed file, deletion, and W at run time.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use conveyor_average::Storage;
use conveyor_average::tasks::{self, StartArgs, SumArgs};
use conveyor_queue::testing::eventually;
use conveyor_queue::{JobContext, QueueConfig, Registry, Store, Worker, WorkerConfig};
use conveyor_web::{AppState, WebSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

conveyor_queue::on_both_backends!(
    store:
    a_job_generates_reduces_and_validates,
    bad_requests_are_refused_and_store_nothing,
    a_malformed_input_file_fails_the_job_naming_the_file,
    deleting_a_job_stops_it_and_removes_its_files,
    a_job_aggregating_shows_its_level_and_deleting_it_cancels_the_tree,
    w_is_read_and_changed_at_run_time,
    a_job_runs_on_an_s3_compatible_bucket,
    internal_tasks_touch_only_their_own_jobs_files,
    a_job_whose_files_are_gone_says_so,
);

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    app: Router,
    storage: Storage,
    dir: std::path::PathBuf,
    stop: CancellationToken,
    worker: tokio::task::JoinHandle<()>,
}

impl Setup {
    async fn finish(self) {
        self.stop.cancel();
        self.worker.await.unwrap();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fresh_dir() -> std::path::PathBuf {
    let n: u64 = rand::random();
    std::env::temp_dir().join(format!("conveyor-average-test-{n:x}"))
}

/// The app, and a worker for queue `average` whose registry `adjust` may change.
async fn setup(store: &Store, adjust: impl FnOnce(&mut Registry, &Storage)) -> Setup {
    let dir = fresh_dir();
    let storage = Storage::local(&dir).unwrap();
    setup_on(store, storage, dir, adjust).await
}

async fn setup_on(
    store: &Store,
    storage: Storage,
    dir: std::path::PathBuf,
    adjust: impl FnOnce(&mut Registry, &Storage),
) -> Setup {
    conveyor_average::migrate(store).await.unwrap();
    let mut registry = Registry::new();
    conveyor_average::register(&mut registry, storage.clone());
    adjust(&mut registry, &storage);
    let state = AppState::new(store.clone(), registry.clone(), WebSettings::default());
    let app = conveyor_web::router(state, conveyor_average::router(storage.clone()), true);
    let config = WorkerConfig {
        queues: vec![QueueConfig {
            name: conveyor_average::QUEUE.into(),
            concurrency: 4,
        }],
        lease: Duration::from_millis(900),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), registry, config);
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.unwrap() }
    });
    Setup {
        app,
        storage,
        dir,
        stop,
        worker: handle,
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value, String) {
    let mut request = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .unwrap();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, json, text)
}

async fn wait_until_ended(app: &Router, id: i64) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, job, _) = call(app, Method::GET, &format!("/api/average/jobs/{id}"), None).await;
        if matches!(job["status"].as_str(), Some("completed" | "failed")) {
            return job;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {id} did not end: {job}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn a_job_generates_reduces_and_validates(store: Store) {
    let setup = setup(&store, |_, _| {}).await;
    let app = &setup.app;
    let body = json!({"files": 23, "entries_per_file": 50, "group_size": 3, "seed": 42});
    let (status, job, text) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    assert_eq!(job["status"], "generating");
    assert_eq!(job["progress"]["generate_tasks"]["total"], 3);
    assert_eq!(job["progress"]["sum_tasks"]["total"], 8 + 3 + 1);
    assert_eq!(job["progress"]["levels"], 3);
    let id = job["id"].as_i64().unwrap();

    let job = wait_until_ended(app, id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(job["progress"]["percent"], 100.0);
    assert_eq!(job["progress"]["sum_tasks"]["done"], 12);
    assert!(job["timings"]["processing_seconds"].as_f64().unwrap() >= 0.0);
    assert!(
        job["input_location"]
            .as_str()
            .unwrap()
            .starts_with("file://")
    );

    // The answer, computed here from the generated files without the app's code paths.
    let mut sums = vec![0u64; 50];
    for index in 0..23 {
        let bytes = setup
            .storage
            .get(&format!("average/{id}/input/{index:06}.txt"))
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        let values: Vec<u64> = text
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(values.len(), 50);
        assert!(values.iter().all(|v| (1..=100).contains(v)));
        for (sum, value) in sums.iter_mut().zip(values) {
            *sum += value;
        }
    }
    let (status, _, output) = call(
        app,
        Method::GET,
        &format!("/api/average/jobs/{id}/output"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let averages: Vec<f64> = output
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let expected: Vec<f64> = sums.iter().map(|s| *s as f64 / 23.0).collect();
    assert_eq!(averages, expected);
    let mean = sums.iter().sum::<u64>() as f64 / (23.0 * 50.0);
    assert!((job["mean"].as_f64().unwrap() - mean).abs() < 1e-9);

    let (status, verdict, _) = call(
        app,
        Method::POST,
        &format!("/api/average/jobs/{id}/validate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["positions"], 50);

    // Tampering with the output is caught.
    setup
        .storage
        .put(&format!("average/{id}/average.txt"), b"1 2 3\n".to_vec())
        .await
        .unwrap();
    let (_, verdict, _) = call(
        app,
        Method::POST,
        &format!("/api/average/jobs/{id}/validate"),
        None,
    )
    .await;
    assert_eq!(verdict["valid"], false);
    assert!(verdict["mismatches"].as_u64().unwrap() >= 47);

    let (_, list, _) = call(app, Method::GET, "/api/average/jobs", None).await;
    assert_eq!(list["jobs"][0]["id"], id);
    let (status, _, _) = call(app, Method::GET, "/api/average/jobs/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    setup.finish().await;
}

async fn bad_requests_are_refused_and_store_nothing(store: Store) {
    let setup = setup(&store, |_, _| {}).await;
    let app = &setup.app;
    let cases = [
        (json!({"files": 0, "entries_per_file": 10}), "files must be"),
        (
            json!({"files": 100001, "entries_per_file": 10}),
            "files must be",
        ),
        (
            json!({"files": 10, "entries_per_file": 0}),
            "entries_per_file must be",
        ),
        (
            json!({"files": 100000, "entries_per_file": 100000}),
            "files x entries_per_file",
        ),
        (
            json!({"files": 10, "entries_per_file": 10, "group_size": 1}),
            "group_size must be",
        ),
        (
            json!({"files": 10, "entries_per_file": 10, "colour": "red"}),
            "colour",
        ),
        (json!({"files": 10}), "entries_per_file"),
        (json!({"files": -3, "entries_per_file": 10}), "files"),
    ];
    for (body, named) in cases {
        let (status, problem, text) =
            call(app, Method::POST, "/api/average/jobs", Some(body.clone())).await;
        assert!(status.is_client_error(), "{body} -> {status}");
        assert!(
            problem["detail"].as_str().unwrap_or(&text).contains(named),
            "{body}: {text}"
        );
    }
    let (_, list, _) = call(app, Method::GET, "/api/average/jobs", None).await;
    assert_eq!(list["jobs"], json!([]), "nothing stored");
    // The original's names work too.
    let body = json!({"noOfFiles": 2, "noOfEntriesPerFile": 3});
    let (status, _, _) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    setup.finish().await;
}

async fn a_malformed_input_file_fails_the_job_naming_the_file(store: Store) {
    // Once generation ends, and before level 0 starts, file 4 is truncated.
    let setup = setup(&store, |registry, storage| {
        let storage = storage.clone();
        registry.register(tasks::START, move |args: StartArgs, ctx: JobContext| {
            let storage = storage.clone();
            async move {
                let path = format!("average/{}/input/000004.txt", args.job);
                storage.put(&path, b"1 2 3\n".to_vec()).await?;
                tasks::start(args, &ctx).await
            }
        });
    })
    .await;
    let app = &setup.app;
    let body = json!({"files": 12, "entries_per_file": 20});
    let (_, job, _) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    let id = job["id"].as_i64().unwrap();
    let job = wait_until_ended(app, id).await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("input/000004.txt") && error.contains("3 numbers where 20"),
        "{error}"
    );
    let (status, _, _) = call(
        app,
        Method::POST,
        &format!("/api/average/jobs/{id}/validate"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    setup.finish().await;
}

async fn deleting_a_job_stops_it_and_removes_its_files(store: Store) {
    let setup = setup(&store, |_, _| {}).await;
    let app = &setup.app;
    let body = json!({"files": 400, "entries_per_file": 2000});
    let (_, job, _) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    let id = job["id"].as_i64().unwrap();
    let dir = setup.dir.join(format!("average/{id}"));
    eventually("input files appear", WAIT, || {
        let dir = dir.clone();
        async move {
            dir.join("input")
                .read_dir()
                .is_ok_and(|mut d| d.next().is_some())
        }
    })
    .await;
    let (status, _, _) = call(
        app,
        Method::DELETE,
        &format!("/api/average/jobs/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _, _) = call(app, Method::GET, &format!("/api/average/jobs/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Tasks that were running when it was deleted clean up after themselves.
    until_no_task_waits_or_runs(&store).await;
    // A task running at the deletion may have written a file since; the clean-up job,
    // scheduled a minute later, removes it. Run it now.
    let filter = conveyor_queue::JobFilter {
        kind: Some(tasks::CLEAN.into()),
        limit: 10,
        ..Default::default()
    };
    let clean = store.list(&filter).await.unwrap();
    assert_eq!(clean.len(), 1);
    assert_eq!(clean[0].state, conveyor_queue::JobState::Scheduled);
    store.retry(clean[0].id).await.unwrap();
    let done = conveyor_queue::JobState::Completed;
    conveyor_queue::testing::wait_for_state(&store, clean[0].id, done, WAIT).await;
    let files = walk(&dir);
    assert!(files.is_empty(), "left behind: {files:?}");
    let (status, _, _) = call(
        app,
        Method::DELETE,
        &format!("/api/average/jobs/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    setup.finish().await;
}

async fn a_job_aggregating_shows_its_level_and_deleting_it_cancels_the_tree(store: Store) {
    // The level-1 sums wait until they are cancelled: the job stays aggregating.
    let setup = setup(&store, |registry, storage| {
        let storage = storage.clone();
        registry.register(tasks::SUM, move |args: SumArgs, ctx: JobContext| {
            let storage = storage.clone();
            async move {
                if args.level == 1 {
                    while !ctx.is_cancelled() {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    return Err(conveyor_queue::JobError::permanent("cancelled"));
                }
                tasks::sum(&storage, args, &ctx).await
            }
        });
    })
    .await;
    let app = &setup.app;
    // 50 files, 5 at a time: levels of 10, 2 and 1 sums.
    let body = json!({"files": 50, "entries_per_file": 20});
    let (_, job, _) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    let id = job["id"].as_i64().unwrap();
    let uri = format!("/api/average/jobs/{id}");
    eventually("level 0 done, level 1 running", WAIT, || async {
        let (_, job, _) = call(app, Method::GET, &uri, None).await;
        job["status"] == "aggregating"
    })
    .await;
    let (_, job, _) = call(app, Method::GET, &uri, None).await;
    assert_eq!(job["progress"]["level"], 1, "{job}");
    assert_eq!(job["progress"]["levels"], 3, "{job}");
    assert_eq!(job["progress"]["sum_tasks"]["total"], 13, "{job}");
    assert_eq!(job["progress"]["sum_tasks"]["done"], 10, "{job}");
    assert_eq!(job["progress"]["generate_tasks"]["done"], 5, "{job}");

    let (status, _, _) = call(app, Method::DELETE, &uri, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Every job of the tree ends: the running nodes are stopped, the root never runs.
    until_no_task_waits_or_runs(&store).await;
    let filter = conveyor_queue::JobFilter {
        kind: Some(tasks::SUM.into()),
        limit: 100,
        ..Default::default()
    };
    let sums = store.list(&filter).await.unwrap();
    assert_eq!(sums.len(), 13);
    let cancelled = sums
        .iter()
        .filter(|j| j.state == conveyor_queue::JobState::Cancelled)
        .count();
    assert_eq!(cancelled, 3, "two nodes and the root: {sums:?}");
    setup.finish().await;
}

/// Waits until no job of any queue is waiting or running.
async fn until_no_task_waits_or_runs(store: &Store) {
    eventually("no task left waiting or running", WAIT, || {
        let store = store.clone();
        async move {
            let counts = store.queue_counts().await.unwrap();
            !counts.iter().flat_map(|q| q.by_state.iter()).any(|(s, n)| {
                *n > 0
                    && matches!(
                        s.as_str(),
                        "running" | "available" | "pending" | "retryable"
                    )
            })
        }
    })
    .await;
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = dir.read_dir() else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

async fn w_is_read_and_changed_at_run_time(store: Store) {
    let setup = setup(&store, |_, _| {}).await;
    let app = &setup.app;
    eventually("the worker shows its 4 slots", WAIT, || {
        let app = app.clone();
        async move {
            let (_, workers, _) = call(&app, Method::GET, "/api/average/workers", None).await;
            workers["slots"] == 4 && workers["workers"] == 1
        }
    })
    .await;
    let (status, workers, _) = call(
        app,
        Method::PUT,
        "/api/average/workers",
        Some(json!({"w": 2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(workers["w"], 2);
    eventually("the worker applies W = 2", WAIT, || {
        let app = app.clone();
        async move {
            let (_, workers, _) = call(&app, Method::GET, "/api/average/workers", None).await;
            workers["slots"] == 2 && workers["idle"] == 2 && workers["busy"] == 0
        }
    })
    .await;
    let (status, problem, _) = call(
        app,
        Method::PUT,
        "/api/average/workers",
        Some(json!({"w": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(problem["detail"].as_str().unwrap().contains("w must be"));
    let (_, metrics, text) = call(app, Method::GET, "/metrics", None).await;
    assert_eq!(metrics, Value::Null);
    assert!(text.contains("average_slots_idle"), "{text}");
    setup.finish().await;
}

/// The same job with its files in an S3-compatible bucket (moto's server in CI; set
/// `TEST_S3_ENDPOINT`, e.g. http://127.0.0.1:5055, to run it).
async fn a_job_runs_on_an_s3_compatible_bucket(store: Store) {
    use object_store::aws::AmazonS3Builder;

    let Ok(endpoint) = std::env::var("TEST_S3_ENDPOINT") else {
        conveyor_queue::testing::skip("TEST_S3_ENDPOINT is not set");
        return;
    };
    conveyor_web::install_tls_provider();
    let bucket = format!("conveyor-test-{:x}", rand::random::<u32>());
    let client = reqwest::Client::new();
    let created = client
        .put(format!("{endpoint}/{bucket}"))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "creating the bucket: {}",
        created.status()
    );
    let s3 = AmazonS3Builder::new()
        .with_endpoint(&endpoint)
        .with_allow_http(true)
        .with_bucket_name(&bucket)
        .with_region("us-east-1")
        .with_access_key_id("test")
        .with_secret_access_key("test")
        .build()
        .unwrap();
    let storage = Storage::new(std::sync::Arc::new(s3), format!("s3://{bucket}"));
    let setup = setup_on(&store, storage.clone(), fresh_dir(), |_, _| {}).await;
    let app = &setup.app;

    let body = json!({"files": 12, "entries_per_file": 30, "seed": 9});
    let (status, job, text) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{text}");
    let id = job["id"].as_i64().unwrap();
    let job = wait_until_ended(app, id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert!(
        job["input_location"]
            .as_str()
            .unwrap()
            .starts_with(&format!("s3://{bucket}/average/{id}/"))
    );
    let (_, verdict, _) = call(
        app,
        Method::POST,
        &format!("/api/average/jobs/{id}/validate"),
        None,
    )
    .await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    let (_, output, _) = call(
        app,
        Method::GET,
        &format!("/api/average/jobs/{id}/output"),
        None,
    )
    .await;
    assert_eq!(output, Value::Null, "the output is text, not JSON");

    let (status, _, _) = call(
        app,
        Method::DELETE,
        &format!("/api/average/jobs/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let left = storage
        .delete_under(&format!("average/{id}"))
        .await
        .unwrap();
    assert_eq!(left, 0, "deleting the job deleted its objects");
    setup.finish().await;
}

async fn internal_tasks_touch_only_their_own_jobs_files(store: Store) {
    let setup = setup(&store, |_, _| {}).await;
    let app = &setup.app;
    let body = json!({"files": 5, "entries_per_file": 10, "group_size": 5, "seed": 7});
    let (_, job, _) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    let id = job["id"].as_i64().unwrap();
    let done = wait_until_ended(app, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    let input = format!("average/{id}/input/000000.txt");
    let before = setup.storage.get(&input).await.unwrap();
    // Enqueued with hostile arguments (as only the app or a database writer could), the
    // handlers refuse them: clean of everything, of a live job, a sum writing elsewhere,
    // a generation over a finished job's inputs.
    let hostile = [
        ("average.clean", json!({"location": ""})),
        (
            "average.clean",
            json!({"location": format!("average/{id}")}),
        ),
        ("average.clean", json!({"location": "average/../.."})),
        (
            "average.sum",
            json!({"job": id, "level": 1, "entries": 10, "inputs": [input.clone()],
                   "output": format!("average/{id}/../../escaped")}),
        ),
        (
            "average.sum",
            json!({"job": id, "level": 1, "entries": 10, "inputs": ["average/999/x"],
                   "output": format!("average/{id}/partial/x")}),
        ),
        (
            "average.generate",
            json!({"job": id, "location": format!("average/{id}"), "entries": 10, "seed": 99,
                   "from": 0, "to": 5}),
        ),
        (
            "average.generate",
            json!({"job": id, "location": "elsewhere", "entries": 10, "seed": 99,
                   "from": 0, "to": 5}),
        ),
    ];
    for (n, (kind, args)) in hostile.into_iter().enumerate() {
        let job = store
            .enqueue(
                conveyor_queue::NewJob::new(kind, args.clone())
                    .queue(conveyor_average::QUEUE)
                    .max_attempts(1),
            )
            .await
            .unwrap()
            .job;
        let ended = conveyor_queue::testing::wait_for_job(&store, job.id, WAIT, |j| {
            j.finished_at.is_some()
        })
        .await;
        // The generation over a finished job is skipped (a late rerun is not an error);
        // every other one fails, naming what it refused.
        let expected = if n == 5 {
            conveyor_queue::JobState::Completed
        } else {
            conveyor_queue::JobState::Failed
        };
        assert_eq!(ended.state, expected, "{kind} {args}: {ended:?}");
    }
    assert_eq!(
        setup.storage.get(&input).await.unwrap(),
        before,
        "the finished job's inputs are as they were"
    );
    let (_, output, _) = call(app, Method::GET, &format!("/api/average/jobs/{id}"), None).await;
    assert_eq!(output["status"], "completed");
    assert!(!setup.dir.join("escaped").exists());
    setup.finish().await;
}

async fn a_job_whose_files_are_gone_says_so(store: Store) {
    let setup = setup(&store, |_, _| {}).await;
    let app = &setup.app;
    let body = json!({"files": 5, "entries_per_file": 10, "group_size": 5, "seed": 3});
    let (_, job, _) = call(app, Method::POST, "/api/average/jobs", Some(body)).await;
    let id = job["id"].as_i64().unwrap();
    let done = wait_until_ended(app, id).await;
    assert_eq!(done["status"], "completed");
    let (status, job, _) = call(app, Method::GET, &format!("/api/average/jobs/{id}"), None).await;
    assert_eq!(
        (status, job["output_present"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    // Someone wipes the store behind the job's back.
    std::fs::remove_dir_all(setup.dir.join(format!("average/{id}"))).unwrap();
    let (status, job, _) = call(app, Method::GET, &format!("/api/average/jobs/{id}"), None).await;
    assert_eq!(
        (status, job["output_present"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    for path in ["output", "validate"] {
        let method = if path == "output" {
            Method::GET
        } else {
            Method::POST
        };
        let (status, problem, text) =
            call(app, method, &format!("/api/average/jobs/{id}/{path}"), None).await;
        assert_eq!(status, StatusCode::GONE, "{path}: {text}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("gone from the store"),
            "{text}"
        );
    }
    setup.finish().await;
}
