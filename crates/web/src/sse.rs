//! The one server-sent-events loop: every stream here (a job's events, mining's activity,
//! the dashboard's live regions) reads the database on an interval and sends what changed,
//! which works the same whichever process made the change. A stream holds one of
//! [`crate::AppState::stream_permit`]'s permits until it ends, so open streams are bounded.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::OwnedSemaphorePermit;

/// What a stream reads each time round.
pub trait Poll: Send + 'static {
    /// The events to send now (often none), or `None` to end the stream.
    fn poll(&mut self) -> impl Future<Output = Option<Vec<Event>>> + Send;
}

/// A stream that polls `source` at once and then every `every`, sending its events in
/// order, until `source` says it has ended or the client goes away.
pub fn polled<P: Poll>(
    source: P,
    every: Duration,
    permit: OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    struct Loop<P> {
        source: P,
        queue: VecDeque<Event>,
        first: bool,
        _permit: OwnedSemaphorePermit,
    }
    let state = Loop {
        source,
        queue: VecDeque::new(),
        first: true,
        _permit: permit,
    };
    let stream = futures_util::stream::unfold(state, move |mut state| async move {
        loop {
            if let Some(event) = state.queue.pop_front() {
                return Some((Ok(event), state));
            }
            if !std::mem::take(&mut state.first) {
                tokio::time::sleep(every).await;
            }
            state.queue.extend(state.source.poll().await?);
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
