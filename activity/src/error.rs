//! Errors of the activity log.

use std::path::PathBuf;

use crate::config::ConfigError;

/// What went wrong in the activity log.
#[derive(Debug, thiserror::Error)]
pub enum ActivityError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// The store file is damaged or is not an SQLite database, found at open or by a
    /// later statement. It is left in place.
    #[error(
        "activity store {path} is corrupt or not an SQLite database ({source}); with swg \
         stopped, move it aside (with its -wal and -shm files) to start with an empty store, \
         or restore it from a backup"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// What SQLite reported.
        source: rusqlite::Error,
    },

    /// The store was created by a newer swg whose schema this version cannot read.
    #[error(
        "activity store {path} has schema version {found}, but this swg knows versions up to \
         {supported}; run a newer swg, or move the file aside to start with an empty store"
    )]
    NewerSchema {
        /// The store file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },

    /// The store was created by a development build whose layout was replaced without
    /// a migration, so its events cannot be read or added to.
    #[error(
        "activity store {path} has schema version {found}, a development layout that this \
         swg cannot read or migrate; move the file aside (and its -wal and -shm files) to \
         start with an empty store"
    )]
    RetiredSchema {
        /// The store file.
        path: PathBuf,
        /// The schema version in the file.
        found: i64,
    },

    /// The store file or its folder cannot be written.
    #[error(
        "activity store {path} is not writable ({reason}); give the swg user write access to \
         the file and its folder, or set activity.database to a writable path"
    )]
    NotWritable {
        /// The store file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },

    /// The store file could not be opened or created.
    #[error("failed to open activity store {path}: {source}")]
    Open {
        /// The store file.
        path: PathBuf,
        /// What SQLite reported.
        source: rusqlite::Error,
    },

    /// The store file exists but could not be opened.
    #[error("failed to open activity store {path}: {source}")]
    OpenFile {
        /// The store file.
        path: PathBuf,
        /// What the operating system reported.
        source: std::io::Error,
    },

    /// A statement against the store failed.
    #[error("activity store operation failed: {0}")]
    Store(#[from] rusqlite::Error),

    /// A stored row holds a value this version cannot read.
    #[error("activity store row {id} has an invalid {column}: {value:?}")]
    InvalidRow {
        /// Row id of the event.
        id: i64,
        /// The column.
        column: &'static str,
        /// The stored value.
        value: String,
    },

    /// A page cursor is malformed; cursors come only from a previous page.
    #[error("invalid page cursor {0:?}; use the cursor from the previous page or none")]
    InvalidCursor(String),

    /// Writing exported CSV failed, usually because the client went away.
    #[error("failed to write CSV export: {0}")]
    Export(#[source] std::io::Error),

    /// A metric could not be registered, usually because it is registered twice.
    #[error("failed to register activity metrics: {0}")]
    Metrics(#[from] prometheus::Error),

    /// A blocking store task panicked or was cancelled.
    #[error("activity store task failed: {0}")]
    Task(String),
}
