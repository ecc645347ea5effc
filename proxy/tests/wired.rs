//! The proxy wired to the real swg crates: leaves from swg-ca, device tokens and
//! correlation hints from swg-identity, URLhaus through swg-policy, pages from
//! swg-blockpages and events into swg-activity's SQLite store.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::{args, curl, origin};
use swg_proxy::adapters::{ActivityRecorder, BlockPages, CaLeaves, IdentityAdapter, PolicyDecider};
use swg_proxy::boundary::Collaborators;
use swg_proxy::resolve::UpstreamResolver;
use swg_proxy::{Proxy, ProxyConfig};

const URLHAUS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/urlhaus-filter-online.txt"
);
/// A URL rule of the URLhaus list (`||astenterprises.com.pk/ef/ef.vbs^`). Its host is
/// mapped to the test's loopback origin: the real host is never contacted.
const BLOCKED_HOST: &str = "astenterprises.com.pk";
const BLOCKED_PATH: &str = "/ef/ef.vbs";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urlhaus_url_blocked_while_other_paths_pass() {
    let urlhaus = std::fs::read_to_string(URLHAUS).unwrap();
    assert!(urlhaus
        .lines()
        .any(|line| line == format!("||{BLOCKED_HOST}{BLOCKED_PATH}^$all")));

    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();

    // swg-policy with URLhaus as a malware feed.
    let policy_path = dir.path().join("policy.toml");
    let policy = format!(
        "id = \"tenant-a\"\n[[feeds]]\nid = \"urlhaus\"\npath = {URLHAUS:?}\nformat = \"adblock\"\ncategory = \"malware\"\n\
         [[policies]]\nid = \"everyone\"\n"
    );
    std::fs::write(&policy_path, policy).unwrap();
    let set =
        swg_policy::PolicySet::load(&[&policy_path]).unwrap_or_else(|errors| panic!("{errors}"));

    // swg-identity: a device token, and a correlation hint for the landing.
    let keys = swg_identity::SigningKeys::from_secrets("test", &[("k1".to_owned(), vec![7u8; 32])])
        .unwrap();
    let signer = Arc::new(
        swg_identity::Signer::new(keys, &swg_identity::IdentityConfig::default(), &registry)
            .unwrap(),
    );
    let live_keys = Arc::new(swg_identity::LiveKeys::new());
    live_keys.replace([("tenant-a".to_owned(), "auth-key-1".to_owned())]);
    let token = signer
        .issue_device_token(
            "tenant-a",
            "device-1",
            "user-1",
            "auth-key-1",
            swg_identity::unix_now(),
        )
        .token;
    let hints = Arc::new(swg_identity::InProcessHints::new(
        Duration::from_secs(600),
        1000,
    ));
    let hinted = swg_identity::Identity {
        tenant: "tenant-a".to_owned(),
        device: "device-2".to_owned(),
        user: "user-2".to_owned(),
        app_bundle_id: Some("com.apple.mobilesafari".to_owned()),
        app_class: swg_identity::AppClass::Browser,
        discovery: swg_identity::Discovery::Correlation,
    };
    use swg_identity::CorrelationHints;
    hints
        .record(
            "127.0.0.1".parse::<IpAddr>().unwrap(),
            BLOCKED_HOST,
            &hinted,
        )
        .await
        .unwrap();

    // swg-ca, swg-blockpages, swg-activity.
    let root =
        swg_ca::RootCa::generate(swg_ca::KeyType::default(), &swg_ca::CaConfig::default()).unwrap();
    let root_path = dir.path().join("root.pem");
    std::fs::write(&root_path, root.cert_pem()).unwrap();
    let leaves = Arc::new(
        swg_ca::LeafCache::new(Arc::new(root), &swg_ca::LeafConfig::default(), &registry).unwrap(),
    );
    let pages =
        swg_blockpages::Pages::new(&swg_blockpages::PagesConfig::default(), dir.path()).unwrap();
    let (log, recorder) = swg_activity::ActivityLog::open(
        &dir.path().join("activity.db"),
        &swg_activity::ActivityConfig::default(),
        &registry,
    )
    .unwrap();

    let origin_ca = support::pki::TestCa::new("origin CA");
    let origin_ca_path = dir.path().join("origin-ca.pem");
    std::fs::write(&origin_ca_path, &origin_ca.pem).unwrap();
    let origin =
        origin::start_https(origin_ca.valid_leaf(&[BLOCKED_HOST]), &[b"h2", b"http/1.1"]).await;

    let config = ProxyConfig {
        tls_listen: "127.0.0.1:0".parse().unwrap(),
        http_listen: "127.0.0.1:0".parse().unwrap(),
        explicit_listen: "127.0.0.1:0".parse().unwrap(),
        allowed_destinations: vec!["127.0.0.1/32".parse().unwrap()],
        extra_roots: vec![origin_ca_path],
        static_hosts: support::static_hosts(&[(BLOCKED_HOST, "127.0.0.1")]),
        ..ProxyConfig::default()
    };
    let collaborators = Collaborators {
        identify: Arc::new(IdentityAdapter::new(signer, live_keys, hints)),
        decide: Arc::new(PolicyDecider::fixed(Arc::new(set))),
        pages: Arc::new(BlockPages(Arc::new(pages))),
        record: Arc::new(ActivityRecorder(recorder)),
        leaves: Arc::new(CaLeaves(leaves)),
    };
    let resolver = UpstreamResolver::new(&[], config.static_hosts.clone());
    let proxy = Proxy::with_resolver(config, collaborators, resolver, &registry).unwrap();
    let listeners = proxy.bind().await.unwrap();
    let explicit = listeners.explicit.local_addr().unwrap();
    let tls = listeners.tls.local_addr().unwrap();
    let serving = proxy.clone();
    tokio::spawn(async move {
        serving
            .serve(
                listeners,
                futures::future::pending(),
                Duration::from_secs(1),
            )
            .await
    });

    let port = origin.port();
    let blocked = format!("https://{BLOCKED_HOST}:{port}{BLOCKED_PATH}");
    let other = format!("https://{BLOCKED_HOST}:{port}/small");
    let root = root_path.display().to_string();
    let through_proxy = args(&[
        "-x",
        &format!("http://{explicit}"),
        "--proxy-header",
        &format!("Proxy-Authorization: Bearer {token}"),
        "--cacert",
        &root,
        "-H",
        "Accept: text/html",
    ]);
    let through_landing = args(&[
        "--connect-to",
        &format!("{BLOCKED_HOST}:{port}:127.0.0.1:{}", tls.port()),
        "--cacert",
        &root,
    ]);

    let result = curl(through_proxy.clone(), &blocked).await;
    assert_eq!(result.status, 403, "{}", result.stderr);
    assert!(result.body.contains("<html"), "{}", result.body);
    let result = curl(through_proxy, &other).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, "hello from origin\n");

    let result = curl(through_landing.clone(), &blocked).await;
    assert_eq!(result.status, 403, "{}", result.stderr);
    assert!(
        !result.body.contains("<html"),
        "subresources get short text: {}",
        result.body
    );
    let result = curl(through_landing, &other).await;
    assert_eq!(result.status, 200, "{}", result.stderr);

    log.flush().await;
    let now = time::OffsetDateTime::now_utc();
    let query = swg_activity::Query::new(
        "tenant-a",
        now - time::Duration::hours(1),
        now + time::Duration::hours(1),
    );
    let mut events = log.store().query(&query).unwrap().events;
    events.sort_by_key(|event| (event.user.clone(), event.request.clone()));
    let summary: Vec<(
        Option<&str>,
        &str,
        swg_activity::Action,
        swg_activity::Discovery,
    )> = events
        .iter()
        .map(|event| {
            (
                event.user.as_deref(),
                event.request.as_str(),
                event.action,
                event.discovery,
            )
        })
        .collect();
    use swg_activity::{Action::*, Discovery::*};
    assert_eq!(
        summary,
        vec![
            (Some("user-1"), blocked.as_str(), Block, Token),
            (Some("user-1"), other.as_str(), Allow, Token),
            (Some("user-2"), blocked.as_str(), Block, Correlation),
            (Some("user-2"), other.as_str(), Allow, Correlation),
        ]
    );
    let blocked_event = events.iter().find(|event| event.action == Block).unwrap();
    assert_eq!(
        blocked_event.rule.as_deref(),
        Some("urlhaus/astenterprises.com.pk/ef/ef.vbs")
    );
    assert_eq!(blocked_event.categories, vec!["malware".to_owned()]);
    assert!(Path::new(&root).exists());
}

/// The user gets a refusal page when the destination check rejects a request, so
/// the activity log records a block that names the rejected class. An unreachable
/// origin is not a decision of swg and stays an allow whose reason names the failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_refusal_logged_as_block() {
    let dir = tempfile::tempdir().unwrap();
    let registry = prometheus::Registry::new();
    let (log, recorder) = swg_activity::ActivityLog::open(
        &dir.path().join("activity.db"),
        &swg_activity::ActivityConfig::default(),
        &registry,
    )
    .unwrap();
    let harness = support::Harness::start_with(
        |config| {
            config.static_hosts = support::static_hosts(&[("closed.test", "127.0.0.1")]);
        },
        Arc::new(support::TextPages),
        Some(Arc::new(ActivityRecorder(recorder))),
    )
    .await;
    // A port that was just free on 127.0.0.1 (allowed): connecting is refused.
    let closed_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };

    let refused = "http://127.0.0.2:9/";
    let result = curl(harness.explicit_args(), refused).await;
    assert_eq!(result.status, 403, "{}", result.stderr);
    let unreachable = format!("http://closed.test:{closed_port}/");
    let result = curl(harness.explicit_args(), &unreachable).await;
    assert_eq!(result.status, 502, "{}", result.stderr);

    log.flush().await;
    let now = time::OffsetDateTime::now_utc();
    let query = swg_activity::Query::new(
        "tenant-a",
        now - time::Duration::hours(1),
        now + time::Duration::hours(1),
    );
    let events = log.store().query(&query).unwrap().events;
    let event_for = |url: &str| {
        events
            .iter()
            .find(|event| event.request == url)
            .unwrap_or_else(|| panic!("no event for {url}"))
    };
    let refused_event = event_for(refused);
    assert_eq!(refused_event.action, swg_activity::Action::Block);
    assert_eq!(refused_event.reason, "destination refused: loopback");
    assert_eq!(refused_event.rule, None);
    let unreachable_event = event_for(&unreachable);
    assert_eq!(unreachable_event.action, swg_activity::Action::Allow);
    assert!(
        unreachable_event
            .reason
            .starts_with("upstream error: origin unreachable"),
        "{}",
        unreachable_event.reason
    );
    assert_eq!(
        harness.metric(
            "swg_proxy_requests_total",
            &[("listener", "explicit"), ("action", "block")]
        ),
        1.0
    );
}
