//! Byte tunnels between a client and an origin connection (upgraded WebSockets),
//! closed when no bytes move in either direction for the idle timeout.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Time each side gets for the closing shutdown after the tunnel idled out.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// The end of a tunnel.
#[derive(Debug)]
pub(crate) enum TunnelEnd {
    /// Both sides closed. `sent` counts bytes from client to origin, `received`
    /// bytes from origin to client.
    Closed { sent: u64, received: u64 },
    /// No bytes moved either way for the idle timeout, so both sides were shut down.
    Idle,
    /// A read or write failed.
    Failed(io::Error),
}

/// Copies bytes both ways between `client` and `origin` until both close, one
/// fails, or nothing moves for `idle`.
pub(crate) async fn join<C, O>(client: C, origin: O, idle: Duration) -> TunnelEnd
where
    C: AsyncRead + AsyncWrite + Unpin,
    O: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let mut client = Watched {
        io: client,
        activity: activity.clone(),
    };
    let mut origin = Watched {
        io: origin,
        activity: activity.clone(),
    };

    let copied = tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut origin) => Some(result),
        () = activity.idle_for(idle) => None,
    };
    match copied {
        Some(Ok((sent, received))) => TunnelEnd::Closed { sent, received },
        Some(Err(error)) => TunnelEnd::Failed(error),
        None => {
            // Close both sides properly (TLS close_notify, then FIN) so that each
            // peer learns that the tunnel is gone instead of waiting on a dead socket.
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, client.io.shutdown()).await;
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, origin.io.shutdown()).await;
            TunnelEnd::Idle
        }
    }
}

/// The time of the last byte moved through a tunnel, in milliseconds since it opened.
#[derive(Clone)]
struct Activity {
    opened: Instant,
    last_ms: Arc<AtomicU64>,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            opened: Instant::now(),
            last_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    fn touch(&self) {
        let elapsed = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(elapsed, Ordering::Relaxed);
    }

    /// Completes once no byte has moved for `idle`. One timer serves the whole
    /// tunnel. It wakes at the earliest possible expiry and sleeps again when bytes
    /// moved meanwhile, so moving bytes costs an atomic store and no timer update.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = self.opened + last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// One side of a tunnel, whose reads and writes that move bytes record the activity.
struct Watched<T> {
    io: T,
    activity: Activity,
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            this.activity.touch();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{duplex, AsyncReadExt};

    const IDLE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn silent_tunnel_ends_after_idle_timeout() {
        let (client, _client_peer) = duplex(1024);
        let (origin, _origin_peer) = duplex(1024);
        let opened = Instant::now();

        let end = join(client, origin, IDLE).await;

        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        assert!(opened.elapsed() >= IDLE, "{:?}", opened.elapsed());
        assert!(opened.elapsed() < 3 * IDLE, "{:?}", opened.elapsed());
    }

    #[tokio::test]
    async fn traffic_postpones_idle_timeout() {
        let (client, mut client_peer) = duplex(1024);
        let (origin, mut origin_peer) = duplex(1024);
        let tunnel = tokio::spawn(join(client, origin, IDLE));

        // A message every 150 ms, each echoed by the origin, for 1.2 s: four
        // times the idle timeout.
        for _ in 0..8 {
            tokio::time::sleep(IDLE / 2).await;
            client_peer.write_all(b"ping").await.unwrap();
            let mut message = [0u8; 4];
            origin_peer.read_exact(&mut message).await.unwrap();
            origin_peer.write_all(&message).await.unwrap();
            client_peer.read_exact(&mut message).await.unwrap();
            assert_eq!(&message, b"ping");
        }
        assert!(!tunnel.is_finished());
        let silent = Instant::now();
        let end = tunnel.await.unwrap();

        assert!(matches!(end, TunnelEnd::Idle), "{end:?}");
        assert!(silent.elapsed() < 3 * IDLE, "{:?}", silent.elapsed());
        let mut rest = Vec::new();
        assert_eq!(client_peer.read_to_end(&mut rest).await.unwrap(), 0);
        assert_eq!(origin_peer.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn closed_tunnel_reports_bytes_each_way() {
        let (client, mut client_peer) = duplex(1024);
        let (origin, mut origin_peer) = duplex(1024);
        let tunnel = tokio::spawn(join(client, origin, IDLE));

        client_peer.write_all(b"hello").await.unwrap();
        client_peer.shutdown().await.unwrap();
        let mut received = Vec::new();
        origin_peer.read_to_end(&mut received).await.unwrap();
        origin_peer.write_all(b"bye").await.unwrap();
        origin_peer.shutdown().await.unwrap();
        let end = tunnel.await.unwrap();

        assert_eq!(received, b"hello");
        assert!(
            matches!(
                end,
                TunnelEnd::Closed {
                    sent: 5,
                    received: 3
                }
            ),
            "{end:?}"
        );
    }
}
