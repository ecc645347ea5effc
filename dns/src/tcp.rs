//! The plain DNS TCP listener (RFC 7766): length-prefixed messages, answered
//! concurrently and written back in completion order.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};

use crate::connections::ConnectionLimiter;
use crate::resolver::{Resolver, Transport};
use crate::wire::DropReason;

/// Limits of one TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Time allowed with no query in flight before the connection is closed.
    pub idle_timeout: Duration,
    /// Time allowed to read one message once its first byte arrived.
    pub read_timeout: Duration,
    /// Queries in flight on one connection; reading pauses at the limit.
    pub max_queries_per_connection: usize,
}

/// Accepts connections on `listener` forever. Connections over the per-client or
/// the total limit of `connections` are closed at once.
pub async fn serve_tcp(
    listener: TcpListener,
    resolver: Arc<Resolver>,
    connections: Arc<ConnectionLimiter>,
    in_flight: Arc<Semaphore>,
    limits: TcpLimits,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE: wait a moment instead of spinning.
                tracing::warn!(%error, "TCP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = connections.admit(peer, "tcp") else {
            continue;
        };
        let resolver = resolver.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            serve_connection(stream, peer, resolver, in_flight, limits).await;
            drop(permit);
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    resolver: Arc<Resolver>,
    in_flight: Arc<Semaphore>,
    limits: TcpLimits,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let per_connection = Arc::new(Semaphore::new(limits.max_queries_per_connection));
    let (responses, mut outgoing) = mpsc::channel::<Vec<u8>>(limits.max_queries_per_connection);

    // Responses go out through one writer task as they complete, in any order.
    let write_task = tokio::spawn(async move {
        while let Some(response) = outgoing.recv().await {
            let Ok(len) = u16::try_from(response.len()) else {
                continue;
            };
            let mut framed = Vec::with_capacity(response.len() + 2);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(&response);
            if writer.write_all(&framed).await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });

    loop {
        let Ok(permit) = per_connection.clone().acquire_owned().await else {
            break;
        };
        let message = match read_message(&mut reader, limits).await {
            Ok(message) => message,
            Err(end) => {
                if let Some(reason) = end.dropped_reason() {
                    resolver
                        .metrics()
                        .dropped
                        .with_label_values(&[reason])
                        .inc();
                    tracing::debug!(client = %peer, reason, "TCP message dropped; connection closed");
                }
                break;
            }
        };
        let Ok(global) = in_flight.clone().try_acquire_owned() else {
            resolver
                .metrics()
                .dropped
                .with_label_values(&["overloaded"])
                .inc();
            continue;
        };

        let resolver = resolver.clone();
        let responses = responses.clone();
        tokio::spawn(async move {
            if let Some(response) = resolver.answer_plain(&message, peer, Transport::Tcp).await {
                let _ = responses.send(response).await;
            }
            drop((permit, global));
        });
    }

    // Let queries still in flight finish, then the writer ends when every sender is gone.
    drop(responses);
    let _ = write_task.await;
}

/// The reason a TCP connection stopped reading messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReadEnd {
    /// The client closed the connection, sent nothing for the idle timeout, or the
    /// read failed.
    Closed,
    /// A length prefix of 0: an empty message, which has no header to respond to.
    Empty,
    /// The message did not arrive within the read timeout after its length prefix.
    TimedOut,
}

impl ReadEnd {
    /// Returns the `swg_dns_dropped_total` reason, or `None` when no message was lost.
    fn dropped_reason(self) -> Option<&'static str> {
        match self {
            ReadEnd::Closed => None,
            // Counted like a UDP packet shorter than a header.
            ReadEnd::Empty => Some(DropReason::NoHeader.as_str()),
            ReadEnd::TimedOut => Some("read_timeout"),
        }
    }
}

/// Reads one length-prefixed message.
async fn read_message<R: AsyncReadExt + Unpin>(
    reader: &mut R,
    limits: TcpLimits,
) -> Result<Vec<u8>, ReadEnd> {
    let len = tokio::time::timeout(limits.idle_timeout, reader.read_u16())
        .await
        .map_err(|_| ReadEnd::Closed)?
        .map_err(|_| ReadEnd::Closed)?;
    // An empty message is no query: close the connection rather than wait for more.
    if len == 0 {
        return Err(ReadEnd::Empty);
    }
    let mut message = vec![0u8; usize::from(len)];
    tokio::time::timeout(limits.read_timeout, reader.read_exact(&mut message))
        .await
        .map_err(|_| ReadEnd::TimedOut)?
        .map_err(|_| ReadEnd::Closed)?;
    Ok(message)
}
