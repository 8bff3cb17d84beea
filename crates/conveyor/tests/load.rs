//! The load tool against a live in-process server: the seed's smallest scenario passes every
//! check (on SQLite; the HTTP path is the same on PostgreSQL).

mod common;

use std::time::Duration;

use conveyor_longtask::load::{LongtaskLoad, Scenario};
use conveyor_queue::testing::TestDb;
use conveyor_queue::{QueueConfig, Worker, WorkerConfig};
use conveyor_web::{AppState, WebSettings};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_smallest_scenario_passes_every_check() {
    let db = TestDb::sqlite().await;
    let dir = std::env::temp_dir().join(format!("conveyor-load-test-{}", std::process::id()));
    let files = conveyor_average::Storage::local(&dir).unwrap();
    let apps = common::apps(files, None, None, conveyor_web::auth::Auth::open());
    let state = AppState::new(
        db.store.clone(),
        conveyor::app::registry(&apps),
        WebSettings::default(),
    );
    let app = conveyor_web::router_for(
        state,
        conveyor::app::app_routes(&apps, &common::no_alerts(), &db.store),
        true,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(conveyor_web::serve(
        listener,
        app,
        stop.clone().cancelled_owned(),
    ));
    let config = WorkerConfig {
        queues: vec![QueueConfig {
            name: conveyor_longtask::QUEUE.into(),
            concurrency: 2,
        }],
        ..WorkerConfig::default()
    };
    let worker = Worker::new(db.store.clone(), conveyor::app::registry(&apps), config);
    let worker = tokio::spawn(worker.run(stop.clone()));

    let options = LongtaskLoad {
        base_url: format!("http://{address}"),
        scenario: Scenario::Vu5Iter10,
        ramp_seconds: 120,
        // A debug build counts slowly; a smaller count keeps the test short.
        body: Some(r#"{"target": 1000000, "step": 100000}"#.to_owned()),
        max_polls: 60,
        json: true,
    };
    let run = tokio::time::timeout(
        Duration::from_secs(120),
        conveyor_longtask::load::run(options),
    );
    run.await
        .expect("the scenario ends")
        .expect("no failed checks, no errors");

    stop.cancel();
    worker.await.unwrap().unwrap();
    server.await.unwrap().unwrap();
    db.finish().await;
}
