//! Times bulk actions over 10,000 jobs (`Store::bulk`): cancel, retry, cancel, delete.
//!
//!     cargo run --release -p conveyor-queue --example bulk               # SQLite
//!     cargo run --release -p conveyor-queue --example bulk -- postgres://postgres@127.0.0.1/test

use std::time::Instant;

use conveyor_queue::scratch::ScratchDb;
use conveyor_queue::{BulkAction, JobFilter, NewJob};
use serde_json::json;

#[tokio::main]
async fn main() -> conveyor_queue::Result<()> {
    let db = match std::env::args().nth(1) {
        Some(url) => ScratchDb::new_postgres(&url).await?,
        None => ScratchDb::new_sqlite().await?,
    };
    let jobs: Vec<NewJob> = (0..10_000)
        .map(|n| NewJob::new("noop", json!({ "n": n })).queue("bulk"))
        .collect();
    db.store.enqueue_many(&jobs).await?;
    let filter = JobFilter {
        queue: Some("bulk".into()),
        ..JobFilter::default()
    };
    for action in [
        BulkAction::Cancel,
        BulkAction::Retry,
        BulkAction::Cancel,
        BulkAction::Delete,
    ] {
        let started = Instant::now();
        let outcome = db.store.bulk(action, &filter, false).await?;
        println!(
            "{action:?}: {} of {} jobs in {:.0} ms",
            outcome.done,
            outcome.matched,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    db.finish().await;
    Ok(())
}
