//! Client connections: their context, the per-client limit, and HTTP serving with
//! the configured protections.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prometheus::IntGauge;
use swg_identity::{ClientSlot, ClientSlots, SlotLimit};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::blocked::WriteWatch;
use crate::body::ProxyBody;
use crate::boundary::{ClientIdentity, Identify};
use crate::budget::{self, Budget, Reservation};
use crate::config::LimitConfig;
use crate::idle::{self, RequestTracker};
use crate::malformed;
use crate::request;
use crate::send_queue::SendQueue;
use crate::server::Shared;
use crate::stall::ResponseWatch;
use crate::target::Scheme;

/// Initial HTTP/2 stream window offered to clients (uploads), or the connection's
/// window when that is smaller.
const STREAM_WINDOW: u32 = 4 << 20;
/// HTTP/2 connection windows offered to clients, largest first. A connection gets
/// the first that fits in its client's and the process's request buffer budgets.
const CONNECTION_WINDOWS: [u32; 7] = [
    8 << 20,
    4 << 20,
    2 << 20,
    1 << 20,
    512 << 10,
    256 << 10,
    128 << 10,
];
/// The connection window every HTTP/2 peer starts with (RFC 9113, section
/// 6.9.2), offered when no larger one fits in the budgets.
const PROTOCOL_WINDOW: u32 = 65_535;
/// Data that hyper queues per HTTP/2 stream towards a client beyond what the
/// client's window lets it send. It outlives the origin's body and its response
/// buffer reservation, so it is below hyper's default of 400 KiB. At 64 KiB, swg
/// needed about 10 % more CPU per 1 MiB HTTP/2 download under h2load.
const CLIENT_SEND_BUFFER: usize = 256 << 10;

/// The listener a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The TLS landing.
    Tls,
    /// The plain-HTTP landing.
    Http,
    /// The explicit proxy.
    Explicit,
}

impl Listener {
    /// The `listener` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Listener::Tls => "tls",
            Listener::Http => "http",
            Listener::Explicit => "explicit",
        }
    }
}

/// A device token presented to the explicit proxy, with the identity it proved.
#[derive(Clone)]
pub(crate) struct DeviceToken {
    token: Arc<str>,
    identity: ClientIdentity,
    /// Whether each request verifies the token again. Requests inside a CONNECT
    /// tunnel carry no credentials of their own, so a token that expires or whose
    /// key is deleted must stop working there too.
    verify_per_request: bool,
}

impl DeviceToken {
    /// Returns the token of one absolute-form request, verified for it.
    pub(crate) fn verified(token: String, identity: ClientIdentity) -> DeviceToken {
        DeviceToken {
            token: token.into(),
            identity,
            verify_per_request: false,
        }
    }

    /// Returns the token for the requests of the CONNECT tunnel it opened.
    pub(crate) fn for_tunnel(self) -> DeviceToken {
        DeviceToken {
            verify_per_request: true,
            ..self
        }
    }

    /// Returns the identity of a request that carries this token: the proven one,
    /// or, inside a tunnel, the one the token proves now, `None` once it expired
    /// or its key was deleted.
    pub(crate) fn identity(&self, identify: &dyn Identify) -> Option<ClientIdentity> {
        if self.verify_per_request {
            identify.identify_device_token(&self.token)
        } else {
            Some(self.identity.clone())
        }
    }
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeviceToken")
            .field("identity", &self.identity)
            .field("verify_per_request", &self.verify_per_request)
            .finish_non_exhaustive()
    }
}

/// What is known about a client connection before its first request.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionContext {
    pub(crate) listener: Listener,
    pub(crate) client: SocketAddr,
    pub(crate) scheme: Scheme,
    /// The SNI of the client's ClientHello.
    pub(crate) sni: Option<String>,
    /// Host to use when a request names none: the SNI or the CONNECT host.
    pub(crate) fallback_authority: Option<String>,
    /// Port to use when a request names none: the CONNECT port.
    pub(crate) fallback_port: Option<u16>,
    /// The device token that authenticated the connection or its CONNECT
    /// (explicit proxy). Each request verifies it again.
    pub(crate) device_token: Option<DeviceToken>,
    /// The client's slot in the per-client connection limit. Tunnels that outlive
    /// the HTTP connection (CONNECT, WebSocket) keep a clone until they end.
    pub(crate) permit: Arc<ConnectionPermit>,
    /// The response bodies of the connection, ended when they stop moving.
    pub(crate) responses: Arc<ResponseWatch>,
}

/// Counts open connections per client and in all, and keeps the response and
/// request budgets of each client that has any.
///
/// A client is the network its address is counted under: the IPv4 address, or
/// the IPv6 prefix of `limits.client_ipv6_prefix_len` bits
/// ([`swg_identity::client_network`]).
pub(crate) struct ConnectionLimiter {
    slots: Arc<ClientSlots<ClientBudgets>>,
    response_budget_per_client: u64,
    request_budget_per_client: u64,
}

/// The memory budgets of one client, shared by its connections.
#[derive(Debug, Clone)]
pub(crate) struct ClientBudgets {
    /// The budget of the responses to the client.
    pub(crate) responses: Arc<Budget>,
    /// The budget of the client's uploads: the HTTP/2 connection windows offered
    /// to its connections.
    pub(crate) requests: Arc<Budget>,
}

/// The limit that refused a connection a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionLimit {
    /// `limits.max_connections_per_client`.
    PerClient,
    /// `limits.max_connections`.
    Process,
}

impl ConnectionLimit {
    /// Returns the `reason` label of `swg_proxy_rejected_connections_total`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectionLimit::PerClient => "per_client_limit",
            ConnectionLimit::Process => "process_limit",
        }
    }
}

/// One open connection; releases its slot and its gauge count when dropped.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    slot: ClientSlot<ClientBudgets>,
    gauge: IntGauge,
}

impl ConnectionPermit {
    /// Returns the budgets of the connection's client.
    pub(crate) fn budgets(&self) -> &ClientBudgets {
        &self.slot.state
    }
}

impl ConnectionLimiter {
    /// Returns a limiter of the connection limits and the per-client budgets
    /// of `limits`.
    pub(crate) fn new(limits: &LimitConfig) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            slots: ClientSlots::new(
                limits.max_connections_per_client,
                limits.connections_in_all(),
                limits.client_ipv6_prefix_len,
            ),
            response_budget_per_client: limits.response_buffer_bytes_per_client(),
            request_budget_per_client: limits.request_buffer_bytes_per_client(),
        })
    }

    /// Takes a slot for a connection from `address`, or returns the limit that
    /// its client or the process has reached.
    pub(crate) fn try_acquire(
        &self,
        address: IpAddr,
        gauge: IntGauge,
    ) -> Result<ConnectionPermit, ConnectionLimit> {
        let budgets = || ClientBudgets {
            responses: Budget::new(self.response_budget_per_client, None),
            requests: Budget::new(self.request_budget_per_client, None),
        };
        let slot = self
            .slots
            .try_acquire(address, budgets)
            .map_err(|limit| match limit {
                SlotLimit::PerClient => ConnectionLimit::PerClient,
                SlotLimit::Total => ConnectionLimit::Process,
            })?;
        gauge.inc();
        Ok(ConnectionPermit { slot, gauge })
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// Serves intercepted HTTP (landing or tunnel) on an established client stream.
pub(crate) async fn serve_intercepted<I>(
    shared: Arc<Shared>,
    context: ConnectionContext,
    io: I,
    h2: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let context = Arc::new(context);
    let handler_shared = shared.clone();
    let handler_context = context.clone();
    let service = service_fn(move |request| {
        let shared = handler_shared.clone();
        let context = handler_context.clone();
        // The request's future is about 5 KB. Boxed, it is copied once, instead of
        // at every move into hyper's per-stream task and into tokio's task cell,
        // which cost a few percent of the CPU per HTTP/2 request in load tests.
        Box::pin(async move {
            if let Some(response) =
                malformed::reject_intercepted(&shared, context.listener, &request)
            {
                return Ok(response);
            }
            Ok::<_, Infallible>(request::handle(shared, context, request).await)
        })
    });
    serve_http(&shared, &context, io, h2, service).await;
}

/// Reserves the HTTP/2 connection window offered to the client: the largest of
/// [`CONNECTION_WINDOWS`] that fits in the client's and the process's request
/// budgets, or [`PROTOCOL_WINDOW`], unreserved, when none does.
///
/// The window bounds the request body data a client can send before swg passes
/// it on, so the budgets bound what slow origins make swg buffer for uploads.
fn reserve_request_window(shared: &Shared, context: &ConnectionContext) -> (u32, Reservation) {
    for (position, window) in CONNECTION_WINDOWS.into_iter().enumerate() {
        let Ok(reservation) = budget::reserve(
            &context.permit.budgets().requests,
            &shared.request_budget,
            u64::from(window),
        ) else {
            continue;
        };
        if position > 0 {
            shared.metrics.reduced_request_windows.inc();
            tracing::debug!(client = %context.client, window, "request buffer budget spent; smaller HTTP/2 window offered");
        }
        return (window, reservation);
    }
    shared.metrics.reduced_request_windows.inc();
    tracing::debug!(client = %context.client, window = PROTOCOL_WINDOW, "request buffer budget spent; smallest HTTP/2 window offered");
    (PROTOCOL_WINDOW, Reservation::default())
}

/// Logs the closing of an HTTP/2 connection whose client took no bytes for `idle`,
/// and returns the connection's outcome.
fn blocked_closed(context: &ConnectionContext, idle: Duration) -> Result<(), hyper::Error> {
    tracing::debug!(client = %context.client, listener = context.listener.as_str(), ?idle, "HTTP/2 client took no bytes; closing the connection");
    Ok(())
}

/// Serves HTTP/1.1 (with upgrades) or HTTP/2 on an established client stream until
/// the client closes it, an error ends it or a graceful shutdown finishes it.
pub(crate) async fn serve_http<I, S>(
    shared: &Shared,
    context: &ConnectionContext,
    io: I,
    h2: bool,
    service: S,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<
            http::Request<Incoming>,
            Response = http::Response<ProxyBody>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut shutdown = shared.shutdown.clone();
    if *shutdown.borrow() {
        tracing::debug!(client = %context.client, "shutting down; connection not served");
        return;
    }
    let stopping = async move {
        let _ = shutdown.wait_for(|stopping| *stopping).await;
    };

    let limits = &shared.config.limits;
    let result = if h2 {
        // Held until the connection ends: hyper may buffer up to the window of
        // request body data that the origin has not taken yet.
        let (window, _window_reservation) = reserve_request_window(shared, context);
        let queue = SendQueue::new(
            context.permit.budgets().responses.clone(),
            shared.response_budget.clone(),
            shared.metrics.client_send_queue_bytes.clone(),
            shared.metrics.client_send_queue_forgotten_bytes.clone(),
        );
        let (io, writes) = WriteWatch::new(io);
        let io = TokioIo::new(io.count_data(queue.clone()));
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .max_pending_accept_reset_streams(limits.max_pending_accept_reset_streams)
            .max_local_error_reset_streams(limits.max_local_error_reset_streams)
            .max_header_list_size(limits.max_header_bytes)
            .initial_stream_window_size(STREAM_WINDOW.min(window))
            .initial_connection_window_size(window)
            .max_send_buf_size(CLIENT_SEND_BUFFER)
            // The keep-alive PING closes the connection of a client that vanished
            // while hyper waits for its flow-control window, with nothing to write.
            // Its acknowledgement waits behind what is queued towards the client,
            // such as a socket send buffer of up to 4 MiB (Linux's default
            // `net.ipv4.tcp_wmem`), so the timeout lets a slow link drain 4 MiB at
            // about 14 KiB/s.
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(300));
        let tracker = RequestTracker::new();
        let connection =
            builder.serve_connection(io, idle::tracked(service, tracker.clone(), queue.clone()));
        tokio::pin!(connection);
        // Stalled bodies end on their own streams; the others go on. The send
        // queue's recount runs beside them for the connection's whole life.
        let end_stalled = async {
            tokio::select! {
                never = context.responses.end_stalled() => never,
                never = queue.recount_when_stuck(&writes) => never,
            }
        };
        tokio::pin!(end_stalled);
        let idle_timeout = shared.config.timeouts.client_header_read();
        // A client that takes no bytes for the body idle timeout has stopped reading
        // its socket, so none of its streams can move.
        let body_idle = shared.config.timeouts.idle();
        let blocked = writes.blocked_for(body_idle);
        tokio::pin!(blocked);
        tokio::select! {
            result = connection.as_mut() => result,
            never = &mut end_stalled => match never {},
            () = &mut blocked => blocked_closed(context, body_idle),
            () = stopping => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    result = connection.as_mut() => result,
                    never = &mut end_stalled => match never {},
                    () = &mut blocked => blocked_closed(context, body_idle),
                }
            }
            () = tracker.idle_for(idle_timeout) => {
                tracing::debug!(client = %context.client, listener = context.listener.as_str(), ?idle_timeout, "HTTP/2 connection without requests; closing it");
                connection.as_mut().graceful_shutdown();
                // The graceful shutdown waits for the client to acknowledge a PING,
                // so a client that never does is dropped once no request is in
                // progress. The wait is the body idle timeout, because the end of
                // the last response may still sit in send buffers behind the PING,
                // for a client that reads slowly.
                let drain = shared.config.timeouts.idle();
                loop {
                    tokio::select! {
                        result = connection.as_mut() => break result,
                        never = &mut end_stalled => match never {},
                        () = &mut blocked => break blocked_closed(context, body_idle),
                        () = tokio::time::sleep(drain) => {
                            if tracker.in_progress() == 0 {
                                break Ok(());
                            }
                        }
                    }
                }
            }
        }
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(shared.config.timeouts.client_header_read())
            // max_header_size bounds the whole head (request line, fields and the
            // empty line) exactly, while max_buf_size is checked only between reads.
            .max_header_size(limits.max_header_bytes as usize)
            .max_buf_size(limits.max_header_bytes.max(8192) as usize)
            .keep_alive(true);
        if let Some(max_headers) = limits.hyper_max_headers() {
            builder.max_headers(max_headers);
        }
        let connection = builder
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result,
            // A client that stopped reading blocks the whole connection, and an
            // origin that went quiet leaves its response unfinished, so either way
            // the connection cannot carry another request.
            () = context.responses.first_stalled() => {
                tracing::debug!(client = %context.client, listener = context.listener.as_str(), "response without progress; closing the connection");
                Ok(())
            }
            () = stopping => {
                connection.as_mut().graceful_shutdown();
                tokio::select! {
                    result = connection.as_mut() => result,
                    () = context.responses.first_stalled() => {
                        tracing::debug!(client = %context.client, listener = context.listener.as_str(), "response without progress while shutting down; closing the connection");
                        Ok(())
                    }
                }
            }
        }
    };
    if let Err(error) = result {
        tracing::debug!(client = %context.client, listener = context.listener.as_str(), %error, "client connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(max_per_client: usize, ipv6_prefix_len: u8) -> Arc<ConnectionLimiter> {
        ConnectionLimiter::new(&LimitConfig {
            max_connections_per_client: max_per_client,
            client_ipv6_prefix_len: ipv6_prefix_len,
            ..LimitConfig::default()
        })
    }

    fn acquire(
        limiter: &Arc<ConnectionLimiter>,
        address: &str,
    ) -> Result<ConnectionPermit, ConnectionLimit> {
        let address: IpAddr = match address.parse() {
            Ok(address) => address,
            Err(error) => panic!("{address}: {error}"),
        };
        let gauge = match IntGauge::new("test_connections", "connections in the test") {
            Ok(gauge) => gauge,
            Err(error) => panic!("gauge: {error}"),
        };
        limiter.try_acquire(address, gauge)
    }

    #[test]
    fn ipv6_prefix_counts_as_one_client() {
        let limiter = limiter(2, 64);
        let Ok(first) = acquire(&limiter, "2001:db8:1:2::1") else {
            panic!("first connection refused");
        };
        let Ok(second) = acquire(&limiter, "2001:db8:1:2:ffff::2") else {
            panic!("second connection refused");
        };
        assert!(Arc::ptr_eq(
            &first.budgets().responses,
            &second.budgets().responses
        ));
        assert!(Arc::ptr_eq(
            &first.budgets().requests,
            &second.budgets().requests
        ));
        assert_eq!(
            acquire(&limiter, "2001:db8:1:2::3").err(),
            Some(ConnectionLimit::PerClient)
        );
        assert!(acquire(&limiter, "2001:db8:1:3::1").is_ok());
        drop(first);
        assert!(acquire(&limiter, "2001:db8:1:2::3").is_ok());
        drop(second);
    }

    #[test]
    fn ipv4_clients_and_mapped_addresses_count_per_address() {
        let limiter = limiter(1, 64);
        let Ok(_first) = acquire(&limiter, "192.0.2.1") else {
            panic!("first connection refused");
        };
        assert!(acquire(&limiter, "192.0.2.2").is_ok());
        assert_eq!(
            acquire(&limiter, "::ffff:192.0.2.1").err(),
            Some(ConnectionLimit::PerClient)
        );
    }

    #[test]
    fn prefix_of_128_counts_ipv6_addresses_alone() {
        let limiter = limiter(1, 128);
        let Ok(_first) = acquire(&limiter, "2001:db8::1") else {
            panic!("first connection refused");
        };
        assert!(acquire(&limiter, "2001:db8::2").is_ok());
        assert_eq!(
            acquire(&limiter, "2001:db8::1").err(),
            Some(ConnectionLimit::PerClient)
        );
    }
}
