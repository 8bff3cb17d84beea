//! Operations, checked with the real tools (`deploy/`): JSON logs from a live `conveyor up`;
//! the alert rules and their unit tests under `promtool`; every Grafana panel's query and
//! every alert rule evaluated by a live Prometheus scraping `conveyor up` under a little
//! load of every app. Tests that need Debian's `prometheus` package skip, saying so,
//! without it (`.ci/run` installs it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;
use common::{
    Process, SIMULATOR_AUTH, client, free_port, get_json, register_and_post, wait_until_up,
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn has(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("conveyor-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `conveyor up` on a fresh SQLite file in `dir`, serving HTTP on `port`.
fn conveyor_up(dir: &Path, port: u16, env: &[(&str, String)]) -> Command {
    std::fs::create_dir_all(dir).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_conveyor"));
    command
        .arg("up")
        .current_dir(dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("c.db").display()),
        )
        .env("CONVEYOR_LISTEN", format!("127.0.0.1:{port}"))
        .env("CONVEYOR_POLL_INTERVAL", "200ms")
        .env("MINITWIT_WEB", "off")
        .env("MINITWIT_API", "off")
        .env("REPOSTATS_REFRESH", "off")
        .env("MINING_INDEX", "off")
        .env("MINING_ALLOW_LOCAL", "true")
        .env("AVERAGE_STORE", dir.join("average").display().to_string())
        .env(
            "MINING_DOWNLOADS",
            dir.join("downloads").display().to_string(),
        )
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("conveyor.log")).unwrap());
    command
}

async fn post(client: &reqwest::Client, url: &str, body: Value) -> Value {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {url}: {status} {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_json_lines_with_request_ids_and_job_ids() {
    let dir = temp_dir("logs");
    let port = free_port();
    let mut child = Process(
        conveyor_up(&dir, port, &[("CONVEYOR_LOG_FORMAT", "json".into())])
            .env("RUST_LOG", "info,conveyor::http=debug")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    let client = client();
    wait_until_up(&client, &format!("{base}/healthz")).await;

    let response = client
        .get(format!("{base}/api/jobs?limit=1"))
        .header("x-request-id", "req-from-proxy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-from-proxy-1");
    let generated = client
        .get(format!("{base}/no/such/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(generated.status(), 404);
    let generated_id = generated.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated_id.len(), 32, "a fresh id: {generated_id}");
    let job = post(
        &client,
        &format!("{base}/api/jobs"),
        json!({"kind": "fail", "args": {"times": 5}, "max_attempts": 1}),
    )
    .await;
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let job: Value = get_json(&client, &format!("{base}/api/jobs/{id}")).await;
        if job["state"] == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "the job did not fail: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // SIGTERM: the process drains and exits, closing its log.
    Command::new("kill")
        .arg(child.0.id().to_string())
        .status()
        .unwrap();
    let lines: Vec<Value> = BufReader::new(child.0.stderr.take().unwrap())
        .lines()
        .map(|line| {
            let line = line.unwrap();
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
        })
        .collect();
    let request = |id: &str| {
        lines
            .iter()
            .find(|l| l["fields"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id}"))
    };
    let first = &request("req-from-proxy-1")["fields"];
    assert_eq!(first["route"], "/api/jobs");
    assert_eq!(first["status"], 200);
    assert_eq!(first["method"], "GET");
    assert!(first["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(request(&generated_id)["fields"]["status"], 404);
    assert_eq!(request(&generated_id)["fields"]["route"], "unmatched");
    let failed = lines
        .iter()
        .find(|l| l["fields"]["message"] == "job failed")
        .expect("a line for the failed job");
    assert_eq!(failed["level"], "WARN");
    assert_eq!(failed["span"]["job_id"], id);
    assert_eq!(failed["span"]["kind"], "fail");
    assert_eq!(failed["span"]["queue"], "default");
    assert!(
        failed["fields"]["error"]
            .as_str()
            .unwrap()
            .contains("on purpose")
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn promtool_accepts_the_alert_rules_and_their_unit_tests() {
    if !has("promtool") {
        conveyor_queue::testing::skip(
            "promtool not found (apt-get install prometheus; .ci/run does)",
        );
        return;
    }
    let prometheus = workspace().join("deploy/prometheus");
    for args in [
        vec!["check", "config", "prometheus.yml"],
        vec!["check", "config", "prometheus-k8s.yml"],
        vec!["check", "rules", "rules/conveyor.yml"],
        vec!["test", "rules", "tests/conveyor_test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(&args)
            .current_dir(&prometheus)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Every `expr` of every panel in `deploy/grafana/dashboards/`, with its dashboard and
/// panel title.
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let dir = workspace().join("deploy/grafana/dashboards");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let dashboard: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                queries.push((
                    format!("{} / {}", dashboard["title"], panel["title"]),
                    target["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    assert!(queries.len() > 40, "the dashboards have their panels");
    queries
}

/// A git repository with a few files, for mining.
fn small_repository(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(
        repo.join("main.rs"),
        "fn main() {\n    println!(\"hi\");\n}\n",
    )
    .unwrap();
    std::fs::write(repo.join("util.py"), "def f(x):\n    return x + 1\n").unwrap();
    common::commit_all(&repo, "feat: first");
    repo
}

/// A little of everything: jobs that succeed and fail, every app's API.
async fn load(client: &reqwest::Client, base: &str, minitwit: &str, round: u32) {
    let _ = post(client, &format!("{base}/api/jobs"), json!({"kind": "noop"})).await;
    let _ = post(
        client,
        &format!("{base}/api/jobs"),
        json!({"kind": "fail", "args": {"times": 9}, "max_attempts": 1}),
    )
    .await;
    let _ = post(
        client,
        &format!("{base}/api/tasks/add"),
        json!({"target": 2_000_000, "step": 100_000}),
    )
    .await;
    for path in [
        "/repos?language=python",
        "/stats",
        "/ping",
        "/api/mining/repositories",
        "/api/average/jobs",
        "/api/tasks/status/1",
    ] {
        let _ = client.get(format!("{base}{path}")).send().await.unwrap();
    }
    let user = format!("user{round}");
    register_and_post(
        client,
        minitwit,
        minitwit,
        &user,
        round as usize,
        &format!("hello {round}"),
    )
    .await;
    let _ = client
        .get(format!("{minitwit}/msgs?no=10"))
        .header("authorization", SIMULATOR_AUTH)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_and_alert_rule_works_against_a_live_prometheus() {
    if !has("prometheus") {
        conveyor_queue::testing::skip(
            "prometheus not found (apt-get install prometheus; .ci/run does)",
        );
        return;
    }
    if !has("git") {
        conveyor_queue::testing::skip("mining's load needs git");
        return;
    }
    let dir = temp_dir("prometheus");
    let repo = small_repository(&dir);
    let (port, metrics, minitwit, pages, github, prom) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let _fake = Process(
        Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(["fake-github", "--addr", &format!("127.0.0.1:{github}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let _up = Process(
        conveyor_up(
            &dir,
            port,
            &[
                ("CONVEYOR_METRICS_ADDR", format!("127.0.0.1:{metrics}")),
                ("MINITWIT_API", format!("127.0.0.1:{minitwit}")),
                ("MINITWIT_WEB", format!("127.0.0.1:{pages}")),
                ("GITHUB_API_URL", format!("http://127.0.0.1:{github}")),
                ("CONVEYOR_WORKERS_MAX", "4".into()),
                ("RUST_LOG", "warn".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let rules = workspace().join("deploy/prometheus/rules/conveyor.yml");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: conveyor-up\n    static_configs: [{{targets: ['127.0.0.1:{metrics}']}}]\n"
        ),
    )
    .unwrap();
    let _prometheus = Process(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    let client = client();
    let base = format!("http://127.0.0.1:{port}");
    let minitwit = format!("http://127.0.0.1:{minitwit}");
    wait_until_up(&client, &format!("{base}/healthz")).await;
    wait_until_up(&client, &format!("http://127.0.0.1:{prom}/-/ready")).await;
    post(&client, &format!("{base}/api/repostats/refresh"), json!({})).await;
    post(
        &client,
        &format!("{base}/api/average/jobs"),
        json!({"files": 12, "entries_per_file": 100}),
    )
    .await;
    post(
        &client,
        &format!("{base}/api/mining/repositories"),
        json!({"url": repo.display().to_string()}),
    )
    .await;

    let mut pending = dashboard_queries();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut round = 0;
    while !pending.is_empty() && Instant::now() < deadline {
        round += 1;
        load(&client, &base, &minitwit, round).await;
        let _ = client
            .get(format!("http://127.0.0.1:{pages}/public"))
            .send()
            .await
            .unwrap();
        let mut still = Vec::new();
        for (panel, expr) in pending {
            let query = expr.replace("$__rate_interval", "30s");
            let answer: Value = client
                .get(format!("http://127.0.0.1:{prom}/api/v1/query"))
                .query(&[("query", &query)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(answer["status"], "success", "{panel}: {query}: {answer}");
            let result = &answer["data"]["result"];
            if result.as_array().is_none_or(Vec::is_empty) {
                still.push((panel, expr));
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        pending.is_empty(),
        "panels without data after two minutes:\n{}",
        pending
            .iter()
            .map(|(panel, expr)| format!("  {panel}: {expr}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Prometheus loaded every alert rule and evaluates each without error.
    let rules: Value = get_json(&client, &format!("http://127.0.0.1:{prom}/api/v1/rules")).await;
    let loaded: Vec<&Value> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert_eq!(loaded.len(), 9, "{rules}");
    for rule in loaded {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A chat endpoint that records what it is sent and refuses the first `fail_first` messages.
async fn fake_chat(fail_first: usize) -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let record = seen.clone();
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (record, calls) = (record.clone(), calls.clone());
        async move {
            if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail_first {
                return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            }
            record
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            axum::http::StatusCode::OK
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn wait_for_messages(seen: &std::sync::Mutex<Vec<Value>>, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = seen.lock().unwrap().clone();
        if messages.len() >= n {
            return messages;
        }
        assert!(
            Instant::now() < deadline,
            "the chat got {} of {n} messages: {messages:?}",
            messages.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_fires_into_the_webhook_and_the_alert_reaches_telegram() {
    let alertmanager = "prometheus-alertmanager";
    if !has(alertmanager) {
        conveyor_queue::testing::skip(
            "{alertmanager} not found (apt-get install prometheus-alertmanager)",
        );
        return;
    }
    let dir = temp_dir("alertmanager");
    // The chat refuses the first message: Alertmanager must retry, so nothing is lost.
    let (chat, seen) = fake_chat(1).await;
    let (port, am) = (free_port(), free_port());
    let _up = Process(
        conveyor_up(
            &dir,
            port,
            &[
                (
                    "ALERT_CHAT_URL",
                    format!("{chat}/bot123:secret/sendMessage"),
                ),
                ("ALERT_TELEGRAM_CHAT_ID", "-10042".into()),
                ("ALERT_WEBHOOK_TOKEN", "hook-token".into()),
                ("RUST_LOG", "warn".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route: {{receiver: conveyor, group_by: [alertname], group_wait: 1s, group_interval: 1s, repeat_interval: 1h}}\n\
             receivers:\n  - name: conveyor\n    webhook_configs:\n      - url: http://127.0.0.1:{port}/api/alerts/webhook\n        send_resolved: true\n        http_config: {{authorization: {{credentials: hook-token}}}}\n"
        ),
    )
    .unwrap();
    let _alertmanager = Process(
        Command::new(alertmanager)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("am").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("alertmanager.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let client = client();
    wait_until_up(&client, &format!("http://127.0.0.1:{port}/healthz")).await;
    wait_until_up(&client, &format!("http://127.0.0.1:{am}/-/ready")).await;

    // What Prometheus sends when ConveyorWorkersAtMaximum fires.
    let alert = |ends: Option<&str>| {
        let mut alert = json!({
            "labels": {"alertname": "ConveyorWorkersAtMaximum", "severity": "warning", "job": "conveyor-work"},
            "annotations": {"summary": "Workers are at their configured maximum (5)"},
            "generatorURL": "http://prometheus:9090/graph",
        });
        if let Some(ends) = ends {
            alert["endsAt"] = json!(ends);
        }
        json!([alert])
    };
    let fire = client
        .post(format!("http://127.0.0.1:{am}/api/v2/alerts"))
        .json(&alert(None))
        .send()
        .await
        .unwrap();
    assert!(fire.status().is_success(), "{}", fire.status());
    let messages = wait_for_messages(&seen, 1).await;
    assert_eq!(messages[0]["chat_id"], "-10042");
    let text = messages[0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[FIRING:1] ConveyorWorkersAtMaximum"),
        "{text}"
    );
    assert!(
        text.contains("Workers are at their configured maximum (5) [job=conveyor-work]"),
        "{text}"
    );

    // Resolved: Alertmanager says so, and so does the chat.
    let resolve = client
        .post(format!("http://127.0.0.1:{am}/api/v2/alerts"))
        .json(&alert(Some("2000-01-01T00:00:00Z")))
        .send()
        .await
        .unwrap();
    assert!(resolve.status().is_success());
    let messages = wait_for_messages(&seen, 2).await;
    let text = messages[1]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[RESOLVED] ConveyorWorkersAtMaximum"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_checks_its_token_and_input_and_speaks_slack() {
    let (chat, seen) = fake_chat(0).await;
    let dir = temp_dir("webhook");
    let port = free_port();
    let mut up = Process(
        conveyor_up(
            &dir,
            port,
            &[
                ("ALERT_CHAT_URL", format!("{chat}/services/T0/B0/x")),
                ("ALERT_WEBHOOK_TOKEN", "hook-token".into()),
                ("RUST_LOG", "warn".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let client = client();
    let hook = format!("http://127.0.0.1:{port}/api/alerts/webhook");
    wait_until_up(&client, &format!("http://127.0.0.1:{port}/healthz")).await;
    let notification = json!({
        "version": "4", "status": "firing", "receiver": "chat", "groupLabels": {},
        "alerts": [{"status": "firing", "labels": {"alertname": "ConveyorHttp5xxRate", "severity": "critical", "listener": "api"},
                    "annotations": {"summary": "3% of api requests answer 5xx"}, "startsAt": "2026-12-02T00:00:00Z"}],
    });
    let send = |body: Value, token: Option<&'static str>| {
        let mut request = client.post(&hook).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    assert_eq!(
        send(notification.clone(), None).await.unwrap().status(),
        401
    );
    assert_eq!(
        send(notification.clone(), Some("wrong"))
            .await
            .unwrap()
            .status(),
        401
    );
    let empty = send(
        json!({"status": "firing", "alerts": []}),
        Some("hook-token"),
    )
    .await
    .unwrap();
    assert_eq!(empty.status(), 400);
    assert!(
        empty
            .text()
            .await
            .unwrap()
            .contains("alerts must not be empty")
    );
    let bad = send(json!({"status": "firing"}), Some("hook-token"))
        .await
        .unwrap();
    assert!(bad.status().is_client_error(), "{}", bad.status());
    assert!(bad.text().await.unwrap().contains("alerts"));
    assert!(seen.lock().unwrap().is_empty(), "nothing forwarded yet");

    let ok = send(notification.clone(), Some("hook-token"))
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let answer: Value = ok.json().await.unwrap();
    assert_eq!(answer, json!({"alerts": 1, "forwarded": true}));
    let messages = wait_for_messages(&seen, 1).await;
    assert_eq!(
        messages[0],
        json!({"text": "[FIRING:1] ConveyorHttp5xxRate\n- firing ConveyorHttp5xxRate (critical): 3% of api requests answer 5xx [listener=api]"})
    );
    drop(up.0.kill());

    // A chat that cannot be reached: 502, so Alertmanager keeps the notification and retries.
    let port = free_port();
    let _down = Process(
        conveyor_up(
            &dir.join("down"),
            port,
            &[
                ("ALERT_CHAT_URL", "http://127.0.0.1:9/hook".into()),
                ("RUST_LOG", "error".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    wait_until_up(&client, &format!("http://127.0.0.1:{port}/healthz")).await;
    let failed = client
        .post(format!("http://127.0.0.1:{port}/api/alerts/webhook"))
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 502);
    let text = failed.text().await.unwrap();
    assert!(text.contains("could not be reached"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_beyond_loopback_needs_a_token_or_an_explicit_opt_out() {
    const TOKEN: &str = "ops-test-token-0123456789";
    let client = client();
    let dir = temp_dir("exposed");
    let port = free_port();
    let everywhere = ("CONVEYOR_LISTEN", format!("0.0.0.0:{port}"));
    // No token: refused at start, naming both ways out.
    let mut refused = conveyor_up(
        &dir.join("refused"),
        port,
        std::slice::from_ref(&everywhere),
    )
    .spawn()
    .unwrap();
    let status = tokio::task::spawn_blocking(move || refused.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.join("refused/conveyor.log")).unwrap();
    assert!(
        log.contains("CONVEYOR_API_TOKEN") && log.contains("--allow-anonymous"),
        "{log}"
    );
    // A token too short to be one: refused, without echoing it.
    let mut short = conveyor_up(
        &dir.join("short"),
        port,
        &[everywhere.clone(), ("CONVEYOR_API_TOKEN", "hunter2".into())],
    )
    .spawn()
    .unwrap();
    let status = tokio::task::spawn_blocking(move || short.wait().unwrap())
        .await
        .unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(dir.join("short/conveyor.log")).unwrap();
    assert!(
        log.contains("16 characters") && !log.contains("hunter2"),
        "{log}"
    );
    // Anonymous on purpose: open.
    let open = Process(
        conveyor_up(
            &dir.join("open"),
            port,
            &[
                everywhere.clone(),
                ("CONVEYOR_ALLOW_ANONYMOUS", "true".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_until_up(&client, &format!("{base}/healthz")).await;
    let jobs = client.get(format!("{base}/api/jobs")).send().await.unwrap();
    assert_eq!(jobs.status(), 200);
    drop(open);
    // With a token: the operator's routes need it, the seeds' routes and probes do not.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _guarded = Process(
        conveyor_up(
            &dir.join("guarded"),
            port,
            &[
                ("CONVEYOR_LISTEN", format!("0.0.0.0:{port}")),
                (
                    "CONVEYOR_API_TOKEN",
                    format!("old-token-0123456789,{TOKEN}"),
                ),
                ("RUST_LOG", "debug,sqlx=warn".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    wait_until_up(&client, &format!("{base}/healthz")).await;
    for path in [
        "/api/jobs",
        "/api/queues",
        "/metrics",
        "/api/openapi.json",
        "/api/repostats/status",
        "/api/average/jobs",
        "/api/mining/repositories",
    ] {
        let anonymous = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401, "{path}");
        let wrong = client
            .get(format!("{base}{path}"))
            .bearer_auth("x".repeat(24))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401, "{path}");
        let ok = client
            .get(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{path}");
    }
    for path in ["/healthz", "/readyz", "/ping", "/repos", "/stats"] {
        let anonymous = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(anonymous.status(), 200, "{path}");
    }
    let added = client
        .post(format!("{base}/api/tasks/add"))
        .json(&json!({"target": 1000, "step": 10}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "longtask's seed route is open");
    let status = client
        .get(format!("{base}/api/tasks/status/1"))
        .send()
        .await
        .unwrap();
    assert_ne!(status.status(), 401, "longtask's status is open");
    // The webhook without a token of its own follows the API's rule.
    let hook = client
        .post(format!("{base}/api/alerts/webhook"))
        .json(&json!({"status": "firing", "alerts": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status(), 401);
    // An internal kind through the API: 422, nothing stored.
    let internal = client
        .post(format!("{base}/api/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": "average.clean", "args": {"location": ""}}))
        .send()
        .await
        .unwrap();
    assert_eq!(internal.status(), 422);
    // The token is never logged, even at debug.
    let log = std::fs::read_to_string(dir.join("guarded/conveyor.log")).unwrap();
    assert!(log.contains("request"), "the log has request lines");
    assert!(
        !log.contains(TOKEN) && !log.contains("old-token"),
        "the token is in the log"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// schemathesis (a property-based fuzzer, from PyPI) over `/api/openapi.json` against `up`
/// on `database_url`, with a token: fails on any 5xx, any status the document does not
/// list, any answer that does not match its schema, and any request the document calls
/// invalid that the server accepts. A few examples an operation keep it near a minute.
async fn fuzz_the_document(database_url: String, dir: &Path) {
    const TOKEN: &str = "fuzz-token-0123456789abcdef";
    let (port, simulator) = (free_port(), free_port());
    let _up = Process(
        conveyor_up(
            dir,
            port,
            &[
                ("DATABASE_URL", database_url),
                ("CONVEYOR_API_TOKEN", TOKEN.into()),
                ("MINITWIT_API", format!("127.0.0.1:{simulator}")),
                // Only the built-in kinds run: the fuzzer's jobs for the apps stay queued.
                ("CONVEYOR_QUEUES", "default".into()),
                ("RUST_LOG", "warn".into()),
            ],
        )
        .spawn()
        .unwrap(),
    );
    let client = client();
    let base = format!("http://127.0.0.1:{port}");
    wait_until_up(&client, &format!("{base}/healthz")).await;
    // The job API and the apps' routes; then MiniTwit's simulator API, on its listener.
    let documents = [
        (base.clone(), format!("Authorization: Bearer {TOKEN}")),
        (
            format!("http://127.0.0.1:{simulator}"),
            format!("Authorization: {SIMULATOR_AUTH}"),
        ),
    ];
    for (server, header) in documents {
        // A fixed seed by default, so CI is reproducible (the same examples on every run);
        // CONVEYOR_FUZZ_SEED=random explores anew, or names another seed.
        let seed = std::env::var("CONVEYOR_FUZZ_SEED").unwrap_or_else(|_| "20261207".into());
        let mut command = tokio::process::Command::new("st");
        command
            .args(["--no-color", "run"])
            .arg(format!("{server}/api/openapi.json"))
            .args(["-H", &header]);
        if seed != "random" {
            command.args(["--seed", &seed]);
        }
        let out = command
            .args(["--max-examples", "3", "--request-timeout", "10"])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,response_schema_conformance,negative_data_rejection",
            ])
            .current_dir(dir)
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(600), out)
            .await
            .expect("the fuzzer ends in time")
            .expect("st runs");
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis found problems in {server}'s document:\n{report}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_documented_contract_under_a_fuzzer() {
    if !has("st") {
        conveyor_queue::testing::skip(
            "schemathesis not found (pip install schemathesis; .ci/run does)",
        );
        return;
    }
    let dir = temp_dir("fuzz-sqlite");
    fuzz_the_document(format!("sqlite://{}", dir.join("c.db").display()), &dir).await;
    std::fs::remove_dir_all(&dir).ok();
    if let Some(db) = conveyor_queue::testing::TestDb::postgres().await {
        let dir = temp_dir("fuzz-postgres");
        fuzz_the_document(db.url.clone(), &dir).await;
        std::fs::remove_dir_all(&dir).ok();
        db.finish().await;
    }
}

/// Runs `tool args` in `dir`; its output when it fails.
fn run(tool: &str, args: &[&str], dir: &Path, env: &[(&str, &Path)]) -> Result<(), String> {
    let out = Command::new(tool)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    // kubernetes-validate passes a kind it has no schema for with a warning: not here.
    let text = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let unchecked = tool == "kubernetes-validate" && text.contains("Couldn't find schema");
    if out.status.success() && !unchecked {
        Ok(())
    } else {
        Err(format!(
            "{tool} {args:?}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A validator: tool, its arguments before the file, the file, a replacement that breaks the
/// file, extra environment.
type Check<'a> = (
    &'a str,
    Vec<&'a str>,
    &'a str,
    (&'a str, &'a str),
    &'a [(&'a str, &'a Path)],
);

/// The validators of `deploy/`, each paired with a broken copy it must reject (so a
/// validator that checks nothing fails the test). Each tool missing is skipped, saying so.
#[test]
fn deployment_files_pass_their_schema_validators() {
    let deploy = workspace().join("deploy");
    let broken = temp_dir("broken");
    let node_modules = std::env::var_os("OPS_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/ops/node_modules"));
    let keda_script = workspace().join("crates/conveyor/tests/keda.mjs");
    let keda_script = keda_script.to_str().unwrap();
    let node_env: &[(&str, &Path)] = &[("NODE_PATH", &node_modules)];
    // (tool, args before the file, file, a replacement that breaks it, extra env)
    let checks: Vec<Check> = vec![
        (
            "hadolint",
            vec![],
            "Dockerfile",
            ("USER 10001:10001", "USER root\nRUN cd /tmp"),
            &[],
        ),
        (
            "check-jsonschema",
            vec!["--builtin-schema", "vendor.compose-spec"],
            "compose.yaml",
            ("stop_grace_period: 45s", "stop_grace_periods: 45s"),
            &[],
        ),
        (
            "kubernetes-validate",
            vec!["--strict"],
            "k8s/serve.yaml",
            ("minReplicas: 2", "minReplica: 2"),
            &[],
        ),
        (
            "kubernetes-validate",
            vec!["--strict"],
            "k8s/work.yaml",
            ("maxUnavailable: 1", "maxUnavailable: [1]"),
            &[],
        ),
        (
            "kubernetes-validate",
            vec!["--strict"],
            "k8s/metrics.yaml",
            ("clusterIP: None", "clusterIPs: None"),
            &[],
        ),
        (
            "kubernetes-validate",
            vec!["--strict"],
            "k8s/config.yaml",
            ("  CONVEYOR_GRACE: 45s", "  CONVEYOR_GRACE: [45s]"),
            &[],
        ),
        (
            "node",
            vec![keda_script],
            "k8s/keda.yaml",
            ("maxReplicaCount: 10", "maxReplicaCount: ten"),
            node_env,
        ),
        (
            "amtool",
            vec!["check-config"],
            "alertmanager/alertmanager.yml",
            ("send_resolved: true", "send_resolved: maybe"),
            &[],
        ),
    ];
    let mut skipped = Vec::new();
    for (tool, args, file, (from, to), env) in checks {
        let usable = if tool == "node" {
            has("node") && node_modules.join("@kubernetes-models/keda").is_dir()
        } else {
            has(tool)
        };
        if !usable {
            skipped.push(format!("{tool} ({file})"));
            continue;
        }
        let path = deploy.join(file);
        let mut with = args.clone();
        let path_str = path.to_str().unwrap().to_owned();
        with.push(&path_str);
        if let Err(problem) = run(tool, &with, &deploy, env) {
            panic!("{file} fails its validator: {problem}");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has {from:?}");
        let bad = broken.join(file.replace('/', "-"));
        std::fs::write(&bad, text.replacen(from, to, 1)).unwrap();
        let mut with = args.clone();
        let bad_str = bad.to_str().unwrap().to_owned();
        with.push(&bad_str);
        assert!(
            run(tool, &with, &deploy, env).is_err(),
            "{tool} accepted a broken {file} ({from:?} → {to:?})"
        );
    }
    if !skipped.is_empty() {
        conveyor_queue::testing::skip(format!(
            "validators not installed (.ci/run installs them): {}",
            skipped.join(", ")
        ));
    }
    std::fs::remove_dir_all(&broken).ok();
}

/// The value after `key:` on the line holding `key` in `text` (first match).
fn yaml_value<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key}"))
        .trim()
        .trim_matches('"')
}

fn seconds(value: &str) -> u64 {
    value.trim_end_matches('s').parse().unwrap()
}

/// What the validators cannot see: settings that must agree across files.
#[test]
fn deployment_settings_agree_with_each_other_and_with_the_binary() {
    let deploy = workspace().join("deploy");
    let read = |file: &str| std::fs::read_to_string(deploy.join(file)).unwrap();
    let (config, work, keda, compose) = (
        read("k8s/config.yaml"),
        read("k8s/work.yaml"),
        read("k8s/keda.yaml"),
        read("compose.yaml"),
    );
    // Killed only after the job grace period has run out.
    assert!(
        seconds(yaml_value(&work, "terminationGracePeriodSeconds"))
            > seconds(yaml_value(&config, "CONVEYOR_GRACE"))
    );
    assert!(
        seconds(yaml_value(&compose, "stop_grace_period"))
            > seconds(yaml_value(&compose, "CONVEYOR_GRACE"))
    );
    // The alert's ceiling is the autoscaler's.
    assert_eq!(
        yaml_value(&keda, "maxReplicaCount"),
        yaml_value(&config, "CONVEYOR_WORKERS_MAX")
    );
    // The KEDA query reads the engine's table.
    assert!(keda.contains("FROM job WHERE state IN ('available', 'running')"));
    // Every Conveyor setting named in deploy/ is one the binary reads: its help lists each
    // setting's variable (`[env: NAME=...]`).
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_conveyor"))
        .args(["up", "--help"])
        .output()
        .unwrap();
    let source = String::from_utf8_lossy(&help.stdout).replace("[env: ", "\"");
    for text in [&config, &work, &compose, &read("Dockerfile")] {
        for word in text.split(|c: char| !(c.is_ascii_uppercase() || c == '_')) {
            let ours = [
                "CONVEYOR_",
                "MINITWIT_",
                "AVERAGE_",
                "REPOSTATS_",
                "MINING_",
                "ALERT_",
                "GITHUB_",
            ];
            if word.len() > 4 && ours.iter().any(|p| word.starts_with(p)) {
                assert!(
                    source.contains(&format!("\"{word}="))
                        || source.contains(&format!("\"{word}]")),
                    "deploy/ sets {word}, which nothing reads"
                );
            }
        }
    }
}
