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
//! how much. So after every [`RECOUNT_AFTER`] in which the socket never made a
//! write wait, the least the count held during that time is dropped from it
//! ([`SendQueue::recount_when_stuck`]). h2 wrote everything it could then, so what
//! stayed counted all along is gone or waits for the client's flow-control windows. What
//! h2 may then still hold is at most about two chunks per stream: one that the
//! window did not fit, and one hyper took from the body while it waits for a
//! window. A client can make more wait, data that h2 had already taken, by
//! lowering its initial stream window (SETTINGS_INITIAL_WINDOW_SIZE). So once a
//! client lowers it after its first SETTINGS frame ([`ClientFrames`]), its
//! connection's count is never forgotten again. Its bodies then wait while resets
//! leave the count high.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use prometheus::{IntCounter, IntGauge};
use tokio::sync::Notify;

use crate::blocked::Blocked;
use crate::body::BoxError;
use crate::budget::{gauge_value, Budget, Charge};
use crate::stall::lock;

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
/// How long the count must stay above zero, with no write to the socket waiting,
/// before the least it held in that time is forgotten.
pub(crate) const RECOUNT_AFTER: Duration = Duration::from_millis(200);

/// The DATA bytes queued towards one HTTP/2 client connection.
pub(crate) struct SendQueue {
    state: Mutex<QueueState>,
    /// Notified when the count leaves zero.
    filled: Notify,
    /// Set once the client lowered its initial stream window after its first
    /// SETTINGS frame, which stops the recounts.
    windows_lowered: AtomicBool,
    /// All connections' queued bytes (`swg_proxy_client_send_queue_bytes`).
    gauge: IntGauge,
    /// Bytes forgotten by recounts (`swg_proxy_client_send_queue_forgotten_bytes_total`).
    forgotten: IntCounter,
}

struct QueueState {
    queued: u64,
    /// The least `queued` has been since the current recount period began.
    floor: u64,
    /// The part of `queued` above [`UNCHARGED_BYTES`], reserved from the budgets.
    charge: Charge,
    /// The bodies that wait, in the order they began to wait.
    wakers: VecDeque<Waker>,
}

impl SendQueue {
    /// Returns the queue of a connection whose client has the `client` response
    /// budget, reporting its bytes in `gauge`.
    pub(crate) fn new(
        client: Arc<Budget>,
        process: Arc<Budget>,
        gauge: IntGauge,
        forgotten: IntCounter,
    ) -> Arc<Self> {
        Arc::new(SendQueue {
            state: Mutex::new(QueueState {
                queued: 0,
                floor: 0,
                charge: Charge::new(client, process),
                wakers: VecDeque::new(),
            }),
            filled: Notify::new(),
            windows_lowered: AtomicBool::new(false),
            gauge,
            forgotten,
        })
    }

    /// Stops the recounts for good, because the client lowered its initial stream
    /// window: h2 may then hold data that it had taken, beyond the windows.
    pub(crate) fn windows_lowered(&self) {
        if !self.windows_lowered.swap(true, Ordering::Relaxed) {
            tracing::debug!(
                "HTTP/2 client lowered its initial stream window; send queue no longer recounted"
            );
        }
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
            state.wakers.push_back(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Counts `bytes` of DATA payload as written to the connection, and wakes the
    /// bodies that waited longest, as many as the room made can take (all once
    /// the count is zero), so that a write does not wake every stream.
    pub(crate) fn written(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        let mut state = lock(&self.state);
        let taken = bytes.min(state.queued);
        state.queued -= taken;
        state.floor = state.floor.min(state.queued);
        let queued = state.queued;
        state
            .charge
            .shrink_to(queued.saturating_sub(UNCHARGED_BYTES));
        let waiting = state.wakers.len();
        let woken = if queued == 0 {
            waiting
        } else {
            usize::try_from(taken)
                .unwrap_or(usize::MAX)
                .div_ceil(MAX_CHUNK)
                .saturating_add(1)
                .min(waiting)
        };
        let wakers: Vec<Waker> = state.wakers.drain(..woken).collect();
        drop(state);
        self.gauge.sub(gauge_value(taken));
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Forgets, for every [`RECOUNT_AFTER`] in which the count stayed above zero and
    /// no write to the socket had to wait, the least the count held during that
    /// time. Does nothing once the client has lowered its initial stream window.
    /// Runs for as long as it is polled.
    pub(crate) async fn recount_when_stuck(&self, writes: &Blocked) -> std::convert::Infallible {
        loop {
            self.filled.notified().await;
            loop {
                let waits = writes.waits();
                {
                    let mut state = lock(&self.state);
                    state.floor = state.queued;
                }
                tokio::time::sleep(RECOUNT_AFTER).await;
                let mut state = lock(&self.state);
                if state.queued == 0 {
                    break;
                }
                if writes.waits() != waits || self.windows_lowered.load(Ordering::Relaxed) {
                    continue;
                }
                let forgotten = state.floor.min(state.queued);
                if forgotten == 0 {
                    continue;
                }
                state.queued -= forgotten;
                let queued = state.queued;
                state
                    .charge
                    .shrink_to(queued.saturating_sub(UNCHARGED_BYTES));
                let wakers = std::mem::take(&mut state.wakers);
                drop(state);
                self.gauge.sub(gauge_value(forgotten));
                self.forgotten.inc_by(forgotten);
                tracing::debug!(
                    bytes = forgotten,
                    queued,
                    "HTTP/2 send queue held data that the connection could have written; forgot it"
                );
                wakers.into_iter().for_each(Waker::wake);
            }
        }
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

/// The framing of one direction of an HTTP/2 connection, read in pieces: each
/// frame's 9-byte header, then its payload.
#[derive(Debug, Default)]
struct Framing {
    header: [u8; FRAME_HEADER_LEN],
    /// Bytes of the current frame header read so far.
    header_read: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: u32,
}

/// A piece of the bytes that [`Framing::next`] reads.
enum Piece<'a> {
    /// A frame header just completed.
    Header([u8; FRAME_HEADER_LEN]),
    /// Payload bytes of the frame whose header came last.
    Payload(&'a [u8]),
}

impl Framing {
    /// Takes the next piece off the front of `bytes`: a completed header, payload
    /// bytes, or nothing while a header is still incomplete. Returns `None` once
    /// `bytes` is empty.
    fn next<'a>(&mut self, bytes: &mut &'a [u8]) -> Option<Option<Piece<'a>>> {
        if bytes.is_empty() {
            return None;
        }
        if self.payload_left > 0 {
            let len = bytes.len().min(self.payload_left as usize);
            let (payload, rest) = bytes.split_at(len);
            self.payload_left -= len as u32;
            *bytes = rest;
            return Some(Some(Piece::Payload(payload)));
        }
        let len = bytes.len().min(FRAME_HEADER_LEN - self.header_read);
        self.header[self.header_read..self.header_read + len].copy_from_slice(&bytes[..len]);
        self.header_read += len;
        *bytes = &bytes[len..];
        if self.header_read < FRAME_HEADER_LEN {
            return Some(None);
        }
        self.header_read = 0;
        self.payload_left = u32::from_be_bytes([0, self.header[0], self.header[1], self.header[2]]);
        Some(Some(Piece::Header(self.header)))
    }
}

/// Reads the frames a server writes on an HTTP/2 connection and counts the
/// payload bytes of its DATA frames. The server's bytes are frames from the first
/// byte on (RFC 9113, section 3.4: the server's preface is a SETTINGS frame).
#[derive(Debug, Default)]
pub(crate) struct DataCounter {
    framing: Framing,
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
        while let Some(piece) = self.framing.next(&mut bytes) {
            match piece {
                Some(Piece::Header(header)) => self.data = header[3] == DATA_FRAME,
                Some(Piece::Payload(payload)) if self.data => data_bytes += payload.len() as u64,
                Some(Piece::Payload(_)) | None => {}
            }
        }
        data_bytes
    }
}

/// Reads the bytes a client sends on an HTTP/2 connection, from the connection
/// preface on, and reports to its [`SendQueue`] when a SETTINGS frame after the
/// first lowers SETTINGS_INITIAL_WINDOW_SIZE (RFC 9113, section 6.9.2). The
/// first SETTINGS frame is part of the preface and comes before any request.
#[derive(Debug)]
pub(crate) struct ClientFrames {
    /// Bytes of the connection preface still to come.
    preface_left: usize,
    framing: Framing,
    /// Whether the current frame is a SETTINGS frame that is not an acknowledgement.
    settings: bool,
    entry: [u8; SETTING_LEN],
    entry_read: usize,
    settings_frames: u64,
    initial_window: u32,
}

const CLIENT_PREFACE_LEN: usize = 24;
const SETTINGS_FRAME: u8 = 0x4;
const SETTINGS_ACK: u8 = 0x1;
const SETTING_LEN: usize = 6;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
const DEFAULT_INITIAL_WINDOW: u32 = 65_535;

impl Default for ClientFrames {
    fn default() -> ClientFrames {
        ClientFrames {
            preface_left: CLIENT_PREFACE_LEN,
            framing: Framing::default(),
            settings: false,
            entry: [0; SETTING_LEN],
            entry_read: 0,
            settings_frames: 0,
            initial_window: DEFAULT_INITIAL_WINDOW,
        }
    }
}

impl ClientFrames {
    /// Reads the next received `bytes`; returns true when they lower the initial
    /// stream window after the first SETTINGS frame.
    pub(crate) fn read(&mut self, mut bytes: &[u8]) -> bool {
        let mut lowered = false;
        let skipped = bytes.len().min(self.preface_left);
        self.preface_left -= skipped;
        bytes = &bytes[skipped..];
        while let Some(piece) = self.framing.next(&mut bytes) {
            match piece {
                Some(Piece::Header(header)) => {
                    self.settings = header[3] == SETTINGS_FRAME && header[4] & SETTINGS_ACK == 0;
                    if self.settings {
                        self.settings_frames += 1;
                        self.entry_read = 0;
                    }
                }
                Some(Piece::Payload(payload)) if self.settings => {
                    lowered |= self.read_settings(payload);
                }
                Some(Piece::Payload(_)) | None => {}
            }
        }
        lowered
    }

    fn read_settings(&mut self, mut payload: &[u8]) -> bool {
        let mut lowered = false;
        while !payload.is_empty() {
            let taken = payload.len().min(SETTING_LEN - self.entry_read);
            self.entry[self.entry_read..self.entry_read + taken].copy_from_slice(&payload[..taken]);
            self.entry_read += taken;
            payload = &payload[taken..];
            if self.entry_read == SETTING_LEN {
                self.entry_read = 0;
                let id = u16::from_be_bytes([self.entry[0], self.entry[1]]);
                let value = u32::from_be_bytes([
                    self.entry[2],
                    self.entry[3],
                    self.entry[4],
                    self.entry[5],
                ]);
                if id == SETTINGS_INITIAL_WINDOW_SIZE {
                    lowered |= self.settings_frames > 1 && value < self.initial_window;
                    self.initial_window = value;
                }
            }
        }
        lowered
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
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
        let forgotten = IntCounter::new("forgotten", "forgotten bytes").unwrap();
        let client = Budget::new(client_budget, None);
        let process = Budget::new(u64::MAX, None);
        let queue = SendQueue::new(client.clone(), process, gauge.clone(), forgotten);
        (queue, client, gauge)
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
    fn write_wakes_fitting_bodies_in_order() {
        let (queue, _client, _gauge) = queue(u64::MAX);
        let wakers: Vec<Arc<CountingWaker>> = (0..10).map(|_| Arc::default()).collect();
        let wake_count = |index: usize| wakers[index].0.load(Ordering::SeqCst);
        let first = Waker::from(Arc::new(CountingWaker::default()));
        assert!(queue
            .admit(QUEUE_LIMIT, &mut Context::from_waker(&first))
            .is_ready());
        for waker in &wakers {
            let waker = Waker::from(waker.clone());
            let chunk = MAX_CHUNK as u64;
            assert!(queue
                .admit(chunk, &mut Context::from_waker(&waker))
                .is_pending());
        }

        // One chunk written: room for one, and one more in case it has ended.
        queue.written(MAX_CHUNK as u64);
        assert_eq!(
            (0..10).map(wake_count).collect::<Vec<_>>(),
            [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        queue.written(1);
        assert_eq!((0..10).map(wake_count).sum::<u64>(), 4);
        assert_eq!((wake_count(2), wake_count(3)), (1, 1));
        // An empty queue wakes every body left.
        queue.written(QUEUE_LIMIT);
        assert!((0..10).all(|index| wake_count(index) == 1));
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

    /// Starts the recount task of `queue` on the writes of a pipe, and returns the
    /// task. The pipe's reader takes one byte every `read_every`, or none, and each
    /// byte taken lets one more write find the pipe full.
    fn recount_beside_pipe(
        queue: &Arc<SendQueue>,
        read_every: Option<Duration>,
    ) -> tokio::task::JoinHandle<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (writer, mut reader) = tokio::io::duplex(16);
        let (mut watched, writes) = crate::blocked::WriteWatch::new(writer);
        let queue = queue.clone();
        tokio::spawn(async move {
            let recount = queue.recount_when_stuck(&writes);
            let write = async {
                if let Some(period) = read_every {
                    let _ = watched.write_all(&[0; 16]).await;
                    loop {
                        let writing = watched.write_all(&[0]);
                        let reading = async {
                            tokio::time::sleep(period).await;
                            let _ = reader.read_exact(&mut [0]).await;
                        };
                        let _ = tokio::join!(writing, reading);
                    }
                }
                std::future::pending::<()>().await
            };
            tokio::select! {
                never = recount => match never {},
                () = write => {}
            }
        })
    }

    #[tokio::test]
    async fn count_held_while_socket_writable_is_forgotten() {
        let (queue, client, gauge) = queue(u64::MAX);
        let recount = recount_beside_pipe(&queue, None);
        let waker = Arc::new(CountingWaker::default());
        let waker_ref = Waker::from(waker.clone());
        let mut cx = Context::from_waker(&waker_ref);
        assert!(queue.admit(QUEUE_LIMIT, &mut cx).is_ready());
        assert!(client.reserved() > 0);
        assert!(queue.admit(1, &mut cx).is_pending());

        // Small writes that go on, like a trickle of events on another stream,
        // do not keep the rest counted.
        for _ in 0..12 {
            tokio::time::sleep(RECOUNT_AFTER / 4).await;
            queue.written(1);
        }
        assert_eq!(queue.queued(), 0);
        assert_eq!(gauge.get(), 0);
        assert_eq!(client.reserved(), 0);
        assert!(waker.0.load(Ordering::SeqCst) >= 1);
        recount.abort();
    }

    #[tokio::test]
    async fn count_kept_while_socket_writes_wait() {
        let (queue, _client, _gauge) = queue(u64::MAX);
        let recount = recount_beside_pipe(&queue, Some(RECOUNT_AFTER / 4));
        let waker = Arc::new(CountingWaker::default());
        let waker_ref = Waker::from(waker);
        let mut cx = Context::from_waker(&waker_ref);
        assert!(queue.admit(QUEUE_LIMIT, &mut cx).is_ready());
        tokio::time::sleep(RECOUNT_AFTER * 4).await;
        assert_eq!(queue.queued(), QUEUE_LIMIT);
        recount.abort();
    }

    #[tokio::test]
    async fn count_kept_once_client_lowered_windows() {
        let (queue, _client, _gauge) = queue(u64::MAX);
        let recount = recount_beside_pipe(&queue, None);
        queue.windows_lowered();
        let waker = Arc::new(CountingWaker::default());
        let waker_ref = Waker::from(waker);
        let mut cx = Context::from_waker(&waker_ref);
        assert!(queue.admit(QUEUE_LIMIT, &mut cx).is_ready());
        tokio::time::sleep(RECOUNT_AFTER * 4).await;
        assert_eq!(queue.queued(), QUEUE_LIMIT);
        recount.abort();
    }

    fn settings(flags: u8, entries: &[(u16, u32)]) -> Vec<u8> {
        let mut frame = frame_header((entries.len() * SETTING_LEN) as u32, SETTINGS_FRAME, 0);
        frame[4] = flags;
        for (id, value) in entries {
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&value.to_be_bytes());
        }
        frame
    }

    #[test]
    fn lowered_initial_window_found_after_first_settings() {
        let mut received = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        // The first SETTINGS may set any window: no request has come yet.
        received.extend(settings(0, &[(0x3, 100), (0x4, 0)]));
        received.extend(frame_header(4, 0x8, 0)); // WINDOW_UPDATE
        received.extend_from_slice(&[0, 1, 0, 0]);
        received.extend(settings(0, &[(0x4, 1 << 30)]));
        received.extend(settings(SETTINGS_ACK, &[]));
        let raised = received.len();
        received.extend(frame_header(5, 0x1, 1)); // HEADERS
        received.extend_from_slice(&[0x82, 0x86, 0x84, 0x41, 0]);
        received.extend(settings(0, &[(0x1, 4096), (0x4, 1 << 20)]));

        let mut whole = ClientFrames::default();
        assert!(!whole.read(&received[..raised]));
        assert!(whole.read(&received[raised..]));
        // Every way of cutting the bytes into two reads finds it once the last
        // byte, which completes the lowering entry, has been read.
        for cut in 0..received.len() {
            let mut frames = ClientFrames::default();
            assert!(!frames.read(&received[..cut]), "cut at {cut}");
            assert!(frames.read(&received[cut..]), "cut at {cut}");
        }
        let mut raised_only = ClientFrames::default();
        assert!(!raised_only.read(&received[..raised]));
    }

    #[tokio::test]
    async fn body_passes_bytes_in_small_chunks() {
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
