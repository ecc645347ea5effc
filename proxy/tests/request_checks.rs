//! Checks on the request side with raw sockets, curl and h2 as clients: user
//! information never reaches the logs, WebSocket handshakes with a body, spellings
//! of the reserved `/.swg/` prefix, the identity flow on the plain-HTTP landing,
//! and `OPTIONS *`.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Uri};
use support::{args, curl, curl_full, origin, Harness, AUTH_HOST, GOOD_TOKEN};
use swg_proxy::boundary::Action;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SITE: &str = "site.test";
const PASSWORD: &str = "RAWPASSWORD";

/// Log lines of every test in this file, at every level.
fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

async fn harness() -> Harness {
    logs();
    Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[(SITE, "127.0.0.1")]);
    })
    .await
}

/// Writes `request` to `address` and returns everything read until the peer
/// closes or 15 s pass.
async fn exchange_raw(address: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut received)).await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Returns the status code of a raw HTTP/1.1 response.
fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// A plain-HTTP/1.1 origin that records the head of each request and answers
/// `200 ok` with `Connection: close`.
async fn recording_origin() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&heads);
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                continue;
            };
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tcp.read_exact(&mut byte).await.is_err() {
                        return;
                    }
                    head.push(byte[0]);
                }
                recorded
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).into_owned());
                let _ = tcp
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    (port, heads)
}

/// An HTTP/2 connection to the plain-HTTP landing with prior knowledge.
async fn h2_plain(harness: &Harness) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(harness.http).await.unwrap();
    let (sender, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

/// Sends `request` without a body and returns the response's status.
async fn h2_status(sender: &mut h2::client::SendRequest<Bytes>, request: Request<()>) -> u16 {
    let (response, _) = sender.send_request(request, true).unwrap();
    response.await.unwrap().status().as_u16()
}

/// A URI with `authority` and `path_and_query` as given, which `Uri::from_str`
/// would not build for the asterisk-form.
fn uri_of(scheme: Scheme, authority: &str, path_and_query: &str) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(scheme);
    parts.authority = Some(Authority::try_from(authority).unwrap());
    parts.path_and_query = Some(PathAndQuery::try_from(path_and_query).unwrap());
    Uri::from_parts(parts).unwrap()
}

#[tokio::test]
async fn user_information_never_logged() {
    let harness = harness().await;
    let (port, heads) = recording_origin().await;

    let explicit = format!(
        "GET http://user:{PASSWORD}@{SITE}:{port}/ HTTP/1.1\r\nHost: {SITE}:{port}\r\n\
         Proxy-Authorization: Bearer {GOOD_TOKEN}\r\nConnection: close\r\n\r\n"
    );
    let response = exchange_raw(harness.explicit, explicit.as_bytes()).await;
    assert_eq!(status_of(&response), 400, "{response}");
    let explicit_response = response;

    for host in [
        format!("user:{PASSWORD}@{SITE}:{port}"),
        format!("user:{PASSWORD}@{SITE}"),
    ] {
        let landing = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let response = exchange_raw(harness.http, landing.as_bytes()).await;
        assert_eq!(status_of(&response), 400, "{host}: {response}");
    }

    let mut sender = h2_plain(&harness).await;
    let request = Request::get(uri_of(
        Scheme::HTTP,
        &format!("user:{PASSWORD}@{SITE}:{port}"),
        "/",
    ))
    .body(())
    .unwrap();
    assert_eq!(h2_status(&mut sender, request).await, 400);

    assert!(
        heads.lock().unwrap().is_empty(),
        "a request reached the origin"
    );
    assert!(harness.events.0.lock().unwrap().is_empty());
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "bad_request")]),
        4.0
    );
    let logged = log_text();
    assert!(!logged.contains(PASSWORD), "{logged}");
    assert!(
        logged.contains("user information in the request's authority"),
        "the rejections were not logged: {logged}"
    );
    assert!(
        explicit_response.ends_with(
            "\r\n\r\nbad request: user information (user:password@) is not accepted in a URL or Host header\n"
        ),
        "{explicit_response}"
    );
}

#[tokio::test]
async fn websocket_handshake_with_body_rejected() {
    let harness = harness().await;
    let port = origin::start_http().await.port();
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: {SITE}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    let bodies = [
        "Content-Length: 5\r\n\r\nhello".to_owned(),
        "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_owned(),
    ];

    for body in &bodies {
        let request = format!("{handshake}{body}");
        let started = std::time::Instant::now();
        let response = exchange_raw(harness.http, request.as_bytes()).await;
        assert_eq!(status_of(&response), 400, "{body:?}: {response}");
        assert!(
            response.ends_with("bad request: a WebSocket handshake has no body\n"),
            "{response}"
        );
        assert!(
            response
                .to_ascii_lowercase()
                .contains("connection: close\r\n"),
            "{response}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{:?}",
            started.elapsed()
        );
    }

    let events = harness.events.0.lock().unwrap().clone();
    assert_eq!(events.len(), 2);
    for event in events {
        assert_eq!(event.url, format!("http://{SITE}:{port}/ws"));
        assert_eq!(event.action, Action::Block);
        let decision = event.decision.unwrap();
        assert_eq!(
            decision.reason,
            "bad request: WebSocket handshake with a body"
        );
        assert_eq!(decision.rule, None);
        assert!(event.identity.is_some());
    }
    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "http"), ("action", "bad_request")]
        ),
        2.0
    );
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "block")]),
        0.0
    );
}

#[tokio::test]
async fn reserved_path_spellings_never_forwarded() {
    let harness = harness().await;
    let (port, heads) = recording_origin().await;

    for path in [
        "/.swg/x",
        "/%2eswg/x",
        "/%2Eswg/x",
        "//.swg/x",
        "/a/../.swg/x",
        "/./.swg/x",
        "/.SWG/x",
        "/%2eswg/auth?ticket=x",
        "/a/..%2f.swg/x",
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {SITE}:{port}\r\nConnection: close\r\n\r\n");
        let response = exchange_raw(harness.http, request.as_bytes()).await;
        assert_eq!(status_of(&response), 404, "{path}: {response}");
        assert!(response.ends_with("\r\nnot found\n"), "{path}: {response}");
    }
    assert!(
        heads.lock().unwrap().is_empty(),
        "forwarded: {:?}",
        heads.lock().unwrap()
    );

    // Paths that only look alike still reach the origin.
    for path in ["/swg/x", "/.swgx/y", "/%252eswg/x"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {SITE}:{port}\r\nConnection: close\r\n\r\n");
        let response = exchange_raw(harness.http, request.as_bytes()).await;
        assert_eq!(status_of(&response), 200, "{path}: {response}");
    }
    let forwarded: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .map(|head| head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(
        forwarded,
        [
            "GET /swg/x HTTP/1.1",
            "GET /.swgx/y HTTP/1.1",
            "GET /%252eswg/x HTTP/1.1"
        ]
    );
}

/// curl arguments that send `SITE:port` and the auth host on that port to the
/// plain-HTTP landing, as DNS steering would.
fn plain_landing_args(harness: &Harness, port: u16, extra: &[&str]) -> Vec<String> {
    let landing = harness.http.port();
    let mut list = args(&[
        "--connect-to",
        &format!("{SITE}:{port}:127.0.0.1:{landing}"),
        "--connect-to",
        &format!("{AUTH_HOST}:{port}:127.0.0.1:{landing}"),
        "-H",
        "Accept: text/html",
        "-H",
        "Sec-Fetch-Mode: navigate",
        "-H",
        "Sec-Fetch-Dest: document",
    ]);
    list.extend(args(extra));
    list
}

#[tokio::test]
async fn plain_http_navigation_gets_unidentified_page() {
    let harness = harness().await;
    *harness.identify.hints_enabled.lock().unwrap() = false;
    let port = origin::start_http().await.port();
    let url = format!("http://{SITE}:{port}/small");

    // curl follows every redirect and keeps cookies, as a browser would over
    // plain HTTP, and ends on a page that names the real problem.
    let cookie_jar = harness.dir.path().join("cookies.txt");
    let jar = cookie_jar.display().to_string();
    for attempt in 0..2 {
        let followed = curl(
            plain_landing_args(&harness, port, &["-L", "-b", &jar, "-c", &jar]),
            &url,
        )
        .await;
        assert_eq!(
            followed.status, 403,
            "attempt {attempt}: {}",
            followed.stderr
        );
        assert_eq!(
            followed.body, "swg-page: unidentified\n",
            "attempt {attempt}"
        );
    }

    let direct = curl_full(plain_landing_args(&harness, port, &[]), &url).await;
    assert_eq!(direct.status, 403);
    assert_eq!(direct.header("location"), None);
    assert_eq!(direct.body, "swg-page: unidentified\n");

    let events = harness.events.0.lock().unwrap().clone();
    assert_eq!(events.len(), 3);
    for event in events {
        assert_eq!(event.url, url);
        assert_eq!(event.action, Action::Unidentified);
    }
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("action", "redirect")]),
        0.0
    );
}

#[tokio::test]
async fn plain_http_hint_leaves_registration_to_https() {
    let harness = harness().await;
    let port = origin::start_http().await.port();

    let plain = curl_full(
        plain_landing_args(&harness, port, &[]),
        &format!("http://{SITE}:{port}/small"),
    )
    .await;
    assert_eq!(plain.status, 200, "{}", plain.body);
    assert_eq!(plain.body, "hello from origin\n");
    assert_eq!(plain.header("location"), None);

    // The device's first HTTPS navigation still sets its gateway cookie.
    let tls_port = 8443;
    let mut secure_args = harness.landing_args(SITE, tls_port);
    secure_args.extend(args(&[
        "-H",
        "Accept: text/html",
        "-H",
        "Sec-Fetch-Mode: navigate",
    ]));
    let secure = curl_full(secure_args, &format!("https://{SITE}:{tls_port}/small")).await;
    assert_eq!(secure.status, 302);
    let location = secure.header("location").unwrap();
    assert!(
        location.starts_with(&format!(
            "https://{AUTH_HOST}:{tls_port}/.swg/register?ticket="
        )),
        "{location}"
    );
}

/// An HTTPS origin that speaks only HTTP/2 and records the method and
/// `:path` of each request, answering `200`.
async fn recording_h2_origin(harness: &Harness) -> (u16, Arc<Mutex<Vec<String>>>) {
    #[derive(Debug)]
    struct Fixed(Arc<rustls::sign::CertifiedKey>);
    impl rustls::server::ResolvesServerCert for Fixed {
        fn resolve(
            &self,
            _hello: rustls::server::ClientHello<'_>,
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    let certificate = harness.origin_ca.valid_leaf(&[SITE]);
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(Fixed(Arc::new(certificate))));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let recorded = Arc::clone(&recorded);
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut connection) = h2::server::handshake(tls).await else {
                    return;
                };
                while let Some(Ok((request, mut respond))) = connection.accept().await {
                    let path = request
                        .uri()
                        .path_and_query()
                        .map(|path| path.as_str().to_owned())
                        .unwrap_or_default();
                    recorded
                        .lock()
                        .unwrap()
                        .push(format!("{} {path}", request.method()));
                    let response = http::Response::new(());
                    let _ = respond.send_response(response, true);
                }
            });
        }
    });
    (port, seen)
}

#[tokio::test]
async fn options_asterisk_forwarded_in_asterisk_form() {
    let harness = harness().await;
    let (port, heads) = recording_origin().await;

    // HTTP/1.1 client, HTTP/1.1 origin.
    let request = format!("OPTIONS * HTTP/1.1\r\nHost: {SITE}:{port}\r\nConnection: close\r\n\r\n");
    let response = exchange_raw(harness.http, request.as_bytes()).await;
    assert_eq!(status_of(&response), 200, "{response}");

    // HTTP/2 client, HTTP/1.1 origin.
    let mut sender = h2_plain(&harness).await;
    let options = Request::builder()
        .method(Method::OPTIONS)
        .uri(uri_of(Scheme::HTTP, &format!("{SITE}:{port}"), "*"))
        .body(())
        .unwrap();
    assert_eq!(h2_status(&mut sender, options).await, 200);

    let request_lines: Vec<String> = heads
        .lock()
        .unwrap()
        .iter()
        .map(|head| head.lines().next().unwrap().to_owned())
        .collect();
    assert_eq!(request_lines, ["OPTIONS * HTTP/1.1", "OPTIONS * HTTP/1.1"]);
    for head in heads.lock().unwrap().iter() {
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("\r\nhost: {SITE}:{port}\r\n")),
            "{head}"
        );
    }

    // HTTP/2 client, HTTP/2 origin.
    let (h2_port, paths) = recording_h2_origin(&harness).await;
    let tls = harness.landing_tls(SITE, b"h2").await;
    let (mut secure, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let options = Request::builder()
        .method(Method::OPTIONS)
        .uri(uri_of(Scheme::HTTPS, &format!("{SITE}:{h2_port}"), "*"))
        .body(())
        .unwrap();
    assert_eq!(h2_status(&mut secure, options).await, 200);
    assert_eq!(paths.lock().unwrap().as_slice(), ["OPTIONS *"]);

    // Every other method with the asterisk-form is rejected.
    let get = format!("GET * HTTP/1.1\r\nHost: {SITE}:{port}\r\nConnection: close\r\n\r\n");
    let response = exchange_raw(harness.http, get.as_bytes()).await;
    assert_eq!(status_of(&response), 400, "{response}");
    assert_eq!(heads.lock().unwrap().len(), 2);

    let urls: Vec<(String, Action)> = harness.events.actions();
    assert_eq!(
        urls,
        [
            (format!("http://{SITE}:{port}"), Action::Allow),
            (format!("http://{SITE}:{port}"), Action::Allow),
            (format!("https://{SITE}:{h2_port}"), Action::Allow),
        ]
    );
}
