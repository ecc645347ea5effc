//! The writer task: takes events off the queue in batches and stores each batch in
//! one transaction on a blocking thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::event::Event;
use crate::metrics::Metrics;
use crate::store::ActivityStore;

/// Maximum events one transaction takes when the writer has fallen behind.
/// Larger batches cost less per event because they share commits and dirty index
/// pages: about 17 µs per event at 10 000 events against 38 µs at 1 000, measured
/// with this crate's examples on a loaded 2-core machine. At about 500 bytes an
/// event, this bounds a batch to some 25 MB.
const MAX_BACKLOG_BATCH: usize = 50_000;

/// Longest pause between two looks at the queue.
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
}

impl Writer {
    /// Runs until shut down, or until every [`crate::Recorder`] and the log are gone.
    ///
    /// The writer looks at the queue every [`Writer::tick`] instead of waiting on it,
    /// so recording an event never wakes the writer task: at 100 000 events/s, a
    /// wake-up per event would cost more CPU than writing it. A batch is written
    /// at the first look that finds `batch_size` events queued, or finds events
    /// that have waited about `batch_interval`. It takes every queued event, up to
    /// [`MAX_BACKLOG_BATCH`]. While one batch is written the queue keeps filling,
    /// so recording never waits for the disk.
    pub(crate) async fn run(
        self,
        mut events: mpsc::Receiver<Event>,
        mut control: mpsc::UnboundedReceiver<Control>,
    ) {
        let tick = self.tick();
        let mut batch = Vec::with_capacity(self.batch_size);
        // When the writer first saw the events now queued; they may have arrived
        // up to one tick earlier.
        let mut waiting_since: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                biased;
                command = control.recv() => match command {
                    Some(Control::Flush(done)) => {
                        batch = self.drain_queued(&mut events, batch).await;
                        waiting_since = None;
                        let _ = done.send(());
                    }
                    Some(Control::Shutdown(done)) => {
                        self.drain_closed(&mut events, batch).await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.drain_closed(&mut events, batch).await;
                        return;
                    }
                },
                () = tokio::time::sleep(tick) => {
                    let queued = events.len();
                    if queued == 0 {
                        if events.is_closed() {
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
                    self.take_backlog(&mut events, &mut batch).await;
                    self.metrics.queue_depth.set(events.len() as i64);
                    batch = self.write(batch).await;
                    waiting_since = None;
                }
            }
        }
    }

    /// How often the writer looks at the queue: a quarter of the batch interval,
    /// between 1 and 50 ms, so an event waits at most about `batch_interval` plus
    /// one tick.
    fn tick(&self) -> Duration {
        (self.batch_interval / 4).clamp(Duration::from_millis(1), MAX_TICK)
    }

    /// Adds the events already queued to `batch`, without waiting for more.
    async fn take_backlog(&self, events: &mut mpsc::Receiver<Event>, batch: &mut Vec<Event>) {
        let room = MAX_BACKLOG_BATCH
            .max(self.batch_size)
            .saturating_sub(batch.len());
        let queued = events.len().min(room);
        if queued > 0 {
            events.recv_many(batch, queued).await;
        }
    }

    /// Writes the events queued right now, not those that arrive meanwhile, so a
    /// flush under constant load still ends.
    async fn drain_queued(
        &self,
        events: &mut mpsc::Receiver<Event>,
        mut batch: Vec<Event>,
    ) -> Vec<Event> {
        let mut remaining = events.len();
        while remaining > 0 {
            let take = remaining.min(self.batch_size - batch.len());
            let received = events.recv_many(&mut batch, take).await;
            if received == 0 {
                break;
            }
            remaining -= received.min(remaining);
            if batch.len() == self.batch_size {
                batch = self.write(batch).await;
            }
        }
        self.metrics.queue_depth.set(events.len() as i64);
        self.write(batch).await
    }

    /// Closes the queue, so further records are dropped, and writes what it contains.
    async fn drain_closed(&self, events: &mut mpsc::Receiver<Event>, mut batch: Vec<Event>) {
        events.close();
        loop {
            let room = self.batch_size - batch.len();
            let received = events.recv_many(&mut batch, room).await;
            if received == 0 {
                break;
            }
            if batch.len() == self.batch_size {
                batch = self.write(batch).await;
            }
        }
        self.write(batch).await;
        self.metrics.queue_depth.set(0);
    }

    /// Stores `batch` on a blocking thread and returns the emptied vector for reuse.
    async fn write(&self, batch: Vec<Event>) -> Vec<Event> {
        if batch.is_empty() {
            return batch;
        }
        let count = batch.len() as u64;
        let store = Arc::clone(&self.store);
        let started = Instant::now();
        let outcome = tokio::task::spawn_blocking(move || {
            let result = store.insert_batch(&batch);
            (batch, result)
        })
        .await;
        self.metrics
            .write_seconds
            .observe(started.elapsed().as_secs_f64());

        match outcome {
            Ok((mut batch, Ok(()))) => {
                self.metrics.written.inc_by(count);
                batch.clear();
                batch
            }
            Ok((mut batch, Err(error))) => {
                self.metrics.write_failed.inc_by(count);
                tracing::error!(%error, events = count, "failed to write activity batch; its events are lost");
                batch.clear();
                batch
            }
            Err(error) => {
                self.metrics.write_failed.inc_by(count);
                tracing::error!(%error, events = count, "activity batch write task failed; its events are lost");
                Vec::with_capacity(self.batch_size)
            }
        }
    }
}
