//! The reference agent against a real resolver and a stand-in console: enrolment,
//! settings, DoH with the context option, the local proxy and bypassed apps, token
//! recovery, and the proxy's limits and deadlines.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_proto::rr::{RData, RecordType};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use swg_dns::agent::limits::ProxyLimits;
use swg_dns::agent::proxy::LocalListener;
use swg_dns::agent::{Agent, AgentError, AgentOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsAcceptor;

const AUTH_KEY: &str = "auth-key-1";

/// What the stand-in console hands out, and what it was asked.
struct ConsoleScript {
    /// The DoH URL handed to the agent.
    doh_url: String,
    /// Tokens of the next enrolments with their lifetime in seconds; once they are
    /// used up, each enrolment gets [`GOOD_TOKEN`] for a day.
    enrolments: Mutex<VecDeque<(&'static str, u64)>>,
    /// Number of enrolments.
    enrolled: AtomicUsize,
    /// Number of renewal requests, refused or not.
    renewals: AtomicUsize,
}

impl ConsoleScript {
    fn new(doh_url: String) -> Arc<Self> {
        Arc::new(ConsoleScript {
            doh_url,
            enrolments: Mutex::new(VecDeque::new()),
            enrolled: AtomicUsize::new(0),
            renewals: AtomicUsize::new(0),
        })
    }

    fn token_json(&self, token: &str, lifetime_secs: u64) -> String {
        format!(
            r#"{{"token":"{token}","tokenType":"Bearer","expiresAt":{},"endpoints":{{"dohUrl":"{}","proxy":"127.0.0.1:3128","consoleUrl":"https://127.0.0.1"}}}}"#,
            swg_identity::unix_now() + lifetime_secs,
            self.doh_url
        )
    }
}

/// Starts a console that knows one authentication key and serves the agent API. It
/// accepts only [`GOOD_TOKEN`], for renewals as well, like the real console, which
/// refuses to renew an expired token.
async fn start_console(certificate: &TestCertificate, script: Arc<ConsoleScript>) -> SocketAddr {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(certificate.resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();

    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let script = script.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request| console_api(request, script.clone()));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

async fn console_api(
    request: Request<Incoming>,
    script: Arc<ConsoleScript>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let authorized = bearer.as_deref() == Some(&format!("Bearer {GOOD_TOKEN}"));
    let (status, text) = match path.as_str() {
        "/api/agent/enroll" => {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if request["authenticationKey"] == AUTH_KEY && request["deviceId"] == "d1" {
                script.enrolled.fetch_add(1, Ordering::SeqCst);
                let next = script.enrolments.lock().unwrap().pop_front();
                let (token, lifetime) = next.unwrap_or((GOOD_TOKEN, 86_400));
                (200, script.token_json(token, lifetime))
            } else {
                (401, r#"{"error":"unknown authentication key"}"#.to_owned())
            }
        }
        "/api/agent/renew" => {
            script.renewals.fetch_add(1, Ordering::SeqCst);
            if authorized {
                (200, script.token_json(GOOD_TOKEN, 86_400))
            } else {
                (401, String::new())
            }
        }
        "/api/agent/settings" if authorized => (
            200,
            format!(r#"{{"bypassedApplications":["{BYPASSED_APP}"]}}"#),
        ),
        "/api/agent/activity" if authorized => (200, r#"{"events":[]}"#.to_owned()),
        _ => (401, String::new()),
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    Ok(response)
}

struct Setup {
    harness: Harness,
    options: AgentOptions,
    script: Arc<ConsoleScript>,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    setup_with(Harness::start().await, None).await
}

/// Starts the stand-in console in front of `harness`; its DoH URL is `doh_url`, or
/// the harness's DoH listener.
async fn setup_with(harness: Harness, doh_url: Option<String>) -> Setup {
    let certificate = TestCertificate {
        der: harness.certificate.clone(),
        resolver: harness.certificate_resolver.clone(),
    };
    let doh_url = doh_url.unwrap_or_else(|| {
        format!(
            "https://127.0.0.1:{}/dns-query",
            harness.server.doh_addr().unwrap().port()
        )
    });
    let script = ConsoleScript::new(doh_url);
    let console = start_console(&certificate, script.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, pem(&certificate.der)).unwrap();
    let options = AgentOptions {
        server: format!("https://127.0.0.1:{}", console.port()),
        auth_key: AUTH_KEY.to_owned(),
        user: "u1".to_owned(),
        device: "d1".to_owned(),
        ca_file: Some(ca_file),
        // Bypassed apps resolve through the test upstream, never the machine's resolver.
        system_resolvers: vec![swg_dns::upstream::UpstreamAddr::Udp(harness.upstream.addr)],
        limits: ProxyLimits::default(),
    };
    Setup {
        harness,
        options,
        script,
        _dir: dir,
    }
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<String> = encoded
        .as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn addresses(message: &hickory_proto::op::Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn agent_enrols_and_queries_through_doh_as_app() {
    let setup = setup().await;
    let agent = Agent::enroll(&setup.options).await.unwrap();
    let response = agent
        .query("blocked.test", RecordType::A, Some(PLAIN_APP))
        .await
        .unwrap();
    assert_eq!(
        addresses(&response),
        vec!["0.0.0.0".parse::<IpAddr>().unwrap()]
    );
    let events = setup.harness.recorded.events_for("blocked.test");
    assert_eq!(events[0].app.as_deref(), Some(PLAIN_APP));
    assert_eq!(events[0].client.device.as_deref(), Some("d1"));
    assert!(agent.activity().await.unwrap()["events"].is_array());
}

#[tokio::test]
async fn agent_with_wrong_key_is_rejected() {
    let mut setup = setup().await;
    setup.options.auth_key = "wrong".to_owned();
    let error = Agent::enroll(&setup.options).await.err();
    // The console's reason reaches the user.
    assert!(
        matches!(&error, Some(AgentError::Unauthorized(reason)) if reason == "unknown authentication key"),
        "{error:?}"
    );
}

#[tokio::test]
async fn local_proxy_tags_queries_with_listener_app() {
    let setup = setup().await;
    let agent = Agent::enroll(&setup.options).await.unwrap();
    let browser_addr = free_port().await;
    let bypassed_addr = free_port().await;
    let listeners = vec![
        LocalListener::bind(browser_addr, Some(SAFARI.to_owned()))
            .await
            .unwrap(),
        LocalListener::bind(bypassed_addr, Some(BYPASSED_APP.to_owned()))
            .await
            .unwrap(),
    ];
    tokio::spawn(agent.run(listeners));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let question = query("allowed.test", RecordType::A, None);
    let steered = udp_exchange(browser_addr, "127.0.0.1:0", &question)
        .await
        .unwrap();
    assert_eq!(
        addresses(&steered),
        vec!["127.0.0.1".parse::<IpAddr>().unwrap()]
    );
    assert!(steered.edns.is_some());
    assert_eq!(
        setup
            .harness
            .upstream
            .stats
            .with_context_option
            .load(Ordering::SeqCst),
        0
    );

    let mut classic = query("shop.test", RecordType::A, None);
    classic.edns = None;
    let plain = udp_exchange(browser_addr, "127.0.0.1:0", &classic)
        .await
        .unwrap();
    assert!(plain.edns.is_none());
    let events = setup.harness.recorded.events_for("shop.test");
    assert_eq!(events[0].app.as_deref(), Some(SAFARI));

    // The bypassed app's listener resolves through the system resolver, never swg.
    let before = setup.harness.recorded.events.lock().unwrap().len();
    let bypassed = udp_exchange(
        bypassed_addr,
        "127.0.0.1:0",
        &query("blocked.test", RecordType::A, None),
    )
    .await
    .unwrap();
    assert_eq!(
        addresses(&bypassed),
        vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(setup.harness.recorded.events.lock().unwrap().len(), before);
}

/// Finds a loopback port free for both UDP and TCP (the agent binds both).
async fn free_port() -> SocketAddr {
    for _ in 0..20 {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        if TcpListener::bind(addr).await.is_ok() {
            return addr;
        }
    }
    panic!("no free UDP and TCP port pair on loopback");
}

/// Sends `question` to `server` over UDP and waits at most `wait` for the response.
async fn udp_exchange_within(
    server: SocketAddr,
    question: &hickory_proto::op::Message,
    wait: Duration,
) -> Option<hickory_proto::op::Message> {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&question.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 65_535];
    let (len, _) = tokio::time::timeout(wait, socket.recv_from(&mut buffer))
        .await
        .ok()?
        .ok()?;
    Some(hickory_proto::op::Message::from_vec(&buffer[..len]).unwrap())
}

/// Enrols, binds one listener per bundle id and runs the agent in the background;
/// returns the listeners' addresses.
async fn run_agent(setup: &Setup, apps: &[&str]) -> Vec<SocketAddr> {
    let agent = Agent::enroll(&setup.options).await.unwrap();
    let mut addresses = Vec::new();
    let mut listeners = Vec::new();
    for app in apps {
        let addr = free_port().await;
        listeners.push(
            LocalListener::bind(addr, Some((*app).to_owned()))
                .await
                .unwrap(),
        );
        addresses.push(addr);
    }
    tokio::spawn(agent.run(listeners));
    tokio::time::sleep(Duration::from_millis(300)).await;
    addresses
}

/// Returns whether the peer closed `stream` (end of stream or reset) within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(wait, stream.read(&mut byte)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// A bypass-list entry matches a listener's bundle id in any ASCII case, as the
/// policy compares bundle ids.
#[tokio::test]
async fn bypass_list_ignores_ascii_case() {
    let setup = setup().await;
    let listeners = run_agent(&setup, &[&BYPASSED_APP.to_ascii_uppercase()]).await;

    let before = setup.harness.recorded.events.lock().unwrap().len();
    let response = udp_exchange(
        listeners[0],
        "127.0.0.1:0",
        &query("blocked.test", RecordType::A, None),
    )
    .await
    .unwrap();
    // swg would block the name; the system resolver answers it.
    assert_eq!(
        addresses(&response),
        vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
    assert_eq!(setup.harness.recorded.events.lock().unwrap().len(), before);
}

/// An agent whose token the resolver rejects (expired during a suspend, while the
/// agent's timer still sees it valid) enrols again with its authentication key, and
/// its apps get answers again.
#[tokio::test]
async fn rejected_token_leads_to_new_enrolment() {
    let setup = setup().await;
    setup
        .script
        .enrolments
        .lock()
        .unwrap()
        .push_back((EXPIRED_TOKEN, 3_600));
    let listeners = run_agent(&setup, &[PLAIN_APP]).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answer = Vec::new();
    while answer.is_empty() && Instant::now() < deadline {
        let question = query("allowed.test", RecordType::A, None);
        if let Some(response) = udp_exchange(listeners[0], "127.0.0.1:0", &question).await {
            answer = addresses(&response);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(answer, vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    assert_eq!(setup.script.enrolled.load(Ordering::SeqCst), 2);
    assert_eq!(setup.script.renewals.load(Ordering::SeqCst), 1);
}

/// An agent whose token expires, with no query to notice it, enrols again when it is
/// due for renewal.
#[tokio::test]
async fn expired_token_leads_to_new_enrolment() {
    let setup = setup().await;
    setup
        .script
        .enrolments
        .lock()
        .unwrap()
        .push_back((EXPIRED_TOKEN, 2));
    let _listeners = run_agent(&setup, &[PLAIN_APP]).await;

    let deadline = Instant::now() + Duration::from_secs(15);
    while setup.script.enrolled.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(setup.script.enrolled.load(Ordering::SeqCst), 2);
}

/// A DoH endpoint that accepts TCP connections but never completes the TLS
/// handshake costs a query its deadline: `Agent::query` returns an error, and the
/// local proxy answers SERVFAIL.
#[tokio::test]
async fn stalled_doh_handshake_times_out() {
    let stalled = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doh_url = format!(
        "https://127.0.0.1:{}/dns-query",
        stalled.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = stalled.accept().await {
            held.push(stream);
        }
    });
    let setup = setup_with(Harness::start().await, Some(doh_url)).await;
    let agent = Agent::enroll(&setup.options).await.unwrap();

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        agent.query("allowed.test", RecordType::A, Some(PLAIN_APP)),
    )
    .await;
    let elapsed = started.elapsed();
    let Ok(Err(error)) = outcome else {
        panic!("expected a timeout error within 30 s, got {outcome:?}");
    };
    assert!(error.to_string().contains("timed out"), "{error}");
    assert!(elapsed < Duration::from_secs(10), "{elapsed:?}");

    let listeners = run_agent(&setup, &[PLAIN_APP]).await;
    let started = Instant::now();
    let question = query("allowed.test", RecordType::A, None);
    let response = udp_exchange_within(listeners[0], &question, Duration::from_secs(30))
        .await
        .expect("a response within 30 s");
    assert_eq!(
        response.metadata.response_code,
        hickory_proto::op::ResponseCode::ServFail
    );
    assert!(started.elapsed() < Duration::from_secs(8), "{elapsed:?}");
}

/// Sends one query through the agent enrolled in `setup` and returns the text of the
/// TLS error it must fail with.
async fn doh_tls_error(setup: &Setup) -> String {
    let agent = Agent::enroll(&setup.options).await.unwrap();
    let outcome = agent
        .query("allowed.test", RecordType::A, Some(PLAIN_APP))
        .await;
    match outcome {
        Err(error @ AgentError::Tls(_)) => error.to_string(),
        other => panic!("expected a TLS error from the DoH endpoint, got {other:?}"),
    }
}

/// The agent receives the DoH URL from the console, so when swg's DoH listener
/// rejects the URL's host name, the message points to `[console] doh_url` on the
/// server instead of to --server.
#[tokio::test]
async fn doh_host_rejection_points_to_console_setting() {
    let harness = Harness::start().await;
    // The DoH listener serves only its doh_host and ends other handshakes.
    let doh_url = format!(
        "https://localhost:{}/dns-query",
        harness.server.doh_addr().unwrap().port()
    );
    let setup = setup_with(harness, Some(doh_url.clone())).await;

    let message = doh_tls_error(&setup).await;
    assert_eq!(
        message,
        format!(
            "TLS failed: the server ended the TLS handshake with the alert access_denied \
             because it rejected the host name localhost. swg's DoH listener serves only the \
             name in its `[dns] doh_host`, so set `[console] doh_url` on the server to use \
             that name, because the DoH URL {doh_url} comes from the console's configuration"
        )
    );
}

/// A DoH endpoint whose certificate names another host gets the same pointer to
/// `[console] doh_url`.
#[tokio::test]
async fn doh_certificate_name_points_to_console_setting() {
    let generated = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()]).unwrap();
    let certificate = generated.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![certificate.clone()], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let doh_url = format!(
        "https://127.0.0.1:{}/dns-query",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let _ = acceptor.accept(stream).await;
            });
        }
    });
    let setup = setup_with(Harness::start().await, Some(doh_url.clone())).await;
    // The agent trusts the certificate, so that only its name is wrong.
    let ca_file = setup.options.ca_file.clone().unwrap();
    let mut trusted = std::fs::read_to_string(&ca_file).unwrap();
    trusted.push_str(&pem(&certificate));
    std::fs::write(&ca_file, trusted).unwrap();

    let message = doh_tls_error(&setup).await;
    assert_eq!(
        message,
        format!(
            "TLS failed: the server's certificate is for other.test, not for 127.0.0.1, so \
             set `[console] doh_url` on the server to use the host name it was made for \
             (swg's `[dns] doh_host`, `localhost` by default), because the DoH URL {doh_url} \
             comes from the console's configuration"
        )
    );
}

/// Starts a UDP upstream that never answers names under `slow.test`, so that the
/// resolver waits its upstream timeout for each, and answers the rest like the
/// test upstream.
async fn start_stalling_upstream() -> SocketAddr {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let stats = Arc::new(support::upstream::UpstreamStats::default());
    tokio::spawn(async move {
        let mut buffer = vec![0u8; 65_535];
        loop {
            let Ok((len, peer)) = socket.recv_from(&mut buffer).await else {
                continue;
            };
            let packet = buffer[..len].to_vec();
            let Ok(message) = hickory_proto::op::Message::from_vec(&packet) else {
                continue;
            };
            let stalls = message
                .queries
                .first()
                .is_some_and(|question| question.name().to_ascii().ends_with(".slow.test."));
            if stalls {
                continue;
            }
            let (socket, stats) = (socket.clone(), stats.clone());
            tokio::spawn(async move {
                if let Some(response) = support::upstream::respond(&packet, &stats, 1_232).await {
                    let _ = socket.send_to(&response, peer).await;
                }
            });
        }
    });
    addr
}

/// A flood of slow queries on one listener leaves another listener answered, and
/// leaves no backlog behind: the flooded listener answers soon after it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flooded_listener_leaves_other_listener_answered() {
    let upstream = start_stalling_upstream().await;
    let harness = Harness::start_with(|config| {
        config.upstreams = vec![format!("udp://{upstream}")];
        config.upstream_timeout_ms = 1_000;
    })
    .await;
    let setup = setup_with(harness, None).await;
    let listeners = run_agent(&setup, &[PLAIN_APP, "com.example.other"]).await;
    let (flooded, other) = (listeners[0], listeners[1]);

    // About 2 000 queries a second for 3 s, each for a new name that costs the
    // resolver its 1 s upstream timeout.
    let flood = tokio::spawn(async move {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let started = Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < Duration::from_secs(3) {
            for _ in 0..20 {
                let question = query(&format!("q{sent}.slow.test"), RecordType::A, None);
                socket
                    .send_to(&question.to_vec().unwrap(), flooded)
                    .await
                    .unwrap();
                sent += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent
    });

    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let started = Instant::now();
        let question = query(&format!("other{round}.test"), RecordType::A, None);
        let response = udp_exchange_within(other, &question, Duration::from_secs(10))
            .await
            .unwrap_or_else(|| panic!("round {round}: no answer within 10 s"));
        assert_eq!(
            addresses(&response),
            vec!["192.0.2.10".parse::<IpAddr>().unwrap()],
            "round {round}"
        );
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(4),
            "round {round}: {elapsed:?}"
        );
    }
    let sent = flood.await.unwrap();
    assert!(sent > 1_000, "{sent}");

    let started = Instant::now();
    let question = query("after-flood.test", RecordType::A, None);
    let response = udp_exchange_within(flooded, &question, Duration::from_secs(10))
        .await
        .expect("the flooded listener answers within 10 s after the flood");
    assert_eq!(
        addresses(&response),
        vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

/// The local TCP listener closes a connection that sends no query within its idle
/// timeout, and one that stops in the middle of a message.
#[tokio::test]
async fn idle_and_stalled_tcp_connections_are_closed() {
    let setup = setup().await;
    let listeners = run_agent(&setup, &[PLAIN_APP]).await;

    let mut idle = TcpStream::connect(listeners[0]).await.unwrap();
    let mut stalled = TcpStream::connect(listeners[0]).await.unwrap();
    // A length prefix of 100 bytes, then only 3 of them.
    stalled.write_all(&[0, 100, 1, 2, 3]).await.unwrap();

    let started = Instant::now();
    assert!(closed_within(&mut stalled, Duration::from_secs(30)).await);
    let stalled_after = started.elapsed();
    assert!(closed_within(&mut idle, Duration::from_secs(30)).await);
    let idle_after = started.elapsed();
    assert!(stalled_after < Duration::from_secs(8), "{stalled_after:?}");
    assert!(idle_after < Duration::from_secs(15), "{idle_after:?}");
}

/// The local TCP listener keeps a bounded number of connections and closes the
/// others at once; a query on a kept connection is still answered.
#[tokio::test]
async fn tcp_connections_over_the_limit_are_closed() {
    let setup = setup().await;
    let listeners = run_agent(&setup, &[PLAIN_APP]).await;

    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(TcpStream::connect(listeners[0]).await.unwrap());
    }
    let mut kept = Vec::new();
    let mut closed = 0;
    for mut stream in streams {
        if closed_within(&mut stream, Duration::from_millis(20)).await {
            closed += 1;
        } else {
            kept.push(stream);
        }
    }
    assert!(closed >= 100, "{closed} of 200 connections closed");
    assert!(!kept.is_empty());

    let question = query("allowed.test", RecordType::A, None);
    write_framed(&mut kept[0], &question.to_vec().unwrap()).await;
    let response = read_framed(&mut kept[0]).await.expect("a response");
    let response = hickory_proto::op::Message::from_vec(&response).unwrap();
    assert_eq!(
        addresses(&response),
        vec!["192.0.2.10".parse::<IpAddr>().unwrap()]
    );
}
