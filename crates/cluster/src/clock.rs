//! The node's clock: the one place wall-clock time is read. The engine never
//! reads it; the leader puts it into each log entry it proposes.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch from the system clock.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Most expired keys removed by one purge entry, so one entry never stalls
/// the node for long (Redis's active expiry is bounded per cycle too).
pub const PURGE_BATCH: u32 = 1000;
