#![allow(clippy::unwrap_used)]
//! Issue and verify every signed value, and pin every rejection case.

use swg_identity::{
    AppClass, Discovery, Identity, IdentityConfig, InProcessSpentTickets, LiveKeys, Rejection,
    Signer, SigningKeys, MAX_SIGNED_VALUE_LEN,
};

const NOW: u64 = 1_800_000_000;

fn keys(entries: &[(&str, u8)]) -> SigningKeys {
    let secrets: Vec<(String, Vec<u8>)> = entries
        .iter()
        .map(|(id, fill)| ((*id).to_owned(), vec![*fill; 32]))
        .collect();
    SigningKeys::from_secrets("test", &secrets).unwrap()
}

fn signer_with(entries: &[(&str, u8)]) -> (Signer, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let signer = Signer::new(keys(entries), &IdentityConfig::default(), &registry).unwrap();
    (signer, registry)
}

fn signer() -> Signer {
    signer_with(&[("k1", 1)]).0
}

fn live(pairs: &[(&str, &str)]) -> LiveKeys {
    let live = LiveKeys::new();
    live.replace(
        pairs
            .iter()
            .map(|(t, k)| ((*t).to_owned(), (*k).to_owned())),
    );
    live
}

fn identity() -> Identity {
    Identity {
        tenant: "acme".to_owned(),
        device: "device-1".to_owned(),
        user: "alice@acme.example".to_owned(),
        app_bundle_id: Some("com.apple.mobilesafari".to_owned()),
        app_class: AppClass::Browser,
        discovery: Discovery::Token,
    }
}

fn rejections(registry: &prometheus::Registry, metric: &str, reason: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == metric)
        .flat_map(|family| family.get_metric().iter())
        .filter(|m| {
            m.get_label()
                .iter()
                .any(|l| l.name() == "reason" && l.value() == reason)
        })
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// Flips one character of the payload part, keeping it valid base64url.
fn tamper_payload(value: &str) -> String {
    let parts: Vec<&str> = value.split('.').collect();
    let mut payload: Vec<char> = parts[3].chars().collect();
    payload[4] = if payload[4] == 'A' { 'B' } else { 'A' };
    let payload: String = payload.into_iter().collect();
    format!(
        "{}.{}.{}.{}.{}",
        parts[0], parts[1], parts[2], payload, parts[4]
    )
}

#[test]
fn device_token_round_trip_carries_claims() {
    let signer = signer();
    let issued = signer.issue_device_token("acme", "device-1", "alice", "key-a", NOW);
    assert!(issued.token.starts_with("v1.dt.k1."));
    assert_eq!(issued.claims.expires_at, NOW + 24 * 3600);

    let claims = signer
        .verify_device_token(&issued.token, NOW + 10, &live(&[("acme", "key-a")]))
        .unwrap();
    assert_eq!(claims.tenant, "acme");
    assert_eq!(claims.device, "device-1");
    assert_eq!(claims.user, "alice");
    assert_eq!(claims.key_id, "key-a");
    assert_eq!(claims.issued_at, NOW);
}

#[test]
fn device_token_from_unknown_signing_key_is_rejected() {
    let (other, _) = signer_with(&[("k9", 9)]);
    let token = other
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let result = signer.verify_device_token(&token, NOW, &live(&[("acme", "key-a")]));
    assert_eq!(result, Err(Rejection::UnknownSigningKey));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_token_rejections_total",
            "unknown_signing_key"
        ),
        1
    );
}

#[test]
fn device_token_from_other_secret_same_id_is_rejected() {
    let (other, _) = signer_with(&[("k1", 7)]);
    let token = other
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let result = signer().verify_device_token(&token, NOW, &live(&[("acme", "key-a")]));
    assert_eq!(result, Err(Rejection::BadSignature));
}

#[test]
fn device_token_of_deleted_key_is_rejected() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let token = signer
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let live_keys = live(&[("acme", "key-a"), ("acme", "key-b")]);
    assert!(signer.verify_device_token(&token, NOW, &live_keys).is_ok());

    live_keys.replace([("acme".to_owned(), "key-b".to_owned())]);
    let result = signer.verify_device_token(&token, NOW, &live_keys);
    assert_eq!(result, Err(Rejection::RevokedKey));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_token_rejections_total",
            "revoked_key"
        ),
        1
    );
}

#[test]
fn device_token_key_id_of_other_tenant_is_not_live() {
    let signer = signer();
    let token = signer
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let result = signer.verify_device_token(&token, NOW, &live(&[("globex", "key-a")]));
    assert_eq!(result, Err(Rejection::RevokedKey));
}

#[test]
fn device_token_expires_after_ttl() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let token = signer
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let live_keys = live(&[("acme", "key-a")]);
    assert!(signer
        .verify_device_token(&token, NOW + 24 * 3600 - 1, &live_keys)
        .is_ok());
    let result = signer.verify_device_token(&token, NOW + 24 * 3600, &live_keys);
    assert_eq!(result, Err(Rejection::Expired));
    assert_eq!(
        rejections(&registry, "swg_identity_token_rejections_total", "expired"),
        1
    );
}

#[test]
fn device_token_tampered_payload_is_rejected() {
    let signer = signer();
    let token = signer
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let result =
        signer.verify_device_token(&tamper_payload(&token), NOW, &live(&[("acme", "key-a")]));
    assert_eq!(result, Err(Rejection::BadSignature));
}

#[test]
fn device_token_of_other_tenant_is_rejected() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let token = signer
        .issue_device_token("globex", "d", "u", "key-g", NOW)
        .token;
    let live_keys = live(&[("acme", "key-a"), ("globex", "key-g")]);
    let result = signer.verify_device_token_for_tenant(&token, "acme", NOW, &live_keys);
    assert_eq!(result, Err(Rejection::WrongTenant));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_token_rejections_total",
            "wrong_tenant"
        ),
        1
    );
}

#[test]
fn device_token_truncated_is_rejected() {
    let signer = signer();
    let token = signer
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let live_keys = live(&[("acme", "key-a")]);
    for cut in [1, 5, 20, token.len() / 2, token.len() - 10] {
        let truncated = &token[..token.len() - cut];
        let result = signer.verify_device_token(truncated, NOW, &live_keys);
        assert!(
            matches!(result, Err(Rejection::Malformed | Rejection::BadSignature)),
            "cut {cut}: {result:?}"
        );
    }
    assert_eq!(
        signer.verify_device_token("", NOW, &live_keys),
        Err(Rejection::Malformed)
    );
}

#[test]
fn device_token_oversized_is_rejected_unread() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let huge = format!("v1.dt.k1.{}.AAAA", "A".repeat(MAX_SIGNED_VALUE_LEN));
    let result = signer.verify_device_token(&huge, NOW, &live(&[]));
    assert_eq!(result, Err(Rejection::Oversized));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_token_rejections_total",
            "oversized"
        ),
        1
    );
}

#[test]
fn device_token_other_version_is_rejected() {
    let signer = signer();
    let token = signer
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    let v2 = token.replacen("v1.", "v2.", 1);
    assert_eq!(
        signer.verify_device_token(&v2, NOW, &live(&[("acme", "key-a")])),
        Err(Rejection::UnsupportedVersion)
    );
}

#[test]
fn rotated_keys_verify_old_and_new_tokens() {
    let (old, _) = signer_with(&[("k1", 1)]);
    let old_token = old.issue_device_token("acme", "d", "u", "key-a", NOW).token;
    let (rotated, _) = signer_with(&[("k2", 2), ("k1", 1)]);
    let new_token = rotated
        .issue_device_token("acme", "d", "u", "key-a", NOW)
        .token;
    assert!(new_token.starts_with("v1.dt.k2."));

    let live_keys = live(&[("acme", "key-a")]);
    assert!(rotated
        .verify_device_token(&old_token, NOW, &live_keys)
        .is_ok());
    assert!(rotated
        .verify_device_token(&new_token, NOW, &live_keys)
        .is_ok());
    assert_eq!(
        old.verify_device_token(&new_token, NOW, &live_keys),
        Err(Rejection::UnknownSigningKey)
    );
}

#[test]
fn value_of_other_purpose_is_rejected() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let cookie = signer.issue_identity_cookie(&identity(), "example.com", NOW);
    let result = signer.verify_device_token(&cookie, NOW, &live(&[("acme", "key-a")]));
    assert_eq!(result, Err(Rejection::WrongPurpose));

    // Relabelling the purpose does not help: the purpose is inside the MAC input.
    let relabelled = cookie.replacen(".id.", ".dt.", 1);
    let result = signer.verify_device_token(&relabelled, NOW, &live(&[("acme", "key-a")]));
    assert_eq!(result, Err(Rejection::BadSignature));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_token_rejections_total",
            "wrong_purpose"
        ),
        1
    );
}

#[test]
fn identity_cookie_round_trip_on_same_host() {
    let signer = signer();
    let cookie = signer.issue_identity_cookie(&identity(), "WWW.Example.com.", NOW);
    let claims = signer
        .verify_identity_cookie(&cookie, "www.example.com", NOW + 5)
        .unwrap();
    assert_eq!(claims.host, "www.example.com");
    assert_eq!(claims.app_class, AppClass::Browser);
    assert_eq!(claims.expires_at, NOW + 24 * 3600);
    let identity = claims.into_identity();
    assert_eq!(identity.device, "device-1");
    assert_eq!(identity.discovery, Discovery::Cookie);
}

#[test]
fn identity_cookie_on_other_host_is_rejected() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let cookie = signer.issue_identity_cookie(&identity(), "www.example.com", NOW);
    let result = signer.verify_identity_cookie(&cookie, "mail.example.com", NOW);
    assert_eq!(result, Err(Rejection::WrongAudience));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_signed_value_rejections_total",
            "wrong_audience"
        ),
        1
    );
}

#[test]
fn identity_cookie_expired_and_tampered_are_rejected() {
    let signer = signer();
    let cookie = signer.issue_identity_cookie(&identity(), "example.com", NOW);
    assert_eq!(
        signer.verify_identity_cookie(&cookie, "example.com", NOW + 24 * 3600),
        Err(Rejection::Expired)
    );
    assert_eq!(
        signer.verify_identity_cookie(&tamper_payload(&cookie), "example.com", NOW),
        Err(Rejection::BadSignature)
    );
}

#[test]
fn ack_cookie_covers_registrable_domain() {
    let signer = signer();
    let cookie = signer.acknowledge_warning(None, "acme", "www.shop.example.co.uk", "rule-7", NOW);
    let claims = signer
        .verify_ack_cookie(&cookie, "acme", "cdn.example.co.uk", NOW + 60)
        .unwrap();
    assert_eq!(claims.domain, "example.co.uk");
    assert!(claims.acknowledges("rule-7", NOW + 60));
    assert!(!claims.acknowledges("rule-8", NOW + 60));
    assert!(!claims.acknowledges("rule-7", NOW + 3600));
}

#[test]
fn ack_cookie_on_other_domain_or_tenant_is_rejected() {
    let signer = signer();
    let cookie = signer.acknowledge_warning(None, "acme", "www.example.com", "rule-7", NOW);
    assert_eq!(
        signer.verify_ack_cookie(&cookie, "acme", "www.example.org", NOW),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        signer.verify_ack_cookie(&cookie, "globex", "www.example.com", NOW),
        Err(Rejection::WrongTenant)
    );
    assert_eq!(
        signer.verify_ack_cookie(&cookie, "acme", "www.example.com", NOW + 3600),
        Err(Rejection::Expired)
    );
}

#[test]
fn ack_cookie_accumulates_rules_and_drops_expired() {
    let signer = signer();
    let first = signer.acknowledge_warning(None, "acme", "example.com", "rule-1", NOW);
    let second =
        signer.acknowledge_warning(Some(&first), "acme", "example.com", "rule-2", NOW + 3000);
    let claims = signer
        .verify_ack_cookie(&second, "acme", "example.com", NOW + 3500)
        .unwrap();
    assert!(claims.acknowledges("rule-1", NOW + 3500));
    assert!(claims.acknowledges("rule-2", NOW + 3500));
    assert_eq!(claims.expires_at, NOW + 3000 + 3600);

    let third =
        signer.acknowledge_warning(Some(&second), "acme", "example.com", "rule-3", NOW + 3700);
    let claims = signer
        .verify_ack_cookie(&third, "acme", "example.com", NOW + 3700)
        .unwrap();
    let rules: Vec<&str> = claims.entries.iter().map(|e| e.rule_id.as_str()).collect();
    assert_eq!(rules, ["rule-2", "rule-3"]);
}

#[test]
fn ack_cookie_keeps_newest_entries_within_bound() {
    let signer = signer();
    let mut cookie: Option<String> = None;
    for index in 0..40 {
        let rule = format!("rule-{index}-{}", "x".repeat(100));
        cookie =
            Some(signer.acknowledge_warning(cookie.as_deref(), "acme", "example.com", &rule, NOW));
    }
    let cookie = cookie.unwrap();
    assert!(cookie.len() <= MAX_SIGNED_VALUE_LEN);
    let claims = signer
        .verify_ack_cookie(&cookie, "acme", "example.com", NOW)
        .unwrap();
    assert!(claims.entries.len() <= swg_identity::MAX_ACK_ENTRIES);
    assert!(claims.acknowledges(&format!("rule-39-{}", "x".repeat(100)), NOW));
    assert!(!claims.acknowledges(&format!("rule-0-{}", "x".repeat(100)), NOW));
}

#[tokio::test]
async fn ticket_is_single_use() {
    let (signer, registry) = signer_with(&[("k1", 1)]);
    let spent = InProcessSpentTickets::default();
    let now = swg_identity::unix_now();
    let ticket = signer.issue_ticket(&identity(), "www.example.com", now);

    let claims = signer
        .redeem_ticket(&ticket, "www.example.com", now, &spent)
        .await
        .unwrap();
    assert_eq!(claims.device, "device-1");
    assert_eq!(claims.expires_at, now + 60);
    assert_eq!(claims.into_identity().discovery, Discovery::Ticket);

    let replay = signer
        .redeem_ticket(&ticket, "www.example.com", now, &spent)
        .await;
    assert_eq!(replay, Err(Rejection::Replayed));
    assert_eq!(
        rejections(
            &registry,
            "swg_identity_signed_value_rejections_total",
            "replayed"
        ),
        1
    );
}

#[tokio::test]
async fn ticket_on_other_host_or_late_is_rejected() {
    let signer = signer();
    let spent = InProcessSpentTickets::default();
    let now = swg_identity::unix_now();
    let ticket = signer.issue_ticket(&identity(), "www.example.com", now);
    assert_eq!(
        signer
            .redeem_ticket(&ticket, "evil.example.net", now, &spent)
            .await,
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        signer
            .redeem_ticket(&ticket, "www.example.com", now + 60, &spent)
            .await,
        Err(Rejection::Expired)
    );
    // Neither failed attempt spent the ticket.
    assert!(signer
        .redeem_ticket(&ticket, "www.example.com", now, &spent)
        .await
        .is_ok());
}

#[tokio::test]
async fn continue_form_binds_tenant_host_and_device() {
    let signer = signer();
    let spent = InProcessSpentTickets::default();
    let now = swg_identity::unix_now();
    let url = "https://www.example.com/path?q=1";
    let form = signer
        .issue_continue_form("acme", "device-1", "www.example.com", "rule-7", url, now)
        .unwrap();

    let cases = [
        (
            "globex",
            "device-1",
            "www.example.com",
            Rejection::WrongTenant,
        ),
        (
            "acme",
            "device-2",
            "www.example.com",
            Rejection::WrongDevice,
        ),
        (
            "acme",
            "device-1",
            "other.example.com",
            Rejection::WrongAudience,
        ),
    ];
    for (tenant, device, host, expected) in cases {
        let result = signer
            .redeem_continue_form(&form, tenant, device, host, now, &spent)
            .await;
        assert_eq!(result, Err(expected), "{tenant} {device} {host}");
    }

    let claims = signer
        .redeem_continue_form(&form, "acme", "device-1", "www.example.com", now, &spent)
        .await
        .unwrap();
    assert_eq!(claims.rule_id, "rule-7");
    assert_eq!(claims.url, url);
    assert_eq!(
        signer
            .redeem_continue_form(&form, "acme", "device-1", "www.example.com", now, &spent)
            .await,
        Err(Rejection::Replayed)
    );
}

#[test]
fn continue_form_with_huge_url_is_refused_at_issue() {
    let signer = signer();
    let url = format!("https://example.com/{}", "a".repeat(MAX_SIGNED_VALUE_LEN));
    assert!(signer
        .issue_continue_form("acme", "d", "example.com", "r", &url, NOW)
        .is_err());
}

#[tokio::test]
async fn return_url_is_single_use_on_auth_host() {
    let signer = signer();
    let spent = InProcessSpentTickets::default();
    let now = swg_identity::unix_now();
    let value = signer
        .issue_return_url(
            "www.example.com",
            "https://www.example.com/a",
            "auth.swg.test",
            now,
        )
        .unwrap();
    assert_eq!(
        signer
            .redeem_return_url(&value, "auth.other.test", now, &spent)
            .await,
        Err(Rejection::WrongAudience)
    );
    let claims = signer
        .redeem_return_url(&value, "auth.swg.test", now, &spent)
        .await
        .unwrap();
    assert_eq!(claims.host, "www.example.com");
    assert_eq!(claims.url, "https://www.example.com/a");
    assert_eq!(
        signer
            .redeem_return_url(&value, "auth.swg.test", now, &spent)
            .await,
        Err(Rejection::Replayed)
    );
}

#[test]
fn gateway_cookie_lasts_a_year_on_auth_host_only() {
    let signer = signer();
    let cookie = signer.issue_gateway_cookie(&identity(), "auth.swg.test", NOW);
    let claims = signer
        .verify_gateway_cookie(&cookie, "auth.swg.test", NOW + 364 * 86_400)
        .unwrap();
    assert_eq!(claims.device, "device-1");
    assert_eq!(claims.expires_at, NOW + 365 * 86_400);
    assert_eq!(
        signer.verify_gateway_cookie(&cookie, "www.example.com", NOW),
        Err(Rejection::WrongAudience)
    );
    assert_eq!(
        signer.verify_gateway_cookie(&cookie, "auth.swg.test", NOW + 365 * 86_400),
        Err(Rejection::Expired)
    );
    // A gateway cookie is not an identity cookie, even on its own host.
    assert_eq!(
        signer.verify_identity_cookie(&cookie, "auth.swg.test", NOW),
        Err(Rejection::WrongPurpose)
    );
}

#[test]
fn garbage_inputs_are_rejected_without_panic() {
    let signer = signer();
    let live_keys = live(&[("acme", "key-a")]);
    let inputs = [
        "",
        ".",
        "....",
        "v1",
        "v1.dt",
        "v1.dt.k1",
        "v1.dt.k1.e30",
        "v1.dt.k1.e30.",
        "v1.dt.k1.!!!.AAAA",
        "v1.dt.k1.e30.!!!",
        "x1.dt.k1.e30.AAAA",
        "v1.dt.k1.\u{00e9}\u{00e9}.AAAA",
    ];
    for input in inputs {
        assert!(
            signer.verify_device_token(input, NOW, &live_keys).is_err(),
            "{input:?}"
        );
    }
}

/// A spent-ticket store that cannot be reached.
struct UnreachableStore;

impl swg_identity::SpentTickets for UnreachableStore {
    fn spend<'a>(
        &'a self,
        _id: &'a str,
        _expires_at: u64,
    ) -> swg_identity::BoxFuture<'a, Result<bool, swg_identity::SpentTicketsError>> {
        Box::pin(async {
            Err(swg_identity::SpentTicketsError::Unavailable(
                "connection refused".to_owned(),
            ))
        })
    }
}

#[tokio::test]
async fn ticket_is_rejected_when_spent_store_fails() {
    let signer = signer();
    let now = swg_identity::unix_now();
    let ticket = signer.issue_ticket(&identity(), "www.example.com", now);
    let result = signer
        .redeem_ticket(&ticket, "www.example.com", now, &UnreachableStore)
        .await;
    assert_eq!(result, Err(Rejection::SpentStoreUnavailable));
}
