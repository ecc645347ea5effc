//! Single use of tickets, form tokens and return URLs.

use std::time::{Duration, Instant};

use crate::{unix_now, BoxFuture};

/// Failures of a [`SpentTickets`] store.
#[derive(Debug, thiserror::Error)]
pub enum SpentTicketsError {
    /// The shared store could not be reached or answered with an error.
    #[error("store of spent tickets: {0}")]
    Unavailable(String),
}

/// The ids of single-use values that have been used.
///
/// Implementations: [`InProcessSpentTickets`] for one process; a Redis one is
/// planned so that a ticket spent on one replica is spent on all.
pub trait SpentTickets: Send + Sync {
    /// Marks `id` as spent until `expires_at` (seconds since the Unix epoch) and
    /// returns `true` if it was not spent before; check and mark are one atomic
    /// step, so of two concurrent calls with the same id only one gets `true`.
    fn spend<'a>(
        &'a self,
        id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, SpentTicketsError>>;
}

/// Spent ids kept in this process, each until the expiry of its value.
pub struct InProcessSpentTickets {
    spent: moka::sync::Cache<String, Instant>,
}

impl std::fmt::Debug for InProcessSpentTickets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessSpentTickets")
            .field("entries", &self.spent.entry_count())
            .finish()
    }
}

/// Removes each spent id when the value it belongs to expires.
struct UntilValueExpiry;

impl moka::Expiry<String, Instant> for UntilValueExpiry {
    fn expire_after_create(
        &self,
        _id: &String,
        deadline: &Instant,
        created_at: Instant,
    ) -> Option<Duration> {
        Some(deadline.saturating_duration_since(created_at))
    }
}

impl InProcessSpentTickets {
    /// Creates a store that keeps at most `capacity` ids.
    ///
    /// NOTE: when more than `capacity` unexpired values are spent, the store
    /// evicts ids early and those values could be used again. Only values with a
    /// valid signature are ever recorded, so reaching the bound takes that many
    /// genuinely issued tickets within their lifetime; size it well above the
    /// expected rate times the longest lifetime (15 minutes for form tokens).
    pub fn new(capacity: u64) -> Self {
        Self {
            spent: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilValueExpiry)
                .build(),
        }
    }
}

impl Default for InProcessSpentTickets {
    /// Creates a store that keeps up to one million ids.
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

impl SpentTickets for InProcessSpentTickets {
    fn spend<'a>(
        &'a self,
        id: &'a str,
        expires_at: u64,
    ) -> BoxFuture<'a, Result<bool, SpentTicketsError>> {
        let remaining = Duration::from_secs(expires_at.saturating_sub(unix_now()));
        let deadline = Instant::now() + remaining;
        let entry = self.spent.entry(id.to_owned()).or_insert(deadline);
        let fresh = entry.is_fresh();
        Box::pin(async move { Ok(fresh) })
    }
}
