//! Several connection pools towards each origin.
//!
//! hyper-util's pool sends every request to an HTTP/2 origin on one connection. A
//! request beyond the origin's concurrent stream limit (128 at nginx by default)
//! waits in that connection for a free stream. Here that connection
//! carries the requests of every user of the gateway, and long responses
//! (server-sent events, long polling, downloads to slow clients) can hold all of
//! its streams while other users' requests wait.
//!
//! So the upstream client keeps several pools and counts the requests in flight to
//! each origin in each pool. A request goes to the first pool whose count for its
//! origin is below `streams_per_connection`, so a second HTTP/2 connection opens
//! only once the first is busy, and to the least busy pool when all are. A request
//! counts from its checkout until swg has passed on the end of its response body,
//! or dropped the body. That is at least as long as the origin's stream is open,
//! except after an early response, whose upload may still be sending. RFC 9113
//! section 9.1 recommends one connection per origin; swg opens more only when the
//! first cannot take the request.
//!
//! The first pool negotiates the HTTP version by ALPN and serves every origin. The
//! others speak only HTTP/2, and take requests only for origins whose last
//! response came over HTTP/2. hyper-util opens one connection per waiting request
//! in a pool that may negotiate HTTP/1.1, and keeps only one if the origin chooses
//! HTTP/2, while a pool that speaks only HTTP/2 lets the waiting requests share the
//! one connection it opens. HTTP/1.1 origins stay in the first pool, where each
//! request takes a connection of its own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use http::{Uri, Version};

/// The smallest origin count at which a checkout removes the origins that have
/// no request in flight.
const PRUNE_FLOOR: usize = 64;

/// Requests in flight per origin and pool.
#[derive(Debug)]
pub(crate) struct PoolChoice {
    pools: usize,
    streams_per_connection: u32,
    origins: Mutex<Origins>,
}

#[derive(Debug)]
struct Origins {
    /// By authority, for `https` and for other schemes, which the pools keep apart.
    https: HashMap<Box<str>, Arc<OriginStreams>>,
    http: HashMap<Box<str>, Arc<OriginStreams>>,
    /// A checkout removes the idle origins once the maps contain this many together.
    prune_at: usize,
}

/// Requests in flight to one origin, per pool. Each [`StreamLease`] holds a
/// reference, so an origin with none left is referenced by the map alone.
#[derive(Debug)]
struct OriginStreams {
    in_flight: Box<[AtomicU32]>,
    /// Whether the origin's last response came over HTTP/2, so that the pools
    /// after the first may take its requests.
    http2: AtomicBool,
}

impl PoolChoice {
    /// Chooses among `pools` pools, moving on to the next pool once an origin has
    /// `streams_per_connection` requests in flight in the previous ones. Both
    /// must be at least 1.
    pub(crate) fn new(pools: usize, streams_per_connection: u32) -> PoolChoice {
        PoolChoice {
            pools: pools.max(1),
            streams_per_connection: streams_per_connection.max(1),
            origins: Mutex::new(Origins {
                https: HashMap::new(),
                http: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Returns the index of the pool for a request to `uri`, and the lease that
    /// counts the request there until it is dropped or released.
    pub(crate) fn checkout(&self, uri: &Uri) -> (usize, StreamLease) {
        if self.pools == 1 {
            return (0, StreamLease::default());
        }
        let Some(authority) = uri.authority() else {
            return (0, StreamLease::default());
        };
        let authority = authority.as_str();

        let mut origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        if origins.https.len() + origins.http.len() >= origins.prune_at {
            origins.prune();
        }
        let map = if uri.scheme_str() == Some("https") {
            &mut origins.https
        } else {
            &mut origins.http
        };
        let streams = match map.get(authority) {
            Some(streams) => Arc::clone(streams),
            None => {
                let streams = Arc::new(OriginStreams {
                    in_flight: (0..self.pools).map(|_| AtomicU32::new(0)).collect(),
                    http2: AtomicBool::new(false),
                });
                map.insert(authority.into(), Arc::clone(&streams));
                streams
            }
        };

        // Counts only grow under the lock, so the choice never puts more than
        // `streams_per_connection` requests in a pool while another has room.
        let usable = if streams.http2.load(Ordering::Acquire) {
            self.pools
        } else {
            1
        };
        let mut chosen = 0;
        let mut fewest = u32::MAX;
        for (index, count) in streams.in_flight[..usable].iter().enumerate() {
            let count = count.load(Ordering::Acquire);
            if count < self.streams_per_connection {
                chosen = index;
                break;
            }
            if count < fewest {
                fewest = count;
                chosen = index;
            }
        }
        streams.in_flight[chosen].fetch_add(1, Ordering::AcqRel);
        drop(origins);

        (
            chosen,
            StreamLease {
                counted: Some((streams, chosen)),
            },
        )
    }

    /// Returns the requests in flight to the origin of `uri` in each pool, for tests.
    #[cfg(test)]
    fn in_flight(&self, uri: &Uri) -> Vec<u32> {
        let origins = self.origins.lock().unwrap_or_else(PoisonError::into_inner);
        let map = if uri.scheme_str() == Some("https") {
            &origins.https
        } else {
            &origins.http
        };
        uri.authority()
            .and_then(|authority| map.get(authority.as_str()))
            .map(|streams| {
                streams
                    .in_flight
                    .iter()
                    .map(|count| count.load(Ordering::Acquire))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Origins {
    /// Removes the origins without a request in flight, and sets the next pruning
    /// at twice the origins left, so that pruning costs a bounded share per checkout.
    fn prune(&mut self) {
        self.https
            .retain(|_, streams| Arc::strong_count(streams) > 1);
        self.http
            .retain(|_, streams| Arc::strong_count(streams) > 1);
        self.prune_at = ((self.https.len() + self.http.len()) * 2).max(PRUNE_FLOOR);
    }
}

/// One request counted in flight in its pool, until dropped or released. The
/// default lease counts nothing.
#[derive(Debug, Default)]
pub(crate) struct StreamLease {
    counted: Option<(Arc<OriginStreams>, usize)>,
}

impl StreamLease {
    /// Records how the request went: the version of its response, or none when it
    /// failed. A failure in a pool that speaks only HTTP/2 sends the origin's next
    /// requests to the first pool until a response comes over HTTP/2 again, in
    /// case the origin no longer offers HTTP/2.
    pub(crate) fn record(&self, response_version: Option<Version>) {
        let Some((streams, pool)) = &self.counted else {
            return;
        };
        match response_version {
            Some(version) => streams
                .http2
                .store(version == Version::HTTP_2, Ordering::Release),
            None if *pool > 0 => streams.http2.store(false, Ordering::Release),
            None => {}
        }
    }

    /// Stops counting the request; later calls do nothing.
    pub(crate) fn release(&mut self) {
        if let Some((streams, pool)) = self.counted.take() {
            streams.in_flight[pool].fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> Uri {
        text.parse().unwrap()
    }

    /// Checks out a request to `origin` whose response comes over HTTP/2.
    fn checkout_http2(choice: &PoolChoice, origin: &Uri) -> (usize, StreamLease) {
        let (pool, lease) = choice.checkout(origin);
        lease.record(Some(Version::HTTP_2));
        (pool, lease)
    }

    #[test]
    fn fills_one_pool_before_the_next() {
        let choice = PoolChoice::new(3, 2);
        let origin = uri("https://origin.test/a");
        let mut leases = Vec::new();
        let mut chosen = Vec::new();
        for _ in 0..6 {
            let (pool, lease) = checkout_http2(&choice, &origin);
            chosen.push(pool);
            leases.push(lease);
        }
        assert_eq!(chosen, [0, 0, 1, 1, 2, 2]);
        // All full: the least busy pool, the first of equals.
        let (pool, extra) = choice.checkout(&origin);
        assert_eq!(pool, 0);
        assert_eq!(choice.in_flight(&origin), [3, 2, 2]);

        // A request that ends frees its pool for the next one.
        drop(extra);
        leases.remove(2);
        assert_eq!(choice.in_flight(&origin), [2, 1, 2]);
        assert_eq!(choice.checkout(&origin).0, 1);
    }

    #[test]
    fn origins_and_schemes_are_counted_apart() {
        let choice = PoolChoice::new(2, 1);
        let (first, _a) = checkout_http2(&choice, &uri("https://one.test/"));
        let (other_origin, _b) = checkout_http2(&choice, &uri("https://two.test/"));
        let (other_port, _c) = checkout_http2(&choice, &uri("https://one.test:8443/"));
        let (other_scheme, _d) = checkout_http2(&choice, &uri("http://one.test/"));
        assert_eq!(
            (first, other_origin, other_port, other_scheme),
            (0, 0, 0, 0)
        );
        assert_eq!(choice.checkout(&uri("https://one.test/x")).0, 1);
    }

    #[test]
    fn http1_origins_stay_in_first_pool() {
        let choice = PoolChoice::new(3, 1);
        let origin = uri("https://origin.test/");
        let mut leases = Vec::new();
        // Before any response, then after responses over HTTP/1.1.
        for version in [None, Some(Version::HTTP_11)] {
            for _ in 0..3 {
                let (pool, lease) = choice.checkout(&origin);
                assert_eq!(pool, 0);
                if let Some(version) = version {
                    lease.record(Some(version));
                }
                leases.push(lease);
            }
        }
        assert_eq!(choice.in_flight(&origin), [6, 0, 0]);
    }

    #[test]
    fn failure_in_http2_pool_returns_to_first() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let (_, _first) = checkout_http2(&choice, &origin);
        let (pool, failed) = choice.checkout(&origin);
        assert_eq!(pool, 1);
        failed.record(None);
        drop(failed);
        assert_eq!(choice.checkout(&origin).0, 0);
    }

    #[test]
    fn failure_in_first_pool_keeps_http2() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let (_, _first) = checkout_http2(&choice, &origin);
        let (_, second) = checkout_http2(&choice, &origin);
        let (pool, failed) = choice.checkout(&origin);
        assert_eq!(pool, 0);
        failed.record(None);
        drop(failed);
        drop(second);
        assert_eq!(choice.in_flight(&origin), [1, 0]);
        assert_eq!(choice.checkout(&origin).0, 1);
    }

    #[test]
    fn released_lease_counts_once() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let (_, mut lease) = checkout_http2(&choice, &origin);
        lease.release();
        lease.release();
        drop(lease);
        assert_eq!(choice.in_flight(&origin), [0, 0]);
    }

    #[test]
    fn one_pool_counts_nothing() {
        let choice = PoolChoice::new(1, 1);
        let origin = uri("https://origin.test/");
        let (pool, _lease) = choice.checkout(&origin);
        assert_eq!(pool, 0);
        assert!(choice.in_flight(&origin).is_empty());
    }

    #[test]
    fn idle_origins_are_removed() {
        let choice = PoolChoice::new(2, 1);
        let (_, kept) = choice.checkout(&uri("https://kept.test/"));
        for index in 0..PRUNE_FLOOR {
            drop(choice.checkout(&uri(&format!("https://h{index}.test/"))));
        }
        let origins = choice.origins.lock().unwrap();
        assert!(origins.https.len() < PRUNE_FLOOR);
        assert!(origins.https.contains_key("kept.test"));
        assert!(!origins.https.contains_key("h0.test"));
        drop(origins);
        drop(kept);
    }
}
