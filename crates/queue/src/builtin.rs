//! Built-in job kinds for tests, demos and benchmarks: `noop`, `sleep {ms}`, `fail {times}`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::context::JobContext;
use crate::handler::{JobError, Registry};

/// Longest `sleep` accepted: a day.
pub const SLEEP_MAX_MS: u64 = 24 * 3600 * 1000;

/// Arguments of `sleep`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SleepArgs {
    /// How long to sleep, in milliseconds (at most [`SLEEP_MAX_MS`]).
    #[serde(deserialize_with = "bounded_ms")]
    pub ms: u64,
}

/// Refuses sleeps over [`SLEEP_MAX_MS`] when the job is submitted, not when it runs.
fn bounded_ms<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let ms = u64::deserialize(deserializer)?;
    if ms > SLEEP_MAX_MS {
        return Err(serde::de::Error::custom(format!(
            "ms must be at most {SLEEP_MAX_MS} (a day)"
        )));
    }
    Ok(ms)
}

/// Arguments of `fail`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailArgs {
    /// How many attempts fail before one succeeds (at most 100, the most attempts a job
    /// may have).
    #[serde(deserialize_with = "bounded_times")]
    pub times: u32,
}

fn bounded_times<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u32, D::Error> {
    let times = u32::deserialize(deserializer)?;
    let max = crate::job::limits::MAX_ATTEMPTS as u32;
    if times > max {
        return Err(serde::de::Error::custom(format!(
            "times must be at most {max}, not {times}"
        )));
    }
    Ok(times)
}

/// Registers `noop`, `sleep` and `fail`.
pub fn register(registry: &mut Registry) {
    registry.register_public("noop", |_: Value, _ctx: JobContext| async { Ok(()) });
    registry.register_public("sleep", |args: SleepArgs, ctx: JobContext| async move {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(args.ms)) => Ok(json!({ "slept_ms": args.ms })),
            () = ctx.cancelled() => Err(JobError::retry("stopped while sleeping")),
        }
    });
    registry.register_public("fail", |args: FailArgs, ctx: JobContext| async move {
        let attempt = u32::try_from(ctx.attempt()).unwrap_or(0);
        if attempt <= args.times {
            Err(JobError::retry(format!(
                "failing attempt {attempt} of the first {} on purpose",
                args.times
            )))
        } else {
            Ok(json!({ "succeeded_on_attempt": attempt }))
        }
    });
}
