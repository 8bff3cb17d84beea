//! How long a failed job waits before its next attempt.

use std::time::Duration;

use rand::Rng;

/// Exponential backoff with full jitter in its upper half: attempt `n` (1-based) waits
/// between `base * 2^(n-1) / 2` and `base * 2^(n-1)`, never more than `cap`. The half that is
/// never jittered keeps a thundering herd of failures spread without ever retrying at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed attempt, before jitter (default 1 s).
    pub base: Duration,
    /// Longest delay (default 1 hour).
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: i32) -> Duration {
        let exponent = attempt.clamp(1, 31) as u32 - 1;
        let full = self
            .base
            .checked_mul(1u32 << exponent)
            .unwrap_or(self.cap)
            .min(self.cap);
        let half = full / 2;
        half + rand::rng().random_range(Duration::ZERO..=full - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_per_attempt_within_their_jitter_band() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(10),
        };
        for attempt in 1..=5 {
            let full = Duration::from_millis(100 * (1 << (attempt - 1)));
            for _ in 0..50 {
                let delay = backoff.delay(attempt);
                assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
            }
        }
    }

    #[test]
    fn delays_stop_at_the_cap_even_for_absurd_attempts() {
        let backoff = Backoff::default();
        assert!(backoff.delay(1000) <= backoff.cap);
        assert!(backoff.delay(1000) >= backoff.cap / 2);
    }

    #[test]
    fn jitter_spreads_retries() {
        let backoff = Backoff::default();
        let delays: std::collections::HashSet<_> = (0..20).map(|_| backoff.delay(3)).collect();
        assert!(delays.len() > 1);
    }
}
