//! # conveyor-repostats: the newest public GitHub repositories and their languages
//!
//! Seed `001`: list the last 100 public repositories, filter them, fetch each one's languages
//! in parallel, aggregate by language, and answer as fast as possible.
//!
//! ## Layout
//! - [`dashboard`]: its dashboard page (freshness, filters, languages, budget).
//! - [`model`]: what we keep of a repository.
//! - [`github`]: the client and the rate-limit governor shared through the database.
//! - [`jobs`]: `repostats.refresh` (periodic) and `repostats.languages` (one per repository).
//! - [`db`]: the rows; every write bumps a version.
//! - [`snapshot`]: the immutable in-memory view, filters and statistics.
//! - [`cli`]: `conveyor fake-github`, the fake GitHub for tests and demos.
//! - [`api`]: `/ping`, `/repos`, `/stats` served from the snapshot; status and refresh.
//! - [`fake`]: `conveyor fake-github`, GitHub's behaviour for tests and demos.

pub mod api;
pub mod cli;
pub mod dashboard;
pub mod db;
pub mod fake;
pub mod github;
pub mod jobs;
pub mod model;
pub mod snapshot;

pub use api::{admin_router, keep_fresh, public_router, router};
pub use github::{Github, GithubConfig};
pub use jobs::{QUEUE, register};
pub use snapshot::SnapshotCell;

/// Applies the app's migrations (its tables beside the engine's).
///
/// # Errors
/// When a migration fails.
pub async fn migrate(store: &conveyor_queue::Store) -> conveyor_queue::Result<()> {
    store
        .migrate_with(
            sqlx::migrate!("./migrations/postgres"),
            sqlx::migrate!("./migrations/sqlite"),
        )
        .await
}

/// The app, as the binary lists it.
#[derive(Clone)]
pub struct Repostats {
    /// The GitHub client (`GITHUB_API_URL`, `GITHUB_TOKENS`).
    pub github: Github,
    /// The snapshot the routes read.
    pub snapshot: SnapshotCell,
    /// Requests a second per client address on the seed's routes (0: no limit).
    pub per_ip: u32,
    /// When to refresh: a cron expression (UTC), or `off`.
    pub refresh: String,
    /// Why it does not refresh on a schedule, when its settings turned that off.
    pub offline: Option<String>,
}

/// Publishes the GitHub budget as stored (so every server reports the one budget, not what
/// each worker last saw): `repostats_github_remaining` and `repostats_github_exhausted`
/// (1 while a token's bucket waits for its reset or a secondary limit).
///
/// # Errors
/// The database's.
pub async fn budget_gauges(store: &conveyor_queue::Store) -> sqlx::Result<()> {
    let now = conveyor_queue::clock::now_ms();
    for (token, bucket, remaining, reset_at, blocked_until) in github::budget(store).await? {
        let exhausted = (remaining <= 0 && reset_at > now) || blocked_until > now;
        let labels = [("token", token), ("bucket", bucket)];
        metrics::gauge!("repostats_github_remaining", &labels).set(remaining as f64);
        metrics::gauge!("repostats_github_exhausted", &labels).set(f64::from(u8::from(exhausted)));
    }
    Ok(())
}

impl Default for Repostats {
    /// GitHub anonymously, no limit, no refresh: what [`App::configure`] then sets.
    ///
    /// [`App::configure`]: conveyor_web::app::App::configure
    fn default() -> Self {
        Self {
            github: Github::new(GithubConfig::default()).expect("an HTTP client with no options"),
            snapshot: SnapshotCell::default(),
            per_ip: 0,
            refresh: "off".to_owned(),
            offline: None,
        }
    }
}

/// repostats' settings.
#[derive(Debug, Clone, clap::Args)]
#[group(id = "repostats_settings")]
#[command(next_help_heading = "repostats settings")]
pub struct Flags {
    /// When repostats lists the newest repositories: a cron expression (UTC), or "off"
    #[arg(long, env = "REPOSTATS_REFRESH", default_value = "*/10 * * * *")]
    pub repostats_refresh: String,
    /// repostats' /ping, /repos, /stats: requests a second per client IP, bursts of twice
    /// that; 0 for no limit
    #[arg(long, env = "REPOSTATS_PER_IP", default_value_t = 200)]
    pub repostats_per_ip: u32,
    /// GitHub's API, or a fake's URL (`conveyor fake-github`)
    #[arg(long, env = "GITHUB_API_URL", default_value = github::GITHUB)]
    pub github_api_url: String,
    /// GitHub tokens, comma-separated, used in turn [default: none: anonymous, 60 requests
    /// an hour]
    #[arg(long, env = "GITHUB_TOKENS", value_parser = secret, hide_env_values = true)]
    pub github_tokens: Option<secrecy::SecretString>,
}

/// A flag's value as a secret: never printed by `Debug`.
fn secret(text: &str) -> Result<secrecy::SecretString, std::convert::Infallible> {
    Ok(secrecy::SecretString::from(text))
}

impl conveyor_web::app::App for Repostats {
    fn name(&self) -> &'static str {
        "repostats"
    }

    fn migrate<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, conveyor_queue::Result<()>> {
        Box::pin(migrate(store))
    }

    fn register(&self, registry: &mut conveyor_queue::Registry) {
        register(registry, self.github.clone());
    }

    /// A refresh at start when the stored data is older than the schedule's period (or
    /// there is none), so `/repos` is not empty until the next tick.
    fn prepare<'a>(
        &'a self,
        store: &'a conveyor_queue::Store,
    ) -> futures_util::future::BoxFuture<'a, Result<(), conveyor_web::app::SetupError>> {
        Box::pin(async move {
            let Some(schedule) = self.schedules()?.into_iter().next() else {
                return Ok(());
            };
            let now = conveyor_queue::clock::now_ms();
            let period = match schedule.next_after(now) {
                Some(next) => schedule.next_after(next).map_or(0, |after| after - next),
                None => 0,
            };
            let stale = db::refreshed_at(store)
                .await?
                .is_none_or(|at| now - at > period);
            if stale {
                let job = conveyor_queue::NewJob::new(jobs::REFRESH, serde_json::json!({}))
                    .queue(QUEUE)
                    .unique_key("repostats-refresh-at-start");
                store.enqueue(job).await?;
                tracing::info!("repostats: data older than the refresh period; refreshing now");
            }
            Ok(())
        })
    }

    fn schedules(&self) -> Result<Vec<conveyor_queue::Schedule>, conveyor_queue::Error> {
        if self.refresh == "off" {
            return Ok(Vec::new());
        }
        let job = conveyor_queue::NewJob::new(jobs::REFRESH, serde_json::json!({})).queue(QUEUE);
        Ok(vec![conveyor_queue::Schedule::new(
            "repostats-refresh",
            &self.refresh,
            job,
        )?])
    }

    fn settings(&self, command: clap::Command) -> clap::Command {
        <Flags as clap::Args>::augment_args(command)
    }

    fn configure(
        &mut self,
        matches: &clap::ArgMatches,
        _platform: &conveyor_web::app::Platform,
    ) -> conveyor_web::fail::Result<()> {
        use clap::FromArgMatches;
        use secrecy::ExposeSecret;
        let flags = Flags::from_arg_matches(matches)?;
        let tokens = flags.github_tokens.as_ref().map_or_else(Vec::new, |list| {
            list.expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(secrecy::SecretString::from)
                .collect()
        });
        self.github = Github::new(GithubConfig {
            api_url: flags.github_api_url.trim_end_matches('/').to_owned(),
            tokens,
            ..GithubConfig::default()
        })?;
        self.per_ip = flags.repostats_per_ip;
        self.refresh = flags.repostats_refresh;
        // Anonymous GitHub allows 60 requests an hour, which one refresh spends: a schedule
        // that is not asked for (no token, GitHub's own address by default) stays off, said
        // once here and on the page.
        let explicit_url =
            matches.value_source("github_api_url") != Some(clap::parser::ValueSource::DefaultValue);
        if self.refresh != "off" && flags.github_tokens.is_none() && !explicit_url {
            let reason = "repostats does not call GitHub on a schedule without a token \
                          (GITHUB_TOKENS) or an explicit GITHUB_API_URL (conveyor fake-github \
                          serves one); \"Refresh now\" still works";
            tracing::warn!("{reason}");
            self.offline = Some(reason.to_owned());
            self.refresh = "off".to_owned();
        }
        Ok(())
    }

    fn commands(&self) -> Vec<(conveyor_web::app::Mount, clap::Command)> {
        vec![(
            conveyor_web::app::Mount::Top,
            conveyor_web::app::command_with::<cli::FakeGithubArgs>(
                "fake-github",
                "A fake GitHub API for repostats' tests and demos (rate limits, ETags, latency)",
            ),
        )]
    }

    fn run<'a>(
        &'a self,
        _mount: conveyor_web::app::Mount,
        _name: &'a str,
        matches: &'a clap::ArgMatches,
        _platform: &'a conveyor_web::app::Platform,
    ) -> futures_util::future::BoxFuture<'a, conveyor_web::fail::Result<()>> {
        use clap::FromArgMatches;
        Box::pin(
            async move { cli::fake_github(cli::FakeGithubArgs::from_arg_matches(matches)?).await },
        )
    }

    fn routes(&self, _store: &conveyor_queue::Store) -> conveyor_web::Surface {
        conveyor_web::Surface {
            public: public_router(self.snapshot.clone(), self.per_ip),
            guarded: admin_router(self.snapshot.clone()),
            ..conveyor_web::Surface::default()
        }
    }

    fn background(
        &self,
        state: &conveyor_web::AppState,
    ) -> Vec<futures_util::future::BoxFuture<'static, ()>> {
        let store = state.store.clone();
        let fresh = keep_fresh(
            store.clone(),
            self.snapshot.clone(),
            std::time::Duration::from_secs(1),
        );
        let gauges = conveyor_web::app::every(
            std::time::Duration::from_secs(5),
            "repostats' GitHub budget",
            move || {
                let store = store.clone();
                async move { budget_gauges(&store).await }
            },
        );
        vec![Box::pin(fresh), gauges]
    }

    fn page(&self) -> Option<&dyn conveyor_web::app::Page> {
        Some(self)
    }
}

#[cfg(test)]
mod settings_tests {
    use conveyor_web::app::{App, Platform};

    use super::Repostats;

    fn configured(args: &[&str]) -> Repostats {
        let mut app = Repostats::default();
        let command = app.settings(clap::Command::new("up").no_binary_name(true));
        let matches = command.try_get_matches_from(args).unwrap();
        app.configure(&matches, &Platform::default()).unwrap();
        app
    }

    #[test]
    fn no_schedule_calls_github_anonymously_unless_asked() {
        if std::env::var_os("GITHUB_TOKENS").is_some()
            || std::env::var_os("GITHUB_API_URL").is_some()
        {
            eprintln!("skipped: GITHUB_TOKENS or GITHUB_API_URL is set in this environment");
            return;
        }
        let anonymous = configured(&[]);
        assert_eq!(anonymous.refresh, "off");
        assert!(
            anonymous
                .offline
                .as_deref()
                .unwrap()
                .contains("GITHUB_TOKENS")
        );
        let fake = configured(&["--github-api-url", "http://127.0.0.1:7000"]);
        assert_eq!(fake.refresh, "*/10 * * * *");
        assert!(fake.offline.is_none());
        let token = configured(&["--github-tokens", "ghp_x"]);
        assert_eq!(token.refresh, "*/10 * * * *");
        let off = configured(&["--repostats-refresh", "off"]);
        assert!(off.offline.is_none(), "off by choice says nothing");
    }
}
