//! The hot-path handle that queues events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::queue::Queue;

/// Minimum time between two warnings about dropped events.
const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Queues events for the writer without waiting for it.
///
/// Cheap to clone; every clone feeds the same queue. Recording holds the queue's
/// mutex only to move the event in, and never touches the disk: when the queue is
/// full the event is dropped and counted in `swg_activity_dropped_total`.
#[derive(Clone)]
pub struct Recorder {
    queue: Arc<Queue>,
    drops: Arc<DropWarning>,
    metrics: Metrics,
}

impl Recorder {
    pub(crate) fn new(queue: Arc<Queue>, metrics: Metrics) -> Self {
        Recorder {
            queue,
            drops: Arc::new(DropWarning::new()),
            metrics,
        }
    }

    /// Queues `event`, or drops it if the queue is full or the log has shut down.
    ///
    /// Oversized text fields are truncated here so that a long URL cannot inflate the
    /// queue's memory.
    pub fn record(&self, mut event: Event) {
        event.truncate_fields();
        if !self.queue.push(event) {
            self.metrics.dropped.inc();
            self.drops.dropped();
        }
    }
}

/// Rate limit for the warning about dropped events: at most one warning per
/// [`DROP_WARNING_INTERVAL`], carrying the number dropped since the previous one.
struct DropWarning {
    start: Instant,
    /// Milliseconds after `start` of the last warning, or `u64::MAX` before the first.
    last_warning_ms: AtomicU64,
    since_warning: AtomicU64,
}

impl DropWarning {
    fn new() -> Self {
        DropWarning {
            start: Instant::now(),
            last_warning_ms: AtomicU64::new(u64::MAX),
            since_warning: AtomicU64::new(0),
        }
    }

    fn dropped(&self) {
        self.since_warning.fetch_add(1, Ordering::Relaxed);
        let now_ms = self.start.elapsed().as_millis() as u64;
        let last = self.last_warning_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX
            || now_ms.saturating_sub(last) >= DROP_WARNING_INTERVAL.as_millis() as u64;
        // Only the thread that wins the exchange warns, so concurrent drops log once.
        if due
            && self
                .last_warning_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let count = self.since_warning.swap(0, Ordering::Relaxed);
            tracing::warn!(
                dropped = count,
                "activity queue full or closed; dropped events since the last warning"
            );
        }
    }
}
