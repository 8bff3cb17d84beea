//! `conveyor fake-github`: a fake GitHub API for repostats' tests and demos (rate limits,
//! ETags, latency), from recorded data or generated.

use std::path::PathBuf;

/// `conveyor fake-github` options.
#[derive(Debug, clap::Args)]
pub struct FakeGithubArgs {
    /// Address to serve on
    #[arg(long, default_value = "127.0.0.1:7000")]
    pub addr: std::net::SocketAddr,
    /// A directory laid out like shared/data/github/; without it, generated data
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Generated repositories (without --data)
    #[arg(long, default_value_t = 150)]
    pub repos: usize,
    /// Latency added to every answer, in milliseconds
    #[arg(long, default_value_t = 20)]
    pub latency_ms: u64,
    /// Core requests per window and token (GitHub: 60 anonymous, 5000 with a token)
    #[arg(long, default_value_t = 5000)]
    pub core_limit: i64,
    /// Search requests per window and token
    #[arg(long, default_value_t = 30)]
    pub search_limit: i64,
    /// Length of a rate window, in seconds
    #[arg(long, default_value_t = 3600)]
    pub window_seconds: u64,
    /// Every n-th request answers 429 with retry-after (0: never)
    #[arg(long, default_value_t = 0)]
    pub throttle_every: u64,
}

/// Serves the fake until Ctrl-C.
///
/// # Errors
/// Unreadable data or an address that cannot be bound.
pub async fn fake_github(args: FakeGithubArgs) -> conveyor_web::fail::Result<()> {
    use crate::fake::{Fake, FakeConfig};
    let config = FakeConfig {
        latency: std::time::Duration::from_millis(args.latency_ms),
        core_limit: args.core_limit,
        search_limit: args.search_limit,
        window: std::time::Duration::from_secs(args.window_seconds),
        throttle_every: args.throttle_every,
    };
    let fake = match &args.data {
        Some(dir) => Fake::from_dir(dir, config)?,
        None => Fake::generated(args.repos, config),
    };
    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    tracing::info!(address = %args.addr, "fake GitHub serving; point GITHUB_API_URL at it");
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    conveyor_web::serve(listener, std::sync::Arc::new(fake).router(), stop).await?;
    Ok(())
}
