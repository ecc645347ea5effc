//! Whether the activity log's last write succeeded, for readiness checks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A shared flag that the writer sets after every batch: failing after a batch it
/// could not store, healthy again after the next batch it stored.
///
/// A gateway whose events are lost should leave its load balancer's rotation, so
/// the binary's `/readyz` reads this flag.
#[derive(Debug, Clone, Default)]
pub struct WriteStatus(Arc<AtomicBool>);

impl WriteStatus {
    /// Reports whether the last batch failed to be stored.
    pub fn is_failing(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    pub(crate) fn set_failing(&self, failing: bool) {
        self.0.store(failing, Ordering::Release);
    }
}
