//! The upstream client: pooled connections to origins through the destination check,
//! with origin TLS verified and HTTP versions chosen independently of the client.

mod connector;
mod pools;
mod tls;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, Request, Response, StatusCode, Uri, Version};
use hyper::body::Body as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::IntCounterVec;
use tokio::sync::oneshot;

pub use connector::{ConnectError, ConnectTimeouts, OriginConnector, OriginStream};
pub(crate) use pools::StreamLease;
pub use tls::{CertificateProblem, OriginTls, TrustError};

use crate::body::{BodyError, BodyWatch, ProxyBody};
use crate::config::ProxyConfig;
use crate::destination::{DestinationPolicy, Refusal};
use crate::resolve::Resolve;
use pools::{Checkout, PoolChoice, MAX_PROBE_WAIT};

/// Initial HTTP/2 stream window towards origins: one download moves up to 2 MiB per
/// round trip, 40 MB/s at 50 ms. It is also the most data that swg buffers for a
/// response whose client reads slowly, which the response buffer budgets count
/// at the memory it occupies (`HTTP2_HELD_PER_WINDOW`).
const STREAM_WINDOW: u32 = 2 << 20;
/// The streams per origin connection that the connection window covers. nginx
/// allows 128 concurrent streams by default, other servers commonly 100 to 256 (an
/// estimate).
const WINDOWED_STREAMS: u32 = 128;
/// Initial HTTP/2 connection window towards origins, shared by all streams. A
/// connection carries up to `limits.http2_streams_per_origin_connection` requests
/// of many clients, so clients that stop reading must not fill this window. It
/// covers a full stream window on each of `WINDOWED_STREAMS` streams. At most
/// origins, a stream over that count waits for a free stream anyway.
const CONNECTION_WINDOW: u32 = STREAM_WINDOW * WINDOWED_STREAMS;

/// The memory that a stream window of received HTTP/2 data occupies, as a
/// multiple of the window. h2 keeps each received DATA frame as a slice of the
/// buffer that it read the frame into, and a slice keeps its whole buffer
/// allocated, so the process holds more than the data. With nginx as the origin
/// and jemalloc, 200 unread streams held 1.96 times their windows
/// (proxy/tests/response_memory.rs, `--ignored`).
///
/// NOTE: this holds for nginx's DATA frame sizes only. An origin that sends
/// 1-byte frames between frames of other streams or types pins about one read
/// buffer (9 KB) per byte until `timeouts.idle_ms` ends the unread response
/// (proxy/tests/tiny_frames.rs). Such an origin makes swg keep about as much as
/// it sends.
const HTTP2_HELD_PER_WINDOW: u64 = 2;

/// Returns the memory that a response from an origin speaking `version` can
/// hold in swg while its client does not read: one stream window of data over
/// HTTP/2, counted at `HTTP2_HELD_PER_WINDOW` times its size, and hyper's read
/// buffer over HTTP/1.1.
pub(crate) fn response_buffer_bound(version: Version, config: &ProxyConfig) -> u64 {
    if version == Version::HTTP_2 {
        http2_response_bound()
    } else {
        http1_buffer_size(config) as u64
    }
}

/// Returns the largest memory that a response from an origin of either HTTP
/// version can hold in swg while its client does not read.
pub(crate) fn largest_response_buffer(config: &ProxyConfig) -> u64 {
    http2_response_bound().max(http1_buffer_size(config) as u64)
}

fn http2_response_bound() -> u64 {
    u64::from(STREAM_WINDOW) * HTTP2_HELD_PER_WINDOW
}

/// hyper's HTTP/1.1 read buffer towards origins, which must hold a response head.
fn http1_buffer_size(config: &ProxyConfig) -> usize {
    config.limits.max_header_bytes.max(8192) as usize
}

/// The response buffer budget that a refused response did not fit in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferBudget {
    /// `limits.max_response_buffer_bytes_per_client`, of the client's address.
    Client,
    /// `limits.max_response_buffer_bytes`, of the whole process.
    Process,
}

impl BufferBudget {
    /// Returns the configuration key of the budget.
    pub fn key(self) -> &'static str {
        match self {
            BufferBudget::Client => "limits.max_response_buffer_bytes_per_client",
            BufferBudget::Process => "limits.max_response_buffer_bytes",
        }
    }
}

/// Why a request could not be forwarded, in the terms of the error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The destination address is refused by the destination check.
    DestinationRefused(Refusal),
    /// The origin's certificate is invalid.
    Certificate(CertificateProblem),
    /// The name did not resolve, or the TCP connection or TLS handshake failed.
    Unreachable,
    /// swg connected, but the origin's response was not valid HTTP, broke the
    /// protocol, never came because the origin closed the connection or refused
    /// the request's stream each time, or was a 101 to a request without
    /// `Upgrade` or a 101 to a WebSocket handshake that names no `websocket` in
    /// its `Upgrade`.
    InvalidResponse,
    /// Connect, TLS handshake, first byte or idle timeout.
    TimedOut,
    /// The request body exceeds `limits.max_request_body_bytes`.
    RequestTooLarge,
    /// The response body exceeds `limits.max_response_body_bytes`.
    ResponseTooLarge,
    /// The request names no valid host.
    InvalidHost,
    /// The response did not fit in a response buffer budget.
    Overloaded(BufferBudget),
}

impl UpstreamFailure {
    /// The `kind` label of `swg_proxy_upstream_errors_total`.
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamFailure::DestinationRefused(_) => "destination_refused",
            UpstreamFailure::Certificate(_) => "certificate",
            UpstreamFailure::Unreachable => "unreachable",
            UpstreamFailure::InvalidResponse => "invalid_response",
            UpstreamFailure::TimedOut => "timed_out",
            UpstreamFailure::RequestTooLarge => "request_too_large",
            UpstreamFailure::ResponseTooLarge => "response_too_large",
            UpstreamFailure::InvalidHost => "invalid_host",
            UpstreamFailure::Overloaded(_) => "overloaded",
        }
    }

    /// Tells whether swg itself refused the request. The destination check is a
    /// decision of swg, which the activity log records as a block; the other failures
    /// happen after swg allowed the request.
    pub fn is_refusal(self) -> bool {
        matches!(self, UpstreamFailure::DestinationRefused(_))
    }

    /// Returns the reason of the activity event, naming the refused destination
    /// class, the certificate problem or what failed.
    pub fn reason(self) -> String {
        match self {
            UpstreamFailure::DestinationRefused(refusal) => {
                format!("destination refused: {refusal}")
            }
            UpstreamFailure::Certificate(problem) => {
                format!("upstream error: origin certificate {}", problem.as_str())
            }
            UpstreamFailure::Unreachable => "upstream error: origin unreachable (name not \
                resolved, or the TCP connection or TLS handshake failed)"
                .to_owned(),
            UpstreamFailure::InvalidResponse => "upstream error: invalid response from the \
                origin (malformed or oversized head, protocol error, connection closed or \
                stream refused before a response)"
                .to_owned(),
            UpstreamFailure::TimedOut => "upstream error: origin timed out (connect, TLS \
                handshake, first byte or idle timeout)"
                .to_owned(),
            UpstreamFailure::RequestTooLarge => {
                "upstream error: request body over limits.max_request_body_bytes".to_owned()
            }
            UpstreamFailure::ResponseTooLarge => {
                "upstream error: response body over limits.max_response_body_bytes".to_owned()
            }
            UpstreamFailure::InvalidHost => "upstream error: invalid host".to_owned(),
            UpstreamFailure::Overloaded(budget) => {
                format!(
                    "upstream error: gateway overloaded, response buffers at {}",
                    budget.key()
                )
            }
        }
    }

    /// The status of the error page.
    pub fn status(self) -> StatusCode {
        match self {
            UpstreamFailure::DestinationRefused(_) => StatusCode::FORBIDDEN,
            UpstreamFailure::Certificate(_)
            | UpstreamFailure::Unreachable
            | UpstreamFailure::InvalidResponse
            | UpstreamFailure::ResponseTooLarge => StatusCode::BAD_GATEWAY,
            UpstreamFailure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            UpstreamFailure::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamFailure::InvalidHost => StatusCode::BAD_REQUEST,
            UpstreamFailure::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Classifies a connector error.
    pub fn from_connect(error: &ConnectError) -> UpstreamFailure {
        match error {
            ConnectError::InvalidUri(_) => UpstreamFailure::InvalidHost,
            ConnectError::Refused { refusal, .. } => UpstreamFailure::DestinationRefused(*refusal),
            ConnectError::Certificate { problem, .. } => UpstreamFailure::Certificate(*problem),
            ConnectError::ConnectTimeout(_) | ConnectError::TlsTimeout(_) => {
                UpstreamFailure::TimedOut
            }
            ConnectError::Resolve(_)
            | ConnectError::Connect { .. }
            | ConnectError::Tls { .. }
            | ConnectError::NotHttp2(_) => UpstreamFailure::Unreachable,
        }
    }

    /// Classifies any error by the first cause in its source chain that the proxy
    /// classifies. An error of hyper's connection, after the connector succeeded,
    /// is an invalid response: swg reached the origin, and the exchange failed.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
        let mut exchange_failed = false;
        let mut connecting = false;
        let mut current = Some(error);
        while let Some(cause) = current {
            if let Some(connect) = cause.downcast_ref::<ConnectError>() {
                return UpstreamFailure::from_connect(connect);
            }
            if let Some(body) = cause.downcast_ref::<BodyError>() {
                return match body {
                    BodyError::TooLarge { .. } => UpstreamFailure::RequestTooLarge,
                    BodyError::IdleTimeout(_) => UpstreamFailure::TimedOut,
                };
            }
            if let Some(client_error) = cause.downcast_ref::<hyper_util::client::legacy::Error>() {
                connecting |= client_error.is_connect();
            }
            if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
                if hyper_error.is_timeout() {
                    return UpstreamFailure::TimedOut;
                }
                exchange_failed = true;
            }
            if cause.is::<h2::Error>() {
                exchange_failed = true;
            }
            current = cause.source();
        }
        // A request that waited for a connection which failed carries no
        // connector error, and never reached the origin.
        if exchange_failed && !connecting {
            UpstreamFailure::InvalidResponse
        } else {
            UpstreamFailure::Unreachable
        }
    }
}

/// The pooled client towards origins.
#[derive(Clone)]
pub struct Upstream {
    /// Pools towards origins: pool 0, which negotiates the HTTP version, then
    /// `limits.http2_connections_per_origin` pools that speak only HTTP/2.
    clients: Arc<[Client<OriginConnector, ProxyBody>]>,
    /// The choice of the pool in `clients` for each request.
    choice: Arc<PoolChoice>,
    /// A pool of its own that speaks only HTTP/2, for requests sent again after an
    /// HTTP/2 origin did not process them. Its connections are not the ones that
    /// received the GOAWAY, and the requests sent again at one time share one new
    /// connection.
    resend_client: Client<OriginConnector, ProxyBody>,
    /// A client without a pool, for the last attempt. Each request opens a
    /// connection of its own in the version that ALPN selects, and the connection
    /// closes after its response.
    unpooled_client: Client<OriginConnector, ProxyBody>,
    connector: OriginConnector,
    /// Handshakes the HTTP/1.1 connections of WebSocket upgrades, with the same
    /// limits on the response head as the pools.
    websocket_http1: hyper::client::conn::http1::Builder,
    first_byte: Duration,
    /// Idle timeout of a request body, until the body ends.
    idle: Duration,
    /// `swg_proxy_upstream_resends_total{reason}`.
    resends: IntCounterVec,
}

impl Upstream {
    /// Creates the client from the configuration, a resolver and the origin TLS
    /// settings. Requests sent again are counted in `resends`, by reason.
    pub fn new(
        config: &ProxyConfig,
        resolver: Arc<dyn Resolve>,
        tls: OriginTls,
        resends: IntCounterVec,
    ) -> Upstream {
        let destinations = DestinationPolicy::new(
            config.allowed_destinations.clone(),
            config.own_addresses.clone(),
        );
        let timeouts = ConnectTimeouts {
            connect: config.timeouts.connect(),
            tls_handshake: config.timeouts.tls_handshake(),
        };
        let connector = OriginConnector::new(resolver, destinations, tls, timeouts);

        // NOTE: the adaptive window is left off because hyper then ignores the fixed
        // initial windows and starts from 64 KiB.
        let mut builder = Client::builder(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.timeouts.origin_idle())
            .pool_max_idle_per_host(256)
            .http1_max_buf_size(http1_buffer_size(config))
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .http2_max_header_list_size(config.limits.max_header_bytes)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20));
        let mut websocket_http1 = hyper::client::conn::http1::Builder::new();
        websocket_http1.max_buf_size(http1_buffer_size(config));
        if let Some(max_headers) = config.limits.hyper_max_headers() {
            builder.http1_max_headers(max_headers);
            websocket_http1.max_headers(max_headers);
        }
        let choice = Arc::new(PoolChoice::new(
            config.limits.http2_connections_per_origin,
            config.limits.http2_streams_per_origin_connection,
        ));
        let mut clients = Vec::with_capacity(choice.pools());
        clients.push(builder.build(connector.reporting_alpn(Arc::clone(&choice))));
        // Requests that wait for a connection in a pool that speaks only HTTP/2
        // share the one it opens, instead of opening one each.
        builder.http2_only(true);
        let http2_connector = connector.http2_only(Arc::clone(&choice));
        clients.extend((1..choice.pools()).map(|_| builder.build(http2_connector.clone())));
        let resend_client = builder.build(http2_connector);
        builder.http2_only(false);
        // hyper-util disables the pool when no idle connection may be kept.
        let unpooled_client = builder.pool_max_idle_per_host(0).build(connector.clone());
        Upstream {
            clients: clients.into(),
            choice,
            resend_client,
            unpooled_client,
            connector,
            websocket_http1,
            first_byte: config.timeouts.first_byte(),
            idle: config.timeouts.idle(),
            resends,
        }
    }

    /// Sends a request in absolute form and waits for the response head. Returns the
    /// response with the lease that counts its stream in its pool, which must be kept
    /// until the response body has ended or is dropped.
    ///
    /// The first-byte timeout starts when `request_sent` completes, which happens when
    /// the request body has been read to its end or dropped. A long upload therefore
    /// does not count against it. Until then, `body` watches a request with a body.
    /// The request fails with a timeout once the body has yielded no frame for the
    /// idle timeout since hyper first polled it, whether the client stopped sending
    /// or the origin stopped taking the upload. Dropping hyper's request then
    /// resets its HTTP/2 stream.
    ///
    /// A request without a body, of any method, is sent again when an HTTP/2 origin
    /// did not process it. The origin then refused its stream, or closed the pooled
    /// connection with a GOAWAY whose last stream id is below the request's stream,
    /// as nginx does after `keepalive_requests` requests. Requests sent at about the
    /// time of the GOAWAY can still get that connection from the pool, so the second
    /// attempt goes through a pool of its own, where the requests sent again at one time
    /// share one new connection. Should that connection not process it either, a
    /// third attempt goes on a connection of its own, in HTTP/2 or HTTP/1.1 as ALPN
    /// selects. A request without a body that a pool speaking only HTTP/2 could not
    /// send, because the origin declined HTTP/2 for the new connection, is sent
    /// through pool 0 instead.
    ///
    /// A 101 response fails as an invalid response, because `request` carries no
    /// `Upgrade` (WebSocket upgrades take their own connection, outside this
    /// client), so the origin switched protocols unasked (RFC 9110 section 15.2.2).
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
        request_sent: oneshot::Receiver<()>,
        body: Option<BodyWatch>,
    ) -> Result<(Response<Incoming>, StreamLease), UpstreamFailure> {
        let uri = request.uri().clone();
        let (response, lease) = self.send_attempts(request, request_sent, body).await?;
        if is_unrequested_switch(&response, None) {
            tracing::debug!(origin = %uri, "origin sent 101 to a request without Upgrade; the client gets 502");
            return Err(UpstreamFailure::InvalidResponse);
        }
        Ok((response, lease))
    }

    /// Sends a WebSocket handshake to `origin` (`http` or `https`, no path) on an
    /// HTTP/1.1 connection of its own, outside the pools, since after a 101 the
    /// connection carries the tunnel. Returns the response head once it arrives,
    /// and the caller takes the upgrade from it.
    ///
    /// The connection applies the pools' limits to the response head, the head
    /// must arrive within the first-byte timeout, and every failure is classified
    /// as a pooled request's is. A 101 whose `Upgrade` does not name `websocket`
    /// fails as an invalid response, because the origin switched to a protocol
    /// that the request did not name (RFC 9110 section 7.8).
    pub(crate) async fn send_websocket_handshake(
        &self,
        origin: &Uri,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        let stream = self
            .connector
            .connect(origin, true)
            .await
            .map_err(|error| classify(&error))?;
        let (mut sender, connection) = self
            .websocket_http1
            .handshake(stream)
            .await
            .map_err(|error| classify(&error))?;
        tokio::spawn(async move {
            if let Err(error) = connection.with_upgrades().await {
                tracing::debug!(%error, "WebSocket origin connection ended with an error");
            }
        });

        let response = match tokio::time::timeout(self.first_byte, sender.send_request(request))
            .await
        {
            Err(_) => {
                tracing::debug!(%origin, timeout = ?self.first_byte, "WebSocket handshake got no response head in time");
                return Err(UpstreamFailure::TimedOut);
            }
            Ok(result) => result.map_err(|error| classify(&error))?,
        };
        if is_unrequested_switch(&response, Some("websocket")) {
            // Debug only: the request's upstream error is logged once where the page is
            // chosen, and an origin must not control how fast the log grows.
            let upgrade = response
                .headers()
                .get(header::UPGRADE)
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .unwrap_or_default();
            tracing::debug!(%origin, %upgrade, "origin sent 101 without websocket in Upgrade to a WebSocket handshake; the client gets 502");
            return Err(UpstreamFailure::InvalidResponse);
        }
        Ok(response)
    }

    /// Sends `request` as [`Upstream::send`] describes, sending it again when the
    /// origin did not process it.
    async fn send_attempts(
        &self,
        request: Request<ProxyBody>,
        request_sent: oneshot::Receiver<()>,
        body: Option<BodyWatch>,
    ) -> Result<(Response<Incoming>, StreamLease), UpstreamFailure> {
        let replay = replay_of(&request);
        let first_byte = self.first_byte;
        let idle = self.idle;
        let deadline = async move {
            // Without a body, or before hyper polls it, the request waits for a
            // connection, which the connect and TLS handshake timeouts bound, and
            // for a free HTTP/2 stream.
            let stalled = async {
                match body {
                    Some(body) => body.stalled(idle).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = request_sent => tokio::time::sleep(first_byte).await,
                () = stalled => {}
            }
        };
        tokio::pin!(deadline);

        // A request waits for its origin's probes for at most MAX_PROBE_WAIT in
        // all, also when a probe fails and another request probes next. The
        // timer exists only once a request waits.
        let mut probe_wait = None;
        let mut probe = true;
        let (pool, lease) = loop {
            match self.choice.checkout(request.uri(), probe) {
                Checkout::Pool(pool, lease) => break (pool, lease),
                Checkout::WaitForProbe(wait) => {
                    let timer = probe_wait
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(MAX_PROBE_WAIT)));
                    tokio::select! {
                        () = wait.ended() => {}
                        () = timer.as_mut() => probe = false,
                        () = &mut deadline => return Err(UpstreamFailure::TimedOut),
                    }
                }
            }
        };
        let pooled = tokio::select! {
            result = self.clients[pool].request(request) => result,
            () = &mut deadline => return Err(UpstreamFailure::TimedOut),
        };
        if let Ok(response) = &pooled {
            lease.record(response.version());
        }
        let Some(copy) = replay else {
            return pooled
                .map(|response| (response, lease))
                .map_err(|error| classify(&error));
        };
        let (error, reason) = match pooled {
            Err(error) => match self.not_processed(&error, pool > 0, copy.uri()) {
                Some(reason) => (error, reason),
                None => return Err(classify(&error)),
            },
            Ok(response) => return Ok((response, lease)),
        };
        drop(lease);
        tracing::debug!(%error, source = ?error.source(), uri = %copy.uri(), reason, "origin did not process the request; sending it again");
        self.resends.with_label_values(&[reason]).inc();
        let copy = if reason == NOT_HTTP2 {
            // The origin now goes to pool 0, which negotiates the version. Should
            // pool 0 not process the request either, it goes on like any other.
            let (Some(next_copy), (pool, lease)) =
                (replay_of(&copy), self.choice.checkout_now(copy.uri()))
            else {
                return Err(UpstreamFailure::Unreachable);
            };
            let result = tokio::select! {
                result = self.clients[pool].request(copy) => result,
                () = &mut deadline => return Err(UpstreamFailure::TimedOut),
            };
            let error = match result {
                Ok(response) => {
                    lease.record(response.version());
                    return Ok((response, lease));
                }
                Err(error) => error,
            };
            drop(lease);
            let Some(reason) = self.not_processed(&error, pool > 0, next_copy.uri()) else {
                return Err(classify(&error));
            };
            tracing::debug!(%error, source = ?error.source(), uri = %next_copy.uri(), reason, "origin did not process the request in pool 0 either; sending it again");
            self.resends.with_label_values(&[reason]).inc();
            next_copy
        } else {
            copy
        };
        // The requests sent again below go outside the counted pools.
        let last_copy = replay_of(&copy);
        let again = tokio::select! {
            result = self.resend_client.request(copy) => result,
            () = &mut deadline => return Err(UpstreamFailure::TimedOut),
        };
        let (error, last_copy) = match (again, last_copy) {
            (Err(error), Some(last_copy)) => (error, last_copy),
            (again, _) => {
                return again
                    .map(|response| (response, StreamLease::default()))
                    .map_err(|error| classify(&error))
            }
        };
        let Some(reason) = self.not_processed(&error, true, last_copy.uri()) else {
            return Err(classify(&error));
        };
        tracing::debug!(%error, source = ?error.source(), uri = %last_copy.uri(), reason, "origin did not process the request again; sending it on a connection of its own");
        self.resends.with_label_values(&[reason]).inc();
        tokio::select! {
            result = self.unpooled_client.request(last_copy) => result
                .map(|response| (response, StreamLease::default()))
                .map_err(|error| classify(&error)),
            () = &mut deadline => Err(UpstreamFailure::TimedOut),
        }
    }

    /// Returns why `error` shows that the origin of `uri` did not process the
    /// request, as [`not_processed`] does. In a pool that speaks only HTTP/2
    /// (`http2_pool`), that is also `not_http2` for a request that waited for a
    /// connection that failed, once the origin has declined HTTP/2. hyper-util
    /// fails such waiting requests as cancelled while connecting, without the
    /// connector's error, and sent none of them. The request that opened the
    /// connection carries the connector's error, so a real failure of its own
    /// (a certificate, a timeout) is not sent again.
    fn not_processed(
        &self,
        error: &hyper_util::client::legacy::Error,
        http2_pool: bool,
        uri: &http::Uri,
    ) -> Option<&'static str> {
        not_processed(error).or_else(|| {
            let waited = error.is_connect() && connect_error(error).is_none();
            (http2_pool && waited && self.choice.declined_http2(uri)).then_some(NOT_HTTP2)
        })
    }

    /// The connector, which also opens the connections of WebSocket upgrades.
    pub fn connector(&self) -> &OriginConnector {
        &self.connector
    }
}

/// Tells whether `response` is a 101 that switches to a protocol the request did
/// not request (RFC 9110 section 7.8). `requested` is the protocol that the
/// request's `Upgrade` named, or none when it had no `Upgrade`, which makes every
/// 101 unrequested. Otherwise the 101 must name `requested` in its `Upgrade`,
/// compared without regard to ASCII case.
fn is_unrequested_switch(response: &Response<Incoming>, requested: Option<&str>) -> bool {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return false;
    }
    match requested {
        None => true,
        Some(protocol) => !names_protocol(response.headers(), protocol),
    }
}

/// Tells whether an `Upgrade` field of `headers` lists `protocol` as one of its
/// comma-separated tokens.
fn names_protocol(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case(protocol))
}

/// Classifies the error of a failed request and logs it.
fn classify(error: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
    let failure = UpstreamFailure::from_error(error);
    tracing::debug!(%error, source = ?error.source(), kind = failure.kind(), "upstream request failed");
    failure
}

/// Returns a copy of `request` to send again if the origin does not process it, or
/// none when it has a body, which the first attempt consumes.
///
/// Every request without a body pays for this copy, although few are sent again.
/// In proxy/benches/load.sh it cost about 0.2 µs of 18 µs per request, within the
/// noise of three runs.
fn replay_of(request: &Request<ProxyBody>) -> Option<Request<ProxyBody>> {
    if !request.body().is_end_stream() {
        return None;
    }
    let mut copy = Request::new(crate::body::empty());
    *copy.method_mut() = request.method().clone();
    *copy.uri_mut() = request.uri().clone();
    *copy.version_mut() = request.version();
    *copy.headers_mut() = request.headers().clone();
    Some(copy)
}

/// Returns the connector's error in the source chain of `error`, if any.
fn connect_error(error: &hyper_util::client::legacy::Error) -> Option<&ConnectError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = current {
        if let Some(connect) = cause.downcast_ref::<ConnectError>() {
            return Some(connect);
        }
        current = cause.source();
    }
    None
}

/// The `reason` label of a request sent again because a pool that speaks only
/// HTTP/2 could not open a connection to its origin in HTTP/2.
const NOT_HTTP2: &str = "not_http2";

/// Returns why `error` shows that an origin did not process the request, as the
/// `reason` label, or none. `refused_stream` is a stream reset with
/// REFUSED_STREAM and `goaway` a GOAWAY from an HTTP/2 origin (RFC 9113 section
/// 8.7). `not_http2` is a new connection of a pool that speaks only HTTP/2 that
/// the origin did not accept in HTTP/2, so nothing was sent on it.
///
/// A GOAWAY counts for every method, because h2 0.4.21 reports it only to streams
/// above the frame's last stream id and to streams opened after it, which the
/// origin never began (RFC 9113 section 6.8). Streams at or below that id, which
/// the origin may have processed, get a broken-pipe I/O error when the connection
/// closes. The GOAWAY tests in proxy/tests/transport.rs pin both cases.
///
/// A request that waits for a free stream when the GOAWAY comes is above the last
/// stream id too, and gets the GOAWAY error.
///
/// NOTE: a request that hyper reports as cancelled, with no h2 error, is not sent
/// again, because the error does not show whether its stream was opened. The
/// exception, in `Upstream::not_processed`, is a request cancelled while waiting
/// for a connection, before it was handed to one.
fn not_processed(error: &hyper_util::client::legacy::Error) -> Option<&'static str> {
    if let Some(ConnectError::NotHttp2(_)) = connect_error(error) {
        return Some(NOT_HTTP2);
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = current {
        if let Some(h2_error) = cause.downcast_ref::<h2::Error>() {
            if !h2_error.is_remote() {
                return None;
            }
            if h2_error.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Some("refused_stream");
            }
            if h2_error.is_go_away() {
                return Some("goaway");
            }
            return None;
        }
        current = cause.source();
    }
    None
}
