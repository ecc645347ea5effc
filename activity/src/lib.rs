//! The activity log: every decision of the resolver and the proxy, stored for the
//! administrator's activity report and the agent's block list.
//!
//! # Recording
//!
//! [`ActivityLog::open`] opens the store and starts two tasks on the current tokio
//! runtime: the writer, which drains a bounded in-memory queue in batches (by count
//! and by time), and retention, which deletes expired events at start and hourly.
//! It returns a [`Recorder`], the hot-path handle. [`Recorder::record`] never waits
//! for the disk: it takes the queue's lock, which the writer holds only to swap two
//! vectors. When the queue is full it drops the event and counts it in
//! `swg_activity_dropped_total`. Each batch is written in transactions
//! of up to 50 000 events on a blocking thread, so a crash loses whole transactions,
//! never part of one.
//! [`ActivityLog::shutdown`] writes everything queued before it returns.
//!
//! Callers record no event for bypassed apps and domain exceptions.
//!
//! # Querying
//!
//! [`ActivityLog::store`] returns the [`ActivityStore`]: pages of events newest first
//! with keyset cursors ([`Query`], [`Page`]), per-day totals, top blocked domains
//! and categories, a device's recent block and warn events, and CSV export in
//! bounded memory ([`CsvChunks`], [`write_csv`]). Store methods block, so async code
//! calls them through `tokio::task::spawn_blocking`.
//!
//! # Example
//!
//! ```
//! use swg_activity::{Action, ActivityConfig, ActivityLog, Event, Query, Via};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let runtime = tokio::runtime::Runtime::new()?;
//! runtime.block_on(async {
//!     let config = ActivityConfig::default();
//!     let registry = prometheus::Registry::new();
//!     let (log, recorder) = ActivityLog::open(&config.database_path(dir.path()), &config, &registry)?;
//!
//!     let mut event = Event::new("acme", Via::Dns, "phish.example", Action::Block);
//!     event.device = Some("DEV-1".to_owned());
//!     recorder.record(event);
//!     log.shutdown().await;
//!
//!     let now = time::OffsetDateTime::now_utc();
//!     let query = Query::new("acme", now - time::Duration::hours(1), now + time::Duration::hours(1));
//!     let store = log.store();
//!     let page = tokio::task::spawn_blocking(move || store.query(&query)).await??;
//!     assert_eq!(page.events[0].request, "phish.example");
//!     Ok::<_, Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```

pub mod config;
pub mod error;
pub mod event;
pub mod export;
pub mod host;
mod log;
mod metrics;
pub mod query;
mod queue;
mod recorder;
pub mod request_id;
pub mod retention;
pub mod sqlite;
mod status;
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
pub use status::WriteStatus;
pub use store::ActivityStore;
