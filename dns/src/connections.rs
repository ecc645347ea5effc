//! Open TCP and DoH connections, counted per client and in all.
//!
//! Without a per-client count, one host could hold every connection slot with idle
//! connections and leave the agents of every tenant without DoH. A client is the
//! network its address is counted under ([`swg_identity::client_network`]).

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus::IntCounterVec;
use swg_identity::{ClientSlot, ClientSlots, SlotLimit};

/// An open connection's slot; given back when dropped.
pub type ConnectionPermit = ClientSlot<()>;

/// The group of connections a limiter counts. It sets the reasons its refusals are
/// counted under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionPool {
    /// DoH connections and plain DNS TCP connections from the tenants' locations.
    Shared,
    /// Plain DNS TCP connections from sources in no location.
    UnknownSources,
}

impl ConnectionPool {
    /// Returns the `reason` label of `swg_dns_refused_total` for a connection this
    /// pool refuses at `limit`.
    fn reason(self, limit: SlotLimit) -> &'static str {
        match (self, limit) {
            (ConnectionPool::Shared, SlotLimit::PerClient) => "client_connection_limit",
            (ConnectionPool::Shared, SlotLimit::Total) => "connection_limit",
            (ConnectionPool::UnknownSources, SlotLimit::PerClient) => {
                "unknown_source_client_connection_limit"
            }
            (ConnectionPool::UnknownSources, SlotLimit::Total) => "unknown_source_connection_limit",
        }
    }
}

/// Counts open TCP plus DoH connections per client and in all, and counts the
/// connections it refuses.
#[derive(Debug)]
pub struct ConnectionLimiter {
    slots: Arc<ClientSlots<()>>,
    pool: ConnectionPool,
    refused: IntCounterVec,
}

impl ConnectionLimiter {
    /// Returns a limiter of `max_per_client` connections per client and `max_total`
    /// in all, counting IPv6 clients per prefix of `ipv6_prefix_len` bits, and
    /// refusals in `refused` (`swg_dns_refused_total`) under the reasons of `pool`.
    pub fn new(
        pool: ConnectionPool,
        max_per_client: usize,
        max_total: usize,
        ipv6_prefix_len: u8,
        refused: IntCounterVec,
    ) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            slots: ClientSlots::new(max_per_client, max_total, ipv6_prefix_len),
            pool,
            refused,
        })
    }

    /// Takes a slot for a connection accepted from `peer` on `transport` (`tcp` or
    /// `doh`), or counts and logs its refusal and returns `None`: the caller then
    /// closes the connection.
    pub fn admit(&self, peer: SocketAddr, transport: &'static str) -> Option<ConnectionPermit> {
        match self.slots.try_acquire(peer.ip(), || ()) {
            Ok(permit) => Some(permit),
            Err(limit) => {
                let reason = self.pool.reason(limit);
                self.refused.with_label_values(&[reason]).inc();
                tracing::debug!(client = %peer, transport, reason, "connection limit reached; connection closed");
                None
            }
        }
    }

    /// Returns the number of open connections in all.
    pub fn open_connections(&self) -> usize {
        self.slots.open_slots()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> IntCounterVec {
        let options = prometheus::Opts::new("refused", "refused connections");
        match IntCounterVec::new(options, &["reason"]) {
            Ok(counter) => counter,
            Err(error) => panic!("counter: {error}"),
        }
    }

    fn peer(text: &str) -> SocketAddr {
        match text.parse() {
            Ok(address) => address,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    #[test]
    fn refusals_counted_by_limit() {
        let counter = refused();
        let limiter = ConnectionLimiter::new(ConnectionPool::Shared, 1, 2, 64, counter.clone());
        let first = limiter.admit(peer("[2001:db8:0:1::1]:5000"), "tcp");
        assert!(first.is_some());
        assert!(limiter
            .admit(peer("[2001:db8:0:1::2]:5000"), "doh")
            .is_none());
        let second = limiter.admit(peer("192.0.2.1:5000"), "tcp");
        assert!(second.is_some());
        assert!(limiter.admit(peer("192.0.2.2:5000"), "tcp").is_none());

        let count = |reason: &str| counter.with_label_values(&[reason]).get();
        assert_eq!(count("client_connection_limit"), 1);
        assert_eq!(count("connection_limit"), 1);
        assert_eq!(limiter.open_connections(), 2);
        drop((first, second));
        assert_eq!(limiter.open_connections(), 0);
    }

    #[test]
    fn unknown_source_pool_counts_under_its_own_reasons() {
        let counter = refused();
        let limiter =
            ConnectionLimiter::new(ConnectionPool::UnknownSources, 1, 2, 64, counter.clone());
        let first = limiter.admit(peer("192.0.2.1:5000"), "tcp");
        assert!(first.is_some());
        assert!(limiter.admit(peer("192.0.2.1:5001"), "tcp").is_none());
        let second = limiter.admit(peer("192.0.2.2:5000"), "tcp");
        assert!(second.is_some());
        assert!(limiter.admit(peer("192.0.2.3:5000"), "tcp").is_none());

        let count = |reason: &str| counter.with_label_values(&[reason]).get();
        assert_eq!(count("unknown_source_client_connection_limit"), 1);
        assert_eq!(count("unknown_source_connection_limit"), 1);
        assert_eq!(count("client_connection_limit"), 0);
        assert_eq!(count("connection_limit"), 0);
    }
}
