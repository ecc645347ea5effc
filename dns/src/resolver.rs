//! The query handler shared by every listener: who asks, what the policy says, and the
//! answer that results.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use futures::FutureExt;

use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use prometheus::IntCounter;

use crate::answer::{self, EdeCode};
use crate::backends::{
    AppRef, AppTreatment, Client, ClientIdentifier, Decision, DnsPolicy, EventAction, EventSink,
    HintSink, QueryEvent, SteerHint, TokenRejection, Verdict,
};
use crate::cache::{answer_addresses, chained_names, CachedAnswer, CachingUpstream};
use crate::config::{AppBlockAnswer, DnsConfig};
use crate::context::{AppClass, QueryContext, CONTEXT_OPTION_CODE};
use crate::metrics::DnsMetrics;
use crate::wire::{self, Incoming, RejectReason, MAX_MESSAGE_LEN};

/// Name browsers probe to learn whether the network wants them to keep DNS on the
/// device; NXDOMAIN turns their built-in DoH off.
const DOH_CANARY: &str = "use-application-dns.net";

/// Names iCloud Private Relay probes; NXDOMAIN makes devices skip the relay.
const PRIVATE_RELAY_CANARIES: [&str; 2] = ["mask.icloud.com", "mask-h2.icloud.com"];

/// The listener a query arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain DNS over UDP.
    Udp,
    /// Plain DNS over TCP.
    Tcp,
    /// DNS over HTTPS.
    Doh,
}

impl Transport {
    /// Returns the label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Doh => "doh",
        }
    }
}

/// Returns `source` with an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, the form in
/// which a dual-stack listener such as `[::]:53` receives IPv4 clients) replaced by
/// the IPv4 address. Locations, limits, events and the proxy identify clients by that
/// form, so the listeners convert every source address once, where they read it.
pub fn canonical_source(source: SocketAddr) -> SocketAddr {
    SocketAddr::new(source.ip().to_canonical(), source.port())
}

/// The services the resolver calls out to.
#[derive(Clone)]
pub struct Backends {
    /// Identifies device tokens and location sources.
    pub identifier: Arc<dyn ClientIdentifier>,
    /// The tenants' policy.
    pub policy: Arc<dyn DnsPolicy>,
    /// The sink for activity events.
    pub events: Arc<dyn EventSink>,
    /// The sink for correlation hints read by the proxy.
    pub hints: Arc<dyn HintSink>,
}

/// The outcome of a DoH request.
#[derive(Debug)]
pub enum DohAnswer {
    /// Missing (`None`) or rejected device token: HTTP 401.
    Unauthorized(Option<TokenRejection>),
    /// The body is not a DNS query that can be answered at all: HTTP 400.
    BadRequest,
    /// A DNS response and the `Cache-Control: max-age` for it.
    Response {
        /// The serialized DNS response.
        body: Vec<u8>,
        /// Seconds the HTTP response may be cached.
        max_age: u32,
    },
}

/// The response to one query and its event and metric label.
struct Outcome {
    response: Response,
    /// `None` for queries that are never logged (exceptions, bypassed apps).
    event: Option<(EventAction, Decision)>,
    /// Metric label of the action.
    label: &'static str,
}

/// An upstream answer: as the cache holds it, or fresh from an exchange.
enum Upstream {
    Cached(Arc<CachedAnswer>),
    Fresh(Message),
}

impl Upstream {
    fn response_code(&self) -> ResponseCode {
        match self {
            Upstream::Cached(answer) => answer.response_code(),
            Upstream::Fresh(message) => message.metadata.response_code,
        }
    }

    /// Returns the answer as a message, TTLs aged.
    fn into_message(self) -> Message {
        match self {
            Upstream::Cached(answer) => answer.aged(),
            Upstream::Fresh(message) => message,
        }
    }
}

/// The response to one query. A cached answer passed on unchanged stays in its cached
/// form, so plain DNS can copy its encoded bytes instead of building a message.
enum Response {
    /// A response built as a message.
    Built(Message),
    /// `answer::upstream_response(query, answer.aged())`.
    Cached(Arc<CachedAnswer>),
    /// Not answered: it needs an upstream exchange and the asker does not wait.
    Deferred,
}

impl Response {
    /// Passes an upstream answer on to the client unchanged.
    fn pass(query: &Message, upstream: Upstream) -> Self {
        match upstream {
            Upstream::Cached(answer) => Response::Cached(answer),
            Upstream::Fresh(message) => Response::Built(answer::upstream_response(query, message)),
        }
    }

    fn into_message(self, query: &Message) -> Message {
        match self {
            Response::Built(message) => message,
            Response::Cached(answer) => answer::upstream_response(query, answer.aged()),
            // Only askers that do not wait get this, and they never ask for a message.
            Response::Deferred => answer::code_response(query, ResponseCode::ServFail),
        }
    }
}

impl From<Message> for Response {
    fn from(message: Message) -> Self {
        Response::Built(message)
    }
}

/// The client, source and app of one query.
struct Asker<'a> {
    client: &'a Client,
    source: IpAddr,
    context: QueryContext,
    transport: Transport,
    /// False: answer only what needs no upstream exchange, defer the rest.
    wait: bool,
}

/// The outcome of answering a plain DNS query without waiting.
pub(crate) enum Plain {
    /// The response to send (`None`: send nothing).
    Answered(Option<Vec<u8>>),
    /// The answer needs an upstream exchange; nothing was recorded.
    NeedsUpstream,
}

/// The query handler shared by the UDP, TCP and DoH listeners.
pub struct Resolver {
    config: Arc<DnsConfig>,
    upstream: CachingUpstream,
    backends: Backends,
    metrics: DnsMetrics,
    answered: AnsweredCounters,
}

impl Resolver {
    /// Creates the handler.
    pub fn new(
        config: Arc<DnsConfig>,
        upstream: CachingUpstream,
        backends: Backends,
        metrics: DnsMetrics,
    ) -> Self {
        Resolver {
            config,
            upstream,
            backends,
            metrics,
            answered: AnsweredCounters::default(),
        }
    }

    /// Returns the metrics the resolver and its listeners update.
    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// Checks whether `source` is inside a tenant's location, so that plain DNS from it
    /// is answered. The TCP listener checks once per connection, so that connections
    /// which can only get REFUSED take no slot that tenants need.
    pub(crate) fn source_in_location(&self, source: IpAddr) -> bool {
        self.backends.identifier.identify_source(source).is_some()
    }

    /// Builds the response to a TCP query that arrived while `max_queries_in_flight`
    /// queries were in flight, and counts it in
    /// `swg_dns_dropped_total{reason="overloaded"}`. A query gets SERVFAIL at once, so
    /// that the client retries instead of waiting for its own timeout, and a message
    /// the resolver would reject gets its usual error response. Returns `None` for a
    /// message that never gets a response (a response, or shorter than a header).
    pub(crate) fn overloaded_response(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        self.metrics
            .dropped
            .with_label_values(&["overloaded"])
            .inc();
        let response = match wire::read_query(bytes) {
            Incoming::Query(query) => answer::code_response(&query, ResponseCode::ServFail),
            Incoming::Reject(response, _) => *response,
            Incoming::Drop(_) => return None,
        };
        wire::encode_response(&response, MAX_MESSAGE_LEN)
    }

    /// Answers a plain DNS message from `source`; `None` means send nothing.
    pub async fn answer_plain(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) -> Option<Vec<u8>> {
        match self
            .answer_plain_or_defer(bytes, source, transport, true)
            .await
        {
            Plain::Answered(response) => response,
            // Only produced when waiting is not allowed.
            Plain::NeedsUpstream => None,
        }
    }

    /// Answers a plain DNS message if that needs no upstream exchange (a cache hit, a
    /// canary name, an ANY query, a refusal); [`Plain::NeedsUpstream`] otherwise, with
    /// nothing recorded yet. Lets the UDP loop answer most queries without spawning a
    /// task for each.
    pub(crate) fn answer_plain_now(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
    ) -> Plain {
        // Nothing on this path waits, so one poll completes it; the future stays on the
        // stack instead of in a heap allocation per query.
        self.answer_plain_or_defer(bytes, source, transport, false)
            .now_or_never()
            .unwrap_or(Plain::NeedsUpstream)
    }

    async fn answer_plain_or_defer(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
        wait: bool,
    ) -> Plain {
        match self
            .answer_plain_inner(bytes, source, transport, wait)
            .await
        {
            Some(response) => Plain::Answered(response),
            None => Plain::NeedsUpstream,
        }
    }

    /// `None`: the answer needs upstream and `wait` is false.
    async fn answer_plain_inner(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        transport: Transport,
        wait: bool,
    ) -> Option<Option<Vec<u8>>> {
        let query = match wire::read_query(bytes) {
            Incoming::Query(query) => query,
            Incoming::Reject(response, reason) => {
                self.metrics
                    .refused
                    .with_label_values(&[reject_label(reason)])
                    .inc();
                return Some(wire::encode_response(&response, wire::CLASSIC_UDP_LIMIT));
            }
            Incoming::Drop(reason) => {
                self.metrics
                    .dropped
                    .with_label_values(&[reason.as_str()])
                    .inc();
                return Some(None);
            }
        };
        let limit = match transport {
            Transport::Udp => wire::udp_limit(&query),
            Transport::Tcp | Transport::Doh => MAX_MESSAGE_LEN,
        };

        let Some(client) = self.backends.identifier.identify_source(source.ip()) else {
            self.metrics
                .refused
                .with_label_values(&["unknown_source"])
                .inc();
            tracing::debug!(client = %source, "refused query from a source outside every location");
            let mut response = answer::code_response(&query, ResponseCode::Refused);
            answer::add_ede(
                &mut response,
                EdeCode::Prohibited,
                answer::UNKNOWN_SOURCE_TEXT,
            );
            return Some(wire::encode_response(&response, limit));
        };

        // Over plain DNS the location is the identity, so only the bundle id is taken
        // from the context option. Any host in the location could claim a class hint,
        // and for that reason a bundle id on the bypass or trusted list counts as an
        // ordinary app here (see `answer`).
        let context = QueryContext {
            bundle_id: read_context(&query).bundle_id,
            ..QueryContext::default()
        };
        let asker = Asker {
            client: &client,
            source: source.ip(),
            context,
            transport,
            wait,
        };
        Some(match self.answer(&query, &asker).await {
            Response::Deferred => return None,
            Response::Cached(answer) => answer.write_response(bytes, &query, limit).or_else(|| {
                let response = answer::upstream_response(&query, answer.aged());
                wire::encode_response(&response, limit)
            }),
            Response::Built(response) => wire::encode_response(&response, limit),
        })
    }

    /// Answers a DoH request carrying `token` (the bearer token, if any).
    pub async fn answer_doh(
        &self,
        bytes: &[u8],
        source: SocketAddr,
        token: Option<&str>,
    ) -> DohAnswer {
        let client = match token.map(|token| self.backends.identifier.identify_token(token)) {
            Some(Ok(client)) => client,
            Some(Err(rejection)) => {
                self.metrics
                    .refused
                    .with_label_values(&[token_label(rejection)])
                    .inc();
                return DohAnswer::Unauthorized(Some(rejection));
            }
            None => {
                self.metrics
                    .refused
                    .with_label_values(&["missing_token"])
                    .inc();
                return DohAnswer::Unauthorized(None);
            }
        };

        let query = match wire::read_query(bytes) {
            Incoming::Query(query) => query,
            Incoming::Reject(response, reason) => {
                self.metrics
                    .refused
                    .with_label_values(&[reject_label(reason)])
                    .inc();
                return match wire::encode_response(&response, MAX_MESSAGE_LEN) {
                    Some(body) => DohAnswer::Response { body, max_age: 0 },
                    None => DohAnswer::BadRequest,
                };
            }
            Incoming::Drop(reason) => {
                self.metrics
                    .dropped
                    .with_label_values(&[reason.as_str()])
                    .inc();
                return DohAnswer::BadRequest;
            }
        };

        let asker = Asker {
            client: &client,
            source: source.ip(),
            context: read_context(&query),
            transport: Transport::Doh,
            wait: true,
        };
        let response = self.answer(&query, &asker).await.into_message(&query);
        let max_age = wire::min_ttl(&response).unwrap_or(0);
        match wire::encode_response(&response, MAX_MESSAGE_LEN) {
            Some(body) => DohAnswer::Response { body, max_age },
            None => DohAnswer::BadRequest,
        }
    }

    /// Answers one identified query and records its event and metric.
    async fn answer(&self, query: &Message, asker: &Asker<'_>) -> Response {
        let Some(question) = query.queries.first() else {
            return answer::code_response(query, ResponseCode::FormErr).into();
        };
        let name = normalize(question.name());
        let claimed = asker.context.bundle_id.as_deref();
        let treatment =
            self.backends
                .policy
                .classify_app(asker.client, claimed, asker.context.class_hint);

        let (outcome, class) = match (treatment, asker.transport) {
            // Any host in a location can claim a bundle id over plain DNS. A bypassed
            // one would turn policy and logging off, and a trusted one would keep
            // suspicious names away from the proxy. Both are filtered as an ordinary
            // app instead, and the policy does not see the id, which would classify
            // it again. Over DoH the device token vouches for the agent that named
            // the app.
            (
                AppTreatment::Bypassed | AppTreatment::Filtered(AppClass::TrustedApp),
                Transport::Udp | Transport::Tcp,
            ) => {
                let app = AppRef {
                    bundle_id: None,
                    class: AppClass::App,
                };
                (
                    self.filter(query, question, &name, app, asker).await,
                    app.class,
                )
            }
            (AppTreatment::Bypassed, Transport::Doh) => (
                self.unfiltered(query, question, &name, asker.wait).await,
                AppClass::Unknown,
            ),
            (AppTreatment::Filtered(class), _) => {
                let app = AppRef {
                    bundle_id: claimed,
                    class,
                };
                (self.filter(query, question, &name, app, asker).await, class)
            }
        };

        if matches!(outcome.response, Response::Deferred) {
            return Response::Deferred;
        }
        self.answered
            .get(&self.metrics, asker.transport, outcome.label)
            .inc();
        if let Some((action, decision)) = outcome.event {
            tracing::debug!(
                tenant = %asker.client.tenant,
                domain = %name,
                action = action.as_str(),
                reason = %decision.reason,
                "answered query"
            );
            self.backends.events.record(QueryEvent {
                time: SystemTime::now(),
                client: asker.client.clone(),
                app: asker.context.bundle_id.clone(),
                class,
                client_ip: asker.source,
                private_ip: asker.context.private_ip,
                domain: name,
                query_type: question.query_type().to_string(),
                category: decision.category,
                rule: decision.rule,
                policy: decision.policy,
                action,
                reason: decision.reason,
            });
        }
        outcome.response
    }

    /// Resolves with no policy and no event (domain exceptions, bypassed apps).
    async fn unfiltered(
        &self,
        query: &Message,
        question: &Query,
        name: &str,
        wait: bool,
    ) -> Outcome {
        if !wait {
            let response = match self.upstream.cached_answer(question, name) {
                Some(answer) => Response::Cached(answer),
                None => Response::Deferred,
            };
            return Outcome {
                response,
                event: None,
                label: "unfiltered",
            };
        }
        let response = match self.upstream.resolve(question, name).await {
            Ok(upstream) => answer::upstream_response(query, upstream),
            Err(_) => answer::code_response(query, ResponseCode::ServFail),
        };
        Outcome {
            response: response.into(),
            event: None,
            label: "unfiltered",
        }
    }

    async fn filter(
        &self,
        query: &Message,
        question: &Query,
        name: &str,
        app: AppRef<'_>,
        asker: &Asker<'_>,
    ) -> Outcome {
        let client = asker.client;

        if let Some(outcome) = self.auth_host(query, question, name) {
            return outcome;
        }
        if let Some(outcome) = self.canary(query, name, client) {
            return outcome;
        }
        if question.query_type() == RecordType::ANY {
            let response = answer::any_response(query, question.name());
            let decision = Decision::new(Verdict::Allow, "ANY answered with HINFO (RFC 8482)");
            return logged(response, EventAction::Allow, decision);
        }

        // A cached answer is decided as a whole at once. Otherwise the asked name is
        // decided first, so exceptions and blocked names cost no upstream exchange.
        let upstream = match self.upstream.cached_answer(question, name) {
            Some(answer) => Upstream::Cached(answer),
            None => {
                if !asker.wait {
                    return Outcome {
                        response: Response::Deferred,
                        event: None,
                        label: "unfiltered",
                    };
                }
                let first = self.backends.policy.decide(client, app, &[name], &[]);
                if first.verdict == Verdict::Exception {
                    return self.unfiltered(query, question, name, asker.wait).await;
                }
                if first.verdict == Verdict::Block {
                    return self.apply(query, question, name, app, first, None, asker);
                }
                match self.upstream.resolve(question, name).await {
                    Ok(upstream) => Upstream::Fresh(upstream),
                    Err(error) => {
                        tracing::debug!(domain = %name, %error, "upstream resolution failed");
                        let response = answer::code_response(query, ResponseCode::ServFail);
                        let reason = format!("upstream resolution failed: {error}");
                        return logged(
                            response,
                            EventAction::Allow,
                            Decision::new(first.verdict, reason),
                        );
                    }
                }
            }
        };

        let decision = match &upstream {
            Upstream::Cached(answer) => {
                self.backends
                    .policy
                    .decide(client, app, &answer.chain(name), answer.addresses())
            }
            Upstream::Fresh(message) => {
                let chained = chained_names(message);
                let mut names = vec![name];
                names.extend(
                    chained
                        .iter()
                        .map(String::as_str)
                        .filter(|chained| *chained != name),
                );
                let addresses = answer_addresses(message);
                self.backends.policy.decide(client, app, &names, &addresses)
            }
        };
        match decision.verdict {
            Verdict::IpException => logged(
                Response::pass(query, upstream),
                EventAction::BypassIp,
                decision,
            ),
            // Only reachable if the policy changed between the two calls.
            Verdict::Exception => Outcome {
                response: Response::pass(query, upstream),
                event: None,
                label: "unfiltered",
            },
            _ => self.apply(query, question, name, app, decision, Some(upstream), asker),
        }
    }

    /// Steers the proxy's auth host to the proxy for every client, with no policy and no
    /// event: the inspection flow sends browsers there to identify their device.
    fn auth_host(&self, query: &Message, question: &Query, name: &str) -> Option<Outcome> {
        if self.config.auth_host.as_deref() != Some(name) {
            return None;
        }
        let mut response = answer::base_response(query);
        response.answers = answer::steered_records(
            question.name(),
            question.query_type(),
            self.config.steer_ttl_secs,
            self.config.proxy_ipv4,
            self.config.proxy_ipv6,
        );
        Some(Outcome {
            response: response.into(),
            event: None,
            label: "unfiltered",
        })
    }

    /// Answers the canary names that switch browsers' and Apple's bypasses off.
    fn canary(&self, query: &Message, name: &str, client: &Client) -> Option<Outcome> {
        let relay = PRIVATE_RELAY_CANARIES.contains(&name);
        if name != DOH_CANARY && !(relay && self.backends.policy.blocks_private_relay(client)) {
            return None;
        }
        let response = answer::code_response(query, ResponseCode::NXDomain);
        let reason = if relay {
            "iCloud Private Relay canary answered NXDOMAIN"
        } else {
            "application DoH canary answered NXDOMAIN"
        };
        Some(logged(
            response,
            EventAction::Block,
            Decision::new(Verdict::Block, reason),
        ))
    }

    /// Turns a decision into an answer for the app class. Browsers are steered to the
    /// proxy for every name that resolves (the proxy shows block and warn pages); apps
    /// only for suspicious names; trusted apps never.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        query: &Message,
        question: &Query,
        name: &str,
        app: AppRef<'_>,
        decision: Decision,
        upstream: Option<Upstream>,
        asker: &Asker<'_>,
    ) -> Outcome {
        let action = class_action(app.class, decision.verdict);

        // Names that do not resolve are not steered: there is nothing to connect to. A
        // blocked name is blocked whatever upstream says, as when it is decided alone.
        let upstream = match upstream {
            Some(upstream) => {
                let resolves = upstream.response_code() == ResponseCode::NoError;
                if action == EventAction::Allow || (!resolves && action != EventAction::Block) {
                    let response = Response::pass(query, upstream);
                    return logged(response, EventAction::Allow, decision);
                }
                Some(upstream)
            }
            None => None,
        };

        let steer = app.class == AppClass::Browser
            || matches!(action, EventAction::Inspect | EventAction::Warn);
        let ttl = self.config.steer_ttl_secs;
        let query_type = question.query_type();
        let owner = question.name();
        let mut response = answer::base_response(query);
        if steer {
            response.answers = match (query_type, upstream) {
                (RecordType::A | RecordType::AAAA | RecordType::HTTPS | RecordType::SVCB, _)
                | (_, None) => answer::steered_records(
                    owner,
                    query_type,
                    ttl,
                    self.config.proxy_ipv4,
                    self.config.proxy_ipv6,
                ),
                // Other types (TXT, MX...) carry no address a browser connects to.
                (_, Some(upstream)) => upstream.into_message().answers,
            };
            self.backends.hints.record(SteerHint {
                client_ip: asker.source,
                host: name.to_owned(),
                client: asker.client.clone(),
                // The id the policy saw: the proxy decides with it again.
                app: app.bundle_id.map(str::to_owned),
                class: app.class,
            });
        } else if self.config.app_block_answer == AppBlockAnswer::Nxdomain {
            response.metadata.response_code = ResponseCode::NXDomain;
        } else {
            response.answers = answer::zero_records(owner, query_type, ttl);
        }

        let ede = if action == EventAction::Block {
            EdeCode::Blocked
        } else {
            EdeCode::Filtered
        };
        let text = answer::ede_text(
            action.as_str(),
            decision.category.as_deref(),
            decision.rule.as_deref(),
        );
        answer::add_ede(&mut response, ede, &text);
        logged(response, action, decision)
    }
}

/// The action labels of `swg_dns_queries_total`, in the order of [`AnsweredCounters`].
const ACTION_LABELS: [&str; 6] = [
    "allow",
    "inspect",
    "warn",
    "block",
    "bypass-ip",
    "unfiltered",
];

/// Handles of `swg_dns_queries_total` per transport and action, resolved on first use:
/// `with_label_values` hashes the labels and takes a lock on every call, which showed up
/// in profiles at 100 000 queries per second. Resolving lazily keeps series that never
/// counted a query out of the exported metrics, as before.
#[derive(Default)]
struct AnsweredCounters {
    counters: [[OnceLock<IntCounter>; ACTION_LABELS.len()]; 3],
}

impl AnsweredCounters {
    fn get(&self, metrics: &DnsMetrics, transport: Transport, label: &'static str) -> &IntCounter {
        let row = match transport {
            Transport::Udp => 0,
            Transport::Tcp => 1,
            Transport::Doh => 2,
        };
        let column = ACTION_LABELS
            .iter()
            .position(|known| *known == label)
            .expect("every outcome label is one of ACTION_LABELS");
        self.counters[row][column].get_or_init(|| {
            metrics
                .queries
                .with_label_values(&[transport.as_str(), label])
        })
    }
}

/// Maps a verdict and an app class to an action (the app-class table of `docs/dns.md`).
fn class_action(class: AppClass, verdict: Verdict) -> EventAction {
    match (class, verdict) {
        (
            AppClass::Browser,
            Verdict::Exception | Verdict::IpException | Verdict::Allow | Verdict::Inspect,
        ) => EventAction::Inspect,
        (AppClass::Browser, Verdict::Warn) => EventAction::Warn,
        // Apps render no warn page, so warn blocks them, as it does at the proxy.
        (_, Verdict::Block | Verdict::Warn) => EventAction::Block,
        // A trusted app is never sent to the proxy.
        (AppClass::TrustedApp, _) => EventAction::Allow,
        (_, Verdict::Inspect) => EventAction::Inspect,
        (_, Verdict::Exception | Verdict::IpException | Verdict::Allow) => EventAction::Allow,
    }
}

fn logged(response: impl Into<Response>, action: EventAction, decision: Decision) -> Outcome {
    Outcome {
        response: response.into(),
        event: Some((action, decision)),
        label: action.as_str(),
    }
}

/// Lower-case A-label form of a name with no trailing dot, as policy matching expects.
pub fn normalize(name: &Name) -> String {
    let mut text = name.to_lowercase().to_ascii();
    if text.ends_with('.') {
        text.pop();
    }
    text
}

/// Reads the context option of a query. An absent or invalid option gives an empty
/// context, and an invalid one is logged at debug level.
fn read_context(query: &Message) -> QueryContext {
    let Some(edns) = &query.edns else {
        return QueryContext::default();
    };
    match edns.option(EdnsCode::from(CONTEXT_OPTION_CODE)) {
        Some(EdnsOption::Unknown(_, value)) => {
            QueryContext::decode(value).unwrap_or_else(|error| {
                tracing::debug!(%error, "ignored invalid context option");
                QueryContext::default()
            })
        }
        _ => QueryContext::default(),
    }
}

fn reject_label(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::Malformed => "malformed",
        RejectReason::NotImplemented => "not_implemented",
        RejectReason::BadVersion => "bad_version",
        RejectReason::ZoneTransfer => "zone_transfer",
    }
}

fn token_label(rejection: TokenRejection) -> &'static str {
    match rejection {
        TokenRejection::Invalid => "invalid_token",
        TokenRejection::Expired => "expired_token",
        TokenRejection::Revoked => "revoked_token",
        TokenRejection::UnknownTenant => "unknown_tenant",
    }
}
