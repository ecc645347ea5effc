//! Queries on the activity log and their results.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::error::ActivityError;
use crate::event::{Action, Event};

/// Largest page a query returns; larger limits are lowered to it.
pub const MAX_PAGE_SIZE: usize = 1_000;

/// A search of one tenant's events in a time range, newest first.
///
/// Filters combine with AND. `domain` matches a substring of the request's host name,
/// case-insensitively; the other filters match exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Tenant id.
    pub tenant: String,
    /// Start of the range, inclusive.
    pub from: OffsetDateTime,
    /// End of the range, exclusive.
    pub to: OffsetDateTime,
    /// Only this user.
    pub user: Option<String>,
    /// Only this device.
    pub device: Option<String>,
    /// Only this action.
    pub action: Option<Action>,
    /// Only this app bundle id.
    pub app: Option<String>,
    /// Only events with this category.
    pub category: Option<String>,
    /// Only hosts that contain this text.
    pub domain: Option<String>,
    /// Page size, 1 to [`MAX_PAGE_SIZE`].
    pub limit: usize,
    /// Where the page starts: the `next_cursor` of the previous page, or none for the
    /// first page.
    pub cursor: Option<Cursor>,
}

impl Query {
    /// Creates a query for every event of `tenant` in `[from, to)`, 100 per page.
    pub fn new(tenant: impl Into<String>, from: OffsetDateTime, to: OffsetDateTime) -> Self {
        Query {
            tenant: tenant.into(),
            from,
            to,
            user: None,
            device: None,
            action: None,
            app: None,
            category: None,
            domain: None,
            limit: 100,
            cursor: None,
        }
    }

    /// Returns the page size, clamped to 1..=[`MAX_PAGE_SIZE`].
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, MAX_PAGE_SIZE)
    }
}

/// One page of events, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page {
    /// The events.
    pub events: Vec<Event>,
    /// Cursor of the next page, or none when this is the last page.
    pub next_cursor: Option<Cursor>,
}

/// Position after the last event of a page.
///
/// The text form is opaque to clients; it encodes the (time, row id) of the last
/// event, so the next page starts right after it even when new events arrive
/// meanwhile.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) time_ms: i64,
    pub(crate) id: i64,
}

impl Cursor {
    /// Creates the cursor that follows the event stored at `(time_ms, id)`.
    pub fn after(time_ms: i64, id: i64) -> Self {
        Cursor { time_ms, id }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c1.{:x}.{:x}", self.time_ms, self.id)
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cursor({self})")
    }
}

impl FromStr for Cursor {
    type Err = ActivityError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || ActivityError::InvalidCursor(text.chars().take(64).collect());
        let rest = text.strip_prefix("c1.").ok_or_else(invalid)?;
        let (time, id) = rest.split_once('.').ok_or_else(invalid)?;
        let time_ms = i64::from_str_radix(time, 16).map_err(|_| invalid())?;
        let id = i64::from_str_radix(id, 16).map_err(|_| invalid())?;
        if time_ms < 0 || id < 0 {
            return Err(invalid());
        }
        Ok(Cursor { time_ms, id })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Events of one action on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DailyTotal {
    /// The day, in UTC.
    pub day: Date,
    /// The action.
    pub action: Action,
    /// Number of events.
    pub count: u64,
}

/// One entry of a top-N list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopEntry {
    /// Host name or category.
    pub name: String,
    /// Number of blocked events.
    pub count: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_text() {
        let cursor = Cursor::after(1_733_300_000_123, 987_654);
        let text = cursor.to_string();
        assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
    }

    #[test]
    fn malformed_cursor_is_rejected() {
        for text in [
            "", "c1.", "c1.zz.1", "c2.1.1", "c1.1", "c1.-1.2", "c1.1.2.3",
        ] {
            assert!(
                matches!(text.parse::<Cursor>(), Err(ActivityError::InvalidCursor(_))),
                "accepted {text:?}"
            );
        }
    }

    #[test]
    fn page_size_is_clamped() {
        let mut query = Query::new("t", OffsetDateTime::UNIX_EPOCH, OffsetDateTime::now_utc());
        query.limit = 0;
        assert_eq!(query.page_size(), 1);
        query.limit = 1_000_000;
        assert_eq!(query.page_size(), MAX_PAGE_SIZE);
    }
}
