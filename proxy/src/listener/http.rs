//! The plain-HTTP landing: the Host header names the site.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::connection::{serve_intercepted, ConnectionContext, ConnectionPermit, Listener};
use crate::server::Shared;
use crate::target::Scheme;

/// Serves one plain-HTTP landing connection.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    tcp: TcpStream,
    client: SocketAddr,
    permit: Arc<ConnectionPermit>,
) {
    let context = ConnectionContext {
        listener: Listener::Http,
        client,
        scheme: Scheme::Http,
        sni: None,
        fallback_authority: None,
        fallback_port: None,
        identity: None,
        permit,
        responses: shared.response_watch(),
    };
    serve_intercepted(shared, context, tcp, false).await;
}
