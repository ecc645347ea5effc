//! The embedded SQLite store.
//!
//! One connection writes, behind a mutex. Reads use a bounded pool of other
//! connections, which WAL mode lets run while a write is in progress.

mod checkpoint;
mod payload;
mod read;
mod schema;
mod write;

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};
use time::{Date, OffsetDateTime};

use crate::error::ActivityError;
use crate::event::Event;
use crate::query::{DailyTotal, Page, Query, TopEntry};
use crate::store::ActivityStore;

/// The schema version this build creates; older stores are migrated to it.
pub use schema::LATEST_VERSION as SCHEMA_VERSION;

/// Idle read connections kept open for reuse.
const MAX_IDLE_READERS: usize = 4;
/// Read connections open at once; further reads wait for one. Each connection
/// may cache up to 32 MiB of pages, so this bounds the readers' memory and file
/// descriptors however many queries arrive together.
const MAX_READERS: usize = 8;
/// How long a statement waits for a lock held by another connection.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQLite activity store, in WAL mode with `synchronous=NORMAL`.
///
/// With `synchronous=NORMAL`, a power loss can lose the last committed batches but
/// never corrupts the file; a crash of the process loses nothing committed.
pub struct SqliteStore {
    path: PathBuf,
    writer: Mutex<WriterState>,
    readers: Mutex<ReaderPool>,
    /// Signalled when a read connection is returned or closed.
    reader_returned: Condvar,
    checkpointer: Option<checkpoint::Checkpointer>,
}

/// The read connections: the idle ones, and how many exist in all.
#[derive(Default)]
struct ReaderPool {
    idle: Vec<Connection>,
    open: usize,
}

/// One of the [`MAX_READERS`] places of the read pool, held while a connection is
/// in use. Dropping it, also when the read panicked, frees the place.
struct ReaderSlot<'a> {
    store: &'a SqliteStore,
}

impl ReaderSlot<'_> {
    /// Returns `conn` to the idle connections, which keep the place, or closes it
    /// when enough are idle.
    fn give_back(self, conn: Connection) {
        let mut pool = self.store.lock_readers();
        if pool.idle.len() < MAX_IDLE_READERS {
            pool.idle.push(conn);
            drop(pool);
            self.store.reader_returned.notify_one();
            // The idle connection keeps the place, so dropping the slot must not free it.
            std::mem::forget(self);
        }
    }
}

impl Drop for ReaderSlot<'_> {
    fn drop(&mut self) {
        self.store.lock_readers().open -= 1;
        self.store.reader_returned.notify_one();
    }
}

/// The write connection and what it remembers between batches.
struct WriterState {
    conn: Connection,
    cache: write::WriterCache,
}

impl SqliteStore {
    /// Opens the store at `path`, creating it if missing and migrating its schema.
    ///
    /// A corrupt file, a file from a newer swg or a file that cannot be written
    /// stops the open with an error naming the file; the file is never replaced.
    pub fn open(path: &Path) -> Result<Self, ActivityError> {
        check_writable(path)?;

        let mut conn = open_connection(path)?;
        configure_writer(&conn, path)?;
        let current = schema::version(&conn).map_err(|source| classify(path, source))?;
        if current > schema::LATEST_VERSION {
            return Err(ActivityError::NewerSchema {
                path: path.to_owned(),
                found: current,
                supported: schema::LATEST_VERSION,
            });
        }
        if (1..schema::FIRST_SUPPORTED_VERSION).contains(&current) {
            return Err(ActivityError::RetiredSchema {
                path: path.to_owned(),
                found: current,
            });
        }
        schema::migrate(&mut conn, current).map_err(|source| classify(path, source))?;
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |row| {
            row.get::<_, i64>(0)
        })
        .map_err(|source| classify(path, source))?;

        tracing::info!(path = %path.display(), schema_version = schema::LATEST_VERSION, "opened activity store");
        Ok(SqliteStore {
            path: path.to_owned(),
            writer: Mutex::new(WriterState {
                conn,
                cache: write::WriterCache::default(),
            }),
            readers: Mutex::new(ReaderPool::default()),
            reader_returned: Condvar::new(),
            checkpointer: checkpoint::Checkpointer::start(path),
        })
    }

    /// Returns the store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns SQLite's `EXPLAIN QUERY PLAN` lines for the statement that `query`
    /// runs, to check which indexes it uses.
    pub fn query_plan(&self, query: &Query) -> Result<Vec<String>, ActivityError> {
        self.with_reader(|conn| read::query_plan(conn, query))
    }

    /// Runs `PRAGMA integrity_check` and returns its messages; `["ok"]` means the
    /// file is sound. This reads the whole file.
    pub fn integrity_check(&self) -> Result<Vec<String>, ActivityError> {
        self.with_reader(|conn| {
            let mut statement = conn.prepare("PRAGMA integrity_check")?;
            let messages = statement
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            Ok(messages)
        })
    }

    /// Updates the statistics SQLite's query planner uses (`PRAGMA optimize`).
    pub fn optimize(&self) -> Result<(), ActivityError> {
        let state = self.lock_writer();
        state.conn.execute_batch("PRAGMA optimize")?;
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        // A panic while holding the lock can leave at most an open transaction, which
        // the next `BEGIN` would reject; the writer rolls back on every error path.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on an idle read connection. Opens one if none is idle and fewer
    /// than [`MAX_READERS`] exist, and otherwise blocks until one is returned.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, ActivityError>,
    ) -> Result<T, ActivityError> {
        let (slot, conn) = self.take_reader()?;
        let result = f(&conn);
        slot.give_back(conn);
        result.map_err(|error| self.damage(error))
    }

    /// Turns an SQLite error that reports a damaged file into
    /// [`ActivityError::Corrupt`], whose message names the file and the remedy.
    /// The start checks only the file's header and schema, so damage deeper in the
    /// file shows first here.
    fn damage(&self, error: ActivityError) -> ActivityError {
        match error {
            ActivityError::Store(source)
                if matches!(
                    source.sqlite_error_code(),
                    Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
                ) =>
            {
                ActivityError::Corrupt {
                    path: self.path.clone(),
                    source,
                }
            }
            other => other,
        }
    }

    /// Takes an idle read connection, or opens a new one within [`MAX_READERS`].
    fn take_reader(&self) -> Result<(ReaderSlot<'_>, Connection), ActivityError> {
        let mut pool = self.lock_readers();
        loop {
            if let Some(conn) = pool.idle.pop() {
                return Ok((ReaderSlot { store: self }, conn));
            }
            if pool.open < MAX_READERS {
                break;
            }
            pool = self
                .reader_returned
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
        pool.open += 1;
        drop(pool);

        // The slot frees its place again if the open fails.
        let slot = ReaderSlot { store: self };
        let conn = open_reader(&self.path)?;
        Ok((slot, conn))
    }

    fn lock_readers(&self) -> MutexGuard<'_, ReaderPool> {
        self.readers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Some(checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
    }
}

impl ActivityStore for SqliteStore {
    fn insert_batch(&self, events: &[Event]) -> Result<(), ActivityError> {
        let mut state = self.lock_writer();
        write::insert_batch(&mut state, events, false).map_err(|error| self.damage(error))
    }

    fn insert_batch_yielding(&self, events: &[Event]) -> Result<(), ActivityError> {
        let mut state = self.lock_writer();
        write::insert_batch(&mut state, events, true).map_err(|error| self.damage(error))
    }

    fn query(&self, query: &Query) -> Result<Page, ActivityError> {
        self.with_reader(|conn| read::query(conn, query))
    }

    fn daily_totals(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyTotal>, ActivityError> {
        self.with_reader(|conn| read::daily_totals(conn, tenant, from, to))
    }

    fn top_blocked_domains(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
        limit: usize,
    ) -> Result<Vec<TopEntry>, ActivityError> {
        self.with_reader(|conn| read::top_blocked_domains(conn, tenant, from, to, limit))
    }

    fn top_blocked_categories(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
        limit: usize,
    ) -> Result<Vec<TopEntry>, ActivityError> {
        self.with_reader(|conn| read::top_blocked_categories(conn, tenant, from, to, limit))
    }

    fn device_recent(
        &self,
        tenant: &str,
        device: &str,
        user: &str,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Event>, ActivityError> {
        self.with_reader(|conn| read::device_recent(conn, tenant, device, user, now, limit))
    }

    fn delete_older_than(
        &self,
        cutoff: OffsetDateTime,
        max_rows: usize,
    ) -> Result<u64, ActivityError> {
        let mut state = self.lock_writer();
        write::delete_older_than(&mut state, cutoff, max_rows)
    }
}

/// Fails early, with a clear error, when the store file exists but cannot be
/// opened for writing. SQLite itself would silently open such a file read-only.
fn check_writable(path: &Path) -> Result<(), ActivityError> {
    if !path.exists() {
        return Ok(());
    }
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) =>
        {
            Err(ActivityError::NotWritable {
                path: path.to_owned(),
                reason: error.to_string(),
            })
        }
        Err(source) => Err(ActivityError::OpenFile {
            path: path.to_owned(),
            source,
        }),
    }
}

fn open_connection(path: &Path) -> Result<Connection, ActivityError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| classify(path, source))?;
    if conn
        .is_readonly("main")
        .map_err(|source| classify(path, source))?
    {
        return Err(ActivityError::NotWritable {
            path: path.to_owned(),
            reason: "SQLite opened the file read-only".to_owned(),
        });
    }
    Ok(conn)
}

fn configure_writer(conn: &Connection, path: &Path) -> Result<(), ActivityError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|source| classify(path, source))?;
    // Takes effect only on a new file, before its first table. Pages of 8 KiB take
    // half as many WAL frames and write calls as 4 KiB pages for the same appended
    // rows, though the CPU gain was within the noise (docs/benchmarks.md).
    conn.execute_batch("PRAGMA page_size = 8192")
        .map_err(|source| classify(path, source))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|source| classify(path, source))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(ActivityError::NotWritable {
            path: path.to_owned(),
            reason: format!("SQLite kept journal mode {mode} instead of WAL"),
        });
    }
    conn.execute_batch(
        "PRAGMA synchronous = NORMAL;
         PRAGMA cache_size = -65536;
         PRAGMA wal_autocheckpoint = 65536;
         PRAGMA temp_store = MEMORY;
         PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(|source| classify(path, source))?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn open_reader(path: &Path) -> Result<Connection, ActivityError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|source| classify(path, source))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch(
        "PRAGMA query_only = 1;
         PRAGMA cache_size = -32768;
         PRAGMA temp_store = MEMORY;",
    )?;
    Ok(conn)
}

/// Maps an SQLite error met while opening to the error a caller can act on.
fn classify(path: &Path, source: rusqlite::Error) -> ActivityError {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => ActivityError::Corrupt {
            path: path.to_owned(),
            source,
        },
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => ActivityError::NotWritable {
            path: path.to_owned(),
            reason: source.to_string(),
        },
        _ => ActivityError::Open {
            path: path.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::{mpsc, Arc};

    use super::*;

    #[test]
    fn panicking_reads_free_their_reader_places() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("activity.db")).unwrap());

        // With leaked places the ninth read would wait forever, so the reads run on
        // their own thread and the test waits a bounded time.
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..MAX_READERS * 2 {
                let read = catch_unwind(AssertUnwindSafe(|| {
                    store.with_reader(|_| -> Result<(), ActivityError> { panic!("read failed") })
                }));
                assert!(read.is_err());
            }
            sender.send(store.integrity_check().is_ok())
        });
        let finished = receiver.recv_timeout(Duration::from_secs(10));
        assert_eq!(finished, Ok(true));
    }
}
