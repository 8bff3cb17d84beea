//! # conveyor-dashboard: the place where a person sees and drives the system
//!
//! Server-rendered pages (askama) of queues, workers, jobs and every app, updated live over
//! Server-Sent Events, with assets embedded in the binary (no CDN). Pages read through the
//! engine's and the apps' own queries; every action (cancel, retry, concurrency, start a
//! task, submit a job, set W, edit an indexer) is a form that `live.js` sends to the public
//! JSON API, so the dashboard adds no second write path.
//!
//! ## Layout
//! - [`view`]: what each page shows, gathered from the store and the apps.
//! - [`page`]: the routes, the templates, and the live regions (`/dashboard/live/{region}/events`).
//! - [`login`]: the login page that turns the operator's token into a session cookie.
//! - [`chart`]: SVG bars and lines, drawn on the server.

pub mod chart;
pub mod login;
pub mod page;
pub mod view;

pub use page::{Apps, jobs_table, router, routers};
