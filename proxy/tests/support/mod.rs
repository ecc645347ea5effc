//! A proxy started in-process with stand-in collaborators, origins run by the test,
//! and curl as the real client.

#![allow(dead_code, unreachable_pub)]

pub mod frames;
pub mod gate;
pub mod origin;
pub mod pki;
pub mod websocket;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Response, StatusCode};
use swg_proxy::boundary::{
    Action, ClientIdentity, Collaborators, Decide, Decision, Discovery, Identify, PageKind,
    PageRequest, ProxyEvent, Record, RenderPage, Verdict,
};
use swg_proxy::resolve::UpstreamResolver;
use swg_proxy::{Proxy, ProxyConfig, SignedValues};
use tempfile::TempDir;

pub const GOOD_TOKEN: &str = "device-token-good";
/// The auth host of test proxies.
pub const AUTH_HOST: &str = "auth.swg.test";

/// Identities: one valid device token, and correlation hints for every host asked
/// from 127.0.0.1 (not from other loopback addresses) unless switched off.
pub struct TestIdentify {
    pub hints_enabled: Mutex<bool>,
    /// Whether [`GOOD_TOKEN`] has been revoked.
    pub token_revoked: Mutex<bool>,
    /// The app class that hints report.
    pub hint_class: Mutex<swg_proxy::boundary::AppClass>,
}

pub fn identity(discovery: Discovery) -> ClientIdentity {
    ClientIdentity {
        tenant: "tenant-a".to_owned(),
        user: "user-1".to_owned(),
        device: "device-1".to_owned(),
        app_bundle_id: None,
        app_class: swg_proxy::boundary::AppClass::Browser,
        discovery,
    }
}

impl Identify for TestIdentify {
    fn identify_device_token(&self, token: &str) -> Option<ClientIdentity> {
        let revoked = *self.token_revoked.lock().unwrap();
        (token == GOOD_TOKEN && !revoked).then(|| identity(Discovery::Token))
    }

    fn identify_correlation_hint<'a>(
        &'a self,
        client: IpAddr,
        _host: &'a str,
    ) -> BoxFuture<'a, Option<ClientIdentity>> {
        let enabled = *self.hints_enabled.lock().unwrap();
        let class = *self.hint_class.lock().unwrap();
        Box::pin(async move {
            (enabled && client == IpAddr::from([127, 0, 0, 1])).then(|| ClientIdentity {
                app_class: class,
                ..identity(Discovery::Correlation)
            })
        })
    }
}

/// Blocks URLs starting with one of its blocked prefixes; warns for URLs starting
/// with one of its warn prefixes, naming the rule and category given with it.
pub struct PrefixPolicy {
    pub blocked_prefixes: Mutex<Vec<String>>,
    /// (prefix, rule id, category)
    pub warn_prefixes: Mutex<Vec<(String, String, String)>>,
    /// URLs decided so far.
    pub decided: std::sync::atomic::AtomicUsize,
}

impl Decide for PrefixPolicy {
    fn decide_url(&self, _identity: &ClientIdentity, url: &str) -> Decision {
        self.decided
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let warned = self
            .warn_prefixes
            .lock()
            .unwrap()
            .iter()
            .find(|(prefix, _, _)| url.starts_with(prefix.as_str()))
            .cloned();
        if let Some((_, rule, category)) = warned {
            return Decision {
                verdict: Verdict::Warn,
                policy: Some("test-policy".to_owned()),
                rule: Some(rule),
                categories: vec![category],
                reason: "warned by test".to_owned(),
            };
        }
        let blocked = self
            .blocked_prefixes
            .lock()
            .unwrap()
            .iter()
            .any(|prefix| url.starts_with(prefix.as_str()));
        Decision {
            verdict: if blocked {
                Verdict::Block
            } else {
                Verdict::Allow
            },
            policy: None,
            rule: blocked.then(|| "test-rule".to_owned()),
            categories: Vec::new(),
            reason: if blocked {
                "blocked by test".to_owned()
            } else {
                String::new()
            },
        }
    }
}

/// Pages as one text line naming the page, so tests can tell them apart.
pub struct TextPages;

impl RenderPage for TextPages {
    fn render(&self, request: &PageRequest) -> Response<Bytes> {
        let (status, line) = match &request.kind {
            PageKind::Block(_) => (StatusCode::FORBIDDEN, "swg-page: block".to_owned()),
            PageKind::Warn { form_token, .. } => (
                StatusCode::FORBIDDEN,
                format!("swg-page: warn token={form_token}"),
            ),
            PageKind::Inspection => (StatusCode::FORBIDDEN, "swg-page: inspection".to_owned()),
            PageKind::Unidentified => (StatusCode::FORBIDDEN, "swg-page: unidentified".to_owned()),
            PageKind::UpstreamError(failure) => {
                let detail = match failure {
                    swg_proxy::upstream::UpstreamFailure::Certificate(problem) => {
                        problem.as_str().to_owned()
                    }
                    swg_proxy::upstream::UpstreamFailure::DestinationRefused(refusal) => {
                        refusal.as_str().to_owned()
                    }
                    other => other.kind().to_owned(),
                };
                (
                    failure.status(),
                    format!("swg-page: upstream-error {} {detail}", failure.kind()),
                )
            }
        };
        let mut response = Response::new(Bytes::from(format!("{line}\n")));
        *response.status_mut() = status;
        response
    }
}

#[derive(Default)]
pub struct Events(pub Mutex<Vec<ProxyEvent>>);

impl Record for Events {
    fn record(&self, event: ProxyEvent) {
        self.0.lock().unwrap().push(event);
    }
}

impl Events {
    pub fn actions(&self) -> Vec<(String, Action)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|event| (event.url.clone(), event.action))
            .collect()
    }
}

/// A running proxy and what the test needs to talk to it.
pub struct Harness {
    pub proxy: Proxy,
    /// The signer the proxy uses, so tests can forge, age and reuse values.
    pub signer: Arc<swg_identity::Signer>,
    pub spent: Arc<swg_identity::InProcessSpentTickets>,
    pub tls: SocketAddr,
    pub http: SocketAddr,
    pub explicit: SocketAddr,
    pub leaves: Arc<pki::MintingLeaves>,
    pub origin_ca: pki::TestCa,
    pub identify: Arc<TestIdentify>,
    pub policy: Arc<PrefixPolicy>,
    pub events: Arc<Events>,
    pub registry: prometheus::Registry,
    pub dir: TempDir,
    pub swg_root: PathBuf,
    /// Starts the proxy's shutdown when sent to or dropped.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

/// A signer with a fixed test key and default lifetimes.
pub fn test_signer(registry: &prometheus::Registry) -> swg_identity::Signer {
    let keys = swg_identity::SigningKeys::from_secrets("test", &[("k1".to_owned(), vec![7u8; 32])])
        .unwrap();
    swg_identity::Signer::new(keys, &swg_identity::IdentityConfig::default(), registry).unwrap()
}

/// Hosts the test maps to its loopback origins.
pub fn static_hosts(extra: &[(&str, &str)]) -> BTreeMap<String, Vec<IpAddr>> {
    let mut hosts = BTreeMap::new();
    for (name, address) in extra {
        hosts.insert(name.to_string(), vec![address.parse().unwrap()]);
    }
    hosts
}

impl Harness {
    /// Starts a proxy on ephemeral loopback ports allowing only 127.0.0.1 as a destination.
    pub async fn start(adjust: impl FnOnce(&mut ProxyConfig)) -> Harness {
        Harness::start_with_pages(adjust, Arc::new(TextPages)).await
    }

    /// Starts a proxy as [`Harness::start`] does, rendering pages with `pages`.
    pub async fn start_with_pages(
        adjust: impl FnOnce(&mut ProxyConfig),
        pages: Arc<dyn RenderPage>,
    ) -> Harness {
        Harness::start_with(adjust, pages, None).await
    }

    /// Starts a proxy as [`Harness::start`] does, recording events into `record`
    /// instead of `Harness::events` when given.
    pub async fn start_with(
        adjust: impl FnOnce(&mut ProxyConfig),
        pages: Arc<dyn RenderPage>,
        record: Option<Arc<dyn Record>>,
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let origin_ca = pki::TestCa::new("origin test CA");
        let origin_ca_path = dir.path().join("origin-ca.pem");
        std::fs::write(&origin_ca_path, &origin_ca.pem).unwrap();
        let leaves = pki::MintingLeaves::new();
        let swg_root = dir.path().join("swg-root.pem");
        std::fs::write(&swg_root, &leaves.ca.pem).unwrap();

        let mut config = ProxyConfig {
            auth_host: AUTH_HOST.to_owned(),
            tls_listen: "127.0.0.1:0".parse().unwrap(),
            http_listen: "127.0.0.1:0".parse().unwrap(),
            explicit_listen: "127.0.0.1:0".parse().unwrap(),
            allowed_destinations: vec!["127.0.0.1/32".parse().unwrap()],
            extra_roots: vec![origin_ca_path],
            ..ProxyConfig::default()
        };
        config.timeouts.first_byte_ms = 5_000;
        adjust(&mut config);

        let identify = Arc::new(TestIdentify {
            hints_enabled: Mutex::new(true),
            token_revoked: Mutex::new(false),
            hint_class: Mutex::new(swg_proxy::boundary::AppClass::Browser),
        });
        let policy = Arc::new(PrefixPolicy {
            blocked_prefixes: Mutex::new(Vec::new()),
            warn_prefixes: Mutex::new(Vec::new()),
            decided: std::sync::atomic::AtomicUsize::new(0),
        });
        let events = Arc::new(Events::default());
        let collaborators = Collaborators {
            identify: identify.clone(),
            decide: policy.clone(),
            pages,
            record: record.unwrap_or_else(|| events.clone()),
            leaves: leaves.clone(),
        };
        let registry = prometheus::Registry::new();
        let resolver = UpstreamResolver::new(&[], config.static_hosts.clone());
        let signer = Arc::new(test_signer(&registry));
        let spent = Arc::new(swg_identity::InProcessSpentTickets::new(10_000));
        let proxy = Proxy::builder(config, collaborators)
            .resolver(resolver)
            .signed_values(SignedValues {
                signer: signer.clone(),
                spent: spent.clone(),
            })
            .build(&registry)
            .unwrap();
        let listeners = proxy.bind().await.unwrap();
        let tls = listeners.tls.local_addr().unwrap();
        let http = listeners.http.local_addr().unwrap();
        let explicit = listeners.explicit.local_addr().unwrap();
        let serving = proxy.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            serving
                .serve(
                    listeners,
                    async move {
                        let _ = stopped.await;
                    },
                    Duration::from_secs(1),
                )
                .await;
        });
        Harness {
            proxy,
            signer,
            spent,
            tls,
            http,
            explicit,
            leaves,
            origin_ca,
            identify,
            policy,
            events,
            registry,
            dir,
            swg_root,
            stop: Mutex::new(Some(stop)),
        }
    }

    /// Starts the proxy's shutdown: it stops accepting and lets open connections
    /// finish for at most 1 s.
    pub fn stop(&self) {
        if let Some(stop) = self.stop.lock().unwrap().take() {
            let _ = stop.send(());
        }
    }

    /// Sums the samples of metric `name` whose labels include `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap();
        let mut total = 0.0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            if !(rest.starts_with('{') || rest.starts_with(' ')) {
                continue;
            }
            if labels
                .iter()
                .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
            {
                total += rest.rsplit(' ').next().unwrap().parse::<f64>().unwrap();
            }
        }
        total
    }

    /// Arguments that send curl through the explicit proxy with the good token.
    pub fn explicit_args(&self) -> Vec<String> {
        vec![
            "-x".to_owned(),
            format!("http://{}", self.explicit),
            "--proxy-header".to_owned(),
            format!("Proxy-Authorization: Bearer {GOOD_TOKEN}"),
            "--cacert".to_owned(),
            self.swg_root.display().to_string(),
        ]
    }

    /// Opens a TLS connection to the landing for `host`, offering only `alpn`.
    pub async fn landing_tls(
        &self,
        host: &str,
        alpn: &[u8],
    ) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(self.tls).await.unwrap();
        tokio_rustls::TlsConnector::from(self.landing_client_config(alpn))
            .connect(
                rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap(),
                tcp,
            )
            .await
            .unwrap()
    }

    /// Returns a TLS client configuration that trusts swg's CA and offers only `alpn`.
    pub fn landing_client_config(&self, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.leaves.ca.der.clone()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Arc::new(config)
    }

    /// Arguments that send curl to the TLS landing for `host:port`.
    pub fn landing_args(&self, host: &str, port: u16) -> Vec<String> {
        vec![
            "--connect-to".to_owned(),
            format!("{host}:{port}:127.0.0.1:{}", self.tls.port()),
            "--cacert".to_owned(),
            self.swg_root.display().to_string(),
        ]
    }
}

/// Result of one curl run: the status, the HTTP version and the body.
pub struct CurlResult {
    pub status: u16,
    pub version: String,
    pub body: String,
    pub stderr: String,
}

/// Runs curl with `args` and the URL, off the async runtime.
pub async fn curl(args: Vec<String>, url: &str) -> CurlResult {
    let url = url.to_owned();
    let output: Output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args([
                "-sS",
                "--max-time",
                "60",
                "-o",
                "-",
                "-w",
                "\n%{http_code} %{http_version}",
            ])
            .args(&args)
            .arg(&url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, trailer) = stdout.rsplit_once('\n').unwrap_or(("", &stdout));
    let mut fields = trailer.split(' ');
    let status = fields.next().unwrap_or("0").parse().unwrap_or(0);
    let version = fields.next().unwrap_or("").to_owned();
    CurlResult {
        status,
        version,
        body: body.to_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

pub fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|arg| arg.to_string()).collect()
}

/// A response as curl saw it, headers included.
pub struct FullResponse {
    pub status: u16,
    /// Header names in lowercase, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl FullResponse {
    /// Every value of header `name`.
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .collect()
    }

    /// The single value of header `name`.
    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    /// The value of cookie `name` set by this response.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.header_values("set-cookie")
            .into_iter()
            .find(|line| line.starts_with(&format!("{name}=")))
    }
}

/// Runs curl once (no redirects followed) and returns status, headers and body.
pub async fn curl_full(args: Vec<String>, url: &str) -> FullResponse {
    let mut full_args = vec!["-D".to_owned(), "-".to_owned()];
    full_args.extend(args);
    let result = curl(full_args, url).await;
    assert!(result.status != 0, "curl failed: {}", result.stderr);
    let text = result.body;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    FullResponse {
        status: result.status,
        headers,
        body: body.to_owned(),
    }
}

/// The `name=value` part of a `Set-Cookie` line.
pub fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().trim().to_owned()
}
