//! `conveyor minitwit simulate`: replays a scenario file against the simulator API the way
//! the course's simulator does: one request at a time, each on a new connection
//! (`Connection: close`), a 0.3 s timeout, and anything but the expected status counted as
//! an error. Delays in the file are not waited for (the course's runs ignore them too).
//!
//! The file is tab-separated without quoting: `id, delay_ms, sim_timestamp_ms, command,
//! username, args...` where the command is `register` (email, password), `tweet` (text),
//! `follow` or `unfollow` (the other user).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::json;

/// One line of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    /// Sent as `?latest=`.
    pub id: i64,
    /// What to do.
    pub command: Command,
    /// Who does it.
    pub username: String,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `POST /register`.
    Register {
        /// Address.
        email: String,
        /// Password.
        password: String,
    },
    /// `POST /msgs/<u>`.
    Tweet(String),
    /// `POST /fllws/<u>` with `follow`.
    Follow(String),
    /// `POST /fllws/<u>` with `unfollow`.
    Unfollow(String),
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Self::Register { .. } => "register",
            Self::Tweet(_) => "tweet",
            Self::Follow(_) => "follow",
            Self::Unfollow(_) => "unfollow",
        }
    }
}

/// Parses a scenario file's text.
///
/// # Errors
/// On a line with too few fields, a non-integer id or an unknown command, naming the line.
pub fn parse(text: &str) -> anyhow::Result<Vec<Action>> {
    let mut actions = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let at = || format!("scenario line {}", number + 1);
        if fields.len() < 6 {
            bail!(
                "{}: expected at least 6 tab-separated fields, found {}",
                at(),
                fields.len()
            );
        }
        let id = fields[0]
            .parse()
            .with_context(|| format!("{}: id {:?}", at(), fields[0]))?;
        let command = match (fields[3], fields.len()) {
            ("register", 7) => Command::Register {
                email: fields[5].to_owned(),
                password: fields[6].to_owned(),
            },
            ("tweet", _) => Command::Tweet(fields[5..].join("\t")),
            ("follow", 6) => Command::Follow(fields[5].to_owned()),
            ("unfollow", 6) => Command::Unfollow(fields[5].to_owned()),
            (other, n) => bail!("{}: unknown command {other:?} with {n} fields", at()),
        };
        actions.push(Action {
            id,
            command,
            username: fields[4].to_owned(),
        });
    }
    Ok(actions)
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Requests timed.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Latency {
    fn of(histogram: &Histogram<u64>) -> Self {
        let ms = |micros: u64| micros as f64 / 1000.0;
        Self {
            count: histogram.len(),
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        }
    }
}

/// What a replay found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Actions sent.
    pub actions: usize,
    /// Wall time of the whole replay, in seconds.
    pub seconds: f64,
    /// Requests that failed (unexpected status, timeout, connection error).
    pub errors: usize,
    /// Errors by command.
    pub errors_by_command: BTreeMap<String, usize>,
    /// The first few errors, described.
    pub first_errors: Vec<String>,
    /// Registrations answered 400 (the course's simulator accepts them, we show them).
    pub registrations_refused: usize,
    /// Every request's latency.
    pub latency: Latency,
    /// Latency by command.
    pub latency_by_command: BTreeMap<String, Latency>,
    /// Whether `GET /latest` afterwards returned the last action's id.
    pub latest_matches: bool,
}

const AUTHORIZATION: &str = "Basic c2ltdWxhdG9yOnN1cGVyX3NhZmUh";

/// Plays `actions` against the API at `base`, one at a time.
///
/// # Errors
/// When the base URL is invalid or the HTTP client cannot be built; failed requests are
/// counted in the report instead.
pub async fn replay(base: &str, actions: &[Action], timeout: Duration) -> anyhow::Result<Report> {
    let base = Url::parse(base).with_context(|| format!("--url {base:?}"))?;
    // No idle connections kept: every request opens its own, as the simulator's do.
    conveyor_web::install_tls_provider();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()?;
    let new_histogram = || Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).expect("bounds");
    let mut all = new_histogram();
    let mut by_command: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut errors_by_command: BTreeMap<String, usize> = BTreeMap::new();
    let mut first_errors = Vec::new();
    let mut refused = 0;
    let started = Instant::now();

    for action in actions {
        let (path, body) = match &action.command {
            Command::Register { email, password } => (
                vec!["register"],
                json!({"username": action.username, "email": email, "pwd": password}),
            ),
            Command::Tweet(text) => (vec!["msgs", &action.username], json!({"content": text})),
            Command::Follow(whom) => (vec!["fllws", &action.username], json!({"follow": whom})),
            Command::Unfollow(whom) => (vec!["fllws", &action.username], json!({"unfollow": whom})),
        };
        let mut url = base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--url cannot be a base"))?
            .pop_if_empty()
            .extend(path);
        url.query_pairs_mut()
            .append_pair("latest", &action.id.to_string());

        let sent = Instant::now();
        let outcome = client
            .post(url)
            .header("Authorization", AUTHORIZATION)
            .header("Connection", "close")
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        let micros = sent.elapsed().as_micros() as u64;
        all.saturating_record(micros);
        by_command
            .entry(action.command.name().to_owned())
            .or_insert_with(new_histogram)
            .saturating_record(micros);

        let problem = match outcome {
            Ok(response) => {
                let status = response.status();
                let register = matches!(action.command, Command::Register { .. });
                if register && status == StatusCode::BAD_REQUEST {
                    refused += 1;
                    None
                } else if status == StatusCode::NO_CONTENT {
                    None
                } else {
                    let text = response.text().await.unwrap_or_default();
                    Some(format!(
                        "status {status}: {}",
                        text.chars().take(200).collect::<String>()
                    ))
                }
            }
            Err(error) if error.is_timeout() => Some(format!("timed out after {timeout:?}")),
            Err(error) => Some(format!("request failed: {error}")),
        };
        if let Some(problem) = problem {
            *errors_by_command
                .entry(action.command.name().to_owned())
                .or_default() += 1;
            if first_errors.len() < 10 {
                first_errors.push(format!(
                    "action {} ({} by {:?}): {problem}",
                    action.id,
                    action.command.name(),
                    action.username
                ));
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();

    let latest_matches = match actions.last() {
        None => true,
        Some(last) => {
            let url = base.join("latest")?;
            let latest: Option<serde_json::Value> = match client.get(url).send().await {
                Ok(response) => response
                    .bytes()
                    .await
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok()),
                Err(_) => None,
            };
            latest.and_then(|v| v["latest"].as_i64()) == Some(last.id)
        }
    };

    Ok(Report {
        actions: actions.len(),
        seconds,
        errors: errors_by_command.values().sum(),
        errors_by_command,
        first_errors,
        registrations_refused: refused,
        latency: Latency::of(&all),
        latency_by_command: by_command
            .iter()
            .map(|(name, h)| (name.clone(), Latency::of(h)))
            .collect(),
        latest_matches,
    })
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} actions in {:.2} s ({:.0}/s), {} errors, {} registrations refused, latest {}",
            self.actions,
            self.seconds,
            self.actions as f64 / self.seconds.max(1e-9),
            self.errors,
            self.registrations_refused,
            if self.latest_matches {
                "matches"
            } else {
                "DOES NOT match"
            }
        )?;
        let line = |f: &mut std::fmt::Formatter<'_>, name: &str, l: &Latency| {
            writeln!(
                f,
                "  {name:<9} {:>6} requests  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms",
                l.count, l.p50, l.p90, l.p99, l.max
            )
        };
        line(f, "all", &self.latency)?;
        for (name, latency) in &self.latency_by_command {
            line(f, name, latency)?;
        }
        for (name, count) in &self.errors_by_command {
            writeln!(f, "  errors in {name}: {count}")?;
        }
        for error in &self.first_errors {
            writeln!(f, "  {error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command() {
        let text = "0\t0\t1\tregister\tRoger Histand\tRoger+Histand@hotmail.com\t]=)[X{Km{z\n\
                    3\t5\t2\ttweet\tRoger Histand\tFrom hour to hour\n\
                    7\t5\t2\tfollow\tRoger Histand\tNathan Sirmon\n\
                    8\t5\t2\tunfollow\tRoger Histand\tNathan Sirmon\n";
        let actions = parse(text).unwrap();
        assert_eq!(actions.len(), 4);
        assert_eq!(
            actions[0].command,
            Command::Register {
                email: "Roger+Histand@hotmail.com".into(),
                password: "]=)[X{Km{z".into()
            }
        );
        assert_eq!(
            actions[1].command,
            Command::Tweet("From hour to hour".into())
        );
        assert_eq!(actions[2].command, Command::Follow("Nathan Sirmon".into()));
        assert_eq!(actions[3].id, 8);
        assert_eq!(actions[3].username, "Roger Histand");
    }

    #[test]
    fn names_the_bad_line() {
        let error = parse("1\t0\t0\tdance\tx\ty\n").unwrap_err().to_string();
        assert!(
            error.contains("line 1") && error.contains("dance"),
            "{error}"
        );
        let error = parse("1\t0\n").unwrap_err().to_string();
        assert!(error.contains("6 tab-separated"), "{error}");
    }
}
