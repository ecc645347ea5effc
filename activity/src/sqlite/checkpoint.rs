//! WAL checkpoints on a thread of their own.
//!
//! By default SQLite checkpoints inside the commit that fills the WAL, so the
//! writer spends about a tenth of its time copying pages into the database file.
//! A separate thread with its own connection runs passive checkpoints instead,
//! which never wait for the writer or block it (SQLite documents PASSIVE mode as
//! not waiting for readers or writers). The writer keeps a high automatic threshold
//! (`wal_autocheckpoint`, 65 536 pages) as a bound on the WAL size should this
//! thread fall behind.

use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Pause between passive checkpoints.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(250);

/// The checkpoint thread; stopped by [`Checkpointer::stop`].
pub(super) struct Checkpointer {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Checkpointer {
    /// Starts the thread, or returns none (leaving checkpoints to the writer's
    /// automatic ones) if its connection or the thread cannot be created.
    pub(super) fn start(path: &Path) -> Option<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(path, flags) {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "failed to open checkpoint connection; the writer checkpoints itself");
                return None;
            }
        };
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("activity-checkpoint".to_owned())
            .spawn(move || run(conn, stopped))
            .map_err(|error| tracing::warn!(%error, "failed to start checkpoint thread"))
            .ok()?;
        Some(Checkpointer { stop, thread })
    }

    /// Stops the thread and waits for it, which takes at most one checkpoint.
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::error!("activity checkpoint thread panicked");
        }
    }
}

fn run(conn: Connection, stopped: mpsc::Receiver<()>) {
    let mut failures = 0u32;
    loop {
        match stopped.recv_timeout(CHECKPOINT_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            Ok(()) => failures = 0,
            Err(error) => {
                failures += 1;
                // Log the first failure of a run, then every hundredth.
                if failures % 100 == 1 {
                    tracing::warn!(%error, failures, "passive WAL checkpoint failed");
                }
            }
        }
    }
}
