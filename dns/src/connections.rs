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

/// Counts open TCP plus DoH connections per client and in all, and counts the
/// connections it refuses.
#[derive(Debug)]
pub struct ConnectionLimiter {
    slots: Arc<ClientSlots<()>>,
    refused: IntCounterVec,
}

impl ConnectionLimiter {
    /// Returns a limiter of `max_per_client` connections per client and `max_total`
    /// in all, counting IPv6 clients per prefix of `ipv6_prefix_len` bits, and
    /// refusals in `refused` (`swg_dns_refused_total`).
    pub fn new(
        max_per_client: usize,
        max_total: usize,
        ipv6_prefix_len: u8,
        refused: IntCounterVec,
    ) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            slots: ClientSlots::new(max_per_client, max_total, ipv6_prefix_len),
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
                let reason = reason(limit);
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

/// Returns the `reason` label of `swg_dns_refused_total` for a refused connection.
fn reason(limit: SlotLimit) -> &'static str {
    match limit {
        SlotLimit::PerClient => "client_connection_limit",
        SlotLimit::Total => "connection_limit",
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
        let limiter = ConnectionLimiter::new(1, 2, 64, counter.clone());
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
}
