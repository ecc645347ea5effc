//! Several connection pools towards each origin.
//!
//! hyper-util's pool sends every request to an HTTP/2 origin on one connection. A
//! request beyond the origin's concurrent stream limit (128 at nginx by default)
//! waits in that connection for a free stream. Here that connection carries the
//! requests of every user of the gateway, and long responses (server-sent events,
//! long polling, downloads to slow clients) can hold all of its streams while
//! other users' requests wait.
//!
//! So the upstream client keeps one pool that negotiates the HTTP version by ALPN,
//! pool 0, and several pools that speak only HTTP/2. An origin's requests go to
//! pool 0 until a response shows that the origin speaks HTTP/2, and to the HTTP/2
//! pools from then on. There, a request goes to the first pool whose count of
//! requests in flight to its origin is below `streams_per_connection`, so a second
//! connection opens only once the first is busy, and to the least busy pool when
//! all are. RFC 9113 section 9.1 recommends one connection per origin; swg opens
//! more only when the first cannot take the request.
//!
//! A request counts from its checkout until swg has passed on the end of its
//! response body, or dropped the body. That is at least as long as the origin's
//! stream is open, except after an early response, whose upload may still be
//! sending.
//!
//! The HTTP/2 pools exist apart from pool 0 because hyper-util opens one
//! connection per waiting request in a pool that may negotiate HTTP/1.1, and keeps
//! only one once the origin chooses HTTP/2. In a pool that speaks only HTTP/2, the
//! waiting requests share the one connection it opens, also after the origin closed
//! the last one (nginx does after 1 000 requests). Their connector offers only h2
//! in ALPN. An origin that does not choose it is sent back to pool 0 for
//! `HTTP2_DECLINE_HOLD`, even while pool 0 still has an HTTP/2 connection to it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use http::{Uri, Version};

/// The smallest origin count at which a checkout removes the origins that have
/// no request in flight. Up to this many origins are remembered, with their
/// HTTP version and any decline of HTTP/2, when idle, so that a popular origin's
/// next requests do not start over in pool 0. An entry takes about 200 bytes
/// (an estimate), so the floor costs about 1 MiB.
const PRUNE_FLOOR: usize = 4096;

/// How long an origin that did not choose HTTP/2 for a new connection stays in
/// pool 0, whatever its responses there show.
pub(crate) const HTTP2_DECLINE_HOLD: Duration = Duration::from_secs(60);

/// The choice of a pool for each request, from the requests in flight per origin
/// and pool.
#[derive(Debug)]
pub(crate) struct PoolChoice {
    /// Pools that speak only HTTP/2, numbered 1 to `http2_pools` after pool 0.
    http2_pools: usize,
    streams_per_connection: u32,
    /// The start of the millisecond clock of `http2_declined_until_ms`.
    started: Instant,
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
    /// Pool 0 first, then the HTTP/2 pools.
    in_flight: Box<[AtomicU32]>,
    /// Whether the origin's last response came over HTTP/2.
    http2: AtomicBool,
    /// Milliseconds from `PoolChoice::started` until which the origin stays in
    /// pool 0, because it did not choose HTTP/2 for a new connection.
    http2_declined_until_ms: AtomicU64,
}

impl PoolChoice {
    /// Chooses among pool 0 and `http2_pools` pools that speak only HTTP/2, moving
    /// on to the next HTTP/2 pool once an origin has `streams_per_connection`
    /// requests in flight in the previous ones. Both must be at least 1.
    pub(crate) fn new(http2_pools: usize, streams_per_connection: u32) -> PoolChoice {
        PoolChoice {
            http2_pools: http2_pools.max(1),
            streams_per_connection: streams_per_connection.max(1),
            started: Instant::now(),
            origins: Mutex::new(Origins {
                https: HashMap::new(),
                http: HashMap::new(),
                prune_at: PRUNE_FLOOR,
            }),
        }
    }

    /// Returns the number of pools: pool 0 and the HTTP/2 pools.
    pub(crate) fn pools(&self) -> usize {
        self.http2_pools + 1
    }

    /// Returns the index of the pool for a request to `uri`, and the lease that
    /// counts the request there until it is dropped or released.
    pub(crate) fn checkout(&self, uri: &Uri) -> (usize, StreamLease) {
        let mut origins = self.lock();
        let Some(streams) = origins.streams(uri, self.pools()) else {
            return (0, StreamLease::default());
        };

        // Counts only grow under the lock, so the choice never puts more than
        // `streams_per_connection` requests in an HTTP/2 pool while another has
        // room.
        let mut chosen = 0;
        if streams.http2.load(Ordering::Acquire) && !self.is_declined(&streams) {
            let mut fewest = u32::MAX;
            for (index, count) in streams.in_flight.iter().enumerate().skip(1) {
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

    /// Tells whether the origin of `uri` did not choose HTTP/2 for a new
    /// connection within the last `HTTP2_DECLINE_HOLD`.
    pub(crate) fn declined_http2(&self, uri: &Uri) -> bool {
        let mut origins = self.lock();
        origins
            .streams(uri, self.pools())
            .is_some_and(|streams| self.is_declined(&streams))
    }

    /// Records that the origin of `uri` did not choose HTTP/2 for a new
    /// connection, which keeps its requests in pool 0 for `HTTP2_DECLINE_HOLD`.
    pub(crate) fn record_http2_declined(&self, uri: &Uri) {
        let until = self
            .now_ms()
            .saturating_add(duration_ms(HTTP2_DECLINE_HOLD));
        let mut origins = self.lock();
        if let Some(streams) = origins.streams(uri, self.pools()) {
            streams
                .http2_declined_until_ms
                .store(until, Ordering::Release);
        }
    }

    fn is_declined(&self, streams: &OriginStreams) -> bool {
        streams.http2_declined_until_ms.load(Ordering::Acquire) > self.now_ms()
    }

    fn now_ms(&self) -> u64 {
        duration_ms(self.started.elapsed())
    }

    fn lock(&self) -> MutexGuard<'_, Origins> {
        self.origins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the requests in flight to the origin of `uri` in each pool, for tests.
    #[cfg(test)]
    fn in_flight(&self, uri: &Uri) -> Vec<u32> {
        let mut origins = self.lock();
        origins
            .streams(uri, self.pools())
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
    /// Returns the counts of the origin of `uri`, added with `pools` pools when
    /// new, or none when `uri` has no authority.
    fn streams(&mut self, uri: &Uri, pools: usize) -> Option<Arc<OriginStreams>> {
        let authority = uri.authority()?.as_str();
        if self.https.len() + self.http.len() >= self.prune_at {
            self.prune();
        }
        let map = if uri.scheme_str() == Some("https") {
            &mut self.https
        } else {
            &mut self.http
        };
        if let Some(streams) = map.get(authority) {
            return Some(Arc::clone(streams));
        }
        let streams = Arc::new(OriginStreams {
            in_flight: (0..pools).map(|_| AtomicU32::new(0)).collect(),
            http2: AtomicBool::new(false),
            http2_declined_until_ms: AtomicU64::new(0),
        });
        map.insert(authority.into(), Arc::clone(&streams));
        Some(streams)
    }

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
    /// Records the HTTP version of the request's response, which decides whether
    /// the origin's next requests go to the HTTP/2 pools.
    pub(crate) fn record(&self, version: Version) {
        if let Some((streams, _)) = &self.counted {
            streams
                .http2
                .store(version == Version::HTTP_2, Ordering::Release);
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

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
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
        lease.record(Version::HTTP_2);
        (pool, lease)
    }

    #[test]
    fn fills_one_pool_before_the_next() {
        let choice = PoolChoice::new(3, 2);
        let origin = uri("https://origin.test/a");
        // The first request learns that the origin speaks HTTP/2.
        let (first, _learned) = checkout_http2(&choice, &origin);
        assert_eq!(first, 0);

        let mut leases = Vec::new();
        let mut chosen = Vec::new();
        for _ in 0..6 {
            let (pool, lease) = choice.checkout(&origin);
            chosen.push(pool);
            leases.push(lease);
        }
        assert_eq!(chosen, [1, 1, 2, 2, 3, 3]);
        // All full: the least busy pool, the first of equals.
        let (pool, extra) = choice.checkout(&origin);
        assert_eq!(pool, 1);
        assert_eq!(choice.in_flight(&origin), [1, 3, 2, 2]);

        // A request that ends frees its pool for the next one.
        drop(extra);
        leases.remove(2);
        assert_eq!(choice.in_flight(&origin), [1, 2, 1, 2]);
        assert_eq!(choice.checkout(&origin).0, 2);
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
    fn http1_origins_stay_in_pool_zero() {
        let choice = PoolChoice::new(3, 1);
        let origin = uri("https://origin.test/");
        let mut leases = Vec::new();
        // Before any response, then after responses over HTTP/1.1, also after
        // one over HTTP/2.
        for version in [None, Some(Version::HTTP_2), Some(Version::HTTP_11)] {
            let (pool, lease) = choice.checkout(&origin);
            if let Some(version) = version {
                lease.record(version);
            }
            leases.push((pool, lease));
        }
        for _ in 0..3 {
            leases.push(choice.checkout(&origin));
        }
        let pools: Vec<usize> = leases.iter().map(|(pool, _)| *pool).collect();
        assert_eq!(pools, [0, 0, 1, 0, 0, 0]);
    }

    #[test]
    fn declined_http2_keeps_origin_in_pool_zero() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let (_, _learned) = checkout_http2(&choice, &origin);
        assert!(!choice.declined_http2(&origin));
        choice.record_http2_declined(&origin);
        assert!(choice.declined_http2(&origin));

        // Responses over HTTP/2 in pool 0 do not end the refusal.
        let (pool, lease) = checkout_http2(&choice, &origin);
        assert_eq!(pool, 0);
        drop(lease);
        assert_eq!(choice.checkout(&origin).0, 0);
        assert!(!choice.declined_http2(&uri("https://other.test/")));
    }

    #[test]
    fn released_lease_counts_once() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let (_, mut lease) = checkout_http2(&choice, &origin);
        lease.release();
        lease.release();
        drop(lease);
        assert_eq!(choice.in_flight(&origin), [0, 0, 0]);
    }

    #[test]
    fn uri_without_authority_counts_nothing() {
        let choice = PoolChoice::new(2, 1);
        let (pool, lease) = choice.checkout(&uri("/relative"));
        assert_eq!(pool, 0);
        assert!(lease.counted.is_none());
    }

    #[test]
    fn idle_origins_are_removed() {
        let choice = PoolChoice::new(2, 1);
        let (_, kept) = choice.checkout(&uri("https://kept.test/"));
        for index in 0..PRUNE_FLOOR {
            drop(choice.checkout(&uri(&format!("https://h{index}.test/"))));
        }
        let origins = choice.lock();
        assert!(origins.https.len() < PRUNE_FLOOR);
        assert!(origins.https.contains_key("kept.test"));
        assert!(!origins.https.contains_key("h0.test"));
        drop(origins);
        drop(kept);
    }
}
