//! Configuration: defaults, then an optional TOML file, then environment variables and flags
//! (a flag beats its variable, which beats the file). [`Overrides`] is both the flag set and
//! the file's schema, so the two cannot drift apart; [`Config::resolve`] applies defaults
//! and validates, naming the setting at fault.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use conveyor_queue::QueueConfig;
use conveyor_web::auth::Auth;
use conveyor_web::client::TrustedProxies;
use secrecy::{ExposeSecret, SecretString};

/// The queues served by default: general jobs with 64 slots (they are mostly short or
/// waiting on I/O; with 8, a worker moved at most about 6,800 no-op jobs a second and fell
/// behind HTTP enqueues, `docs/bench/2026-12-07-http.md`), the CPU-bound counting tasks of `longtask`
/// at most two at a time (one per core of a small machine), and `average`'s file tasks
/// (reading, parsing and writing overlap, so a few more than cores), and `repostats`'
/// requests to GitHub (which asks for about 20 at once at most);
/// mining's analysis tasks (twice its analysis threads, one per core, so a thread has a
/// file while another task writes results) and its indexing and cloning (waiting on hosts)
/// have theirs.
pub const DEFAULT_QUEUES: &str =
    "default=64,longtask=2,average=16,repostats=8,mining=4,mining-fetch=2";

/// Where the jobs live: what every command that opens the database takes.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Database")]
pub struct Database {
    /// Database: sqlite://path or postgres://... [default: sqlite://conveyor.db]
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// PostgreSQL connections per process, plus half as many for claims [default: 16]
    #[arg(long, env = "CONVEYOR_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<u32>,
}

/// The operator's tokens: what a server checks and what a command sends to a server.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Access")]
pub struct Token {
    /// Tokens that open the job API, the apps' management routes, the dashboard and
    /// /metrics, comma-separated (all valid at once, for rotation); each at least 16
    /// characters. Also what the CLI sends to a server [default: none: open, allowed only on
    /// a loopback address]
    #[arg(long, env = "CONVEYOR_API_TOKEN", value_parser = secret, hide_env_values = true, global = true)]
    pub api_token: Option<SecretString>,
}

/// The platform's settings of a process that serves or works (each app adds its own
/// section); each optional, so that the defaults below say what unset means.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Server and workers")]
pub struct Overrides {
    /// Log format: text or json (set from the command line's global flag).
    #[arg(skip)]
    pub log_format: Option<String>,
    /// HTTP address [default: 127.0.0.1:8000]
    #[arg(long, env = "CONVEYOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Serve /metrics on this address instead of the HTTP address [default: none]
    #[arg(long, env = "CONVEYOR_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Queues this worker serves, comma-separated, each optionally name=concurrency
    /// [default: default=64,longtask=2,average=16,repostats=8,mining=4,mining-fetch=2]
    #[arg(long, env = "CONVEYOR_QUEUES")]
    pub queues: Option<String>,
    /// Jobs running at once per queue unless the queue says otherwise [default: 8]
    #[arg(long, env = "CONVEYOR_CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Lease: a dead worker's jobs run again after this [default: 15s]
    #[arg(long, env = "CONVEYOR_LEASE")]
    pub lease: Option<String>,
    /// Time running jobs get to finish at shutdown [default: 30s]
    #[arg(long, env = "CONVEYOR_GRACE")]
    pub grace: Option<String>,
    /// Longest wait for work without a wake-up [default: 1s]
    #[arg(long, env = "CONVEYOR_POLL_INTERVAL")]
    pub poll_interval: Option<String>,
    /// Longest one attempt may run [default: 1h]
    #[arg(long, env = "CONVEYOR_JOB_TIMEOUT")]
    pub job_timeout: Option<String>,
    /// How long ended jobs are kept [default: 7d]
    #[arg(long, env = "CONVEYOR_RETENTION")]
    pub retention: Option<String>,
    /// The most `work` processes the deployment may run (its autoscaler's maximum), shown on
    /// /metrics as conveyor_workers_max for the "workers at their maximum" alert [default: none]
    #[arg(long, env = "CONVEYOR_WORKERS_MAX")]
    pub workers_max: Option<u32>,
    /// Where /api/alerts/webhook forwards alerts: a Slack incoming-webhook URL or Telegram's
    /// https://api.telegram.org/bot<token>/sendMessage [default: none, alerts are only logged]
    #[arg(long, env = "ALERT_CHAT_URL")]
    pub alert_chat_url: Option<String>,
    /// The chat's message shape: slack or telegram [default: telegram if the URL has
    /// /sendMessage, else slack]
    #[arg(long, env = "ALERT_CHAT_KIND")]
    pub alert_chat_kind: Option<String>,
    /// Telegram's chat_id (needed with telegram)
    #[arg(long, env = "ALERT_TELEGRAM_CHAT_ID")]
    pub alert_telegram_chat_id: Option<String>,
    /// A bearer token the webhook's callers must send [default: none: the webhook follows
    /// the API's rule, open on loopback, else behind CONVEYOR_API_TOKEN]
    #[arg(long, env = "ALERT_WEBHOOK_TOKEN", value_parser = secret)]
    pub alert_webhook_token: Option<SecretString>,
    /// Serve without a token on a non-loopback address, knowingly [default: false]
    #[arg(long, env = "CONVEYOR_ALLOW_ANONYMOUS", num_args = 0..=1,
          default_missing_value = "true")]
    pub allow_anonymous: Option<bool>,
    /// Proxies whose X-Forwarded-For/-Host/-Proto/-Port are believed: CIDR ranges or
    /// addresses, comma-separated [default: 127.0.0.1/32,::1/128]
    #[arg(long, env = "CONVEYOR_TRUSTED_PROXIES")]
    pub trusted_proxies: Option<String>,
    /// The database.
    #[command(flatten)]
    pub database: Database,
    /// The tokens.
    #[command(flatten)]
    pub token: Token,
}

/// A flag's value as a secret: never printed by `Debug`.
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

/// A config file's settings: its keys are the flags' names with underscores; each value
/// becomes its flag's default wherever the flag exists, below the environment and the
/// command line. A key that no command knows is refused.
#[derive(Debug, Clone, Default)]
pub struct File(toml::Table);

impl File {
    /// Reads a TOML file.
    ///
    /// # Errors
    /// When the file is unreadable or not TOML.
    pub fn read(path: &Path) -> anyhow::Result<File> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing the config file {}", path.display()))
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// When it is not TOML.
    pub fn parse(text: &str) -> anyhow::Result<File> {
        Ok(File(toml::from_str(text)?))
    }

    /// `command` (and every subcommand) with the file's values as its flags' defaults.
    ///
    /// # Errors
    /// Naming a key that is no flag of any command, or a value that is a table.
    pub fn apply(&self, command: clap::Command) -> anyhow::Result<clap::Command> {
        let mut known = Vec::new();
        collect_ids(&command, &mut known);
        let mut values = Vec::new();
        for (key, value) in &self.0 {
            if !known.iter().any(|k| k == key) {
                bail!(
                    "the config file's {key:?} is not a setting (keys are the flags' names with underscores)"
                );
            }
            let text = match value {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(x) => x.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => bail!("the config file's {key:?} must be a string, number or boolean"),
            };
            // Read once per process: the defaults live as long as the command line.
            values.push((key.clone(), &*Box::leak(text.into_boxed_str())));
        }
        Ok(with_defaults(command, &values))
    }
}

fn collect_ids(command: &clap::Command, ids: &mut Vec<String>) {
    ids.extend(command.get_arguments().map(|a| a.get_id().to_string()));
    for sub in command.get_subcommands() {
        collect_ids(sub, ids);
    }
}

fn with_defaults(command: clap::Command, values: &[(String, &'static str)]) -> clap::Command {
    command
        .mut_args(
            |arg| match values.iter().find(|(k, _)| arg.get_id() == k.as_str()) {
                Some((_, value)) => arg.default_value(*value),
                None => arg,
            },
        )
        .mut_subcommands(|sub| with_defaults(sub, values))
}

/// The resolved configuration of one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database URL.
    pub database_url: String,
    /// HTTP address.
    pub listen: SocketAddr,
    /// Separate metrics address.
    pub metrics_addr: Option<SocketAddr>,
    /// Queues served, with their concurrency.
    pub queues: Vec<QueueConfig>,
    /// Lease length.
    pub lease: Duration,
    /// Shutdown grace period.
    pub grace: Duration,
    /// Poll interval.
    pub poll_interval: Duration,
    /// Per-attempt timeout.
    pub job_timeout: Duration,
    /// Retention of ended jobs.
    pub retention: Duration,
    /// Connection pool size.
    pub max_connections: u32,
    /// JSON logs.
    pub log_json: bool,
    /// The deployment's most `work` processes, if declared.
    pub workers_max: Option<u32>,
    /// Where alerts go.
    pub alerts: crate::alerts::AlertConfig,
    /// The tokens of the operator's surface (open when none).
    pub auth: Auth,
    /// The first token, as the CLI sends it to a server.
    pub api_token: Option<SecretString>,
    /// Serving without a token beyond loopback was asked for.
    pub allow_anonymous: bool,
    /// Proxies whose forwarded headers are believed.
    pub trusted_proxies: TrustedProxies,
}

impl Config {
    /// What the platform's settings tell the apps and their commands.
    pub fn platform(&self) -> conveyor_web::app::Platform {
        conveyor_web::app::Platform {
            auth: self.auth.clone(),
            proxies: self.trusted_proxies.clone(),
            api_token: self.api_token.clone(),
            database_url: self.database_url.clone(),
            store_options: conveyor_queue::StoreOptions {
                max_connections: self.max_connections,
                ..conveyor_queue::StoreOptions::default()
            },
        }
    }

    /// Refuses to serve the operator's surface on `address` beyond loopback without a
    /// token, unless anonymous access was asked for.
    ///
    /// # Errors
    /// Naming the settings that would allow it.
    pub fn check_exposure(&self, address: SocketAddr) -> anyhow::Result<()> {
        if self.auth.is_open() && !address.ip().is_loopback() && !self.allow_anonymous {
            bail!(
                "refusing to serve the job API and dashboard on {address} without a token: \
                 anyone who can reach it could run and delete jobs. Set CONVEYOR_API_TOKEN \
                 (--api-token) to one or more tokens, or pass --allow-anonymous \
                 (CONVEYOR_ALLOW_ANONYMOUS=true) to serve it open on purpose"
            );
        }
        Ok(())
    }

    /// Applies defaults to `o` and checks every value.
    ///
    /// # Errors
    /// Naming the first setting that is out of range or unparsable.
    pub fn resolve(o: Overrides) -> anyhow::Result<Config> {
        let concurrency = o.concurrency.unwrap_or(8);
        if !(1..=10_000).contains(&concurrency) {
            bail!("concurrency must be between 1 and 10000, not {concurrency}");
        }
        let queues = parse_queues(o.queues.as_deref().unwrap_or(DEFAULT_QUEUES), concurrency)?;
        let lease = duration("lease", o.lease.as_deref().unwrap_or("15s"))?;
        if lease < Duration::from_millis(300) {
            bail!("lease must be at least 300ms (heartbeats come three times per lease)");
        }
        let log_json = match o.log_format.as_deref().unwrap_or("text") {
            "text" => false,
            "json" => true,
            other => bail!("log_format must be text or json, not {other:?}"),
        };
        let auth = match &o.token.api_token {
            Some(tokens) => Auth::from_list(tokens.expose_secret()).map_err(anyhow::Error::msg)?,
            None => Auth::open(),
        };
        let api_token = o.token.api_token.as_ref().and_then(|tokens| {
            let first = tokens
                .expose_secret()
                .split(',')
                .map(str::trim)
                .find(|t| !t.is_empty())?;
            Some(SecretString::from(first))
        });
        let trusted_proxies = TrustedProxies::parse(
            o.trusted_proxies
                .as_deref()
                .unwrap_or(conveyor_web::client::DEFAULT_TRUSTED_PROXIES),
        )
        .map_err(|e| anyhow::anyhow!("trusted_proxies: {e}"))?;
        let max_connections = o.database.max_connections.unwrap_or(16);
        if max_connections < 2 {
            bail!("max_connections must be at least 2");
        }
        Ok(Config {
            database_url: o
                .database
                .database_url
                .unwrap_or_else(|| "sqlite://conveyor.db".to_owned()),
            listen: o
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8000))),
            metrics_addr: o.metrics_addr,
            queues,
            lease,
            grace: duration("grace", o.grace.as_deref().unwrap_or("30s"))?,
            poll_interval: duration("poll_interval", o.poll_interval.as_deref().unwrap_or("1s"))?,
            job_timeout: duration("job_timeout", o.job_timeout.as_deref().unwrap_or("1h"))?,
            retention: duration("retention", o.retention.as_deref().unwrap_or("7d"))?,
            max_connections,
            log_json,
            workers_max: o.workers_max,
            alerts: crate::alerts::AlertConfig::resolve(
                o.alert_chat_url,
                o.alert_chat_kind.as_deref(),
                o.alert_telegram_chat_id,
                o.alert_webhook_token.map(|t| t.expose_secret().to_owned()),
            )?,
            auth,
            api_token,
            allow_anonymous: o.allow_anonymous.unwrap_or(false),
            trusted_proxies,
        })
    }
}

/// `a,b=4` → queue `a` with the default concurrency, `b` with 4.
fn parse_queues(list: &str, default: usize) -> anyhow::Result<Vec<QueueConfig>> {
    let mut queues: Vec<QueueConfig> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, concurrency) = match item.split_once('=') {
            Some((name, n)) => {
                let n: usize = n
                    .trim()
                    .parse()
                    .with_context(|| format!("queues: {item:?} needs a number after '='"))?;
                (name.trim(), n)
            }
            None => (item, default),
        };
        if !conveyor_queue::job::is_queue_name(name) {
            bail!(
                "queues: {name:?} is not a queue name: {}",
                conveyor_queue::job::QUEUE_NAME_RULE
            );
        }
        if !(1..=10_000).contains(&concurrency) {
            bail!("queues: concurrency of {name:?} must be between 1 and 10000");
        }
        if queues.iter().any(|q| q.name == name) {
            bail!("queues: {name:?} is listed twice");
        }
        queues.push(QueueConfig {
            name: name.to_owned(),
            concurrency,
        });
    }
    if queues.is_empty() {
        bail!("queues: name at least one queue");
    }
    Ok(queues)
}

/// `250ms`, `15s`, `5m`, `1h`, `7d`.
fn duration(setting: &str, text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().with_context(|| {
        format!("{setting}: {text:?} is not a duration like 250ms, 15s, 5m, 1h or 7d")
    })?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{setting}: {text:?} is not a duration like 250ms, 15s, 5m, 1h or 7d"),
    };
    Ok(Duration::from_millis(n.saturating_mul(unit_ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve_to_the_documented_values() {
        let config = Config::resolve(Overrides::default()).unwrap();
        assert_eq!(config.database_url, "sqlite://conveyor.db");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(
            config.queues,
            vec![
                QueueConfig {
                    name: "default".into(),
                    concurrency: 64
                },
                QueueConfig {
                    name: "longtask".into(),
                    concurrency: 2
                },
                QueueConfig {
                    name: "average".into(),
                    concurrency: 16
                },
                QueueConfig {
                    name: "repostats".into(),
                    concurrency: 8
                },
                QueueConfig {
                    name: "mining".into(),
                    concurrency: 4
                },
                QueueConfig {
                    name: "mining-fetch".into(),
                    concurrency: 2
                },
            ]
        );
        assert_eq!(config.lease, Duration::from_secs(15));
        assert_eq!(config.retention, Duration::from_secs(7 * 86_400));
    }

    /// `conveyor up` with `args`, the file's values as defaults.
    fn up(file: &str, args: &[&str]) -> anyhow::Result<Overrides> {
        use clap::{Args, FromArgMatches};
        let command = Overrides::augment_args(clap::Command::new("up").no_binary_name(true));
        let command = File::parse(file)?.apply(command)?;
        Ok(Overrides::from_arg_matches(
            &command.try_get_matches_from(args)?,
        )?)
    }

    #[test]
    fn flags_beat_the_file() {
        let config =
            Config::resolve(up("lease = \"9s\"\ngrace = \"2s\"", &["--lease", "5s"]).unwrap())
                .unwrap();
        assert_eq!(
            (config.lease, config.grace),
            (Duration::from_secs(5), Duration::from_secs(2))
        );
    }

    #[test]
    fn queue_lists_take_per_queue_concurrency() {
        let queues = parse_queues("a, b=3", 2).unwrap();
        assert_eq!(
            queues[0],
            QueueConfig {
                name: "a".into(),
                concurrency: 2
            }
        );
        assert_eq!(
            queues[1],
            QueueConfig {
                name: "b".into(),
                concurrency: 3
            }
        );
        assert!(parse_queues("a,a", 2).is_err());
        assert!(parse_queues("a=0", 2).is_err());
    }

    #[test]
    fn errors_name_the_setting() {
        let bad = |o: Overrides| Config::resolve(o).unwrap_err().to_string();
        assert!(
            bad(Overrides {
                lease: Some("soon".into()),
                ..Overrides::default()
            })
            .contains("lease")
        );
        assert!(
            bad(Overrides {
                grace: Some("5 parsecs".into()),
                ..Overrides::default()
            })
            .contains("grace")
        );
        assert!(
            bad(Overrides {
                log_format: Some("xml".into()),
                ..Overrides::default()
            })
            .contains("log_format")
        );
        let unknown = up("colour = 1", &[]).unwrap_err().to_string();
        assert!(
            unknown.contains("colour"),
            "unknown keys are refused: {unknown}"
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(duration("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("x", "2h").unwrap(), Duration::from_secs(7200));
        assert!(duration("x", "12").is_err());
    }
}
