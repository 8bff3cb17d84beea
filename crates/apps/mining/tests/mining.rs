//! mining end to end on SQLite and on PostgreSQL (when `TEST_DATABASE_URL` is set): local
//! git repositories made in the test are cloned, listed and analysed through the engine;
//! known metrics of small files in several languages; re-processing; size caps; the list
//! indexer with back-pressure; GitHub, GitLab and Bitbucket fakes with throttling; API keys;
//! the live stream; bad parameters.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use conveyor_mining::{Mining, Settings};
use conveyor_queue::testing::eventually;
use conveyor_queue::{QueueConfig, Registry, Store, Worker, WorkerConfig};
use conveyor_web::{AppState, WebSettings};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

conveyor_queue::on_both_backends!(
    store:
    a_local_repository_is_analyzed_with_known_metrics,
    reprocessing_replaces_the_old_results,
    a_file_over_the_size_cap_fails_alone,
    a_file_past_its_time_limit_fails_alone,
    a_cancelled_analysis_takes_no_more_files,
    the_list_indexer_feeds_repositories_under_back_pressure,
    indexer_settings_are_checked_and_changed_at_run_time,
    hosts_are_enumerated_and_throttling_pauses_until_reset,
    api_keys_are_checked_and_throttled,
    the_event_stream_reports_activity,
    bad_parameters_are_refused_naming_them,
    the_source_policy_refuses_urls_naming_the_rule,
    internal_tasks_touch_only_their_own_clone,
    the_data_set_comes_out_as_ndjson_and_csv,
    results_are_recorded_a_statement_a_chunk,
);

const WAIT: Duration = Duration::from_secs(60);

struct Setup {
    app: Router,
    store: Store,
    dir: PathBuf,
    downloads: PathBuf,
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

fn fresh_dir() -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("conveyor-mining-test-{n:x}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn setup(store: &Store, adjust: impl FnOnce(&mut Settings), require_key: bool) -> Setup {
    setup_with(store, adjust, |_| {}, require_key).await
}

async fn setup_with(
    store: &Store,
    adjust: impl FnOnce(&mut Settings),
    change: impl FnOnce(&mut Mining),
    require_key: bool,
) -> Setup {
    let dir = fresh_dir();
    let downloads = dir.join("downloads");
    let mut settings = Settings {
        downloads: downloads.clone(),
        // The tests clone repositories made on this machine.
        sources: conveyor_mining::SourcePolicy::TRUSTING,
        ..Settings::default()
    };
    adjust(&mut settings);
    conveyor_mining::migrate(store).await.unwrap();
    let mut mining = Mining::new(settings).unwrap();
    change(&mut mining);
    conveyor_mining::ensure_indexers(store, &mining)
        .await
        .unwrap();
    let mut registry = Registry::new();
    conveyor_mining::register(&mut registry, mining.clone());
    let state = AppState::new(store.clone(), registry.clone(), WebSettings::default());
    let gate = conveyor_mining::key::gate_over(
        store.clone(),
        require_key,
        conveyor_web::auth::Auth::open(),
    );
    let app = conveyor_web::router(state, conveyor_mining::router(mining, gate), true);
    let config = WorkerConfig {
        queues: vec![
            QueueConfig {
                name: conveyor_mining::QUEUE.into(),
                concurrency: 2,
            },
            QueueConfig {
                name: conveyor_mining::FETCH_QUEUE.into(),
                concurrency: 2,
            },
        ],
        lease: Duration::from_secs(2),
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
        store: store.clone(),
        dir,
        downloads,
        stop,
        worker: handle,
    }
}

async fn call_with(
    app: &Router,
    method: Method,
    uri: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value, HeaderMap) {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
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
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    )
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let (status, value, _) = call_with(app, method, uri, body, &[]).await;
    (status, value)
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A repository with `files`, committed in one commit with `message`.
fn repository(at: &Path, files: &[(&str, &str)], message: &str) -> PathBuf {
    std::fs::create_dir_all(at).unwrap();
    if !at.join(".git").exists() {
        git(at, &["init", "-q", "-b", "main"]);
    }
    commit(at, files, message);
    at.to_path_buf()
}

fn commit(at: &Path, files: &[(&str, &str)], message: &str) {
    for (path, text) in files {
        let path = at.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(at, &["add", "-A"]);
    git(at, &["commit", "-q", "--allow-empty", "-m", message]);
}

const LIB_RS: &str = "// Adds numbers.
pub fn add(a: i32, b: i32) -> i32 {
    a + b
}

pub fn sign(x: i32) -> i32 {
    if x > 0 {
        1
    } else if x < 0 {
        -1
    } else {
        0
    }
}
";

const APP_PY: &str = "# Greets.
def greet(name):
    if name:
        return \"hi \" + name
    return \"hi\"
";

const MAIN_C: &str = "#include <stdio.h>

/* entry */
int main(void) {
    for (int i = 0; i < 3; i++) {
        printf(\"%d\\n\", i);
    }
    return 0;
}
";

fn sample(at: &Path) -> PathBuf {
    let repo = repository(
        at,
        &[
            ("README.md", "# Sample\n\nText.\n"),
            ("logo.png", "\u{89}PNG"),
        ],
        "Add a readme",
    );
    commit(
        &repo,
        &[
            ("src/lib.rs", LIB_RS),
            ("app.py", APP_PY),
            ("c/main.c", MAIN_C),
        ],
        "fix: sign of zero",
    );
    repo
}

async fn add_repo(app: &Router, url: &str) -> i64 {
    let (status, body) = call(
        app,
        Method::POST,
        "/api/mining/repositories",
        Some(json!({"url": url})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

async fn wait_ended(app: &Router, id: i64) -> Value {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, repo) = call(
            app,
            Method::GET,
            &format!("/api/mining/repositories/{id}"),
            None,
        )
        .await;
        if matches!(repo["state"].as_str(), Some("analyzed" | "failed")) {
            return repo;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "repository {id} did not end: {repo}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn files_of(app: &Router, id: i64) -> Vec<Value> {
    let (status, page) = call(
        app,
        Method::GET,
        &format!("/api/mining/files?repository={id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["files"].as_array().unwrap().clone()
}

fn by_path<'a>(files: &'a [Value], path: &str) -> &'a Value {
    files
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("no {path} in {files:?}"))
}

async fn a_local_repository_is_analyzed_with_known_metrics(store: Store) {
    let setup = setup(&store, |_| {}, false).await;
    let app = &setup.app;
    let repo_dir = sample(&setup.dir.join("sample"));
    let id = add_repo(app, repo_dir.to_str().unwrap()).await;
    let repo = wait_ended(app, id).await;
    assert_eq!(repo["state"], "analyzed", "{repo}");
    assert_eq!(repo["head_commit"], git(&repo_dir, &["rev-parse", "HEAD"]));
    assert_eq!(repo["files_listed"], 5);
    assert_eq!(repo["files_total"], 4, "the image has no analyzer");
    assert_eq!(repo["commits"]["fix"]["count"], 1, "{repo}");
    assert_eq!(repo["commits"]["feature"]["count"], 1, "{repo}");

    let files = files_of(app, id).await;
    assert_eq!(files.len(), 4);
    assert!(files.iter().all(|f| f["state"] == "analyzed"), "{files:?}");
    let lib = by_path(&files, "src/lib.rs");
    assert_eq!(
        (lib["language"].as_str(), lib["code"].as_i64()),
        (Some("Rust"), Some(12))
    );
    assert_eq!(
        (lib["comments"].as_i64(), lib["blanks"].as_i64()),
        (Some(1), Some(1))
    );
    assert_eq!(lib["functions"], 2.0);
    let py = by_path(&files, "app.py");
    assert_eq!(
        (py["code"].as_i64(), py["comments"].as_i64()),
        (Some(4), Some(1))
    );
    let c = by_path(&files, "c/main.c");
    assert_eq!(
        (c["language"].as_str(), c["code"].as_i64()),
        (Some("C"), Some(7))
    );
    let readme = by_path(&files, "README.md");
    assert_eq!(readme["language"], "Markdown");
    assert!(
        readme["sloc"].is_null(),
        "no grammar for Markdown: tokei only"
    );

    // Per function, from the tree-sitter analyzer's report.
    let (_, detail) = call(
        app,
        Method::GET,
        &format!("/api/mining/files/{}", lib["id"]),
        None,
    )
    .await;
    let functions = detail["reports"]["tree-sitter"]["functions"]
        .as_array()
        .unwrap();
    let named = |name: &str| {
        functions
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(
        (
            named("add")["cyclomatic"].clone(),
            named("add")["nargs"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(named("sign")["cyclomatic"], 3);
    let report = &detail["reports"]["tree-sitter"];
    assert!(
        report["halstead"]["volume"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    let mi = report["mi"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&mi), "{mi}");
    assert_eq!(report["loc"]["ploc"], 12);
    assert!(
        detail["reports"]["tokei"].is_null(),
        "one pass: the tree counts lines"
    );
    let (_, detail) = call(
        app,
        Method::GET,
        &format!("/api/mining/files/{}", py["id"]),
        None,
    )
    .await;
    let greet = &detail["reports"]["tree-sitter"]["functions"][0];
    assert_eq!(
        (greet["name"].as_str(), greet["cyclomatic"].as_u64()),
        (Some("greet"), Some(2))
    );
    assert_eq!(
        (greet["nargs"].as_u64(), greet["nexits"].as_u64()),
        (Some(1), Some(2))
    );
    let (_, detail) = call(
        app,
        Method::GET,
        &format!("/api/mining/files/{}", c["id"]),
        None,
    )
    .await;
    assert_eq!(
        detail["reports"]["tree-sitter"]["functions"][0]["cyclomatic"],
        2
    );

    // Aggregates, filters, and the clone is gone.
    let rust = repo["languages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["language"] == "Rust")
        .unwrap();
    assert_eq!(
        (rust["files"].as_i64(), rust["code"].as_i64()),
        (Some(1), Some(12))
    );
    let (_, all) = call(app, Method::GET, "/api/mining/languages", None).await;
    assert_eq!(all["languages"].as_array().unwrap().len(), 4);
    let (_, page) = call(
        app,
        Method::GET,
        "/api/mining/files?language=rust&analyzed=true",
        None,
    )
    .await;
    assert_eq!(page["files"].as_array().unwrap().len(), 1);
    let (_, page) = call(app, Method::GET, "/api/mining/files?failed=true", None).await;
    assert!(page["files"].as_array().unwrap().is_empty());
    let (_, page) = call(
        app,
        Method::GET,
        "/api/mining/repositories?language=PYTHON&analyzed=true",
        None,
    )
    .await;
    assert_eq!(page["repositories"][0]["id"], id);
    let (_, page) = call(
        app,
        Method::GET,
        "/api/mining/repositories?language=Go",
        None,
    )
    .await;
    assert!(page["repositories"].as_array().unwrap().is_empty());
    let (_, progress) = call(
        app,
        Method::GET,
        "/api/mining/progress?minutes=5&bucket_seconds=60",
        None,
    )
    .await;
    assert_eq!(progress["repositories"]["analyzed"], 1);
    let timeline = progress["timeline"].as_array().unwrap();
    let sum = |field: &str| {
        timeline
            .iter()
            .map(|b| b[field].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(
        (
            sum("discovered"),
            sum("fetched"),
            sum("analyzed"),
            sum("files")
        ),
        (1, 1, 1, 4)
    );
    eventually("the clone is removed", WAIT, || async {
        std::fs::read_dir(&setup.downloads)
            .map(|d| d.count() == 0)
            .unwrap_or(true)
    })
    .await;
    setup.finish().await;
}

async fn reprocessing_replaces_the_old_results(store: Store) {
    let setup = setup(&store, |_| {}, false).await;
    let app = &setup.app;
    let repo_dir = sample(&setup.dir.join("sample"));
    let id = add_repo(app, repo_dir.to_str().unwrap()).await;
    wait_ended(app, id).await;
    let before = files_of(app, id).await;
    std::fs::remove_file(repo_dir.join("app.py")).unwrap();
    commit(
        &repo_dir,
        &[("src/extra.rs", "fn extra() {}\n")],
        "Add extra",
    );

    let (status, _) = call(
        app,
        Method::POST,
        &format!("/api/mining/repositories/{id}/reprocess"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // Wait for the new run's HEAD.
    let head = git(&repo_dir, &["rev-parse", "HEAD"]);
    let repo = loop {
        let repo = wait_ended(app, id).await;
        if repo["head_commit"] == head.as_str() {
            break repo;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(repo["files_total"], 4);
    let after = files_of(app, id).await;
    let paths: Vec<&str> = after.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 4);
    assert!(
        paths.contains(&"src/extra.rs") && !paths.contains(&"app.py"),
        "{paths:?}"
    );
    assert!(after.iter().all(|f| f["state"] == "analyzed"));
    let old_ids: Vec<&Value> = before.iter().map(|f| &f["id"]).collect();
    assert!(
        after.iter().all(|f| !old_ids.contains(&&f["id"])),
        "old rows are replaced"
    );
    assert_eq!(repo["commits"]["feature"]["count"], 2, "{repo}");

    // Re-processing while it runs is refused; an unknown one is 404.
    let (status, _) = call(
        app,
        Method::POST,
        "/api/mining/repositories/999999/reprocess",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    setup.finish().await;
}

async fn a_file_over_the_size_cap_fails_alone(store: Store) {
    let setup = setup(&store, |s| s.file_max_bytes = 200, false).await;
    let app = &setup.app;
    let big = "x = 1\n".repeat(100);
    let repo_dir = repository(
        &setup.dir.join("big"),
        &[("big.py", &big), ("small.py", "y = 2\n")],
        "Add files",
    );
    let id = add_repo(app, repo_dir.to_str().unwrap()).await;
    let repo = wait_ended(app, id).await;
    assert_eq!(repo["state"], "analyzed");
    let files = files_of(app, id).await;
    let big = by_path(&files, "big.py");
    assert_eq!(big["state"], "failed");
    assert!(
        big["error"].as_str().unwrap().contains("200-byte limit"),
        "{big}"
    );
    assert_eq!(by_path(&files, "small.py")["state"], "analyzed");
    let (_, page) = call(app, Method::GET, "/api/mining/files?failed=true", None).await;
    assert_eq!(page["files"].as_array().unwrap().len(), 1);

    // A clone that fails (no such repository) fails the repository with git's words.
    let missing = setup.dir.join("nowhere");
    let id = add_repo(app, missing.to_str().unwrap()).await;
    let repo = wait_ended(app, id).await;
    assert_eq!(repo["state"], "failed");
    assert!(repo["error"].as_str().unwrap().contains("clone"), "{repo}");
    setup.finish().await;
}

/// Takes 3 s over files whose name holds "slow", no time over others; counts the slow
/// files it began.
struct Sleepy(Arc<AtomicUsize>);

impl conveyor_mining::analyzer::Analyzer for Sleepy {
    fn name(&self) -> &'static str {
        "sleepy"
    }
    fn serves(&self, language: &str) -> bool {
        language == "Python"
    }
    fn analyze(
        &self,
        source: &conveyor_mining::analyzer::Source<'_>,
    ) -> Result<conveyor_mining::analyzer::Output, String> {
        if source.path.contains("slow") {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_secs(3));
        }
        Ok(conveyor_mining::analyzer::Output {
            report: json!({ "bytes": source.bytes.len() }),
            ..Default::default()
        })
    }
}

async fn a_file_past_its_time_limit_fails_alone(store: Store) {
    // One thread, one task holding every file, 400 ms a file: the slow file overruns, a
    // replacement thread takes the rest, and the files queued behind the slow one are not
    // charged for their wait.
    let adjust = |s: &mut Settings| {
        s.file_timeout = Duration::from_millis(400);
        s.analysis_threads = 1;
        s.files_per_task = 64;
    };
    let change = |m: &mut Mining| {
        let sleepy = Sleepy(Arc::new(AtomicUsize::new(0)));
        m.analyzers = conveyor_mining::analyzer::Analyzers::new(vec![Arc::new(sleepy)]);
    };
    let setup = setup_with(&store, adjust, change, false).await;
    let app = &setup.app;
    let mut files: Vec<(String, String)> = (0..12)
        .map(|i| (format!("f{i:02}.py"), format!("x = {i}\n")))
        .collect();
    files.push(("slow.py".into(), "y = 2\n".repeat(50)));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo_dir = repository(&setup.dir.join("slow"), &files, "Add files");
    let id = add_repo(app, repo_dir.to_str().unwrap()).await;
    let repo = wait_ended(app, id).await;
    assert_eq!(repo["state"], "analyzed", "{repo}");
    let files = files_of(app, id).await;
    assert_eq!(files.len(), 13);
    let slow = by_path(&files, "slow.py");
    assert_eq!(slow["state"], "failed", "{slow}");
    assert!(
        slow["error"]
            .as_str()
            .unwrap()
            .contains("took longer than 400ms"),
        "{slow}"
    );
    for file in files.iter().filter(|f| f["path"] != "slow.py") {
        assert_eq!(file["state"], "analyzed", "{file}");
        let uri = format!("/api/mining/files/{}", file["id"]);
        let (_, detail) = call(app, Method::GET, &uri, None).await;
        assert_eq!(
            detail["reports"]["sleepy"]["bytes"], file["bytes"],
            "{detail}"
        );
    }
    setup.finish().await;
}

async fn a_cancelled_analysis_takes_no_more_files(store: Store) {
    // One thread, one task of four slow files: cancelled while the first runs, the task
    // ends and the files queued behind it are never begun.
    let begun = Arc::new(AtomicUsize::new(0));
    let adjust = |s: &mut Settings| {
        s.file_timeout = Duration::from_secs(60);
        s.analysis_threads = 1;
    };
    let change = {
        let begun = begun.clone();
        move |m: &mut Mining| {
            let sleepy = Sleepy(begun);
            m.analyzers = conveyor_mining::analyzer::Analyzers::new(vec![Arc::new(sleepy)]);
        }
    };
    let setup = setup_with(&store, adjust, change, false).await;
    let app = &setup.app;
    let files: Vec<(String, String)> = (0..4)
        .map(|i| (format!("slow{i}.py"), format!("x = {i}\n")))
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let repo_dir = repository(&setup.dir.join("cancelled"), &files, "Add files");
    add_repo(app, repo_dir.to_str().unwrap()).await;
    eventually("the first slow file begins", WAIT, || async {
        begun.load(Ordering::SeqCst) == 1
    })
    .await;
    let (_, page) = call(
        app,
        Method::GET,
        "/api/jobs?kind=mining.analyze&state=running",
        None,
    )
    .await;
    let id = page["jobs"][0]["id"].as_i64().expect("the running task");
    let (status, _) = call(app, Method::POST, &format!("/api/jobs/{id}/cancel"), None).await;
    assert!(status.is_success(), "{status}");
    eventually("the task ends cancelled", WAIT, || async {
        let (_, job) = call(app, Method::GET, &format!("/api/jobs/{id}"), None).await;
        job["state"] == "cancelled"
    })
    .await;
    // The first file's 3 s end, and the thread finds nothing more to take.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        begun.load(Ordering::SeqCst),
        1,
        "files begun after the cancel"
    );
    setup.finish().await;
}

async fn the_list_indexer_feeds_repositories_under_back_pressure(store: Store) {
    let setup = setup(&store, |s| s.queued_max = 1, false).await;
    let app = &setup.app;
    let urls: Vec<String> = (0..3)
        .map(|i| {
            let dir = repository(
                &setup.dir.join(format!("r{i}")),
                &[("m.rs", "fn m() {}\n")],
                "Add m",
            );
            dir.to_string_lossy().into_owned()
        })
        .collect();
    let patch = json!({"enabled": true, "settings": {"urls": urls}});
    let (status, indexer) =
        call(app, Method::PATCH, "/api/mining/indexers/list", Some(patch)).await;
    assert_eq!(status, StatusCode::OK, "{indexer}");
    let (status, _) = call(app, Method::POST, "/api/mining/indexers/list/run", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // With one download queued at a time, never more than one waits.
    let mut most_queued = 0;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, progress) = call(app, Method::GET, "/api/mining/progress", None).await;
        most_queued = most_queued.max(progress["repositories"]["queued"].as_i64().unwrap_or(0));
        if progress["repositories"]["analyzed"] == 3 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not analysed: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(most_queued <= 1, "{most_queued} queued at once");
    let (_, indexer) = call(app, Method::GET, "/api/mining/indexers/list", None).await;
    assert_eq!(indexer["cursor"]["position"], 3);
    assert_eq!(indexer["discovered"], 3);
    let (_, page) = call(
        app,
        Method::GET,
        "/api/mining/repositories?indexer=list&limit=2",
        None,
    )
    .await;
    assert_eq!(page["repositories"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_i64().unwrap();
    let (_, rest) = call(
        app,
        Method::GET,
        &format!("/api/mining/repositories?indexer=list&limit=2&cursor={cursor}"),
        None,
    )
    .await;
    assert_eq!(rest["repositories"].as_array().unwrap().len(), 1);
    setup.finish().await;
}

async fn indexer_settings_are_checked_and_changed_at_run_time(store: Store) {
    let setup = setup(&store, |_| {}, false).await;
    let app = &setup.app;
    let (_, list) = call(app, Method::GET, "/api/mining/indexers", None).await;
    let names: Vec<&str> = list["indexers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["bitbucket", "github", "gitlab", "list"]);
    let (status, body) = call(
        app,
        Method::PATCH,
        "/api/mining/indexers/gitlab",
        Some(json!({"cursor": {"id_after": "x"}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["detail"].as_str().unwrap().contains("cursor"),
        "{body}"
    );
    let (status, _) = call(
        app,
        Method::PATCH,
        "/api/mining/indexers/gitlab",
        Some(json!({"settings": {"base": 1}})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    for bad in ["gitlab.com", "ftp://gitlab.com", "https://", "not a url"] {
        let (status, body) = call(
            app,
            Method::PATCH,
            "/api/mining/indexers/gitlab",
            Some(json!({"settings": {"base_url": bad}})),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains("base_url must be"),
            "{body}"
        );
    }
    let (status, _) = call(
        app,
        Method::PATCH,
        "/api/mining/indexers/nope",
        Some(json!({"enabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = call(
        app,
        Method::PATCH,
        "/api/mining/indexers/gitlab",
        Some(json!({"cursor": {"id_after": 77}, "enabled": true})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            body["cursor"]["id_after"].as_i64(),
            body["enabled"].as_bool()
        ),
        (Some(77), Some(true))
    );
    assert_eq!(
        body["settings"]["base_url"], "https://gitlab.com",
        "settings kept"
    );
    setup.finish().await;
}

/// A fake of the three hosts: two pages of two each, every repository a local git one;
/// GitLab's first page says its budget is spent (reset in a second); GitHub's second
/// request answers 429 with Retry-After once.
struct Fake {
    repos: Vec<String>,
    github_calls: AtomicUsize,
}

fn fake_router(fake: Arc<Fake>) -> axum::Router {
    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    use std::collections::HashMap;
    async fn github(
        State(f): State<Arc<Fake>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        if f.github_calls.fetch_add(1, Ordering::SeqCst) == 1 {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "1")],
                "slow down",
            )
                .into_response();
        }
        let since: usize = q["since"].parse().unwrap();
        let items: Vec<Value> = (since + 1..=(since + 2).min(4))
            .map(|id| json!({"id": id, "full_name": format!("o/r{id}"), "html_url": f.repos[4 + id - 1].trim_end_matches(".git"), "fork": false}))
            .collect();
        axum::Json(items).into_response()
    }
    async fn gitlab(
        State(f): State<Arc<Fake>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        assert_eq!(q["pagination"], "keyset");
        let after: usize = q["id_after"].parse().unwrap();
        let items: Vec<Value> = (after + 1..=(after + 2).min(4))
            .map(|id| json!({"id": id, "path_with_namespace": format!("g/r{id}"), "http_url_to_repo": f.repos[id - 1]}))
            .collect();
        let reset = (conveyor_queue::clock::now_ms() / 1000 + 1).to_string();
        let remaining = if after == 0 { "0" } else { "100" };
        (
            [
                ("ratelimit-remaining", remaining.to_owned()),
                ("ratelimit-reset", reset),
            ],
            axum::Json(items),
        )
            .into_response()
    }
    async fn bitbucket(
        State(f): State<Arc<Fake>>,
        Query(q): Query<HashMap<String, String>>,
    ) -> axum::response::Response {
        let after = &q["after"];
        let (ids, next) = if after.starts_with("2008") {
            (vec![1, 2], true)
        } else if after == "2020-01-02T00:00:00Z" {
            (vec![3, 4], false)
        } else {
            (vec![], false)
        };
        let values: Vec<Value> = ids
            .iter()
            .map(|id| json!({"full_name": format!("b/r{id}"), "created_on": format!("2020-01-0{id}T00:00:00Z"),
                "links": {"clone": [{"name": "ssh", "href": "git@x:y"}, {"name": "https", "href": f.repos[8 + id - 1]}]}}))
            .collect();
        let mut body = json!({"values": values});
        if next {
            body["next"] = json!("https://example/next");
        }
        axum::Json(body).into_response()
    }
    axum::Router::new()
        .route("/repositories", axum::routing::get(github))
        .route("/api/v4/projects", axum::routing::get(gitlab))
        .route("/2.0/repositories", axum::routing::get(bitbucket))
        .with_state(fake)
}

/// Runs an indexer now, waits for its job to end, and returns the indexer.
async fn run_indexer(app: &Router, store: &Store, name: &str) -> Value {
    let (status, body) = call(
        app,
        Method::POST,
        &format!("/api/mining/indexers/{name}/run"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = body["job"].as_i64().unwrap();
    conveyor_queue::testing::wait_for_job(store, job, WAIT, |j| j.state.is_final()).await;
    call(
        app,
        Method::GET,
        &format!("/api/mining/indexers/{name}"),
        None,
    )
    .await
    .1
}

async fn hosts_are_enumerated_and_throttling_pauses_until_reset(store: Store) {
    let setup = setup(&store, |s| s.index_batches = 5, false).await;
    let app = &setup.app;
    // Twelve repositories, four per host, in directories named as bare repositories are.
    let repos: Vec<String> = (1..=12)
        .map(|i| {
            let dir = repository(
                &setup.dir.join(format!("h{i}.git")),
                &[("m.py", "x = 1\n")],
                "Add m",
            );
            format!("file://{}", dir.display())
        })
        .collect();
    let fake = Arc::new(Fake {
        repos,
        github_calls: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, fake_router(fake)).await.unwrap() });
    for name in ["github", "gitlab", "bitbucket"] {
        let patch = json!({"settings": {"base_url": base}});
        let (status, body) = call(
            app,
            Method::PATCH,
            &format!("/api/mining/indexers/{name}"),
            Some(patch),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let run = |name: &'static str| run_indexer(app, &setup.store, name);

    // GitLab: the first page spends the budget, so the indexer pauses until the reset.
    let gitlab = run("gitlab").await;
    assert_eq!(gitlab["cursor"]["id_after"], 2, "{gitlab}");
    let paused = gitlab["paused_until"].as_i64().expect("paused");
    assert!(paused > conveyor_queue::clock::now_ms() - 1000, "{gitlab}");
    tokio::time::sleep(Duration::from_millis(
        (paused - conveyor_queue::clock::now_ms()).max(0) as u64 + 50,
    ))
    .await;
    let gitlab = run("gitlab").await;
    assert_eq!(
        (
            gitlab["cursor"]["id_after"].as_i64(),
            gitlab["discovered"].as_i64()
        ),
        (Some(4), Some(4)),
        "{gitlab}"
    );
    assert!(gitlab["paused_until"].is_null(), "{gitlab}");

    // GitHub: a 429 with Retry-After pauses it with the cursor kept; the next run goes on.
    let github = run("github").await;
    assert_eq!(github["cursor"]["since"], 2, "{github}");
    assert!(
        github["last_error"].as_str().unwrap().contains("429"),
        "{github}"
    );
    assert!(github["paused_until"].as_i64().is_some());
    let github = run("github").await;
    assert_eq!(
        (
            github["cursor"]["since"].as_i64(),
            github["discovered"].as_i64()
        ),
        (Some(4), Some(4)),
        "{github}"
    );

    // Bitbucket: date cursor, `next` followed to the end.
    let bitbucket = run("bitbucket").await;
    assert_eq!(
        bitbucket["cursor"]["after"], "2020-01-04T00:00:00Z",
        "{bitbucket}"
    );
    assert_eq!(bitbucket["discovered"], 4);

    // Twelve repositories found, each analysed once; every one has its file.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, progress) = call(app, Method::GET, "/api/mining/progress", None).await;
        if progress["repositories"]["analyzed"] == 12 {
            assert_eq!(progress["files"]["analyzed"], 12, "{progress}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{progress}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    setup.finish().await;
}

async fn api_keys_are_checked_and_throttled(store: Store) {
    let setup = setup(&store, |_| {}, true).await;
    let app = &setup.app;
    let (status, body, _) = call_with(app, Method::GET, "/api/mining/languages", None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["detail"].as_str().unwrap().contains("X-API-Key"));
    let (status, _, _) = call_with(
        app,
        Method::GET,
        "/api/mining/languages",
        None,
        &[("x-api-key", "cm_nope")],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (_, reader) = conveyor_mining::key::create(&store, "research group", 3, false)
        .await
        .unwrap();
    let (_, admin) = conveyor_mining::key::create(&store, "operator", 100, true)
        .await
        .unwrap();
    let auth = format!("Bearer {reader}");
    for _ in 0..3 {
        let (status, _, _) = call_with(
            app,
            Method::GET,
            "/api/mining/languages",
            None,
            &[("authorization", &auth)],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body, headers) = call_with(
        app,
        Method::GET,
        "/api/mining/languages",
        None,
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("3 requests a minute")
    );

    let patch = json!({"enabled": false});
    let (status, _, _) = call_with(
        app,
        Method::PATCH,
        "/api/mining/indexers/list",
        Some(patch.clone()),
        &[("x-api-key", &admin)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, writer_less, _) = conveyor_mining::key::create(&store, "reader 2", 100, false)
        .await
        .map(|(i, k)| (i, k, ()))
        .unwrap();
    let (status, _, _) = call_with(
        app,
        Method::PATCH,
        "/api/mining/indexers/list",
        Some(patch),
        &[("x-api-key", &writer_less)],
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The job API beside it is not behind mining's keys.
    let (status, _, _) = call_with(app, Method::GET, "/api/queues", None, &[]).await;
    assert_eq!(status, StatusCode::OK);
    setup.finish().await;
}

async fn the_event_stream_reports_activity(store: Store) {
    let setup = setup(&store, |_| {}, false).await;
    let app = &setup.app;
    let request = Request::get("/api/mining/events")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let repo_dir = sample(&setup.dir.join("sample"));
    let id = add_repo(app, repo_dir.to_str().unwrap()).await;

    let mut text = String::new();
    let (mut saw_file, mut saw_analyzed) = (false, false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(saw_file && saw_analyzed) {
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
        saw_file = text.contains("event: file") && text.contains("\"path\":\"src/lib.rs\"");
        saw_analyzed = text.lines().any(|l| {
            l.starts_with("data:")
                && l.contains(&format!("{{\"id\":{id},\"url\""))
                && l.contains("\"state\":\"analyzed\"")
        });
    }
    // Each change once: the analysed state is not repeated by the overlap re-reads, which
    // look 2 s back every 500 ms: read what the stream sends for 2.5 s more.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while let Ok(Some(chunk)) = tokio::time::timeout_at(quiet_until, body.next()).await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    // Repository rows, not files (whose ids may be the same number): they carry a url.
    let analyzed = text
        .lines()
        .filter(|l| {
            l.starts_with("data:")
                && l.contains(&format!("{{\"id\":{id},\"url\""))
                && l.contains("\"state\":\"analyzed\"")
        })
        .count();
    assert_eq!(
        analyzed, 1,
        "the analysed state was sent {analyzed} times:\n{text}"
    );
    setup.finish().await;
}

async fn bad_parameters_are_refused_naming_them(store: Store) {
    let setup = setup(&store, |_| {}, false).await;
    let app = &setup.app;
    for (uri, named) in [
        ("/api/mining/repositories?state=bogus", "state"),
        ("/api/mining/repositories?limit=0", "limit"),
        ("/api/mining/repositories?limit=101", "limit"),
        ("/api/mining/repositories?colour=red", "colour"),
        ("/api/mining/repositories?analyzed=maybe", "analyzed"),
        (
            "/api/mining/repositories?state=failed&analyzed=true",
            "analyzed",
        ),
        ("/api/mining/files?state=done", "state"),
        ("/api/mining/files?repository=abc", "repository"),
        ("/api/mining/files?analyzed=true&failed=true", "failed"),
        ("/api/mining/progress?minutes=0", "minutes"),
    ] {
        let (status, body) = call(app, Method::GET, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert!(
            body["detail"].as_str().unwrap_or("").contains(named),
            "{uri}: {body}"
        );
    }
    let (status, _) = call(
        app,
        Method::POST,
        "/api/mining/repositories",
        Some(json!({"url": ""})),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = call(
        app,
        Method::POST,
        "/api/mining/repositories",
        Some(json!({"link": "x"})),
    )
    .await;
    assert!(status.is_client_error());
    let (_, page) = call(app, Method::GET, "/api/mining/repositories", None).await;
    assert!(
        page["repositories"].as_array().unwrap().is_empty(),
        "nothing stored"
    );
    let (status, _) = call(app, Method::GET, "/api/mining/files/12345", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    setup.finish().await;
}

async fn the_source_policy_refuses_urls_naming_the_rule(store: Store) {
    // As a server is by default: network URLs to public hosts only.
    let setup = setup(
        &store,
        |s| s.sources = conveyor_mining::SourcePolicy::default(),
        false,
    )
    .await;
    let local = setup.dir.join("repo");
    std::fs::create_dir_all(&local).unwrap();
    for (url, rule) in [
        (local.display().to_string(), "MINING_ALLOW_LOCAL"),
        ("file:///etc".to_owned(), "MINING_ALLOW_LOCAL"),
        ("--upload-pack=touch /tmp/x".to_owned(), "option"),
        ("ext::sh -c touch% /tmp/x".to_owned(), "remote helper"),
        ("ftp://example.org/x.git".to_owned(), "scheme"),
        (
            "http://169.254.169.254/latest".to_owned(),
            "MINING_ALLOW_PRIVATE",
        ),
        (
            "http://127.0.0.1:1/x.git".to_owned(),
            "MINING_ALLOW_PRIVATE",
        ),
        (
            "http://localhost:1/x.git".to_owned(),
            "MINING_ALLOW_PRIVATE",
        ),
        ("git@10.0.0.1:x.git".to_owned(), "MINING_ALLOW_PRIVATE"),
    ] {
        let (status, body) = call(
            &setup.app,
            Method::POST,
            "/api/mining/repositories",
            Some(json!({ "url": url })),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{url}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(rule),
            "{url}: {body}"
        );
    }
    let (_, list) = call(&setup.app, Method::GET, "/api/mining/repositories", None).await;
    assert_eq!(list["repositories"], json!([]), "nothing stored");
    let jobs = store
        .list(&conveyor_queue::JobFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(jobs.is_empty(), "nothing queued: {jobs:?}");
    // An indexer's list passes the same checks: what it may not clone it skips.
    let (status, _) = call(
        &setup.app,
        Method::PATCH,
        "/api/mining/indexers/list",
        Some(json!({"enabled": true, "settings": {"urls": [local.display().to_string(), "ext::sh"]}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(
        &setup.app,
        Method::POST,
        "/api/mining/indexers/list/run",
        None,
    )
    .await;
    assert!(status.is_success(), "{status}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, indexer) = call(&setup.app, Method::GET, "/api/mining/indexers/list", None).await;
        if indexer["last_run_at"].is_number() {
            assert_eq!(indexer["discovered"], 0, "{indexer}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{indexer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, list) = call(&setup.app, Method::GET, "/api/mining/repositories", None).await;
    assert_eq!(list["repositories"], json!([]), "the indexer added nothing");
    setup.finish().await;
}

/// mining's tasks enqueued with hostile arguments (as only the app or a database writer
/// could): a finish removes nothing but its own clone, an analysis reads no other place and
/// clones from no other URL.
async fn internal_tasks_touch_only_their_own_clone(store: Store) {
    let setup = setup(&store, |_| {}, false).await;
    let victim = setup.dir.join("victim");
    std::fs::create_dir_all(victim.join("inner")).unwrap();
    let other = setup.downloads.join("1-1");
    std::fs::create_dir_all(&other).unwrap();
    let hostile = [
        (
            "mining.finish",
            json!({"repo": 1, "job": 2, "dir": victim.display().to_string()}),
        ),
        (
            "mining.finish",
            json!({"repo": 1, "job": 2, "dir": other.display().to_string()}),
        ),
        (
            "mining.analyze",
            json!({"repo": 1, "dir": victim.display().to_string(), "url": "https://example.org/x.git",
                   "head": "0", "files": []}),
        ),
    ];
    for (kind, args) in hostile {
        let job = store
            .enqueue(
                conveyor_queue::NewJob::new(kind, args.clone())
                    .queue(conveyor_mining::QUEUE)
                    .max_attempts(1),
            )
            .await
            .unwrap()
            .job;
        let ended = conveyor_queue::testing::wait_for_job(&store, job.id, WAIT, |j| {
            j.finished_at.is_some()
        })
        .await;
        assert_eq!(
            ended.state,
            conveyor_queue::JobState::Failed,
            "{kind} {args}: {ended:?}"
        );
        assert!(
            ended.error.as_deref().unwrap_or_default().contains("not"),
            "{ended:?}"
        );
    }
    assert!(
        victim.join("inner").is_dir(),
        "the directory outside the area is untouched"
    );
    assert!(other.is_dir(), "another run's clone is untouched");
    setup.finish().await;
}

async fn get_text(app: &Router, uri: &str) -> (StatusCode, HeaderMap, String) {
    let response = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 26)
        .await
        .unwrap();
    (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
}

/// More files than a page of the list (100) and of the export (200): every file comes out
/// once, as NDJSON and CSV, and every function at `level=function`.
async fn the_data_set_comes_out_as_ndjson_and_csv(store: Store) {
    const FILES: usize = 260;
    let setup = setup(&store, |_| {}, false).await;
    let sources: Vec<(String, String)> = (0..FILES)
        .map(|n| {
            let text = format!(
                "pub fn add_{n}(a: i32, b: i32) -> i32 {{\n    a + b\n}}\n\n\
                 pub fn sign_{n}(x: i32) -> i32 {{\n    if x > 0 {{ 1 }} else {{ 0 }}\n}}\n"
            );
            (format!("src/m{n:03}.rs"), text)
        })
        .collect();
    let mut files: Vec<(&str, &str)> = sources
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    files.push(("README.md", "# Many\n\nFiles, one, two.\n"));
    let repo = repository(&setup.dir.join("many"), &files, "many files");
    let id = add_repo(&setup.app, repo.to_str().unwrap()).await;
    assert_eq!(wait_ended(&setup.app, id).await["state"], "analyzed");

    let (status, headers, text) = get_text(
        &setup.app,
        &format!("/api/mining/export?repository={id}&language=rust"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-ndjson");
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), FILES);
    let paths: std::collections::BTreeSet<&str> =
        rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), FILES, "each file once");
    let m007 = rows.iter().find(|r| r["path"] == "src/m007.rs").unwrap();
    assert_eq!(m007["repository"], id);
    assert_eq!(m007["state"], "analyzed");
    assert_eq!(m007["functions"], 2.0);
    // Summed over its two functions (1 and 2); no decision outside them.
    assert_eq!(m007["cyclomatic"], 3.0, "{m007}");

    let (_, _, all) = get_text(&setup.app, &format!("/api/mining/export?repository={id}")).await;
    assert_eq!(all.lines().count(), FILES + 1, "the README too");

    let (status, headers, csv) = get_text(
        &setup.app,
        &format!("/api/mining/export?repository={id}&language=Rust&format=csv"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let mut lines = csv.lines();
    let header_line = lines.next().unwrap();
    assert!(
        header_line.starts_with("id,repository,path,language,"),
        "{header_line}"
    );
    assert_eq!(lines.count(), FILES);

    let (_, _, functions) = get_text(
        &setup.app,
        &format!("/api/mining/export?repository={id}&language=Rust&level=function"),
    )
    .await;
    let functions: Vec<Value> = functions
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(functions.len(), 2 * FILES);
    let sign = functions
        .iter()
        .find(|f| f["name"] == "sign_42")
        .expect("sign_42 is listed");
    assert_eq!(sign["path"], "src/m042.rs");
    assert_eq!(sign["cyclomatic"], 2);
    assert_eq!(sign["nargs"], 1);

    for bad in [
        "format=xml",
        "level=repo",
        "state=gone",
        "analyzed=true&failed=true",
    ] {
        let (status, _, text) = get_text(&setup.app, &format!("/api/mining/export?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {text}");
    }
    setup.finish().await;
}

/// `record_files` writes many files a statement: more files than one statement takes, some
/// failed (no metrics), some analysed with and without each column, each landing on its own
/// row; a result for an id that is gone lands nowhere.
async fn results_are_recorded_a_statement_a_chunk(store: Store) {
    use conveyor_mining::analyzer::Summary;
    use conveyor_mining::db;
    conveyor_mining::migrate(&store).await.unwrap();
    let count = db::RECORD_ROWS * 2 + 17;
    let mut tx = store.begin().await.unwrap();
    let found = conveyor_mining::indexer::Found {
        url: "https://example.com/a/b".into(),
        name: "a/b".into(),
    };
    let (repo, _) = db::insert_repo(&mut tx, &found, "test", 1).await.unwrap();
    let files: Vec<db::NewFile> = (0..count)
        .map(|i| db::NewFile {
            path: format!("src/f{i:04}.rs"),
            language: "Rust".into(),
            bytes: i as i64,
        })
        .collect();
    let ids = db::replace_files(&mut tx, repo, &files, &[], 1)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut results: Vec<db::FileResult> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            if i % 7 == 3 {
                db::FileResult {
                    id: *id,
                    error: Some(format!("file {i} failed")),
                    ..Default::default()
                }
            } else {
                db::FileResult {
                    id: *id,
                    // An analyzer's error beside another's metrics: analysed, with the error.
                    error: (i % 11 == 5).then(|| "tokei: odd".to_owned()),
                    summary: Summary {
                        code: Some(i as i64),
                        functions: Some(i as f64 / 2.0),
                        mi: i.is_multiple_of(2).then_some(50.5),
                        ..Default::default()
                    },
                    metrics: Some(format!("{{\"n\":{i},\"text\":\"a \\\"quoted\\\" é\"}}")),
                }
            }
        })
        .collect();
    results.push(db::FileResult {
        id: i64::MAX,
        error: Some("gone".into()),
        ..Default::default()
    });
    db::record_files(&store, &results, 42).await.unwrap();

    let rows = db::files(
        &store,
        &db::FileFilter {
            repo: Some(repo),
            ..Default::default()
        },
        10_000,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), count);
    for row in rows {
        let i: usize = row.path[5..9].parse().unwrap();
        if i % 7 == 3 {
            assert_eq!(row.state, db::FileState::Failed, "{row:?}");
            assert_eq!(
                row.error.as_deref(),
                Some(format!("file {i} failed").as_str())
            );
            assert_eq!(
                (row.code, row.functions, row.metrics.as_deref()),
                (None, None, None)
            );
        } else {
            assert_eq!(row.state, db::FileState::Analyzed, "{row:?}");
            assert_eq!(row.error.is_some(), i % 11 == 5, "{row:?}");
            assert_eq!(row.code, Some(i as i64));
            assert_eq!(row.functions, Some(i as f64 / 2.0));
            assert_eq!(row.mi, i.is_multiple_of(2).then_some(50.5));
            assert_eq!(row.sloc, None);
            let metrics: Value = serde_json::from_str(row.metrics.as_deref().unwrap()).unwrap();
            assert_eq!(metrics, json!({"n": i, "text": "a \"quoted\" é"}));
        }
        assert_eq!((row.bytes, row.analyzed_at), (i as i64, Some(42)));
    }
}
