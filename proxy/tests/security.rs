//! Origin certificate failures and SSRF attempts through the proxy. Every SSRF
//! target is a loopback address, so a broken guard cannot reach another network.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use support::{curl, origin, pki, Harness};
use swg_proxy::boundary::Action;
use swg_proxy::destination::Refusal;
use swg_proxy::upstream::UpstreamFailure;
use time::{Duration, OffsetDateTime};
use tokio::net::TcpListener;

#[tokio::test]
async fn invalid_origin_certificates_get_error_pages() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[
            ("expired.test", "127.0.0.1"),
            ("wrongname.test", "127.0.0.1"),
            ("selfsigned.test", "127.0.0.1"),
            ("untrusted.test", "127.0.0.1"),
        ]);
    })
    .await;
    let now = OffsetDateTime::now_utc();
    let expired = harness.origin_ca.leaf(
        &["expired.test"],
        now - Duration::days(60),
        now - Duration::days(1),
    );
    let wrong_name = harness.origin_ca.valid_leaf(&["other.test"]);
    let self_signed = pki::self_signed_leaf("selfsigned.test");
    let untrusted = pki::TestCa::new("untrusted CA").valid_leaf(&["untrusted.test"]);

    let cases = [
        (
            "expired.test",
            expired,
            "swg-page: upstream-error certificate expired",
        ),
        (
            "wrongname.test",
            wrong_name,
            "swg-page: upstream-error certificate wrong_name",
        ),
        (
            "selfsigned.test",
            self_signed,
            "swg-page: upstream-error certificate self_signed",
        ),
        (
            "untrusted.test",
            untrusted,
            "swg-page: upstream-error certificate untrusted_issuer",
        ),
    ];
    for (host, certificate, expected) in cases {
        let address = origin::start_https(certificate, &[b"h2", b"http/1.1"]).await;
        let url = format!("https://{host}:{}/small", address.port());

        let result = curl(harness.explicit_args(), &url).await;
        assert_eq!(result.status, 502, "{host}: {}", result.stderr);
        assert_eq!(result.body, format!("{expected}\n"), "{host}");

        let result = curl(harness.landing_args(host, address.port()), &url).await;
        assert_eq!(result.status, 502, "{host}: {}", result.stderr);
        assert_eq!(result.body, format!("{expected}\n"), "{host}");
    }
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "certificate")]
        ),
        8.0
    );
}

/// A listener that counts the connections it receives.
async fn counting_listener(address: &str) -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind(address).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counter = count.clone();
    tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, count)
}

/// With loopback allowed as a destination, a request aimed at one of swg's own
/// listeners is refused instead of looping back into swg.
#[tokio::test]
async fn own_listeners_refused_when_loopback_allowed() {
    let harness = Harness::start(|_| {}).await;
    let targets = [
        format!("http://127.0.0.1:{}/", harness.http.port()),
        format!("http://127.0.0.1:{}/", harness.explicit.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", harness.http.port()),
    ];
    for url in &targets {
        let result = curl(harness.explicit_args(), url).await;
        assert_eq!(result.status, 403, "{url}: {}", result.stderr);
        assert_eq!(
            result.body, "swg-page: upstream-error destination_refused own_address\n",
            "{url}"
        );
    }
    let tunnel = format!("https://127.0.0.1:{}/", harness.tls.port());
    let result = curl(harness.explicit_args(), &tunnel).await;
    assert_eq!(result.status, 403, "{}", result.stderr);
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("listener", "http")]),
        0.0
    );
    assert_eq!(
        harness.metric("swg_proxy_requests_total", &[("listener", "tls")]),
        0.0
    );
}

#[tokio::test]
async fn ssrf_attempts_refused_without_connecting() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("loopback-name.test", "127.0.0.2")]);
    })
    .await;
    let (port, connections) = counting_listener("127.0.0.2:0").await;

    let targets = [
        format!("http://127.0.0.2:{port}/"),
        format!("http://2130706434:{port}/"),
        format!("http://0x7f000002:{port}/"),
        format!("http://loopback-name.test:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        format!("http://[::1]:{port}/"),
        format!("http://[::ffff:127.0.0.2]:{port}/"),
    ];
    for url in &targets {
        let result = curl(harness.explicit_args(), url).await;
        assert_eq!(result.status, 403, "{url}: {}", result.stderr);
        assert_eq!(
            result.body, "swg-page: upstream-error destination_refused loopback\n",
            "{url}"
        );
    }

    // The same through a CONNECT tunnel and through the plain landing.
    let tunnel = format!("https://127.0.0.2:{port}/");
    let result = curl(harness.explicit_args(), &tunnel).await;
    assert_eq!(result.status, 403, "{}", result.stderr);
    let landing = support::args(&[
        "--connect-to",
        &format!("::127.0.0.1:{}", harness.http.port()),
    ]);
    let result = curl(landing, &format!("http://2130706434:{port}/")).await;
    assert_eq!(result.status, 403, "{}", result.stderr);

    assert_eq!(connections.load(Ordering::SeqCst), 0);
    let events = harness.events.0.lock().unwrap();
    assert_eq!(events.len(), targets.len() + 2);
    for event in events.iter() {
        assert_eq!(event.action, Action::Block, "{}", event.url);
        assert_eq!(
            event.failure,
            Some(UpstreamFailure::DestinationRefused(Refusal::Loopback)),
            "{}",
            event.url
        );
    }
    drop(events);
    let refused = harness.metric(
        "swg_proxy_upstream_errors_total",
        &[("kind", "destination_refused")],
    );
    assert_eq!(refused, targets.len() as f64 + 2.0);
}
