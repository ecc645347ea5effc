//! The upstream client: pooled connections to origins through the destination check,
//! with origin TLS verified and HTTP versions chosen independently of the client.

mod connector;
mod tls;

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::oneshot;

pub use connector::{ConnectError, ConnectTimeouts, OriginConnector, OriginStream};
pub use tls::{CertificateProblem, OriginTls, TrustError};

use crate::body::{BodyError, ProxyBody};
use crate::config::ProxyConfig;
use crate::destination::{DestinationPolicy, Refusal};
use crate::resolve::Resolve;

/// Initial HTTP/2 stream window towards origins: large enough that one download is
/// not held back by window updates on a path with some latency.
const STREAM_WINDOW: u32 = 4 << 20;
/// Initial HTTP/2 connection window towards origins, shared by all streams.
const CONNECTION_WINDOW: u32 = 8 << 20;

/// Why a request could not be forwarded, in the terms of the error page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    /// The destination address is refused by the destination check.
    DestinationRefused(Refusal),
    /// The origin's certificate is invalid.
    Certificate(CertificateProblem),
    /// The name did not resolve, the connection failed or the origin broke the protocol.
    Unreachable,
    /// Connect, TLS handshake, first byte or idle timeout.
    TimedOut,
    /// The request body exceeds `limits.max_request_body_bytes`.
    RequestTooLarge,
    /// The response body exceeds `limits.max_response_body_bytes`.
    ResponseTooLarge,
    /// The request names no valid host.
    InvalidHost,
}

impl UpstreamFailure {
    /// The `kind` label of `swg_proxy_upstream_errors_total`.
    pub fn kind(self) -> &'static str {
        match self {
            UpstreamFailure::DestinationRefused(_) => "destination_refused",
            UpstreamFailure::Certificate(_) => "certificate",
            UpstreamFailure::Unreachable => "unreachable",
            UpstreamFailure::TimedOut => "timed_out",
            UpstreamFailure::RequestTooLarge => "request_too_large",
            UpstreamFailure::ResponseTooLarge => "response_too_large",
            UpstreamFailure::InvalidHost => "invalid_host",
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
                resolved, or the TCP connection, TLS handshake or HTTP exchange failed)"
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
        }
    }

    /// The status of the error page.
    pub fn status(self) -> StatusCode {
        match self {
            UpstreamFailure::DestinationRefused(_) => StatusCode::FORBIDDEN,
            UpstreamFailure::Certificate(_)
            | UpstreamFailure::Unreachable
            | UpstreamFailure::ResponseTooLarge => StatusCode::BAD_GATEWAY,
            UpstreamFailure::TimedOut => StatusCode::GATEWAY_TIMEOUT,
            UpstreamFailure::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UpstreamFailure::InvalidHost => StatusCode::BAD_REQUEST,
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
            ConnectError::Resolve(_) | ConnectError::Connect { .. } | ConnectError::Tls { .. } => {
                UpstreamFailure::Unreachable
            }
        }
    }

    /// Classifies any error by the first cause in its source chain that the proxy classifies.
    pub fn from_error(error: &(dyn std::error::Error + 'static)) -> UpstreamFailure {
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
            if let Some(hyper_error) = cause.downcast_ref::<hyper::Error>() {
                if hyper_error.is_timeout() {
                    return UpstreamFailure::TimedOut;
                }
            }
            current = cause.source();
        }
        UpstreamFailure::Unreachable
    }
}

/// The pooled client towards origins.
#[derive(Clone)]
pub struct Upstream {
    client: Client<OriginConnector, ProxyBody>,
    connector: OriginConnector,
    first_byte: Duration,
}

impl Upstream {
    /// Creates the client from the configuration, a resolver and the origin TLS settings.
    pub fn new(config: &ProxyConfig, resolver: Arc<dyn Resolve>, tls: OriginTls) -> Upstream {
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
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(config.timeouts.origin_idle())
            .pool_max_idle_per_host(256)
            .http1_max_buf_size(config.limits.max_header_bytes.max(8192) as usize)
            .http1_max_headers(config.limits.max_headers)
            .http2_initial_stream_window_size(STREAM_WINDOW)
            .http2_initial_connection_window_size(CONNECTION_WINDOW)
            .http2_max_header_list_size(config.limits.max_header_bytes)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .http2_keep_alive_timeout(Duration::from_secs(20))
            .build(connector.clone());
        Upstream {
            client,
            connector,
            first_byte: config.timeouts.first_byte(),
        }
    }

    /// Sends a request in absolute form and waits for the response head.
    ///
    /// The first-byte timeout starts when `request_sent` completes, which happens when
    /// the request body has been read to its end or dropped. A long upload therefore
    /// does not count against it, and the body's idle timeout bounds a stalled upload.
    pub async fn send(
        &self,
        request: Request<ProxyBody>,
        request_sent: oneshot::Receiver<()>,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        let response = self.client.request(request);
        let first_byte = self.first_byte;
        let deadline = async move {
            let _ = request_sent.await;
            tokio::time::sleep(first_byte).await;
        };
        tokio::pin!(response);
        tokio::pin!(deadline);
        let result = tokio::select! {
            result = &mut response => result,
            () = &mut deadline => return Err(UpstreamFailure::TimedOut),
        };
        result.map_err(|error| {
            let failure = UpstreamFailure::from_error(&error);
            tracing::debug!(error = %error, source = ?error.source(), kind = failure.kind(), "upstream request failed");
            failure
        })
    }

    /// The connector, for connections outside the pool (WebSocket upgrades).
    pub fn connector(&self) -> &OriginConnector {
        &self.connector
    }

    /// The first-byte timeout.
    pub fn first_byte_timeout(&self) -> Duration {
        self.first_byte
    }
}
