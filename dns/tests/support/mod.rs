//! Shared pieces of the resolver's integration tests: a test upstream, in-memory
//! backends with a small policy, and DNS/DoH clients over real sockets.
#![allow(dead_code, unreachable_pub)]

pub mod secure_upstream;
pub mod upstream;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hickory_proto::op::{Edns, Message, Query};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::server::ResolvesServerCert;
use swg_dns::{
    AppClass, AppRef, AppTreatment, Backends, Client, ClientIdentifier, Decision, DnsConfig,
    DnsPolicy, DnsServer, EventSink, HintSink, Identification, QueryContext, QueryEvent, SteerHint,
    TokenRejection, Verdict,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub use upstream::TestUpstream;

pub const GOOD_TOKEN: &str = "device-token-d1";
pub const EXPIRED_TOKEN: &str = "device-token-expired";
pub const SAFARI: &str = "com.apple.mobilesafari";
pub const TRUSTED_APP: &str = "com.example.trusted";
pub const BYPASSED_APP: &str = "com.example.bypassed";
pub const PLAIN_APP: &str = "com.example.notes";
pub const DOH_HOST: &str = "dns.swg.test";

/// Path of the shared threat lists, relative to this crate.
pub const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

/// Reads the first `count` domains of the phishing list.
pub fn phishing_domains(count: usize) -> Vec<String> {
    let text = std::fs::read_to_string(format!("{SHARED_DATA}/phishing-domains.txt")).unwrap();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .take(count)
        .map(str::to_owned)
        .collect()
}

/// Identity: one good token; plain DNS only from 127.0.0.1.
pub struct TestIdentifier;

impl ClientIdentifier for TestIdentifier {
    fn identify_token(&self, token: &str) -> Result<Client, TokenRejection> {
        match token {
            GOOD_TOKEN => Ok(Client {
                tenant: "t1".to_owned(),
                device: Some("d1".to_owned()),
                user: Some("u1".to_owned()),
                location: None,
                identified_by: Identification::DeviceToken,
            }),
            EXPIRED_TOKEN => Err(TokenRejection::Expired),
            _ => Err(TokenRejection::Invalid),
        }
    }

    fn identify_source(&self, source: IpAddr) -> Option<Client> {
        (source == IpAddr::from([127, 0, 0, 1])).then(|| Client {
            tenant: "t1".to_owned(),
            device: None,
            user: None,
            location: Some("hq".to_owned()),
            identified_by: Identification::Location,
        })
    }
}

/// A tenant policy with fixed lists, matching on label boundaries.
pub struct TestPolicy {
    pub blocked: HashSet<String>,
}

fn set(names: &[&str]) -> HashSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

impl TestPolicy {
    pub fn new() -> Self {
        let mut blocked = set(&["blocked.test", "blocked-target.test"]);
        blocked.extend(phishing_domains(50));
        TestPolicy { blocked }
    }

    fn matches(list: &HashSet<String>, name: &str) -> bool {
        let mut rest = name;
        loop {
            if list.contains(rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) => rest = parent,
                None => return false,
            }
        }
    }

    fn is_ip_exception(address: IpAddr) -> bool {
        matches!(address, IpAddr::V4(v4) if v4.octets()[0] == 10 && v4.octets()[1] == 99)
    }
}

impl DnsPolicy for TestPolicy {
    fn classify_app(
        &self,
        _client: &Client,
        bundle_id: Option<&str>,
        hint: Option<AppClass>,
    ) -> AppTreatment {
        match bundle_id {
            Some(SAFARI) => AppTreatment::Filtered(AppClass::Browser),
            Some(TRUSTED_APP) => AppTreatment::Filtered(AppClass::TrustedApp),
            Some(BYPASSED_APP) => AppTreatment::Bypassed,
            Some(_) => AppTreatment::Filtered(AppClass::App),
            None => AppTreatment::Filtered(hint.unwrap_or(AppClass::Unknown)),
        }
    }

    fn decide(
        &self,
        _client: &Client,
        _app: AppRef<'_>,
        names: &[&str],
        addresses: &[IpAddr],
    ) -> Decision {
        if Self::matches(&set(&["corp", "exception.test"]), names[0]) {
            return Decision::new(Verdict::Exception, "domain exception");
        }
        if let Some(address) = addresses.iter().find(|a| Self::is_ip_exception(**a)) {
            let reason = format!("address {address} is in an IP exception");
            return Decision::new(Verdict::IpException, reason);
        }
        let mut worst = Decision::new(Verdict::Allow, "default allow");
        for name in names {
            let (verdict, category, rule) = if Self::matches(&self.blocked, name) {
                (Verdict::Block, "phishing", "r-block")
            } else if Self::matches(&set(&["warn.test"]), name) {
                (Verdict::Warn, "newly_seen", "r-warn")
            } else if Self::matches(&set(&["suspicious.test"]), name) {
                (Verdict::Inspect, "potentially_malicious", "r-inspect")
            } else {
                continue;
            };
            if verdict > worst.verdict {
                worst = Decision {
                    verdict,
                    category: Some(category.to_owned()),
                    rule: Some(rule.to_owned()),
                    policy: Some("everyone".to_owned()),
                    reason: format!("{} {name}", verdict.as_str()),
                };
            }
        }
        worst
    }

    fn blocks_private_relay(&self, _client: &Client) -> bool {
        true
    }
}

#[derive(Default)]
pub struct Recorded {
    pub events: Mutex<Vec<QueryEvent>>,
    pub hints: Mutex<Vec<SteerHint>>,
}

pub struct RecordedEvents(pub Arc<Recorded>);
pub struct RecordedHints(pub Arc<Recorded>);

impl EventSink for RecordedEvents {
    fn record(&self, event: QueryEvent) {
        self.0.events.lock().unwrap().push(event);
    }
}

impl HintSink for RecordedHints {
    fn record(&self, hint: SteerHint) {
        self.0.hints.lock().unwrap().push(hint);
    }
}

impl Recorded {
    pub fn events_for(&self, domain: &str) -> Vec<QueryEvent> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|event| event.domain == domain)
            .cloned()
            .collect()
    }
}

/// A DoH certificate: a self-signed leaf for [`DOH_HOST`].
pub struct TestCertificate {
    pub der: CertificateDer<'static>,
    pub resolver: Arc<dyn ResolvesServerCert>,
}

pub fn test_certificate() -> TestCertificate {
    let generated =
        rcgen::generate_simple_self_signed(vec![DOH_HOST.to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let der = generated.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        generated.signing_key.serialize_der(),
    ));
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key).unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![der.clone()], signing_key);
    TestCertificate {
        der,
        resolver: Arc::new(rustls::sign::SingleCertAndKey::from(certified)),
    }
}

/// A running resolver with its upstream and recorders.
pub struct Harness {
    pub server: DnsServer,
    pub upstream: TestUpstream,
    pub recorded: Arc<Recorded>,
    pub certificate: CertificateDer<'static>,
    pub certificate_resolver: Arc<dyn ResolvesServerCert>,
    pub registry: prometheus::Registry,
}

impl Harness {
    pub async fn start() -> Harness {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut DnsConfig)) -> Harness {
        Self::start_with_backends(adjust, |_| None).await
    }

    /// Starts the resolver; `backends` may replace the test identifier and policy.
    pub async fn start_with_backends(
        adjust: impl FnOnce(&mut DnsConfig),
        backends: impl FnOnce(&Arc<Recorded>) -> Option<Backends>,
    ) -> Harness {
        Self::try_start_with_backends(adjust, backends)
            .await
            .unwrap()
    }

    /// Starts the resolver, or returns the error that stopped the start.
    pub async fn try_start_with(
        adjust: impl FnOnce(&mut DnsConfig),
    ) -> Result<Harness, swg_dns::ServerError> {
        Self::try_start_with_backends(adjust, |_| None).await
    }

    /// Starts the resolver with the DoH certificate resolver replaced by what `wrap`
    /// returns for the test certificate's resolver.
    pub async fn start_with_certificates(
        adjust: impl FnOnce(&mut DnsConfig),
        wrap: impl FnOnce(Arc<dyn ResolvesServerCert>) -> Arc<dyn ResolvesServerCert>,
    ) -> Harness {
        Self::try_start_with_all(adjust, |_| None, wrap)
            .await
            .unwrap()
    }

    async fn try_start_with_backends(
        adjust: impl FnOnce(&mut DnsConfig),
        backends: impl FnOnce(&Arc<Recorded>) -> Option<Backends>,
    ) -> Result<Harness, swg_dns::ServerError> {
        Self::try_start_with_all(adjust, backends, |resolver| resolver).await
    }

    async fn try_start_with_all(
        adjust: impl FnOnce(&mut DnsConfig),
        backends: impl FnOnce(&Arc<Recorded>) -> Option<Backends>,
        wrap: impl FnOnce(Arc<dyn ResolvesServerCert>) -> Arc<dyn ResolvesServerCert>,
    ) -> Result<Harness, swg_dns::ServerError> {
        let upstream = TestUpstream::start().await;
        let recorded = Arc::new(Recorded::default());
        let certificate = test_certificate();
        let mut config = DnsConfig {
            doh_listen: "127.0.0.1:0".parse().unwrap(),
            udp_listen: "127.0.0.1:0".parse().unwrap(),
            tcp_listen: "127.0.0.1:0".parse().unwrap(),
            doh_host: DOH_HOST.to_owned(),
            upstreams: vec![format!("udp://{}", upstream.addr)],
            upstream_timeout_ms: 5_000,
            ..DnsConfig::default()
        };
        adjust(&mut config);
        let backends = backends(&recorded).unwrap_or_else(|| Backends {
            identifier: Arc::new(TestIdentifier),
            policy: Arc::new(TestPolicy::new()),
            events: Arc::new(RecordedEvents(recorded.clone())),
            hints: Arc::new(RecordedHints(recorded.clone())),
        });
        let registry = prometheus::Registry::new();
        let resolver = Some(wrap(certificate.resolver.clone()));
        let server = DnsServer::start(config, backends, resolver, &registry).await?;
        Ok(Harness {
            server,
            upstream,
            recorded,
            certificate: certificate.der,
            certificate_resolver: certificate.resolver,
            registry,
        })
    }

    /// Reads a counter's value from the registry.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let families = self.registry.gather();
        let Some(family) = families.iter().find(|family| family.name() == name) else {
            return 0.0;
        };
        family
            .get_metric()
            .iter()
            .filter(|metric| {
                labels.iter().all(|(key, value)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|label| label.name() == *key && label.value() == *value)
                })
            })
            .map(|metric| metric.get_counter().get_value())
            .sum()
    }

    pub async fn udp(&self, query: &Message) -> Message {
        udp_exchange(self.server.udp_addr(), "127.0.0.1:0", query)
            .await
            .unwrap()
    }

    pub async fn tcp(&self, query: &Message) -> Message {
        let mut stream = TcpStream::connect(self.server.tcp_addr()).await.unwrap();
        write_framed(&mut stream, &query.to_vec().unwrap()).await;
        Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap()
    }

    pub async fn doh(&self, query: &Message, token: Option<&str>) -> DohReply {
        let client = DohClient::connect(self, Alpn::H2).await;
        client.post(query, token).await
    }
}

/// Builds a query with RD set and an OPT record, plus the context option if given.
pub fn query(name: &str, query_type: RecordType, context: Option<&QueryContext>) -> Message {
    let mut message = Message::query();
    message.metadata.recursion_desired = true;
    // from_utf8 applies IDNA mapping, which lower-cases: keep ASCII names as written.
    let owner = if name.is_ascii() {
        Name::from_ascii(name)
    } else {
        Name::from_utf8(name)
    };
    message.add_query(Query::query(owner.unwrap(), query_type));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    if let Some(context) = context {
        edns.options_mut().options.push((
            EdnsCode::from(swg_dns::CONTEXT_OPTION_CODE),
            EdnsOption::Unknown(swg_dns::CONTEXT_OPTION_CODE, context.encode()),
        ));
    }
    message.set_edns(edns);
    message
}

/// Builds a context carrying only a bundle id.
pub fn app(bundle_id: &str) -> QueryContext {
    QueryContext {
        bundle_id: Some(bundle_id.to_owned()),
        ..QueryContext::default()
    }
}

pub async fn udp_exchange(server: SocketAddr, bind: &str, query: &Message) -> Option<Message> {
    let socket = UdpSocket::bind(bind).await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 65_535];
    let received = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        socket.recv_from(&mut buffer),
    )
    .await;
    let (len, _) = received.ok()?.ok()?;
    Some(Message::from_vec(&buffer[..len]).unwrap())
}

pub async fn write_framed(stream: &mut TcpStream, bytes: &[u8]) {
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.unwrap();
}

pub async fn read_framed(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let len = stream.read_u16().await.ok()?;
    let mut buffer = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buffer).await.ok()?;
    Some(buffer)
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    H2,
    Http11,
}

pub struct DohReply {
    pub status: u16,
    pub content_type: Option<String>,
    pub cache_control: Option<String>,
    pub headers: http::HeaderMap,
    /// The body as text, for refusals.
    pub text: String,
    pub message: Option<Message>,
}

/// A DoH client over rustls and hyper, on one connection.
pub enum DohClient {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    Http11(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>),
}

/// Opens a TLS connection to the DoH listener, offering only `alpn`, for tests that
/// write raw HTTP/1.1 or run their own hyper client.
pub async fn doh_tls(harness: &Harness, alpn: Alpn) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(harness.server.doh_addr().unwrap())
        .await
        .unwrap();
    let server_name = ServerName::try_from(DOH_HOST).unwrap();
    doh_tls_on(harness, alpn, tcp, server_name).await.unwrap()
}

/// Runs the TLS handshake with the DoH listener on `tcp`, offering only `alpn` and
/// sending the SNI of `server_name` (none for an IP address), and returns the
/// handshake's error if it failed.
pub async fn doh_tls_on(
    harness: &Harness,
    alpn: Alpn,
    tcp: TcpStream,
    server_name: ServerName<'static>,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(harness.certificate.clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = match alpn {
        Alpn::H2 => vec![b"h2".to_vec()],
        Alpn::Http11 => vec![b"http/1.1".to_vec()],
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(server_name, tcp).await
}

/// Reads an HTTP/1.1 response until the server closes the connection or `timeout`
/// passes, and returns what arrived as text.
pub async fn read_http1_response<R: AsyncReadExt + Unpin>(
    stream: &mut R,
    timeout: std::time::Duration,
) -> String {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + timeout;
    while let Ok(Ok(len)) = tokio::time::timeout_at(deadline, stream.read(&mut buffer)).await {
        if len == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..len]);
    }
    String::from_utf8_lossy(&received).into_owned()
}

impl DohClient {
    pub async fn connect(harness: &Harness, alpn: Alpn) -> DohClient {
        let tls = doh_tls(harness, alpn).await;
        let io = TokioIo::new(tls);
        match alpn {
            Alpn::H2 => {
                let (sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                        .await
                        .unwrap();
                tokio::spawn(connection);
                DohClient::H2(sender)
            }
            Alpn::Http11 => {
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(connection);
                DohClient::Http11(tokio::sync::Mutex::new(sender))
            }
        }
    }

    pub async fn post(&self, query: &Message, token: Option<&str>) -> DohReply {
        let mut request = http::Request::post(format!("https://{DOH_HOST}/dns-query"))
            .header("content-type", "application/dns-message")
            .header("accept", "application/dns-message");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(
            request
                .body(Full::new(Bytes::from(query.to_vec().unwrap())))
                .unwrap(),
        )
        .await
    }

    pub async fn get(&self, query: &Message, token: Option<&str>) -> DohReply {
        use base64::Engine;
        let encoded =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(query.to_vec().unwrap());
        let mut request = http::Request::get(format!("https://{DOH_HOST}/dns-query?dns={encoded}"));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.send(request.body(Full::new(Bytes::new())).unwrap())
            .await
    }

    pub async fn send(&self, mut request: http::Request<Full<Bytes>>) -> DohReply {
        let response = match self {
            DohClient::H2(sender) => sender.clone().send_request(request).await.unwrap(),
            DohClient::Http11(sender) => {
                *request.uri_mut() = request
                    .uri()
                    .path_and_query()
                    .unwrap()
                    .as_str()
                    .parse()
                    .unwrap();
                request
                    .headers_mut()
                    .insert("host", DOH_HOST.parse().unwrap());
                let mut sender = sender.lock().await;
                sender.ready().await.unwrap();
                sender.send_request(request).await.unwrap()
            }
        };
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let content_type = header("content-type");
        let cache_control = header("cache-control");
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let message = if status == 200 {
            Message::from_vec(&body).ok()
        } else {
            None
        };
        DohReply {
            status,
            content_type,
            cache_control,
            headers,
            text: String::from_utf8_lossy(&body).into_owned(),
            message,
        }
    }
}
