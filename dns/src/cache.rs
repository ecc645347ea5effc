//! The shared cache of upstream answers.
//!
//! Entries are upstream answers before any policy: the verdict is computed per query
//! after the cache, so one tenant's verdict never reaches another tenant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use moka::future::Cache;
use moka::Expiry;

use crate::metrics::DnsMetrics;
use crate::upstream::{UpstreamError, Upstreams};

/// Longest time an answer stays cached, whatever its TTL says.
const MAX_CACHE_TTL: u32 = 86_400;

/// The question in lower-case text form: cheaper to hash and compare than a `Name`,
/// whose equality folds case label by label.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    query_type: RecordType,
    query_class: DNSClass,
}

/// An upstream answer and when it was stored.
#[derive(Debug)]
pub struct CachedAnswer {
    response: Message,
    stored_at: Instant,
    ttl: u32,
}

impl CachedAnswer {
    fn new(mut response: Message) -> Self {
        response.edns = None;
        response.signature = None;
        let ttl = cache_ttl(&response);
        CachedAnswer {
            response,
            stored_at: Instant::now(),
            ttl,
        }
    }

    /// Returns a copy of the answer with every TTL lowered by the time it spent in the
    /// cache, so clients never cache it past the upstream's TTL.
    pub fn aged(&self) -> Message {
        let elapsed = u32::try_from(self.stored_at.elapsed().as_secs()).unwrap_or(u32::MAX);
        let mut response = self.response.clone();
        for record in response
            .answers
            .iter_mut()
            .chain(response.authorities.iter_mut())
            .chain(response.additionals.iter_mut())
        {
            record.ttl = record.ttl.saturating_sub(elapsed);
        }
        response
    }
}

/// Computes the TTL an answer may be cached for (0: not cached).
fn cache_ttl(response: &Message) -> u32 {
    if response.metadata.truncation {
        return 0;
    }
    if !matches!(
        response.metadata.response_code,
        ResponseCode::NoError | ResponseCode::NXDomain
    ) {
        return 0;
    }
    // Negative answers carry the SOA in the authority section; its TTL bounds the
    // negative cache time (RFC 2308 section 5). No records at all: nothing to bound it.
    response
        .answers
        .iter()
        .chain(response.authorities.iter())
        .map(|record| record.ttl)
        .min()
        .unwrap_or(0)
        .min(MAX_CACHE_TTL)
}

struct TtlExpiry;

impl Expiry<CacheKey, Arc<CachedAnswer>> for TtlExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<CachedAnswer>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(u64::from(value.ttl)))
    }
}

/// Upstream resolution behind the shared cache. Concurrent misses for one question
/// share a single upstream exchange.
pub struct CachingUpstream {
    cache: Cache<CacheKey, Arc<CachedAnswer>>,
    upstreams: Upstreams,
    metrics: DnsMetrics,
}

impl CachingUpstream {
    /// Creates a cache of at most `capacity` answers in front of `upstreams`.
    pub fn new(upstreams: Upstreams, capacity: u64, metrics: DnsMetrics) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .expire_after(TtlExpiry)
            .build();
        CachingUpstream {
            cache,
            upstreams,
            metrics,
        }
    }

    /// Returns the cached answer to `query`, if there is one, with TTLs aged.
    pub async fn cached(&self, query: &Query, name: &str) -> Option<Message> {
        let key = CacheKey {
            name: name.to_owned(),
            query_type: query.query_type(),
            query_class: query.query_class(),
        };
        let answer = self.cache.get(&key).await?;
        self.metrics.cache_hits.inc();
        Some(answer.aged())
    }

    /// Resolves `query` from the cache or upstream. `name` is the query name in lower
    /// case (any consistent text form). The returned answer is upstream's, with TTLs
    /// aged; its id and EDNS are not the client's.
    pub async fn resolve(&self, query: &Query, name: &str) -> Result<Message, Arc<UpstreamError>> {
        let key = CacheKey {
            name: name.to_owned(),
            query_type: query.query_type(),
            query_class: query.query_class(),
        };
        let entry = self
            .cache
            .entry(key)
            .or_try_insert_with(async {
                let response = self.upstreams.resolve(query).await?;
                Ok::<_, UpstreamError>(Arc::new(CachedAnswer::new(response)))
            })
            .await?;
        if !entry.is_fresh() {
            self.metrics.cache_hits.inc();
        }
        Ok(entry.into_value().aged())
    }
}
