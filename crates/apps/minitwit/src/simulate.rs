//! `conveyor minitwit simulate`: replays a scenario file against the simulator API the way
//! the course's simulator does: one request at a time, each on a new connection
//! (`Connection: close`), a 0.3 s timeout, and anything but the expected status counted as
//! an error. Delays in the file are not waited for (the course's runs ignore them too).
//!
//! The client is a blocking socket and `httparse`, not an HTTP client library: one request
//! at a time needs no runtime, and with reqwest on tokio the client spent more CPU per
//! request than the server (measured: 208 µs against 190 µs), on the same two cores.
//!
//! The file is tab-separated without quoting: `id, delay_ms, sim_timestamp_ms, command,
//! username, args...` where the command is `register` (email, password), `tweet` (text),
//! `follow` or `unfollow` (the other user).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use conveyor_web::bail;
use conveyor_web::fail::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::json;
use url::Url;

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

/// A scenario of the course's shape, made here (`simulate --generate N`): `n` actions, the
/// same for the same `seed`. About a tenth are registrations (each user registers before it
/// acts), most of the rest tweets, then follows of registered users and unfollows of whom
/// the user follows: every action is one the API accepts, so a replay should see no error.
pub fn generate(n: usize, seed: u64) -> Vec<Action> {
    // A small linear congruential generator: no dependency, the same sequence everywhere.
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let mut next = |bound: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % bound.max(1)
    };
    let mut users: Vec<String> = Vec::new();
    let mut follows: Vec<(usize, usize)> = Vec::new();
    let mut actions = Vec::with_capacity(n);
    for id in 1..=n {
        let roll = next(100);
        let command_for = |users: &Vec<String>| users.len() < 2 || roll < 10;
        let (username, command) = if command_for(&users) {
            let name = format!("sim user {}", users.len() + 1);
            users.push(name.clone());
            let command = Command::Register {
                email: format!("sim{}@example.com", users.len()),
                password: format!("pw{}", users.len()),
            };
            (name, command)
        } else if roll < 70 {
            let who = next(users.len());
            let words = ["hello", "devops", "rust", "queue", "minitwit", "ship", "it"];
            let text: Vec<&str> = (0..1 + next(8)).map(|_| words[next(words.len())]).collect();
            (users[who].clone(), Command::Tweet(text.join(" ")))
        } else if roll < 90 || follows.is_empty() {
            let who = next(users.len());
            let mut whom = next(users.len());
            if whom == who {
                whom = (whom + 1) % users.len();
            }
            if !follows.contains(&(who, whom)) {
                follows.push((who, whom));
            }
            (users[who].clone(), Command::Follow(users[whom].clone()))
        } else {
            let (who, whom) = follows.swap_remove(next(follows.len()));
            (users[who].clone(), Command::Unfollow(users[whom].clone()))
        };
        actions.push(Action {
            id: i64::try_from(id).unwrap_or(i64::MAX),
            command,
            username,
        });
    }
    actions
}

/// Parses a scenario file's text.
///
/// # Errors
/// On a line with too few fields, a non-integer id or an unknown command, naming the line.
pub fn parse(text: &str) -> conveyor_web::fail::Result<Vec<Action>> {
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

/// The most of a response the replay reads; the API's answers are a few hundred bytes.
const MAX_RESPONSE: usize = 1 << 20;

/// Plays `actions` against the API at `base`, one at a time. Blocking: run it on a thread
/// of its own (`spawn_blocking` from async code).
///
/// # Errors
/// When the base URL is not `http://` or its host does not resolve; failed requests are
/// counted in the report instead.
pub fn replay(
    base: &str,
    actions: &[Action],
    timeout: Duration,
) -> conveyor_web::fail::Result<Report> {
    let base = Url::parse(base).with_context(|| format!("--url {base:?}"))?;
    if base.scheme() != "http" {
        bail!("--url {base}: the replay speaks plain HTTP (http://...)");
    }
    if base.cannot_be_a_base() {
        bail!("--url {base} cannot be a base");
    }
    let host = match (base.host_str(), base.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => bail!("--url {base} has no host"),
    };
    // Resolved once, as a client's resolver cache would.
    let addresses = base
        .socket_addrs(|| Some(80))
        .with_context(|| format!("resolving {host}"))?;
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
            .expect("checked above")
            .pop_if_empty()
            .extend(path);
        url.query_pairs_mut()
            .append_pair("latest", &action.id.to_string());
        let request = request("POST", &url, &host, &body.to_string());

        let sent = Instant::now();
        let outcome = exchange(&addresses, &request, timeout);
        let micros = sent.elapsed().as_micros() as u64;
        all.saturating_record(micros);
        by_command
            .entry(action.command.name().to_owned())
            .or_insert_with(new_histogram)
            .saturating_record(micros);

        let problem = match outcome {
            Ok(answer) => {
                let register = matches!(action.command, Command::Register { .. });
                if register && answer.status == 400 {
                    refused += 1;
                    None
                } else if answer.status == 204 {
                    None
                } else {
                    Some(format!(
                        "status {}: {}",
                        answer.status,
                        answer.body.chars().take(200).collect::<String>()
                    ))
                }
            }
            Err(error) if is_timeout(&error) => Some(format!("timed out after {timeout:?}")),
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
            let latest = exchange(&addresses, &request("GET", &url, &host, ""), timeout)
                .ok()
                .filter(|answer| answer.status == 200)
                .and_then(|answer| serde_json::from_str::<serde_json::Value>(&answer.body).ok());
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

/// One request as the simulator sends it: JSON, authorised, on a connection it then closes.
fn request(method: &str, url: &Url, host: &str, body: &str) -> Vec<u8> {
    let target = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTHORIZATION}\r\n\
         Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What came back.
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

/// Connects, sends `request` and reads the answer, all within `timeout`.
fn exchange(addresses: &[SocketAddr], request: &[u8], timeout: Duration) -> io::Result<Answer> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| io::Error::from(io::ErrorKind::TimedOut))
    };
    let mut stream = connect(addresses, left()?)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(left()?))?;
    stream.write_all(request)?;
    let mut response = Vec::with_capacity(1024);
    let mut chunk = [0u8; 8192];
    loop {
        stream.set_read_timeout(Some(left()?))?;
        let read = stream.read(&mut chunk)?;
        response.extend_from_slice(&chunk[..read]);
        if let Some(answer) = read_answer(&response, read == 0)? {
            return Ok(answer);
        }
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection before a whole response",
            ));
        }
        if response.len() > MAX_RESPONSE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a response of over 1 MiB",
            ));
        }
    }
}

fn connect(addresses: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address to connect to");
    for address in addresses {
        match TcpStream::connect_timeout(address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(error) => last = error,
        }
    }
    Err(last)
}

/// The answer in `bytes` once it is whole: its headers, and as much body as
/// `Content-Length` says (or everything until the server closed, `closed`, without one).
fn read_answer(bytes: &[u8], closed: bool) -> io::Result<Option<Answer>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(bytes) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unreadable response: {error}"),
            ));
        }
    };
    let status = response.code.unwrap_or_default();
    let length = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| {
            std::str::from_utf8(h.value)
                .ok()?
                .trim()
                .parse::<usize>()
                .ok()
        });
    let body = &bytes[head..];
    let whole = match length {
        Some(length) if body.len() >= length => &body[..length],
        Some(_) => return Ok(None),
        None if status == 204 || status == 304 || closed => body,
        None => return Ok(None),
    };
    Ok(Some(Answer {
        status,
        body: String::from_utf8_lossy(whole).into_owned(),
    }))
}

fn is_timeout(error: &io::Error) -> bool {
    // A socket's read or write timeout shows as `WouldBlock` on Unix.
    matches!(
        error.kind(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
    )
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
    fn a_response_is_whole_by_its_length_or_when_the_server_closes() {
        let whole = |bytes: &str, closed| read_answer(bytes.as_bytes(), closed).unwrap();
        assert!(
            whole("HTTP/1.1 204 No Cont", false).is_none(),
            "partial head"
        );
        let answer = whole(
            "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n",
            false,
        );
        assert_eq!(answer.unwrap().status, 204);
        let head = "HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\n";
        assert!(whole(&format!("{head}ab"), false).is_none(), "partial body");
        let answer = whole(&format!("{head}abcde"), false).unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (400, "abcde"));
        let head = "HTTP/1.1 200 OK\r\n\r\n";
        assert!(
            whole(&format!("{head}{{}}"), false).is_none(),
            "no length: until closed"
        );
        assert_eq!(whole(&format!("{head}{{}}"), true).unwrap().body, "{}");
        assert!(read_answer(b"NOT HTTP\r\n\r\n", true).is_err());
    }

    #[test]
    fn a_silent_server_is_a_timeout_and_a_closed_port_is_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // Accepts and then says nothing.
        let silent = std::thread::spawn(move || listener.accept().map(|(stream, _)| stream));
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let started = Instant::now();
        let error = exchange(&[address], request, Duration::from_millis(100)).unwrap_err();
        assert!(is_timeout(&error), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(silent.join());

        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = free.local_addr().unwrap();
        drop(free);
        let error = exchange(&[closed], request, Duration::from_millis(100)).unwrap_err();
        assert!(!is_timeout(&error), "{error:?}");
    }

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

#[cfg(test)]
mod generate_tests {
    use super::*;

    #[test]
    fn a_generated_scenario_acts_only_as_registered_users_would() {
        let actions = generate(2_000, 7);
        assert_eq!(actions.len(), 2_000);
        assert_eq!(
            actions,
            generate(2_000, 7),
            "the same seed, the same scenario"
        );
        assert_ne!(actions, generate(2_000, 8));
        let mut registered = std::collections::HashSet::new();
        let mut following = std::collections::HashSet::new();
        let mut counts = BTreeMap::new();
        for (i, action) in actions.iter().enumerate() {
            assert_eq!(action.id, i as i64 + 1);
            *counts.entry(action.command.name()).or_insert(0) += 1;
            match &action.command {
                Command::Register { .. } => {
                    assert!(
                        registered.insert(action.username.clone()),
                        "registered twice"
                    );
                }
                other => {
                    assert!(registered.contains(&action.username), "{action:?}");
                    match other {
                        Command::Follow(whom) => {
                            assert!(registered.contains(whom));
                            assert_ne!(whom, &action.username);
                            following.insert((action.username.clone(), whom.clone()));
                        }
                        Command::Unfollow(whom) => {
                            assert!(following.remove(&(action.username.clone(), whom.clone())));
                        }
                        _ => {}
                    }
                }
            }
        }
        assert!(counts["tweet"] > counts["register"], "{counts:?}");
        assert!(counts["follow"] > 0 && counts["unfollow"] > 0, "{counts:?}");
    }
}
