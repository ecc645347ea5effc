//! Correlation hints: the resolver tells the proxy which device asked for a host.
//!
//! When the resolver steers a name to the proxy, it records the identity under
//! `(client public IP, host)` and under the client IP alone. The proxy, seeing a
//! request from that IP with no cookie, asks for `(IP, host)` first, then for the IP
//! alone; the IP-only answer is given only when exactly one device used the IP
//! within the hint window, because behind a shared NAT the IP says nothing about
//! which device is asking.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::signed::normalize_host;
use crate::{BoxFuture, Identity};

/// Maximum number of distinct devices remembered per client IP; two already make
/// the IP ambiguous, the rest only keep it ambiguous while some expire.
const MAX_DEVICES_PER_IP: usize = 8;

/// Failures of a [`CorrelationHints`] store.
#[derive(Debug, thiserror::Error)]
pub enum HintsError {
    /// The shared store could not be reached or answered with an error.
    #[error("correlation hint store: {0}")]
    Unavailable(String),
}

/// Where the resolver records and the proxy looks up correlation hints.
///
/// Implementations: [`InProcessHints`] for one process; a Redis one is planned so
/// that the replica answering DNS and the one receiving HTTPS share hints.
pub trait CorrelationHints: Send + Sync {
    /// Records that `identity` resolved `host` from `client_ip`.
    fn record<'a>(
        &'a self,
        client_ip: IpAddr,
        host: &'a str,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<(), HintsError>>;

    /// Returns the identity that last resolved `host` from `client_ip` within the
    /// hint window.
    fn lookup_host<'a>(
        &'a self,
        client_ip: IpAddr,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Identity>, HintsError>>;

    /// Returns the identity that used `client_ip` within the hint window, if
    /// exactly one device did.
    fn lookup_ip(&self, client_ip: IpAddr) -> BoxFuture<'_, Result<Option<Identity>, HintsError>>;
}

/// One device seen on a client IP and when.
struct DeviceSeen {
    identity: Identity,
    last_seen: Instant,
}

/// Correlation hints kept in this process with moka caches.
pub struct InProcessHints {
    ttl: Duration,
    by_host: moka::sync::Cache<(IpAddr, String), Identity>,
    by_ip: moka::sync::Cache<IpAddr, Arc<Mutex<Vec<DeviceSeen>>>>,
}

impl std::fmt::Debug for InProcessHints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcessHints")
            .field("ttl", &self.ttl)
            .field("hosts", &self.by_host.entry_count())
            .field("ips", &self.by_ip.entry_count())
            .finish()
    }
}

impl InProcessHints {
    /// Creates a store whose hints live for `ttl` and which holds at most
    /// `capacity` `(IP, host)` hints and as many IPs.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        Self {
            ttl,
            by_host: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
            by_ip: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    fn record_ip(&self, client_ip: IpAddr, identity: &Identity) {
        let now = Instant::now();
        let devices = self
            .by_ip
            .get_with(client_ip, || Arc::new(Mutex::new(Vec::new())));
        {
            let mut seen = devices
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            seen.retain(|device| {
                now.duration_since(device.last_seen) < self.ttl
                    && !same_device(&device.identity, identity)
            });
            seen.push(DeviceSeen {
                identity: identity.clone(),
                last_seen: now,
            });
            if seen.len() > MAX_DEVICES_PER_IP {
                seen.remove(0);
            }
        }

        // Inserting again restarts the entry's time to live.
        self.by_ip.insert(client_ip, devices);
    }

    fn lookup_ip_now(&self, client_ip: IpAddr) -> Option<Identity> {
        let devices = self.by_ip.get(&client_ip)?;
        let now = Instant::now();
        let mut seen = devices
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.retain(|device| now.duration_since(device.last_seen) < self.ttl);
        match seen.as_slice() {
            [only] => Some(only.identity.clone()),
            _ => None,
        }
    }
}

fn same_device(a: &Identity, b: &Identity) -> bool {
    a.tenant == b.tenant && a.device == b.device
}

impl CorrelationHints for InProcessHints {
    fn record<'a>(
        &'a self,
        client_ip: IpAddr,
        host: &'a str,
        identity: &'a Identity,
    ) -> BoxFuture<'a, Result<(), HintsError>> {
        self.by_host
            .insert((client_ip, normalize_host(host)), identity.clone());
        self.record_ip(client_ip, identity);
        Box::pin(async { Ok(()) })
    }

    fn lookup_host<'a>(
        &'a self,
        client_ip: IpAddr,
        host: &'a str,
    ) -> BoxFuture<'a, Result<Option<Identity>, HintsError>> {
        let found = self.by_host.get(&(client_ip, normalize_host(host)));
        Box::pin(async move { Ok(found) })
    }

    fn lookup_ip(&self, client_ip: IpAddr) -> BoxFuture<'_, Result<Option<Identity>, HintsError>> {
        let found = self.lookup_ip_now(client_ip);
        Box::pin(async move { Ok(found) })
    }
}
