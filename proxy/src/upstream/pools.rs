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
//! pool 0 until a response, or the ALPN result of a new connection in pool 0,
//! shows that the origin speaks HTTP/2, and to the HTTP/2 pools from then on. There, a request goes to the first pool whose count of
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
//! The first request to an origin over TLS is a probe. Until its connection shows
//! the origin's choice in ALPN, or its response arrives, other requests to the
//! origin wait, so that they do not each open a connection in pool 0. A probe
//! that fails or is cancelled lets the next request probe. A request waits for
//! probes for at most `MAX_PROBE_WAIT` in all.
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
use tokio::sync::Notify;

/// The smallest origin count at which a checkout removes the origins that have
/// no request in flight. Up to this many origins are remembered, with their
/// HTTP version and any decline of HTTP/2, when idle, so that a popular origin's
/// next requests do not start over in pool 0. An entry takes about 200 bytes
/// (an estimate), so the floor costs about 1 MiB.
const PRUNE_FLOOR: usize = 4096;

/// The maximum time that a request waits for its origin's probes before it goes
/// to pool 0 anyway. The probe's name lookup, TCP connect and TLS handshake take
/// two or three round trips, 0.6 to 0.9 s at 300 ms (an estimate). A probe that
/// reuses an idle connection of pool 0, whose origin swg had forgotten, ends only
/// with its response, which may take longer.
pub(crate) const MAX_PROBE_WAIT: Duration = Duration::from_secs(1);

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
    /// Whether the origin's version is known, from a response or from the ALPN
    /// result of a new connection of pool 0, so that no request probes.
    probed: AtomicBool,
    /// Whether a probe is in flight, which other requests wait for.
    probing: AtomicBool,
    /// Wakes the requests waiting for the probe when it ends.
    probe_ended: Notify,
}

/// The result of a checkout: the pool for the request, or a probe to wait for.
#[derive(Debug)]
pub(crate) enum Checkout {
    /// The index of the pool, and the lease that counts the request there.
    Pool(usize, StreamLease),
    /// The first request to the origin is still finding out which version the
    /// origin speaks.
    WaitForProbe(ProbeWait),
}

/// A probe in flight to wait for.
#[derive(Debug)]
pub(crate) struct ProbeWait(Arc<OriginStreams>);

impl ProbeWait {
    /// Completes when the probe has ended, at once if it already has.
    pub(crate) async fn ended(self) {
        let notified = self.0.probe_ended.notified();
        tokio::pin!(notified);
        // Registered before the check, so that an end between the two still
        // wakes this task.
        notified.as_mut().enable();
        if !self.0.probing.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

impl OriginStreams {
    /// Ends the probe, if one is in flight, and wakes the requests waiting for it.
    /// With `learned`, the origin's version is known and no request probes again;
    /// otherwise (the probe failed or was cancelled) the next request probes.
    fn end_probe(&self, learned: bool) {
        if learned {
            self.probed.store(true, Ordering::Release);
        }
        if self.probing.swap(false, Ordering::AcqRel) {
            self.probe_ended.notify_waiters();
        }
    }
}

impl PoolChoice {
    /// Chooses among pool 0 and `http2_pools` pools that speak only HTTP/2, moving
    /// on to the next HTTP/2 pool once an origin has `streams_per_connection`
    /// requests in flight in the previous ones. With no HTTP/2 pool, every request
    /// goes to pool 0. `streams_per_connection` must be at least 1.
    pub(crate) fn new(http2_pools: usize, streams_per_connection: u32) -> PoolChoice {
        PoolChoice {
            http2_pools,
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

    /// Returns the pool for a request to `uri` and the lease that counts the
    /// request there until it is dropped or released. With `probe`, the first
    /// request to an origin over TLS becomes its probe, and the others get the
    /// probe to wait for while it is in flight.
    pub(crate) fn checkout(&self, uri: &Uri, probe: bool) -> Checkout {
        let mut origins = self.lock();
        let Some(streams) = origins.streams(uri, self.pools()) else {
            return Checkout::Pool(0, StreamLease::default());
        };

        // Without TLS there is no ALPN to learn from, and pool 0 speaks HTTP/1.1.
        let learns = probe && uri.scheme_str() == Some("https");
        if learns && !streams.probed.load(Ordering::Acquire) {
            if streams.probing.load(Ordering::Acquire) {
                return Checkout::WaitForProbe(ProbeWait(streams));
            }
            streams.probing.store(true, Ordering::Release);
            streams.in_flight[0].fetch_add(1, Ordering::AcqRel);
            return Checkout::Pool(
                0,
                StreamLease {
                    counted: Some((streams, 0)),
                    probe: true,
                },
            );
        }

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

        Checkout::Pool(
            chosen,
            StreamLease {
                counted: Some((streams, chosen)),
                probe: false,
            },
        )
    }

    /// Records the version that the origin of `uri` chose in ALPN for a new
    /// connection of pool 0, which ends its probe.
    ///
    /// NOTE: hyper-util adds the connection to pool 0 only after the connector
    /// has returned, so without HTTP/2 pools, requests woken here may each still
    /// open a connection in pool 0, of which hyper-util keeps one.
    pub(crate) fn record_alpn(&self, uri: &Uri, http2: bool) {
        let mut origins = self.lock();
        if let Some(streams) = origins.streams(uri, self.pools()) {
            streams.http2.store(http2, Ordering::Release);
            streams.end_probe(true);
        }
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

    /// Returns the pool for a request to `uri` and its lease, as
    /// [`PoolChoice::checkout`] does without a probe. Only a checkout with a
    /// probe can wait, so the fallback to pool 0 without a lease is not reached.
    pub(crate) fn checkout_now(&self, uri: &Uri) -> (usize, StreamLease) {
        match self.checkout(uri, false) {
            Checkout::Pool(pool, lease) => (pool, lease),
            Checkout::WaitForProbe(_) => (0, StreamLease::default()),
        }
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
            probed: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            probe_ended: Notify::new(),
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
    /// Whether the request is its origin's probe, which ends at the latest
    /// when the lease is released.
    probe: bool,
}

impl StreamLease {
    /// Records the HTTP version of the request's response, which decides whether
    /// the origin's next requests go to the HTTP/2 pools, and ends a probe.
    pub(crate) fn record(&self, version: Version) {
        if let Some((streams, _)) = &self.counted {
            streams
                .http2
                .store(version == Version::HTTP_2, Ordering::Release);
            streams.end_probe(true);
        }
    }

    /// Stops counting the request, and ends a probe; later calls do nothing.
    pub(crate) fn release(&mut self) {
        if let Some((streams, pool)) = self.counted.take() {
            streams.in_flight[pool].fetch_sub(1, Ordering::AcqRel);
            if self.probe {
                streams.end_probe(false);
            }
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

    /// Checks out a request to `origin` that may probe it.
    fn checkout(choice: &PoolChoice, origin: &Uri) -> Checkout {
        choice.checkout(origin, true)
    }

    /// Checks out a request to `origin` whose response comes over HTTP/2.
    fn checkout_http2(choice: &PoolChoice, origin: &Uri) -> (usize, StreamLease) {
        let (pool, lease) = choice.checkout_now(origin);
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
            let (pool, lease) = choice.checkout_now(&origin);
            chosen.push(pool);
            leases.push(lease);
        }
        assert_eq!(chosen, [1, 1, 2, 2, 3, 3]);
        // All full: the least busy pool, the first of equals.
        let (pool, extra) = choice.checkout_now(&origin);
        assert_eq!(pool, 1);
        assert_eq!(choice.in_flight(&origin), [1, 3, 2, 2]);

        // A request that ends frees its pool for the next one.
        drop(extra);
        leases.remove(2);
        assert_eq!(choice.in_flight(&origin), [1, 2, 1, 2]);
        assert_eq!(choice.checkout_now(&origin).0, 2);
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
        assert_eq!(choice.checkout_now(&uri("https://one.test/x")).0, 1);
    }

    #[test]
    fn http1_origins_stay_in_pool_zero() {
        let choice = PoolChoice::new(3, 1);
        let origin = uri("https://origin.test/");
        let mut leases = Vec::new();
        // Before any response, then after responses over HTTP/1.1, also after
        // one over HTTP/2.
        for version in [None, Some(Version::HTTP_2), Some(Version::HTTP_11)] {
            let (pool, lease) = choice.checkout_now(&origin);
            if let Some(version) = version {
                lease.record(version);
            }
            leases.push((pool, lease));
        }
        for _ in 0..3 {
            leases.push(choice.checkout_now(&origin));
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
        assert_eq!(choice.checkout_now(&origin).0, 0);
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
        let (pool, lease) = choice.checkout_now(&uri("/relative"));
        assert_eq!(pool, 0);
        assert!(lease.counted.is_none());
    }

    #[test]
    fn idle_origins_are_removed() {
        let choice = PoolChoice::new(2, 1);
        let (_, kept) = choice.checkout_now(&uri("https://kept.test/"));
        for index in 0..PRUNE_FLOOR {
            drop(choice.checkout_now(&uri(&format!("https://h{index}.test/"))));
        }
        let origins = choice.lock();
        assert!(origins.https.len() < PRUNE_FLOOR);
        assert!(origins.https.contains_key("kept.test"));
        assert!(!origins.https.contains_key("h0.test"));
        drop(origins);
        drop(kept);
    }

    #[test]
    fn first_request_probes_and_others_wait() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let Checkout::Pool(0, probe) = checkout(&choice, &origin) else {
            panic!("the first request is the probe, in pool 0");
        };
        assert!(matches!(
            checkout(&choice, &origin),
            Checkout::WaitForProbe(_)
        ));
        // Another origin, and a plain-HTTP one, do not wait.
        assert!(matches!(
            checkout(&choice, &uri("https://other.test/")),
            Checkout::Pool(0, _)
        ));
        let plain = uri("http://origin.test/");
        assert!(matches!(checkout(&choice, &plain), Checkout::Pool(0, _)));
        assert!(matches!(checkout(&choice, &plain), Checkout::Pool(0, _)));

        // An HTTP/2 response ends the probe, so the next requests go to the
        // HTTP/2 pools without waiting.
        probe.record(Version::HTTP_2);
        let Checkout::Pool(pool, _lease) = checkout(&choice, &origin) else {
            panic!("the probe has ended");
        };
        assert_eq!(pool, 1);
        drop(probe);
        assert!(matches!(checkout(&choice, &origin), Checkout::Pool(_, _)));
    }

    #[test]
    fn probe_ends_when_dropped_or_by_alpn() {
        let choice = PoolChoice::new(2, 1);
        let failed = uri("https://failed.test/");
        let Checkout::Pool(0, probe) = checkout(&choice, &failed) else {
            panic!("the first request is the probe");
        };
        drop(probe);
        // A probe that learned nothing lets the next request probe again.
        let Checkout::Pool(0, _next_probe) = checkout(&choice, &failed) else {
            panic!("the next request is the probe");
        };
        assert!(matches!(
            checkout(&choice, &failed),
            Checkout::WaitForProbe(_)
        ));

        let learned = uri("https://learned.test/");
        let Checkout::Pool(0, _probe) = checkout(&choice, &learned) else {
            panic!("the first request is the probe");
        };
        choice.record_alpn(&learned, true);
        assert!(matches!(checkout(&choice, &learned), Checkout::Pool(1, _)));
    }

    #[tokio::test]
    async fn waiting_request_wakes_when_probe_ends() {
        let choice = PoolChoice::new(2, 1);
        let origin = uri("https://origin.test/");
        let Checkout::Pool(0, probe) = checkout(&choice, &origin) else {
            panic!("the first request is the probe");
        };
        let Checkout::WaitForProbe(wait) = checkout(&choice, &origin) else {
            panic!("the second request waits");
        };
        let waiting = tokio::spawn(wait.ended());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        probe.record(Version::HTTP_11);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the waiting request was not woken")
            .unwrap();
        assert!(matches!(checkout(&choice, &origin), Checkout::Pool(0, _)));
    }

    #[test]
    fn no_http2_pools_keeps_pool_zero() {
        let choice = PoolChoice::new(0, 1);
        let origin = uri("https://origin.test/");
        let (first, _first) = checkout_http2(&choice, &origin);
        let (second, _second) = choice.checkout_now(&origin);
        assert_eq!((first, second), (0, 0));
        assert_eq!(choice.in_flight(&origin), [2]);
    }
}
