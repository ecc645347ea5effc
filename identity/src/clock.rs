//! Wall-clock time in the unit every signed value uses.

use std::time::{SystemTime, UNIX_EPOCH};

/// Returns the current time in whole seconds since the Unix epoch.
///
/// A clock set before 1970 reads as 0, which makes every signed value look
/// expired rather than valid forever.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}
