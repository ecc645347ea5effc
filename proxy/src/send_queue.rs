//! Response data that hyper holds for an HTTP/2 client.
//!
//! hyper takes the next frame of a response body as soon as it has sent the last
//! one into h2, which queues up to `CLIENT_SEND_BUFFER` per stream until the
//! connection can write it. That data outlives the origin's body and its response
//! buffer reservation. A client that reads just fast enough to keep the writes
//! moving could otherwise make swg hold that much for each of its streams on each
//! of its connections.
//!
//! A [`SendQueue`] counts, for one HTTP/2 client connection, the DATA payload that
//! the response bodies gave hyper and have not been written to the connection yet.
//! The writes are read from the frames hyper writes ([`DataCounter`]), because
//! hyper exposes neither its queues nor the stream of a response body. A body
//! waits while the count is at the connection's limit ([`QUEUE_LIMIT`]). What is
//! queued above an allowance ([`UNCHARGED_BYTES`]) is reserved from the client's
//! and the process's response budgets, and a body also waits while those are
//! spent. Bodies yield at most [`MAX_CHUNK`] bytes at a time, so that the streams
//! of a connection cannot push much past the limit between two checks.
//!
//! h2 discards the queued data of a stream that is reset, and no frame shows swg
//! how much. So when the count is above zero while the connection has written no
//! DATA and its socket has not been blocked for [`RECOUNT_AFTER`], nothing of what
//! the count holds can be written before the client opens its flow-control
//! windows, and the count starts again from zero
//! ([`SendQueue::recount_when_stuck`]). What h2 then still holds is at most about
//! two chunks per stream: one that the window did not fit, and one hyper took from
//! the body while it waits for a window.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use prometheus::IntGauge;
use tokio::sync::Notify;

use crate::blocked::Blocked;
use crate::body::BoxError;
use crate::budget::{Budget, Charge};

/// DATA bytes one connection may have queued in hyper before its bodies wait. The
/// socket's own send buffer (up to 4 MiB with Linux's default `net.ipv4.tcp_wmem`)
/// keeps a fast link busy beyond it.
pub(crate) const QUEUE_LIMIT: u64 = 1 << 20;
/// Queued bytes per connection that are not reserved from the response budgets,
/// so that every connection can always make progress.
pub(crate) const UNCHARGED_BYTES: u64 = 256 << 10;
/// The largest piece of a body frame passed to hyper at once: one HTTP/2 DATA
/// frame of the default maximum frame size.
pub(crate) const MAX_CHUNK: usize = 16 << 10;
/// How long bodies wait, with no DATA written and the socket not blocked, before
/// the count starts again from zero.
pub(crate) const RECOUNT_AFTER: Duration = Duration::from_millis(200);

/// The DATA bytes queued towards one HTTP/2 client connection.
pub(crate) struct SendQueue {
    state: Mutex<QueueState>,
    /// DATA payload bytes written to the connection since it opened.
    written: AtomicU64,
    /// Notified when the count leaves zero.
    filled: Notify,
    /// All connections' queued bytes (`swg_proxy_client_send_queue_bytes`).
    gauge: IntGauge,
}

struct QueueState {
    queued: u64,
    /// The part of `queued` above [`UNCHARGED_BYTES`], reserved from the budgets.
    charge: Charge,
    wakers: Vec<Waker>,
}

impl SendQueue {
    /// Returns the queue of a connection whose client has the `client` response
    /// budget, reporting its bytes in `gauge`.
    pub(crate) fn new(client: Arc<Budget>, process: Arc<Budget>, gauge: IntGauge) -> Arc<Self> {
        Arc::new(SendQueue {
            state: Mutex::new(QueueState {
                queued: 0,
                charge: Charge::new(client, process),
                wakers: Vec::new(),
            }),
            written: AtomicU64::new(0),
            filled: Notify::new(),
            gauge,
        })
    }

    /// Counts `bytes` as queued and returns `Ready`, or registers `cx` to be woken
    /// when the connection's writes or a recount make room.
    fn admit(&self, bytes: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.state);
        let queued = state.queued.saturating_add(bytes);
        let fits = state.queued == 0 || queued <= QUEUE_LIMIT;
        if fits && state.charge.grow_to(queued.saturating_sub(UNCHARGED_BYTES)) {
            let was_empty = state.queued == 0;
            state.queued = queued;
            drop(state);
            self.gauge.add(gauge_value(bytes));
            if was_empty {
                self.filled.notify_one();
            }
            return Poll::Ready(());
        }
        // The count is above zero here, so the recount task is watching it.
        if !state.wakers.iter().any(|waker| waker.will_wake(cx.waker())) {
            state.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Counts `bytes` of DATA payload as written to the connection, and wakes the
    /// bodies that wait.
    pub(crate) fn written(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.written.fetch_add(bytes, Ordering::Relaxed);
        let mut state = lock(&self.state);
        let taken = bytes.min(state.queued);
        state.queued -= taken;
        let queued = state.queued;
        state
            .charge
            .shrink_to(queued.saturating_sub(UNCHARGED_BYTES));
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        self.gauge.sub(gauge_value(taken));
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Starts the count again from zero whenever it has been above zero for
    /// [`RECOUNT_AFTER`] while the connection wrote no DATA and its socket was not
    /// blocked. Runs for as long as it is polled.
    pub(crate) async fn recount_when_stuck(&self, writes: &Blocked) -> std::convert::Infallible {
        loop {
            self.filled.notified().await;
            loop {
                let written = self.written.load(Ordering::Relaxed);
                tokio::time::sleep(RECOUNT_AFTER).await;
                if lock(&self.state).queued == 0 {
                    break;
                }
                if self.written.load(Ordering::Relaxed) == written && !writes.is_blocked() {
                    self.recount();
                    break;
                }
            }
        }
    }

    fn recount(&self) {
        let mut state = lock(&self.state);
        let forgotten = std::mem::take(&mut state.queued);
        state.charge.shrink_to(0);
        let wakers = std::mem::take(&mut state.wakers);
        drop(state);
        self.gauge.sub(gauge_value(forgotten));
        tracing::debug!(
            bytes = forgotten,
            "no DATA written while data was counted as queued; HTTP/2 send queue counted again from zero"
        );
        wakers.into_iter().for_each(Waker::wake);
    }

    #[cfg(test)]
    fn queued(&self) -> u64 {
        lock(&self.state).queued
    }
}

impl Drop for SendQueue {
    fn drop(&mut self) {
        let queued = lock(&self.state).queued;
        self.gauge.sub(gauge_value(queued));
    }
}

impl std::fmt::Debug for SendQueue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = lock(&self.state);
        formatter
            .debug_struct("SendQueue")
            .field("queued", &state.queued)
            .field("charged", &state.charge.bytes())
            .field("waiting", &state.wakers.len())
            .finish_non_exhaustive()
    }
}

/// A response body on an HTTP/2 connection, held back while the connection's
/// [`SendQueue`] is full.
pub(crate) struct QueuedBody<B> {
    inner: B,
    queue: Arc<SendQueue>,
    /// A chunk that waits for room in the queue.
    waiting: Option<Bytes>,
    /// The rest of a frame larger than [`MAX_CHUNK`].
    rest: Option<Bytes>,
}

impl<B> QueuedBody<B> {
    /// Wraps `inner`, whose DATA is counted in `queue`.
    pub(crate) fn new(inner: B, queue: Arc<SendQueue>) -> QueuedBody<B> {
        QueuedBody {
            inner,
            queue,
            waiting: None,
            rest: None,
        }
    }

    fn held(&self) -> u64 {
        [&self.waiting, &self.rest]
            .into_iter()
            .flatten()
            .map(|data| data.len() as u64)
            .sum()
    }
}

impl<B> Body for QueuedBody<B>
where
    B: Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let chunk = match this.waiting.take() {
            Some(chunk) => chunk,
            None => {
                let mut data = match this.rest.take() {
                    Some(rest) => rest,
                    None => match Pin::new(&mut this.inner).poll_frame(cx) {
                        Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                            Ok(data) => data,
                            Err(frame) => return Poll::Ready(Some(Ok(frame))),
                        },
                        other => return other,
                    },
                };
                if data.len() > MAX_CHUNK {
                    this.rest = Some(data.split_off(MAX_CHUNK));
                }
                data
            }
        };
        match this.queue.admit(chunk.len() as u64, cx) {
            Poll::Ready(()) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
            Poll::Pending => {
                this.waiting = Some(chunk);
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.waiting.is_none() && self.rest.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let held = self.held();
        let inner = self.inner.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(inner.lower().saturating_add(held));
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(held));
        }
        hint
    }
}

/// Reads the frames a server writes on an HTTP/2 connection and counts the
/// payload bytes of its DATA frames. The server's bytes are frames from the first
/// byte on (RFC 9113, section 3.4: the server's preface is a SETTINGS frame).
#[derive(Debug, Default)]
pub(crate) struct DataCounter {
    header: [u8; FRAME_HEADER_LEN],
    /// Bytes of the current frame header read so far.
    header_read: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u32,
    /// Whether the current frame is a DATA frame.
    data: bool,
}

const FRAME_HEADER_LEN: usize = 9;
const DATA_FRAME: u8 = 0x0;

impl DataCounter {
    /// Reads the next written `bytes` and returns the DATA payload bytes among them.
    /// Padding of a padded DATA frame counts too (h2 sends no padding).
    pub(crate) fn count(&mut self, mut bytes: &[u8]) -> u64 {
        let mut data_bytes = 0u64;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let payload = bytes.len().min(self.payload_left as usize);
                if self.data {
                    data_bytes += payload as u64;
                }
                self.payload_left -= payload as u32;
                bytes = &bytes[payload..];
                continue;
            }
            let header = bytes.len().min(FRAME_HEADER_LEN - self.header_read);
            self.header[self.header_read..self.header_read + header]
                .copy_from_slice(&bytes[..header]);
            self.header_read += header;
            bytes = &bytes[header..];
            if self.header_read == FRAME_HEADER_LEN {
                self.header_read = 0;
                self.payload_left =
                    u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]]);
                self.data = self.header[3] == DATA_FRAME;
            }
        }
        data_bytes
    }
}

/// Locks `mutex`. The queue's counts stay consistent when a holder panics, so a
/// poisoned lock is used as it is.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn gauge_value(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::task::Wake;

    use http_body_util::{BodyExt, StreamBody};

    use super::*;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicU64);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn queue(client_budget: u64) -> (Arc<SendQueue>, Arc<Budget>, IntGauge) {
        let gauge = IntGauge::new("queued", "queued bytes").unwrap();
        let client = Budget::new(client_budget, None);
        let process = Budget::new(u64::MAX, None);
        (
            SendQueue::new(client.clone(), process, gauge.clone()),
            client,
            gauge,
        )
    }

    fn frame_header(length: u32, kind: u8, stream: u32) -> Vec<u8> {
        let mut header = length.to_be_bytes()[1..].to_vec();
        header.extend_from_slice(&[kind, 0]);
        header.extend_from_slice(&stream.to_be_bytes());
        header
    }

    #[test]
    fn data_payload_counted_across_split_writes() {
        let mut written = frame_header(6, 0x4, 0); // SETTINGS
        written.extend_from_slice(&[0; 6]);
        written.extend(frame_header(10, DATA_FRAME, 1));
        written.extend_from_slice(&[7; 10]);
        written.extend(frame_header(4, 0x1, 3)); // HEADERS
        written.extend_from_slice(&[0x88; 4]);
        written.extend(frame_header(0, DATA_FRAME, 3));
        written.extend(frame_header(300, DATA_FRAME, 3));
        written.extend_from_slice(&[1; 300]);

        let mut whole = DataCounter::default();
        assert_eq!(whole.count(&written), 310);
        // Every way of cutting the bytes into two writes counts the same.
        for cut in 0..written.len() {
            let mut counter = DataCounter::default();
            let counted = counter.count(&written[..cut]) + counter.count(&written[cut..]);
            assert_eq!(counted, 310, "cut at {cut}");
        }
        let mut bytewise = DataCounter::default();
        let counted: u64 = written.iter().map(|byte| bytewise.count(&[*byte])).sum();
        assert_eq!(counted, 310);
    }

    #[test]
    fn full_queue_waits_until_written() {
        let (queue, _client, gauge) = queue(u64::MAX);
        let waker = Arc::new(CountingWaker::default());
        let waker_ref = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker_ref);

        assert!(queue.admit(QUEUE_LIMIT - 100, &mut cx).is_ready());
        assert!(queue.admit(100, &mut cx).is_ready());
        assert!(queue.admit(1, &mut cx).is_pending());
        assert_eq!(gauge.get(), QUEUE_LIMIT as i64);

        queue.written(1);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        assert!(queue.admit(1, &mut cx).is_ready());
        queue.written(QUEUE_LIMIT);
        assert_eq!((queue.queued(), gauge.get()), (0, 0));
        // An empty queue takes any one chunk, however large.
        assert!(queue.admit(QUEUE_LIMIT * 2, &mut cx).is_ready());
        drop(queue);
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn bytes_above_the_allowance_reserved_from_the_budget() {
        let budget = 100_000;
        let (queue, client, _gauge) = queue(budget);
        let waker = Arc::new(CountingWaker::default());
        let waker_ref = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker_ref);

        assert!(queue.admit(UNCHARGED_BYTES, &mut cx).is_ready());
        assert_eq!(client.reserved(), 0);
        assert!(queue.admit(budget, &mut cx).is_ready());
        assert_eq!(client.reserved(), budget);
        // The budget is spent, although the connection's limit is not reached.
        assert!(queue.admit(1, &mut cx).is_pending());

        queue.written(10);
        assert_eq!(client.reserved(), budget - 10);
        assert_eq!(waker.0.load(Ordering::SeqCst), 1);
        drop(queue);
        assert_eq!(client.reserved(), 0);
    }

    #[tokio::test]
    async fn stuck_count_starts_again_from_zero() {
        let (queue, client, gauge) = queue(u64::MAX);
        let (_io, writes) = crate::blocked::WriteWatch::new(tokio::io::empty());
        let recount = tokio::spawn({
            let queue = queue.clone();
            async move { queue.recount_when_stuck(&writes).await }
        });
        let waker = Arc::new(CountingWaker::default());
        let waker_ref = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker_ref);
        assert!(queue.admit(QUEUE_LIMIT, &mut cx).is_ready());
        assert!(client.reserved() > 0);
        assert!(queue.admit(1, &mut cx).is_pending());

        // Writes that go on keep the count. Each wakes the waiting body, which
        // finds the queue still full and waits again.
        for _ in 0..8 {
            tokio::time::sleep(RECOUNT_AFTER / 4).await;
            queue.written(1);
            assert!(queue.admit(QUEUE_LIMIT, &mut cx).is_pending());
        }
        assert_eq!(queue.queued(), QUEUE_LIMIT - 8);
        // No write for the whole wait: the count is forgotten and the body woken.
        let wakes = waker.0.load(Ordering::SeqCst);
        tokio::time::sleep(RECOUNT_AFTER * 3).await;
        assert_eq!((queue.queued(), gauge.get(), client.reserved()), (0, 0, 0));
        assert_eq!(waker.0.load(Ordering::SeqCst), wakes + 1);

        // A count left by a reset stream, with no body waiting, is forgotten too,
        // so that it does not hold budget for the connection's whole life.
        assert!(queue.admit(QUEUE_LIMIT / 2, &mut cx).is_ready());
        tokio::time::sleep(RECOUNT_AFTER * 3).await;
        assert_eq!((queue.queued(), client.reserved()), (0, 0));
        recount.abort();
    }

    #[tokio::test]
    async fn body_passes_every_byte_in_order_in_small_chunks() {
        let (queue, _client, gauge) = queue(u64::MAX);
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from(vec![1u8; MAX_CHUNK * 2 + 5]))),
            Ok(Frame::data(Bytes::from_static(b"end"))),
        ];
        let inner = StreamBody::new(futures::stream::iter(frames)).boxed();
        let mut body = QueuedBody::new(inner, queue.clone());
        let mut received = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            assert!(data.len() <= MAX_CHUNK);
            received.extend_from_slice(&data);
            queue.written(data.len() as u64);
        }
        let mut expected = vec![1u8; MAX_CHUNK * 2 + 5];
        expected.extend_from_slice(b"end");
        assert_eq!(received, expected);
        assert_eq!(gauge.get(), 0);
    }
}
