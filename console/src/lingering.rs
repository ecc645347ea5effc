//! Lingering close of rejected request bodies, so that a client still uploading
//! gets the error response instead of a reset.
//!
//! A handler or layer may reject a request before reading all of its body. Then
//! hyper ends the request as soon as it has sent the response. Over HTTP/2 it
//! sends RST_STREAM (NO_ERROR) right behind the response, and curl 7.88.1 fails
//! such a transfer ("Stream error in the HTTP/2 framing layer") without showing
//! the status. Over HTTP/1.1 it closes the connection while the client may still
//! be writing, and curl can fail with "Broken pipe". Reading the body up to a
//! bound before the response does not help with bodies larger than the bound,
//! because the reset still follows the response at once. So the console sends
//! the response first and keeps the body open for a short time, reading a
//! bounded amount of it. The client can then read the status and stop sending,
//! as curl does for an error status, before the request ends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::oneshot;

/// Body bytes after which lingering stops reading. The frame that crosses it is
/// read whole, which adds at most 16 KiB over HTTP/2 and at most the 64 KiB read
/// buffer over HTTP/1.1.
const LINGERING_LIMIT: usize = 64 * 1024;

/// Maximum time a rejected body stays open after its error response.
const LINGERING_TIME: Duration = Duration::from_secs(2);

/// Keeps the unread body of a request that gets an error status (4xx or 5xx)
/// open after the response. [`linger`] reads at most [`LINGERING_LIMIT`] bytes
/// of it and releases it after [`LINGERING_TIME`] at the latest.
///
/// The response is not delayed. A request with any other status, or whose body
/// was read to its end, is not affected.
pub(crate) async fn linger_after_errors(request: Request, next: Next) -> Response {
    let (sender, mut receiver) = oneshot::channel();
    let request = request.map(|body| {
        Body::new(ReturningBody {
            body: Some(body),
            back: Some(sender),
        })
    });

    let response = next.run(request).await;

    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        // The handler and the layers below have dropped the request by now, so
        // an unread body is in the channel.
        if let Ok(body) = receiver.try_recv() {
            tokio::spawn(linger(body, LINGERING_LIMIT, LINGERING_TIME));
        }
    }
    response
}

/// A request body that sends itself to [`linger_after_errors`] when it is
/// dropped before its end.
struct ReturningBody {
    body: Option<Body>,
    back: Option<oneshot::Sender<Body>>,
}

impl HttpBody for ReturningBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            // An ended or failed body has nothing left to linger on.
            this.body = None;
            this.back = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for ReturningBody {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.body.take(), self.back.take()) {
            if !body.is_end_stream() {
                // The receiver is gone only when the layer has already returned.
                let _ = back.send(body);
            }
        }
    }
}

/// Reads and discards `body` until it ends, fails or `limit` bytes are read,
/// then keeps it open until `time` has passed since the start, and drops it.
///
/// Returns the number of bytes read. A body is kept open, not dropped, at the
/// limit, because the limit can be reached at once from data already buffered,
/// and dropping the body then would reset the request right behind the response.
async fn linger(mut body: Body, limit: usize, time: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + time;
    let mut read = 0usize;

    let ended = tokio::time::timeout_at(deadline, async {
        while read < limit {
            match body.frame().await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
                Some(Err(_)) | None => return true,
            }
        }
        false
    })
    .await
    .unwrap_or(false);

    // NOTE: over HTTP/2, data beyond `limit` that the client sent before it saw
    // the response stays buffered until the body is dropped. It counts against
    // the connection's flow-control window (hyper's default of 1 MiB), so other
    // uploads on the same connection can stall for up to `time`.
    if !ended {
        tokio::time::sleep_until(deadline).await;
    }
    tracing::debug!(
        read_bytes = read,
        ended,
        "released the unread body of a rejected request"
    );
    read
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// Builds a body that yields 16 KiB frames forever and counts the bytes it yields.
    fn endless_body(yielded: std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Body {
        let frames = futures::stream::repeat_with(move || {
            yielded.fetch_add(16 * 1024, std::sync::atomic::Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 16 * 1024]))
        });
        Body::from_stream(frames)
    }

    #[tokio::test]
    async fn endless_body_is_read_up_to_the_limit() {
        let yielded = std::sync::Arc::default();
        let started = Instant::now();
        let read = linger(
            endless_body(std::sync::Arc::clone(&yielded)),
            64 * 1024,
            Duration::from_millis(200),
        )
        .await;

        assert_eq!(read, 64 * 1024);
        assert_eq!(yielded.load(std::sync::atomic::Ordering::SeqCst), 64 * 1024);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn stalled_body_is_released_after_the_time() {
        let stalled =
            Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let started = Instant::now();
        let read = linger(stalled, 64 * 1024, Duration::from_millis(200)).await;

        assert_eq!(read, 0);
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    }

    #[tokio::test]
    async fn ended_body_is_released_at_once() {
        let started = Instant::now();
        let read = linger(
            Body::from(vec![0u8; 1000]),
            64 * 1024,
            Duration::from_secs(5),
        )
        .await;

        assert_eq!(read, 1000);
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn unread_body_is_returned_on_drop() {
        let (sender, mut receiver) = oneshot::channel();
        let body = ReturningBody {
            body: Some(Body::from_stream(futures::stream::pending::<
                Result<Bytes, std::io::Error>,
            >())),
            back: Some(sender),
        };
        drop(body);
        assert!(receiver.try_recv().is_ok());
    }

    #[tokio::test]
    async fn fully_read_body_is_not_returned() {
        let (sender, mut receiver) = oneshot::channel();
        let body = ReturningBody {
            body: Some(Body::from("{}")),
            back: Some(sender),
        };
        let bytes = Body::new(body)
            .collect()
            .await
            .map(|collected| collected.to_bytes());
        assert_eq!(bytes.ok(), Some(Bytes::from("{}")));
        assert!(receiver.try_recv().is_err());
    }
}
