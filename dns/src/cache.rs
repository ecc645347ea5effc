//! The shared cache of upstream answers.
//!
//! Entries are upstream answers before any policy: the verdict is computed per query
//! after the cache, so one tenant's verdict never reaches another tenant.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RecordType};
use tokio::sync::OnceCell;

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
    fn is_fresh(&self) -> bool {
        self.stored_at.elapsed() < Duration::from_secs(u64::from(self.ttl))
    }

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

/// Number of independently locked parts of the cache: enough that two cores rarely
/// wait on the same lock.
const SHARDS: usize = 16;

/// One independently locked part of the cache.
type Shard = RwLock<HashMap<CacheKey, Arc<CachedAnswer>>>;

/// The outcome of one upstream exchange, shared by every query that waited on it.
type Exchange = Arc<OnceCell<Result<Arc<CachedAnswer>, Arc<UpstreamError>>>>;

/// Upstream resolution behind the shared cache. Concurrent misses for one question
/// share a single upstream exchange.
///
/// The cache is a set of locked hash maps rather than moka: a hit is one read lock and
/// one lookup, where moka's hit also records the access for its admission policy, which
/// cost about 8 % of the resolver's CPU time under dnsperf. When a part is full, expired
/// answers are dropped first, then an arbitrary one.
pub struct CachingUpstream {
    shards: Box<[Shard]>,
    shard_capacity: usize,
    hasher: RandomState,
    in_flight: Mutex<HashMap<CacheKey, Exchange>>,
    upstreams: Upstreams,
    metrics: DnsMetrics,
}

impl CachingUpstream {
    /// Creates a cache of at most `capacity` answers in front of `upstreams`.
    pub fn new(upstreams: Upstreams, capacity: u64, metrics: DnsMetrics) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        let shard_count = capacity.clamp(1, SHARDS);
        let shards = (0..shard_count)
            .map(|_| RwLock::new(HashMap::new()))
            .collect();
        CachingUpstream {
            shards,
            shard_capacity: capacity / shard_count,
            hasher: RandomState::new(),
            in_flight: Mutex::new(HashMap::new()),
            upstreams,
            metrics,
        }
    }

    fn shard(&self, key: &CacheKey) -> &Shard {
        let hash = self.hasher.hash_one(key);
        // The remainder is below the shard count, which is a usize.
        let index = usize::try_from(hash % self.shards.len() as u64)
            .expect("a remainder below the shard count fits in usize");
        &self.shards[index]
    }

    fn lookup(&self, key: &CacheKey) -> Option<Arc<CachedAnswer>> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).filter(|answer| answer.is_fresh()).cloned()
    }

    fn store(&self, key: CacheKey, answer: Arc<CachedAnswer>) {
        if answer.ttl == 0 || self.shard_capacity == 0 {
            return;
        }
        let mut shard = self
            .shard(&key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.shard_capacity && !shard.contains_key(&key) {
            shard.retain(|_, cached| cached.is_fresh());
            if shard.len() >= self.shard_capacity {
                if let Some(victim) = shard.keys().next().cloned() {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(key, answer);
    }

    /// Returns the cached answer to `query`, if there is one, with TTLs aged.
    pub async fn cached(&self, query: &Query, name: &str) -> Option<Message> {
        let key = CacheKey {
            name: name.to_owned(),
            query_type: query.query_type(),
            query_class: query.query_class(),
        };
        let answer = self.lookup(&key)?;
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
        if let Some(answer) = self.lookup(&key) {
            self.metrics.cache_hits.inc();
            return Ok(answer.aged());
        }

        let exchange = self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone();
        let mut initialized_here = false;
        let outcome = exchange
            .get_or_init(|| async {
                initialized_here = true;
                let outcome = match self.upstreams.resolve(query).await {
                    Ok(response) => Ok(Arc::new(CachedAnswer::new(response))),
                    Err(error) => Err(Arc::new(error)),
                };
                if let Ok(answer) = &outcome {
                    self.store(key.clone(), answer.clone());
                }
                outcome
            })
            .await
            .clone();
        {
            // The first waiter to finish retires the exchange; later misses ask again.
            let mut in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if in_flight
                .get(&key)
                .is_some_and(|current| Arc::ptr_eq(current, &exchange))
            {
                in_flight.remove(&key);
            }
        }
        let answer = outcome?;
        if !initialized_here {
            self.metrics.cache_hits.inc();
        }
        Ok(answer.aged())
    }
}
