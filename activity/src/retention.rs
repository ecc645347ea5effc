//! Deleting events older than the retention period.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::ActivityError;
use crate::store::ActivityStore;

/// Rows deleted per transaction; small enough that a write batch waits at most a
/// few tens of milliseconds behind one chunk.
pub const RETENTION_CHUNK_ROWS: usize = 10_000;
/// How often retention runs after the run at start.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Pause between chunks, so queued batches get the write lock.
const PAUSE_BETWEEN_CHUNKS: Duration = Duration::from_millis(20);

/// Deletes every row older than `retention_days` days, in chunks of
/// [`RETENTION_CHUNK_ROWS`], and returns the number of rows deleted.
pub async fn enforce_retention(
    store: &Arc<dyn ActivityStore>,
    retention_days: u32,
) -> Result<u64, ActivityError> {
    let cutoff = OffsetDateTime::now_utc() - time::Duration::days(i64::from(retention_days));
    let mut total = 0;
    loop {
        let store = Arc::clone(store);
        let deleted = tokio::task::spawn_blocking(move || {
            store.delete_older_than(cutoff, RETENTION_CHUNK_ROWS)
        })
        .await
        .map_err(|error| ActivityError::Task(error.to_string()))??;
        total += deleted;
        if deleted == 0 {
            return Ok(total);
        }
        tokio::time::sleep(PAUSE_BETWEEN_CHUNKS).await;
    }
}

/// Enforces retention now and then every [`RETENTION_INTERVAL`], forever.
pub(crate) async fn run(store: Arc<dyn ActivityStore>, retention_days: u32) {
    let mut ticker = tokio::time::interval(RETENTION_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        match enforce_retention(&store, retention_days).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, retention_days, "deleted expired activity"),
            Err(error) => {
                tracing::error!(%error, "failed to delete expired activity; retrying in an hour")
            }
        }
    }
}
