//! The three listeners and their shared accept loop.

pub(crate) mod explicit;
pub(crate) mod http;
pub(crate) mod tls;

use std::sync::Arc;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpListener, TcpStream};

use crate::connection::Listener;
use crate::server::Shared;

/// Silence on a client connection after which TCP keepalive probes start.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between unanswered keepalive probes.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
/// Unanswered probes after which the kernel drops the connection: a vanished
/// client is found 120 s after its connection fell silent.
const KEEPALIVE_PROBES: u32 = 6;

/// Turns on TCP keepalive for a client connection.
///
/// Phones and laptops often vanish without closing their connections, out of
/// coverage or asleep. The probes find such a client even when swg has nothing to
/// send it, such as an HTTP/2 stream waiting for its flow-control window, which
/// would otherwise hold the connection until the keep-alive PING times out.
fn set_keepalive(tcp: &TcpStream) -> std::io::Result<()> {
    let keepalive = TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_PROBES);
    SockRef::from(tcp).set_tcp_keepalive(&keepalive)
}

/// Accepts connections until the proxy shuts down, applying the per-client limit,
/// and serves each on its own task.
pub(crate) async fn accept_loop(listener: TcpListener, kind: Listener, shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.wait_for(|stopping| *stopping) => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, client) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Running out of file descriptors must not spin the loop.
                tracing::warn!(listener = kind.as_str(), %error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };

        let gauge = shared
            .metrics
            .active_connections
            .with_label_values(&[kind.as_str()]);
        let permit = match shared.limiter.try_acquire(client.ip(), gauge) {
            Ok(permit) => permit,
            Err(limit) => {
                shared
                    .metrics
                    .rejected_connections
                    .with_label_values(&[kind.as_str(), limit.as_str()])
                    .inc();
                tracing::debug!(listener = kind.as_str(), %client, reason = limit.as_str(), "connection limit reached; connection closed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        if let Err(error) = set_keepalive(&tcp) {
            tracing::debug!(listener = kind.as_str(), %client, %error, "setting TCP keepalive failed");
        }

        let task_shared = shared.clone();
        let permit = Arc::new(permit);
        shared.tasks.spawn(async move {
            let shared = task_shared;
            match kind {
                Listener::Tls => tls::serve(shared, tcp, client, permit).await,
                Listener::Http => http::serve(shared, tcp, client, permit).await,
                Listener::Explicit => explicit::serve(shared, tcp, client, permit).await,
            }
        });
    }
    tracing::info!(listener = kind.as_str(), "listener stopped accepting");
}
