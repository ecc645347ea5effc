//! Chromium through the TLS landing: identification by hint, identity cookie and
//! the auth host, and warn with "continue", with swg's real pages.
//!
//! Run with `cargo test -p swg-proxy --test browser -- --ignored`; needs the Debian
//! package `chromium` (or `$SWG_CHROMIUM`).

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use base64::Engine;
use support::{origin, Harness, AUTH_HOST};
use swg_proxy::adapters::BlockPages;
use swg_proxy::boundary::{Action, Discovery, LeafSource};
use swg_test_harness::{BrowserOptions, Chromium, Tab};

const SITE: &str = "www.site.example";
const OTHER_SITE: &str = "other.site.example";
const WARN_SITE: &str = "www.warn.example";

/// Returns the base64 SHA-256 of the SubjectPublicKeyInfo of the leaf the landing presents
/// for `host`, which Chromium then accepts.
fn leaf_spki_hash(harness: &Harness, host: &str) -> String {
    let leaf = harness.leaves.leaf(host).unwrap();
    let (_, certificate) = x509_parser::parse_x509_certificate(leaf.cert[0].as_ref()).unwrap();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        certificate.tbs_certificate.subject_pki.raw,
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Returns the last event recorded for `url`.
fn event_for(harness: &Harness, url: &str) -> swg_proxy::boundary::ProxyEvent {
    let events = harness.events.0.lock().unwrap();
    let found = events.iter().rev().find(|event| event.url == url).cloned();
    found.unwrap_or_else(|| panic!("no event for {url}"))
}

/// Returns the document's URL as the page's own `location.href` reports it.
async fn current_url(tab: &Tab) -> String {
    tab.evaluate_string("location.href").await.unwrap()
}

async fn text_of(tab: &Tab) -> String {
    tab.visible_text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium; run by .ci/run"]
async fn chromium_identity_flows_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let pages =
        swg_blockpages::Pages::new(&swg_blockpages::PagesConfig::default(), dir.path()).unwrap();
    let harness = Harness::start_with_pages(
        |config| {
            config.static_hosts = support::static_hosts(&[
                (SITE, "127.0.0.1"),
                (OTHER_SITE, "127.0.0.1"),
                (WARN_SITE, "127.0.0.1"),
            ]);
        },
        Arc::new(BlockPages(Arc::new(pages))),
    )
    .await;
    let certificate = harness.origin_ca.valid_leaf(&[SITE, OTHER_SITE, WARN_SITE]);
    let port = origin::start_https(certificate, &[b"h2", b"http/1.1"])
        .await
        .port();
    harness.policy.warn_prefixes.lock().unwrap().extend([
        (
            format!("https://{WARN_SITE}:{port}/small"),
            "rule-a".to_owned(),
            "newly-seen".to_owned(),
        ),
        (
            format!("https://{WARN_SITE}:{port}/headers"),
            "rule-b".to_owned(),
            "newly-seen".to_owned(),
        ),
    ]);

    // Every site and the auth host on the origin's port reach the TLS landing.
    let options = BrowserOptions {
        host_resolver_rules: Some(format!(
            "MAP *:{port} 127.0.0.1:{}, EXCLUDE localhost",
            harness.tls.port()
        )),
        ignore_certificate_errors_spki_list: [SITE, OTHER_SITE, WARN_SITE, AUTH_HOST]
            .iter()
            .map(|host| leaf_spki_hash(&harness, host))
            .collect(),
        ..BrowserOptions::default()
    };
    let chromium = Chromium::launch(options).await.unwrap();
    let tab = chromium.new_tab().await.unwrap();

    // First visit: the hint identifies the device; the gateway cookie is set on the
    // auth host on the way, and the origin page shows.
    tab.goto(&format!("https://{SITE}:{port}/set-cookie"))
        .await
        .unwrap();
    assert_eq!(
        current_url(&tab).await,
        format!("https://{SITE}:{port}/set-cookie")
    );
    assert_eq!(text_of(&tab).await.trim(), "cookie set");
    tab.goto(&format!("https://{SITE}:{port}/headers"))
        .await
        .unwrap();
    let headers = text_of(&tab).await;
    assert!(headers.contains("cookie: site=1"), "{headers}");
    assert!(!headers.contains("__swg"), "{headers}");

    // Second visit after the hint is gone: the identity cookie identifies.
    *harness.identify.hints_enabled.lock().unwrap() = false;
    tab.goto(&format!("https://{SITE}:{port}/small"))
        .await
        .unwrap();
    assert_eq!(text_of(&tab).await.trim(), "hello from origin");
    let last = event_for(&harness, &format!("https://{SITE}:{port}/small"));
    assert_eq!(last.identity.unwrap().discovery, Discovery::Cookie);

    // A site with neither cookie nor hint: through the auth host and back, once.
    tab.clear_record();
    tab.goto(&format!("https://{OTHER_SITE}:{port}/small?from=browser"))
        .await
        .unwrap();
    assert_eq!(
        current_url(&tab).await,
        format!("https://{OTHER_SITE}:{port}/small?from=browser")
    );
    assert_eq!(text_of(&tab).await.trim(), "hello from origin");
    let auth_visits = tab
        .requests()
        .iter()
        .filter(|request| request.url.contains(AUTH_HOST))
        .count();
    assert_eq!(auth_visits, 1, "{:?}", tab.requests());
    let landed = event_for(
        &harness,
        &format!("https://{OTHER_SITE}:{port}/small?from=browser"),
    );
    assert_eq!(landed.action, Action::Allow);
    let identity = landed.identity.unwrap();
    assert_eq!(identity.device, "device-1");
    assert_eq!(identity.discovery, Discovery::Cookie);

    // Warn: the page, "continue" to the origin, no warning on reload, and a
    // different rule on the same site warns again.
    tab.goto(&format!("https://{WARN_SITE}:{port}/small"))
        .await
        .unwrap();
    let warn_page = text_of(&tab).await;
    assert!(warn_page.contains("Continue to site"), "{warn_page}");
    tab.click_and_wait_for_navigation("form button[type=submit]")
        .await
        .unwrap();
    assert_eq!(
        current_url(&tab).await,
        format!("https://{WARN_SITE}:{port}/small")
    );
    assert_eq!(text_of(&tab).await.trim(), "hello from origin");
    let accepted = harness
        .events
        .0
        .lock()
        .unwrap()
        .iter()
        .any(|event| event.action == Action::Accepted);
    assert!(accepted);

    tab.goto(&format!("https://{WARN_SITE}:{port}/small"))
        .await
        .unwrap();
    assert_eq!(text_of(&tab).await.trim(), "hello from origin");

    tab.goto(&format!("https://{WARN_SITE}:{port}/headers"))
        .await
        .unwrap();
    assert!(text_of(&tab).await.contains("Continue to site"));

    drop(tab);
    chromium.close().await;
}
