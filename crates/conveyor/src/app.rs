//! The roles a process plays, wired together: the HTTP server, the worker, the periodic
//! scheduler and the cleaner, all stopped by one token that Ctrl-C or SIGTERM cancels.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conveyor_queue::{
    Backoff, Registry, Schedule, Scheduler, Store, StoreOptions, Worker, WorkerConfig, builtin,
};
use conveyor_web::app::App;
use conveyor_web::{AppState, WebSettings};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

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
    /// repostats' refresh schedule, or "off".
    pub repostats_refresh: String,
    /// mining's indexer schedule, or "off".
    pub mining_index: String,
    /// MiniTwit's settings.
    pub minitwit: conveyor_minitwit::Settings,
    /// MiniTwit's page listener, if on.
    pub minitwit_web: Option<std::net::SocketAddr>,
    /// MiniTwit's simulator API listener, if on.
    pub minitwit_api: Option<std::net::SocketAddr>,
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
            repostats_refresh: config.repostats_refresh.clone(),
            mining_index: config.mining_index.clone(),
            minitwit: conveyor_minitwit::Settings {
                secure_cookies: config.minitwit_secure_cookies,
                public_origin: config.minitwit_public_origin.clone(),
                proxies: config.trusted_proxies.clone(),
                ..conveyor_minitwit::Settings::default()
            },
            minitwit_web: config.minitwit_web,
            minitwit_api: config.minitwit_api,
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
            repostats_refresh: "off".to_owned(),
            mining_index: "off".to_owned(),
            minitwit: conveyor_minitwit::Settings::default(),
            minitwit_web: None,
            minitwit_api: None,
        })
    }

    /// The apps this binary runs, each built from its settings: the one list a process is
    /// assembled from. A new app is one crate that implements [`App`] and one line here.
    pub fn apps(&self) -> Vec<Arc<dyn App>> {
        vec![
            Arc::new(conveyor_longtask::Longtask),
            Arc::new(conveyor_repostats::Repostats {
                github: self.github.clone(),
                snapshot: self.snapshot.clone(),
                per_ip: self.per_ip,
                refresh: self.repostats_refresh.clone(),
            }),
            Arc::new(conveyor_average::Average {
                files: self.files.clone(),
            }),
            Arc::new(conveyor_mining::MiningApp {
                mining: self.mining.clone(),
                require_key: self.mining_require_key,
                auth: self.auth.clone(),
                index: self.mining_index.clone(),
            }),
            Arc::new(conveyor_minitwit::MinitwitApp {
                settings: self.minitwit.clone(),
                web: self.minitwit_web,
                api: self.minitwit_api,
            }),
        ]
    }
}

impl AppResources {
    /// The apps whose pages the dashboard frames.
    pub fn dashboard(&self) -> conveyor_dashboard::Apps {
        conveyor_dashboard::Apps(self.apps().into())
    }
}

/// Every job kind this binary runs: the built-ins and each app's.
pub fn registry(apps: &AppResources) -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    for app in apps.apps() {
        app.register(&mut registry);
    }
    registry
}

/// Every app's periodic schedules.
///
/// # Errors
/// Naming the app whose schedule does not parse.
pub fn schedules(apps: &AppResources) -> anyhow::Result<Vec<Schedule>> {
    let mut schedules = Vec::new();
    for app in apps.apps() {
        schedules.extend(
            app.schedules()
                .with_context(|| format!("{}'s schedule", app.name()))?,
        );
    }
    Ok(schedules)
}

/// Every app's HTTP routes on the main listener, and the alert webhook's: public where an
/// app says so (the seeds' client-facing routes, routes with credentials of their own),
/// the rest behind the operator's token with the job API.
pub fn app_routes(apps: &AppResources, store: &Store) -> conveyor_web::Surface {
    let mut surface = conveyor_web::Surface::default();
    for app in apps.apps() {
        let routes = app.routes(store);
        surface.public = surface.public.merge(routes.public);
        surface.guarded = surface.guarded.merge(routes.guarded);
        surface.pages = surface.pages.merge(routes.pages);
        surface.open_pages = surface.open_pages.merge(routes.open_pages);
    }
    let alerts = crate::alerts::router(apps.alerts.clone());
    if apps.alerts.has_token() {
        surface.public = surface.public.merge(alerts);
    } else {
        surface.guarded = surface.guarded.merge(alerts);
    }
    surface
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
    connect_apps(config, &AppResources::from_config(config)?).await
}

/// [`connect`], migrating `apps`.
///
/// # Errors
/// As [`connect`].
pub async fn connect_apps(config: &Config, apps: &AppResources) -> anyhow::Result<Store> {
    let options = StoreOptions {
        max_connections: config.max_connections,
        ..StoreOptions::default()
    };
    let store = Store::connect_with(&config.database_url, &options)
        .await
        .with_context(|| format!("connecting to {}", redact(&config.database_url)))?;
    store.migrate().await.context("applying migrations")?;
    for app in apps.apps() {
        app.migrate(&store)
            .await
            .with_context(|| format!("applying {}'s migrations", app.name()))?;
    }
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

/// Runs `roles` until Ctrl-C or SIGTERM, then drains.
///
/// # Errors
/// When the database is unreachable at start or an address cannot be bound.
pub async fn run_roles(config: &Config, roles: Roles) -> anyhow::Result<()> {
    let apps = AppResources::from_config(config)?;
    let store = connect_apps(config, &apps).await?;
    conveyor_web::metrics::handle();
    let shutdown = shutdown_signal();
    let tasks = TaskTracker::new();
    for app in apps.apps() {
        app.prepare(&store)
            .await
            .map_err(|e| anyhow::anyhow!("preparing {}: {e}", app.name()))?;
    }
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
        let (pages, open_pages) = conveyor_dashboard::routers(apps.dashboard());
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
        // The apps' own listeners and the tasks an HTTP process runs for them.
        for app in apps.apps() {
            for listener in app.listeners(&store) {
                let bound = tokio::net::TcpListener::bind(listener.address)
                    .await
                    .with_context(|| {
                        format!(
                            "binding {} to {} (or set it off)",
                            listener.what, listener.address
                        )
                    })?;
                tracing::info!(address = %listener.address, "serving {}", listener.what);
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    if let Err(error) =
                        conveyor_web::serve(bound, listener.router, stop.cancelled_owned()).await
                    {
                        tracing::error!(%error, "{} failed", listener.what);
                    }
                });
            }
            for task in app.background(&state) {
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        () = task => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
        }
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
        let scheduler = Scheduler::new(store.clone(), schedules(&apps)?);
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

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_stay_out_of_messages() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://conveyor.db"), "sqlite://conveyor.db");
    }
}
