//! Protections against abusive clients: slow clients, connection floods, request
//! smuggling and HTTP/2 rapid reset.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use support::{curl, origin, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the peer closes or `limit` passes; returns what was read and whether
/// the peer closed.
async fn read_until_close(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
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

/// With both Transfer-Encoding and Content-Length, hyper follows RFC 9112 section
/// 6.3: the body is read as chunked, Content-Length is dropped and the connection
/// closes after the response, so bytes after the chunked body never become a request.
#[tokio::test]
async fn transfer_encoding_with_content_length_cannot_smuggle() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let origin = origin::start_http().await;
    let smuggled = format!(
        "POST /count HTTP/1.1\r\nHost: plain.test:{port}\r\nTransfer-Encoding: chunked\r\nContent-Length: 48\r\n\r\n\
         0\r\n\r\nGET /small HTTP/1.1\r\nHost: plain.test:{port}\r\n\r\n",
        port = origin.port()
    );
    let mut stream = TcpStream::connect(harness.http).await.unwrap();
    stream.write_all(smuggled.as_bytes()).await.unwrap();
    let (response, closed) = read_until_close(&mut stream, Duration::from_secs(3)).await;

    assert!(closed);
    assert_eq!(response.matches("HTTP/1.1 ").count(), 1, "{response}");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("\r\n\r\n0\n"), "{response}");
    assert!(!response.contains("hello from origin"), "{response}");
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
    let mut roots = rustls::RootCertStore::empty();
    roots.add(harness.leaves.ca.der.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(harness.tls).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("origin.test").unwrap(), tcp)
        .await
        .unwrap();
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
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
