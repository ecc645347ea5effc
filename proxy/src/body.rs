//! Bodies as the proxy streams them: boxed, with a size limit and an idle timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// When a request body last yielded a frame, shared between the body and the wait
/// for the origin's response. hyper polls a request body only when the origin can
/// take what it yields, so an origin that stops taking an upload (an HTTP/2 stream
/// window it never opens, a full TCP buffer) leaves the body's own idle timer
/// unpolled. The wait for the response checks the progress from outside.
#[derive(Debug, Clone)]
pub(crate) struct BodyProgress {
    clock: Arc<ProgressClock>,
}

#[derive(Debug)]
struct ProgressClock {
    started: Instant,
    /// Nanoseconds from `started` to the last frame, or to the start before the first.
    last_frame_ns: AtomicU64,
}

impl BodyProgress {
    fn new() -> BodyProgress {
        BodyProgress {
            clock: Arc::new(ProgressClock {
                started: Instant::now(),
                last_frame_ns: AtomicU64::new(0),
            }),
        }
    }

    fn record(&self) {
        let elapsed = u64::try_from(self.clock.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.clock.last_frame_ns.store(elapsed, Ordering::Release);
    }

    /// Completes once the body has yielded no frame for `idle_timeout`.
    pub(crate) async fn stalled(&self, idle_timeout: Duration) {
        loop {
            let last_frame = self.clock.started
                + Duration::from_nanos(self.clock.last_frame_ns.load(Ordering::Acquire));
            let deadline = last_frame + idle_timeout;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

pin_project! {
    /// Passes a request body through frame by frame, ending it with an error when
    /// it exceeds `limit` bytes or stays idle for `idle_timeout` while hyper polls
    /// it. Response bodies go through the connection's response watch instead.
    pub(crate) struct GuardedBody<B> {
        #[pin]
        inner: B,
        #[pin]
        idle: Sleep,
        idle_timeout: Duration,
        limit: u64,
        seen: u64,
        end_signal: Option<oneshot::Sender<()>>,
        limit_exceeded: Option<Arc<AtomicBool>>,
        progress: Option<BodyProgress>,
    }
}

impl<B> GuardedBody<B> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: B, limit: u64, idle_timeout: Duration) -> GuardedBody<B> {
        GuardedBody {
            inner,
            idle: tokio::time::sleep(idle_timeout),
            idle_timeout,
            limit,
            seen: 0,
            end_signal: None,
            limit_exceeded: None,
            progress: None,
        }
    }

    /// Returns the body's progress, recorded from now on.
    pub(crate) fn progress(&mut self) -> BodyProgress {
        let progress = BodyProgress::new();
        self.progress = Some(progress.clone());
        progress
    }

    /// Returns a receiver that completes when the body has been read to its end, or
    /// fails when the body is dropped first. hyper never polls a body that is empty
    /// from the start; such a body ends, and the receiver fails, when it is dropped.
    pub(crate) fn end_signal(&mut self) -> oneshot::Receiver<()> {
        let (sender, receiver) = oneshot::channel();
        self.end_signal = Some(sender);
        receiver
    }

    /// Returns a flag that becomes true when the body passes its limit. hyper then
    /// resets the stream to an HTTP/2 origin, and the response fails with an error
    /// that does not name the body's, so the flag records the cause.
    pub(crate) fn limit_exceeded(&mut self) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.limit_exceeded = Some(flag.clone());
        flag
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
        match this.inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Err(error) = count_against_limit(this.seen, *this.limit, &frame) {
                    if let Some(flag) = this.limit_exceeded {
                        flag.store(true, Ordering::Release);
                    }
                    return Poll::Ready(Some(Err(Box::new(error))));
                }
                this.idle
                    .as_mut()
                    .reset(Instant::now() + *this.idle_timeout);
                if let Some(progress) = this.progress {
                    progress.record();
                }
                if this.inner.is_end_stream() {
                    signal_end(this.end_signal);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(None) => {
                signal_end(this.end_signal);
                Poll::Ready(None)
            }
            Poll::Pending => match this.idle.poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyError::IdleTimeout(
                    *this.idle_timeout,
                ))))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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
