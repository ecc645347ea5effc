//! Clients as per-client limits count them: the network of an address, and the
//! open slots (connections) per client and in all.
//!
//! An IPv4 host usually has one address, but an IPv6 host usually controls a whole
//! /64 and can pick a new address from it for every connection or query. Limits
//! counted per exact address would then not limit it at all, so the resolver and
//! the proxy count IPv6 clients per prefix.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The IPv6 prefix length that per-client limits use unless configured: the
/// subnet size of one IPv6 link, which a single host can fill with addresses.
pub const DEFAULT_IPV6_CLIENT_PREFIX_LEN: u8 = 64;

/// The IPv6 prefix lengths a configuration may choose. Shorter prefixes than /32
/// would count whole providers as one client.
pub const IPV6_CLIENT_PREFIX_LENS: RangeInclusive<u8> = 32..=128;

/// Returns the network `address` is counted under: the address alone for IPv4
/// (and for IPv4 addresses mapped into IPv6), its first `ipv6_prefix_len` bits for
/// IPv6.
///
/// `ipv6_prefix_len` above 128 counts as 128.
pub fn client_network(address: IpAddr, ipv6_prefix_len: u8) -> IpNet {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => {
            let prefix_len = ipv6_prefix_len.min(128);
            // A prefix length of at most 128 is always valid.
            Ipv6Net::new(v6, prefix_len)
                .map(|network| IpNet::V6(network.trunc()))
                .unwrap_or(IpNet::V6(Ipv6Net::from(v6)))
        }
    }
}

/// The limit that refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotLimit {
    /// The client has its maximum of open slots.
    PerClient,
    /// All clients together have the maximum of open slots.
    Total,
}

/// Open slots, such as connections, counted per client and in all, each client
/// with a state shared by its slots (for example its memory budgets).
#[derive(Debug)]
pub struct ClientSlots<T> {
    max_per_client: usize,
    max_total: usize,
    ipv6_prefix_len: u8,
    open: Mutex<OpenSlots<T>>,
}

#[derive(Debug)]
struct OpenSlots<T> {
    total: usize,
    clients: HashMap<IpNet, (usize, T)>,
}

/// One open slot of a client; given back when dropped.
#[derive(Debug)]
pub struct ClientSlot<T> {
    slots: Arc<ClientSlots<T>>,
    client: IpNet,
    /// The state of the slot's client, shared by all its open slots.
    pub state: T,
}

impl<T: Clone> ClientSlots<T> {
    /// Returns slots of `max_per_client` per client and `max_total` in all,
    /// counting IPv6 clients per prefix of `ipv6_prefix_len` bits.
    pub fn new(max_per_client: usize, max_total: usize, ipv6_prefix_len: u8) -> Arc<Self> {
        Arc::new(ClientSlots {
            max_per_client,
            max_total,
            ipv6_prefix_len,
            open: Mutex::new(OpenSlots {
                total: 0,
                clients: HashMap::new(),
            }),
        })
    }

    /// Takes a slot for `address`, or returns the limit its client or all clients
    /// have reached. A client without open slots gets its state from `new_state`;
    /// the state is dropped with the client's last slot.
    pub fn try_acquire(
        self: &Arc<Self>,
        address: IpAddr,
        new_state: impl FnOnce() -> T,
    ) -> Result<ClientSlot<T>, SlotLimit> {
        let client = client_network(address, self.ipv6_prefix_len);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.max_total {
            return Err(SlotLimit::Total);
        }
        let (count, state) = open
            .clients
            .entry(client)
            .or_insert_with(|| (0, new_state()));
        if *count >= self.max_per_client {
            return Err(SlotLimit::PerClient);
        }
        *count += 1;
        let state = state.clone();
        open.total += 1;
        Ok(ClientSlot {
            slots: self.clone(),
            client,
            state,
        })
    }

    /// Returns the number of open slots in all.
    pub fn open_slots(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl<T> ClientSlot<T> {
    /// Returns the network the slot's client is counted under.
    pub fn client(&self) -> IpNet {
        self.client
    }
}

impl<T> Drop for ClientSlot<T> {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some((count, _)) = open.clients.get_mut(&self.client) {
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

    fn network(address: &str, prefix_len: u8) -> String {
        let address: IpAddr = match address.parse() {
            Ok(address) => address,
            Err(error) => panic!("{address}: {error}"),
        };
        client_network(address, prefix_len).to_string()
    }

    #[test]
    fn networks_of_addresses() {
        let cases = [
            ("192.0.2.7", 64, "192.0.2.7/32"),
            ("192.0.2.7", 128, "192.0.2.7/32"),
            ("::ffff:192.0.2.7", 64, "192.0.2.7/32"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 56, "2001:db8:1::/56"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 48, "2001:db8:1::/48"),
            (
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                128,
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd/128",
            ),
            ("2001:db8::1", 200, "2001:db8::1/128"),
            ("::1", 64, "::/64"),
        ];
        for (address, prefix_len, expected) in cases {
            assert_eq!(
                network(address, prefix_len),
                expected,
                "{address} with /{prefix_len}"
            );
        }
    }

    #[test]
    fn addresses_of_one_link_share_a_network() {
        assert_eq!(
            network("2001:db8:0:1::1", 64),
            network("2001:db8:0:1:ffff:ffff:ffff:fffe", 64)
        );
        assert_ne!(
            network("2001:db8:0:1::1", 64),
            network("2001:db8:0:2::1", 64)
        );
        assert_ne!(network("192.0.2.1", 64), network("192.0.2.2", 64));
    }

    fn address(text: &str) -> IpAddr {
        match text.parse() {
            Ok(address) => address,
            Err(error) => panic!("{text}: {error}"),
        }
    }

    #[test]
    fn slots_counted_per_ipv6_prefix() {
        let slots = ClientSlots::<()>::new(2, 10, 64);
        let first = slots.try_acquire(address("2001:db8:0:1::1"), || ());
        let second = slots.try_acquire(address("2001:db8:0:1::2"), || ());
        assert!(first.is_ok());
        assert!(second.is_ok());
        let third = slots.try_acquire(address("2001:db8:0:1::3"), || ());
        assert_eq!(third.err(), Some(SlotLimit::PerClient));
        assert!(slots.try_acquire(address("2001:db8:0:2::1"), || ()).is_ok());

        drop(first);
        assert!(slots.try_acquire(address("2001:db8:0:1::3"), || ()).is_ok());
        drop(second);
        assert_eq!(slots.open_slots(), 0);
    }

    #[test]
    fn total_limit_applies_to_all_clients() {
        let slots = ClientSlots::<()>::new(2, 3, 64);
        let permits: Vec<_> = ["192.0.2.1", "192.0.2.1", "192.0.2.2"]
            .into_iter()
            .map(|text| slots.try_acquire(address(text), || ()))
            .collect();
        assert!(permits.iter().all(Result::is_ok));
        let refused = slots.try_acquire(address("192.0.2.3"), || ());
        assert_eq!(refused.err(), Some(SlotLimit::Total));
        assert_eq!(slots.open_slots(), 3);
        drop(permits);
        assert_eq!(slots.open_slots(), 0);
    }

    #[test]
    fn state_is_shared_by_a_clients_slots() {
        let slots = ClientSlots::new(4, 10, 64);
        let created = std::cell::Cell::new(0);
        let mut new_state = || {
            created.set(created.get() + 1);
            Arc::new(created.get())
        };
        let Ok(first) = slots.try_acquire(address("192.0.2.1"), &mut new_state) else {
            panic!("first slot refused");
        };
        let Ok(second) = slots.try_acquire(address("192.0.2.1"), &mut new_state) else {
            panic!("second slot refused");
        };
        assert!(Arc::ptr_eq(&first.state, &second.state));
        drop((first, second));
        let Ok(again) = slots.try_acquire(address("192.0.2.1"), &mut new_state) else {
            panic!("slot refused after the client's slots closed");
        };
        assert_eq!(*again.state, 2);
    }
}
