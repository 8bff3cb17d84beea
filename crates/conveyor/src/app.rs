//! The roles a process plays, wired together: the HTTP server, the worker, the periodic
//! scheduler and the cleaner, all stopped by one token that Ctrl-C or SIGTERM cancels.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use conveyor_queue::{
    Backoff, Registry, Schedule, Scheduler, Store, Worker, WorkerConfig, builtin,
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

/// The apps this binary runs, not yet configured: the one list a process is assembled
/// from. A new app is one crate that implements [`App`] and one line here.
pub fn apps() -> Vec<Box<dyn App>> {
    vec![
        Box::new(conveyor_longtask::Longtask),
        Box::new(conveyor_repostats::Repostats::default()),
        Box::new(conveyor_average::Average::default()),
        Box::new(conveyor_mining::MiningApp::default()),
        Box::new(conveyor_minitwit::MinitwitApp::default()),
    ]
}

/// The apps of a process, configured.
pub type Apps = Arc<[Arc<dyn App>]>;

/// Configures every app from a command line that their settings extended.
///
/// # Errors
/// Naming the app whose settings are unusable.
pub fn configure(
    apps: Vec<Box<dyn App>>,
    matches: &clap::ArgMatches,
    config: &Config,
) -> anyhow::Result<Apps> {
    let platform = config.platform();
    let mut configured = Vec::with_capacity(apps.len());
    for mut app in apps {
        app.configure(matches, &platform)
            .map_err(|e| anyhow::anyhow!("{}'s settings: {}", app.name(), chain(&*e)))?;
        configured.push(Arc::from(app));
    }
    Ok(configured.into())
}

/// An error's messages, outermost first.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    conveyor_web::fail::chain(error)
}

/// The apps whose pages the dashboard frames.
pub fn dashboard(apps: &Apps) -> conveyor_dashboard::Apps {
    conveyor_dashboard::Apps(apps.clone())
}

/// Every job kind this binary runs: the built-ins and each app's.
pub fn registry(apps: &[Arc<dyn App>]) -> Registry {
    let mut registry = Registry::new();
    builtin::register(&mut registry);
    for app in apps {
        app.register(&mut registry);
    }
    registry
}

/// Every app's periodic schedules.
///
/// # Errors
/// Naming the app whose schedule does not parse.
pub fn schedules(apps: &[Arc<dyn App>]) -> anyhow::Result<Vec<Schedule>> {
    let mut schedules = Vec::new();
    for app in apps {
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
pub fn app_routes(
    apps: &[Arc<dyn App>],
    alerts: &crate::alerts::Alerts,
    store: &Store,
) -> conveyor_web::Surface {
    let mut surface = conveyor_web::Surface::default();
    for app in apps {
        let routes = app.routes(store);
        surface.public = surface.public.merge(routes.public);
        surface.guarded = surface.guarded.merge(routes.guarded);
        surface.pages = surface.pages.merge(routes.pages);
        surface.open_pages = surface.open_pages.merge(routes.open_pages);
    }
    let router = crate::alerts::router(alerts.clone());
    if alerts.has_token() {
        surface.public = surface.public.merge(router);
    } else {
        surface.guarded = surface.guarded.merge(router);
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
pub async fn connect<A: AsRef<dyn App>>(config: &Config, apps: &[A]) -> anyhow::Result<Store> {
    let store = config
        .platform()
        .store()
        .await
        .map_err(|e| anyhow::anyhow!(chain(&*e)))?;
    for app in apps.iter().map(AsRef::as_ref) {
        app.migrate(&store)
            .await
            .with_context(|| format!("applying {}'s migrations", app.name()))?;
    }
    Ok(store)
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
pub async fn run_roles(config: &Config, apps: &Apps, roles: Roles) -> anyhow::Result<()> {
    let store = connect(config, apps).await?;
    let alerts = crate::alerts::Alerts::new(config.alerts.clone())?;
    conveyor_web::metrics::handle();
    let shutdown = shutdown_signal();
    let tasks = TaskTracker::new();
    for app in apps.iter() {
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
    let state = AppState::new(store.clone(), registry(apps), settings);

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
        let (pages, open_pages) = conveyor_dashboard::routers(dashboard(apps));
        let surface = conveyor_web::Surface {
            pages,
            open_pages,
            ..app_routes(apps, &alerts, &store)
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
        for app in apps.iter() {
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
        let worker = Worker::new(store.clone(), registry(apps), worker_config(config));
        let stop = shutdown.clone();
        let only_work = !roles.http;
        tasks.spawn(async move {
            match worker.run(stop.clone()).await {
                Err(error) => {
                    tracing::error!(%error, "worker failed; stopping the process");
                    stop.cancel();
                }
                // Asked to stop through the API: a `work` process exits (its orchestrator
                // decides what comes next); `up` keeps serving.
                Ok(()) if only_work && !stop.is_cancelled() => {
                    tracing::info!("the worker stopped on request; exiting");
                    stop.cancel();
                }
                Ok(()) => {}
            }
        });
        let scheduler = Scheduler::new(store.clone(), schedules(apps)?);
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
