//! The job API over HTTP, on SQLite and on PostgreSQL (when `TEST_DATABASE_URL` is set):
//! in-process requests through the router, and one real socket for the event stream.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use conveyor_queue::testing::wait_for_state;
use conveyor_queue::{
    JobContext, JobState, QueueConfig, Registry, Store, Worker, WorkerConfig, builtin,
};
use conveyor_web::{AppState, WebSettings};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

conveyor_queue::on_both_backends!(
    store:
    a_job_is_created_read_and_listed,
    bad_requests_get_problems_that_name_the_fault_and_store_nothing,
    a_unique_key_answers_with_the_live_job,
    jobs_are_cancelled_and_retried,
    queues_show_counts_and_take_concurrency,
    a_paused_queue_resumes_and_an_unserved_one_is_named,
    jobs_are_deleted_and_acted_on_in_bulk,
    probes_metrics_and_docs_answer,
    the_event_stream_follows_a_job_to_its_end,
    the_token_guards_every_operator_route_and_nothing_else,
    internal_kinds_are_refused_and_store_nothing,
    a_batch_enqueues_each_job_or_says_why_not,
    a_batch_too_large_is_refused_whole,
    text_no_store_can_keep_is_refused_alike_on_both,
    a_store_out_of_reach_is_a_503_with_retry_after,
    a_job_for_a_queue_nobody_serves_carries_a_warning,
);

fn registry() -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    registry.register_public("steps", |_: Value, ctx: JobContext| async move {
        for done in 1..=4 {
            ctx.progress(done, Some(4), Some("stepping"));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        Ok(json!({"steps": 4}))
    });
    // An app's own kind: only the app enqueues it.
    registry.register("app.internal", |_: Value, _ctx: JobContext| async move {
        Ok(())
    });
    registry
}

fn app(store: &Store) -> Router {
    let settings = WebSettings {
        event_interval: Duration::from_millis(20),
        ..WebSettings::default()
    };
    let state = AppState::new(store.clone(), registry(), settings);
    conveyor_web::router(state, utoipa_axum::router::OpenApiRouter::new(), true)
}

/// Sends one request; returns status, content type and body (JSON when it parses).
async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, String, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, value)
}

async fn a_job_is_created_read_and_listed(store: Store) {
    let app = app(&store);
    let (status, content_type, job) = call(
        &app,
        Method::POST,
        "/api/jobs",
        Some(r#"{"kind": "sleep", "args": {"ms": 5}, "queue": "q", "priority": 3, "max_attempts": 2, "run_at": "2030-01-01T00:00:00Z"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(content_type, "application/json");
    assert_eq!(
        (
            job["kind"].as_str(),
            job["queue"].as_str(),
            job["state"].as_str()
        ),
        (Some("sleep"), Some("q"), Some("scheduled"))
    );
    assert_eq!(
        (job["priority"].as_i64(), job["max_attempts"].as_i64()),
        (Some(3), Some(2))
    );
    assert_eq!(job["run_at"], "2030-01-01T00:00:00.000Z");
    let id = job["id"].as_i64().unwrap();
    // No worker serves "q" here: the answer says so, and only the answer.
    let mut job = job;
    let warning = job.as_object_mut().unwrap().remove("warning");
    assert!(warning.is_some_and(|w| w.as_str().unwrap().contains("\"q\"")));

    let (status, _, read) = call(&app, Method::GET, &format!("/api/jobs/{id}"), None).await;
    assert_eq!((status, &read), (StatusCode::OK, &job));

    for i in 0..3 {
        call(
            &app,
            Method::POST,
            "/api/jobs",
            Some(&format!(r#"{{"kind": "noop", "args": {{"i": {i}}}}}"#)),
        )
        .await;
    }
    let (status, _, page) = call(&app, Method::GET, "/api/jobs?kind=noop&limit=2", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["jobs"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_i64().unwrap();
    let (_, _, rest) = call(
        &app,
        Method::GET,
        &format!("/api/jobs?kind=noop&limit=2&before={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest["jobs"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let (_, _, scheduled) =
        call(&app, Method::GET, "/api/jobs?state=scheduled&queue=q", None).await;
    assert_eq!(scheduled["jobs"][0]["id"], id);
}

async fn bad_requests_get_problems_that_name_the_fault_and_store_nothing(store: Store) {
    let app = app(&store);
    let cases: Vec<(Method, &str, Option<String>, StatusCode, &str)> = vec![
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "nope"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown job kind \"nope\"",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "sleep", "args": {"ms": "soon"}}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid arguments for job kind \"sleep\"",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop", "max_attempts": 0}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "max_attempts",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop", "queue": ""}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "queue",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop", "run_at": "tomorrow"}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "run_at",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop", "colour": 1}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown field `colour`",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"args": {}}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing field `kind`",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop""#.into()),
            StatusCode::BAD_REQUEST,
            "EOF",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(format!(
                r#"{{"kind": "noop", "args": "{}"}}"#,
                "x".repeat(3 << 20)
            )),
            StatusCode::PAYLOAD_TOO_LARGE,
            "length limit",
        ),
        (
            Method::GET,
            "/api/jobs/abc",
            None,
            StatusCode::BAD_REQUEST,
            "abc",
        ),
        (
            Method::GET,
            "/api/jobs/42",
            None,
            StatusCode::NOT_FOUND,
            "no job with id 42",
        ),
        (
            Method::GET,
            "/api/jobs?limit=0",
            None,
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Method::GET,
            "/api/jobs?state=done",
            None,
            StatusCode::BAD_REQUEST,
            "state",
        ),
        (
            Method::GET,
            "/api/nothing",
            None,
            StatusCode::NOT_FOUND,
            "no such route",
        ),
        (
            Method::PUT,
            "/api/queues/q/concurrency",
            Some(r#"{"concurrency": 99999}"#.into()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "concurrency",
        ),
    ];
    for (method, uri, body, status, says) in cases {
        let (got, content_type, problem) = call(&app, method.clone(), uri, body.as_deref()).await;
        assert_eq!(got, status, "{method} {uri}: {problem}");
        assert_eq!(content_type, "application/problem+json", "{method} {uri}");
        assert_eq!(problem["status"], status.as_u16());
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(says),
            "{method} {uri}: {detail:?} should mention {says:?}"
        );
    }
    // The wrong content type.
    let request = Request::post("/api/jobs")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(
        app.clone().oneshot(request).await.unwrap().status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let (_, _, page) = call(&app, Method::GET, "/api/jobs", None).await;
    assert_eq!(page["jobs"], json!([]), "nothing was stored");
}

async fn a_unique_key_answers_with_the_live_job(store: Store) {
    let app = app(&store);
    let body = r#"{"kind": "noop", "unique_key": "report-2026-11"}"#;
    let (first, _, job) = call(&app, Method::POST, "/api/jobs", Some(body)).await;
    let (second, _, same) = call(&app, Method::POST, "/api/jobs", Some(body)).await;
    assert_eq!((first, second), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(job["id"], same["id"]);
}

async fn jobs_are_cancelled_and_retried(store: Store) {
    let app = app(&store);
    let (_, _, job) = call(&app, Method::POST, "/api/jobs", Some(r#"{"kind": "noop"}"#)).await;
    let id = job["id"].as_i64().unwrap();
    let (status, _, cancelled) =
        call(&app, Method::POST, &format!("/api/jobs/{id}/cancel"), None).await;
    assert_eq!(
        (status, cancelled["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, _, problem) =
        call(&app, Method::POST, &format!("/api/jobs/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(problem["detail"].as_str().unwrap().contains("cancelled"));
    let (status, _, retried) =
        call(&app, Method::POST, &format!("/api/jobs/{id}/retry"), None).await;
    assert_eq!(
        (
            status,
            retried["state"].as_str(),
            retried["attempt"].as_i64()
        ),
        (StatusCode::OK, Some("available"), Some(0))
    );
    let (status, _, _) = call(&app, Method::POST, "/api/jobs/999/retry", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn queues_show_counts_and_take_concurrency(store: Store) {
    let app = app(&store);
    call(
        &app,
        Method::POST,
        "/api/jobs",
        Some(r#"{"kind": "noop", "queue": "mail"}"#),
    )
    .await;
    let (status, _, set) = call(
        &app,
        Method::PUT,
        "/api/queues/mail/concurrency",
        Some(r#"{"concurrency": 3}"#),
    )
    .await;
    assert_eq!(
        (status, set["concurrency"].as_i64()),
        (StatusCode::OK, Some(3))
    );
    call(
        &app,
        Method::PUT,
        "/api/queues/idle/concurrency",
        Some(r#"{"concurrency": 0}"#),
    )
    .await;
    let (_, _, queues) = call(&app, Method::GET, "/api/queues", None).await;
    let mail = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "mail")
        .unwrap();
    assert_eq!(
        (
            mail["counts"]["available"].as_i64(),
            mail["concurrency"].as_i64()
        ),
        (Some(1), Some(3))
    );
    let idle = queues
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "idle")
        .unwrap();
    assert_eq!(
        (
            idle["counts"]["available"].as_i64(),
            idle["concurrency"].as_i64()
        ),
        (Some(0), Some(0))
    );
    let (status, _, workers) = call(&app, Method::GET, "/api/workers", None).await;
    assert_eq!((status, workers), (StatusCode::OK, json!([])));
    let (_, _, kinds) = call(&app, Method::GET, "/api/kinds", None).await;
    assert_eq!(kinds, json!(["fail", "noop", "sleep", "steps"]));
}

async fn probes_metrics_and_docs_answer(store: Store) {
    let app = app(&store);
    assert_eq!(
        call(&app, Method::GET, "/healthz", None).await.0,
        StatusCode::OK
    );
    assert_eq!(
        call(&app, Method::GET, "/readyz", None).await.0,
        StatusCode::OK
    );
    call(&app, Method::POST, "/api/jobs", Some(r#"{"kind": "noop"}"#)).await;
    call(&app, Method::GET, "/api/jobs/1", None).await;
    let (status, _, metrics) = call(&app, Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains(r#"route="/api/jobs/{id}""#),
        "labelled by matched route: {metrics}"
    );
    assert!(metrics.contains("conveyor_jobs_enqueued_total"));
    assert!(metrics.contains(r#"conveyor_queue_jobs{queue="default",state="available"}"#));
    let (status, _, openapi) = call(&app, Method::GET, "/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/api/jobs",
        "/api/jobs/{id}",
        "/api/jobs/{id}/events",
        "/api/queues/{queue}/concurrency",
        "/api/workers",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} is documented");
    }
    let (status, content_type, _) = call(&app, Method::GET, "/api/docs/", None).await;
    assert_eq!(
        (status, content_type.starts_with("text/html")),
        (StatusCode::OK, true)
    );
    store.close().await;
    let (status, content_type, _) = call(&app, Method::GET, "/readyz", None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "application/problem+json")
    );
}

async fn the_event_stream_follows_a_job_to_its_end(store: Store) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(conveyor_web::serve(
        listener,
        app(&store),
        stop.clone().cancelled_owned(),
    ));
    let config = WorkerConfig {
        queues: vec![QueueConfig {
            name: "default".into(),
            concurrency: 1,
        }],
        progress_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let id = store
        .enqueue(conveyor_queue::NewJob::new("steps", json!({})))
        .await
        .unwrap()
        .job
        .id;

    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let request =
        format!("GET /api/jobs/{id}/events HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    // The first event shows the job as it is when the stream opens: read it before a worker
    // can take the job.
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    while !text.contains("\n\n") || !text.contains("data: ") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream closed early: {text}");
        text.push_str(&String::from_utf8_lossy(&buffer[..n]));
    }
    let worker = Worker::new(store.clone(), registry(), config);
    let worker = tokio::spawn(worker.run(stop.clone()));
    // The server ends the stream after the final state; the deadline only guards the test.
    tokio::time::timeout(Duration::from_secs(30), socket.read_to_string(&mut text))
        .await
        .unwrap()
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("content-type: text/event-stream"));
    let states: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("data: {\"id\""))
        .collect();
    assert!(
        states.first().unwrap().contains(r#""state":"available""#),
        "{text}"
    );
    assert!(
        states.last().unwrap().contains(r#""state":"completed""#),
        "{text}"
    );
    assert!(
        text.contains("event: progress"),
        "progress is streamed: {text}"
    );
    assert!(text.contains(r#""percent":"#));
    wait_for_state(&store, id, JobState::Completed, Duration::from_secs(5)).await;
    stop.cancel();
    worker.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
}

const TOKEN_A: &str = "token-a-0123456789abcdef";
const TOKEN_B: &str = "token-b-0123456789abcdef";

/// A server with two valid tokens, a public and a guarded app route, a page and an open page.
fn guarded_app(store: &Store) -> (Router, conveyor_web::auth::Auth) {
    use axum::routing::get;
    let auth = conveyor_web::auth::Auth::from_list(&format!("{TOKEN_A},{TOKEN_B}")).unwrap();
    let settings = WebSettings {
        auth: auth.clone(),
        ..WebSettings::default()
    };
    let state = AppState::new(store.clone(), registry(), settings);
    let surface = conveyor_web::Surface {
        public: utoipa_axum::router::OpenApiRouter::new().route("/open", get(|| async { "open" })),
        guarded: utoipa_axum::router::OpenApiRouter::new()
            .route("/api/app/thing", get(|| async { "thing" })),
        pages: Router::new().route("/page", get(|| async { "page" })),
        open_pages: Router::new().route("/login", get(|| async { "login" })),
    };
    (conveyor_web::router_for(state, surface, true), auth)
}

async fn send(
    app: &Router,
    method: Method,
    uri: &str,
    headers: &[(&str, String)],
) -> axum::response::Response {
    let mut request = Request::builder().method(method.clone()).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let body = if method == Method::POST || method == Method::PUT {
        request = request.header(header::CONTENT_TYPE, "application/json");
        Body::from(if uri.ends_with("concurrency") {
            r#"{"concurrency": 2}"#
        } else {
            r#"{"kind": "noop"}"#
        })
    } else {
        Body::empty()
    };
    app.clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap()
}

async fn the_token_guards_every_operator_route_and_nothing_else(store: Store) {
    let (app, auth) = guarded_app(&store);
    let id = store
        .enqueue(conveyor_queue::NewJob::new("noop", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let guarded = [
        (Method::GET, "/api/jobs".to_owned()),
        (Method::POST, "/api/jobs".to_owned()),
        (Method::GET, format!("/api/jobs/{id}")),
        (Method::POST, format!("/api/jobs/{id}/cancel")),
        (Method::POST, format!("/api/jobs/{id}/retry")),
        (Method::GET, format!("/api/jobs/{id}/events")),
        (Method::GET, "/api/queues".to_owned()),
        (Method::PUT, "/api/queues/default/concurrency".to_owned()),
        (Method::GET, "/api/workers".to_owned()),
        (Method::GET, "/api/kinds".to_owned()),
        (Method::GET, "/api/openapi.json".to_owned()),
        (Method::GET, "/api/docs/".to_owned()),
        (Method::GET, "/metrics".to_owned()),
        (Method::GET, "/api/app/thing".to_owned()),
    ];
    for (method, uri) in &guarded {
        for (what, headers) in [
            ("no token", vec![]),
            (
                "a wrong token",
                vec![("authorization", format!("Bearer {TOKEN_A}x"))],
            ),
            (
                "another scheme",
                vec![("authorization", format!("Basic {TOKEN_A}"))],
            ),
            (
                "a forged cookie",
                vec![(
                    "cookie",
                    format!("conveyor_session=99999999999999.{}", "0".repeat(64)),
                )],
            ),
        ] {
            let response = send(&app, method.clone(), uri, &headers).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {uri} with {what}"
            );
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                "application/problem+json",
                "{method} {uri}"
            );
            assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
        }
    }
    assert_eq!(
        store
            .list(&conveyor_queue::JobFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .len(),
        1,
        "a refused POST stores nothing"
    );
    let session = auth.new_session(conveyor_queue::clock::now_ms()).unwrap();
    for (method, uri) in &guarded {
        for headers in [
            vec![("authorization", format!("Bearer {TOKEN_A}"))],
            vec![("authorization", format!("bearer {TOKEN_B}"))],
            vec![("cookie", format!("theme=dark; conveyor_session={session}"))],
        ] {
            let response = send(&app, method.clone(), uri, &headers).await;
            assert_ne!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {uri}"
            );
            assert!(
                response.status().as_u16() < 500,
                "{method} {uri}: {}",
                response.status()
            );
        }
    }
    // Open without a token: the probes and the public routes.
    for uri in ["/healthz", "/readyz", "/open", "/login"] {
        let response = send(&app, Method::GET, uri, &[]).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
    }
    // A browser without a session is sent to log in, and comes back after.
    let response = send(
        &app,
        Method::GET,
        "/page?x=1",
        &[("accept", "text/html".to_owned())],
    )
    .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/login?next=/page%3Fx%3D1"
    );
    let response = send(&app, Method::GET, "/page", &[]).await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "a script gets 401"
    );
    let response = send(
        &app,
        Method::GET,
        "/page",
        &[("cookie", format!("conveyor_session={session}"))],
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // Unknown routes stay 404, token or not.
    assert_eq!(
        send(&app, Method::GET, "/api/nothing", &[]).await.status(),
        StatusCode::NOT_FOUND
    );
}

async fn internal_kinds_are_refused_and_store_nothing(store: Store) {
    let app = app(&store);
    let (status, content_type, body) = call(
        &app,
        Method::POST,
        "/api/jobs",
        Some(r#"{"kind": "app.internal", "args": {}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(content_type, "application/problem+json");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("\"app.internal\"") && detail.contains("internal"),
        "{detail}"
    );
    let jobs = store
        .list(&conveyor_queue::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(jobs.is_empty(), "nothing stored: {jobs:?}");
    let (_, _, kinds) = call(&app, Method::GET, "/api/kinds", None).await;
    assert_eq!(
        kinds,
        json!(["fail", "noop", "sleep", "steps"]),
        "only the public kinds are listed"
    );
    // The app itself still enqueues its internal kind, and the API can cancel it.
    let id = store
        .enqueue(conveyor_queue::NewJob::new("app.internal", json!({})))
        .await
        .unwrap()
        .job
        .id;
    let (status, _, body) = call(&app, Method::POST, &format!("/api/jobs/{id}/cancel"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn a_batch_enqueues_each_job_or_says_why_not(store: Store) {
    let app = app(&store);
    let body = json!({"jobs": [
        {"kind": "noop"},
        {"kind": "nope"},
        {"kind": "sleep", "args": {"ms": "soon"}},
        {"kind": "noop", "unique_key": "k"},
        {"kind": "noop", "unique_key": "k"},
        {"kind": "app.internal"},
        {"kind": "noop", "queue": "other", "priority": 5},
    ]});
    let (status, _, answer) = call(
        &app,
        Method::POST,
        "/api/jobs/batch",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let results = answer["results"].as_array().unwrap();
    let statuses: Vec<i64> = results
        .iter()
        .map(|r| r["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 422, 422, 201, 200, 422, 201]);
    assert_eq!(
        (answer["enqueued"].as_i64(), answer["refused"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(results[3]["id"], results[4]["id"], "one job holds the key");
    assert!(results[1]["error"].as_str().unwrap().contains("nope"));
    assert!(results[2]["error"].as_str().unwrap().contains("sleep"));
    assert!(results[5]["error"].as_str().unwrap().contains("internal"));
    assert!(results[1]["id"].is_null());
    let stored = store
        .list(&conveyor_queue::JobFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "only the good jobs are stored");
    let last = store
        .get(results[6]["id"].as_i64().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((last.queue.as_str(), last.priority), ("other", 5));
    // What breaks the document's schema refuses the whole batch, naming the job.
    for bad in [
        json!({"kind": "noop", "max_attempts": 0}),
        json!({"kind": "noop", "queue": "../../etc"}),
        json!({"kind": ""}),
        json!({"kind": "noop", "args": [1]}),
    ] {
        let body = json!({"jobs": [{"kind": "noop"}, bad]});
        let (status, _, problem) = call(
            &app,
            Method::POST,
            "/api/jobs/batch",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {problem}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("jobs[1]") || detail.contains("args"),
            "{detail}"
        );
    }
    let stored = store
        .list(&conveyor_queue::JobFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.len(), 3, "a refused batch stores nothing");
}

async fn a_batch_too_large_is_refused_whole(store: Store) {
    let app = app(&store);
    let jobs: Vec<Value> = (0..1001).map(|_| json!({"kind": "noop"})).collect();
    let (status, _, body) = call(
        &app,
        Method::POST,
        "/api/jobs/batch",
        Some(&json!({ "jobs": jobs }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"].as_str().unwrap().contains("1001"), "{body}");
    let (status, _, _) = call(
        &app,
        Method::POST,
        "/api/jobs/batch",
        Some(r#"{"jobs": []}"#),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Over the body limit (2 MiB): 413, before anything is parsed.
    let padding = "x".repeat(3000);
    let jobs: Vec<Value> = (0..1000)
        .map(|_| json!({"kind": "noop", "args": {"pad": padding}}))
        .collect();
    let (status, _, body) = call(
        &app,
        Method::POST,
        "/api/jobs/batch",
        Some(&json!({ "jobs": jobs }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let stored = store
        .list(&conveyor_queue::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(stored.is_empty(), "nothing stored");
    // A full batch of 1,000 goes in.
    let jobs: Vec<Value> = (0..1000)
        .map(|n| json!({"kind": "noop", "args": {"n": n}}))
        .collect();
    let (status, _, answer) = call(
        &app,
        Method::POST,
        "/api/jobs/batch",
        Some(&json!({ "jobs": jobs }).to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["enqueued"], 1000);
    let ids: Vec<i64> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids in the order of the jobs"
    );
    let job = store.get(ids[999]).await.unwrap().unwrap();
    assert_eq!(job.args, json!({"n": 999}));
}

async fn text_no_store_can_keep_is_refused_alike_on_both(store: Store) {
    let app = app(&store);
    for (method, uri, body, status, named) in [
        (
            Method::GET,
            "/api/jobs?kind=a%00b",
            None,
            StatusCode::BAD_REQUEST,
            "kind",
        ),
        (
            Method::GET,
            "/api/jobs?queue=%00",
            None,
            StatusCode::BAD_REQUEST,
            "queue",
        ),
        (
            Method::GET,
            "/api/jobs/1%00",
            None,
            StatusCode::BAD_REQUEST,
            "path",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop", "args": {"x": "a\u0000b"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body.args.x",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "no\u0000op"}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "body.kind",
        ),
        (
            Method::POST,
            "/api/jobs",
            Some(r#"{"kind": "noop", "args": {"x": "\ud800"}}"#),
            StatusCode::BAD_REQUEST,
            "args.x",
        ),
    ] {
        let (got, content_type, problem) = call(&app, method.clone(), uri, body).await;
        assert_eq!(got, status, "{method} {uri}: {problem}");
        assert_eq!(content_type, "application/problem+json");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(named), "{uri}: {detail}");
    }
    let stored = store
        .list(&conveyor_queue::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
}

async fn a_store_out_of_reach_is_a_503_with_retry_after(store: Store) {
    let app = app(&store);
    // A closed pool stands for a database that went away (a restart, a cut network).
    store.close().await;
    for (method, uri, body) in [
        (Method::GET, "/api/queues", None),
        (Method::GET, "/api/jobs", None),
        (Method::GET, "/api/jobs/1", None),
        (Method::POST, "/api/jobs", Some(r#"{"kind": "noop"}"#)),
        (
            Method::POST,
            "/api/jobs/batch",
            Some(r#"{"jobs": [{"kind": "noop"}]}"#),
        ),
        (Method::GET, "/readyz", None),
    ] {
        let mut request = Request::builder().method(method.clone()).uri(uri);
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        if uri.ends_with("batch") {
            // Each job says so in its own outcome.
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let answer: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(answer["results"][0]["status"], 503, "{answer}");
            continue;
        }
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{method} {uri}"
        );
        if uri != "/readyz" {
            assert_eq!(
                response.headers()[header::RETRY_AFTER],
                "2",
                "{method} {uri}"
            );
        }
    }
}

async fn a_job_for_a_queue_nobody_serves_carries_a_warning(store: Store) {
    let app = app(&store);
    let config = WorkerConfig {
        queues: vec![QueueConfig {
            name: "default".into(),
            concurrency: 1,
        }],
        ..WorkerConfig::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(Worker::new(store.clone(), registry(), config).run(stop.clone()));
    conveyor_queue::testing::eventually(
        "the worker registers",
        Duration::from_secs(10),
        || async { !store.workers(60_000).await.unwrap().is_empty() },
    )
    .await;
    let (status, _, served) =
        call(&app, Method::POST, "/api/jobs", Some(r#"{"kind": "noop"}"#)).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(served.get("warning").is_none(), "{served}");
    let (status, _, typo) = call(
        &app,
        Method::POST,
        "/api/jobs",
        Some(r#"{"kind": "noop", "queue": "defualt"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "accepted all the same");
    let warning = typo["warning"].as_str().unwrap();
    assert!(warning.contains("\"defualt\""), "{warning}");
    stop.cancel();
    worker.await.unwrap().unwrap();
}

async fn a_paused_queue_resumes_and_an_unserved_one_is_named(store: Store) {
    let app = app(&store);
    let (status, _, set) = call(
        &app,
        Method::PUT,
        "/api/queues/nobody/concurrency",
        Some(r#"{"concurrency": 0}"#),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(set["concurrency"], 0);
    assert!(
        set["warning"].as_str().unwrap().contains("no live worker"),
        "{set}"
    );
    let (status, _, _) = call(&app, Method::DELETE, "/api/queues/nobody/concurrency", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(store.queue_settings().await.unwrap().is_empty(), "resumed");
    let (status, _, problem) =
        call(&app, Method::DELETE, "/api/queues/nobody/concurrency", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        problem["detail"].as_str().unwrap().contains("nobody"),
        "{problem}"
    );
}

async fn jobs_are_deleted_and_acted_on_in_bulk(store: Store) {
    let app = app(&store);
    let mut ids = Vec::new();
    for n in 0..3 {
        let (_, _, job) = call(
            &app,
            Method::POST,
            "/api/jobs",
            Some(&format!(
                r#"{{"kind": "noop", "queue": "bulk", "args": {{"who": "person-{n}"}}}}"#
            )),
        )
        .await;
        ids.push(job["id"].as_i64().unwrap());
    }
    let (status, _, problem) =
        call(&app, Method::DELETE, &format!("/api/jobs/{}", ids[0]), None).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a waiting job is not deleted: {problem}"
    );
    let (status, _, _) = call(&app, Method::DELETE, "/api/jobs/999999", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let bulk = |body: &'static str| call(&app, Method::POST, "/api/jobs/bulk", Some(body));
    let (status, _, counted) =
        bulk(r#"{"action": "cancel", "queue": "bulk", "dry_run": true}"#).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (counted["matched"].as_i64(), counted["done"].as_i64()),
        (Some(3), Some(0))
    );
    let (_, _, one) =
        bulk(r#"{"action": "cancel", "queue": "bulk", "args_contain": "person-1"}"#).await;
    assert_eq!(one["done"], 1, "{one}");
    let (_, _, rest) = bulk(r#"{"action": "cancel", "queue": "bulk"}"#).await;
    assert_eq!(
        (rest["matched"].as_i64(), rest["done"].as_i64()),
        (Some(3), Some(2))
    );
    let (_, _, deleted) =
        bulk(r#"{"action": "delete", "queue": "bulk", "state": "cancelled"}"#).await;
    assert_eq!(deleted["done"], 3, "{deleted}");
    assert!(store.get(ids[1]).await.unwrap().is_none());
    let (status, _, problem) = bulk(r#"{"action": "explode"}"#).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("retry, cancel or delete")
    );
}
