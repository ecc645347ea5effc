//! Open TCP and DoH connections, counted per client and in all.
//!
//! Without a per-client count, one host could hold every connection slot with idle
//! connections and leave the agents of every tenant without DoH. A client is the
//! network its address is counted under ([`swg_identity::client_network`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use ipnet::IpNet;

/// Counts open TCP plus DoH connections per client and in all.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_per_client: usize,
    max_total: usize,
    ipv6_prefix_len: u8,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    clients: HashMap<IpNet, usize>,
}

/// The limit that refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionLimit {
    /// `max_connections_per_client`.
    PerClient,
    /// `max_connections`.
    Total,
}

impl ConnectionLimit {
    /// Returns the `reason` label of `swg_dns_refused_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionLimit::PerClient => "client_connection_limit",
            ConnectionLimit::Total => "connection_limit",
        }
    }
}

/// One open connection's slot; given back when dropped.
#[derive(Debug)]
pub struct ConnectionPermit {
    limiter: Arc<ConnectionLimiter>,
    client: IpNet,
}

impl ConnectionLimiter {
    /// Returns a limiter of `max_per_client` connections per client and `max_total`
    /// in all, counting IPv6 clients per prefix of `ipv6_prefix_len` bits.
    pub fn new(max_per_client: usize, max_total: usize, ipv6_prefix_len: u8) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_per_client,
            max_total,
            ipv6_prefix_len,
            open: Mutex::new(Open::default()),
        })
    }

    /// Takes a slot for a connection from `address`, or returns the limit that its
    /// client or the resolver has reached.
    pub fn try_acquire(
        self: &Arc<Self>,
        address: IpAddr,
    ) -> Result<ConnectionPermit, ConnectionLimit> {
        let client = swg_identity::client_network(address, self.ipv6_prefix_len);
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if open.total >= self.max_total {
            return Err(ConnectionLimit::Total);
        }
        let count = open.clients.entry(client).or_insert(0);
        if *count >= self.max_per_client {
            return Err(ConnectionLimit::PerClient);
        }
        *count += 1;
        open.total += 1;
        Ok(ConnectionPermit {
            limiter: self.clone(),
            client,
        })
    }

    /// Returns the number of open connections in all.
    pub fn open_connections(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.clients.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.clients.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(text: &str) -> IpAddr {
        match text.parse() {
            Ok(address) => address,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    #[test]
    fn per_client_limit_counts_ipv6_prefixes() {
        let limiter = ConnectionLimiter::new(2, 10, 64);
        let first = limiter.try_acquire(address("2001:db8:0:1::1"));
        let second = limiter.try_acquire(address("2001:db8:0:1::2"));
        assert!(first.is_ok());
        assert!(second.is_ok());
        assert_eq!(
            limiter.try_acquire(address("2001:db8:0:1::3")).err(),
            Some(ConnectionLimit::PerClient)
        );
        assert!(limiter.try_acquire(address("2001:db8:0:2::1")).is_ok());

        drop(first);
        assert!(limiter.try_acquire(address("2001:db8:0:1::3")).is_ok());
        drop(second);
        assert_eq!(limiter.open_connections(), 0);
    }

    #[test]
    fn total_limit_applies_to_all_clients() {
        let limiter = ConnectionLimiter::new(2, 3, 64);
        let permits: Vec<_> = ["192.0.2.1", "192.0.2.1", "192.0.2.2"]
            .into_iter()
            .map(|text| limiter.try_acquire(address(text)))
            .collect();
        assert!(permits.iter().all(Result::is_ok));
        assert_eq!(
            limiter.try_acquire(address("192.0.2.3")).err(),
            Some(ConnectionLimit::Total)
        );
        assert_eq!(limiter.open_connections(), 3);
        drop(permits);
        assert_eq!(limiter.open_connections(), 0);
    }
}
