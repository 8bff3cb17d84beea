//! Many processes on one PostgreSQL database, as a deployment runs them: two `conveyor
//! serve` and three `conveyor work`, jobs from every app submitted through both servers, one
//! worker frozen and killed while it holds jobs. Everything completes exactly once (the
//! killed worker's jobs ran a second time, no other job did), every app's answer is right
//! on both servers, and the metrics agree with the database. Needs `TEST_DATABASE_URL`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conveyor_queue::testing::TestDb;
use conveyor_queue::{Job, JobFilter, JobState, Store};
use serde_json::{Value, json};

mod common;
use common::{Process, SIMULATOR_AUTH, client, free_port, register_and_post, wait_until_up};

fn conveyor(role: &str, db: &TestDb, dir: &Path, name: &str, env: &[(&str, String)]) -> Process {
    Process(
        Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .arg(role)
            .current_dir(dir)
            .env("DATABASE_URL", &db.url)
            .env("CONVEYOR_LEASE", "4s")
            .env("CONVEYOR_GRACE", "1s")
            .env("CONVEYOR_POLL_INTERVAL", "100ms")
            .env("AVERAGE_STORE", dir.join("average"))
            .env("REPOSTATS_REFRESH", "off")
            .env("MINING_INDEX", "off")
            .env("MINITWIT_WEB", "off")
            .env("MINITWIT_API", "off")
            .env("RUST_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap())
            .spawn()
            .unwrap(),
    )
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> Value {
    let mut request = client.request(method.clone(), url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{method} {url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

async fn all_jobs(store: &Store) -> Vec<Job> {
    let mut jobs = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list(&JobFilter {
                before,
                limit: 500,
                ..Default::default()
            })
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        jobs.extend(page);
    }
    jobs
}

/// The sum of `metric`'s samples whose labels contain every one of `labels`.
fn metric_sum(page: &str, metric: &str, labels: &[&str]) -> f64 {
    page.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn git_repository(dir: &Path, files: usize) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    let body: String = (0..20)
        .map(|i| format!("pub fn f{i}(x: i32) -> i32 {{\n    if x > {i} {{ x - {i} }} else {{ x + {i} }}\n}}\n\n"))
        .collect();
    for i in 0..files {
        std::fs::write(repo.join(format!("m{i}.rs")), &body).unwrap();
    }
    for args in [
        &["init", "-q"][..],
        &["add", "-A"],
        &["commit", "-qm", "Add modules"],
    ] {
        let ok = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=T", "-c", "user.email=t@example.com"])
            .args(args)
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_three_workers_finish_every_app_s_work_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        eprintln!("skipped: TEST_DATABASE_URL is not set (the distributed test needs PostgreSQL)");
        return;
    };
    let store = db.store.clone();
    let dir = std::env::temp_dir().join(format!("conveyor-distributed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let repo = git_repository(&dir, 40);
    let client = client();

    let github = free_port();
    let _fake = Process(
        Command::new(env!("CARGO_BIN_EXE_conveyor"))
            .args(["fake-github", "--addr", &format!("127.0.0.1:{github}")])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let github_url = format!("http://127.0.0.1:{github}");
    // The first server applies the apps' migrations; the others start on a ready schema.
    let mut servers = Vec::new();
    let mut simulators = Vec::new();
    let mut processes = Vec::new();
    for n in 0..2 {
        let (http, simulator) = (free_port(), free_port());
        processes.push(conveyor(
            "serve",
            &db,
            &dir,
            &format!("serve-{n}"),
            &[
                ("CONVEYOR_LISTEN", format!("127.0.0.1:{http}")),
                ("MINITWIT_API", format!("127.0.0.1:{simulator}")),
                ("GITHUB_API_URL", github_url.clone()),
            ],
        ));
        servers.push(format!("http://127.0.0.1:{http}"));
        simulators.push(format!("http://127.0.0.1:{simulator}"));
        wait_until_up(&client, &format!("{}/readyz", servers[n])).await;
    }
    let mut workers = Vec::new();
    let mut worker_metrics = Vec::new();
    for n in 0..3 {
        let metrics = free_port();
        workers.push(conveyor(
            "work",
            &db,
            &dir,
            &format!("work-{n}"),
            &[
                ("CONVEYOR_METRICS_ADDR", format!("127.0.0.1:{metrics}")),
                (
                    "MINING_DOWNLOADS",
                    dir.join(format!("downloads-{n}")).display().to_string(),
                ),
                ("GITHUB_API_URL", github_url.clone()),
            ],
        ));
        worker_metrics.push(format!("http://127.0.0.1:{metrics}/metrics"));
        wait_until_up(&client, &format!("http://127.0.0.1:{metrics}/readyz")).await;
    }
    let server = |n: usize| servers[n % 2].clone();
    use reqwest::Method;

    // Work from every app, through both servers.
    let mut plain = Vec::new();
    for n in 0..200 {
        let kind = if n % 10 == 0 {
            json!({"kind": "sleep", "args": {"ms": 1500}})
        } else {
            json!({"kind": "noop"})
        };
        let job = call(
            &client,
            Method::POST,
            &format!("{}/api/jobs", server(n)),
            Some(kind),
        )
        .await;
        plain.push(job["id"].as_i64().unwrap());
    }
    let mut counts = Vec::new();
    for n in 0..3 {
        let task = call(
            &client,
            Method::POST,
            &format!("{}/api/tasks/add", server(n)),
            Some(json!({"target": 3_000_000, "step": 300_000})),
        )
        .await;
        counts.push(task["result"]["id"].as_str().unwrap().to_owned());
    }
    let average = call(
        &client,
        Method::POST,
        &format!("{}/api/average/jobs", server(0)),
        Some(json!({"files": 60, "entries_per_file": 2000, "seed": 11})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    let mined = call(
        &client,
        Method::POST,
        &format!("{}/api/mining/repositories", server(1)),
        Some(json!({"url": repo.display().to_string()})),
    )
    .await["id"]
        .as_i64()
        .unwrap();
    call(
        &client,
        Method::POST,
        &format!("{}/api/repostats/refresh", server(0)),
        Some(json!({})),
    )
    .await;
    for n in 0..6 {
        let (register_on, post_on) = (&simulators[n % 2], &simulators[(n + 1) % 2]);
        let content = format!("message {n}");
        register_and_post(
            &client,
            register_on,
            post_on,
            &format!("user{n}"),
            n,
            &content,
        )
        .await;
    }

    // Freeze the worker holding the most jobs, read what it holds, then kill it: its jobs
    // are exactly those the others must rescue.
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        let running = store
            .list(&JobFilter {
                state: Some(JobState::Running),
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let online = store.workers(60_000).await.unwrap();
        let busiest = online.iter().max_by_key(|w| {
            running
                .iter()
                .filter(|j| j.lease_owner.as_ref() == Some(&w.id))
                .count()
        });
        if let Some(worker) = busiest
            && running
                .iter()
                .any(|j| j.lease_owner.as_ref() == Some(&worker.id))
        {
            break worker.clone();
        }
        assert!(Instant::now() < deadline, "no worker ever held a job");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    let index = workers
        .iter()
        .position(|p| i64::from(p.0.id()) == victim.pid)
        .expect("the busiest worker is one of ours");
    assert!(
        Command::new("kill")
            .args(["-STOP", &victim.pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    // A claim or completion the worker sent just before it froze may still commit.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let held: Vec<i64> = store
        .list(&JobFilter {
            state: Some(JobState::Running),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.lease_owner.as_ref() == Some(&victim.id))
        .map(|j| j.id)
        .collect();
    let mut killed = workers.remove(index);
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    worker_metrics.remove(index);
    assert!(!held.is_empty(), "the killed worker held jobs");

    // Everything ends.
    let deadline = Instant::now() + Duration::from_secs(240);
    let jobs = loop {
        let jobs = all_jobs(&store).await;
        if jobs.iter().all(|j| j.state.is_final()) {
            break jobs;
        }
        assert!(
            Instant::now() < deadline,
            "jobs still open: {:?}",
            jobs.iter()
                .filter(|j| !j.state.is_final())
                .map(|j| (j.id, &j.kind, j.state))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Exactly once: every job completed; the killed worker's jobs ran twice, no other did.
    for job in &jobs {
        assert_eq!(
            job.state,
            JobState::Completed,
            "{} {} ended {:?}: {:?}",
            job.id,
            job.kind,
            job.state,
            job.error
        );
        let expected = if held.contains(&job.id) { 2 } else { 1 };
        assert_eq!(
            job.attempt, expected,
            "job {} ({}) ran {} times (last error {:?})",
            job.id, job.kind, job.attempt, job.error
        );
    }
    assert!(plain.iter().all(|id| jobs.iter().any(|j| j.id == *id)));

    // Every app's answer, on both servers.
    for (n, id) in counts.iter().enumerate() {
        let status = call(
            &client,
            Method::GET,
            &format!("{}/api/tasks/status/{id}", server(n + 1)),
            None,
        )
        .await;
        assert_eq!(
            status["result"]["progress"]["status"], "Completed",
            "{status}"
        );
        assert_eq!(status["result"]["progress"]["progress"], "100", "{status}");
    }
    let job = call(
        &client,
        Method::GET,
        &format!("{}/api/average/jobs/{average}", server(1)),
        None,
    )
    .await;
    assert_eq!(job["status"], "completed", "{job}");
    let verdict = call(
        &client,
        Method::POST,
        &format!("{}/api/average/jobs/{average}/validate", server(0)),
        None,
    )
    .await;
    assert_eq!(verdict["valid"], true, "{verdict}");
    let repository = call(
        &client,
        Method::GET,
        &format!("{}/api/mining/repositories/{mined}", server(0)),
        None,
    )
    .await;
    assert_eq!(repository["state"], "analyzed", "{repository}");
    assert_eq!(repository["files_total"], 40);
    let files = call(
        &client,
        Method::GET,
        &format!(
            "{}/api/mining/files?repository={mined}&limit=100",
            server(1)
        ),
        None,
    )
    .await;
    let files = files["files"].as_array().unwrap().clone();
    assert_eq!(files.len(), 40, "one row per file");
    assert!(files.iter().all(|f| f["state"] == "analyzed"), "{files:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut repos = Vec::new();
    loop {
        repos.clear();
        for n in 0..2 {
            let page = call(
                &client,
                Method::GET,
                &format!("{}/repos?limit=1000", server(n)),
                None,
            )
            .await;
            repos.push(page);
        }
        if repos[0] == repos[1] && repos[0].to_string().contains("full_name") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the servers' snapshots differ: {repos:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for simulator in &simulators {
        let messages = client
            .get(format!("{simulator}/msgs?no=100"))
            .header("authorization", SIMULATOR_AUTH)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(messages.as_array().unwrap().len(), 6, "{messages}");
    }

    // The metrics agree with the database and with each other.
    let mut rescued = 0.0;
    for url in &worker_metrics {
        let page = client.get(url).send().await.unwrap().text().await.unwrap();
        rescued += metric_sum(&page, "conveyor_lease_rescues_total", &[]);
    }
    assert_eq!(
        rescued,
        held.len() as f64,
        "rescues counted: one per job the dead worker held"
    );
    for n in 0..2 {
        let page = client
            .get(format!("{}/metrics", server(n)))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(
            metric_sum(&page, "conveyor_queue_jobs", &["state=\"completed\""]),
            jobs.len() as f64,
            "server {n}'s completed jobs"
        );
        assert_eq!(
            metric_sum(&page, "conveyor_queue_jobs", &["state=\"running\""]),
            0.0
        );
        assert_eq!(
            metric_sum(&page, "conveyor_queue_jobs", &["state=\"failed\""]),
            0.0
        );
    }
    // The dead worker stops counting as online within two leases.
    let deadline = Instant::now() + Duration::from_secs(20);
    for n in 0..2 {
        loop {
            let page = client
                .get(format!("{}/metrics", server(n)))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            if metric_sum(&page, "conveyor_workers_online", &[]) == 2.0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "server {n} still counts the dead worker"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    eprintln!(
        "{} jobs completed once each; the killed worker's {} ran twice and were rescued once each",
        jobs.len(),
        held.len()
    );
    drop(workers);
    drop(processes);
    let _ = std::fs::remove_dir_all(&dir);
    db.finish().await;
}
