//! The roles a process plays, wired together: the HTTP server, the worker, the periodic
//! scheduler and the cleaner, all stopped by one token that Ctrl-C or SIGTERM cancels.

use std::time::Duration;

use anyhow::Context;
use conveyor_queue::{
    Backoff, Registry, Schedule, Scheduler, Store, StoreOptions, Worker, WorkerConfig, builtin,
};
use conveyor_web::{AppState, WebSettings};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa_axum::router::OpenApiRouter;

use crate::config::Config;

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP API.
    pub http: bool,
    /// Workers, the scheduler and the cleaner.
    pub work: bool,
}

impl Roles {
    /// `conveyor up`.
    pub const ALL: Roles = Roles {
        http: true,
        work: true,
    };
    /// `conveyor serve`.
    pub const HTTP: Roles = Roles {
        http: true,
        work: false,
    };
    /// `conveyor work`.
    pub const WORK: Roles = Roles {
        http: false,
        work: true,
    };
}

/// What the apps need beyond the store: average's file store, repostats' GitHub client
/// and snapshot.
#[derive(Debug, Clone)]
pub struct AppResources {
    /// average's files.
    pub files: conveyor_average::Storage,
    /// repostats' GitHub client (`GITHUB_API_URL`, `GITHUB_TOKENS`).
    pub github: conveyor_repostats::Github,
    /// repostats' snapshot, read by its routes.
    pub snapshot: conveyor_repostats::SnapshotCell,
    /// repostats' requests a second per client address (0: no limit).
    pub per_ip: u32,
    /// mining's settings, analyzers, hosts and HTTP client.
    pub mining: conveyor_mining::Mining,
    /// mining's API needs keys.
    pub mining_require_key: bool,
    /// Where Alertmanager's notifications go.
    pub alerts: crate::alerts::Alerts,
    /// The operator's tokens (mining's gate accepts them beside its keys).
    pub auth: conveyor_web::auth::Auth,
}

impl AppResources {
    /// From the configuration and the environment.
    ///
    /// # Errors
    /// When average's store cannot be opened or the HTTP client built.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let files = conveyor_average::Storage::open(&config.average_store)
            .with_context(|| format!("average's store {}", config.average_store))?;
        let mining = conveyor_mining::Mining::new(conveyor_mining::Settings {
            downloads: config.mining_downloads.clone().into(),
            sources: conveyor_mining::SourcePolicy {
                allow_local: config.mining_allow_local,
                allow_private: config.mining_allow_private,
            },
            ..conveyor_mining::Settings::default()
        })?;
        Ok(Self {
            per_ip: config.repostats_per_ip,
            mining,
            mining_require_key: config.mining_require_key,
            alerts: crate::alerts::Alerts::new(config.alerts.clone())?,
            auth: config.auth.clone(),
            ..Self::with_files(files)?
        })
    }

    /// With `files` for average, and GitHub as the environment says.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn with_files(files: conveyor_average::Storage) -> anyhow::Result<Self> {
        let github = conveyor_repostats::Github::new(conveyor_repostats::GithubConfig::from_env())?;
        Ok(Self {
            files,
            github,
            snapshot: conveyor_repostats::SnapshotCell::default(),
            per_ip: 0,
            mining: conveyor_mining::Mining::new(conveyor_mining::Settings::default())?,
            mining_require_key: false,
            alerts: crate::alerts::Alerts::new(crate::alerts::AlertConfig::default())?,
            auth: conveyor_web::auth::Auth::open(),
        })
    }
}

/// Every job kind this binary runs: the built-ins and each app's.
pub fn registry(apps: &AppResources) -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    conveyor_longtask::register(&mut registry);
    conveyor_average::register(&mut registry, apps.files.clone());
    conveyor_repostats::register(&mut registry, apps.github.clone());
    conveyor_mining::register(&mut registry, apps.mining.clone());
    registry
}

/// Every periodic schedule of the apps: repostats' refresh and mining's indexers, each
/// unless `off`.
///
/// # Errors
/// When the refresh expression does not parse.
pub fn schedules(config: &Config) -> anyhow::Result<Vec<Schedule>> {
    let mut schedules = Vec::new();
    if config.repostats_refresh != "off" {
        let job =
            conveyor_queue::NewJob::new(conveyor_repostats::jobs::REFRESH, serde_json::json!({}))
                .queue(conveyor_repostats::QUEUE);
        schedules.push(
            Schedule::new("repostats-refresh", &config.repostats_refresh, job)
                .context("repostats_refresh")?,
        );
    }
    if config.mining_index != "off" {
        schedules.push(
            Schedule::new(
                "mining-index",
                &config.mining_index,
                conveyor_mining::jobs::tick_job(),
            )
            .context("mining_index")?,
        );
    }
    Ok(schedules)
}

/// The apps' HTTP routes, sorted by who may call them: the seeds' client-facing routes
/// (longtask's two, repostats' three) and the routes that check credentials of their own
/// (mining's keys; the alert webhook with `ALERT_WEBHOOK_TOKEN`) are public, the rest sit
/// behind the operator's token with the job API.
pub fn app_routes(apps: &AppResources, store: &Store) -> conveyor_web::Surface {
    let gate =
        conveyor_mining::KeyGate::new(store.clone(), apps.mining_require_key, apps.auth.clone());
    let mut public = OpenApiRouter::new()
        .merge(conveyor_longtask::router())
        .merge(conveyor_repostats::public_router(
            apps.snapshot.clone(),
            apps.per_ip,
        ))
        .merge(conveyor_mining::router(apps.mining.clone(), gate));
    let mut guarded = OpenApiRouter::new()
        .merge(conveyor_average::router(apps.files.clone()))
        .merge(conveyor_repostats::admin_router(apps.snapshot.clone()));
    let alerts = crate::alerts::router(apps.alerts.clone());
    if apps.alerts.has_token() {
        public = public.merge(alerts);
    } else {
        guarded = guarded.merge(alerts);
    }
    conveyor_web::Surface {
        public,
        guarded,
        ..conveyor_web::Surface::default()
    }
}

/// Starts logging: text for people, JSON for collectors; `RUST_LOG` refines the filter.
/// `server`: the long-running roles log at INFO; the CLI tools at WARN, so their output is
/// their results, not the engine's chatter.
pub fn init_logging(json: bool, server: bool) {
    let default = if server {
        "info,sqlx=warn,tokei=error"
    } else {
        "warn,tokei=error"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colours only for a person at a terminal: a file or a collector gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    // A second initialisation (tests) is harmless: the first subscriber stays.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Connects to the configured database and applies pending migrations.
///
/// # Errors
/// When the database is unreachable or a migration fails.
pub async fn connect(config: &Config) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: config.max_connections,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&config.database_url, &options)
        .await
        .with_context(|| format!("connecting to {}", redact(&config.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    conveyor_minitwit::migrate(&store)
        .await
        .context("applying MiniTwit's migrations")?;
    conveyor_average::migrate(&store)
        .await
        .context("applying average's migrations")?;
    conveyor_repostats::migrate(&store)
        .await
        .context("applying repostats' migrations")?;
    conveyor_mining::migrate(&store)
        .await
        .context("applying mining's migrations")?;
    Ok(store)
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A token cancelled at the first Ctrl-C or SIGTERM.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
        tracing::info!("shutting down: no new work; running jobs get the grace period");
        cancel.cancel();
    });
    token
}

/// The worker settings from the configuration.
pub fn worker_config(config: &Config) -> WorkerConfig {
    WorkerConfig {
        queues: config.queues.clone(),
        lease: config.lease,
        poll_interval: config.poll_interval,
        grace: config.grace,
        job_timeout: config.job_timeout,
        backoff: Backoff::default(),
        ..WorkerConfig::default()
    }
}

/// repostats' GitHub budget as stored (so every server reports the one budget, not what
/// each worker last saw): `repostats_github_remaining` and `repostats_github_exhausted`
/// (1 while a token's bucket waits for its reset or a secondary limit).
async fn github_gauges(store: &Store) -> anyhow::Result<()> {
    let now = conveyor_queue::clock::now_ms();
    for (token, bucket, remaining, reset_at, blocked_until) in
        conveyor_repostats::github::budget(store).await?
    {
        let exhausted = (remaining <= 0 && reset_at > now) || blocked_until > now;
        let labels = [("token", token), ("bucket", bucket)];
        metrics::gauge!("repostats_github_remaining", &labels).set(remaining as f64);
        metrics::gauge!("repostats_github_exhausted", &labels).set(f64::from(u8::from(exhausted)));
    }
    Ok(())
}

/// Runs `roles` until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// When the database is unreachable at start or an address cannot be bound.
pub async fn run_roles(config: &Config, roles: Roles) -> anyhow::Result<()> {
    let store = connect(config).await?;
    conveyor_web::metrics::handle();
    let shutdown = shutdown_signal();
    let tasks = TaskTracker::new();
    let apps = AppResources::from_config(config)?;
    conveyor_mining::ensure_indexers(&store, &apps.mining)
        .await
        .context("creating mining's indexers")?;
    // A worker heartbeats three times a lease; silent for two leases it is gone (its jobs
    // have been rescued), so it no longer counts as online.
    let settings = WebSettings {
        auth: config.auth.clone(),
        proxies: config.trusted_proxies.clone(),
        workers_max: config.workers_max,
        worker_seen_within_ms: i64::try_from(config.lease.as_millis() * 2).unwrap_or(i64::MAX),
        ..WebSettings::default()
    };
    let state = AppState::new(store.clone(), registry(&apps), settings);

    if roles.http {
        config.check_exposure(config.listen)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        tracing::info!(address = %config.listen, "serving HTTP (docs at /api/docs)");
        // The one line a person starting `up` needs: where to point the browser.
        let mut shown = config.listen;
        if shown.ip().is_unspecified() {
            shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let token = if config.auth.is_open() {
            ""
        } else {
            " (log in with a CONVEYOR_API_TOKEN token)"
        };
        println!(
            "Conveyor is up: dashboard http://{shown}/{token}, API docs http://{shown}/api/docs"
        );
        let dashboard = conveyor_dashboard::Dashboard {
            snapshot: apps.snapshot.clone(),
            minitwit_url: config.minitwit_web.map(|a| format!("http://{a}")),
        };
        let (pages, open_pages) = conveyor_dashboard::routers(dashboard);
        let surface = conveyor_web::Surface {
            pages,
            open_pages,
            ..app_routes(&apps, &store)
        };
        let app = conveyor_web::router_for(state.clone(), surface, config.metrics_addr.is_none());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) =
                conveyor_web::serve(listener, app, stop.clone().cancelled_owned()).await
            {
                tracing::error!(%error, "HTTP server failed; stopping the process");
                stop.cancel();
            }
        });
    }
    if roles.http {
        serve_minitwit(config, &store, &tasks, &shutdown).await?;
        // repostats' snapshot follows the database's version.
        let fresh = conveyor_repostats::keep_fresh(
            store.clone(),
            apps.snapshot.clone(),
            Duration::from_secs(1),
        );
        let stop = shutdown.clone();
        tasks.spawn(async move {
            tokio::select! {
                () = fresh => {}
                () = stop.cancelled() => {}
            }
        });
        // Gauges read from the database for /metrics: average's worker gauges (W, busy and
        // idle slots, queued tasks) and repostats' GitHub budget, shared by every worker.
        let (state, stop) = (state.clone(), shutdown.clone());
        tasks.spawn(async move {
            loop {
                if let Err(error) = conveyor_average::api::worker_metrics(&state).await {
                    tracing::warn!(?error, "average: cannot read worker metrics");
                }
                if let Err(error) = github_gauges(&state.store).await {
                    tracing::warn!(%error, "repostats: cannot read the GitHub budget");
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    () = stop.cancelled() => break,
                }
            }
        });
    }
    if let Some(address) = config.metrics_addr {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding the metrics address {address}"))?;
        tracing::info!(%address, "serving /metrics");
        let app = conveyor_web::metrics_router(state.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = conveyor_web::serve(listener, app, stop.cancelled_owned()).await {
                tracing::error!(%error, "metrics server failed");
            }
        });
    }
    if roles.work {
        let worker = Worker::new(store.clone(), registry(&apps), worker_config(config));
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = worker.run(stop.clone()).await {
                tracing::error!(%error, "worker failed; stopping the process");
                stop.cancel();
            }
        });
        let scheduler = Scheduler::new(store.clone(), schedules(config)?);
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = scheduler.run(stop).await {
                tracing::error!(%error, "scheduler failed");
            }
        });
        tasks.spawn(conveyor_queue::cleaner::run_cleaner(
            store.clone(),
            config.retention,
            Duration::from_secs(60),
            shutdown.clone(),
        ));
    }
    tasks.close();
    tasks.wait().await;
    store.close().await;
    Ok(())
}

/// MiniTwit's two listeners, each when configured, and its count gauges.
async fn serve_minitwit(
    config: &Config,
    store: &Store,
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let settings = conveyor_minitwit::Settings {
        secure_cookies: config.minitwit_secure_cookies,
        public_origin: config.minitwit_public_origin.clone(),
        proxies: config.trusted_proxies.clone(),
        ..conveyor_minitwit::Settings::default()
    };
    let hasher = conveyor_minitwit::Hasher::standard();
    let app = conveyor_minitwit::Minitwit::new(store.clone(), hasher, settings);
    let listeners = [
        (
            config.minitwit_web,
            conveyor_minitwit::web_router(app.clone()),
            "pages",
        ),
        (
            config.minitwit_api,
            conveyor_minitwit::api_router(app),
            "simulator API",
        ),
    ];
    for (address, router, what) in listeners {
        let Some(address) = address else { continue };
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding MiniTwit's {what} to {address} (or set it off)"))?;
        tracing::info!(%address, "serving MiniTwit's {what}");
        let stop = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = conveyor_web::serve(listener, router, stop.cancelled_owned()).await
            {
                tracing::error!(%error, "MiniTwit server failed");
            }
        });
    }
    let counts = conveyor_minitwit::refresh_counts_every(store.clone(), Duration::from_secs(10));
    let stop = shutdown.clone();
    tasks.spawn(async move {
        tokio::select! {
            () = counts => {}
            () = stop.cancelled() => {}
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://conveyor.db"), "sqlite://conveyor.db");
    }
}
