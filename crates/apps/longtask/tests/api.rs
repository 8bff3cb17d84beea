//! The seed's routes over HTTP, on SQLite and on PostgreSQL (when `TEST_DATABASE_URL` is set).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use conveyor_queue::testing::{eventually, wait_for_state};
use conveyor_queue::{
    JobState, NewJob, QueueConfig, Registry, Store, Worker, WorkerConfig, builtin,
};
use conveyor_web::{AppState, WebSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

conveyor_queue::on_both_backends!(
    store:
    adding_a_task_answers_in_the_seeds_exact_shape,
    unknown_tasks_are_not_found_in_the_seeds_shape,
    nonsense_overrides_are_refused_and_nothing_is_stored,
    a_task_counts_to_completion_and_shows_in_the_job_api,
    a_task_cancelled_mid_count_stops_and_fails,
);

fn registry() -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    conveyor_longtask::register(&mut registry);
    registry
}

fn app(store: &Store) -> Router {
    let state = AppState::new(store.clone(), registry(), WebSettings::default());
    conveyor_web::router(state, conveyor_longtask::router(), true)
}

fn worker(store: &Store) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let config = WorkerConfig {
        queues: vec![QueueConfig {
            name: conveyor_longtask::QUEUE.into(),
            concurrency: 2,
        }],
        progress_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), registry(), config);
    let stop = CancellationToken::new();
    let handle = tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.unwrap() }
    });
    (stop, handle)
}

/// One request; the status, the exact content type and the raw body.
async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, String, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map_or(String::new(), |v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(bytes.to_vec()).unwrap(),
    )
}

async fn status_of(app: &Router, id: &str) -> Value {
    let (status, _, body) = call(app, Method::GET, &format!("/api/tasks/status/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str::<Value>(&body).unwrap()["result"]["progress"].clone()
}

async fn adding_a_task_answers_in_the_seeds_exact_shape(store: Store) {
    let app = app(&store);
    let (status, content_type, body) = call(&app, Method::POST, "/api/tasks/add", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::OK, "application/json")
    );
    assert_eq!(
        body,
        r#"{"success":true,"result":{"id":"1","message":"Task queued."}}"#
    );
    let (_, content_type, body) = call(&app, Method::GET, "/api/tasks/status/1", None).await;
    assert_eq!(content_type, "application/json");
    assert_eq!(
        body,
        r#"{"success":true,"result":{"progress":{"status":"Queued","timeElapsed":"0.00","progress":"0"}}}"#
    );
    // The defaults are the seed's count.
    let job = store.get(1).await.unwrap().unwrap();
    assert_eq!(job.args, json!({"target": 100_000_000, "step": 1_000_000}));
    assert_eq!(job.queue, "longtask");
    // An override is taken.
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/tasks/add",
        Some(r#"{"target": 5000, "step": 100}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        store.get(2).await.unwrap().unwrap().args,
        json!({"target": 5000, "step": 100})
    );
}

async fn unknown_tasks_are_not_found_in_the_seeds_shape(store: Store) {
    let app = app(&store);
    let other = store
        .enqueue(NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    for id in [
        "424242".to_owned(),
        "not-a-number".to_owned(),
        other.to_string(),
    ] {
        let (status, content_type, body) =
            call(&app, Method::GET, &format!("/api/tasks/status/{id}"), None).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::NOT_FOUND, "application/json"),
            "{id}"
        );
        assert_eq!(
            body,
            r#"{"success":false,"error":{"message":"Task not found."}}"#
        );
    }
}

async fn nonsense_overrides_are_refused_and_nothing_is_stored(store: Store) {
    let app = app(&store);
    for (body, says) in [
        (r#"{"step": 0}"#, "step"),
        (r#"{"target": 0}"#, "target"),
        (r#"{"target": 10, "step": 20}"#, "step"),
        (r#"{"target": "lots"}"#, "invalid body"),
        (r#"{"colour": 1}"#, "unknown field"),
        ("not json", "invalid body"),
        ("[]", "JSON object"),
        ("\n", "invalid body"),
        ("[1000, 10]", "JSON object"),
    ] {
        let (status, _, answer) = call(&app, Method::POST, "/api/tasks/add", Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["success"], false);
        assert!(
            answer["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    assert!(store.get(1).await.unwrap().is_none(), "nothing was stored");
}

async fn a_task_counts_to_completion_and_shows_in_the_job_api(store: Store) {
    let app = app(&store);
    let (_, _, body) = call(
        &app,
        Method::POST,
        "/api/tasks/add",
        Some(r#"{"target": 2000000, "step": 100000}"#),
    )
    .await;
    let id = serde_json::from_str::<Value>(&body).unwrap()["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = worker(&store);
    let job = wait_for_state(
        &store,
        id.parse().unwrap(),
        JobState::Completed,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(job.result.as_ref().unwrap()["count"], 2_000_000);
    assert_eq!(
        (job.progress_done, job.progress_total),
        (Some(2_000_000), Some(2_000_000))
    );
    let progress = status_of(&app, &id).await;
    assert_eq!(
        (progress["status"].as_str(), progress["progress"].as_str()),
        (Some("Completed"), Some("100"))
    );
    assert!(
        progress["timeElapsed"]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .is_ok()
    );
    let (_, _, general) = call(&app, Method::GET, &format!("/api/jobs/{id}"), None).await;
    let general: Value = serde_json::from_str(&general).unwrap();
    assert_eq!(general["progress"]["percent"], 100.0);
    running.0.cancel();
    running.1.await.unwrap();
}

async fn a_task_cancelled_mid_count_stops_and_fails(store: Store) {
    let app = app(&store);
    // Far more counting than the test will wait for.
    let (_, _, body) = call(
        &app,
        Method::POST,
        "/api/tasks/add",
        Some(r#"{"target": 1000000000000, "step": 1000000}"#),
    )
    .await;
    let id = serde_json::from_str::<Value>(&body).unwrap()["result"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = worker(&store);
    eventually(
        "the count makes progress",
        Duration::from_secs(30),
        || async {
            status_of(&app, &id).await["status"] == "Processing"
                && store
                    .get(id.parse().unwrap())
                    .await
                    .unwrap()
                    .unwrap()
                    .progress_done
                    .unwrap_or(0)
                    > 0
        },
    )
    .await;
    let (status, _, _) = call(&app, Method::POST, &format!("/api/jobs/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::OK);
    let job = wait_for_state(
        &store,
        id.parse().unwrap(),
        JobState::Cancelled,
        Duration::from_secs(10),
    )
    .await;
    assert!(
        job.error.unwrap().contains("stopped at"),
        "the loop saw the cancellation"
    );
    assert_eq!(status_of(&app, &id).await["status"], "Failed");
    running.0.cancel();
    running.1.await.unwrap();
}
