//! The counting loop: counts to `target`, calling back every `step` so the caller can record
//! progress and check for cancellation. The callback runs once per step (a million
//! increments by default), so reporting costs nothing measurable next to the counting; the
//! `bench longtask` command measures exactly that ratio.

use std::hint::black_box;
use std::ops::ControlFlow;

/// Counts from `from` to `target`, calling `on_step(count)` after every `step` increments and
/// at the end. Returns the count reached: `target`, or less when `on_step` broke off.
///
/// `black_box` keeps the compiler from replacing the loop by its result, which is what makes
/// this a workload at all.
pub fn count(
    from: u64,
    target: u64,
    step: u64,
    mut on_step: impl FnMut(u64) -> ControlFlow<()>,
) -> u64 {
    let step = step.max(1);
    let mut n = from.min(target);
    while n < target {
        let end = n.saturating_add(step).min(target);
        while n < end {
            n = black_box(n + 1);
        }
        if on_step(n).is_break() {
            return n;
        }
    }
    n
}

/// The same count with no callback: the baseline the benchmark compares against.
pub fn count_bare(target: u64) -> u64 {
    let mut n = 0;
    while n < target {
        n = black_box(n + 1);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_to_the_target_reporting_every_step() {
        let mut seen = Vec::new();
        let reached = count(0, 10, 3, |n| {
            seen.push(n);
            ControlFlow::Continue(())
        });
        assert_eq!(reached, 10);
        assert_eq!(seen, vec![3, 6, 9, 10]);
        assert_eq!(count_bare(10), 10);
    }

    #[test]
    fn stops_when_the_callback_breaks() {
        let reached = count(0, 1_000, 100, |n| {
            if n >= 300 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(reached, 300);
    }

    #[test]
    fn resumes_from_a_count_already_reached() {
        let mut calls = 0;
        assert_eq!(
            count(700, 1_000, 100, |_| {
                calls += 1;
                ControlFlow::Continue(())
            }),
            1_000
        );
        assert_eq!(calls, 3);
        assert_eq!(
            count(5_000, 1_000, 100, |_| ControlFlow::Continue(())),
            1_000
        );
    }
}
