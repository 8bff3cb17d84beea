//! The dashboard in a real browser (headless Chromium driven by playwright-core, the script
//! is `crates/dashboard/tests/browser.mjs`) against a live in-process `up` on SQLite with an
//! API token: the login page sends the browser back where it was going, every
//! page loads, a longtask reaches 100 % without a reload, a job is cancelled from its page,
//! W changes, an average job completes and validates, a repository added on the mining page
//! is analysed and charted, repostats refreshed from its page (against the fake GitHub)
//! shows its table and language chart. Screenshots go to
//! `target/dashboard-screenshots/`. Skipped, saying so, without Chromium, Node.js or
//! playwright-core (`.ci/run` installs them; `PLAYWRIGHT_CORE_DIR` says where it is).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use conveyor_queue::testing::TestDb;
use conveyor_queue::{QueueConfig, Worker, WorkerConfig};
use conveyor_web::{AppState, WebSettings};
use tokio_util::sync::CancellationToken;

/// The operator's token the browser logs in with.
const TOKEN: &str = "browser-test-token-0123456789";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The directory holding `node_modules/playwright-core`, if there is one.
fn playwright() -> Option<PathBuf> {
    let candidates = [
        std::env::var_os("PLAYWRIGHT_CORE_DIR").map(PathBuf::from),
        Some(workspace().join("target/browser")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|dir| dir.join("node_modules/playwright-core").is_dir())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = std::process::Command::new("node").arg("--version").output();
    let Some(modules) = playwright() else {
        conveyor_queue::testing::skip(
            "playwright-core not found (set PLAYWRIGHT_CORE_DIR or run .ci/run)",
        );
        return;
    };
    if !std::path::Path::new(&chromium).exists() || node.is_err() {
        conveyor_queue::testing::skip(
            "needs {chromium} and node (apt-get install chromium nodejs)",
        );
        return;
    }

    let db = TestDb::sqlite().await;
    let dir = std::env::temp_dir().join(format!("conveyor-browser-test-{}", std::process::id()));
    let files = conveyor_average::Storage::local(&dir).unwrap();
    // repostats against the fake GitHub shipped in the repository.
    let fake = conveyor_repostats::fake::Fake::generated(
        40,
        conveyor_repostats::fake::FakeConfig {
            latency: Duration::ZERO,
            ..Default::default()
        },
    );
    let fake_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake_url = format!("http://{}", fake_listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(fake_listener, std::sync::Arc::new(fake).router())
            .await
            .unwrap()
    });
    let github = conveyor_repostats::Github::new(conveyor_repostats::GithubConfig {
        api_url: fake_url,
        tokens: Vec::new(),
        max_wait: Duration::from_secs(5),
    })
    .unwrap();
    let mining = conveyor_mining::Mining::new(conveyor_mining::Settings {
        // The page adds a repository made on this machine.
        sources: conveyor_mining::SourcePolicy::TRUSTING,
        ..conveyor_mining::Settings::default()
    })
    .unwrap();
    let auth = conveyor_web::auth::Auth::from_list(TOKEN).unwrap();
    let snapshot = conveyor_repostats::SnapshotCell::default();
    let repostats = conveyor_repostats::Repostats {
        github,
        snapshot: snapshot.clone(),
        ..conveyor_repostats::Repostats::default()
    };
    let apps = common::apps(files, Some(repostats), Some(mining.clone()), auth.clone());
    conveyor_average::migrate(&db.store).await.unwrap();
    conveyor_minitwit::migrate(&db.store).await.unwrap();
    conveyor_mining::migrate(&db.store).await.unwrap();
    conveyor_repostats::migrate(&db.store).await.unwrap();
    conveyor_mining::ensure_indexers(&db.store, &mining)
        .await
        .unwrap();
    let state = AppState::new(
        db.store.clone(),
        conveyor::app::registry(&apps),
        WebSettings {
            auth,
            ..WebSettings::default()
        },
    );
    let (pages, open_pages) = conveyor_dashboard::routers(conveyor::app::dashboard(&apps));
    let surface = conveyor_web::Surface {
        pages,
        open_pages,
        ..conveyor::app::app_routes(&apps, &common::no_alerts(), &db.store)
    };
    let app = conveyor_web::router_for(state, surface, true);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(conveyor_web::serve(
        listener,
        app,
        stop.clone().cancelled_owned(),
    ));
    let queue = |name: &str, concurrency| QueueConfig {
        name: name.into(),
        concurrency,
    };
    let config = WorkerConfig {
        queues: vec![
            queue("default", 4),
            queue("longtask", 2),
            queue("average", 4),
            queue(conveyor_mining::QUEUE, 2),
            queue(conveyor_mining::FETCH_QUEUE, 1),
            queue(conveyor_repostats::QUEUE, 8),
        ],
        lease: Duration::from_secs(2),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(db.store.clone(), conveyor::app::registry(&apps), config);
    let worker = tokio::spawn(worker.run(stop.clone()));
    let fresh = tokio::spawn(conveyor_repostats::keep_fresh(
        db.store.clone(),
        snapshot.clone(),
        Duration::from_millis(200),
    ));

    // A repository for the mining page to analyse.
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("lib.rs"),
        "pub fn f(x: i32) -> i32 {\n    if x > 0 { x } else { -x }\n}\n",
    )
    .unwrap();
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=T",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-q",
            "-m",
            "Add f",
        ],
    ] {
        assert!(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .status()
                .unwrap()
                .success()
        );
    }

    let shots = workspace().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = workspace().join("crates/dashboard/tests/browser.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{address}"))
        .arg(&shots)
        .env("NODE_PATH", modules.join("node_modules"))
        .env("CHROMIUM", &chromium)
        .env("MINING_REPO", &repo)
        .env("CONVEYOR_API_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser checks end in time")
        .expect("node runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if !out.status.success() {
        let repos = conveyor_mining::db::repos(&db.store, &Default::default(), 10).await;
        let filter = conveyor_queue::JobFilter {
            limit: 5,
            ..Default::default()
        };
        let jobs = db.store.list(&filter).await;
        panic!(
            "browser checks failed:\n{stdout}\n{stderr}\nrepositories: {repos:?}\njobs: {jobs:?}"
        );
    }
    assert!(
        stdout.contains("browser checks passed"),
        "{stdout}\n{stderr}"
    );

    fresh.abort();
    stop.cancel();
    worker.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    db.finish().await;
}
