//! Activity events, the batched writer, stores, retention and queries.

pub mod config;
pub mod error;
pub mod event;
pub mod export;
pub mod host;
mod log;
mod metrics;
pub mod query;
mod recorder;
pub mod request_id;
pub mod retention;
pub mod sqlite;
pub mod store;
mod writer;

pub use config::{ActivityConfig, ConfigError};
pub use error::ActivityError;
pub use event::{text_from_bytes, Action, AppClass, Discovery, Event, Via};
pub use export::{write_csv, CsvChunks};
pub use log::ActivityLog;
pub use query::{Cursor, DailyTotal, Page, Query, TopEntry};
pub use recorder::Recorder;
pub use request_id::RequestId;
pub use sqlite::SqliteStore;
pub use store::ActivityStore;
