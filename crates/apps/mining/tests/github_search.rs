//! The GitHub indexer selecting repositories as Frege did (`min_stars`, `min_forks`)
//! through the search API, against the fake GitHub: more matches than one query shows
//! (1,000), found in full by splitting the creation dates, each once.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use conveyor_mining::indexer::Hosts;
use conveyor_repostats::fake::{Fake, FakeConfig};
use serde_json::{Value, json};

/// Repositories the fake makes, created one second apart up to now.
const REPOS: usize = 2_600;

async fn fake_github() -> String {
    let config = FakeConfig {
        latency: Duration::ZERO,
        search_limit: 100_000,
        ..FakeConfig::default()
    };
    let fake = Arc::new(Fake::generated(REPOS, config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, fake.router()).await.unwrap() });
    url
}

/// Runs the indexer from its first cursor until it has caught up; every name it found, in
/// order, and how many batches it took.
async fn index_all(settings: &Value) -> (Vec<String>, usize) {
    let hosts = Hosts::standard();
    let github = hosts.get("github").unwrap();
    github.check(settings, &json!({})).unwrap();
    conveyor_web::install_tls_provider();
    let http = reqwest::Client::new();
    let mut cursor = json!({});
    let mut names = Vec::new();
    for batches in 1..=2_000 {
        let batch = github.next_batch(&http, settings, &cursor).await.unwrap();
        github.check(settings, &batch.cursor).unwrap();
        names.extend(batch.found.into_iter().map(|f| f.name));
        cursor = batch.cursor;
        if batch.exhausted {
            return (names, batches);
        }
    }
    panic!("the indexer did not catch up in 2,000 batches");
}

fn yesterday() -> String {
    (chrono::Utc::now() - chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string()
}

#[tokio::test]
async fn min_stars_finds_every_match_beyond_the_search_cap_once() {
    let base_url = fake_github().await;
    let settings = json!({"base_url": base_url, "min_stars": 20, "created_from": yesterday()});
    let (names, batches) = index_all(&settings).await;
    // The fake's repository n has (n * 7) % 50 stars: 30 of every 50 have 20 or more.
    let expected: BTreeSet<String> = (0..REPOS)
        .filter(|n| (n * 7) % 50 >= 20)
        .map(|n| format!("owner{}/repo-{n}", n % 37))
        .collect();
    assert!(expected.len() > 1_000, "more than one query shows");
    let found: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(found.len(), names.len(), "each repository once");
    assert_eq!(found, expected);
    assert!(batches > expected.len() / 100, "{batches} batches");
}

#[tokio::test]
async fn min_forks_and_no_forks_narrow_the_selection() {
    let base_url = fake_github().await;
    let settings = json!({"base_url": base_url, "min_forks": 15, "include_forks": false,
        "created_from": yesterday()});
    let (names, _) = index_all(&settings).await;
    // Repository n has (n * 3) % 20 forks and is a fork when n % 13 == 0.
    let expected: BTreeSet<String> = (0..REPOS)
        .filter(|n| (n * 3) % 20 >= 15 && n % 13 != 0)
        .map(|n| format!("owner{}/repo-{n}", n % 37))
        .collect();
    let found: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(found.len(), names.len(), "each repository once");
    assert_eq!(found, expected);
}
