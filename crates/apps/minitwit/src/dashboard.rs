//! MiniTwit's dashboard page: where its pages are served, and its counts.

use askama::Template;
use conveyor_web::AppState;
use conveyor_web::app::Page;
use conveyor_web::page::PageError;
use futures_util::future::BoxFuture;

use crate::MinitwitApp;

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Content {
    url: Option<String>,
    users: i64,
    messages: i64,
    follows: i64,
}

impl Page for MinitwitApp {
    fn render<'a>(
        &'a self,
        state: &'a AppState,
        _query: &'a str,
    ) -> BoxFuture<'a, Result<String, PageError>> {
        Box::pin(async move {
            let (users, messages, follows) = crate::db::counts(&state.store).await?;
            Ok(Content {
                url: self.web.map(|a| format!("http://{a}")),
                users,
                messages,
                follows,
            }
            .render()?)
        })
    }
}
