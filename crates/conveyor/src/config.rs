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
use serde::Deserialize;

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

/// Every setting, each optional so that layers can be merged.
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// Database: sqlite://path or postgres://... [default: sqlite://conveyor.db]
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    /// HTTP address [default: 127.0.0.1:8000]
    #[arg(long, env = "CONVEYOR_LISTEN", global = true)]
    pub listen: Option<SocketAddr>,
    /// Serve /metrics on this address instead of the HTTP address [default: none]
    #[arg(long, env = "CONVEYOR_METRICS_ADDR", global = true)]
    pub metrics_addr: Option<SocketAddr>,
    /// Queues this worker serves, comma-separated, each optionally name=concurrency
    /// [default: default=64,longtask=2,average=16,repostats=8,mining=4,mining-fetch=2]
    #[arg(long, env = "CONVEYOR_QUEUES", global = true)]
    pub queues: Option<String>,
    /// Jobs running at once per queue unless the queue says otherwise [default: 8]
    #[arg(long, env = "CONVEYOR_CONCURRENCY", global = true)]
    pub concurrency: Option<usize>,
    /// Lease: a dead worker's jobs run again after this [default: 15s]
    #[arg(long, env = "CONVEYOR_LEASE", global = true)]
    pub lease: Option<String>,
    /// Time running jobs get to finish at shutdown [default: 30s]
    #[arg(long, env = "CONVEYOR_GRACE", global = true)]
    pub grace: Option<String>,
    /// Longest wait for work without a wake-up [default: 1s]
    #[arg(long, env = "CONVEYOR_POLL_INTERVAL", global = true)]
    pub poll_interval: Option<String>,
    /// Longest one attempt may run [default: 1h]
    #[arg(long, env = "CONVEYOR_JOB_TIMEOUT", global = true)]
    pub job_timeout: Option<String>,
    /// How long ended jobs are kept [default: 7d]
    #[arg(long, env = "CONVEYOR_RETENTION", global = true)]
    pub retention: Option<String>,
    /// PostgreSQL connections per process, plus half as many for claims [default: 16]
    #[arg(long, env = "CONVEYOR_MAX_CONNECTIONS", global = true)]
    pub max_connections: Option<u32>,
    /// Log format: text or json [default: text]
    #[arg(long, env = "CONVEYOR_LOG_FORMAT", global = true)]
    pub log_format: Option<String>,
    /// MiniTwit's web pages: an address, or "off" [default: 127.0.0.1:5000]
    #[arg(long, env = "MINITWIT_WEB", global = true)]
    pub minitwit_web: Option<String>,
    /// MiniTwit's simulator API: an address, or "off" [default: 127.0.0.1:5001]
    #[arg(long, env = "MINITWIT_API", global = true)]
    pub minitwit_api: Option<String>,
    /// Where average keeps its files: a directory, or s3://bucket[/prefix] (S3 settings from
    /// the AWS_* environment) [default: average-data]
    #[arg(long, env = "AVERAGE_STORE", global = true)]
    pub average_store: Option<String>,
    /// When repostats lists the newest repositories: a cron expression (UTC), or "off"
    /// [default: */10 * * * *]
    #[arg(long, env = "REPOSTATS_REFRESH", global = true)]
    pub repostats_refresh: Option<String>,
    /// repostats' /ping, /repos, /stats: requests a second per client IP, bursts of twice
    /// that; 0 for no limit [default: 200]
    #[arg(long, env = "REPOSTATS_PER_IP", global = true)]
    pub repostats_per_ip: Option<u32>,
    /// Mark MiniTwit's session cookie Secure (behind TLS) [default: false]
    #[arg(long, env = "MINITWIT_SECURE_COOKIES", global = true)]
    pub minitwit_secure_cookies: Option<bool>,
    /// mining's download area, where clones live while analysed; shared by the workers of
    /// several machines [default: mining-downloads]
    #[arg(long, env = "MINING_DOWNLOADS", global = true)]
    pub mining_downloads: Option<String>,
    /// When mining's enabled indexers run: a cron expression (UTC), or "off"
    /// [default: * * * * *]
    #[arg(long, env = "MINING_INDEX", global = true)]
    pub mining_index: Option<String>,
    /// Refuse /api/mining requests without an API key; writes need an admin key
    /// [default: false]
    #[arg(long, env = "MINING_REQUIRE_KEY", global = true)]
    pub mining_require_key: Option<bool>,
    /// The most `work` processes the deployment may run (its autoscaler's maximum), shown on
    /// /metrics as conveyor_workers_max for the "workers at their maximum" alert [default: none]
    #[arg(long, env = "CONVEYOR_WORKERS_MAX", global = true)]
    pub workers_max: Option<u32>,
    /// Where /api/alerts/webhook forwards alerts: a Slack incoming-webhook URL or Telegram's
    /// https://api.telegram.org/bot<token>/sendMessage [default: none, alerts are only logged]
    #[arg(long, env = "ALERT_CHAT_URL", global = true)]
    pub alert_chat_url: Option<String>,
    /// The chat's message shape: slack or telegram [default: telegram if the URL has
    /// /sendMessage, else slack]
    #[arg(long, env = "ALERT_CHAT_KIND", global = true)]
    pub alert_chat_kind: Option<String>,
    /// Telegram's chat_id (needed with telegram)
    #[arg(long, env = "ALERT_TELEGRAM_CHAT_ID", global = true)]
    pub alert_telegram_chat_id: Option<String>,
    /// A bearer token the webhook's callers must send [default: none: the webhook follows
    /// the API's rule, open on loopback, else behind CONVEYOR_API_TOKEN]
    #[arg(long, env = "ALERT_WEBHOOK_TOKEN", global = true, value_parser = secret)]
    pub alert_webhook_token: Option<SecretString>,
    /// Tokens that open the job API, the apps' management routes, the dashboard and
    /// /metrics, comma-separated (all valid at once, for rotation); each at least 16
    /// characters. Also what the CLI sends to a server [default: none: open, allowed only on
    /// a loopback address]
    #[arg(long, env = "CONVEYOR_API_TOKEN", global = true, value_parser = secret)]
    pub api_token: Option<SecretString>,
    /// Serve without a token on a non-loopback address, knowingly [default: false]
    #[arg(long, env = "CONVEYOR_ALLOW_ANONYMOUS", global = true, num_args = 0..=1,
          default_missing_value = "true")]
    pub allow_anonymous: Option<bool>,
    /// Proxies whose X-Forwarded-For/-Host/-Proto/-Port are believed: CIDR ranges or
    /// addresses, comma-separated [default: 127.0.0.1/32,::1/128]
    #[arg(long, env = "CONVEYOR_TRUSTED_PROXIES", global = true)]
    pub trusted_proxies: Option<String>,
    /// MiniTwit's pages as browsers reach them (https://minitwit.example.org), for its
    /// cross-site check [default: from a trusted proxy's X-Forwarded-* headers, else Host]
    #[arg(long, env = "MINITWIT_PUBLIC_URL", global = true)]
    pub minitwit_public_url: Option<String>,
    /// mining may clone local paths and file:// URLs [default: false; `mining run` allows them]
    #[arg(long, env = "MINING_ALLOW_LOCAL", global = true)]
    pub mining_allow_local: Option<bool>,
    /// mining may clone from hosts on loopback, link-local or private addresses
    /// [default: false]
    #[arg(long, env = "MINING_ALLOW_PRIVATE", global = true)]
    pub mining_allow_private: Option<bool>,
}

/// A flag's value as a secret: never printed by `Debug`.
fn secret(text: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(text))
}

impl Overrides {
    /// Fills every unset field from `lower`.
    pub fn or(self, lower: Overrides) -> Overrides {
        Overrides {
            database_url: self.database_url.or(lower.database_url),
            listen: self.listen.or(lower.listen),
            metrics_addr: self.metrics_addr.or(lower.metrics_addr),
            queues: self.queues.or(lower.queues),
            concurrency: self.concurrency.or(lower.concurrency),
            lease: self.lease.or(lower.lease),
            grace: self.grace.or(lower.grace),
            poll_interval: self.poll_interval.or(lower.poll_interval),
            job_timeout: self.job_timeout.or(lower.job_timeout),
            retention: self.retention.or(lower.retention),
            max_connections: self.max_connections.or(lower.max_connections),
            log_format: self.log_format.or(lower.log_format),
            minitwit_web: self.minitwit_web.or(lower.minitwit_web),
            minitwit_api: self.minitwit_api.or(lower.minitwit_api),
            minitwit_secure_cookies: self
                .minitwit_secure_cookies
                .or(lower.minitwit_secure_cookies),
            average_store: self.average_store.or(lower.average_store),
            repostats_refresh: self.repostats_refresh.or(lower.repostats_refresh),
            repostats_per_ip: self.repostats_per_ip.or(lower.repostats_per_ip),
            mining_downloads: self.mining_downloads.or(lower.mining_downloads),
            mining_index: self.mining_index.or(lower.mining_index),
            mining_require_key: self.mining_require_key.or(lower.mining_require_key),
            workers_max: self.workers_max.or(lower.workers_max),
            alert_chat_url: self.alert_chat_url.or(lower.alert_chat_url),
            alert_chat_kind: self.alert_chat_kind.or(lower.alert_chat_kind),
            alert_telegram_chat_id: self.alert_telegram_chat_id.or(lower.alert_telegram_chat_id),
            alert_webhook_token: self.alert_webhook_token.or(lower.alert_webhook_token),
            api_token: self.api_token.or(lower.api_token),
            allow_anonymous: self.allow_anonymous.or(lower.allow_anonymous),
            trusted_proxies: self.trusted_proxies.or(lower.trusted_proxies),
            minitwit_public_url: self.minitwit_public_url.or(lower.minitwit_public_url),
            mining_allow_local: self.mining_allow_local.or(lower.mining_allow_local),
            mining_allow_private: self.mining_allow_private.or(lower.mining_allow_private),
        }
    }

    /// Reads a TOML file whose keys are the flags' names with underscores.
    ///
    /// # Errors
    /// When the file is unreadable, not TOML, or has unknown keys.
    pub fn from_file(path: &Path) -> anyhow::Result<Overrides> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing the config file {}", path.display()))
    }
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
    /// MiniTwit's page listener, if on.
    pub minitwit_web: Option<SocketAddr>,
    /// MiniTwit's API listener, if on.
    pub minitwit_api: Option<SocketAddr>,
    /// MiniTwit's session cookie is `Secure`.
    pub minitwit_secure_cookies: bool,
    /// average's files: a directory or an s3:// URL.
    pub average_store: String,
    /// repostats' refresh schedule, or "off".
    pub repostats_refresh: String,
    /// repostats' requests a second per client IP (0: no limit).
    pub repostats_per_ip: u32,
    /// mining's download area.
    pub mining_downloads: String,
    /// mining's indexer schedule, or "off".
    pub mining_index: String,
    /// mining's API needs keys.
    pub mining_require_key: bool,
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
    /// MiniTwit's public origin, if set.
    pub minitwit_public_origin: Option<String>,
    /// mining may clone local paths.
    pub mining_allow_local: bool,
    /// mining may clone from private addresses.
    pub mining_allow_private: bool,
}

impl Config {
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
        let auth = match &o.api_token {
            Some(tokens) => Auth::from_list(tokens.expose_secret()).map_err(anyhow::Error::msg)?,
            None => Auth::open(),
        };
        let api_token = o.api_token.as_ref().and_then(|tokens| {
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
        let minitwit_public_origin = match o.minitwit_public_url.as_deref() {
            None | Some("") => None,
            Some(url) => Some(
                conveyor_web::client::normalize_origin(url)
                    .filter(|o| o.starts_with("http://") || o.starts_with("https://"))
                    .with_context(|| {
                        format!(
                            "minitwit_public_url must be an http(s) URL like \
                             https://minitwit.example.org, not {url:?}"
                        )
                    })?,
            ),
        };
        let max_connections = o.max_connections.unwrap_or(16);
        if max_connections < 2 {
            bail!("max_connections must be at least 2");
        }
        Ok(Config {
            database_url: o
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
            minitwit_web: optional_address(
                "minitwit_web",
                o.minitwit_web.as_deref().unwrap_or("127.0.0.1:5000"),
            )?,
            minitwit_api: optional_address(
                "minitwit_api",
                o.minitwit_api.as_deref().unwrap_or("127.0.0.1:5001"),
            )?,
            minitwit_secure_cookies: o.minitwit_secure_cookies.unwrap_or(false),
            average_store: o.average_store.unwrap_or_else(|| "average-data".to_owned()),
            repostats_refresh: o
                .repostats_refresh
                .unwrap_or_else(|| "*/10 * * * *".to_owned()),
            repostats_per_ip: o.repostats_per_ip.unwrap_or(200),
            mining_downloads: o
                .mining_downloads
                .unwrap_or_else(|| "mining-downloads".to_owned()),
            mining_index: o.mining_index.unwrap_or_else(|| "* * * * *".to_owned()),
            mining_require_key: o.mining_require_key.unwrap_or(false),
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
            minitwit_public_origin,
            mining_allow_local: o.mining_allow_local.unwrap_or(false),
            mining_allow_private: o.mining_allow_private.unwrap_or(false),
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

/// An address, or `None` for "off".
fn optional_address(name: &str, text: &str) -> anyhow::Result<Option<SocketAddr>> {
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).with_context(|| {
        format!("{name} must be an address like 127.0.0.1:5000, or off, not {text:?}")
    })
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
        assert_eq!(
            config.minitwit_web,
            Some(SocketAddr::from(([127, 0, 0, 1], 5000)))
        );
        assert_eq!(
            config.minitwit_api,
            Some(SocketAddr::from(([127, 0, 0, 1], 5001)))
        );
        assert_eq!(config.average_store, "average-data");
        assert_eq!(config.mining_downloads, "mining-downloads");
        assert_eq!(config.mining_index, "* * * * *");
        assert!(!config.mining_require_key);
    }

    #[test]
    fn minitwit_listeners_can_be_off_and_bad_addresses_are_named() {
        let off = Overrides {
            minitwit_web: Some("off".into()),
            ..Overrides::default()
        };
        assert_eq!(Config::resolve(off).unwrap().minitwit_web, None);
        let bad = Overrides {
            minitwit_api: Some("localhost".into()),
            ..Overrides::default()
        };
        let error = Config::resolve(bad).unwrap_err().to_string();
        assert!(error.contains("minitwit_api"), "{error}");
    }

    #[test]
    fn flags_beat_the_file() {
        let flags = Overrides {
            lease: Some("5s".into()),
            ..Overrides::default()
        };
        let file: Overrides = toml::from_str("lease = \"9s\"\ngrace = \"2s\"").unwrap();
        let config = Config::resolve(flags.or(file)).unwrap();
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
        assert!(
            toml::from_str::<Overrides>("colour = 1").is_err(),
            "unknown keys are refused"
        );
    }

    #[test]
    fn durations_take_units() {
        assert_eq!(duration("x", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("x", "2h").unwrap(), Duration::from_secs(7200));
        assert!(duration("x", "12").is_err());
    }
}
