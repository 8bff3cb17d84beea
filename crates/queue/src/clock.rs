//! Time as the engine stores it: milliseconds since the Unix epoch.
//!
//! Every time in the database is taken from the clock of the process that writes it, not the
//! database server's, so the same SQL text runs on both backends and tests can reason about it.
//! Workers on several machines therefore need synchronised clocks (NTP); the default lease of
//! 15 s is far above ordinary skew.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    // A clock before 1970 is a broken machine; treat it as the epoch rather than panic.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A duration in whole milliseconds, saturating.
pub fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
