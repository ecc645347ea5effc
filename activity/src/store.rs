//! The storage interface behind the activity log.

use time::{Date, OffsetDateTime};

use crate::error::ActivityError;
use crate::event::Event;
use crate::query::{DailyTotal, Page, Query, TopEntry};

/// Storage of activity events: SQLite for one machine, PostgreSQL for a cluster.
///
/// Methods block on I/O. Async callers run them on a blocking thread
/// (`tokio::task::spawn_blocking`); the writer and retention tasks do so. Every
/// method is safe to call from several threads at once, and an implementation
/// serializes writes itself.
pub trait ActivityStore: Send + Sync + 'static {
    /// Inserts `events` in one transaction: after a crash either all of them are
    /// stored or none. Each event is sanitized first ([`Event::sanitize`]).
    fn insert_batch(&self, events: &[Event]) -> Result<(), ActivityError>;

    /// Inserts like [`ActivityStore::insert_batch`], but may pause between inserts
    /// so that threads waiting for the same cores run first. The writer calls it
    /// for batches it takes while it keeps up with the load. The default does not
    /// pause.
    fn insert_batch_yielding(&self, events: &[Event]) -> Result<(), ActivityError> {
        self.insert_batch(events)
    }

    /// Returns one page of events matching `query`, newest first.
    fn query(&self, query: &Query) -> Result<Page, ActivityError>;

    /// Returns the number of events per UTC day and action for the days `from..=to`,
    /// ordered by day, then by action.
    fn daily_totals(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
    ) -> Result<Vec<DailyTotal>, ActivityError>;

    /// Returns the `limit` host names blocked most often on the UTC days `from..=to`,
    /// most blocked first.
    fn top_blocked_domains(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
        limit: usize,
    ) -> Result<Vec<TopEntry>, ActivityError>;

    /// Returns the `limit` categories blocked most often on the UTC days `from..=to`,
    /// most blocked first.
    fn top_blocked_categories(
        &self,
        tenant: &str,
        from: Date,
        to: Date,
        limit: usize,
    ) -> Result<Vec<TopEntry>, ActivityError>;

    /// Returns the newest `limit` block and warn events whose device is `device` and
    /// whose user is `user`, from 30 days before `now` up to `now`, both inclusive,
    /// newest first. The agent shows these to the user.
    ///
    /// `limit` is clamped to 1..=[`MAX_PAGE_SIZE`](crate::query::MAX_PAGE_SIZE).
    /// Events without a user or device never match.
    fn device_recent(
        &self,
        tenant: &str,
        device: &str,
        user: &str,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<Event>, ActivityError>;

    /// Deletes at most about `max_rows` rows older than `cutoff` in one short
    /// transaction and returns how many rows it deleted. Callers repeat until it
    /// returns 0, so that writers get the store between chunks.
    fn delete_older_than(
        &self,
        cutoff: OffsetDateTime,
        max_rows: usize,
    ) -> Result<u64, ActivityError>;
}
