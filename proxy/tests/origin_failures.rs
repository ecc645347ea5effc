//! How the proxy reports origins that fail after swg reached them, for plain
//! requests and WebSocket handshakes alike, self-signed origin certificates, and
//! client connections that close before the TLS ClientHello. Every origin is a
//! loopback listener run by the test.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use support::{curl, origin, Harness};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A self-signed certificate for `name` marked as a CA (`CA:TRUE`), as
/// `openssl req -x509` makes it.
fn self_signed_ca_leaf(name: &str) -> CertifiedKey {
    let mut params = CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let certificate = params.self_signed(&key).unwrap();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key_der).unwrap();
    CertifiedKey::new(
        vec![CertificateDer::from(certificate.der().to_vec())],
        signing_key,
    )
}

#[tokio::test]
async fn self_signed_ca_certificate_is_self_signed() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("selfca.test", "127.0.0.1")]);
    })
    .await;
    let address = origin::start_https(self_signed_ca_leaf("selfca.test"), &[b"http/1.1"]).await;
    let url = format!("https://selfca.test:{}/small", address.port());

    let result = curl(harness.explicit_args(), &url).await;
    assert_eq!(result.status, 502, "{}", result.stderr);
    assert_eq!(
        result.body,
        "swg-page: upstream-error certificate self_signed\n"
    );
}

/// Starts a plain-HTTP origin that reads a request head and answers every
/// connection with `response`, then closes it.
async fn start_raw_origin(response: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let response = Arc::new(response);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let response = Arc::clone(&response);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match tcp.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let _ = tcp.write_all(&response).await;
                let _ = tcp.shutdown().await;
                // Keep reading until the proxy closes, so that no reset cuts off
                // the response.
                while matches!(tcp.read(&mut buffer).await, Ok(read) if read > 0) {}
            });
        }
    });
    port
}

/// Starts an HTTPS origin that speaks only HTTP/2, presents `certificate` with
/// `key`, and resets every stream with REFUSED_STREAM.
async fn start_always_refusing_h2(
    certificate: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut connection) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((_, mut respond))) = connection.accept().await {
                    respond.send_reset(h2::Reason::REFUSED_STREAM);
                }
            });
        }
    });
    port
}

/// A leaf for `name` issued by the harness's origin CA, with its private key.
fn origin_leaf(harness: &Harness, name: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let (certificate, key) = harness.origin_ca.leaf_pem(&[name]);
    (
        CertificateDer::from_pem_slice(certificate.as_bytes()).unwrap(),
        PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
    )
}

#[tokio::test]
async fn invalid_origin_responses_get_invalid_response_page() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("refusing.test", "127.0.0.1")]);
    })
    .await;

    let mut many_headers = b"HTTP/1.1 200 OK\r\n".to_vec();
    for index in 0..5000 {
        many_headers.extend_from_slice(format!("x-h{index}: v\r\n").as_bytes());
    }
    many_headers.extend_from_slice(b"content-length: 0\r\n\r\n");
    let mut large_head = b"HTTP/1.1 200 OK\r\nx-large: ".to_vec();
    large_head.extend(std::iter::repeat_n(b'a', 200_000));
    large_head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not HTTP at all\r\n\r\n".to_vec()),
        ("large head", large_head),
        ("5000 headers", many_headers),
        (
            "conflicting Content-Length",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 7\r\n\r\nhello".to_vec(),
        ),
        ("closed without response", Vec::new()),
    ];
    for (case, response) in cases {
        let port = start_raw_origin(response).await;
        let result = curl(
            harness.explicit_args(),
            &format!("http://127.0.0.1:{port}/"),
        )
        .await;
        assert_eq!(result.status, 502, "{case}: {}", result.stderr);
        assert_eq!(
            result.body, "swg-page: upstream-error invalid_response invalid_response\n",
            "{case}"
        );
    }

    // An HTTP/2 origin that refuses the request's stream on every attempt.
    let (certificate, key) = origin_leaf(&harness, "refusing.test");
    let port = start_always_refusing_h2(certificate, key).await;
    let result = curl(
        harness.explicit_args(),
        &format!("https://refusing.test:{port}/"),
    )
    .await;
    assert_eq!(result.status, 502, "{}", result.stderr);
    assert_eq!(
        result.body,
        "swg-page: upstream-error invalid_response invalid_response\n"
    );

    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "invalid_response")]
        ),
        6.0
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "unreachable")]
        ),
        0.0
    );
}

#[tokio::test]
async fn connect_failure_keeps_unreachable_page() {
    let harness = Harness::start(|_| {}).await;
    // A port with no listener: bound, then closed.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let result = curl(
        harness.explicit_args(),
        &format!("http://127.0.0.1:{port}/"),
    )
    .await;
    assert_eq!(result.status, 502, "{}", result.stderr);
    assert_eq!(
        result.body,
        "swg-page: upstream-error unreachable unreachable\n"
    );
}

#[tokio::test]
async fn unsolicited_switching_protocols_gets_502() {
    let harness = Harness::start(|_| {}).await;
    let port = start_raw_origin(
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: evil\r\n\r\nraw bytes after the switch"
            .to_vec(),
    )
    .await;
    let result = curl(
        harness.explicit_args(),
        &format!("http://127.0.0.1:{port}/"),
    )
    .await;
    assert_eq!(result.status, 502, "{}", result.stderr);
    assert_eq!(
        result.body,
        "swg-page: upstream-error invalid_response invalid_response\n"
    );
}

#[tokio::test]
async fn connection_closed_before_hello_counted_apart() {
    let harness = Harness::start(|_| {}).await;

    // What a load balancer's health check does: connect, then close.
    for _ in 0..3 {
        let tcp = TcpStream::connect(harness.tls).await.unwrap();
        drop(tcp);
    }
    // A client that sends something other than TLS.
    let mut tcp = TcpStream::connect(harness.tls).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tcp.read_to_end(&mut rest).await;

    let metric = |reason: &str| {
        harness.metric(
            "swg_proxy_tls_handshake_failures_total",
            &[("reason", reason)],
        )
    };
    for _ in 0..50 {
        if metric("closed_without_data") + metric("client_hello") >= 4.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(metric("closed_without_data"), 3.0);
    assert_eq!(metric("client_hello"), 1.0);
}

/// The response to a WebSocket handshake, as the client read it.
struct HandshakeResult {
    status_line: String,
    body: String,
}

/// Sends a WebSocket handshake for `target` with `Host: host` on `stream`, with
/// `extra_headers` (each ending in CRLF) added, and reads the response head and
/// its `Content-Length` body. Fails the test unless the response is complete
/// within 10 s.
async fn websocket_handshake<S>(
    stream: &mut S,
    target: &str,
    host: &str,
    extra_headers: &str,
) -> HandshakeResult
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra_headers}Upgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let read = async {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let length = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().unwrap())
            })
            .unwrap_or(0);
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).await.unwrap();
        HandshakeResult {
            status_line: head.lines().next().unwrap_or("").to_owned(),
            body: String::from_utf8(body).unwrap(),
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .expect("no complete response to the WebSocket handshake within 10 s")
}

/// Sends a WebSocket handshake for `http://127.0.0.1:{port}/ws` through the
/// explicit proxy in absolute form.
async fn explicit_websocket_handshake(harness: &Harness, port: u16) -> HandshakeResult {
    let mut tcp = TcpStream::connect(harness.explicit).await.unwrap();
    let authorization = format!("Proxy-Authorization: Bearer {}\r\n", support::GOOD_TOKEN);
    websocket_handshake(
        &mut tcp,
        &format!("http://127.0.0.1:{port}/ws"),
        &format!("127.0.0.1:{port}"),
        &authorization,
    )
    .await
}

/// Asserts that a WebSocket handshake and a plain GET through the explicit proxy
/// to the origin on `port` both get `status` and the page `page`.
async fn assert_same_page(harness: &Harness, case: &str, port: u16, status: u16, page: &str) {
    let websocket = explicit_websocket_handshake(harness, port).await;
    assert_eq!(
        websocket.status_line.split(' ').nth(1),
        Some(status.to_string().as_str()),
        "{case}: WebSocket handshake got {}",
        websocket.status_line
    );
    assert_eq!(websocket.body, page, "{case}: WebSocket handshake");

    let plain = curl(
        harness.explicit_args(),
        &format!("http://127.0.0.1:{port}/ws"),
    )
    .await;
    assert_eq!(plain.status, status, "{case}: {}", plain.stderr);
    assert_eq!(plain.body, page, "{case}: plain GET");
}

const INVALID_RESPONSE_PAGE: &str = "swg-page: upstream-error invalid_response invalid_response\n";

#[tokio::test]
async fn websocket_bad_heads_get_invalid_response() {
    let harness = Harness::start(|config| config.limits.max_headers = 50).await;

    // Over `limits.max_header_bytes` (64 KiB by default) but within the default
    // read buffer limit of hyper 1.13, 8192 + 4096 * 100 bytes.
    let mut large_head = b"HTTP/1.1 200 OK\r\nx-large: ".to_vec();
    large_head.extend(std::iter::repeat_n(b'a', 200_000));
    large_head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let mut large_switch =
        b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\nx-large: "
            .to_vec();
    large_switch.extend(std::iter::repeat_n(b'a', 200_000));
    large_switch.extend_from_slice(b"\r\n\r\n");
    // Over `limits.max_headers` (50 here) but within the default of hyper 1.13,
    // 100 headers.
    let mut many_headers = b"HTTP/1.1 200 OK\r\n".to_vec();
    for index in 0..80 {
        many_headers.extend_from_slice(format!("x-h{index}: v\r\n").as_bytes());
    }
    many_headers.extend_from_slice(b"content-length: 0\r\n\r\n");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("head over max_header_bytes", large_head),
        ("101 head over max_header_bytes", large_switch),
        ("80 headers", many_headers),
        (
            "101 to another protocol",
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: h2c\r\n\r\nraw bytes"
                .to_vec(),
        ),
        (
            "101 without Upgrade",
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n\r\nraw bytes".to_vec(),
        ),
    ];
    let count = cases.len();
    for (case, response) in cases {
        let port = start_raw_origin(response).await;
        assert_same_page(&harness, case, port, 502, INVALID_RESPONSE_PAGE).await;
    }

    // Each case failed twice: the WebSocket handshake and the plain GET.
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "invalid_response")]
        ),
        (2 * count) as f64
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "unreachable")]
        ),
        0.0
    );
}

#[tokio::test]
async fn websocket_failed_handshakes_classified_like_requests() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("wrongname.test", "127.0.0.1")]);
        config.timeouts.first_byte_ms = 500;
    })
    .await;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"this is not HTTP at all\r\n\r\n".to_vec()),
        ("closed after the request", Vec::new()),
    ];
    for (case, response) in cases {
        let port = start_raw_origin(response).await;
        assert_same_page(&harness, case, port, 502, INVALID_RESPONSE_PAGE).await;
    }

    // An origin that accepts and reads but never responds.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut open_connections = Vec::new();
        while let Ok((tcp, _)) = silent.accept().await {
            open_connections.push(tcp);
        }
    });
    assert_same_page(
        &harness,
        "silent",
        silent_port,
        504,
        "swg-page: upstream-error timed_out timed_out\n",
    )
    .await;

    // An HTTPS origin whose certificate names another host, through the TLS landing.
    let certificate = harness.origin_ca.valid_leaf(&["other.test"]);
    let port = origin::start_https(certificate, &[b"http/1.1"])
        .await
        .port();
    let mut tls = harness.landing_tls("wrongname.test", b"http/1.1").await;
    let websocket =
        websocket_handshake(&mut tls, "/ws", &format!("wrongname.test:{port}"), "").await;
    let wrong_name_page = "swg-page: upstream-error certificate wrong_name\n";
    assert!(
        websocket.status_line.starts_with("HTTP/1.1 502 "),
        "{}",
        websocket.status_line
    );
    assert_eq!(websocket.body, wrong_name_page);
    let plain = curl(
        harness.landing_args("wrongname.test", port),
        &format!("https://wrongname.test:{port}/ws"),
    )
    .await;
    assert_eq!(plain.status, 502, "{}", plain.stderr);
    assert_eq!(plain.body, wrong_name_page);

    let metric = |kind: &str| harness.metric("swg_proxy_upstream_errors_total", &[("kind", kind)]);
    assert_eq!(metric("invalid_response"), 4.0);
    assert_eq!(metric("timed_out"), 2.0);
    assert_eq!(metric("certificate"), 2.0);
    assert_eq!(metric("unreachable"), 0.0);
}
