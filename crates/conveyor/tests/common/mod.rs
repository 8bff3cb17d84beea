//! Helpers shared by the tests that run `conveyor` processes.
#![allow(dead_code)] // each test file uses its own subset

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The only credentials the MiniTwit simulator sends (`simulator:super_safe!`).
pub const SIMULATOR_AUTH: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP client (the TLS provider installed first: reqwest needs one).
pub fn client() -> reqwest::Client {
    conveyor_web::install_tls_provider();
    reqwest::Client::new()
}

/// Waits up to a minute for `url` to answer 2xx.
pub async fn wait_until_up(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !client
        .get(url)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "{url} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// GETs `url` as JSON.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

/// Registers `user` on one MiniTwit simulator API and posts `content` as them on another
/// (the same one, or a second server on the same database); both must answer 204.
pub async fn register_and_post(
    client: &reqwest::Client,
    register_on: &str,
    post_on: &str,
    user: &str,
    latest: usize,
    content: &str,
) {
    let registered = client
        .post(format!("{register_on}/register?latest={latest}"))
        .header("authorization", SIMULATOR_AUTH)
        .json(&json!({"username": user, "email": format!("{user}@example.com"), "pwd": "pw"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 204);
    let posted = client
        .post(format!("{post_on}/msgs/{user}"))
        .header("authorization", SIMULATOR_AUTH)
        .json(&json!({"content": content}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 204);
}

/// The five apps as an in-process test wires them: average's files in `files`, repostats
/// and mining as given (else unconfigured), the operator's tokens `auth`.
pub fn apps(
    files: conveyor_average::Storage,
    repostats: Option<conveyor_repostats::Repostats>,
    mining: Option<conveyor_mining::Mining>,
    auth: conveyor_web::auth::Auth,
) -> conveyor::app::Apps {
    use std::sync::Arc;
    let repostats = repostats.unwrap_or_default();
    let mut mining_app = conveyor_mining::MiningApp {
        auth,
        index: "off".to_owned(),
        ..conveyor_mining::MiningApp::default()
    };
    if let Some(mining) = mining {
        mining_app.mining = mining;
    }
    let apps: Vec<Arc<dyn conveyor_web::app::App>> = vec![
        Arc::new(conveyor_longtask::Longtask),
        Arc::new(repostats),
        Arc::new(conveyor_average::Average { files }),
        Arc::new(mining_app),
        Arc::new(conveyor_minitwit::MinitwitApp::default()),
    ];
    apps.into()
}

/// No chat: alerts are only logged.
pub fn no_alerts() -> conveyor::alerts::Alerts {
    conveyor::alerts::Alerts::new(conveyor::alerts::AlertConfig::default()).unwrap()
}

/// Makes `dir` a git repository with one commit of everything in it.
pub fn commit_all(dir: &std::path::Path, message: &str) {
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["commit", "-qm", message],
    ] {
        let ok = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
}
