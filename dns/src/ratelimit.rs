//! Per-source token buckets for plain UDP, where a spoofed source can aim our answers
//! at a victim.
//!
//! A source is the network its address is counted under
//! ([`swg_identity::client_network`]): the IPv4 address, or the IPv6 prefix of the
//! configured length, since one host or victim network uses a whole IPv6 prefix.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use moka::sync::Cache;

/// Sources tracked at once; a source evicted under pressure starts with a full bucket.
const MAX_TRACKED_SOURCES: u64 = 100_000;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A token bucket per source: `rate` queries per second, bursts of `burst`.
pub struct RateLimiter {
    buckets: Cache<IpNet, Arc<Mutex<Bucket>>>,
    rate: f64,
    burst: f64,
    ipv6_prefix_len: u8,
}

impl RateLimiter {
    /// Creates a limiter that counts IPv6 sources per prefix of `ipv6_prefix_len`
    /// bits; `None` when `rate` is 0 (no limit).
    pub fn new(rate: u32, burst: u32, ipv6_prefix_len: u8) -> Option<Self> {
        if rate == 0 {
            return None;
        }
        let buckets = Cache::builder()
            .max_capacity(MAX_TRACKED_SOURCES)
            .time_to_idle(Duration::from_secs(60))
            .build();
        Some(RateLimiter {
            buckets,
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            ipv6_prefix_len,
        })
    }

    /// Takes one token for the source of `address`; `false` when its bucket is empty.
    pub fn allow(&self, address: IpAddr) -> bool {
        let burst = self.burst;
        let source = swg_identity::client_network(address, self.ipv6_prefix_len);
        let bucket = self.buckets.get_with(source, || {
            Arc::new(Mutex::new(Bucket {
                tokens: burst,
                updated: Instant::now(),
            }))
        });
        let Ok(mut bucket) = bucket.lock() else {
            // A poisoned bucket means a panic while holding it; fail open for this source.
            return true;
        };
        let now = Instant::now();
        let refill = now.duration_since(bucket.updated).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_is_allowed_then_limited_per_source() {
        let Some(limiter) = RateLimiter::new(1, 3, 64) else {
            panic!("a non-zero rate builds a limiter");
        };
        let first: IpAddr = [192, 0, 2, 1].into();
        let second: IpAddr = [192, 0, 2, 2].into();
        let allowed = (0..10).filter(|_| limiter.allow(first)).count();
        assert_eq!(allowed, 3);
        assert!(limiter.allow(second));
    }

    #[test]
    fn zero_rate_means_no_limiter() {
        assert!(RateLimiter::new(0, 10, 64).is_none());
    }

    #[test]
    fn addresses_of_one_ipv6_prefix_share_a_bucket() {
        let Some(limiter) = RateLimiter::new(1, 3, 64) else {
            panic!("a non-zero rate builds a limiter");
        };
        let allowed = (1..=10u16)
            .map(|host| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, host]))
            .filter(|&address| limiter.allow(address))
            .count();
        assert_eq!(allowed, 3);
        assert!(limiter.allow(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1])));

        let Some(per_address) = RateLimiter::new(1, 1, 128) else {
            panic!("a non-zero rate builds a limiter");
        };
        assert!(per_address.allow(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1])));
        assert!(per_address.allow(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, 2])));
        assert!(!per_address.allow(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, 1])));
    }
}
