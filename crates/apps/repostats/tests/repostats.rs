//! repostats against the fake GitHub, on SQLite and on PostgreSQL (when `TEST_DATABASE_URL`
//! is set): the refresh, the shared budget across windows, 429s, ETags, and the API.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use conveyor_queue::{NewJob, QueueConfig, Registry, Store, Worker, WorkerConfig};
use conveyor_repostats::fake::{Fake, FakeConfig};
use conveyor_repostats::{Github, GithubConfig, SnapshotCell, jobs};
use conveyor_web::{AppState, WebSettings};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

conveyor_queue::on_both_backends!(
    store:
    a_start_refreshes_data_older_than_the_period,
    a_refresh_lists_the_newest_and_fetches_every_language,
    the_api_filters_case_insensitively_and_refuses_bad_values,
    a_small_budget_is_spent_across_windows_without_a_refusal,
    throttled_answers_are_retried_after_retry_after,
    unchanged_languages_are_refetched_for_free,
    the_recorded_responses_keep_their_edge_cases,
    a_client_over_its_rate_gets_429_with_retry_after,
    clients_behind_a_trusted_proxy_are_limited_apart,
    the_next_token_is_used_only_when_one_is_spent,
);

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    app: Router,
    fake: Arc<Fake>,
    store: Store,
    cell: SnapshotCell,
    stop: CancellationToken,
}

impl Setup {
    async fn finish(self) {
        self.stop.cancel();
    }

    /// Reloads the snapshot now (the server does it every second).
    async fn reload(&self) {
        let snapshot = conveyor_repostats::db::load_snapshot(&self.store)
            .await
            .unwrap();
        self.cell.store(snapshot);
    }

    async fn get(&self, uri: &str) -> (StatusCode, Value, axum::http::HeaderMap) {
        let request = Request::builder()
            .method(Method::GET)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            headers,
        )
    }

    async fn refresh_and_wait(&self) {
        let job = NewJob::new(jobs::REFRESH, json!({})).queue(jobs::QUEUE);
        let id = self.store.enqueue(job).await.unwrap().job.id;
        conveyor_queue::testing::wait_for_state(
            &self.store,
            id,
            conveyor_queue::JobState::Completed,
            WAIT,
        )
        .await;
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            self.reload().await;
            let snapshot = self.cell.load();
            if snapshot.repos.len() == 100 && snapshot.repos.iter().all(|r| r.languages.is_some()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "languages still missing"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn setup(store: &Store, fake: FakeConfig) -> Setup {
    setup_with(store, Fake::generated(150, fake)).await
}

async fn setup_with(store: &Store, fake: Fake) -> Setup {
    setup_with_tokens(store, fake, Vec::new()).await
}

async fn setup_with_tokens(store: &Store, fake: Fake, tokens: Vec<String>) -> Setup {
    conveyor_repostats::migrate(store).await.unwrap();
    let fake = Arc::new(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let router = fake.clone().router();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let github = Github::new(GithubConfig {
        api_url: url,
        tokens: tokens.into_iter().map(Into::into).collect(),
        max_wait: Duration::from_millis(500),
    })
    .unwrap();
    let mut registry = Registry::new();
    conveyor_repostats::register(&mut registry, github);
    let cell = SnapshotCell::default();
    let state = AppState::new(store.clone(), registry.clone(), WebSettings::default());
    let app = conveyor_web::router(state, conveyor_repostats::router(cell.clone(), 0), true);
    let config = WorkerConfig {
        queues: vec![QueueConfig {
            name: jobs::QUEUE.into(),
            concurrency: 8,
        }],
        ..WorkerConfig::default()
    };
    let worker = Worker::new(store.clone(), registry, config);
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move { worker.run(stop).await.unwrap() }
    });
    Setup {
        app,
        fake,
        store: store.clone(),
        cell,
        stop,
    }
}

fn fast() -> FakeConfig {
    FakeConfig {
        latency: Duration::from_millis(1),
        ..FakeConfig::default()
    }
}

async fn a_refresh_lists_the_newest_and_fetches_every_language(store: Store) {
    let setup = setup(&store, fast()).await;
    setup.refresh_and_wait().await;
    let (status, body, _) = setup.get("/repos").await;
    assert_eq!(status, StatusCode::OK);
    let repos = body["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 100, "the newest 100 of 150");
    // Newest first: the generated repositories are one second apart, repo-0 the newest.
    assert_eq!(repos[0]["repository"], "repo-0");
    assert_eq!(repos[99]["repository"], "repo-99");
    assert_eq!(body["freshness"]["with_languages"], 100);
    // Empty repositories have `{}` languages, not null.
    assert_eq!(repos[0]["languages"], json!({}));
    assert_eq!(repos[1]["languages"]["Python"]["bytes"], 1101);
    // A second refresh lists the same and fetches nothing again.
    let served = setup.fake.served("core");
    setup.refresh_and_wait().await;
    assert_eq!(
        setup.fake.served("core"),
        served,
        "languages already known are not refetched"
    );
    assert_eq!(setup.fake.refused(), 0);
    setup.finish().await;
}

async fn the_api_filters_case_insensitively_and_refuses_bad_values(store: Store) {
    let setup = setup(&store, fast()).await;
    setup.refresh_and_wait().await;
    let names = |body: &Value| -> Vec<String> {
        body["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["repository"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, ping, _) = setup.get("/ping").await;
    assert_eq!(ping, json!({"status": "pong"}));

    // Primary "Matlab" and languages key "MATLAB" both match, in any case.
    let (_, matlab, _) = setup.get("/repos?language=matlab").await;
    let (_, upper, _) = setup.get("/repos?language=MATLAB").await;
    assert_eq!(names(&matlab), names(&upper));
    assert!(!names(&matlab).is_empty());
    for repo in matlab["repositories"].as_array().unwrap() {
        let primary = repo["language"]
            .as_str()
            .unwrap_or("")
            .eq_ignore_ascii_case("matlab");
        let used = repo["languages"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.eq_ignore_ascii_case("matlab"));
        assert!(primary || used);
    }
    let (_, by_spdx, _) = setup.get("/repos?license=noassertion").await;
    let (_, by_key, _) = setup.get("/repos?license=OTHER").await;
    assert_eq!(names(&by_spdx), names(&by_key));
    assert_eq!(by_key["count"], 20);
    let (_, wiki, _) = setup
        .get("/repos?has_wiki=true&fork=false&limit=5&sort=name")
        .await;
    let list = wiki["repositories"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    assert!(
        list.iter()
            .all(|r| r["has_wiki"] == true && r["fork"] == false)
    );
    let sorted: Vec<String> = list
        .iter()
        .map(|r| r["full_name"].as_str().unwrap().to_lowercase())
        .collect();
    let mut expected = sorted.clone();
    expected.sort();
    assert_eq!(sorted, expected);
    let (_, page, _) = setup.get("/repos?limit=10&offset=20").await;
    let paged = names(&page);
    assert_eq!(paged.first().map(String::as_str), Some("repo-20"));
    assert_eq!(paged.len(), 10);
    let (_, named, _) = setup.get("/repos?name=REPO-1").await;
    assert!(names(&named).iter().all(|n| n.contains("repo-1")));

    for (uri, named) in [
        ("/repos?has_wiki=maybe", "has_wiki"),
        ("/repos?colour=red", "colour"),
        ("/repos?limit=0", "limit"),
        ("/repos?sort=random", "sort"),
        ("/repos?offset=-1", "offset"),
        ("/stats?archived=2", "archived"),
    ] {
        let (status, problem, _) = setup.get(uri).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert!(
            problem["detail"].as_str().unwrap().contains(named),
            "{uri}: {problem}"
        );
    }

    // Statistics: bytes add up, shares sum to 1, per-language repository counts.
    let (_, stats, headers) = setup.get("/stats").await;
    let languages = stats["languages"].as_object().unwrap();
    let bytes: u64 = languages
        .values()
        .map(|l| l["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(bytes, stats["bytes"].as_u64().unwrap());
    let shares: f64 = languages
        .values()
        .map(|l| l["share"].as_f64().unwrap())
        .sum();
    assert!((shares - 1.0).abs() < 1e-9);
    assert_eq!(stats["repositories"], 100);
    let licensed: u64 = stats["licenses"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(licensed, 100);
    // With a language: the statistics of the repositories using it.
    let (_, rust, _) = setup.get("/stats?language=rust").await;
    let (_, rust_repos, _) = setup.get("/repos?language=rust").await;
    assert_eq!(rust["repositories"], rust_repos["count"]);
    assert_eq!(rust["language"], "rust");

    // ETag and 304.
    let etag = headers[header::ETAG].to_str().unwrap().to_owned();
    assert!(
        headers[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let request = Request::get("/stats")
        .header(header::IF_NONE_MATCH, &etag)
        .body(Body::empty())
        .unwrap();
    let response = setup.app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    setup.finish().await;
}

async fn a_small_budget_is_spent_across_windows_without_a_refusal(store: Store) {
    // 30 core requests per 2-second window: 100 languages need four windows.
    let config = FakeConfig {
        core_limit: 30,
        search_limit: 5,
        window: Duration::from_secs(2),
        ..fast()
    };
    let setup = setup(&store, config).await;
    let started = std::time::Instant::now();
    setup.refresh_and_wait().await;
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "it waited for the resets"
    );
    assert_eq!(
        setup.fake.refused(),
        0,
        "the governor never overdrew the budget"
    );
    let (_, status, _) = setup.get("/api/repostats/status").await;
    let budget = status["budget"].as_array().unwrap();
    assert!(
        budget
            .iter()
            .any(|b| b["bucket"] == "core" && b["token"] == "anonymous")
    );
    setup.finish().await;
}

async fn throttled_answers_are_retried_after_retry_after(store: Store) {
    let config = FakeConfig {
        throttle_every: 9,
        ..fast()
    };
    let setup = setup(&store, config).await;
    setup.refresh_and_wait().await;
    assert!(setup.fake.refused() > 0, "some answers were 429s");
    setup.finish().await;
}

async fn unchanged_languages_are_refetched_for_free(store: Store) {
    let setup = setup(&store, fast()).await;
    setup.refresh_and_wait().await;
    let served = setup.fake.served("core");
    let snapshot = setup.cell.load();
    let repo = &snapshot.repos[3];
    let args = jobs::LanguagesArgs {
        id: repo.id,
        full_name: repo.full_name.clone(),
    };
    let job = NewJob::new(jobs::LANGUAGES, json!(args)).queue(jobs::QUEUE);
    let id = store.enqueue(job).await.unwrap().job.id;
    let done = conveyor_queue::testing::wait_for_state(
        &store,
        id,
        conveyor_queue::JobState::Completed,
        WAIT,
    )
    .await;
    assert_eq!(done.result.unwrap()["unchanged"], true);
    assert_eq!(
        setup.fake.served("core"),
        served,
        "a 304 is not a served request"
    );
    assert_eq!(setup.fake.not_modified(), 1);
    setup.finish().await;
}

/// The real recorded GitHub responses in `../shared/data/github` (skipped when absent).
async fn the_recorded_responses_keep_their_edge_cases(store: Store) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/data/github");
    if !dir.join("search-repositories.json").exists() {
        eprintln!("skipped: {} is absent", dir.display());
        return;
    }
    let setup = setup_with(&store, Fake::from_dir(&dir, fast()).unwrap()).await;
    setup.refresh_and_wait().await;
    let (_, all, _) = setup.get("/repos").await;
    let repos = all["repositories"].as_array().unwrap();
    assert_eq!(repos.len(), 100);
    let empty = repos.iter().filter(|r| r["languages"] == json!({})).count();
    assert_eq!(empty, 16, "16 repositories have {{}} languages");
    let no_primary = repos.iter().filter(|r| r["language"].is_null()).count();
    assert_eq!(no_primary, 15);
    let (_, stats, _) = setup.get("/stats").await;
    assert_eq!(stats["licenses"]["none"], 44, "44 without a license");
    // Primary `Matlab`, languages key `MATLAB`: one language, matched in any case.
    let (_, matlab, _) = setup.get("/repos?language=matlab").await;
    assert!(matlab["count"].as_u64().unwrap() >= 1);
    assert!(
        stats["languages"]
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| k.eq_ignore_ascii_case("matlab"))
            .count()
            <= 1
    );
    setup.finish().await;
}

async fn a_client_over_its_rate_gets_429_with_retry_after(store: Store) {
    use axum::extract::connect_info::MockConnectInfo;
    conveyor_repostats::migrate(&store).await.unwrap();
    let state = AppState::new(store.clone(), Registry::new(), WebSettings::default());
    let app = conveyor_web::router(
        state,
        conveyor_repostats::router(SnapshotCell::default(), 3),
        true,
    )
    .layer(MockConnectInfo(std::net::SocketAddr::from((
        [203, 0, 113, 7],
        4000,
    ))));
    let get = |uri: &'static str| {
        let app = app.clone();
        async move {
            app.oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap()
        }
    };
    for _ in 0..6 {
        assert_eq!(
            get("/ping").await.status(),
            StatusCode::OK,
            "a burst of twice the rate"
        );
    }
    let refused = get("/repos").await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    // The job API is not limited.
    assert_eq!(get("/api/queues").await.status(), StatusCode::OK);
}

async fn clients_behind_a_trusted_proxy_are_limited_apart(store: Store) {
    use axum::extract::connect_info::MockConnectInfo;
    conveyor_repostats::migrate(&store).await.unwrap();
    let state = AppState::new(store.clone(), Registry::new(), WebSettings::default());
    let app = |peer: [u8; 4]| {
        conveyor_web::router(
            state.clone(),
            conveyor_repostats::router(SnapshotCell::default(), 3),
            true,
        )
        .layer(MockConnectInfo(std::net::SocketAddr::from((peer, 4000))))
    };
    // nginx on this machine (trusted by default) forwards two clients.
    let proxy = app([127, 0, 0, 1]);
    let get = |app: &axum::Router, forwarded_for: &str| {
        let request = Request::get("/ping")
            .header("x-forwarded-for", forwarded_for)
            .body(Body::empty())
            .unwrap();
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status() }
    };
    for _ in 0..6 {
        assert_eq!(get(&proxy, "198.51.100.1").await, StatusCode::OK);
    }
    assert_eq!(
        get(&proxy, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A client that forges a first hop is still counted by the address nginx appended.
    assert_eq!(
        get(&proxy, "198.51.100.2, 198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get(&proxy, "198.51.100.1, 198.51.100.2").await,
        StatusCode::OK,
        "another client behind the same proxy is not limited"
    );
    // A peer that is no trusted proxy is the client, whatever it forwards.
    let direct = app([203, 0, 113, 9]);
    for n in 0..6 {
        assert_eq!(get(&direct, &format!("192.0.2.{n}")).await, StatusCode::OK);
    }
    assert_eq!(
        get(&direct, "192.0.2.99").await,
        StatusCode::TOO_MANY_REQUESTS,
        "forged X-Forwarded-For from an untrusted peer does not make new clients"
    );
}

async fn the_next_token_is_used_only_when_one_is_spent(store: Store) {
    // 60 core requests per token per hour: the 100 languages need both tokens, and no wait.
    let config = FakeConfig {
        core_limit: 60,
        ..fast()
    };
    let tokens = vec!["first-secret".to_owned(), "second-secret".to_owned()];
    let setup = setup_with_tokens(&store, Fake::generated(150, config), tokens).await;
    let started = std::time::Instant::now();
    setup.refresh_and_wait().await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "no wait for an hourly reset"
    );
    assert_eq!(setup.fake.refused(), 0);
    let (_, status, _) = setup.get("/api/repostats/status").await;
    let remaining = |token: &str| {
        status["budget"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["token"] == token && b["bucket"] == "core")
            .map(|b| b["remaining"].as_i64().unwrap())
    };
    assert_eq!(
        remaining("token-1"),
        Some(0),
        "the first token is spent first: {status}"
    );
    assert_eq!(remaining("token-2"), Some(20), "then the second: {status}");
    assert!(
        !status.to_string().contains("secret"),
        "token values are never shown"
    );
    setup.finish().await;
}

/// At start, data older than the schedule's period (or none) is refreshed at once, and
/// starting replicas enqueue that refresh once.
async fn a_start_refreshes_data_older_than_the_period(store: Store) {
    use conveyor_web::app::App;
    conveyor_repostats::migrate(&store).await.unwrap();
    let app = conveyor_repostats::Repostats {
        refresh: "*/10 * * * *".to_owned(),
        ..conveyor_repostats::Repostats::default()
    };
    app.prepare(&store).await.unwrap();
    app.prepare(&store).await.unwrap();
    let refreshes = store
        .list(&conveyor_queue::JobFilter {
            kind: Some(conveyor_repostats::jobs::REFRESH.to_owned()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        refreshes.len(),
        1,
        "one refresh however many processes start"
    );
    let off = conveyor_repostats::Repostats::default();
    assert_eq!(off.refresh, "off");
    off.prepare(&store).await.unwrap();
}
