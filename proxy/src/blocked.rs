//! HTTP/2 client connections whose socket takes no bytes.
//!
//! The response watch ends a response whose client takes none of it for
//! `timeouts.idle_ms`. Over HTTP/2 that ends only the origin's side, because hyper
//! keeps the stream while it waits to send what it has. The request stays in
//! progress, so the connection is never idle. A client that stopped reading its
//! socket altogether, dead or not, would keep its connection until the keep-alive
//! PING times out, minutes later. A [`WriteWatch`] separates such a client from one
//! that reads slowly: its writes stay blocked, while a slow reader's progress.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::send_queue::{ClientFrames, DataCounter, SendQueue};

/// Client I/O that records since when its writes have been waiting for the socket,
/// and counts the DATA written into a [`SendQueue`] when it has one.
pub(crate) struct WriteWatch<I> {
    inner: I,
    state: Arc<Blocked>,
    data: Option<QueueCount>,
}

/// The frame readers of a [`WriteWatch`] that counts for a [`SendQueue`], one per
/// direction.
struct QueueCount {
    written: DataCounter,
    received: ClientFrames,
    queue: Arc<SendQueue>,
}

/// Since when the writes of one connection have been waiting, shared with the task
/// that closes the connection.
pub(crate) struct Blocked {
    opened: Instant,
    /// Nanoseconds from `opened` to the first write that found the socket full, plus
    /// one; 0 while writes go through.
    since_ns: AtomicU64,
    /// Writes and flushes that found the socket full, since the connection opened.
    waits: AtomicU64,
}

impl<I> WriteWatch<I> {
    /// Wraps `inner` and returns the state that [`Blocked::blocked_for`] watches.
    pub(crate) fn new(inner: I) -> (WriteWatch<I>, Arc<Blocked>) {
        let state = Arc::new(Blocked {
            opened: Instant::now(),
            since_ns: AtomicU64::new(0),
            waits: AtomicU64::new(0),
        });
        let watch = WriteWatch {
            inner,
            state: state.clone(),
            data: None,
        };
        (watch, state)
    }

    /// Counts the payload of the HTTP/2 DATA frames written from now on as written
    /// from `queue`, and reports to `queue` when the client lowers its initial stream
    /// window. The connection must carry HTTP/2 from its first byte in both
    /// directions, the client's preface included.
    pub(crate) fn count_data(mut self, queue: Arc<SendQueue>) -> WriteWatch<I> {
        self.data = Some(QueueCount {
            written: DataCounter::default(),
            received: ClientFrames::default(),
            queue,
        });
        self
    }

    /// Counts the DATA payload among the first `written` bytes of `bufs`.
    fn count_written<'a>(&mut self, bufs: impl IntoIterator<Item = &'a [u8]>, mut written: usize) {
        let Some(count) = &mut self.data else {
            return;
        };
        let mut data = 0;
        for buf in bufs {
            if written == 0 {
                break;
            }
            let len = written.min(buf.len());
            data += count.written.count(&buf[..len]);
            written -= len;
        }
        count.queue.written(data);
    }

    /// Records the outcome of a write or flush.
    fn record<T>(&self, poll: Poll<T>) -> Poll<T> {
        match poll {
            Poll::Pending => self.state.mark(),
            Poll::Ready(_) => self.state.clear(),
        }
        poll
    }
}

impl Blocked {
    fn mark(&self) {
        self.waits.fetch_add(1, Ordering::Relaxed);
        if self.since_ns.load(Ordering::Relaxed) == 0 {
            let elapsed = u64::try_from(self.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.since_ns
                .store(elapsed.saturating_add(1), Ordering::Relaxed);
        }
    }

    fn clear(&self) {
        if self.since_ns.load(Ordering::Relaxed) != 0 {
            self.since_ns.store(0, Ordering::Relaxed);
        }
    }

    /// Returns how many writes and flushes have found the socket full since the
    /// connection opened.
    pub(crate) fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Returns how long writes have been waiting, or `None` when they are not.
    fn waiting(&self) -> Option<Duration> {
        let since = self.since_ns.load(Ordering::Relaxed).checked_sub(1)?;
        Some(
            self.opened
                .elapsed()
                .saturating_sub(Duration::from_nanos(since)),
        )
    }

    /// Completes once writes have been waiting for `limit` without a byte taken.
    /// It looks every quarter of `limit`, so it completes up to a quarter late.
    pub(crate) async fn blocked_for(&self, limit: Duration) {
        let period = (limit / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(period).await;
            if self.waiting().is_some_and(|waited| waited >= limit) {
                return;
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteWatch<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(count)) = (&poll, &mut self.data) {
            if count.received.read(&buf.filled()[before..]) {
                count.queue.windows_lowered();
            }
        }
        poll
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteWatch<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = poll {
            self.count_written([buf], written);
        }
        self.record(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = poll {
            self.count_written(bufs.iter().map(|buf| &buf[..]), written);
        }
        self.record(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.record(poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn blocked_writes_detected_and_progress_clears() {
        // A pipe of 16 bytes whose reader does not read: the second write waits.
        let (writer, mut reader) = tokio::io::duplex(16);
        let (mut watched, blocked) = WriteWatch::new(writer);
        watched.write_all(&[0; 16]).await.unwrap();
        assert_eq!(blocked.waiting(), None);

        let write = tokio::spawn(async move {
            watched.write_all(&[0; 16]).await.unwrap();
            watched
        });
        tokio::time::timeout(
            Duration::from_secs(10),
            blocked.blocked_for(Duration::from_millis(200)),
        )
        .await
        .expect("blocked writes not detected");
        assert!(blocked.waiting().unwrap() >= Duration::from_millis(200));

        // Reading lets the write through, which clears the state.
        let mut buffer = [0; 32];
        tokio::io::AsyncReadExt::read_exact(&mut reader, &mut buffer)
            .await
            .unwrap();
        let _watched = write.await.unwrap();
        assert_eq!(blocked.waiting(), None);
    }
}
