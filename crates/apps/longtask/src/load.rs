//! `conveyor load longtask`: the seed's five k6 scenarios against any running server.
//!
//! Each iteration does what the seed's scripts do: add a task, wait 2 s, poll its status
//! every second until it is Completed, checking every answer as they do (status 200, a JSON
//! content type, `success` true, a non-empty string id, the message `Task queued.`, string
//! status/progress/timeElapsed). The report gives iterations, request rate, latency
//! percentiles, failed checks by name, and errors (transport failures, failed or stuck tasks).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use conveyor_web::bail;
use conveyor_web::fail::Context;
use serde_json::{Value, json};

/// The scenarios of the seed's `load-tests` folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 5 virtual users sharing 10 iterations
    Vu5Iter10,
    /// 20 virtual users sharing 20 iterations
    Vu20Iter20,
    /// 20 virtual users sharing 50 iterations
    Vu20Iter50,
    /// 35 virtual users, 3 iterations each
    Vu35X3,
    /// 1 → 10 → 20 → 0 virtual users over --ramp-duration
    Ramp,
    /// All five, one after the other
    All,
}

/// `conveyor load longtask` options.
#[derive(Debug, Clone, Args)]
pub struct LongtaskLoad {
    /// The server to load
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    pub base_url: String,
    /// Which scenario
    #[arg(long, value_enum, default_value = "vu20-iter50")]
    pub scenario: Scenario,
    /// Length of the ramp scenario, in seconds (the seed's is 120)
    #[arg(long, default_value_t = 120)]
    pub ramp_seconds: u64,
    /// Body of each add request (e.g. '{"target": 10000000}'); none, as the seed sends
    #[arg(long)]
    pub body: Option<String>,
    /// Polls before an iteration gives up on its task
    #[arg(long, default_value_t = 600)]
    pub max_polls: u32,
    /// Print one JSON object per scenario instead of text
    #[arg(long)]
    pub json: bool,
}

/// How the virtual users share the work.
#[derive(Debug, Clone)]
enum Plan {
    /// `vus` users take iterations from one shared count until it runs out.
    Shared { vus: usize, iterations: usize },
    /// Every user runs `iterations` iterations.
    PerVu { vus: usize, iterations: usize },
    /// Users rise and fall linearly through (duration, target users) stages.
    Ramp {
        start: usize,
        stages: Vec<(Duration, usize)>,
    },
}

impl Scenario {
    fn plans(self, ramp: Duration) -> Vec<(&'static str, Plan)> {
        let third = ramp / 3;
        let all = [
            (
                "vu5-iter10",
                Plan::Shared {
                    vus: 5,
                    iterations: 10,
                },
            ),
            (
                "vu20-iter20",
                Plan::Shared {
                    vus: 20,
                    iterations: 20,
                },
            ),
            (
                "vu20-iter50",
                Plan::Shared {
                    vus: 20,
                    iterations: 50,
                },
            ),
            (
                "vu35-x3",
                Plan::PerVu {
                    vus: 35,
                    iterations: 3,
                },
            ),
            (
                "ramp",
                Plan::Ramp {
                    start: 1,
                    stages: vec![(third, 10), (third, 20), (ramp - 2 * third, 0)],
                },
            ),
        ];
        let wanted = match self {
            Self::Vu5Iter10 => "vu5-iter10",
            Self::Vu20Iter20 => "vu20-iter20",
            Self::Vu20Iter50 => "vu20-iter50",
            Self::Vu35X3 => "vu35-x3",
            Self::Ramp => "ramp",
            Self::All => return all.to_vec(),
        };
        all.into_iter()
            .filter(|(name, _)| *name == wanted)
            .collect()
    }
}

impl Plan {
    /// Users wanted `elapsed` into a ramp.
    fn ramp_target(start: usize, stages: &[(Duration, usize)], elapsed: Duration) -> usize {
        let mut from = start;
        let mut at = Duration::ZERO;
        for (length, to) in stages {
            if elapsed < at + *length {
                let fraction = (elapsed - at).as_secs_f64() / length.as_secs_f64().max(1e-9);
                return (from as f64 + (*to as f64 - from as f64) * fraction).round() as usize;
            }
            at += *length;
            from = *to;
        }
        0
    }

    fn duration(stages: &[(Duration, usize)]) -> Duration {
        stages.iter().map(|s| s.0).sum()
    }
}

/// What one scenario measured.
#[derive(Default)]
struct Tally {
    latency_us: Mutex<Option<hdrhistogram::Histogram<u64>>>,
    requests: AtomicU64,
    iterations_done: AtomicU64,
    iterations_failed: AtomicU64,
    checks_passed: AtomicU64,
    failed_checks: Mutex<BTreeMap<&'static str, u64>>,
    errors: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn check(&self, name: &'static str, ok: bool) {
        if ok {
            self.checks_passed.fetch_add(1, Ordering::Relaxed);
        } else {
            *self
                .failed_checks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(name)
                .or_default() += 1;
        }
    }

    fn error(&self, what: String) {
        *self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(what)
            .or_default() += 1;
    }
}

struct Load {
    client: reqwest::Client,
    options: LongtaskLoad,
    tally: Tally,
}

/// Runs the chosen scenarios and prints their reports.
///
/// # Errors
/// A bad base URL or body.
pub async fn run(options: LongtaskLoad) -> conveyor_web::fail::Result<()> {
    if !options.base_url.starts_with("http://") {
        bail!("--base-url must be an http:// URL");
    }
    if let Some(body) = &options.body {
        serde_json::from_str::<Value>(body).context("--body must be JSON")?;
    }
    let ramp = Duration::from_secs(options.ramp_seconds.max(3));
    let mut failures = 0;
    for (name, plan) in options.scenario.plans(ramp) {
        let report = scenario(name, plan, &options).await?;
        failures += report["failed_checks_total"].as_u64().unwrap_or(0)
            + report["errors_total"].as_u64().unwrap_or(0);
        if options.json {
            println!("{report}");
        } else {
            print_report(&report);
        }
    }
    if failures > 0 {
        bail!("{failures} failed checks or errors");
    }
    Ok(())
}

async fn scenario(
    name: &'static str,
    plan: Plan,
    options: &LongtaskLoad,
) -> conveyor_web::fail::Result<Value> {
    conveyor_web::install_tls_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build()
        .context("building the HTTP client")?;
    let load = Arc::new(Load {
        client,
        options: options.clone(),
        tally: Tally {
            latency_us: Mutex::new(Some(latency_histogram()?)),
            ..Tally::default()
        },
    });
    let started = Instant::now();
    let mut users = tokio::task::JoinSet::new();
    match plan.clone() {
        Plan::Shared { vus, iterations } => {
            let left = Arc::new(AtomicUsize::new(iterations));
            for _ in 0..vus {
                let (load, left) = (load.clone(), left.clone());
                users.spawn(async move {
                    while left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        load.iteration().await;
                    }
                });
            }
        }
        Plan::PerVu { vus, iterations } => {
            for _ in 0..vus {
                let load = load.clone();
                users.spawn(async move {
                    for _ in 0..iterations {
                        load.iteration().await;
                    }
                });
            }
        }
        Plan::Ramp { start, stages } => {
            let length = Plan::duration(&stages);
            let stages = Arc::new(stages);
            let mut spawned = 0;
            while started.elapsed() < length {
                let target = Plan::ramp_target(start, &stages, started.elapsed());
                while spawned < target {
                    let (load, stages, index) = (load.clone(), stages.clone(), spawned);
                    // A user starts iterations while the ramp wants at least index + 1 users,
                    // and finishes the one it is in when the ramp goes down (as k6 does).
                    users.spawn(async move {
                        while started.elapsed() < length
                            && index < Plan::ramp_target(start, &stages, started.elapsed())
                        {
                            load.iteration().await;
                        }
                    });
                    spawned += 1;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    while users.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    Ok(load.report(name, elapsed))
}

impl Load {
    /// One request, timed; the status, content type and parsed body.
    async fn call(&self, request: reqwest::RequestBuilder) -> Option<(u16, String, Value)> {
        let sent = Instant::now();
        let response = request.send().await;
        let result = match response {
            Ok(response) => {
                let status = response.status().as_u16();
                let content_type = response
                    .headers()
                    .get(reqwest::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                match response.bytes().await {
                    Ok(bytes) => Some((
                        status,
                        content_type,
                        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                    )),
                    Err(error) => {
                        self.tally.error(format!("reading a body: {error}"));
                        None
                    }
                }
            }
            Err(error) => {
                self.tally
                    .error(format!("request failed: {}", error_kind(&error)));
                None
            }
        };
        self.tally.requests.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        if let Some(histogram) = self
            .tally
            .latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            histogram.saturating_record(micros);
        }
        result
    }

    async fn iteration(&self) {
        let ok = self.add_and_follow().await;
        let counter = if ok {
            &self.tally.iterations_done
        } else {
            &self.tally.iterations_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    async fn add_and_follow(&self) -> bool {
        let base = self.options.base_url.trim_end_matches('/');
        let mut add = self.client.post(format!("{base}/api/tasks/add"));
        if let Some(body) = &self.options.body {
            add = add
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        let Some((status, content_type, body)) = self.call(add).await else {
            return false;
        };
        let t = &self.tally;
        t.check("add: status is 200", status == 200);
        t.check(
            "add: content type is JSON",
            content_type.starts_with("application/json"),
        );
        t.check("add: success is true", body["success"] == json!(true));
        let id = body["result"]["id"]
            .as_str()
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        t.check("add: id is a non-empty string", id.is_some());
        t.check(
            "add: message is 'Task queued.'",
            body["result"]["message"] == json!("Task queued."),
        );
        let Some(id) = id else { return false };

        tokio::time::sleep(Duration::from_secs(2)).await;
        for _ in 0..self.options.max_polls {
            let poll = self.client.get(format!("{base}/api/tasks/status/{id}"));
            let Some((status, content_type, body)) = self.call(poll).await else {
                return false;
            };
            let progress = &body["result"]["progress"];
            t.check("status: status is 200", status == 200);
            t.check(
                "status: content type is JSON",
                content_type.starts_with("application/json"),
            );
            t.check("status: success is true", body["success"] == json!(true));
            t.check("status: status is a string", progress["status"].is_string());
            t.check(
                "status: progress is a string",
                progress["progress"].is_string(),
            );
            t.check(
                "status: timeElapsed is a string",
                progress["timeElapsed"].is_string(),
            );
            match progress["status"].as_str() {
                Some("Completed") => return true,
                Some("Failed") => {
                    t.error(format!("task {id} failed"));
                    return false;
                }
                _ => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        t.error(format!(
            "a task was not completed after {} polls",
            self.options.max_polls
        ));
        false
    }

    fn report(&self, name: &str, elapsed: Duration) -> Value {
        let t = &self.tally;
        let histogram = t
            .latency_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let ms = |q: f64| {
            histogram
                .as_ref()
                .map_or(0.0, |h| h.value_at_quantile(q) as f64 / 1000.0)
        };
        let failed_checks = t
            .failed_checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let errors = t.errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let requests = t.requests.load(Ordering::Relaxed);
        json!({
            "scenario": name,
            "seconds": elapsed.as_secs_f64(),
            "iterations_completed": t.iterations_done.load(Ordering::Relaxed),
            "iterations_failed": t.iterations_failed.load(Ordering::Relaxed),
            "requests": requests,
            "requests_per_second": requests as f64 / elapsed.as_secs_f64(),
            "latency_ms": { "p50": ms(0.5), "p95": ms(0.95), "p99": ms(0.99), "max": ms(1.0) },
            "checks_passed": t.checks_passed.load(Ordering::Relaxed),
            "failed_checks_total": failed_checks.values().sum::<u64>(),
            "failed_checks": failed_checks,
            "errors_total": errors.values().sum::<u64>(),
            "errors": errors,
        })
    }
}

/// Latencies in microseconds, 1 µs to an hour. Explicit bounds: on an auto-resizing
/// histogram `saturating_record` clamps to the current bound instead of growing it, which made
/// the early, small samples read as 0 ms.
fn latency_histogram() -> conveyor_web::fail::Result<hdrhistogram::Histogram<u64>> {
    hdrhistogram::Histogram::new_with_bounds(1, 3_600_000_000, 3).context("histogram")
}

/// A transport error's kind, without the URL (which repeats the task id).
fn error_kind(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection refused or reset"
    } else {
        "other"
    }
}

fn print_report(report: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or_default();
    println!(
        "{}: {} iterations completed, {} failed in {:.1} s; {} requests ({:.1}/s)",
        report["scenario"].as_str().unwrap_or_default(),
        report["iterations_completed"],
        report["iterations_failed"],
        f(&report["seconds"]),
        report["requests"],
        f(&report["requests_per_second"]),
    );
    let latency = &report["latency_ms"];
    println!(
        "  latency p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        f(&latency["p50"]),
        f(&latency["p95"]),
        f(&latency["p99"]),
        f(&latency["max"])
    );
    println!(
        "  checks: {} passed, {} failed {}; errors: {} {}",
        report["checks_passed"],
        report["failed_checks_total"],
        report["failed_checks"],
        report["errors_total"],
        report["errors"]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_rises_and_falls_through_its_stages() {
        let stages = vec![
            (Duration::from_secs(40), 10),
            (Duration::from_secs(40), 20),
            (Duration::from_secs(40), 0),
        ];
        let at = |s: u64| Plan::ramp_target(1, &stages, Duration::from_secs(s));
        assert_eq!(at(0), 1);
        assert_eq!(at(20), 6);
        assert_eq!(at(40), 10);
        assert_eq!(at(80), 20);
        assert_eq!(at(100), 10);
        assert_eq!(at(120), 0);
    }

    #[test]
    fn latency_percentiles_hold_whatever_the_order_of_samples() {
        let mut histogram = latency_histogram().unwrap();
        for micros in [150, 250, 300, 3_000, 9_000, 12_000, 15_000, 18_000] {
            histogram.saturating_record(micros);
        }
        let p50 = histogram.value_at_quantile(0.5);
        assert!((2_990..=3_010).contains(&p50), "p50 is {p50} µs");
        assert!(histogram.max() >= 17_990);
    }

    #[test]
    fn every_scenario_of_the_seed_is_there() {
        let all = Scenario::All.plans(Duration::from_secs(120));
        let names: Vec<&str> = all.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "vu5-iter10",
                "vu20-iter20",
                "vu20-iter50",
                "vu35-x3",
                "ramp"
            ]
        );
        assert_eq!(Scenario::Ramp.plans(Duration::from_secs(30)).len(), 1);
    }
}
