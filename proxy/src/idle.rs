//! Idle HTTP/2 client connections.
//!
//! hyper closes an HTTP/1.1 connection whose next request head does not arrive
//! within the header read timeout, but has no such timeout for HTTP/2. There, a
//! client that acknowledges keep-alive pings could keep a connection open without
//! ever completing a request, for example with a header block that never ends. A
//! [`RequestTracker`] follows the requests in progress on one HTTP/2 connection, so
//! that the connection can be closed once it has had none for that long.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::{service_fn, Service};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};
use crate::send_queue::{QueuedBody, SendQueue};

/// The requests in progress on one connection, and when the last one ended.
pub(crate) struct RequestTracker {
    opened: Instant,
    in_progress: AtomicUsize,
    /// Nanoseconds from `opened` to the end of the most recent request.
    last_end_ns: AtomicU64,
    /// Notified when the number of requests in progress falls to zero.
    all_ended: Notify,
}

/// One request in progress, from the moment hyper hands it to the service until
/// hyper has taken the last frame of its response body, or dropped the body. The
/// last frames may then still wait in send buffers.
pub(crate) struct InProgress(Arc<RequestTracker>);

impl RequestTracker {
    /// Returns a tracker for a connection opened now, with no request yet.
    pub(crate) fn new() -> Arc<RequestTracker> {
        Arc::new(RequestTracker {
            opened: Instant::now(),
            in_progress: AtomicUsize::new(0),
            last_end_ns: AtomicU64::new(0),
            all_ended: Notify::new(),
        })
    }

    /// Counts a request as in progress until the returned guard is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::AcqRel);
        InProgress(self.clone())
    }

    /// Returns how many requests are in progress.
    pub(crate) fn in_progress(&self) -> usize {
        self.in_progress.load(Ordering::Acquire)
    }

    /// Completes once no request has been in progress for `timeout`, counted from
    /// the end of the last request, or from the opening of the connection when it
    /// has had none.
    pub(crate) async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.in_progress() > 0 {
                self.all_ended.notified().await;
                continue;
            }
            let last_end = Duration::from_nanos(self.last_end_ns.load(Ordering::Acquire));
            let deadline = self.opened + last_end + timeout;
            if Instant::now() >= deadline {
                return;
            }
            // A request that starts and ends during this sleep moves the deadline,
            // which the next turn of the loop reads.
            tokio::time::sleep_until(deadline).await;
        }
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        let tracker = &self.0;
        let elapsed = u64::try_from(tracker.opened.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // Two requests that end at once may store out of order, so keep the later end.
        tracker.last_end_ns.fetch_max(elapsed, Ordering::AcqRel);
        if tracker.in_progress.fetch_sub(1, Ordering::AcqRel) == 1 {
            // notify_one keeps the wake-up for a waiter that is not waiting yet.
            tracker.all_ended.notify_one();
        }
    }
}

/// Wraps `service` so that each request counts as in progress on `tracker` until
/// hyper has taken the last frame of its response body, or dropped the body, and
/// each response body waits while the connection's `queue` is full.
pub(crate) fn tracked<S>(
    service: S,
    tracker: Arc<RequestTracker>,
    queue: Arc<SendQueue>,
) -> impl Service<
    http::Request<Incoming>,
    Response = http::Response<ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<ProxyBody>, Infallible>> + Send + 'static,
> + Send
       + 'static
where
    S: Service<http::Request<Incoming>, Response = http::Response<ProxyBody>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    service_fn(move |request| {
        let in_progress = tracker.start();
        let response = service.call(request);
        let queue = queue.clone();
        async move {
            let response = response.await?;
            Ok(response.map(|body| {
                TrackedBody {
                    inner: QueuedBody::new(body, queue),
                    _in_progress: in_progress,
                }
                .boxed()
            }))
        }
    })
}

/// A response body that keeps its request in progress until it is dropped.
struct TrackedBody {
    inner: QueuedBody<ProxyBody>,
    _in_progress: InProgress,
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The timeout in these tests. They run in real time, so their bounds have
    /// generous margins.
    const TIMEOUT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn connection_without_requests_idles_after_timeout() {
        let tracker = RequestTracker::new();
        let started = Instant::now();
        tracker.idle_for(TIMEOUT).await;
        let waited = started.elapsed();
        assert!(waited >= TIMEOUT, "{waited:?}");
        assert!(waited < TIMEOUT * 5, "{waited:?}");
    }

    #[tokio::test]
    async fn request_in_progress_postpones_idle() {
        let tracker = RequestTracker::new();
        let request = tracker.start();
        let started = Instant::now();
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.idle_for(TIMEOUT).await }
        });
        // The request lasts three times the timeout; the idle time counts from its end.
        tokio::time::sleep(TIMEOUT * 3).await;
        assert!(
            !waiter.is_finished(),
            "idle while a request was in progress"
        );
        assert_eq!(tracker.in_progress(), 1);
        drop(request);
        assert_eq!(tracker.in_progress(), 0);
        waiter.await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= TIMEOUT * 4, "{waited:?}");
    }

    #[tokio::test]
    async fn request_ending_during_wait_moves_deadline() {
        let tracker = RequestTracker::new();
        let started = Instant::now();
        let waiter = tokio::spawn({
            let tracker = tracker.clone();
            async move { tracker.idle_for(TIMEOUT).await }
        });
        tokio::time::sleep(TIMEOUT / 2).await;
        drop(tracker.start());
        waiter.await.unwrap();
        let waited = started.elapsed();
        assert!(waited >= TIMEOUT + TIMEOUT / 2, "{waited:?}");
    }
}
