//! The plain DNS TCP listener (RFC 7766): length-prefixed messages, answered
//! concurrently and written back in completion order.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

use crate::connections::ConnectionLimiter;
use crate::resolver::{canonical_source, Resolver, Transport};
use crate::wire::DropReason;

/// Limits of one TCP connection.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Time allowed with no query in flight before the connection is closed.
    pub idle_timeout: Duration,
    /// Time allowed to read one message once its first byte arrived.
    pub read_timeout: Duration,
    /// Time a response may wait for a client that does not read before the connection
    /// is closed.
    pub write_timeout: Duration,
    /// Queries in flight or waiting to be written on one connection; reading pauses at
    /// the limit.
    pub max_queries_per_connection: usize,
}

/// The slots the TCP listener takes for its connections.
#[derive(Debug, Clone)]
pub struct TcpConnections {
    /// Slots for sources inside a tenant's location, shared with the DoH listener.
    pub known_sources: Arc<ConnectionLimiter>,
    /// Slots for sources in no location. They only ever get REFUSED, so they must not
    /// take the slots that tenants' offices and agents need.
    pub unknown_sources: Arc<ConnectionLimiter>,
}

/// Accepts connections on `listener` forever.
///
/// A connection from a source inside a tenant's location takes a slot of
/// `connections.known_sources` and is served until it is idle. A connection from any
/// other source takes a slot of `connections.unknown_sources`: the queries that arrive
/// with its first message are answered (REFUSED), then it is closed. Connections over
/// the per-client or the total limit of their pool are closed at once.
pub async fn serve_tcp(
    listener: TcpListener,
    resolver: Arc<Resolver>,
    connections: TcpConnections,
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
        let peer = canonical_source(peer);

        let known = resolver.source_in_location(peer.ip());
        let pool = if known {
            &connections.known_sources
        } else {
            &connections.unknown_sources
        };
        let Some(permit) = pool.admit(peer, "tcp") else {
            continue;
        };

        let resolver = resolver.clone();
        let in_flight = in_flight.clone();
        tokio::spawn(async move {
            if known {
                serve_connection(stream, peer, resolver, in_flight, limits).await;
            } else {
                refuse_connection(stream, peer, &resolver, &in_flight, limits).await;
            }
            drop(permit);
        });
    }
}

/// A response waiting for the writer, with the connection slot its query took.
struct Queued {
    response: Vec<u8>,
    /// Given back once the response is written or dropped.
    _slot: OwnedSemaphorePermit,
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    resolver: Arc<Resolver>,
    in_flight: Arc<Semaphore>,
    limits: TcpLimits,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    // A query keeps its slot from its read until its response is written, so the slots
    // bound the queries in flight and the responses queued for a slow reader together.
    let slots = Arc::new(Semaphore::new(limits.max_queries_per_connection));
    let (responses, outgoing) = mpsc::channel::<Queued>(limits.max_queries_per_connection);
    let write_timeouts = write_timeout_counter(&resolver);
    let write_task = tokio::spawn(write_responses(
        writer,
        outgoing,
        limits.write_timeout,
        write_timeouts,
        peer,
    ));

    loop {
        // The writer drops its receiver when it gives up on a client that does not
        // read: stop reading then too, so the connection closes.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = responses.closed() => break,
        };
        let read = tokio::select! {
            read = read_message(&mut reader, limits) => read,
            () = responses.closed() => break,
        };
        let message = match read {
            Ok(message) => message,
            Err(end) => {
                count_read_end(&resolver, peer, end);
                break;
            }
        };

        let resolver = resolver.clone();
        let in_flight = in_flight.clone();
        let responses = responses.clone();
        tokio::spawn(async move {
            if let Some(response) = answer(&resolver, &in_flight, &message, peer).await {
                // Never waits: the channel's capacity is the number of slots, and each
                // queued response keeps its slot until it is written.
                let _ = responses
                    .send(Queued {
                        response,
                        _slot: slot,
                    })
                    .await;
            }
        });
    }

    // Let queries still in flight finish, then the writer ends when every sender is gone.
    drop(responses);
    let _ = write_task.await;
}

/// Answers the queries that arrive with the first message of a connection from a
/// source in no location, then closes the connection. Such a source gets nothing but
/// REFUSED, so it has no reason to keep a connection open for the idle timeout.
async fn refuse_connection(
    stream: TcpStream,
    peer: SocketAddr,
    resolver: &Resolver,
    in_flight: &Semaphore,
    limits: TcpLimits,
) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut writer = WriteDeadline::new(
        writer,
        limits.write_timeout,
        write_timeout_counter(resolver),
    );

    // The whole first message, length prefix included, must arrive within the read
    // timeout.
    let mut messages = Vec::new();
    match tokio::time::timeout(limits.read_timeout, read_message(&mut reader, limits)).await {
        Ok(Ok(message)) => messages.push(message),
        Ok(Err(end)) => return count_read_end(resolver, peer, end),
        Err(_) => return,
    }
    // Queries that came in the same reads are answered too: closing a socket with
    // unread bytes resets the connection, and the client could lose the answers.
    while messages.len() < limits.max_queries_per_connection && holds_whole_message(reader.buffer())
    {
        match read_message(&mut reader, limits).await {
            Ok(message) => messages.push(message),
            Err(_) => break,
        }
    }

    for message in messages {
        let Some(response) = answer(resolver, in_flight, &message, peer).await else {
            continue;
        };
        if let Err(error) = write_frame(&mut writer, &response).await {
            tracing::debug!(client = %peer, %error, "TCP response not written; connection closed");
            return;
        }
    }
    let _ = writer.shutdown().await;
    tracing::debug!(client = %peer, "TCP connection from a source in no location answered and closed");
}

/// Answers one message, or when `max_queries_in_flight` queries are already in flight
/// returns SERVFAIL at once. The in-flight permit is given back as soon as the response
/// is built, so a client that does not read its responses cannot hold it.
async fn answer(
    resolver: &Resolver,
    in_flight: &Semaphore,
    message: &[u8],
    peer: SocketAddr,
) -> Option<Vec<u8>> {
    let Ok(_permit) = in_flight.try_acquire() else {
        return resolver.overloaded_response(message);
    };
    resolver.answer_plain(message, peer, Transport::Tcp).await
}

/// Writes the responses of one connection as they arrive. Ends when every sender is
/// gone, or when a response could not be written within `write_timeout`: it then
/// drops `outgoing`, which tells the read loop to stop.
async fn write_responses(
    writer: OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Queued>,
    write_timeout: Duration,
    write_timeouts: IntCounter,
    peer: SocketAddr,
) {
    let mut writer = WriteDeadline::new(writer, write_timeout, write_timeouts);
    while let Some(queued) = outgoing.recv().await {
        if let Err(error) = write_frame(&mut writer, &queued.response).await {
            tracing::debug!(client = %peer, %error, "TCP response not written; connection closed");
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Writes one message with its 2-byte length prefix. A message over 65 535 bytes
/// cannot be framed and is skipped; the resolver never builds one.
async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, message: &[u8]) -> io::Result<()> {
    let Ok(len) = u16::try_from(message.len()) else {
        return Ok(());
    };
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    writer.write_all(&framed).await
}

/// Returns `swg_dns_dropped_total{reason="write_timeout"}`.
fn write_timeout_counter(resolver: &Resolver) -> IntCounter {
    resolver
        .metrics()
        .dropped
        .with_label_values(&["write_timeout"])
}

fn count_read_end(resolver: &Resolver, peer: SocketAddr, end: ReadEnd) {
    if let Some(reason) = end.dropped_reason() {
        resolver
            .metrics()
            .dropped
            .with_label_values(&[reason])
            .inc();
        tracing::debug!(client = %peer, reason, "TCP message dropped; connection closed");
    }
}

/// Checks whether `buffered` starts with a whole length-prefixed message.
fn holds_whole_message(buffered: &[u8]) -> bool {
    match buffered {
        [high, low, rest @ ..] => rest.len() >= usize::from(u16::from_be_bytes([*high, *low])),
        _ => false,
    }
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

/// A TCP stream, or the write half of one, whose socket options can be set.
pub(crate) trait TcpHandle {
    /// Returns the underlying stream.
    fn tcp_stream(&self) -> &TcpStream;
}

impl TcpHandle for TcpStream {
    fn tcp_stream(&self) -> &TcpStream {
        self
    }
}

impl TcpHandle for OwnedWriteHalf {
    fn tcp_stream(&self) -> &TcpStream {
        self.as_ref()
    }
}

/// A TCP stream whose writes fail with [`io::ErrorKind::TimedOut`] once a write, flush
/// or shutdown has stayed blocked for the write timeout. A write blocks when the
/// kernel's send buffer is full, that is when the client does not read.
///
/// On that timeout it counts the connection in `timeouts` and makes the socket's close
/// abortive (`SO_LINGER` 0), so that dropping the stream resets the connection and the
/// kernel frees the unsent bytes at once instead of retrying them. Reads pass through.
pub(crate) struct WriteDeadline<T> {
    inner: T,
    timeout: Duration,
    /// Armed when a write blocks; disarmed when one makes progress.
    blocked: Option<Pin<Box<Sleep>>>,
    timeouts: IntCounter,
    timed_out: bool,
}

impl<T: TcpHandle> WriteDeadline<T> {
    /// Wraps `inner`; `timeouts` counts the connections closed by the deadline.
    pub(crate) fn new(inner: T, timeout: Duration, timeouts: IntCounter) -> Self {
        WriteDeadline {
            inner,
            timeout,
            blocked: None,
            timeouts,
            timed_out: false,
        }
    }

    /// Passes `poll` through, or turns a write blocked since the deadline into an error.
    fn check<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.blocked = None;
            return poll;
        }
        let timeout = self.timeout;
        let blocked = self
            .blocked
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if blocked.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }

        if !self.timed_out {
            self.timed_out = true;
            self.timeouts.inc();
            // On failure the close is merely graceful: the unsent bytes go out first.
            let _ = self.inner.tcp_stream().set_zero_linger();
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client read nothing for {} s while a response waited",
                timeout.as_secs()
            ),
        )))
    }
}

impl<T: AsyncWrite + TcpHandle + Unpin> AsyncWrite for WriteDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, poll)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_message_needs_its_length_in_bytes() {
        assert!(!holds_whole_message(&[]));
        assert!(!holds_whole_message(&[0]));
        assert!(!holds_whole_message(&[0, 3, 1, 2]));
        assert!(holds_whole_message(&[0, 3, 1, 2, 3]));
        assert!(holds_whole_message(&[0, 0]));
        assert!(holds_whole_message(&[0, 1, 9, 0, 5]));
    }
}
