//! The resolver with the real swg backends: policies from swg-policy files, device
//! tokens signed and verified by swg-identity, hints in its in-process store.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};
use support::*;
use swg_dns::answer::read_ede;
use swg_dns::gateway::{HintRecorder, PolicySource, SwgIdentifier, SwgPolicy};
use swg_dns::{AppClass, Backends, ClientIdentifier, EventAction};
use swg_identity::{
    CorrelationHints, IdentityConfig, InProcessHints, LiveKeys, Signer, SigningKeys,
};
use swg_policy::PolicySet;

const POLICY: &str = r#"
id = "acme"
name = "Acme"
trusted_apps = ["com.acme.mail"]
bypassed_apps = ["com.acme.vpn"]

[exceptions]
domains = ["intranet.test"]
cidrs = ["10.99.0.0/16"]

[[locations]]
id = "hq"
cidrs = ["127.0.0.1/32"]

[[policies]]
id = "everyone"
[policies.block]
domains = ["blocked.test", "blocked-target.test"]
urls = ["url-rules.test/downloads/"]
"#;

struct Gateway {
    harness: Harness,
    signer: Arc<Signer>,
    hints: Arc<InProcessHints>,
    identifier: Arc<SwgIdentifier>,
    _dir: tempfile::TempDir,
}

async fn start() -> Gateway {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut swg_dns::DnsConfig)) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.toml");
    std::fs::write(&path, POLICY).unwrap();
    let policies = PolicySource::Fixed(Arc::new(PolicySet::load(&[&path]).unwrap()));

    let keys = SigningKeys::from_secrets("test", &[("s1".to_owned(), vec![7u8; 32])]).unwrap();
    let registry = prometheus::Registry::new();
    let signer = Arc::new(Signer::new(keys, &IdentityConfig::default(), &registry).unwrap());
    let live_keys = Arc::new(LiveKeys::new());
    // globex has a live key but no policy file, like a tenant removed from the policy.
    live_keys.replace([
        ("acme".to_owned(), "key1".to_owned()),
        ("globex".to_owned(), "key1".to_owned()),
    ]);
    let hints = Arc::new(InProcessHints::new(Duration::from_secs(300), 1_000));

    let identifier = Arc::new(SwgIdentifier::new(
        signer.clone(),
        live_keys,
        policies.clone(),
    ));
    let hint_store = hints.clone();
    let backend_identifier = identifier.clone();
    let harness = Harness::start_with_backends(adjust, |recorded| {
        Some(Backends {
            identifier: backend_identifier,
            policy: Arc::new(SwgPolicy::new(policies)),
            events: Arc::new(RecordedEvents(recorded.clone())),
            hints: Arc::new(HintRecorder::new(hint_store)),
        })
    })
    .await;
    Gateway {
        harness,
        signer,
        hints,
        identifier,
        _dir: dir,
    }
}

impl Gateway {
    fn token(&self, tenant: &str, key_id: &str) -> String {
        let now = swg_identity::unix_now();
        self.signer
            .issue_device_token(tenant, "d1", "u1", key_id, now)
            .token
    }
}

fn first_address(message: &hickory_proto::op::Message) -> Option<IpAddr> {
    message
        .answers
        .iter()
        .find_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
}

#[tokio::test]
async fn signed_token_and_policy_file_block_for_apps() {
    let gateway = start().await;
    let token = gateway.token("acme", "key1");
    let question = query(
        "www.blocked.test",
        RecordType::A,
        Some(&app("com.example.notes")),
    );
    let reply = gateway.harness.doh(&question, Some(&token)).await;
    assert_eq!(reply.status, 200);
    let response = reply.message.unwrap();
    assert_eq!(first_address(&response), Some("0.0.0.0".parse().unwrap()));
    let (code, text) = read_ede(&response).unwrap();
    assert_eq!(code, 15);
    assert!(text.starts_with("action=block;category=;rule="), "{text}");
    assert!(text.contains("blocked.test"), "{text}");

    let events = gateway.harness.recorded.events_for("www.blocked.test");
    assert_eq!(events[0].client.tenant, "acme");
    assert_eq!(events[0].client.user.as_deref(), Some("u1"));
    assert_eq!(events[0].policy.as_deref(), Some("everyone"));
}

#[tokio::test]
async fn blocked_cname_target_from_policy_file_blocks_chain() {
    let gateway = start().await;
    let token = gateway.token("acme", "key1");
    let question = query(
        "www.chain.test",
        RecordType::A,
        Some(&app("com.example.notes")),
    );
    let response = gateway
        .harness
        .doh(&question, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(first_address(&response), Some("0.0.0.0".parse().unwrap()));
}

#[tokio::test]
async fn built_in_browser_is_steered_and_hint_reaches_identity_store() {
    let gateway = start().await;
    let token = gateway.token("acme", "key1");
    let question = query("shop.test", RecordType::A, Some(&app(SAFARI)));
    let response = gateway
        .harness
        .doh(&question, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(first_address(&response), Some("127.0.0.1".parse().unwrap()));

    // The hint is recorded in a spawned task.
    let mut identity = None;
    for _ in 0..50 {
        identity = gateway
            .hints
            .lookup_host("127.0.0.1".parse().unwrap(), "shop.test")
            .await
            .unwrap();
        if identity.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let identity = identity.unwrap();
    assert_eq!(identity.tenant, "acme");
    assert_eq!(identity.device, "d1");
    assert_eq!(identity.app_bundle_id.as_deref(), Some(SAFARI));
    assert_eq!(identity.app_class, swg_identity::AppClass::Browser);
}

#[tokio::test]
async fn tenant_lists_decide_trusted_and_bypassed_apps() {
    let gateway = start().await;
    let token = gateway.token("acme", "key1");
    let trusted = query("blocked.test", RecordType::A, Some(&app("com.acme.mail")));
    let response = gateway
        .harness
        .doh(&trusted, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(first_address(&response), Some("0.0.0.0".parse().unwrap()));
    assert_eq!(
        gateway.harness.recorded.events_for("blocked.test")[0].class,
        AppClass::TrustedApp
    );

    let bypassed = query(
        "www.blocked.test",
        RecordType::A,
        Some(&app("com.acme.vpn")),
    );
    let response = gateway
        .harness
        .doh(&bypassed, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(
        first_address(&response),
        Some("192.0.2.10".parse().unwrap())
    );
    assert!(gateway
        .harness
        .recorded
        .events_for("www.blocked.test")
        .is_empty());
}

#[tokio::test]
async fn exceptions_from_policy_file_apply() {
    let gateway = start().await;
    let token = gateway.token("acme", "key1");
    let excepted = query("printer.intranet.test", RecordType::A, Some(&app(SAFARI)));
    let response = gateway
        .harness
        .doh(&excepted, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(
        first_address(&response),
        Some("192.0.2.10".parse().unwrap())
    );
    assert!(gateway
        .harness
        .recorded
        .events_for("printer.intranet.test")
        .is_empty());

    let ip_excepted = query("excepted-ip.test", RecordType::A, Some(&app(SAFARI)));
    let response = gateway
        .harness
        .doh(&ip_excepted, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(first_address(&response), Some("10.99.0.5".parse().unwrap()));
    let events = gateway.harness.recorded.events_for("excepted-ip.test");
    assert_eq!(events[0].action, EventAction::BypassIp);
}

#[tokio::test]
async fn revoked_key_and_unknown_tenant_tokens_get_401() {
    let gateway = start().await;
    let question = query("shop.test", RecordType::A, None);
    let revoked = gateway.token("acme", "deleted-key");
    assert_eq!(
        gateway.harness.doh(&question, Some(&revoked)).await.status,
        401
    );
    let other_tenant = gateway.token("globex", "key1");
    assert_eq!(
        gateway
            .harness
            .doh(&question, Some(&other_tenant))
            .await
            .status,
        401
    );
}

#[tokio::test]
async fn location_source_is_answered_and_others_refused() {
    let gateway = start().await;
    let response = gateway
        .harness
        .udp(&query("blocked.test", RecordType::A, None))
        .await;
    assert_eq!(first_address(&response), Some("0.0.0.0".parse().unwrap()));
    let events = gateway.harness.recorded.events_for("blocked.test");
    assert_eq!(events[0].client.location.as_deref(), Some("hq"));

    let question = query("shop.test", RecordType::A, None);
    let refused = udp_exchange(gateway.harness.server.udp_addr(), "127.0.0.2:0", &question)
        .await
        .unwrap();
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
}

#[tokio::test]
async fn bypassed_app_filtered_over_plain_dns() {
    let gateway = start().await;
    let server = gateway.harness.server.udp_addr();

    // Any host in the location can claim the bundle id, in any case: policy applies.
    for claimed in ["com.acme.vpn", "COM.ACME.VPN"] {
        let question = query("blocked.test", RecordType::A, Some(&app(claimed)));
        let response = udp_exchange(server, "127.0.0.1:0", &question)
            .await
            .unwrap();
        assert_eq!(
            first_address(&response),
            Some("0.0.0.0".parse().unwrap()),
            "{claimed}"
        );
        let tcp = gateway.harness.tcp(&question).await;
        assert_eq!(
            first_address(&tcp),
            Some("0.0.0.0".parse().unwrap()),
            "{claimed} over TCP"
        );
    }
    let events = gateway.harness.recorded.events_for("blocked.test");
    assert_eq!(events.len(), 4);
    for event in &events {
        assert_eq!(event.action, EventAction::Block);
        assert_eq!(event.class, AppClass::App);
    }

    // ANY gets the RFC 8482 answer instead of going upstream.
    let before = gateway
        .harness
        .upstream
        .stats
        .queries
        .load(std::sync::atomic::Ordering::SeqCst);
    let any = query("shop.test", RecordType::ANY, Some(&app("com.acme.vpn")));
    let response = udp_exchange(server, "127.0.0.1:0", &any).await.unwrap();
    assert!(
        matches!(
            response.answers.first().map(|r| &r.data),
            Some(RData::HINFO(_))
        ),
        "{response:?}"
    );
    let after = gateway
        .harness
        .upstream
        .stats
        .queries
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after, before);

    // Over DoH the device token vouches for the agent: the app stays bypassed.
    let token = gateway.token("acme", "key1");
    let question = query("blocked.test", RecordType::A, Some(&app("com.acme.vpn")));
    let response = gateway
        .harness
        .doh(&question, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(
        first_address(&response),
        Some("192.0.2.10".parse().unwrap())
    );
    assert_eq!(gateway.harness.recorded.events_for("blocked.test").len(), 4);
}

#[tokio::test]
async fn plain_dns_trusted_claim_steered() {
    let gateway = start().await;
    let server = gateway.harness.server.udp_addr();
    let steered: IpAddr = "127.0.0.1".parse().unwrap();
    let upstream: IpAddr = "192.0.2.10".parse().unwrap();

    // The name has URL rules, so apps are steered to the proxy and trusted apps are
    // not. Any host in the location can claim the trusted bundle id, in any case.
    for claimed in ["com.acme.mail", "COM.ACME.MAIL"] {
        let question = query("url-rules.test", RecordType::A, Some(&app(claimed)));
        let response = udp_exchange(server, "127.0.0.1:0", &question)
            .await
            .unwrap();
        assert_eq!(first_address(&response), Some(steered), "{claimed}");
        let tcp = gateway.harness.tcp(&question).await;
        assert_eq!(first_address(&tcp), Some(steered), "{claimed} over TCP");
    }
    let events = gateway.harness.recorded.events_for("url-rules.test");
    assert_eq!(events.len(), 4);
    for event in &events {
        assert_eq!(event.action, EventAction::Inspect);
        assert_eq!(event.class, AppClass::App);
    }

    // Over DoH the device token vouches for the agent: the trusted app is not steered.
    let token = gateway.token("acme", "key1");
    let question = query("url-rules.test", RecordType::A, Some(&app("com.acme.mail")));
    let response = gateway
        .harness
        .doh(&question, Some(&token))
        .await
        .message
        .unwrap();
    assert_eq!(first_address(&response), Some(upstream));
    let events = gateway.harness.recorded.events_for("url-rules.test");
    assert_eq!(events.len(), 5);
    assert_eq!(events[4].action, EventAction::Allow);
    assert_eq!(events[4].class, AppClass::TrustedApp);
}

#[tokio::test]
async fn tenant_without_policy_token_gets_401() {
    let gateway = start().await;
    let question = query("shop.test", RecordType::A, None);
    let other_tenant = gateway.token("globex", "key1");
    let reply = gateway.harness.doh(&question, Some(&other_tenant)).await;
    assert_eq!(reply.status, 401);
    assert!(
        reply
            .text
            .contains("device token of a tenant that is not in the policy this gateway loaded"),
        "{}",
        reply.text
    );
    assert_eq!(
        gateway
            .harness
            .counter("swg_dns_refused_total", &[("reason", "unknown_tenant")]),
        1.0
    );
}

#[tokio::test]
async fn mapped_ipv4_source_matches_location() {
    let gateway = start_with(|config| {
        let mapped: std::net::SocketAddr = "[::ffff:127.0.0.1]:0".parse().unwrap();
        config.udp_listen = mapped;
        config.tcp_listen = mapped;
    })
    .await;
    let udp_port = gateway.harness.server.udp_addr().port();
    let question = query("blocked.test", RecordType::A, None);
    let server = std::net::SocketAddr::from(([127, 0, 0, 1], udp_port));
    let response = udp_exchange(server, "127.0.0.1:0", &question)
        .await
        .unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(first_address(&response), Some("0.0.0.0".parse().unwrap()));
    let events = gateway.harness.recorded.events_for("blocked.test");
    assert_eq!(events[0].client.location.as_deref(), Some("hq"));
    assert_eq!(events[0].client_ip, IpAddr::from([127, 0, 0, 1]));

    // The identifier also matches the mapped form when a caller passes it directly.
    let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
    assert_eq!(
        gateway
            .identifier
            .identify_source(mapped)
            .and_then(|client| client.location),
        Some("hq".to_owned())
    );
}
