//! The job kind `longtask`: count to `target` (default 100,000,000), recording progress every
//! `step` (default 1,000,000); stop at the next step when cancelled; return the count and
//! the time taken.
//!
//! The loop runs on a blocking thread, not on the async runtime, so a long count never
//! starves other jobs or HTTP requests sharing the runtime. A rescued task resumes from its
//! last recorded progress instead of starting over.

use std::ops::ControlFlow;
use std::time::Instant;

use conveyor_queue::{JobContext, JobError, Registry};
use serde::{Deserialize, Serialize};

/// The job kind.
pub const KIND: &str = "longtask";
/// The queue its jobs go to, so their concurrency can be set apart from other work.
pub const QUEUE: &str = "longtask";
/// The seed's count.
pub const DEFAULT_TARGET: u64 = 100_000_000;
/// The seed's progress step.
pub const DEFAULT_STEP: u64 = 1_000_000;
/// Largest target accepted: about a quarter of an hour of counting on this machine.
pub const TARGET_MAX: u64 = 1_000_000_000_000;
/// Most progress records one task may write.
pub const STEPS_MAX: u64 = 1_000_000;

/// What to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountArgs {
    /// Count up to this (default 100,000,000; 1 to 10^12).
    #[serde(default = "default_target")]
    #[schema(minimum = 1, maximum = 1_000_000_000_000_i64)]
    pub target: u64,
    /// Record progress every this many (default 1,000,000; at least 1, at most `target`, and
    /// no more than 1,000,000 records per task).
    #[serde(default = "default_step")]
    #[schema(minimum = 1)]
    pub step: u64,
}

fn default_target() -> u64 {
    DEFAULT_TARGET
}

fn default_step() -> u64 {
    DEFAULT_STEP
}

impl Default for CountArgs {
    fn default() -> Self {
        Self {
            target: DEFAULT_TARGET,
            step: DEFAULT_STEP,
        }
    }
}

impl CountArgs {
    /// Checks the bounds; the message names the field.
    ///
    /// # Errors
    /// A sentence for the client.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=TARGET_MAX).contains(&self.target) {
            return Err(format!("target must be between 1 and {TARGET_MAX}"));
        }
        if self.step == 0 || self.step > self.target {
            return Err("step must be at least 1 and at most target".to_owned());
        }
        if self.target.div_ceil(self.step) > STEPS_MAX {
            return Err(format!(
                "step is too small: target / step must be at most {STEPS_MAX}"
            ));
        }
        Ok(())
    }
}

/// What a finished count returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CountResult {
    /// The count reached.
    pub count: u64,
    /// Time this attempt counted, in milliseconds.
    pub elapsed_ms: u64,
}

/// The job's loop: counts from `from` to `args.target`, recording progress on `ctx` every
/// step and stopping at the first step after cancellation. Returns the count reached.
/// Blocking: call it on a blocking thread.
pub fn count_reporting(ctx: &JobContext, from: u64, args: CountArgs) -> u64 {
    let total = i64::try_from(args.target).ok();
    crate::count::count(from, args.target, args.step, |n| {
        ctx.progress(i64::try_from(n).unwrap_or(i64::MAX), total, None);
        if ctx.is_cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
}

/// Registers the `longtask` kind.
pub fn register(registry: &mut Registry) {
    registry.register_public(KIND, run);
}

async fn run(args: CountArgs, ctx: JobContext) -> Result<CountResult, JobError> {
    args.validate().map_err(JobError::permanent)?;
    let from = ctx
        .resumed_progress()
        .and_then(|done| u64::try_from(done).ok())
        .map_or(0, |done| done - done % args.step);
    let counting = ctx.clone();
    let started = Instant::now();
    let reached = tokio::task::spawn_blocking(move || count_reporting(&counting, from, args))
        .await
        .map_err(|e| JobError::retry(format!("the counting thread failed: {e}")))?;
    if reached < args.target {
        return Err(JobError::retry(format!(
            "stopped at {reached} of {}",
            args.target
        )));
    }
    Ok(CountResult {
        count: reached,
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_bounded() {
        assert!(CountArgs::default().validate().is_ok());
        let bad = |target, step| CountArgs { target, step }.validate().unwrap_err();
        assert!(bad(10, 0).contains("step"));
        assert!(bad(0, 1).contains("target"));
        assert!(bad(10, 11).contains("step"));
        assert!(bad(TARGET_MAX + 1, 1_000_000).contains("target"));
        assert!(bad(10_000_000, 1).contains("step is too small"));
    }
}
