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
            // The repository is made on this machine.
            .env("MINING_ALLOW_LOCAL", "true")
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
    common::commit_all(&repo, "Add modules");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_and_three_workers_finish_every_app_s_work_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        conveyor_queue::testing::skip(
            "TEST_DATABASE_URL is not set (the distributed test needs PostgreSQL)",
        );
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

    // Jobs still running when a worker is chosen, however long the submissions above took
    // on a loaded machine (the 1.5 s sleeps may all have ended by now).
    for n in 0..4 {
        let job = call(
            &client,
            Method::POST,
            &format!("{}/api/jobs", server(n)),
            Some(json!({"kind": "sleep", "args": {"ms": 4000}})),
        )
        .await;
        plain.push(job["id"].as_i64().unwrap());
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
    // A claim or completion the worker sent just before it froze may still commit: read
    // what it holds until three reads 100 ms apart agree.
    let holding = || async {
        store
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
            .collect::<Vec<i64>>()
    };
    let settled_by = Instant::now() + Duration::from_secs(10);
    let (mut held, mut same) = (holding().await, 0);
    while same < 2 {
        assert!(
            Instant::now() < settled_by,
            "the frozen worker's jobs never settled"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = holding().await;
        same = if now == held { same + 1 } else { 0 };
        held = now;
    }
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

/// `deploy/nginx/nginx.conf` as shipped, made to run here: the upstreams point at `serve`
/// processes on this machine instead of Docker's DNS names, the listeners at free ports,
/// logs and temporary files in `dir`. Every rewrite must find its target, so a change to
/// the shipped file that this test would no longer exercise fails it.
fn nginx_config(dir: &Path, upstreams: &[(&str, Vec<u16>)], listens: &[(u16, u16)]) -> String {
    let shipped = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy/nginx/nginx.conf"),
    )
    .unwrap();
    let mut config = shipped.clone();
    let mut replace = |from: &str, to: &str| {
        assert!(config.contains(from), "nginx.conf no longer has {from:?}");
        config = config.replace(from, to);
    };
    replace(
        "worker_processes auto;",
        &format!(
            "worker_processes 1;\npid {0}/nginx.pid;\nerror_log {0}/error.log;",
            dir.display()
        ),
    );
    replace(
        "  resolver 127.0.0.11 valid=10s ipv6=off;\n",
        &format!(
            "  client_body_temp_path {0}/body; proxy_temp_path {0}/proxy;\n  \
         fastcgi_temp_path {0}/fastcgi; uwsgi_temp_path {0}/uwsgi; scgi_temp_path {0}/scgi;\n",
            dir.display()
        ),
    );
    replace(
        "access_log /dev/stdout json;",
        &format!("access_log {}/access.log json;", dir.display()),
    );
    for (name, ports) in upstreams {
        let shipped_line = shipped
            .lines()
            .find(|line| line.trim_start().starts_with(&format!("upstream {name} ")))
            .unwrap_or_else(|| panic!("nginx.conf has no upstream {name}"));
        let servers: String = ports
            .iter()
            .map(|p| format!("server 127.0.0.1:{p}; "))
            .collect();
        replace(
            shipped_line,
            &format!("  upstream {name} {{ {servers}keepalive 64; }}"),
        );
    }
    for (shipped_port, port) in listens {
        replace(
            &format!("listen {shipped_port};"),
            &format!("listen 127.0.0.1:{port};"),
        );
    }
    config
}

/// A response's `Set-Cookie` pairs (`name=value`), for a client without a cookie store.
fn cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_nginx_config_fronts_two_servers_as_browsers_and_clients_expect() {
    let Some(db) = TestDb::postgres().await else {
        conveyor_queue::testing::skip(
            "TEST_DATABASE_URL is not set (the nginx test needs PostgreSQL)",
        );
        return;
    };
    let nginx = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(nginx) = nginx else {
        conveyor_queue::testing::skip(
            "nginx is not installed (apt-get install nginx-light; .ci/run does)",
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("conveyor-nginx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    const TOKEN: &str = "nginx-test-token-0123456789";
    let (api, pages, simulator) = (
        [free_port(), free_port()],
        [free_port(), free_port()],
        [free_port(), free_port()],
    );
    let mut processes = Vec::new();
    for i in 0..2 {
        processes.push(conveyor(
            "serve",
            &db,
            &dir,
            &format!("serve{i}"),
            &[
                ("CONVEYOR_LISTEN", format!("127.0.0.1:{}", api[i])),
                ("MINITWIT_WEB", format!("127.0.0.1:{}", pages[i])),
                ("MINITWIT_API", format!("127.0.0.1:{}", simulator[i])),
                ("CONVEYOR_API_TOKEN", TOKEN.to_owned()),
                // Bursts of 4 per client and server process.
                ("REPOSTATS_PER_IP", "2".to_owned()),
                ("RUST_LOG", "warn,conveyor::http=debug".to_owned()),
            ],
        ));
    }
    processes.push(conveyor(
        "work",
        &db,
        &dir,
        "work",
        &[("CONVEYOR_QUEUES", "default".to_owned())],
    ));
    let front = [free_port(), free_port(), free_port()];
    let config = nginx_config(
        &dir,
        &[
            ("api", api.to_vec()),
            ("pages", pages.to_vec()),
            ("simulator", simulator.to_vec()),
        ],
        &[(8000, front[0]), (5000, front[1]), (5001, front[2])],
    );
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config).unwrap();
    let _nginx = Process(
        Command::new(nginx)
            .arg("-c")
            .arg(&config_path)
            .arg("-p")
            .arg(&dir)
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("nginx.stderr")).unwrap())
            .spawn()
            .unwrap(),
    );
    let client = client();
    let [edge, site, sim] = front.map(|p| format!("http://127.0.0.1:{p}"));
    for port in api {
        wait_until_up(&client, &format!("http://127.0.0.1:{port}/healthz")).await;
    }
    wait_until_up(&client, &format!("{edge}/healthz")).await;

    // MiniTwit as a browser sends it: with Origin and Referer, the port in both.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = |path: &str, body: &str, cookie: Option<&str>| {
        let mut request = browser
            .post(format!("{site}{path}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", site.clone())
            .header("referer", format!("{site}{path}"))
            .body(body.to_owned());
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let registered = form(
        "/register",
        "username=ada&email=ada%40example.com&password=pw&password2=pw",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        registered.status(),
        302,
        "register through nginx: {:?}",
        registered.text().await
    );
    let logged_in = form("/login", "username=ada&password=pw", None)
        .await
        .unwrap();
    assert_eq!(logged_in.status(), 302, "log in through nginx");
    let session = cookies(&logged_in)
        .into_iter()
        .find(|c| c.starts_with("minitwit_session="))
        .expect("a session cookie");
    let posted = form("/add_message", "text=through+the+proxy", Some(&session))
        .await
        .unwrap();
    assert_eq!(posted.status(), 302, "post through nginx");
    let timeline = browser
        .get(format!("{site}/public"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(timeline.contains("through the proxy"), "{timeline}");
    // Another site's page still cannot post.
    let forged = browser
        .post(format!("{site}/add_message"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", "http://evil.example")
        .header("cookie", &session)
        .body("text=forged")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(
        client
            .get(format!("{sim}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "no /metrics on MiniTwit's public port"
    );
    assert_eq!(
        client
            .get(format!("{edge}/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    // repostats: two clients (two loopback addresses) are limited apart.
    let from = |last: u8| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from([127, 0, 0, last]))
            .build()
            .unwrap()
    };
    let (first, second) = (from(2), from(3));
    let mut limited = 0;
    for _ in 0..20 {
        let status = first
            .get(format!("{edge}/ping"))
            .send()
            .await
            .unwrap()
            .status();
        limited += usize::from(status == 429);
    }
    assert!(limited > 0, "the first client was never limited");
    let status = second
        .get(format!("{edge}/ping"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200, "the second client pays for the first");

    // The job API needs the token through the proxy, and streams a job's events.
    let anonymous = client.get(format!("{edge}/api/jobs")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let job = client
        .post(format!("{edge}/api/jobs"))
        .bearer_auth(TOKEN)
        .json(&json!({"kind": "sleep", "args": {"ms": 300}}))
        .send()
        .await
        .unwrap();
    assert_eq!(job.status(), 201);
    let id = job.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let events = client
        .get(format!("{edge}/api/jobs/{id}/events"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 200);
    let text = tokio::time::timeout(Duration::from_secs(30), events.text())
        .await
        .expect("the stream ends with the job")
        .unwrap();
    assert!(
        text.contains(r#""state":"running""#) || text.contains(r#""state":"available""#),
        "{text}"
    );
    assert!(text.contains(r#""state":"completed""#), "{text}");

    // Operators' bulk work crosses the proxy: 3,000 jobs enqueued in batches of a thousand
    // (a body of about 90 kB), then counted, cancelled and deleted in one request each.
    for batch in 0..3 {
        let jobs: Vec<Value> = (0..1000)
            .map(|i| json!({"kind": "sleep", "args": {"ms": batch * 1000 + i}, "queue": "parked"}))
            .collect();
        let answer = client
            .post(format!("{edge}/api/jobs/batch"))
            .bearer_auth(TOKEN)
            .json(&json!({ "jobs": jobs }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let answer: Value = answer.json().await.unwrap();
        assert_eq!(answer["enqueued"], 1000, "{}", answer["results"][0]);
    }
    let bulk = |body: Value| {
        client
            .post(format!("{edge}/api/jobs/bulk"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    let counted = bulk(json!({"action": "cancel", "queue": "parked", "dry_run": true}))
        .await
        .unwrap();
    assert_eq!(counted.status(), 200);
    let counted: Value = counted.json().await.unwrap();
    assert_eq!(
        (counted["matched"].as_u64(), counted["done"].as_u64()),
        (Some(3000), Some(0))
    );
    for action in ["cancel", "delete"] {
        let done: Value = bulk(json!({"action": action, "queue": "parked"}))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(done["done"], 3000, "{action} through nginx: {done}");
    }
    let left: Value = client
        .get(format!("{edge}/api/jobs?queue=parked"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(left["jobs"], json!([]), "{left}");

    // The dashboard's login works through the proxy too: the cookie, no Secure over HTTP.
    let login = browser
        .post(format!("{edge}/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}&next=%2Fjobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    let set = login.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.contains("HttpOnly") && !set.contains("Secure"), "{set}");
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = browser
        .get(format!("{edge}/jobs"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);

    // The servers logged the clients' addresses, not nginx's.
    let mut logs = String::new();
    for i in 0..2 {
        logs += &std::fs::read_to_string(dir.join(format!("serve{i}.log"))).unwrap_or_default();
    }
    assert!(
        logs.contains("client_ip=127.0.0.2") && logs.contains("client_ip=127.0.0.3"),
        "the request log names the clients behind the proxy: {logs}"
    );
    drop(processes);
    let _ = std::fs::remove_dir_all(&dir);
    db.finish().await;
}
