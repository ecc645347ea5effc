//! The reference agent against a real resolver and a stand-in console: enrolment,
//! settings, DoH with the context option, the local proxy and bypassed apps.
#![allow(clippy::unwrap_used)]

mod support;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hickory_proto::rr::{RData, RecordType};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use swg_dns::agent::proxy::LocalListener;
use swg_dns::agent::{Agent, AgentError, AgentOptions};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

const AUTH_KEY: &str = "auth-key-1";

/// Starts a console that knows one authentication key and serves the agent API.
async fn start_console(certificate: &TestCertificate, doh: SocketAddr) -> SocketAddr {
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
    let doh_url = format!("https://127.0.0.1:{}/dns-query", doh.port());

    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let doh_url = doh_url.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |request| console_api(request, doh_url.clone()));
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
    doh_url: String,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let bearer = request
        .headers()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let token_json = format!(
        r#"{{"token":"{GOOD_TOKEN}","tokenType":"Bearer","expiresAt":{},"endpoints":{{"dohUrl":"{doh_url}","proxy":"127.0.0.1:3128","consoleUrl":"https://127.0.0.1"}}}}"#,
        swg_identity::unix_now() + 86_400
    );
    let authorized = bearer.as_deref() == Some(&format!("Bearer {GOOD_TOKEN}"));
    let (status, text) = match path.as_str() {
        "/api/agent/enroll" => {
            let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
            if request["authenticationKey"] == AUTH_KEY && request["deviceId"] == "d1" {
                (200, token_json)
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
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let harness = Harness::start().await;
    let certificate = TestCertificate {
        der: harness.certificate.clone(),
        resolver: harness.certificate_resolver.clone(),
    };
    let console = start_console(&certificate, harness.server.doh_addr().unwrap()).await;
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
    };
    Setup {
        harness,
        options,
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
    assert!(matches!(error, Some(AgentError::Unauthorized)), "{error:?}");
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
