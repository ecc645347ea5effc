//! The agent's local DNS proxy: plain DNS on loopback in, DoH with the context option
//! out. Queries of bypassed apps go to the system resolver instead.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use super::https::HttpsClient;
use super::limits::{Admission, AgentQueries, ProxyLimits, RejectionLog, REJECTION_LOG_INTERVAL};
use super::session::TokenRejections;
use super::AgentError;
use crate::answer;
use crate::context::{QueryContext, CONTEXT_OPTION_CODE};
use crate::doh::DNS_MESSAGE;
use crate::upstream::Upstreams;
use crate::wire::{self, Incoming, MAX_MESSAGE_LEN};

/// Pause after a failed `accept`, such as when the process is out of file
/// descriptors, so that the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Attempts to find a port free for both UDP and TCP when the listener's port is 0.
const PORT_ATTEMPTS: usize = 20;

/// The bundle ids of the tenant's bypassed apps. Bundle ids match ignoring ASCII
/// case, as the policy compares them.
#[derive(Debug, Default)]
pub struct BypassList(RwLock<HashSet<String>>);

impl BypassList {
    /// Replaces the list with `bundle_ids`.
    pub fn replace(&self, bundle_ids: impl IntoIterator<Item = String>) {
        let set = bundle_ids
            .into_iter()
            .map(|id| id.to_ascii_lowercase())
            .collect();
        if let Ok(mut current) = self.0.write() {
            *current = set;
        }
    }

    /// Returns whether `bundle_id` is on the list, ignoring ASCII case.
    pub fn contains(&self, bundle_id: &str) -> bool {
        self.0
            .read()
            .is_ok_and(|set| set.contains(&bundle_id.to_ascii_lowercase()))
    }
}

/// Forwards queries to swg over DoH, adding the context option.
pub struct Forwarder {
    doh: HttpsClient,
    doh_path: String,
    token: Arc<RwLock<String>>,
    token_rejections: Arc<TokenRejections>,
    bypassed: Arc<BypassList>,
    system: Option<Upstreams>,
    limits: ProxyLimits,
    agent_queries: AgentQueries,
    doh_failures: DohFailureLog,
}

impl Forwarder {
    /// Creates a forwarder. `doh` should time out after `limits.query_deadline`.
    /// `system` resolves bypassed apps' queries; without it they are sent to swg like
    /// the others. DoH 401 responses are reported to `token_rejections` with the token
    /// that was rejected.
    pub fn new(
        doh: HttpsClient,
        doh_path: String,
        token: Arc<RwLock<String>>,
        token_rejections: Arc<TokenRejections>,
        bypassed: Arc<BypassList>,
        system: Option<Upstreams>,
        limits: ProxyLimits,
    ) -> Self {
        let agent_queries = AgentQueries::new(&limits);
        Forwarder {
            doh,
            doh_path,
            token,
            token_rejections,
            bypassed,
            system,
            limits,
            agent_queries,
            doh_failures: DohFailureLog::default(),
        }
    }

    /// Forwards one query from the app `bundle_id` and returns the response to send
    /// (sized for UDP when `udp` is set); `None` means send nothing. The response is
    /// SERVFAIL when no answer came within the query deadline.
    pub async fn forward(
        &self,
        packet: &[u8],
        bundle_id: Option<&str>,
        udp: bool,
    ) -> Option<Vec<u8>> {
        let query = match wire::read_query(packet) {
            Incoming::Query(query) => query,
            Incoming::Reject(response, _) => {
                return wire::encode_response(&response, wire::CLASSIC_UDP_LIMIT)
            }
            Incoming::Drop(_) => return None,
        };
        let limit = if udp {
            wire::udp_limit(&query)
        } else {
            MAX_MESSAGE_LEN
        };

        let bypassed = bundle_id.is_some_and(|id| self.bypassed.contains(id));
        let response = match (&self.system, bypassed) {
            (Some(system), true) => {
                let resolved = tokio::time::timeout(
                    self.limits.query_deadline,
                    system.resolve(&query.queries[0]),
                )
                .await;
                match resolved {
                    Ok(Ok(upstream)) => answer::upstream_response(&query, upstream),
                    Ok(Err(_)) | Err(_) => answer::code_response(&query, ResponseCode::ServFail),
                }
            }
            _ => self
                .through_doh(&query, bundle_id)
                .await
                .unwrap_or_else(|error| {
                    self.doh_failures.record(&error);
                    answer::code_response(&query, ResponseCode::ServFail)
                }),
        };
        wire::encode_response(&response, limit)
    }

    /// Sends `query` to swg with the context option and returns swg's response.
    pub async fn through_doh(
        &self,
        query: &Message,
        bundle_id: Option<&str>,
    ) -> Result<Message, AgentError> {
        let mut outgoing = query.clone();
        let client_had_edns = outgoing.edns.is_some();
        let edns = outgoing.edns.get_or_insert_with(Edns::new);
        let context = QueryContext {
            bundle_id: bundle_id.map(str::to_owned),
            ..QueryContext::default()
        };
        edns.options_mut()
            .remove(EdnsCode::from(CONTEXT_OPTION_CODE));
        edns.options_mut().options.push((
            EdnsCode::from(CONTEXT_OPTION_CODE),
            EdnsOption::Unknown(CONTEXT_OPTION_CODE, context.encode()),
        ));
        let body = Bytes::from(
            outgoing
                .to_vec()
                .map_err(|error| AgentError::Dns(error.to_string()))?,
        );

        let token = self
            .token
            .read()
            .map(|token| token.clone())
            .unwrap_or_default();
        let response = self
            .doh
            .send(|| {
                Request::post(self.doh_path.as_str())
                    .header(http::header::CONTENT_TYPE, DNS_MESSAGE)
                    .header(http::header::ACCEPT, DNS_MESSAGE)
                    .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Full::new(body.clone()))
                    .map_err(|error| AgentError::Http(error.to_string()))
            })
            .await?;
        if response.status() == http::StatusCode::UNAUTHORIZED {
            self.token_rejections.report(&token);
            return Err(super::unauthorized(response.body()));
        }
        if !response.status().is_success() {
            return Err(AgentError::Http(format!(
                "DoH answered HTTP {}",
                response.status()
            )));
        }

        let mut message = Message::from_vec(response.body())
            .map_err(|error| AgentError::Dns(error.to_string()))?;
        if message.metadata.id != query.metadata.id {
            return Err(AgentError::Dns("DoH response has another id".to_owned()));
        }
        // A client that sent no OPT record must not get one back (RFC 6891).
        if !client_had_edns {
            message.edns = None;
        }
        Ok(message)
    }

    /// Returns the SERVFAIL response to a query rejected at the limits, or `None`
    /// when the packet gets no response at all.
    fn overload_response(packet: &[u8]) -> Option<Vec<u8>> {
        match wire::read_query(packet) {
            Incoming::Query(query) => wire::encode_response(
                &answer::code_response(&query, ResponseCode::ServFail),
                MAX_MESSAGE_LEN,
            ),
            Incoming::Reject(response, _) => {
                wire::encode_response(&response, wire::CLASSIC_UDP_LIMIT)
            }
            Incoming::Drop(_) => None,
        }
    }
}

/// Counts the DoH exchanges of the local proxy that failed, and logs them at most
/// once per [`REJECTION_LOG_INTERVAL`] with the latest error, so that an
/// unreachable DoH endpoint does not write a line per query.
#[derive(Debug, Default)]
struct DohFailureLog(Mutex<DohFailures>);

#[derive(Debug, Default)]
struct DohFailures {
    unlogged: u64,
    latest: Option<AgentError>,
    last_line: Option<Instant>,
}

impl DohFailureLog {
    /// Counts one failure, and logs the count when a line is due.
    fn record(&self, error: &AgentError) {
        if let Ok(mut failures) = self.0.lock() {
            failures.unlogged += 1;
            failures.latest = Some(error.clone());
        }
        self.flush();
    }

    /// Logs the failures counted since the last line, if there are any and the
    /// interval since that line has passed.
    fn flush(&self) {
        let (count, error) = {
            let Ok(mut failures) = self.0.lock() else {
                return;
            };
            let now = Instant::now();
            let due = failures
                .last_line
                .is_none_or(|at| now.duration_since(at) >= REJECTION_LOG_INTERVAL);
            if failures.unlogged == 0 || !due {
                return;
            }
            failures.last_line = Some(now);
            (
                std::mem::take(&mut failures.unlogged),
                failures.latest.take(),
            )
        };
        if let Some(error) = error {
            tracing::warn!(
                %error,
                failures = count,
                "DoH queries failed and got SERVFAIL since the last such line; the error is the latest"
            );
        }
    }
}

/// A local DNS listener of the agent, bound but not served yet: UDP and TCP on one
/// address, for the app `bundle_id`.
#[derive(Debug)]
pub struct LocalListener {
    addr: SocketAddr,
    bundle_id: Option<String>,
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

impl LocalListener {
    /// Binds UDP and TCP on `addr` for the app `bundle_id`. With port 0, both
    /// sockets get the same port, which the system chooses.
    pub async fn bind(addr: SocketAddr, bundle_id: Option<String>) -> Result<Self, AgentError> {
        if let Some(bundle_id) = &bundle_id {
            super::check_bundle_id(bundle_id)?;
        }
        let attempts = if addr.port() == 0 { PORT_ATTEMPTS } else { 1 };
        let mut last_error = None;
        for _ in 0..attempts {
            let udp = UdpSocket::bind(addr)
                .await
                .map_err(|error| AgentError::Listen(addr, Arc::new(error)))?;
            let bound = udp
                .local_addr()
                .map_err(|error| AgentError::Listen(addr, Arc::new(error)))?;
            match TcpListener::bind(bound).await {
                Ok(tcp) => {
                    return Ok(LocalListener {
                        addr: bound,
                        bundle_id,
                        udp: Arc::new(udp),
                        tcp,
                    })
                }
                // The port the system chose for UDP may be taken for TCP: try another.
                Err(error) => last_error = Some(AgentError::Listen(bound, Arc::new(error))),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            AgentError::Listen(
                addr,
                Arc::new(std::io::Error::other("no port free for both UDP and TCP")),
            )
        }))
    }

    /// Returns the bound address, with the port the system chose for port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The state that the UDP and TCP sides of one listener share.
struct ListenerState {
    bundle_id: Option<String>,
    forwarder: Arc<Forwarder>,
    admission: Admission,
    rejection_log: RejectionLog,
}

impl ListenerState {
    /// Handles one TCP query: forwards it when the limits admit it, SERVFAIL
    /// otherwise.
    async fn answer_tcp(&self, packet: &[u8]) -> Option<Vec<u8>> {
        let Some(_permit) = self.admission.try_admit() else {
            self.rejection_log.query_rejected();
            return Forwarder::overload_response(packet);
        };
        self.forwarder
            .forward(packet, self.bundle_id.as_deref(), false)
            .await
    }
}

/// Serves plain DNS on `listener` (UDP and TCP) for its app, forever, within the
/// forwarder's [`ProxyLimits`].
pub async fn serve_local(
    listener: LocalListener,
    forwarder: Arc<Forwarder>,
) -> Result<(), AgentError> {
    let LocalListener {
        addr,
        bundle_id,
        udp,
        tcp,
    } = listener;
    tracing::info!(listen = %addr, app = bundle_id.as_deref().unwrap_or("none"), "agent DNS proxy listening (UDP and TCP)");
    let state = Arc::new(ListenerState {
        admission: Admission::new(&forwarder.limits, forwarder.agent_queries.clone()),
        rejection_log: RejectionLog::new(addr, bundle_id.clone()),
        bundle_id,
        forwarder,
    });

    tokio::spawn(accept_tcp(tcp, state.clone()));
    tokio::spawn(flush_rejection_log(state.clone()));
    serve_udp(&udp, &state).await
}

/// Logs the listener's pending rejections and the forwarder's DoH failures once
/// per interval, forever.
async fn flush_rejection_log(state: Arc<ListenerState>) {
    let mut ticks = tokio::time::interval(REJECTION_LOG_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        state.rejection_log.flush();
        state.forwarder.doh_failures.flush();
    }
}

async fn serve_udp(udp: &Arc<UdpSocket>, state: &Arc<ListenerState>) -> Result<(), AgentError> {
    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    loop {
        let Ok((len, source)) = udp.recv_from(&mut buffer).await else {
            continue;
        };
        let Some(permit) = state.admission.try_admit() else {
            state.rejection_log.query_rejected();
            continue;
        };
        let packet = buffer[..len].to_vec();
        let (udp, state) = (udp.clone(), state.clone());
        tokio::spawn(async move {
            let response = state
                .forwarder
                .forward(&packet, state.bundle_id.as_deref(), true)
                .await;
            drop(permit);
            if let Some(response) = response {
                let _ = udp.send_to(&response, source).await;
            }
        });
    }
}

async fn accept_tcp(tcp: TcpListener, state: Arc<ListenerState>) {
    let connections = Arc::new(tokio::sync::Semaphore::new(
        state.forwarder.limits.tcp_connections_per_listener.max(1),
    ));
    loop {
        let stream = match tcp.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "local DNS listener cannot accept a TCP connection");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            state.rejection_log.connection_rejected();
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            serve_tcp_connection(stream, &state).await;
            drop(permit);
        });
    }
}

/// Answers the queries of one TCP connection one after another, until the client
/// closes it, stays idle for the idle timeout, or stalls within a message.
async fn serve_tcp_connection(mut stream: TcpStream, state: &ListenerState) {
    let limits = &state.forwarder.limits;
    loop {
        let len = match tokio::time::timeout(limits.tcp_idle_timeout, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(_)) | Err(_) => return,
        };
        let mut packet = vec![0u8; usize::from(len)];
        let read = tokio::time::timeout(limits.tcp_io_timeout, stream.read_exact(&mut packet));
        if !matches!(read.await, Ok(Ok(_))) {
            return;
        }

        let Some(response) = state.answer_tcp(&packet).await else {
            continue;
        };
        let Ok(len) = u16::try_from(response.len()) else {
            continue;
        };
        let mut framed = len.to_be_bytes().to_vec();
        framed.extend_from_slice(&response);
        let written = tokio::time::timeout(limits.tcp_io_timeout, stream.write_all(&framed));
        if !matches!(written.await, Ok(Ok(()))) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_list_ignores_ascii_case() {
        let list = BypassList::default();
        list.replace(["com.Example.Bypassed".to_owned()]);

        assert!(list.contains("com.example.bypassed"));
        assert!(list.contains("COM.EXAMPLE.BYPASSED"));
        assert!(!list.contains("com.example.other"));
    }

    #[test]
    fn doh_failures_are_logged_once_per_interval() {
        let log = DohFailureLog::default();
        let unlogged = |log: &DohFailureLog| log.0.lock().map_or(u64::MAX, |f| f.unlogged);

        // The first failure is logged at once; the next ones wait for the interval.
        log.record(&AgentError::Unauthorized(String::new()));
        assert_eq!(unlogged(&log), 0);
        for _ in 0..4 {
            log.record(&AgentError::Unauthorized(String::new()));
        }
        log.flush();
        assert_eq!(unlogged(&log), 4);
    }

    #[tokio::test]
    async fn port_zero_shares_udp_and_tcp_port() {
        let listener = LocalListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None).await;
        let Ok(listener) = listener else {
            panic!("bind failed: {listener:?}");
        };
        let bound = listener.local_addr();
        assert_ne!(bound.port(), 0);
        assert_eq!(listener.udp.local_addr().ok(), Some(bound));
        assert_eq!(listener.tcp.local_addr().ok(), Some(bound));
    }
}
