//! longtask's dashboard page: a form that starts a task, and the last twenty tasks with
//! their progress, live.

use askama::Template;
use conveyor_queue::JobFilter;
use conveyor_web::AppState;
use conveyor_web::app::Page;
use conveyor_web::page::PageError;
use futures_util::future::BoxFuture;

use crate::Longtask;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Content {
    table: String,
}

#[derive(Template)]
#[template(path = "dashboard_live.html")]
struct Live {
    table: String,
}

/// The last twenty tasks as the dashboard's job table.
async fn table(state: &AppState) -> Result<String, PageError> {
    let filter = JobFilter {
        kind: Some(crate::KIND.into()),
        limit: 20,
        ..JobFilter::default()
    };
    let rows = conveyor_dashboard::view::jobs(&state.store, &filter).await?;
    Ok(conveyor_dashboard::jobs_table(rows)?)
}

impl Page for Longtask {
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> BoxFuture<'a, Result<String, PageError>> {
        Box::pin(async move {
            Ok(Content {
                table: table(state).await?,
            }
            .render()?)
        })
    }

    fn live<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> Option<BoxFuture<'a, Result<String, PageError>>> {
        Some(Box::pin(async move {
            Ok(Live {
                table: table(state).await?,
            }
            .render()?)
        }))
    }
}
