//! The activity log: the queue, the writer and retention tasks, and the store.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::ActivityConfig;
use crate::error::ActivityError;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::recorder::Recorder;
use crate::retention;
use crate::sqlite::SqliteStore;
use crate::status::WriteStatus;
use crate::store::ActivityStore;
use crate::writer::{Control, Writer};

/// The running activity log.
///
/// Owns the writer task, which drains the queue fed by [`Recorder`]s, and the
/// retention task. Call [`ActivityLog::shutdown`] before the process exits, or
/// queued events are lost.
pub struct ActivityLog {
    store: Arc<dyn ActivityStore>,
    retention_days: u32,
    control: mpsc::UnboundedSender<Control>,
    writer: Mutex<Option<JoinHandle<()>>>,
    retention: JoinHandle<()>,
    status: WriteStatus,
}

impl ActivityLog {
    /// Opens (or creates) the SQLite store at `database` and starts the log on the
    /// current tokio runtime.
    ///
    /// Opening migrates the schema, which blocks briefly; call it at start-up.
    /// Registers the `swg_activity_*` metrics in `registry`.
    pub fn open(
        database: &Path,
        config: &ActivityConfig,
        registry: &prometheus::Registry,
    ) -> Result<(ActivityLog, Recorder), ActivityError> {
        config.validate()?;
        let store = SqliteStore::open(database)?;
        ActivityLog::start(Arc::new(store), config, registry)
    }

    /// Starts the log on an already open store, on the current tokio runtime.
    ///
    /// # Panics
    ///
    /// Panics when called outside a tokio runtime.
    pub fn start(
        store: Arc<dyn ActivityStore>,
        config: &ActivityConfig,
        registry: &prometheus::Registry,
    ) -> Result<(ActivityLog, Recorder), ActivityError> {
        config.validate()?;
        let metrics = Metrics::register(registry)?;
        let queue = Arc::new(Queue::new(config.queue_capacity));
        let (control, control_receiver) = mpsc::unbounded_channel();
        let status = WriteStatus::default();

        let writer = Writer {
            store: Arc::clone(&store),
            metrics: metrics.clone(),
            batch_size: config.batch_size,
            batch_interval: Duration::from_millis(config.batch_interval_ms),
            status: status.clone(),
        };
        let writer = tokio::spawn(writer.run(Arc::clone(&queue), control_receiver));
        let retention = tokio::spawn(retention::run(Arc::clone(&store), config.retention_days));

        let log = ActivityLog {
            store,
            retention_days: config.retention_days,
            control,
            writer: Mutex::new(Some(writer)),
            retention,
            status,
        };
        Ok((log, Recorder::new(queue, metrics)))
    }

    /// Returns the store, for queries.
    pub fn store(&self) -> Arc<dyn ActivityStore> {
        Arc::clone(&self.store)
    }

    /// Returns the flag that is set while the last batch failed to be stored.
    pub fn write_status(&self) -> WriteStatus {
        self.status.clone()
    }

    /// Waits until every event recorded before this call is written.
    ///
    /// Returns at once if the log has shut down.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// Deletes events older than the retention period now, besides the hourly run,
    /// and returns the number of rows deleted.
    pub async fn enforce_retention(&self) -> Result<u64, ActivityError> {
        retention::enforce_retention(&self.store, self.retention_days).await
    }

    /// Stops accepting events, writes every queued event and stops the tasks.
    ///
    /// Events recorded after this call are dropped and counted. Calling it again
    /// returns at once.
    pub async fn shutdown(&self) {
        self.retention.abort();
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(writer) = writer else {
            return;
        };
        let (done, wait) = oneshot::channel();
        if self.control.send(Control::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
        if let Err(error) = writer.await {
            tracing::error!(%error, "activity writer task failed during shutdown");
        }
        tracing::info!("activity log flushed and stopped");
    }
}

impl Drop for ActivityLog {
    fn drop(&mut self) {
        // The writer drains and stops on its own once the control channel closes.
        self.retention.abort();
    }
}
