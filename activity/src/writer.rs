//! The writer task: takes the queued events in batches and stores them in
//! transactions on a blocking thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::queue::Queue;
use crate::status::WriteStatus;
use crate::store::ActivityStore;

/// Most events one transaction takes; a larger backlog is written in several.
/// Larger batches cost less CPU per event because they share the commit and the
/// partly filled pages that each commit writes again (docs/benchmarks.md). At
/// about 500 bytes an event, this bounds a batch to some 25 MB.
const MAX_BACKLOG_BATCH: usize = 50_000;

/// Maximum pause between two looks at the queue.
const MAX_TICK: Duration = Duration::from_millis(50);

/// Requests from [`crate::ActivityLog`] to the writer task.
pub(crate) enum Control {
    /// Write every event queued before this request, then reply.
    Flush(oneshot::Sender<()>),
    /// Close the queue, write everything in it, reply and stop.
    Shutdown(oneshot::Sender<()>),
}

/// The writer's fixed inputs.
pub(crate) struct Writer {
    pub(crate) store: Arc<dyn ActivityStore>,
    pub(crate) metrics: Metrics,
    pub(crate) batch_size: usize,
    pub(crate) batch_interval: Duration,
    pub(crate) status: WriteStatus,
}

impl Writer {
    /// Runs until shut down, or until every [`crate::Recorder`] and the log are gone.
    ///
    /// The writer looks at the queue every [`Writer::tick`] instead of waiting on it,
    /// so recording an event never wakes the writer task. Waiting on the queue
    /// would cost a wake-up and a poll of this task per event. A batch is written
    /// at the first look that finds `batch_size` events queued, or finds events
    /// that have waited about `batch_interval`. It takes every queued event. While
    /// one batch is written the queue keeps filling, so recording never waits for
    /// the disk.
    pub(crate) async fn run(
        self,
        queue: Arc<Queue>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let tick = self.tick();
        let mut batch = Vec::new();
        // When the writer first saw the events now queued; they may have arrived
        // up to one tick earlier.
        let mut waiting_since: Option<tokio::time::Instant> = None;
        // Whether a full batch was already queued when the last write ended: the
        // writer is behind and looks again at once instead of after a tick.
        let mut behind = false;
        loop {
            let pause = if behind { Duration::ZERO } else { tick };
            tokio::select! {
                biased;
                command = control.recv() => match command {
                    Some(Control::Flush(done)) => {
                        batch = self.write_queued(&queue, batch, false).await;
                        waiting_since = None;
                        let _ = done.send(());
                    }
                    Some(Control::Shutdown(done)) => {
                        queue.close();
                        self.write_queued(&queue, batch, false).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        queue.close();
                        self.write_queued(&queue, batch, false).await;
                        return;
                    }
                },
                () = tokio::time::sleep(pause) => {
                    behind = false;
                    let queued = queue.len();
                    if queued == 0 {
                        // Once every recorder is gone, this task owns the only
                        // reference to the queue.
                        if Arc::strong_count(&queue) == 1 {
                            tracing::debug!("every activity recorder is gone; writer stops");
                            return;
                        }
                        waiting_since = None;
                        continue;
                    }
                    let now = tokio::time::Instant::now();
                    let since = *waiting_since.get_or_insert(now);
                    if queued < self.batch_size && now + tick < since + self.batch_interval {
                        continue;
                    }
                    // A batch that did not fill means the writer keeps up, so it
                    // may give way to other threads; a full one must not wait.
                    let keeping_up = queued < self.batch_size;
                    batch = self.write_queued(&queue, batch, keeping_up).await;
                    waiting_since = None;
                    behind = queue.len() >= self.batch_size;
                }
            }
        }
    }

    /// Returns how often the writer looks at the queue: a quarter of the batch
    /// interval, between 1 and 50 ms. An event then waits at most about
    /// `batch_interval` plus one tick.
    fn tick(&self) -> Duration {
        (self.batch_interval / 4).clamp(Duration::from_millis(1), MAX_TICK)
    }

    /// Takes every queued event and writes it, giving way to other threads now and
    /// then when `yielding`. Events that arrive meanwhile wait for the next look,
    /// so a flush under constant load still ends. Returns the emptied batch for
    /// reuse.
    async fn write_queued(
        &self,
        queue: &Queue,
        mut batch: Vec<Event>,
        yielding: bool,
    ) -> Vec<Event> {
        queue.take_all(&mut batch);
        self.metrics.queue_depth.set(queue.len() as i64);
        self.write(batch, yielding).await
    }

    /// Stores `batch` on a blocking thread, in transactions of at most
    /// [`MAX_BACKLOG_BATCH`] events (or `batch_size` if larger), and returns the
    /// emptied vector for reuse. `yielding` selects
    /// [`ActivityStore::insert_batch_yielding`].
    async fn write(&self, batch: Vec<Event>, yielding: bool) -> Vec<Event> {
        if batch.is_empty() {
            return batch;
        }
        let count = batch.len() as u64;
        let store = Arc::clone(&self.store);
        let metrics = self.metrics.clone();
        let status = self.status.clone();
        let transaction_size = MAX_BACKLOG_BATCH.max(self.batch_size);
        let outcome = tokio::task::spawn_blocking(move || {
            let mut batch = batch;
            for chunk in batch.chunks(transaction_size) {
                let started = Instant::now();
                let result = if yielding {
                    store.insert_batch_yielding(chunk)
                } else {
                    store.insert_batch(chunk)
                };
                metrics
                    .write_seconds
                    .observe(started.elapsed().as_secs_f64());
                let events = chunk.len() as u64;
                status.set_failing(result.is_err());
                match result {
                    Ok(()) => metrics.written.inc_by(events),
                    Err(error) => {
                        metrics.write_failed.inc_by(events);
                        tracing::error!(%error, events, "failed to write activity batch; its events are lost");
                    }
                }
            }
            // Free the events on this thread, because freeing the strings of a large
            // batch on a runtime thread delays the requests that thread serves.
            batch.clear();
            batch
        })
        .await;

        match outcome {
            Ok(batch) => batch,
            Err(error) => {
                self.status.set_failing(true);
                self.metrics.write_failed.inc_by(count);
                tracing::error!(%error, events = count, "activity batch write task failed; its events are lost");
                Vec::new()
            }
        }
    }
}
