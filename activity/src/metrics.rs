//! Prometheus metrics of the activity log.

use prometheus::{exponential_buckets, Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

use crate::error::ActivityError;

/// The activity log's metrics, registered once per [`Registry`].
#[derive(Clone)]
pub(crate) struct Metrics {
    /// Events dropped because the queue was full or the log shut down.
    pub(crate) dropped: IntCounter,
    /// Events waiting in the queue after the last batch was taken.
    pub(crate) queue_depth: IntGauge,
    /// Events committed to the store.
    pub(crate) written: IntCounter,
    /// Events lost because their batch failed to write.
    pub(crate) write_failed: IntCounter,
    /// Time to write one batch.
    pub(crate) write_seconds: Histogram,
}

impl Metrics {
    pub(crate) fn register(registry: &Registry) -> Result<Self, ActivityError> {
        let metrics = Metrics {
            dropped: IntCounter::new(
                "swg_activity_dropped_total",
                "Activity events dropped because the queue was full or the log was shut down",
            )?,
            queue_depth: IntGauge::new(
                "swg_activity_queue_depth",
                "Activity events waiting to be written",
            )?,
            written: IntCounter::new(
                "swg_activity_written_total",
                "Activity events written to the store",
            )?,
            write_failed: IntCounter::new(
                "swg_activity_write_failed_total",
                "Activity events lost because their batch failed to write",
            )?,
            write_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "swg_activity_write_seconds",
                    "Time to write one batch of activity events",
                )
                .buckets(exponential_buckets(0.0005, 2.0, 14)?),
            )?,
        };
        registry.register(Box::new(metrics.dropped.clone()))?;
        registry.register(Box::new(metrics.queue_depth.clone()))?;
        registry.register(Box::new(metrics.written.clone()))?;
        registry.register(Box::new(metrics.write_failed.clone()))?;
        registry.register(Box::new(metrics.write_seconds.clone()))?;
        Ok(metrics)
    }
}
