//! A request that policy allowed is recorded once, also when hyper drops swg's
//! handling of it because the client reset its HTTP/2 stream or closed its
//! connection while swg waited for the origin.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{origin, Harness};
use swg_proxy::boundary::{Action, ProxyEvent};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long the origin's `/slow` route waits before it responds.
const SLOW_ORIGIN: Duration = Duration::from_secs(2);

/// Waits until `done` returns true, and fails the test when it has not within
/// `limit`. `what` names the awaited state in the failure message.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Returns the activity events recorded for `url`.
fn events_for(harness: &Harness, url: &str) -> Vec<ProxyEvent> {
    harness
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|event| event.url == url)
        .cloned()
        .collect()
}

/// Returns the reason text of an event's policy decision, if it has one.
fn reason(event: &ProxyEvent) -> Option<&str> {
    event
        .decision
        .as_ref()
        .map(|decision| decision.reason.as_str())
}

/// Starts the harness and an HTTPS origin for origin.test that offers `alpn`, and
/// returns the origin's port and the count of connections it accepted.
async fn harness_with_origin(alpn: &[&[u8]]) -> (Harness, u16, Arc<AtomicUsize>) {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (origin, connections) = origin::start_https_counted(certificate, alpn).await;
    (harness, origin.port(), connections)
}

/// Opens an HTTP/2 connection to the landing for origin.test.
async fn h2_connection(harness: &Harness) -> h2::client::SendRequest<bytes::Bytes> {
    let tls = harness.landing_tls("origin.test", b"h2").await;
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.ready().await.unwrap()
}

/// Waits until policy has decided the only request so far and swg has connected
/// to the origin, so that swg waits for the origin's response. The handling does
/// not yield between the decision and the upstream request.
async fn wait_for_upstream(harness: &Harness, connections: &AtomicUsize) {
    wait_until(Duration::from_secs(5), "decided by policy", || {
        harness.policy.decided.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_until(Duration::from_secs(5), "connected to the origin", || {
        connections.load(Ordering::SeqCst) == 1
    })
    .await;
}

/// Asserts that exactly one event arrived for `url`, an allow of the test
/// identity with `expected_reason`, and that it stays the only one until the
/// origin's slow response would have arrived, counted from `sent`.
async fn assert_one_allow_event(
    harness: &Harness,
    url: &str,
    expected_reason: &str,
    sent: Instant,
) {
    wait_until(Duration::from_secs(5), "recorded", || {
        !events_for(harness, url).is_empty()
    })
    .await;
    let settle =
        (sent + SLOW_ORIGIN + Duration::from_millis(500)).saturating_duration_since(Instant::now());
    tokio::time::sleep(settle).await;

    let events = events_for(harness, url);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.action, Action::Allow);
    assert_eq!(event.failure, None);
    assert_eq!(reason(event), Some(expected_reason));
    assert_eq!(
        event
            .identity
            .as_ref()
            .map(|identity| identity.device.as_str()),
        Some("device-1")
    );
    assert!(!event.request_id.is_empty());
    assert_eq!(harness.events.0.lock().unwrap().len(), 1);
}

/// A client that resets its HTTP/2 stream while swg waits for a slow origin gets
/// its request counted once as `allow` and one allow event whose reason names
/// the reset.
#[tokio::test]
async fn http2_reset_while_waiting_recorded_once() {
    let (harness, port, connections) = harness_with_origin(&[b"h2"]).await;
    let url = format!("https://origin.test:{port}/slow");
    let counted = [("listener", "tls")];
    let before = harness.metric("swg_proxy_requests_total", &counted);

    let mut sender = h2_connection(&harness).await;
    let request = http::Request::get(url.as_str()).body(()).unwrap();
    let sent = Instant::now();
    let (response, mut stream) = sender.send_request(request, true).unwrap();
    wait_for_upstream(&harness, &connections).await;
    stream.send_reset(h2::Reason::CANCEL);
    drop(response);

    assert_one_allow_event(&harness, &url, "stream reset before the response", sent).await;
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &counted) - before,
        1.0
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "tls"), ("action", "allow")]
        ),
        1.0
    );
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
}

/// An HTTP/2 request that waits for the slow origin and gets its response is
/// recorded once, with the policy's own reason: the guard for abandoned requests
/// adds nothing to it.
#[tokio::test]
async fn http2_answered_request_recorded_once() {
    let (harness, port, _connections) = harness_with_origin(&[b"h2"]).await;
    let url = format!("https://origin.test:{port}/slow");
    let counted = [("listener", "tls")];
    let before = harness.metric("swg_proxy_requests_total", &counted);

    let mut sender = h2_connection(&harness).await;
    let request = http::Request::get(url.as_str()).body(()).unwrap();
    let sent = Instant::now();
    let (response, _stream) = sender.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), response)
        .await
        .expect("no response head within 10 s")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(chunk) = body.data().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(received, b"slow\n");
    drop(sender);

    assert_one_allow_event(&harness, &url, "", sent).await;
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &counted) - before,
        1.0
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "tls"), ("action", "allow")]
        ),
        1.0
    );
}

/// An HTTP/1.1 client that closes its connection while swg waits for a slow
/// origin gets its request counted once as `allow` and one allow event whose
/// reason names the closed connection.
#[tokio::test]
async fn http1_close_while_waiting_recorded_once() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let (origin, connections) = origin::start_http_counted().await;
    let port = origin.port();
    let url = format!("http://plain.test:{port}/slow");
    let counted = [("listener", "http")];
    let before = harness.metric("swg_proxy_requests_total", &counted);

    let mut client = TcpStream::connect(harness.http).await.unwrap();
    let head = format!("GET /slow HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n");
    let sent = Instant::now();
    client.write_all(head.as_bytes()).await.unwrap();
    wait_for_upstream(&harness, &connections).await;
    drop(client);

    assert_one_allow_event(
        &harness,
        &url,
        "connection closed before the response",
        sent,
    )
    .await;
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &counted) - before,
        1.0
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "http"), ("action", "allow")]
        ),
        1.0
    );
}
