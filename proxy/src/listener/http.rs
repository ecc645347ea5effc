//! The plain-HTTP landing: the Host header names the site.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::connection::{serve_intercepted, ConnectionContext, ConnectionPermit, Listener};
use crate::preface::{self, Opening};
use crate::server::Shared;
use crate::target::Scheme;

/// Serves one plain-HTTP landing connection in HTTP/2 when it opens with the
/// HTTP/2 connection preface (prior knowledge), and in HTTP/1.1 otherwise.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    client: SocketAddr,
    permit: Arc<ConnectionPermit>,
) {
    // NOTE: the HTTP/1.1 header read timeout starts again once the first bytes are
    // read, so a client that sends the start of a request slowly is given up to
    // twice `client_header_read` for its first request head.
    let deadline = Instant::now() + shared.config.timeouts.client_header_read();
    let mut shutdown = shared.shutdown.clone();
    // A connection that has sent nothing yet has no request to finish.
    let read = tokio::select! {
        read = preface::read_opening(tcp, deadline) => read,
        _ = shutdown.wait_for(|stopping| *stopping) => {
            tracing::debug!(listener = Listener::Http.as_str(), %client, "shutting down; connection without a request closed");
            return;
        }
    };
    let (opening, stream) = match read {
        Ok(read) => read,
        Err(error) => {
            tracing::debug!(listener = Listener::Http.as_str(), %client, %error, "connection closed before its first bytes showed the protocol");
            return;
        }
    };
    let http2 = opening == Opening::Http2Preface;
    if http2 {
        tracing::debug!(listener = Listener::Http.as_str(), %client, "HTTP/2 with prior knowledge");
    }

    let context = ConnectionContext {
        listener: Listener::Http,
        client,
        scheme: Scheme::Http,
        sni: None,
        fallback_authority: None,
        fallback_port: None,
        device_token: None,
        permit,
        responses: shared.response_watch(),
    };
    serve_intercepted(shared, context, stream, http2).await;
}
