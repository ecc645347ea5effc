//! Bodies as the proxy streams them: boxed, with a size limit and an idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// Any error a body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every request and response the proxy handles.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// A body with all of its bytes at hand (pages, short responses).
pub(crate) fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body with no bytes.
pub(crate) fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// Why a streamed body was cut off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The body grew past the configured limit.
    #[error("body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// No bytes moved for the configured idle time.
    #[error("body idle for longer than {0:?}")]
    IdleTimeout(Duration),
}

/// The state of a request body that the wait for the origin's response reads,
/// shared with the body: when it last yielded a frame, and why it was cut.
///
/// hyper polls a request body only when the origin can take what it yields, so an
/// origin that stops taking an upload (an HTTP/2 stream window it never opens, a
/// full TCP buffer) leaves the body's own idle timer unpolled. The wait for the
/// response checks the progress from outside. And when the body fails, hyper
/// reports an error that does not name the body's (towards an HTTP/2 origin it
/// resets the stream), so the body records the cause.
#[derive(Debug, Clone)]
pub(crate) struct BodyWatch {
    shared: Arc<WatchState>,
}

#[derive(Debug)]
struct WatchState {
    started: Instant,
    /// Nanoseconds from `started` to the last frame or to hyper's first poll, or
    /// `NOT_POLLED` before that poll.
    last_frame_ns: AtomicU64,
    /// A `Cut` as its discriminant, or `NOT_CUT`.
    cut: AtomicU8,
}

/// The reason a request body was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// It passed its size limit.
    TooLarge = 1,
    /// It yielded no frame for the idle timeout while hyper polled it.
    Idle = 2,
    /// Reading it from the client failed, for example on invalid chunked framing
    /// or a connection that ended before the body did.
    Client = 3,
}

const NOT_POLLED: u64 = u64::MAX;
const NOT_CUT: u8 = 0;

/// The largest frame a request body yields. hyper polls a request body again only
/// after the origin has taken the last frame, so the size of a frame bounds how
/// slow an origin may read before its upload counts as stalled: 16 KiB in
/// `timeouts.idle_ms`. A chunk from an HTTP/1.1 client can be far larger.
const MAX_REQUEST_FRAME: usize = 16 * 1024;

impl BodyWatch {
    fn new() -> BodyWatch {
        BodyWatch {
            shared: Arc::new(WatchState {
                started: Instant::now(),
                last_frame_ns: AtomicU64::new(NOT_POLLED),
                cut: AtomicU8::new(NOT_CUT),
            }),
        }
    }

    fn record_progress(&self) {
        let elapsed = u64::try_from(self.shared.started.elapsed().as_nanos())
            .unwrap_or(NOT_POLLED - 1)
            .min(NOT_POLLED - 1);
        self.shared.last_frame_ns.store(elapsed, Ordering::Release);
    }

    fn record_cut(&self, cut: Cut) {
        self.shared.cut.store(cut as u8, Ordering::Release);
    }

    /// Returns why the body was cut, if it was.
    pub(crate) fn cut(&self) -> Option<Cut> {
        match self.shared.cut.load(Ordering::Acquire) {
            1 => Some(Cut::TooLarge),
            2 => Some(Cut::Idle),
            3 => Some(Cut::Client),
            _ => None,
        }
    }

    /// Completes once the body has yielded no frame for `idle_timeout` since
    /// hyper first polled it. The wait for a connection or a free HTTP/2 stream,
    /// before that poll, does not count.
    pub(crate) async fn stalled(&self, idle_timeout: Duration) {
        loop {
            let last_frame_ns = self.shared.last_frame_ns.load(Ordering::Acquire);
            if last_frame_ns == NOT_POLLED {
                tokio::time::sleep(idle_timeout).await;
                continue;
            }
            let deadline = self.shared.started + Duration::from_nanos(last_frame_ns) + idle_timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

pin_project! {
    /// Passes a request body through in frames of at most 16 KiB, ending it with
    /// an error when it exceeds `limit` bytes or stays idle for `idle_timeout`
    /// while hyper polls it. The idle timer starts at hyper's first poll. An error
    /// of the inner body, which is the client's, passes through and is recorded in
    /// the watch. Response bodies go through the connection's response watch
    /// instead.
    pub(crate) struct GuardedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Sleep,
        idle_timeout: Duration,
        polled: bool,
        limit: u64,
        seen: u64,
        // The rest of the last data frame, yielded before the next is polled.
        rest: Bytes,
        end_signal: Option<oneshot::Sender<()>>,
        watch: Option<BodyWatch>,
    }
}

impl<B> GuardedBody<B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: B, limit: u64, idle_timeout: Duration) -> GuardedBody<B> {
        GuardedBody {
            inner,
            idle: tokio::time::sleep(idle_timeout),
            idle_timeout,
            polled: false,
            limit,
            seen: 0,
            rest: Bytes::new(),
            end_signal: None,
            watch: None,
        }
    }

    /// Returns a receiver that completes when the body has been read to its end, or
    /// fails when the body is dropped first. hyper never polls a body that is empty
    /// from the start; such a body ends, and the receiver fails, when it is dropped.
    pub(crate) fn end_signal(&mut self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        self.end_signal = Some(sender);
        receiver
    }

    /// Returns the body's watch.
    pub(crate) fn watch(&mut self) -> BodyWatch {
        let watch = BodyWatch::new();
        self.watch = Some(watch.clone());
        watch
    }
}

impl<B> Body for GuardedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if !*this.polled {
            // The wait for a connection, or for `Expect: 100-continue`, is not
            // idle time of the body.
            *this.polled = true;
            this.idle
                .as_mut()
                .reset(Instant::now() + *this.idle_timeout);
            if let Some(watch) = this.watch {
                watch.record_progress();
            }
        }
        if !this.rest.is_empty() {
            let frame = next_piece(this.rest);
            if let Some(watch) = this.watch {
                watch.record_progress();
            }
            if this.rest.is_empty() && this.inner.is_end_stream() {
                signal_end(this.end_signal);
            }
            return Poll::Ready(Some(Ok(Frame::data(frame))));
        }
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Err(error) = count_against_limit(this.seen, *this.limit, &frame) {
                    if let Some(watch) = this.watch {
                        watch.record_cut(Cut::TooLarge);
                    }
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                this.idle
                    .as_mut()
                    .reset(Instant::now() + *this.idle_timeout);
                if let Some(watch) = this.watch {
                    watch.record_progress();
                }
                let frame = match frame.into_data() {
                    Ok(mut data) if data.len() > MAX_REQUEST_FRAME => {
                        let piece = data.split_to(MAX_REQUEST_FRAME);
                        *this.rest = data;
                        Frame::data(piece)
                    }
                    Ok(data) => Frame::data(data),
                    Err(frame) => frame,
                };
                if this.rest.is_empty() && this.inner.is_end_stream() {
                    signal_end(this.end_signal);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => {
                if let Some(watch) = this.watch {
                    watch.record_cut(Cut::Client);
                }
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                signal_end(this.end_signal);
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.poll(cx) {
                Poll::Ready(()) => {
                    if let Some(watch) = this.watch {
                        watch.record_cut(Cut::Idle);
                    }
                    Poll::Ready(Some(Err(Box::new(BodyError::IdleTimeout(
                        *this.idle_timeout,
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let inner = self.inner.size_hint();
        let rest = self.rest.len() as u64;
        let mut hint = SizeHint::new();
        if let Some(upper) = inner.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(inner.lower().saturating_add(rest));
        hint
    }
}

/// Takes the next frame of at most `MAX_REQUEST_FRAME` bytes from `rest`.
fn next_piece(rest: &mut Bytes) -> Bytes {
    if rest.len() > MAX_REQUEST_FRAME {
        rest.split_to(MAX_REQUEST_FRAME)
    } else {
        std::mem::take(rest)
    }
}

/// Adds the length of `frame`'s data to `seen`, and fails once `seen` passes `limit`.
pub(crate) fn count_against_limit(
    seen: &mut u64,
    limit: u64,
    frame: &Frame<Bytes>,
) -> Result<(), BodyError> {
    if let Some(data) = frame.data_ref() {
        *seen += data.len() as u64;
        if *seen > limit {
            return Err(BodyError::TooLarge { limit });
        }
    }
    Ok(())
}

fn signal_end(end_signal: &mut Option<oneshot::Sender<()>>) {
    if let Some(sender) = end_signal.take() {
        let _ = sender.send(());
    }
}
