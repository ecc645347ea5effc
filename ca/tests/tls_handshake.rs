//! Real TLS 1.3 and 1.2 handshakes over loopback TCP between a rustls client
//! that trusts only the generated root and a rustls server that presents
//! leaves from the cache.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Barrier};

use common::{handshake, start_server, Fixture};
use rustls::ProtocolVersion;

const VERSIONS: [(&rustls::SupportedProtocolVersion, ProtocolVersion); 2] = [
    (&rustls::version::TLS13, ProtocolVersion::TLSv1_3),
    (&rustls::version::TLS12, ProtocolVersion::TLSv1_2),
];

async fn assert_handshakes(fixture: &Fixture, bind: &str, server_name: &str) {
    let address = start_server(Arc::clone(&fixture.cache), bind).await;
    for (version, expected) in VERSIONS {
        let negotiated = handshake(&fixture.root, address, server_name, version).await;
        assert_eq!(negotiated, Ok(expected), "{server_name} over {expected:?}");
    }
}

#[tokio::test]
async fn plain_host_handshakes() {
    let fixture = Fixture::new();
    assert_handshakes(&fixture, "127.0.0.1:0", "www.example.com").await;
    assert_eq!(
        fixture.mints(),
        1,
        "the second handshake reuses the cached leaf"
    );
}

#[tokio::test]
async fn unicode_host_is_served_by_its_a_label() {
    let fixture = Fixture::new();
    // The proxy requests the host as the user typed it; the browser's SNI is
    // the A-label. Both must land on the same cached leaf.
    fixture.cache.get("Bücher.example").unwrap();
    assert_handshakes(&fixture, "127.0.0.1:0", "xn--bcher-kva.example").await;
    assert_eq!(fixture.mints(), 1);
}

#[tokio::test]
async fn ipv4_literal_handshakes() {
    let fixture = Fixture::new();
    assert_handshakes(&fixture, "127.0.0.1:0", "127.0.0.1").await;
}

#[tokio::test]
async fn ipv6_literal_handshakes() {
    let fixture = Fixture::new();
    assert_handshakes(&fixture, "[::1]:0", "::1").await;
}

#[tokio::test]
async fn host_of_70_characters_handshakes_without_common_name() {
    let fixture = Fixture::new();
    let host = format!("{}.example.com", "a".repeat(58));
    assert_eq!(host.len(), 70);
    assert_handshakes(&fixture, "127.0.0.1:0", &host).await;
}

#[tokio::test]
async fn host_with_10_labels_handshakes() {
    let fixture = Fixture::new();
    let host = "a.b.c.d.e.f.g.h.example.com";
    assert_eq!(host.split('.').count(), 10);
    assert_handshakes(&fixture, "127.0.0.1:0", host).await;
}

#[tokio::test]
async fn client_trusting_another_root_rejects_the_leaf() {
    let fixture = Fixture::new();
    let other = Fixture::new();
    let address = start_server(Arc::clone(&fixture.cache), "127.0.0.1:0").await;
    let result = handshake(
        &other.root,
        address,
        "www.example.com",
        &rustls::version::TLS13,
    )
    .await;
    let error = result.unwrap_err();
    // Both roots share the default subject, so the client finds the other
    // root by name and rejects the signature.
    assert!(error.contains("invalid peer certificate"), "{error}");
}

#[test]
fn concurrent_requests_for_one_host_mint_once() {
    let fixture = Fixture::new();
    let barrier = Arc::new(Barrier::new(64));
    let leaves: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..64)
            .map(|_| {
                let barrier = Arc::clone(&barrier);
                let cache = &fixture.cache;
                scope.spawn(move || {
                    barrier.wait();
                    cache.get("concurrent.example").unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    assert_eq!(fixture.mints(), 1);
    assert!(
        leaves.iter().all(|leaf| Arc::ptr_eq(leaf, &leaves[0])),
        "every caller got the same leaf"
    );
    let hits = fixture.counter("swg_leaf_cache_hits_total");
    let misses = fixture.counter("swg_leaf_cache_misses_total");
    assert_eq!(hits + misses, 64);
    assert!(misses >= 1);
}

#[test]
fn cache_metrics_count_hits_misses_and_entries() {
    let fixture = Fixture::new();
    fixture.cache.get("one.example").unwrap();
    fixture.cache.get("two.example").unwrap();
    fixture.cache.get("ONE.example.").unwrap();

    assert_eq!(fixture.counter("swg_leaf_cache_misses_total"), 2);
    assert_eq!(fixture.counter("swg_leaf_cache_hits_total"), 1);
    assert_eq!(fixture.mints(), 2);
    assert_eq!(fixture.gauge("swg_leaf_cache_entries"), 2);
}

#[test]
fn invalid_host_returns_error_and_mints_nothing() {
    let fixture = Fixture::new();
    let long_label = format!("{}.example", "x".repeat(64));
    for host in [
        "",
        "a..b",
        long_label.as_str(),
        "bad host.example",
        "*.example.com",
    ] {
        assert!(fixture.cache.get(host).is_err(), "{host:?} was accepted");
    }
    assert_eq!(fixture.mints(), 0);
}

#[test]
fn second_cache_in_one_registry_is_an_error() {
    let fixture = Fixture::new();
    let second = swg_ca::LeafCache::new(
        Arc::clone(&fixture.root),
        &swg_ca::LeafConfig::default(),
        &fixture.registry,
    );
    assert!(matches!(second, Err(swg_ca::LeafCacheError::Metrics(_))));
}
