//! Protections against abusive clients: slow clients, connection floods, request
//! smuggling and HTTP/2 rapid reset.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use support::gate::{Gated, ReadGate};
use support::{curl, origin, Harness};
use swg_proxy::boundary::Action;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes or `limit` passes; returns what was read and whether
/// the peer closed.
async fn read_until_close<S: AsyncRead + Unpin>(stream: &mut S, limit: Duration) -> (String, bool) {
    let mut received = Vec::new();
    let deadline = Instant::now() + limit;
    loop {
        let mut buffer = [0u8; 4096];
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&received).into_owned(), true)
            }
            Ok(Ok(count)) => received.extend_from_slice(&buffer[..count]),
            Err(_) => return (String::from_utf8_lossy(&received).into_owned(), false),
        }
    }
}

#[tokio::test]
async fn slow_clients_time_out_while_others_are_served() {
    let harness = Harness::start(|config| {
        config.timeouts.client_header_read_ms = 500;
        config.timeouts.tls_handshake_ms = 500;
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let origin = origin::start_http().await;

    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut http = TcpStream::connect(harness.http).await.unwrap();
        http.write_all(b"GET /small HTTP/1.1\r\nHost: pla")
            .await
            .unwrap();
        slow.push(http);
        let mut tls = TcpStream::connect(harness.tls).await.unwrap();
        tls.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
        slow.push(tls);
    }

    let url = format!("http://plain.test:{}/small", origin.port());
    let landing = support::args(&[
        "--connect-to",
        &format!(
            "plain.test:{}:127.0.0.1:{}",
            origin.port(),
            harness.http.port()
        ),
    ]);
    let result = curl(landing, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);

    for stream in &mut slow {
        let (_, closed) = read_until_close(stream, Duration::from_secs(3)).await;
        assert!(closed, "slow client still connected after its timeout");
    }
    assert_eq!(
        harness.metric(
            "swg_proxy_tls_handshake_failures_total",
            &[("reason", "timeout")]
        ),
        20.0
    );
}

#[tokio::test]
async fn connections_per_client_limited() {
    let harness = Harness::start(|config| {
        config.limits.max_connections_per_client = 4;
    })
    .await;
    let mut open = Vec::new();
    for _ in 0..4 {
        open.push(TcpStream::connect(harness.http).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        harness.metric("swg_proxy_active_connections", &[("listener", "http")]),
        4.0
    );

    let mut fifth = TcpStream::connect(harness.explicit).await.unwrap();
    let (_, closed) = read_until_close(&mut fifth, Duration::from_secs(2)).await;
    assert!(closed);
    assert_eq!(
        harness.metric(
            "swg_proxy_rejected_connections_total",
            &[("reason", "per_client_limit")]
        ),
        1.0
    );

    drop(open);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        harness.metric("swg_proxy_active_connections", &[("listener", "http")]),
        0.0
    );
    let result = curl(
        Vec::new(),
        &format!("http://{}/proxy.pac", harness.explicit),
    )
    .await;
    assert_eq!(result.status, 200);
}

/// At shutdown, a plain-HTTP landing connection that has sent nothing is closed at
/// once instead of at the end of its header read timeout.
#[tokio::test]
async fn shutdown_closes_silent_plain_connection() {
    let harness = Harness::start(|config| {
        config.timeouts.client_header_read_ms = 10_000;
    })
    .await;
    let mut silent = TcpStream::connect(harness.http).await.unwrap();
    wait_until(Duration::from_secs(5), "connection accepted", || {
        harness.metric("swg_proxy_active_connections", &[("listener", "http")]) >= 1.0
    })
    .await;
    harness.stop();
    let stopped = Instant::now();
    let (_, closed) = read_until_close(&mut silent, Duration::from_secs(5)).await;
    assert!(closed, "connection still open 5 s after the shutdown began");
    assert!(
        stopped.elapsed() < Duration::from_secs(2),
        "closed after {:?}",
        stopped.elapsed()
    );
}

/// Waits until `done` returns true, and fails the test when it has not within
/// `limit`. `what` names the awaited state in the failure message.
async fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not {what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Opens a TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: [u8; 4], to: std::net::SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket.connect(to).await.unwrap()
}

/// Connections from all clients together stop at `limits.max_connections`, although
/// each client is under its own limit, and the slot of a closed one is free again.
#[tokio::test]
async fn client_connections_have_tcp_keepalive() {
    let harness = Harness::start(|_| {}).await;
    let client = connect_from([127, 0, 0, 5], harness.http).await;
    let client_port = client.local_addr().unwrap().port();
    let active = || harness.metric("swg_proxy_active_connections", &[("listener", "http")]);
    wait_until(Duration::from_secs(5), "connection accepted", || {
        active() >= 1.0
    })
    .await;

    // /proc/net/tcp lists each socket with its active timer: 02 is keepalive.
    let sockets = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!(":{:04X}", harness.http.port());
    let remote = format!("0500007F:{client_port:04X}");
    let swg_end: Vec<&str> = sockets
        .lines()
        .map(str::split_whitespace)
        .filter_map(|mut fields| {
            let (_, local_address, remote_address) =
                (fields.next()?, fields.next()?, fields.next()?);
            let timer = fields.nth(2)?;
            (local_address.ends_with(&local) && remote_address == remote).then_some(timer)
        })
        .collect();
    assert_eq!(swg_end.len(), 1, "swg's end of the connection not listed");
    assert!(
        swg_end[0].starts_with("02:"),
        "no keepalive timer on swg's end: {swg_end:?}"
    );
    drop(client);
}

#[tokio::test]
async fn connections_in_all_limited() {
    let harness = Harness::start(|config| {
        config.limits.max_connections_per_client = 2;
        config.limits.max_connections = Some(3);
    })
    .await;
    let mut open = vec![
        connect_from([127, 0, 0, 2], harness.http).await,
        connect_from([127, 0, 0, 2], harness.http).await,
        connect_from([127, 0, 0, 3], harness.http).await,
    ];
    let active = || harness.metric("swg_proxy_active_connections", &[("listener", "http")]);
    wait_until(Duration::from_secs(5), "connections accepted", || {
        active() >= 3.0
    })
    .await;

    let mut fourth = connect_from([127, 0, 0, 4], harness.explicit).await;
    let (_, closed) = read_until_close(&mut fourth, Duration::from_secs(2)).await;
    assert!(closed);
    let rejected = |reason| {
        harness.metric(
            "swg_proxy_rejected_connections_total",
            &[("listener", "explicit"), ("reason", reason)],
        )
    };
    assert_eq!(rejected("process_limit"), 1.0);
    assert_eq!(rejected("per_client_limit"), 0.0);

    drop(open.pop());
    wait_until(
        Duration::from_secs(5),
        "closed connection no longer counted",
        || active() <= 2.0,
    )
    .await;
    let mut served = connect_from([127, 0, 0, 4], harness.explicit).await;
    served
        .write_all(b"GET /proxy.pac HTTP/1.1\r\nHost: swg\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (response, _) = read_until_close(&mut served, Duration::from_secs(5)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response:?}");
    drop(open);
}

/// A CONNECT tunnel keeps its client connection's slot in the per-client limit until
/// the tunnel ends, although the HTTP connection that carried the CONNECT is done.
#[tokio::test]
async fn connect_tunnels_count_per_client() {
    let harness = Harness::start(|config| {
        config.limits.max_connections_per_client = 2;
    })
    .await;
    let mut tunnels = Vec::new();
    for _ in 0..2 {
        let mut tunnel = TcpStream::connect(harness.explicit).await.unwrap();
        let connect = format!(
            "CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\n\
             Proxy-Authorization: Bearer {}\r\n\r\n",
            support::GOOD_TOKEN
        );
        tunnel.write_all(connect.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            tunnel.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head:?}");
        tunnels.push(tunnel);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        harness.metric("swg_proxy_active_connections", &[("listener", "explicit")]),
        2.0
    );

    let mut third = TcpStream::connect(harness.explicit).await.unwrap();
    let (_, closed) = read_until_close(&mut third, Duration::from_secs(2)).await;
    assert!(
        closed,
        "a third connection was accepted beside two open tunnels"
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_rejected_connections_total",
            &[("reason", "per_client_limit")]
        ),
        1.0
    );

    drop(tunnels);
    let released = async {
        while harness.metric("swg_proxy_active_connections", &[("listener", "explicit")]) > 0.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(5), released)
        .await
        .expect("closed tunnels still hold their slots");
}

#[tokio::test]
async fn ambiguous_framing_rejected() {
    let harness = Harness::start(|_| {}).await;
    let attempts: [&[u8]; 4] = [
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.0\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a.test\r\nContent-Length: +5\r\n\r\nhello",
    ];
    for attempt in attempts {
        let mut stream = TcpStream::connect(harness.http).await.unwrap();
        stream.write_all(attempt).await.unwrap();
        let (response, closed) = read_until_close(&mut stream, Duration::from_secs(3)).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "{:?} answered {response:?}",
            String::from_utf8_lossy(attempt)
        );
        assert!(closed);
    }
}

/// With both Transfer-Encoding and Content-Length, in either order, hyper follows
/// RFC 9112 section 6.3: the body is read as chunked, Content-Length is dropped
/// before swg sees the request and the connection closes after the response, so
/// bytes after the chunked body never become a request.
#[tokio::test]
async fn transfer_encoding_with_content_length_cannot_smuggle() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let origin = origin::start_http().await;
    let port = origin.port();
    let framing = [
        "Transfer-Encoding: chunked\r\nContent-Length: 48",
        "Content-Length: 48\r\nTransfer-Encoding: chunked",
    ];
    for framing in framing {
        let smuggled = format!(
            "POST /count HTTP/1.1\r\nHost: plain.test:{port}\r\n{framing}\r\n\r\n\
             0\r\n\r\nGET /small HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n"
        );
        let mut stream = TcpStream::connect(harness.http).await.unwrap();
        stream.write_all(smuggled.as_bytes()).await.unwrap();
        let (response, closed) = read_until_close(&mut stream, Duration::from_secs(3)).await;

        assert!(closed, "{framing}");
        assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("\r\n\r\n0\n"), "{response}");
        assert!(!response.contains("hello from origin"), "{response}");
    }
}

#[tokio::test]
async fn oversized_headers_rejected() {
    let harness = Harness::start(|config| {
        config.limits.max_header_bytes = 16 * 1024;
    })
    .await;
    let mut stream = TcpStream::connect(harness.http).await.unwrap();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: a.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = stream.write_all(request.as_bytes()).await;
    let (response, closed) = read_until_close(&mut stream, Duration::from_secs(3)).await;
    assert!(response.starts_with("HTTP/1.1 431"), "{response:?}");
    assert!(closed);
}

async fn h2_connection(harness: &Harness) -> h2::client::SendRequest<bytes::Bytes> {
    let (sender, _connection) = h2_connection_with_task(harness).await;
    sender
}

#[tokio::test]
async fn rapid_reset_flood_does_not_stop_service() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;
    let url = format!("https://origin.test:{}/small", origin.port());

    let mut sender = h2_connection(&harness).await;
    let mut sent = 0;
    for _ in 0..20_000 {
        let request = http::Request::get(url.as_str()).body(()).unwrap();
        let Ok(ready) = sender.clone().ready().await else {
            break;
        };
        sender = ready;
        let Ok((_response, mut stream)) = sender.send_request(request, true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    // The flood connection is closed before all 20 000 streams are sent, or the
    // resets are absorbed; either way a new client is served.
    let result = curl(harness.landing_args("origin.test", origin.port()), &url).await;
    assert_eq!(result.status, 200, "after {sent} resets: {}", result.stderr);
    assert_eq!(result.body, "hello from origin\n");
}

/// An HTTP/2 client connection is closed once it has had no request in progress for
/// `timeouts.client_header_read_ms`: one whose header block never ends, and one left
/// idle after its requests. A request waiting for its response, or a response body
/// that the client reads slowly, keeps the connection open.
#[tokio::test]
async fn http2_connection_without_requests_closed() {
    let harness = Harness::start(|config| {
        config.timeouts.client_header_read_ms = 500;
        // After the GOAWAY, how long a client that does not acknowledge it is kept,
        // and how long a response body may make no progress.
        config.timeouts.idle_ms = 2_500;
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;

    // The connection preface, an empty SETTINGS frame, and a HEADERS frame on stream
    // 1 without END_HEADERS, whose block (`:method: GET`) is never continued.
    let mut unfinished = harness.landing_tls("origin.test", b"h2").await;
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    frames.extend_from_slice(&[0, 0, 1, 0x1, 0x1, 0, 0, 0, 1, 0x82]);
    unfinished.write_all(&frames).await.unwrap();
    let (_, closed) = read_until_close(&mut unfinished, Duration::from_secs(5)).await;
    assert!(
        closed,
        "client with an unfinished header block still connected"
    );

    let (mut sender, connection) = h2_connection_with_task(&harness).await;
    // /slow responds after 2 s, four times the timeout.
    let url = format!("https://origin.test:{}/slow", origin.port());
    let body = h2_get(&mut sender, &url, Duration::ZERO).await;
    assert_eq!(body, b"slow\n");
    // A 4 MB body read with a pause in the middle, twice the header read timeout
    // and shorter than the idle timeout.
    let url = format!("https://origin.test:{}/zeros?4000000", origin.port());
    let body = h2_get(&mut sender, &url, Duration::from_millis(1000)).await;
    assert_eq!(body.len(), 4_000_000);
    assert!(!connection.is_finished(), "connection closed while in use");

    let idle_from = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("idle HTTP/2 connection still open")
        .unwrap();
    assert!(
        idle_from.elapsed() >= Duration::from_millis(400),
        "closed after {:?}",
        idle_from.elapsed()
    );
}

/// A client that stops reading its socket during a response, for longer than twice the
/// header read timeout, still gets every byte once it reads again, although its
/// connection gets GOAWAY meanwhile.
#[tokio::test]
async fn http2_stalled_reader_gets_whole_response() {
    let harness = Harness::start(|config| {
        config.timeouts.client_header_read_ms = 300;
        config.timeouts.idle_ms = 5_000;
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;

    let (mut sender, reads) = gated_h2_connection(&harness, 16 << 20).await;
    // Small enough for swg's HTTP/2 send buffer (400 KiB) to take it all, while
    // the client reads only the response head and a little of the body.
    let url = format!("https://origin.test:{}/zeros?300000", origin.port());
    let request = http::Request::get(url).body(()).unwrap();
    reads.allow(64 * 1024);
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("no response head within 5 s")
        .unwrap();
    assert_eq!(response.status(), 200);

    // Longer than the header read timeout twice, shorter than the idle timeout.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    reads.open();

    let mut body = response.into_body();
    let mut received = 0;
    let read_all = async {
        while let Some(chunk) = body.data().await {
            let chunk = chunk.unwrap();
            let _ = body.flow_control().release_capacity(chunk.len());
            received += chunk.len();
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read_all)
        .await
        .expect("response body not read within 10 s");
    assert_eq!(received, 300_000);
}

/// An HTTP/2 client that stops reading its socket during a large download has its
/// connection closed once swg's writes have waited for `timeouts.idle_ms`, long
/// before the keep-alive PING would time out.
#[tokio::test]
async fn http2_client_not_reading_socket_closed() {
    let harness = Harness::start(|config| {
        config.timeouts.idle_ms = 1_000;
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;

    // Windows larger than the body, so that only the socket stops swg's writes.
    let (mut sender, reads) = gated_h2_connection(&harness, 128 << 20).await;
    let url = format!(
        "https://origin.test:{}/zeros?{}",
        origin.port(),
        64u64 << 20
    );
    let request = http::Request::get(url).body(()).unwrap();
    reads.allow(64 * 1024);
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("no response head within 5 s")
        .unwrap();
    assert_eq!(response.status(), 200);

    let open = || harness.metric("swg_proxy_active_connections", &[("listener", "tls")]);
    assert_eq!(open(), 1.0);
    let stopped_reading = Instant::now();
    wait_until(Duration::from_secs(15), "connection closed", || {
        open() == 0.0
    })
    .await;
    let waited = stopped_reading.elapsed();
    assert!(
        waited >= Duration::from_millis(1_000),
        "closed after {waited:?}"
    );
    drop(response);
}

/// Opens an HTTP/2 connection to the landing for origin.test whose reads pass a
/// [`ReadGate`], with stream and connection windows of `window` bytes. A small
/// receive buffer keeps the socket buffers from holding a large body, so that
/// most of it waits in swg while the gate is closed.
async fn gated_h2_connection(
    harness: &Harness,
    window: u32,
) -> (h2::client::SendRequest<bytes::Bytes>, Arc<ReadGate>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(harness.tls).await.unwrap();
    let reads = Arc::new(ReadGate::default());
    let gated = Gated {
        inner: tcp,
        gate: Arc::clone(&reads),
    };
    let tls = tokio_rustls::TlsConnector::from(harness.landing_client_config(b"h2"))
        .connect(ServerName::try_from("origin.test").unwrap(), gated)
        .await
        .unwrap();
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window)
        .handshake::<_, bytes::Bytes>(tls)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender.ready().await.unwrap(), reads)
}

/// Opens an HTTP/2 connection to the landing for origin.test; the returned task ends
/// when the connection does.
async fn h2_connection_with_task(
    harness: &Harness,
) -> (
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let tls = harness.landing_tls("origin.test", b"h2").await;
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, task)
}

/// Sends a GET for `url` and reads the whole response body, pausing for `pause` after
/// the first chunk. Asserts a 200 status.
async fn h2_get(
    sender: &mut h2::client::SendRequest<bytes::Bytes>,
    url: &str,
    pause: Duration,
) -> Vec<u8> {
    let ready = sender.clone().ready().await.unwrap();
    *sender = ready;
    let request = http::Request::get(url).body(()).unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        if received.is_empty() {
            tokio::time::sleep(pause).await;
        }
        received.extend_from_slice(&chunk);
    }
    received
}

/// Builds an HTTP/1.1 request head of exactly `length` bytes (request line, fields and the
/// empty line), padded with an `X-Pad` field.
fn head_of_length(request_line: &str, fields: &[String], length: usize) -> String {
    let mut head = format!("{request_line}\r\n");
    for field in fields {
        head.push_str(field);
        head.push_str("\r\n");
    }
    let unpadded = head.len() + "X-Pad: \r\n\r\n".len();
    format!("{head}X-Pad: {}\r\n\r\n", "p".repeat(length - unpadded))
}

/// Sends `head` on `stream` and returns the response and whether the proxy closed.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, head: &str) -> (String, bool) {
    let _ = stream.write_all(head.as_bytes()).await;
    read_until_close(&mut stream, Duration::from_secs(5)).await
}

/// `limits.max_header_bytes` bounds the whole HTTP/1.1 request head exactly, on the
/// plain-HTTP landing, the explicit proxy, the TLS landing and inside a CONNECT
/// tunnel: a head of the limit is forwarded, one byte more gets 431.
#[tokio::test]
async fn header_limit_exact_on_every_listener() {
    let harness = Harness::start(|config| {
        config.static_hosts =
            support::static_hosts(&[("plain.test", "127.0.0.1"), ("origin.test", "127.0.0.1")]);
    })
    .await;
    let limit = 65_536;
    let plain = origin::start_http().await.port();
    let secure = origin::start_https(
        harness.origin_ca.valid_leaf(&["origin.test"]),
        &[b"http/1.1"],
    )
    .await
    .port();
    let authorization = format!("Proxy-Authorization: Bearer {}", support::GOOD_TOKEN);

    for length in [limit, limit + 1] {
        let expected = if length == limit {
            "HTTP/1.1 200"
        } else {
            "HTTP/1.1 431"
        };

        let head = head_of_length(
            "GET /small HTTP/1.1",
            &[
                format!("Host: plain.test:{plain}"),
                "Connection: close".to_owned(),
            ],
            length,
        );
        let http = TcpStream::connect(harness.http).await.unwrap();
        let (response, closed) = exchange(http, &head).await;
        assert!(
            response.starts_with(expected),
            "http landing, {length}: {response:?}"
        );
        assert!(closed);

        let head = head_of_length(
            &format!("GET http://plain.test:{plain}/small HTTP/1.1"),
            &[
                format!("Host: plain.test:{plain}"),
                authorization.clone(),
                "Connection: close".to_owned(),
            ],
            length,
        );
        let explicit = TcpStream::connect(harness.explicit).await.unwrap();
        let (response, closed) = exchange(explicit, &head).await;
        assert!(
            response.starts_with(expected),
            "explicit, {length}: {response:?}"
        );
        assert!(closed);

        let head = head_of_length(
            "GET /small HTTP/1.1",
            &[
                format!("Host: origin.test:{secure}"),
                "Connection: close".to_owned(),
            ],
            length,
        );
        let tls = harness.landing_tls("origin.test", b"http/1.1").await;
        let (response, closed) = exchange(tls, &head).await;
        assert!(
            response.starts_with(expected),
            "TLS landing, {length}: {response:?}"
        );
        assert!(closed);

        let mut tunnel = TcpStream::connect(harness.explicit).await.unwrap();
        let connect = format!(
            "CONNECT plain.test:{plain} HTTP/1.1\r\nHost: plain.test:{plain}\r\n{authorization}\r\n\r\n"
        );
        tunnel.write_all(connect.as_bytes()).await.unwrap();
        let mut established = Vec::new();
        while !established.ends_with(b"\r\n\r\n") {
            established.push(tunnel.read_u8().await.unwrap());
        }
        assert!(established.starts_with(b"HTTP/1.1 200 OK\r\n"));
        let head = head_of_length(
            "GET /small HTTP/1.1",
            &[
                format!("Host: plain.test:{plain}"),
                "Connection: close".to_owned(),
            ],
            length,
        );
        let (response, closed) = exchange(tunnel, &head).await;
        assert!(
            response.starts_with(expected),
            "tunnel, {length}: {response:?}"
        );
        assert!(closed);
    }
}

/// Over HTTP/2, h2 sends 431 on the stream when the header list (RFC 9113 section
/// 6.5.2: name and value lengths plus 32 per field) reaches
/// `limits.max_header_bytes`, and the connection stays usable.
#[tokio::test]
async fn http2_oversized_header_list_gets_431() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let origin = origin::start_https(
        harness.origin_ca.valid_leaf(&["origin.test"]),
        &[b"http/1.1"],
    )
    .await;
    let url = format!("https://origin.test:{}/small", origin.port());
    // The pseudo-header fields and one padding field, without the padding.
    let authority = format!("origin.test:{}", origin.port());
    let fixed = (":method".len() + "GET".len() + 32)
        + (":scheme".len() + "https".len() + 32)
        + (":authority".len() + authority.len() + 32)
        + (":path".len() + "/small".len() + 32)
        + ("x-pad".len() + 32);
    let limit = 65_536;

    let mut sender = h2_connection(&harness).await;
    let cases = [
        (limit - 1 - fixed, 200),
        (limit - fixed, 431),
        // The same connection still serves requests after the 431.
        (limit - 1 - fixed, 200),
    ];
    for (padding, expected) in cases {
        let request = http::Request::get(url.as_str())
            .header("x-pad", "p".repeat(padding))
            .body(())
            .unwrap();
        sender = sender.ready().await.unwrap();
        let (response, _) = sender.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), expected, "padding {padding}");
    }

    // curl (nghttp2) sends header blocks up to 64 KiB, so a lower limit shows the
    // 431 to a real client.
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
        config.limits.max_header_bytes = 16 * 1024;
    })
    .await;
    let header_file = harness.dir.path().join("big-header");
    std::fs::write(&header_file, format!("X-Big: {}\n", "b".repeat(20_000))).unwrap();
    let mut args = harness.landing_args("origin.test", origin.port());
    args.extend(support::args(&[
        "--http2",
        "-H",
        &format!("@{}", header_file.display()),
    ]));
    let result = curl(args, &url).await;
    assert_eq!(result.status, 431, "{}", result.stderr);
    assert_eq!(result.version, "2");
}

/// RFC 9112 section 3.2: a request with two Host lines gets 400 before identity,
/// policy or upstream work, on every listener and over HTTP/2 too, and an HTTP/1.1
/// connection closes.
#[tokio::test]
async fn duplicate_host_rejected_on_every_listener() {
    let harness = Harness::start(|config| {
        config.static_hosts =
            support::static_hosts(&[("plain.test", "127.0.0.1"), ("origin.test", "127.0.0.1")]);
    })
    .await;
    let plain = origin::start_http().await.port();
    let secure = origin::start_https(
        harness.origin_ca.valid_leaf(&["origin.test"]),
        &[b"http/1.1"],
    )
    .await
    .port();
    let authorization = format!("Proxy-Authorization: Bearer {}", support::GOOD_TOKEN);

    let http = TcpStream::connect(harness.http).await.unwrap();
    let head =
        format!("GET /small HTTP/1.1\r\nHost: plain.test:{plain}\r\nHost: other.test\r\n\r\n");
    let (response, closed) = exchange(http, &head).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "http landing: {response:?}"
    );
    assert!(
        response.ends_with("more than one Host header\n"),
        "{response:?}"
    );
    assert!(closed);

    let explicit = TcpStream::connect(harness.explicit).await.unwrap();
    let head = format!(
        "GET http://plain.test:{plain}/small HTTP/1.1\r\nHost: plain.test:{plain}\r\nHost: other.test\r\n{authorization}\r\n\r\n"
    );
    let (response, closed) = exchange(explicit, &head).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "explicit: {response:?}"
    );
    assert!(closed);

    let explicit = TcpStream::connect(harness.explicit).await.unwrap();
    let head = format!(
        "CONNECT plain.test:{plain} HTTP/1.1\r\nHost: plain.test:{plain}\r\nHost: other.test\r\n{authorization}\r\n\r\n"
    );
    let (response, closed) = exchange(explicit, &head).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "CONNECT: {response:?}"
    );
    assert!(closed);

    let tls = harness.landing_tls("origin.test", b"http/1.1").await;
    let head =
        format!("GET /small HTTP/1.1\r\nHost: origin.test:{secure}\r\nHost: other.test\r\n\r\n");
    let (response, closed) = exchange(tls, &head).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "TLS landing: {response:?}"
    );
    assert!(closed);

    let mut sender = h2_connection(&harness).await.ready().await.unwrap();
    let request = http::Request::get(format!("https://origin.test:{secure}/small"))
        .header("host", format!("origin.test:{secure}"))
        .header("host", "other.test")
        .body(())
        .unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 400, "HTTP/2");
    let body = response.into_body().data().await.unwrap().unwrap();
    assert_eq!(body, "bad request: more than one Host header\n");

    assert!(harness.events.actions().is_empty());
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "bad_request")]),
        5.0
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "explicit"), ("action", "bad_request")]
        ),
        2.0
    );
}

#[tokio::test]
async fn http11_without_host_rejected_everywhere() {
    let harness = Harness::start(|_| {}).await;

    // Without the check the TLS landing would judge and forward the SNI's host.
    let tls = harness.landing_tls("origin.test", b"http/1.1").await;
    let (response, closed) = exchange(tls, "GET /small HTTP/1.1\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "TLS landing: {response:?}"
    );
    assert!(response.ends_with("needs a Host header\n"), "{response:?}");
    assert!(closed);

    let http = TcpStream::connect(harness.http).await.unwrap();
    let (response, closed) = exchange(http, "GET /small HTTP/1.1\r\n\r\n").await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "http landing: {response:?}"
    );
    assert!(closed);

    let explicit = TcpStream::connect(harness.explicit).await.unwrap();
    let head = format!(
        "GET http://plain.test/ HTTP/1.1\r\nProxy-Authorization: Bearer {}\r\n\r\n",
        support::GOOD_TOKEN
    );
    let (response, closed) = exchange(explicit, &head).await;
    assert!(
        response.starts_with("HTTP/1.1 400"),
        "explicit proxy: {response:?}"
    );
    assert!(closed);

    // HTTP/1.0 may omit Host: the landing takes the SNI, as before.
    let tls = harness.landing_tls("origin.test", b"http/1.1").await;
    let (response, _) = exchange(tls, "GET /small HTTP/1.0\r\n\r\n").await;
    let status_line = response.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1."), "{response:?}");
    assert!(!status_line.contains(" 400 "), "{response:?}");
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "bad_request")]),
        3.0
    );
}

/// Opens a CONNECT tunnel to `target` through the explicit proxy and returns it
/// once the proxy has sent 200.
#[tokio::test]
async fn revoked_token_stops_open_tunnel() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    *harness.identify.hints_enabled.lock().unwrap() = false;
    let (origin, connections) = origin::start_http_counted().await;
    let target = format!("plain.test:{}", origin.port());
    let tunnel = open_tunnel(&harness, &target).await;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tunnel))
        .await
        .unwrap();
    tokio::spawn(connection);
    let get = || {
        http::Request::get("/small")
            .header(http::header::HOST, target.as_str())
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };

    let response = sender.send_request(get()).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello from origin\n");
    assert_eq!(connections.load(Ordering::SeqCst), 1);

    // The key behind the token is deleted while the tunnel stays open.
    *harness.identify.token_revoked.lock().unwrap() = true;
    let response = sender.send_request(get()).await.unwrap();
    assert_eq!(response.status(), 403);
    let origin_requests = harness.metric(
        "swg_proxy_requests_total",
        &[("listener", "explicit"), ("action", "allow")],
    );
    assert_eq!(origin_requests, 1.0);
}

async fn open_tunnel(harness: &Harness, target: &str) -> TcpStream {
    let mut tunnel = TcpStream::connect(harness.explicit).await.unwrap();
    let connect = format!(
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Bearer {}\r\n\r\n",
        support::GOOD_TOKEN
    );
    tunnel.write_all(connect.as_bytes()).await.unwrap();
    let mut established = Vec::new();
    while !established.ends_with(b"\r\n\r\n") {
        established.push(tunnel.read_u8().await.unwrap());
    }
    assert!(
        established.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&established)
    );
    tunnel
}

/// Sends CONNECT for `uri` on a new HTTP/2 stream, keeping the stream open as a
/// tunnel client would, and returns the response status.
async fn h2_connect_status(sender: h2::client::SendRequest<bytes::Bytes>, uri: &str) -> u16 {
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(uri)
        .body(())
        .unwrap();
    let (response, _stream) = sender.send_request(request, false).unwrap();
    response.await.unwrap().status().as_u16()
}

/// Sends the HTTP/2 preface and a HEADERS frame whose only field is `:method:
/// CONNECT` (no `:authority`, malformed under RFC 9113 section 8.5) on `stream`,
/// and returns the DATA of the response on stream 1. The h2 client library always
/// adds `:scheme` to a request without `:authority`, and h2's server resets such a
/// CONNECT itself, so this frame is written by hand.
async fn h2_bare_connect<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) -> String {
    let mut frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // An empty SETTINGS frame.
    frames.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
    // HPACK: a literal field without indexing, named by static table entry 2
    // (`:method`), with the 7-byte value "CONNECT".
    let block = [&[0x02, 7][..], b"CONNECT"].concat();
    // HEADERS (type 1) on stream 1 with END_HEADERS (flag 4), not END_STREAM.
    frames.extend_from_slice(&[0, 0, block.len() as u8, 0x1, 0x4, 0, 0, 0, 1]);
    frames.extend_from_slice(&block);
    stream.write_all(&frames).await.unwrap();

    let mut data = Vec::new();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.unwrap();
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream_id = u32::from_be_bytes([head[5] & 0x7f, head[6], head[7], head[8]]);
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.unwrap();
            match (kind, stream_id) {
                // SETTINGS without ACK: acknowledge it.
                (0x4, 0) if flags & 0x1 == 0 => {
                    stream
                        .write_all(&[0, 0, 0, 0x4, 0x1, 0, 0, 0, 0])
                        .await
                        .unwrap();
                }
                // DATA, until END_STREAM.
                (0x0, 1) => {
                    data.extend_from_slice(&payload);
                    if flags & 0x1 != 0 {
                        return;
                    }
                }
                (0x3, 1) => panic!("stream reset with error code {payload:?}"),
                (0x7, _) => panic!("connection closed with GOAWAY {payload:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("no response to CONNECT within 5 s");
    String::from_utf8_lossy(&data).into_owned()
}

/// An intercepted connection acts as the origin and has no tunnel to offer,
/// so CONNECT gets 405 on both landings, over HTTP/1.1 and HTTP/2, and inside a
/// tunnel of the explicit proxy, and never reaches the origin.
#[tokio::test]
async fn connect_rejected_on_intercepted_connections() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let (plain, plain_connections) = origin::start_http_counted().await;
    let (secure, secure_connections) = origin::start_https_counted(
        harness.origin_ca.valid_leaf(&["origin.test"]),
        &[b"h2", b"http/1.1"],
    )
    .await;
    let plain_target = format!("origin.test:{}", plain.port());
    let secure_target = format!("origin.test:{}", secure.port());
    let connect = |target: &str| format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");

    let http = TcpStream::connect(harness.http).await.unwrap();
    let (response, closed) = exchange(http, &connect(&plain_target)).await;
    assert!(
        response.starts_with("HTTP/1.1 405"),
        "http landing: {response:?}"
    );
    assert!(
        response.contains("\r\nallow: GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH\r\n"),
        "{response:?}"
    );
    assert!(
        response.ends_with("does not accept CONNECT\n"),
        "{response:?}"
    );
    assert!(closed);

    let http = TcpStream::connect(harness.http).await.unwrap();
    let (sender, connection) = h2::client::handshake(http).await.unwrap();
    tokio::spawn(connection);
    assert_eq!(
        h2_connect_status(sender, &plain_target).await,
        405,
        "http landing, HTTP/2"
    );

    let tls = harness.landing_tls("origin.test", b"http/1.1").await;
    let (response, closed) = exchange(tls, &connect(&secure_target)).await;
    assert!(
        response.starts_with("HTTP/1.1 405"),
        "TLS landing: {response:?}"
    );
    assert!(closed);

    let sender = h2_connection(&harness).await;
    assert_eq!(
        h2_connect_status(sender, &secure_target).await,
        405,
        "TLS landing, HTTP/2"
    );
    let tls = harness.landing_tls("origin.test", b"h2").await;
    assert_eq!(
        h2_bare_connect(tls).await,
        "method not allowed: an intercepted connection does not accept CONNECT\n",
        "TLS landing, HTTP/2 without :authority"
    );

    let tunnel = open_tunnel(&harness, &plain_target).await;
    let (response, closed) = exchange(tunnel, &connect(&plain_target)).await;
    assert!(
        response.starts_with("HTTP/1.1 405"),
        "plain HTTP in a tunnel: {response:?}"
    );
    assert!(closed);

    let tunnel = open_tunnel(&harness, &secure_target).await;
    let tls = tokio_rustls::TlsConnector::from(harness.landing_client_config(b"http/1.1"))
        .connect(ServerName::try_from("origin.test").unwrap(), tunnel)
        .await
        .unwrap();
    let (response, closed) = exchange(tls, &connect(&secure_target)).await;
    assert!(
        response.starts_with("HTTP/1.1 405"),
        "TLS in a tunnel: {response:?}"
    );
    assert!(closed);

    assert_eq!(plain_connections.load(Ordering::SeqCst), 0);
    assert_eq!(secure_connections.load(Ordering::SeqCst), 0);
    assert!(harness.events.actions().is_empty());
    for (listener, refused) in [("http", 2.0), ("tls", 3.0), ("explicit", 2.0)] {
        assert_eq!(
            harness.metric(
                "swg_proxy_requests_total",
                &[("listener", listener), ("action", "bad_request")]
            ),
            refused,
            "{listener}"
        );
    }
    assert_eq!(harness.metric("swg_proxy_requests_total", &[]), 7.0);
}

/// A chunked request body that the client frames wrongly fails when swg reads it
/// to forward it, after the head went upstream. That is the client's fault: 400
/// and `bad_request`, not the "unreachable" page and an upstream error, towards
/// HTTP/1.1 and HTTP/2 origins alike.
#[tokio::test]
async fn malformed_chunked_body_gets_400() {
    let harness = Harness::start(|config| {
        config.static_hosts =
            support::static_hosts(&[("plain.test", "127.0.0.1"), ("origin.test", "127.0.0.1")]);
    })
    .await;
    let plain = origin::start_http().await.port();
    let secure = origin::start_https(harness.origin_ca.valid_leaf(&["origin.test"]), &[b"h2"])
        .await
        .port();
    let authorization = format!("Proxy-Authorization: Bearer {}", support::GOOD_TOKEN);
    let bodies = [
        "zz\r\nabc\r\n0\r\n\r\n",
        "ffffffffffffffffffff\r\nabcd\r\n0\r\n\r\n",
    ];
    let expected_body = "bad request: the request body is invalid or incomplete\n";

    for body in bodies {
        let head = format!(
            "POST /count HTTP/1.1\r\nHost: plain.test:{plain}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let http = TcpStream::connect(harness.http).await.unwrap();
        let (response, closed) = exchange(http, &head).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "http landing, {body:?}: {response:?}"
        );
        assert!(response.ends_with(expected_body), "{response:?}");
        assert!(closed);

        let head = format!(
            "POST http://plain.test:{plain}/count HTTP/1.1\r\nHost: plain.test:{plain}\r\n{authorization}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let explicit = TcpStream::connect(harness.explicit).await.unwrap();
        let (response, closed) = exchange(explicit, &head).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "explicit, {body:?}: {response:?}"
        );
        assert!(response.ends_with(expected_body), "{response:?}");
        assert!(closed);

        let head = format!(
            "POST /count HTTP/1.1\r\nHost: origin.test:{secure}\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
        );
        let tls = harness.landing_tls("origin.test", b"http/1.1").await;
        let (response, closed) = exchange(tls, &head).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "TLS landing to an HTTP/2 origin, {body:?}: {response:?}"
        );
        assert!(response.ends_with(expected_body), "{response:?}");
        assert!(closed);
    }

    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "bad_request")]),
        6.0
    );
    assert_eq!(harness.metric("swg_proxy_requests_total", &[]), 6.0);
    let events = harness.events.0.lock().unwrap();
    assert_eq!(events.len(), 6);
    for event in events.iter() {
        assert_eq!(event.action, Action::Allow, "{}", event.url);
        assert_eq!(event.failure, None, "{}", event.url);
        let reason = event
            .decision
            .as_ref()
            .map(|decision| decision.reason.as_str());
        assert_eq!(
            reason,
            Some("client error: request body invalid or incomplete"),
            "{}",
            event.url
        );
    }
}

/// An HTTP/1.1 client that ends its side of the connection before the body its
/// `Content-Length` announced fails the body as a chunking error does: 400 and
/// `bad_request`, not an upstream error.
#[tokio::test]
async fn http1_body_cut_short_gets_400() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let (origin, connections) = origin::start_http_counted().await;
    let port = origin.port();

    let mut http = TcpStream::connect(harness.http).await.unwrap();
    let head =
        format!("POST /count HTTP/1.1\r\nHost: plain.test:{port}\r\nContent-Length: 10\r\n\r\nabc");
    http.write_all(head.as_bytes()).await.unwrap();
    // The body is cut short only once swg has forwarded the head.
    wait_until(Duration::from_secs(5), "connected to the origin", || {
        connections.load(Ordering::SeqCst) == 1
    })
    .await;
    http.shutdown().await.unwrap();
    let (response, closed) = read_until_close(&mut http, Duration::from_secs(5)).await;

    assert!(response.starts_with("HTTP/1.1 400"), "{response:?}");
    assert!(
        response.ends_with("bad request: the request body is invalid or incomplete\n"),
        "{response:?}"
    );
    assert!(closed);
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "bad_request")]),
        1.0
    );
    assert_eq!(harness.metric("swg_proxy_requests_total", &[]), 1.0);
}

/// Port 0 names no service: it gets 400 as an invalid port does, on the landing,
/// in absolute form and in CONNECT, without any connection attempt. CONNECT also
/// needs the authority form.
#[tokio::test]
async fn port_zero_and_connect_uri_rejected() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let authorization = format!("Proxy-Authorization: Bearer {}", support::GOOD_TOKEN);

    for port in ["0", "65536"] {
        let http = TcpStream::connect(harness.http).await.unwrap();
        let head =
            format!("GET /small HTTP/1.1\r\nHost: origin.test:{port}\r\nConnection: close\r\n\r\n");
        let (response, _) = exchange(http, &head).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "http landing, port {port}: {response:?}"
        );
        assert!(
            response.ends_with("invalid or missing host\n"),
            "{response:?}"
        );

        let explicit = TcpStream::connect(harness.explicit).await.unwrap();
        let head = format!(
            "GET http://origin.test:{port}/small HTTP/1.1\r\nHost: origin.test:{port}\r\n{authorization}\r\nConnection: close\r\n\r\n"
        );
        let (response, _) = exchange(explicit, &head).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "explicit, port {port}: {response:?}"
        );
    }

    for target in [
        "origin.test:0",
        "127.0.0.2:0",
        "origin.test:65536",
        "http://origin.test:443",
    ] {
        let explicit = TcpStream::connect(harness.explicit).await.unwrap();
        let head = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: origin.test:443\r\n{authorization}\r\nConnection: close\r\n\r\n"
        );
        let (response, _) = exchange(explicit, &head).await;
        assert!(
            response.starts_with("HTTP/1.1 400"),
            "CONNECT {target}: {response:?}"
        );
        assert!(
            response.ends_with("CONNECT needs host:port\n"),
            "{response:?}"
        );
    }

    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    assert!(harness.events.actions().is_empty());
}

/// Every request that the explicit proxy rejects itself counts as `bad_request`.
#[tokio::test]
async fn explicit_proxy_rejections_counted() {
    let harness = Harness::start(|_| {}).await;
    let authorization = format!("Proxy-Authorization: Bearer {}", support::GOOD_TOKEN);
    let cases = [
        ("CONNECT user@origin.test:443", "400"),
        ("CONNECT origin.test", "400"),
        ("CONNECT origin.test:65536", "400"),
        ("GET https://origin.test/small", "400"),
        ("GET ftp://origin.test/small", "400"),
        ("GET /small", "404"),
    ];

    for (request_line, status) in cases {
        let explicit = TcpStream::connect(harness.explicit).await.unwrap();
        let head = format!(
            "{request_line} HTTP/1.1\r\nHost: origin.test:443\r\n{authorization}\r\nConnection: close\r\n\r\n"
        );
        let (response, _) = exchange(explicit, &head).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status}")),
            "{request_line}: {response:?}"
        );
    }

    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "explicit"), ("action", "bad_request")]
        ),
        cases.len() as f64
    );
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[]),
        cases.len() as f64
    );
}

/// Starts the harness with `idle_ms` and an HTTP/2 origin for origin.test; returns
/// the origin's port.
async fn harness_with_h2_origin(idle_ms: u64) -> (Harness, u16) {
    let harness = Harness::start(|config| {
        config.timeouts.idle_ms = idle_ms;
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;
    (harness, origin.port())
}

/// Sends a GET for `url` on a new HTTP/2 connection to the landing and returns the
/// response head, leaving the body unread. The client's windows stay at the
/// protocol's 64 KiB and are never opened.
async fn h2_stalled_download(
    harness: &Harness,
    url: &str,
) -> (
    http::Response<h2::RecvStream>,
    h2::client::SendRequest<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let (sender, task) = h2_connection_with_task(harness).await;
    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::get(url).body(()).unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("no response head within 5 s")
        .unwrap();
    assert_eq!(response.status(), 200);
    (response, sender, task)
}

/// Reads an HTTP/2 response body until it ends or fails; returns the bytes read and
/// whether it failed.
async fn h2_read_body(body: &mut h2::RecvStream) -> (u64, bool) {
    let mut received = 0;
    while let Some(chunk) = body.data().await {
        match chunk {
            Ok(chunk) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                received += chunk.len() as u64;
            }
            Err(_) => return (received, true),
        }
    }
    (received, false)
}

/// Waits until swg has ended a stalled response, which it does once the response
/// has moved no frame for the idle timeout (1 s in these tests), and at least that
/// long after `stalled_from`.
async fn wait_for_stalled_response(harness: &Harness, stalled_from: Instant) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while harness.metric("swg_proxy_stalled_responses_total", &[]) < 1.0 {
        assert!(
            Instant::now() < deadline,
            "no stalled response ended within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let waited = stalled_from.elapsed();
    assert!(
        waited >= Duration::from_millis(1_000),
        "ended after {waited:?}"
    );
}

/// Clients that stop reading large downloads from an HTTP/2 origin hold up no other
/// request to that origin, although all of them share one pooled connection: the
/// stalled streams cannot fill the connection's window.
#[tokio::test]
async fn stalled_downloads_leave_origin_usable() {
    let (harness, port) = harness_with_h2_origin(60_000).await;
    let large = format!("https://origin.test:{port}/zeros?{}", 64u64 << 20);
    let mut stalled = Vec::new();
    for _ in 0..4 {
        stalled.push(h2_stalled_download(&harness, &large).await);
    }
    // Time for the origin to fill the stalled streams' windows at swg.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut sender, _task) = h2_connection_with_task(&harness).await;
    let small = format!("https://origin.test:{port}/small");
    let body = tokio::time::timeout(
        Duration::from_secs(5),
        h2_get(&mut sender, &small, Duration::ZERO),
    )
    .await
    .expect("a small response was held up behind the stalled downloads");
    assert_eq!(body, b"hello from origin\n");
    drop(stalled);
}

/// A download whose HTTP/2 client takes no data for the idle timeout is ended, so
/// that its origin stream does not stay open: when the client reads again, it gets
/// what was under way and then a stream error.
#[tokio::test]
async fn http2_stalled_download_ended() {
    let (harness, port) = harness_with_h2_origin(1_000).await;
    let total = 64u64 << 20;
    let url = format!("https://origin.test:{port}/zeros?{total}");
    let stalled_from = Instant::now();
    let (response, _sender, _task) = h2_stalled_download(&harness, &url).await;
    wait_for_stalled_response(&harness, stalled_from).await;

    let mut body = response.into_body();
    let (received, failed) = tokio::time::timeout(Duration::from_secs(10), h2_read_body(&mut body))
        .await
        .expect("body neither ended nor failed within 10 s");
    assert!(failed, "the stalled download went on to its end");
    assert!(received < total, "{received} bytes");
}

/// The same over HTTP/1.1, where the stalled client's connection is closed.
#[tokio::test]
async fn http1_stalled_download_closes_connection() {
    let (harness, port) = harness_with_h2_origin(1_000).await;
    let total = 64u64 << 20;
    let stalled_from = Instant::now();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let tcp = socket.connect(harness.tls).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(harness.landing_client_config(b"http/1.1"))
        .connect(ServerName::try_from("origin.test").unwrap(), tcp)
        .await
        .unwrap();
    let head = format!("GET /zeros?{total} HTTP/1.1\r\nHost: origin.test:{port}\r\n\r\n");
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 1024];
    tls.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    wait_for_stalled_response(&harness, stalled_from).await;

    let mut received = first.len() as u64;
    let read_rest = async {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match tls.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => received += count as u64,
            }
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(10), read_rest)
        .await
        .is_ok();
    assert!(
        closed,
        "connection not closed within 10 s; {received} bytes"
    );
    assert!(received < total, "{received} bytes");
}

/// An origin that goes quiet in the middle of a body has its response ended after
/// the idle timeout, over both HTTP versions towards the client.
#[tokio::test]
async fn quiet_origin_response_ended() {
    let (harness, port) = harness_with_h2_origin(1_000).await;
    let url = format!("https://origin.test:{port}/quiet");
    for version in ["--http2", "--http1.1"] {
        let mut args = harness.landing_args("origin.test", port);
        args.push(version.to_owned());
        args.extend(["-m".to_owned(), "10".to_owned()]);
        let started = Instant::now();
        let result = curl(args, &url).await;
        let waited = started.elapsed();
        assert_eq!(result.body, "first line\n", "{version}: {}", result.stderr);
        // curl reports the cut transfer, and not its own time limit (error 28).
        assert!(
            !result.stderr.is_empty() && !result.stderr.contains("(28)"),
            "{version}: {}",
            result.stderr
        );
        assert!(
            waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
            "{version}: ended after {waited:?}: {}",
            result.stderr
        );
    }
    assert_eq!(
        harness.metric("swg_proxy_stalled_responses_total", &[]),
        2.0
    );
}

/// `limits.max_headers` bounds the number of HTTP/1.1 request header fields, at
/// hyper's default of 100 and at another value: the limit passes, one more gets 431.
#[tokio::test]
async fn header_count_limit_applies() {
    for max_headers in [100, 20] {
        let harness = Harness::start(|config| {
            config.limits.max_headers = max_headers;
            config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
        })
        .await;
        let plain = origin::start_http().await.port();
        for count in [max_headers, max_headers + 1] {
            let mut head =
                format!("GET /small HTTP/1.1\r\nHost: plain.test:{plain}\r\nConnection: close\r\n");
            for index in 2..count {
                head.push_str(&format!("X-Field-{index}: {index}\r\n"));
            }
            head.push_str("\r\n");
            let http = TcpStream::connect(harness.http).await.unwrap();
            let (response, _) = exchange(http, &head).await;
            let expected = if count == max_headers {
                "HTTP/1.1 200"
            } else {
                "HTTP/1.1 431"
            };
            assert!(
                response.starts_with(expected),
                "max_headers {max_headers}, {count} fields: {response:?}"
            );
        }
    }
}

/// Responses that hold every stream of the pooled HTTP/2 connection to an origin
/// do not hold up other requests to it, because swg opens further connections.
/// Each pool opens one, however many requests wait for it, and each request that
/// ends frees its place.
#[tokio::test]
async fn busy_origin_connection_gets_more() {
    let harness = Harness::start(|config| {
        config.limits.http2_connections_per_origin = 3;
        config.limits.http2_streams_per_origin_connection = 2;
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (origin, accepted) = origin::start_h2_limited(certificate, 2).await;
    let port = origin.port();
    let connections = || accepted.load(Ordering::SeqCst);
    let fetch = |path: &str| {
        let mut args = harness.landing_args("origin.test", port);
        args.extend(["--max-time", "8"].map(str::to_owned));
        let url = format!("https://origin.test:{port}{path}");
        async move { curl(args, &url).await }
    };

    // The first request goes through the pool that negotiates the version, and
    // shows that the origin speaks HTTP/2.
    let served = fetch("/small").await;
    assert_eq!(served.status, 200, "{}", served.stderr);
    assert_eq!(connections(), 1);

    // Two responses that never end take both streams of the first HTTP/2 pool's
    // connection. The idle timeout (60 s here) would end them long after this test.
    let quiet = format!("https://origin.test:{port}/quiet");
    let _first = h2_stalled_download(&harness, &quiet).await;
    let _second = h2_stalled_download(&harness, &quiet).await;
    assert_eq!(connections(), 2);

    // Four requests at once that take 2 s each fill the two other HTTP/2 pools,
    // two streams each. Each pool opens one connection, not one per request.
    let slow = futures::future::join_all((0..4).map(|_| fetch("/slow"))).await;
    for served in &slow {
        assert_eq!(served.status, 200, "{}", served.stderr);
        assert_eq!(served.body, "slow\n");
    }
    assert_eq!(connections(), 4);

    // Requests one after another reuse those connections. Should a request that
    // ended still count, the fifth would find every pool full and wait behind the
    // long responses on the first HTTP/2 pool's connection.
    for _ in 0..5 {
        let served = fetch("/small").await;
        assert_eq!(served.status, 200, "{}", served.stderr);
        assert_eq!(served.body, "hello from origin\n");
    }
    assert_eq!(connections(), 4);
}

/// Responses that clients do not read hold their buffers against the budget of the
/// client's address: once it is spent, the next response is refused with 503, and
/// the budget comes back when a stalled response goes.
#[tokio::test]
async fn response_buffer_budget_refuses_then_recovers() {
    let harness = Harness::start(|config| {
        config.limits.max_response_buffer_bytes = 16 << 20;
        config.limits.max_response_buffer_bytes_per_client = Some(8 << 20);
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;
    let port = origin.port();
    let reserved = || harness.metric("swg_proxy_response_buffer_bytes", &[]);

    // Each download of unknown length from an HTTP/2 origin reserves the memory
    // of one 2 MiB stream window, 4 MiB: two of them spend the 8 MiB of the
    // client's address.
    let large = format!("https://origin.test:{port}/zeros-unsized?{}", 64u64 << 20);
    let first = h2_stalled_download(&harness, &large).await;
    let second = h2_stalled_download(&harness, &large).await;
    assert_eq!(reserved(), f64::from(8u32 << 20));

    let small = format!("https://origin.test:{port}/small");
    let refused = curl(harness.landing_args("origin.test", port), &small).await;
    assert_eq!(refused.status, 503, "{}", refused.stderr);
    assert_eq!(
        refused.body,
        "swg-page: upstream-error overloaded overloaded\n"
    );
    assert_eq!(
        harness.metric("swg_proxy_upstream_errors_total", &[("kind", "overloaded")]),
        1.0
    );
    assert_eq!(reserved(), f64::from(8u32 << 20));

    // A request that is not idempotent reserves its buffer before it is sent, so
    // the origin never processes one whose response swg would refuse.
    let sent_upstream = || harness.metric("swg_proxy_upstream_seconds_count", &[]);
    let sent_before = sent_upstream();
    // The POSTs go over HTTP/1.1. Over HTTP/2, swg sends the 503 before the upload
    // ends and resets the rest with NO_ERROR, which curl 7.88 reports as an error.
    let mut post = harness.landing_args("origin.test", port);
    post.extend(["--http1.1", "--data-binary", "order=1"].map(str::to_owned));
    let refused = curl(post, &format!("https://origin.test:{port}/count")).await;
    assert_eq!(refused.status, 503, "{}", refused.stderr);
    assert_eq!(sent_upstream(), sent_before);

    // Closing one stalled client connection ends its response and gives its
    // window back.
    let (response, sender, connection) = first;
    drop((response, sender));
    connection.abort();
    let deadline = Instant::now() + Duration::from_secs(10);
    while reserved() > f64::from(4u32 << 20) {
        assert!(Instant::now() < deadline, "reservation not given back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let served = curl(harness.landing_args("origin.test", port), &small).await;
    assert_eq!(served.status, 200, "{}", served.stderr);
    assert_eq!(served.body, "hello from origin\n");
    // The small response gave its 18 bytes back when it ended.
    assert_eq!(reserved(), f64::from(4u32 << 20));

    // With room again, the POST goes through and gives back all it reserved.
    let mut post = harness.landing_args("origin.test", port);
    post.extend(["--http1.1", "--data-binary", "order=1"].map(str::to_owned));
    let served = curl(post, &format!("https://origin.test:{port}/count")).await;
    assert_eq!(served.status, 200, "{}", served.stderr);
    assert_eq!(served.body, "7\n");
    assert_eq!(reserved(), f64::from(4u32 << 20));
    drop(second);
}

/// Opens an HTTP/2 connection to the landing for origin.test, starts an upload on
/// it to `url` and returns the send capacity its stream reaches: the smaller of
/// the stream and connection windows that swg offered. It waits up to 5 s for
/// `expected`, then 200 ms more for any excess. The connection stays open until
/// the returned task is aborted.
async fn h2_upload_capacity(
    harness: &Harness,
    url: &str,
    expected: usize,
) -> (
    usize,
    h2::SendStream<bytes::Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let tls = harness.landing_tls("origin.test", b"h2").await;
    // The client's own send buffer limit caps the capacity it reports.
    let (sender, connection) = h2::client::Builder::new()
        .max_send_buffer_size(32 << 20)
        .handshake::<_, bytes::Bytes>(tls)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });

    let mut sender = sender.ready().await.unwrap();
    let request = http::Request::post(url).body(()).unwrap();
    let (_response, mut stream) = sender.send_request(request, false).unwrap();
    stream.reserve_capacity(32 << 20);

    let mut deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut capacity = stream.capacity();
    loop {
        if capacity >= expected {
            deadline = deadline.min(tokio::time::Instant::now() + Duration::from_millis(200));
        }
        match tokio::time::timeout_at(
            deadline,
            std::future::poll_fn(|cx| stream.poll_capacity(cx)),
        )
        .await
        {
            Ok(Some(Ok(now))) => capacity = now,
            _ => break,
        }
    }
    (capacity, stream, task)
}

/// HTTP/2 client connections reserve their upload windows from the request buffer
/// budget of their address: once it is spent, further connections get smaller
/// windows, down to the protocol's 64 KiB, and a closed connection gives its
/// window back.
#[tokio::test]
async fn request_buffer_budget_shrinks_windows() {
    let harness = Harness::start(|config| {
        config.limits.max_request_buffer_bytes = 64 << 20;
        config.limits.max_request_buffer_bytes_per_client = Some(10 << 20);
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let origin = origin::start_https(certificate, &[b"h2"]).await;
    let url = format!("https://origin.test:{}/count", origin.port());
    let reserved = || harness.metric("swg_proxy_request_buffer_bytes", &[]);
    let reduced = || harness.metric("swg_proxy_reduced_request_windows_total", &[]);

    // The first connection reserves the largest window, 8 MiB; its streams get
    // the 4 MiB stream window.
    let (capacity, first_stream, first) = h2_upload_capacity(&harness, &url, 4 << 20).await;
    assert_eq!(capacity, 4 << 20);
    assert_eq!((reserved(), reduced()), (f64::from(8u32 << 20), 0.0));

    // 2 MiB are left for the second, which also bounds its stream window.
    let (capacity, _second_stream, second) = h2_upload_capacity(&harness, &url, 2 << 20).await;
    assert_eq!(capacity, 2 << 20);
    assert_eq!((reserved(), reduced()), (f64::from(10u32 << 20), 1.0));

    // Nothing is left: the third gets the protocol's initial window, unreserved.
    let (capacity, _third_stream, third) = h2_upload_capacity(&harness, &url, 65_535).await;
    assert_eq!(capacity, 65_535);
    assert_eq!((reserved(), reduced()), (f64::from(10u32 << 20), 2.0));

    // Closing the first connection gives its 8 MiB back, for the next one.
    drop(first_stream);
    first.abort();
    wait_until(Duration::from_secs(10), "window given back", || {
        reserved() <= f64::from(2u32 << 20)
    })
    .await;
    let (capacity, _fourth_stream, fourth) = h2_upload_capacity(&harness, &url, 4 << 20).await;
    assert_eq!(capacity, 4 << 20);
    assert_eq!(reserved(), f64::from(10u32 << 20));
    for task in [second, third, fourth] {
        task.abort();
    }
}

/// The DATA swg queues for one HTTP/2 client connection (1 MiB), as its send queue
/// counts it.
const SEND_QUEUE_LIMIT: f64 = (1 << 20) as f64;

/// Sends a GET for each of `urls` on `sender` and reads each response body in a
/// task of its own. Each task returns the bytes read and whether the body failed.
fn h2_downloads(
    sender: &mut h2::client::SendRequest<bytes::Bytes>,
    urls: &[String],
) -> Vec<tokio::task::JoinHandle<(u64, bool)>> {
    urls.iter()
        .map(|url| {
            let request = http::Request::get(url.as_str()).body(()).unwrap();
            let (response, _) = sender.send_request(request, true).unwrap();
            tokio::spawn(async move {
                let response = response.await.unwrap();
                assert_eq!(response.status(), 200);
                h2_read_body(&mut response.into_body()).await
            })
        })
        .collect()
}

/// An HTTP/2 client with large windows that stops reading its socket makes swg
/// queue at most the send queue's limit for its connection, however many large
/// downloads it has open. Without the limit, hyper would buffer 256 KiB for each
/// stream, 5 MiB for these 20. Every byte still arrives once the client reads.
#[tokio::test]
async fn http2_send_queue_bounded_for_client_not_reading() {
    let (harness, port) = harness_with_h2_origin(30_000).await;
    let queued = || harness.metric("swg_proxy_client_send_queue_bytes", &[]);
    let (mut sender, reads) = gated_h2_connection(&harness, 1 << 30).await;
    reads.allow(64 * 1024);
    let body_len = 2u64 << 20;
    let urls: Vec<String> = (0..20)
        .map(|_| format!("https://origin.test:{port}/zeros?{body_len}"))
        .collect();
    let downloads = h2_downloads(&mut sender, &urls);

    // The queue fills while the client reads nothing, then stays at its limit.
    wait_until(Duration::from_secs(10), "send queue filled", || {
        queued() >= SEND_QUEUE_LIMIT / 2.0
    })
    .await;
    let mut largest: f64 = 0.0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        largest = largest.max(queued());
    }
    assert!(
        largest <= SEND_QUEUE_LIMIT,
        "{largest} bytes queued for one connection"
    );

    reads.open();
    for download in downloads {
        let (received, failed) = tokio::time::timeout(Duration::from_secs(30), download)
            .await
            .expect("download not finished within 30 s")
            .unwrap();
        assert_eq!((received, failed), (body_len, false));
    }
    wait_until(Duration::from_secs(5), "send queue empty", || {
        queued() == 0.0
    })
    .await;
}

/// Streams that a client resets take their queued data with them, which h2 drops
/// without a trace on the connection. The connection's send queue then counts it
/// again from zero, so later responses on the same connection are not held back.
#[tokio::test]
async fn http2_reset_streams_free_the_send_queue() {
    let (harness, port) = harness_with_h2_origin(30_000).await;
    let queued = || harness.metric("swg_proxy_client_send_queue_bytes", &[]);
    let (mut sender, reads) = gated_h2_connection(&harness, 1 << 30).await;
    reads.allow(64 * 1024);
    let url = format!("https://origin.test:{port}/zeros?{}", 4u64 << 20);
    let mut responses = Vec::new();
    for _ in 0..8 {
        let request = http::Request::get(url.as_str()).body(()).unwrap();
        responses.push(sender.send_request(request, true).unwrap().0);
    }
    wait_until(Duration::from_secs(10), "send queue filled", || {
        queued() >= SEND_QUEUE_LIMIT / 2.0
    })
    .await;
    // Dropping the response futures resets their streams (CANCEL).
    drop(responses);
    tokio::time::sleep(Duration::from_millis(300)).await;
    reads.open();

    let body_len = 3u64 << 20;
    let download = h2_downloads(
        &mut sender,
        &[format!("https://origin.test:{port}/zeros?{body_len}")],
    )
    .pop()
    .unwrap();
    let (received, failed) = tokio::time::timeout(Duration::from_secs(15), download)
        .await
        .expect("download after the resets not finished within 15 s")
        .unwrap();
    assert_eq!((received, failed), (body_len, false));
    wait_until(Duration::from_secs(5), "send queue empty", || {
        queued() == 0.0
    })
    .await;
}
