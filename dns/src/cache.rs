//! The shared cache of upstream answers.
//!
//! Entries are upstream answers before any policy: the verdict is computed per query
//! after the cache, so one tenant's verdict never reaches another tenant.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use std::net::IpAddr;

use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};
use tokio::sync::OnceCell;

use crate::metrics::DnsMetrics;
use crate::resolver::normalize;
use crate::upstream::{UpstreamError, Upstreams};
use crate::wire::EDNS_UDP_LIMIT;

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
    /// The other names of the CNAME chain (lower case, no trailing dot, no repeats),
    /// in answer order: computed once instead of per query.
    chained: Vec<String>,
    /// The A and AAAA addresses of the answer section.
    addresses: Vec<IpAddr>,
    /// The answer as a response message, for answering hits without re-encoding.
    wire: Option<WireForm>,
}

/// A cached answer encoded once: header, the question as upstream echoed it, and the
/// record sections. A hit copies it, patching the id, flags and TTLs.
#[derive(Debug)]
struct WireForm {
    bytes: Vec<u8>,
    /// End of the question section (the records start here).
    question_end: usize,
    /// Offsets of every record's TTL field.
    ttl_offsets: Vec<usize>,
}

/// The OPT record swg adds to responses to EDNS queries: root name, type, the
/// payload size, extended code, version and flags all zero, and no options.
const OPT_RECORD: [u8; 11] = {
    let size = EDNS_UDP_LIMIT.to_be_bytes();
    [0, 0, 41, size[0], size[1], 0, 0, 0, 0, 0, 0]
};

impl CachedAnswer {
    fn is_fresh(&self) -> bool {
        self.stored_at.elapsed() < Duration::from_secs(u64::from(self.ttl))
    }

    fn new(mut response: Message) -> Self {
        response.edns = None;
        response.signature = None;
        let ttl = cache_ttl(&response);
        let chained = chained_names(&response);
        let addresses = answer_addresses(&response);
        let wire = WireForm::encode(&response);
        CachedAnswer {
            response,
            stored_at: Instant::now(),
            ttl,
            chained,
            addresses,
            wire,
        }
    }

    /// Returns the names of the answer's CNAME chain, starting with `name` (the asked
    /// name, normalized), each once.
    pub fn chain<'a>(&'a self, name: &'a str) -> Vec<&'a str> {
        let mut names = Vec::with_capacity(1 + self.chained.len());
        names.push(name);
        names.extend(
            self.chained
                .iter()
                .map(String::as_str)
                .filter(|chained| *chained != name),
        );
        names
    }

    /// Returns the A and AAAA addresses of the answer section.
    pub fn addresses(&self) -> &[IpAddr] {
        &self.addresses
    }

    /// Returns the upstream response code.
    pub fn response_code(&self) -> ResponseCode {
        self.response.metadata.response_code
    }

    /// Returns a copy of the answer with every TTL lowered by the time it spent in the
    /// cache, so clients never cache it past the upstream's TTL.
    pub fn aged(&self) -> Message {
        let elapsed = self.elapsed_secs();
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

    fn elapsed_secs(&self) -> u32 {
        u32::try_from(self.stored_at.elapsed().as_secs()).unwrap_or(u32::MAX)
    }

    /// Writes the response to the plain DNS query `packet` (already parsed as `query`)
    /// straight from the encoded answer: the same bytes as encoding
    /// `upstream_response(query, self.aged())`, apart from letter case in names.
    ///
    /// Returns `None` when the fast form does not apply (the question is written
    /// differently, or the response exceeds `limit`); the caller then builds the
    /// response as a message.
    pub fn write_response(&self, packet: &[u8], query: &Message, limit: usize) -> Option<Vec<u8>> {
        let wire = self.wire.as_ref()?;
        let question = packet.get(HEADER_LEN..)?;
        let question_len = skip_name(question, 0)? + 4;
        let cached_question = wire.bytes.get(HEADER_LEN..wire.question_end)?;
        let question = question.get(..question_len)?;
        if question_len != cached_question.len()
            || question[question_len - 4..] != cached_question[question_len - 4..]
            || !question.eq_ignore_ascii_case(cached_question)
        {
            return None;
        }
        let edns = query.edns.is_some();
        let len = wire.bytes.len() + if edns { OPT_RECORD.len() } else { 0 };
        if len > limit {
            return None;
        }

        let mut bytes = Vec::with_capacity(len);
        bytes.extend_from_slice(&wire.bytes);
        bytes[0..2].copy_from_slice(&query.metadata.id.to_be_bytes());
        // RD and CD echo the query; the rest of the flags are upstream's, as encoded.
        bytes[2] = (bytes[2] & !0x01) | u8::from(query.metadata.recursion_desired);
        bytes[3] = (bytes[3] & !0x10) | (u8::from(query.metadata.checking_disabled) << 4);
        // The question as the client wrote it (its letter case).
        bytes[HEADER_LEN..wire.question_end].copy_from_slice(question);
        let elapsed = self.elapsed_secs();
        for &offset in &wire.ttl_offsets {
            let field = &mut bytes[offset..offset + 4];
            let ttl = u32::from_be_bytes([field[0], field[1], field[2], field[3]]);
            field.copy_from_slice(&ttl.saturating_sub(elapsed).to_be_bytes());
        }
        if edns {
            let additional = u16::from_be_bytes([bytes[10], bytes[11]]).checked_add(1)?;
            bytes[10..12].copy_from_slice(&additional.to_be_bytes());
            bytes.extend_from_slice(&OPT_RECORD);
        }
        Some(bytes)
    }
}

/// Lists the names of an answer's CNAME chain (owners and targets, normalized), each
/// once, in answer order.
pub(crate) fn chained_names(upstream: &Message) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for record in &upstream.answers {
        let RData::CNAME(target) = &record.data else {
            continue;
        };
        for name in [normalize(&record.name), normalize(&target.0)] {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// Lists the A and AAAA addresses of an answer section.
pub(crate) fn answer_addresses(upstream: &Message) -> Vec<IpAddr> {
    upstream
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

/// Length of the DNS message header.
const HEADER_LEN: usize = 12;

impl WireForm {
    /// Encodes `upstream` (EDNS already removed) as a response with id 0, RA set and
    /// RD and CD clear, and finds its TTL fields. `None` when the answer does not have
    /// exactly one question or cannot be encoded.
    fn encode(upstream: &Message) -> Option<Self> {
        if upstream.queries.len() != 1 {
            return None;
        }
        let mut response = Message::response(0, OpCode::Query);
        response.metadata.recursion_available = true;
        response.metadata.response_code = upstream.metadata.response_code;
        response.metadata.authentic_data = upstream.metadata.authentic_data;
        response.metadata.truncation = upstream.metadata.truncation;
        response.add_queries(upstream.queries.iter().cloned());
        response.answers = upstream.answers.clone();
        response.authorities = upstream.authorities.clone();
        response.additionals = upstream.additionals.clone();
        let bytes = response.to_vec().ok()?;

        let question_end = skip_name(&bytes, HEADER_LEN)? + 4;
        let records =
            response.answers.len() + response.authorities.len() + response.additionals.len();
        let mut ttl_offsets = Vec::with_capacity(records);
        let mut offset = question_end;
        for _ in 0..records {
            // Name, then type and class, then the TTL.
            let ttl = skip_name(&bytes, offset)? + 4;
            let rdata_len = bytes.get(ttl + 4..ttl + 6)?;
            let rdata_len = usize::from(u16::from_be_bytes([rdata_len[0], rdata_len[1]]));
            ttl_offsets.push(ttl);
            offset = ttl + 6 + rdata_len;
        }
        if offset != bytes.len() {
            return None;
        }
        Some(WireForm {
            bytes,
            question_end,
            ttl_offsets,
        })
    }
}

/// Returns the offset just past the encoded name starting at `offset` (labels ending
/// in the root label or a compression pointer), or `None` when it runs off the end.
fn skip_name(bytes: &[u8], mut offset: usize) -> Option<usize> {
    loop {
        let length = *bytes.get(offset)?;
        match length {
            0 => return Some(offset + 1),
            // A compression pointer ends the name.
            0xC0..=0xFF => {
                bytes.get(offset + 1)?;
                return Some(offset + 2);
            }
            1..=0x3F => offset += 1 + usize::from(length),
            _ => return None,
        }
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

    /// Returns the cached answer to `query`, if there is one, as stored.
    pub fn cached_answer(&self, query: &Query, name: &str) -> Option<Arc<CachedAnswer>> {
        let key = CacheKey {
            name: name.to_owned(),
            query_type: query.query_type(),
            query_class: query.query_class(),
        };
        let answer = self.lookup(&key)?;
        self.metrics.cache_hits.inc();
        Some(answer)
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

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Edns;
    use hickory_proto::rr::rdata::{A, CNAME, SOA};
    use hickory_proto::rr::{Name, Record};

    use super::*;
    use crate::answer::upstream_response;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap_or_default()
    }

    fn cname_answer() -> CachedAnswer {
        let mut upstream = Message::response(99, OpCode::Query);
        upstream.metadata.recursion_available = true;
        upstream.add_query(Query::query(name("www.example.test."), RecordType::A));
        upstream.add_answer(Record::from_rdata(
            name("www.example.test."),
            300,
            RData::CNAME(CNAME(name("cdn.example.net."))),
        ));
        upstream.add_answer(Record::from_rdata(
            name("cdn.example.net."),
            120,
            RData::A(A(Ipv4Addr::new(192, 0, 2, 7))),
        ));
        let soa = SOA::new(
            name("ns.example.net."),
            name("admin.example.net."),
            1,
            3600,
            600,
            86_400,
            60,
        );
        upstream.add_additional(Record::from_rdata(
            name("example.net."),
            60,
            RData::SOA(soa),
        ));
        upstream.set_edns(Edns::new());
        CachedAnswer::new(upstream)
    }

    fn client_query(qname: &str, edns: bool) -> (Message, Vec<u8>) {
        let mut query = Message::query();
        query.metadata.id = 4321;
        query.metadata.recursion_desired = true;
        query.metadata.checking_disabled = true;
        query.add_query(Query::query(name(qname), RecordType::A));
        if edns {
            let mut options = Edns::new();
            options.set_max_payload(4096);
            query.set_edns(options);
        }
        let bytes = query.to_vec().unwrap_or_default();
        (query, bytes)
    }

    #[test]
    fn wire_form_answers_as_the_built_message_would() {
        let answer = cname_answer();
        for edns in [true, false] {
            let (query, packet) = client_query("WWW.Example.test.", edns);
            let fast = answer.write_response(&packet, &query, 1232);
            let built = upstream_response(&query, answer.aged());
            let fast = fast.and_then(|bytes| Message::from_vec(&bytes).ok());
            assert_eq!(fast, Some(built.clone()), "edns: {edns}");
            let Some(fast) = fast else {
                panic!("no wire form answer");
            };
            assert_eq!(fast.metadata.id, 4321);
            assert_eq!(fast.queries[0].name().to_ascii(), "WWW.Example.test.");
            assert_eq!(fast.answers.len(), 2);
            assert_eq!(fast.additionals.len(), 1);
            assert_eq!(fast.edns.is_some(), edns);
        }
    }

    #[test]
    fn wire_form_declines_other_questions_and_small_limits() {
        let answer = cname_answer();
        let (query, packet) = client_query("www.example.tesx.", true);
        assert_eq!(answer.write_response(&packet, &query, 1232), None);
        let (query, packet) = client_query("www.example.test.", true);
        assert_eq!(answer.write_response(&packet, &query, 40), None);
    }

    #[test]
    fn cached_answer_lists_chain_and_addresses_once() {
        let answer = cname_answer();
        assert_eq!(
            answer.chain("www.example.test"),
            ["www.example.test", "cdn.example.net"]
        );
        assert_eq!(
            answer.addresses(),
            [IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))]
        );
    }
}
