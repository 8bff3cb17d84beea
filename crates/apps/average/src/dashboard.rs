//! average's dashboard page: submit a job, set W, and the last twenty jobs with their
//! status, progress and timings, live.

use askama::Template;
use conveyor_queue::{JobState, Store};
use conveyor_web::AppState;
use conveyor_web::app::Page;
use conveyor_web::page::PageError;
use futures_util::future::BoxFuture;

use crate::Average;

struct AverageRow {
    id: i64,
    files: i64,
    entries: i64,
    status: String,
    percent: i64,
    mean: String,
    timings: String,
    error: String,
}

struct AverageData {
    w: String,
    slots: i64,
    busy: i64,
    waiting: i64,
    jobs: Vec<AverageRow>,
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Content {
    w: String,
    data: AverageData,
}

#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct Live {
    data: AverageData,
}

async fn average_data(store: &Store) -> Result<AverageData, PageError> {
    let queue = crate::QUEUE;
    let w = store
        .queue_settings()
        .await?
        .into_iter()
        .find(|(q, _)| q == queue)
        .map(|(_, c)| c);
    let live = store.workers(60_000).await?;
    let slots: i64 = live
        .iter()
        .filter_map(|w| w.queues.get(queue).and_then(serde_json::Value::as_i64))
        .sum();
    let counts = store.queue_counts().await?;
    let count = |s: JobState| {
        counts
            .iter()
            .filter(|q| q.queue == queue)
            .flat_map(|q| q.by_state.iter())
            .filter(|(t, _)| *t == s)
            .map(|(_, n)| *n)
            .sum::<i64>()
    };
    let rows = crate::db::list(store, None, 20).await?;
    let seconds = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2} s", (b - a) as f64 / 1000.0),
        _ => "-".into(),
    };
    let mut jobs = Vec::with_capacity(rows.len());
    for r in rows {
        // The same status and progress as the API's resource.
        let (status, progress) = crate::api::progress(store, &r).await?;
        jobs.push(AverageRow {
            id: r.id,
            files: r.files,
            entries: r.entries,
            percent: progress.percent as i64,
            mean: r.mean.map_or("-".into(), |m| format!("{m:.4}")),
            timings: format!(
                "generation {}, processing {}",
                seconds(Some(r.created_at), r.generated_at),
                seconds(r.generated_at, r.finished_at)
            ),
            error: r.error.unwrap_or_default(),
            status,
        });
    }
    Ok(AverageData {
        w: w.map_or_else(|| "(workers' default)".into(), |w| w.to_string()),
        slots,
        busy: count(JobState::Running),
        waiting: count(JobState::Available),
        jobs,
    })
}

impl Page for Average {
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> BoxFuture<'a, Result<String, PageError>> {
        Box::pin(async move {
            let data = average_data(&state.store).await?;
            let w = data
                .w
                .parse::<u32>()
                .map_or_else(|_| "4".into(), |w| w.to_string());
            Ok(Content { w, data }.render()?)
        })
    }

    fn live<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> Option<BoxFuture<'a, Result<String, PageError>>> {
        Some(Box::pin(async move {
            Ok(Live {
                data: average_data(&state.store).await?,
            }
            .render()?)
        }))
    }
}
