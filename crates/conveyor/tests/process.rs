//! Crash and shutdown behaviour with real `conveyor work` processes, on SQLite and on
//! PostgreSQL (when `TEST_DATABASE_URL` is set).

mod common;

use std::process::Stdio;
use std::time::Duration;

use conveyor_queue::clock::now_ms;
use conveyor_queue::testing::{TestDb, enqueue_id, wait_for_job, wait_for_state};
use conveyor_queue::{JobState, NewJob, Store};
use serde_json::json;
use tokio::process::{Child, Command};

conveyor_queue::on_both_backends!(
    db:
    a_killed_workers_job_runs_again_after_one_lease,
    a_job_longer_than_the_lease_runs_once_across_processes,
    sigterm_lets_running_jobs_finish_and_hands_the_rest_back,
    a_count_whose_worker_is_killed_is_rescued_and_completes,
    an_average_job_whose_worker_is_killed_completes_exactly,
    a_mining_run_whose_worker_is_killed_resumes_and_analyses_every_file_once,
    every_job_answered_201_survives_a_kill_of_the_server,
    a_worker_told_to_stop_finishes_its_job_and_exits,
    mining_run_then_export_writes_every_row_to_a_file,
);

const WAIT: Duration = Duration::from_secs(30);

/// `conveyor work` on the test database with a short lease and poll.
fn worker(db: &TestDb, lease: &str, grace: &str) -> Child {
    worker_with(db, lease, grace, &[])
}

/// [`worker`] with extra environment.
fn worker_with(db: &TestDb, lease: &str, grace: &str, env: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .arg("work")
        .envs(env.iter().copied())
        .env("DATABASE_URL", &db.url)
        .env("CONVEYOR_LEASE", lease)
        .env("CONVEYOR_GRACE", grace)
        .env("CONVEYOR_POLL_INTERVAL", "100ms")
        .env("CONVEYOR_CONCURRENCY", "4")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start conveyor work")
}

async fn running_on(store: &Store, id: i64) -> String {
    let job = wait_for_state(store, id, JobState::Running, WAIT).await;
    job.lease_owner.expect("a running job has an owner")
}

async fn a_killed_workers_job_runs_again_after_one_lease(db: &TestDb) {
    let store = &db.store;
    let id = enqueue_id(store, NewJob::new("sleep", json!({"ms": 3_000}))).await;
    let mut first = worker(db, "2s", "1s");
    let first_owner = running_on(store, id).await;

    first.kill().await.expect("SIGKILL the worker");
    let killed_at = now_ms();
    let mut second = worker(db, "2s", "1s");
    let job = wait_for_job(store, id, WAIT, |j| {
        j.state == JobState::Running && j.attempt == 2
    })
    .await;
    assert_ne!(job.lease_owner.as_deref(), Some(first_owner.as_str()));
    let restarted = job.started_at.unwrap() - killed_at;
    // The lease had at most 2 s left; the rescuer looks twice per lease.
    assert!(restarted <= 10_000, "re-run {restarted} ms after the kill");
    let job = wait_for_state(store, id, JobState::Completed, WAIT).await;
    assert_eq!(job.attempt, 2);
    second.kill().await.unwrap();
}

async fn a_job_longer_than_the_lease_runs_once_across_processes(db: &TestDb) {
    let store = &db.store;
    let id = enqueue_id(store, NewJob::new("sleep", json!({"ms": 3_500}))).await;
    // Two processes, each with a rescuer that would steal the job if heartbeats failed.
    let mut a = worker(db, "1s", "1s");
    let mut b = worker(db, "1s", "1s");
    let job = wait_for_state(store, id, JobState::Completed, WAIT).await;
    assert_eq!(job.attempt, 1, "ran once though it outlived three leases");
    assert!(job.error.is_none());
    a.kill().await.unwrap();
    b.kill().await.unwrap();
}

async fn sigterm_lets_running_jobs_finish_and_hands_the_rest_back(db: &TestDb) {
    let store = &db.store;
    let short = enqueue_id(store, NewJob::new("sleep", json!({"ms": 500}))).await;
    let long = enqueue_id(store, NewJob::new("sleep", json!({"ms": 600_000}))).await;
    let mut child = worker(db, "5s", "2s");
    running_on(store, short).await;
    running_on(store, long).await;

    let pid = child.id().expect("the worker runs").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(
        status.success(),
        "a drained worker exits cleanly: {status:?}"
    );

    assert_eq!(
        store.get(short).await.unwrap().unwrap().state,
        JobState::Completed
    );
    let job = store.get(long).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempt, job.lease_owner),
        (JobState::Available, 0, None)
    );
    assert!(
        store.workers(60_000).await.unwrap().is_empty(),
        "it left the registry"
    );
}

async fn a_count_whose_worker_is_killed_is_rescued_and_completes(db: &TestDb) {
    let store = &db.store;
    // Size the count to last about six seconds in this build, so the kill lands mid-count.
    let probe = 20_000_000;
    let started = std::time::Instant::now();
    conveyor_longtask::count::count_bare(probe);
    let per_second = probe as f64 / started.elapsed().as_secs_f64();
    let step = ((per_second * 6.0) as u64 / 100).max(1);
    let target = step * 100;
    let args = json!({"target": target, "step": step});
    let job = NewJob::new(conveyor_longtask::KIND, args).queue(conveyor_longtask::QUEUE);
    let id = enqueue_id(store, job).await;

    let mut first = worker(db, "2s", "1s");
    let job = wait_for_job(store, id, WAIT, |j| j.progress_done.unwrap_or(0) > 0).await;
    assert_eq!(job.state, JobState::Running);
    first.kill().await.expect("SIGKILL the worker");
    let mut second = worker(db, "2s", "1s");
    let job = wait_for_state(store, id, JobState::Completed, Duration::from_secs(90)).await;
    assert_eq!(job.attempt, 2, "rescued once");
    assert_eq!(job.result.unwrap()["count"], target);
    assert_eq!(job.progress_done, Some(i64::try_from(target).unwrap()));
    second.kill().await.unwrap();
}

/// A worker killed in the middle of the reduction: its tasks run again after the lease, a
/// step that ran twice changes nothing, and the averages are exact.
async fn an_average_job_whose_worker_is_killed_completes_exactly(db: &TestDb) {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode, header};
    use tower::ServiceExt;

    let dir =
        std::env::temp_dir().join(format!("conveyor-average-kill-{:x}", rand::random::<u64>()));
    let files = conveyor_average::Storage::local(&dir).unwrap();
    let apps = common::apps(files, None, None, conveyor_web::auth::Auth::open());
    let store = &db.store;
    conveyor_average::migrate(store).await.unwrap();
    conveyor_minitwit::migrate(store).await.unwrap();
    let state = conveyor_web::AppState::new(
        store.clone(),
        conveyor::app::registry(&apps),
        conveyor_web::WebSettings::default(),
    );
    let app = conveyor_web::router_for(
        state,
        conveyor::app::app_routes(&apps, &common::no_alerts(), store),
        true,
    );
    let call = |method: Method, uri: String, body: Option<serde_json::Value>| {
        let app = app.clone();
        async move {
            let mut request = Request::builder().method(method).uri(uri);
            if body.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
            let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            (
                status,
                serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default(),
            )
        }
    };
    let body = json!({"files": 300, "entries_per_file": 4000, "seed": 7});
    let (status, job) = call(Method::POST, "/api/average/jobs".into(), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let id = job["id"].as_i64().unwrap();
    let uri = format!("/api/average/jobs/{id}");

    let dir_text = dir.display().to_string();
    let env = [
        ("AVERAGE_STORE", dir_text.as_str()),
        ("CONVEYOR_QUEUES", "average=4"),
    ];
    let mut first = worker_with(db, "2s", "1s", &env);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, job) = call(Method::GET, uri.clone(), None).await;
        if job["progress"]["sum_tasks"]["done"].as_u64().unwrap_or(0) > 0
            || job["status"] != "generating"
        {
            assert_ne!(
                job["status"], "completed",
                "the kill must land mid-way: {job}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no progress: {job}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().await.expect("SIGKILL the worker");
    let mut second = worker_with(db, "2s", "1s", &env);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let job = loop {
        let (_, job) = call(Method::GET, uri.clone(), None).await;
        if matches!(job["status"].as_str(), Some("completed" | "failed")) {
            break job;
        }
        assert!(std::time::Instant::now() < deadline, "did not end: {job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(job["status"], "completed", "{job}");
    let (_, verdict) = call(Method::POST, format!("{uri}/validate"), None).await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    assert_eq!(verdict["positions"], 4000);
    second.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// A worker killed while a repository's files are being analysed: the rescued tasks run
/// again, every file ends analysed exactly once (one row each), and the clone is removed.
async fn a_mining_run_whose_worker_is_killed_resumes_and_analyses_every_file_once(db: &TestDb) {
    let store = &db.store;
    let dir =
        std::env::temp_dir().join(format!("conveyor-mining-kill-{:x}", rand::random::<u64>()));
    let (repo_dir, downloads) = (dir.join("repo"), dir.join("downloads"));
    std::fs::create_dir_all(&repo_dir).unwrap();
    // 300 files of 60 functions each: seconds of analysis in a debug build.
    let body: String = (0..60)
        .map(|i| format!("pub fn f{i}(x: i32) -> i32 {{\n    if x > {i} {{ x - {i} }} else {{ x + {i} }}\n}}\n\n"))
        .collect();
    for i in 0..300 {
        std::fs::write(repo_dir.join(format!("m{i}.rs")), &body).unwrap();
    }
    common::commit_all(&repo_dir, "Add modules");
    conveyor_mining::migrate(store).await.unwrap();
    let id = conveyor_mining::api::add(
        store,
        conveyor_mining::SourcePolicy::TRUSTING,
        repo_dir.to_str().unwrap(),
    )
    .await
    .unwrap();

    let downloads_text = downloads.display().to_string();
    let env = [
        ("MINING_DOWNLOADS", downloads_text.as_str()),
        // The repository is made on this machine.
        ("MINING_ALLOW_LOCAL", "true"),
        ("MINING_INDEX", "off"),
        ("CONVEYOR_QUEUES", "mining=2,mining-fetch=1"),
    ];
    let mut first = worker_with(db, "2s", "1s", &env);
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let repo = conveyor_mining::db::repo(store, id).await.unwrap().unwrap();
        let total = i64::from(repo.files_total.unwrap_or(0));
        let pending = conveyor_mining::db::pending_files(store, id).await.unwrap();
        if repo.state.as_str() == "analyzing" && pending < total {
            break;
        }
        assert_ne!(
            repo.state.as_str(),
            "analyzed",
            "the kill must land mid-way"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "no progress: {repo:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.kill().await.expect("SIGKILL the worker");
    let mut second = worker_with(db, "2s", "1s", &env);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let repo = loop {
        let repo = conveyor_mining::db::repo(store, id).await.unwrap().unwrap();
        if matches!(repo.state.as_str(), "analyzed" | "failed") {
            break repo;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not end: {repo:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(repo.state.as_str(), "analyzed", "{repo:?}");
    assert_eq!(repo.files_total, Some(300));
    let filter = conveyor_mining::db::FileFilter {
        repo: Some(id),
        ..Default::default()
    };
    let mut files = Vec::new();
    let mut after = None;
    loop {
        let page = conveyor_mining::db::files(
            store,
            &conveyor_mining::db::FileFilter {
                after,
                ..filter.clone()
            },
            100,
        )
        .await
        .unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        files.extend(page);
    }
    assert_eq!(files.len(), 300, "one row per file");
    assert!(
        files
            .iter()
            .all(|f| f.state.as_str() == "analyzed" && f.functions == Some(60.0))
    );
    let rescued = store
        .list(&conveyor_queue::JobFilter {
            kind: Some("mining.analyze".into()),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .iter()
        .filter(|j| j.attempt > 1)
        .count();
    assert!(rescued > 0, "some analysis ran again after the kill");
    assert!(
        std::fs::read_dir(&downloads)
            .map(|d| d.count() == 0)
            .unwrap_or(true),
        "clone removed"
    );
    second.kill().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fifty clients POST jobs to a `conveyor serve` that is killed (SIGKILL) under them: every
/// job the server answered 201 for is in the database afterwards (an answer comes only
/// after its shared transaction commits).
async fn every_job_answered_201_survives_a_kill_of_the_server(db: &TestDb) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .arg("serve")
        .env("DATABASE_URL", &db.url)
        .env("CONVEYOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("MINITWIT_WEB", "off")
        .env("MINITWIT_API", "off")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start conveyor serve");
    conveyor_web::install_tls_provider();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/jobs");
    let deadline = std::time::Instant::now() + WAIT;
    while client
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await
        .is_err()
    {
        assert!(std::time::Instant::now() < deadline, "serve did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answered = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut clients = Vec::new();
    for c in 0..50 {
        let (client, url, answered) = (client.clone(), url.clone(), answered.clone());
        clients.push(tokio::spawn(async move {
            for n in 0.. {
                let sent = client
                    .post(&url)
                    .json(&json!({"kind": "noop", "args": {"client": c, "n": n}}))
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if response.status() != 201 {
                    break;
                }
                let Ok(body) = response.json::<serde_json::Value>().await else {
                    break;
                };
                answered.lock().unwrap().push(body["id"].as_i64().unwrap());
            }
        }));
    }
    let counted = || answered.lock().unwrap().len();
    while counted() < 500 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} answered",
            counted()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    let mut missing = Vec::new();
    for id in &answered {
        if db.store.get(*id).await.unwrap().is_none() {
            missing.push(*id);
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} answered jobs lost: {missing:?}",
        missing.len(),
        answered.len()
    );
}

async fn a_worker_told_to_stop_finishes_its_job_and_exits(db: &TestDb) {
    let store = &db.store;
    let running = enqueue_id(store, NewJob::new("sleep", json!({"ms": 1_500}))).await;
    // A 1 s lease: the worker reads the request at its next heartbeat, within a third.
    let mut child = worker(db, "1s", "5s");
    let owner = running_on(store, running).await;
    assert!(store.request_worker_stop(&owner).await.unwrap());
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("the worker exits once told to stop")
        .unwrap();
    assert!(status.success(), "it stops cleanly: {status:?}");
    let job = store.get(running).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.attempt),
        (JobState::Completed, 1),
        "its running job finished first"
    );
    assert!(
        store.workers(60_000).await.unwrap().is_empty(),
        "it left the registry"
    );
}

/// Splits CSV text into records (quoted cells may hold commas, quotes and line breaks).
fn csv_records(text: &str) -> Vec<Vec<String>> {
    let (mut records, mut record, mut cell) = (Vec::new(), Vec::new(), String::new());
    let (mut quoted, mut chars) = (false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut cell)),
            (false, '\n') => {
                record.push(std::mem::take(&mut cell));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => cell.push(c),
        }
    }
    records
}

/// A researcher's day: `conveyor mining run` analyses a repository into the database, then
/// `conveyor mining export` writes its files and its functions out, with awkward paths
/// (a comma, quotes, a line break) quoted and counted as one row each.
async fn mining_run_then_export_writes_every_row_to_a_file(db: &TestDb) {
    let dir = std::env::temp_dir().join(format!(
        "conveyor-mining-export-{:x}",
        rand::random::<u64>()
    ));
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let files = [
        (
            "a,b.py",
            "def f(x):\n    return x\n\ndef g(x):\n    if x:\n        return 1\n",
        ),
        ("say \"hi\".rs", "fn main() {}\n"),
        ("new\nline.py", "def h():\n    pass\n"),
        ("README.md", "# Export\n"),
    ];
    for (path, text) in files {
        std::fs::write(repo.join(path), text).unwrap();
    }
    common::commit_all(&repo, "Add files");
    let conveyor = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(args)
            .env("DATABASE_URL", &db.url)
            .env("MINING_DOWNLOADS", dir.join("downloads"))
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "conveyor {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let run = conveyor(&["mining", "run", repo.to_str().unwrap()]);
    assert!(run.contains("4 of 4 files analysed"), "{run}");

    let csv_path = dir.join("files.csv");
    let said = conveyor(&[
        "mining",
        "export",
        "--format",
        "csv",
        "-o",
        csv_path.to_str().unwrap(),
    ]);
    assert!(said.contains("4 rows from 4 files"), "{said}");
    let records = csv_records(&std::fs::read_to_string(&csv_path).unwrap());
    assert_eq!(records.len(), 5, "a header and a row a file: {records:?}");
    let header = &records[0];
    assert_eq!(&header[..4], ["id", "repository", "path", "language"]);
    let column = |name: &str| header.iter().position(|c| c == name).unwrap();
    let (path, functions) = (column("path"), column("functions"));
    let mut rows: Vec<(&str, &str)> = records[1..]
        .iter()
        .map(|r| {
            assert_eq!(r.len(), header.len(), "{r:?}");
            (r[path].as_str(), r[functions].as_str())
        })
        .collect();
    rows.sort_unstable();
    assert_eq!(
        rows,
        [
            ("README.md", ""),
            ("a,b.py", "2.0"),
            ("new\nline.py", "1.0"),
            ("say \"hi\".rs", "1.0")
        ]
    );

    let ndjson = dir.join("functions.ndjson");
    let said = conveyor(&[
        "mining",
        "export",
        "--level",
        "function",
        "--language",
        "Python",
        "-o",
        ndjson.to_str().unwrap(),
    ]);
    assert!(said.contains("3 rows from 2 files"), "{said}");
    let mut functions: Vec<(String, String, i64)> = std::fs::read_to_string(&ndjson)
        .unwrap()
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                row["path"].as_str().unwrap().to_owned(),
                row["name"].as_str().unwrap().to_owned(),
                row["cyclomatic"].as_i64().unwrap(),
            )
        })
        .collect();
    functions.sort_unstable();
    assert_eq!(
        functions,
        [
            ("a,b.py".to_owned(), "f".to_owned(), 1),
            ("a,b.py".to_owned(), "g".to_owned(), 2),
            ("new\nline.py".to_owned(), "h".to_owned(), 1),
        ]
    );
    let _ = std::fs::remove_dir_all(&dir);
}
