//! DoT and DoH upstreams over real TLS: rustls test servers on loopback with a leaf
//! from a test CA that the resolver trusts through `upstream_extra_roots`.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::Ordering;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use support::secure_upstream::{SecureUpstream, TestCa};
use support::*;

const DOT_NAME: &str = "dot.upstream.test";
const DOH_NAME: &str = "doh.upstream.test";

fn ipv4_answers(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            _ => None,
        })
        .collect()
}

async fn harness_with(ca: &TestCa, upstream: String, timeout_ms: u64) -> Harness {
    let roots = vec![ca.pem_path()];
    Harness::start_with(move |config| {
        config.upstreams = vec![upstream];
        config.upstream_extra_roots = roots;
        config.upstream_timeout_ms = timeout_ms;
    })
    .await
}

#[tokio::test]
async fn dot_answer_is_cached() {
    let ca = TestCa::new();
    let dot = SecureUpstream::dot(ca.server_config(&[DOT_NAME], &[])).await;
    let harness = harness_with(&ca, format!("tls://{}#{DOT_NAME}", dot.addr), 5_000).await;

    let first = harness
        .udp(&query("www.example.test", RecordType::A, None))
        .await;
    let second = harness
        .tcp(&query("www.example.test", RecordType::A, None))
        .await;

    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        ipv4_answers(&first),
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]
    );
    assert_eq!(ipv4_answers(&second), ipv4_answers(&first));
    assert_eq!(dot.stats.dns.queries.load(Ordering::SeqCst), 1);
    assert_eq!(dot.stats.handshakes.load(Ordering::SeqCst), 1);
    assert_eq!(harness.counter("swg_dns_cache_hits_total", &[]), 1.0);
    // The plain upstream of the harness is not used.
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn dot_connection_is_reused() {
    let ca = TestCa::new();
    let dot = SecureUpstream::dot(ca.server_config(&[DOT_NAME], &[])).await;
    let harness = harness_with(&ca, format!("tls://{}#{DOT_NAME}", dot.addr), 5_000).await;

    let first = harness
        .udp(&query("one.example.test", RecordType::A, None))
        .await;
    let second = harness
        .udp(&query("two.example.test", RecordType::AAAA, None))
        .await;

    assert_eq!(first.metadata.response_code, ResponseCode::NoError);
    assert_eq!(first.answers.len(), 1);
    assert_eq!(second.metadata.response_code, ResponseCode::NoError);
    assert_eq!(second.answers.len(), 1);
    assert_eq!(dot.stats.dns.queries.load(Ordering::SeqCst), 2);
    assert_eq!(dot.stats.handshakes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn dot_closed_connection_is_replaced() {
    let ca = TestCa::new();
    let dot = SecureUpstream::dot_answering(ca.server_config(&[DOT_NAME], &[]), 1).await;
    let harness = harness_with(&ca, format!("tls://{}#{DOT_NAME}", dot.addr), 5_000).await;

    let first = harness
        .udp(&query("one.example.test", RecordType::A, None))
        .await;
    let second = harness
        .udp(&query("two.example.test", RecordType::A, None))
        .await;

    assert_eq!(
        ipv4_answers(&first),
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]
    );
    assert_eq!(
        ipv4_answers(&second),
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]
    );
    assert_eq!(dot.stats.handshakes.load(Ordering::SeqCst), 2);
    assert_eq!(
        harness.counter("swg_dns_upstream_errors_total", &[("transport", "tls")]),
        0.0
    );
}

#[tokio::test]
async fn dot_wrong_name_certificate_rejected() {
    let ca = TestCa::new();
    let dot = SecureUpstream::dot(ca.server_config(&["other.upstream.test"], &[])).await;
    let harness = harness_with(&ca, format!("tls://{}#{DOT_NAME}", dot.addr), 5_000).await;

    let response = harness
        .udp(&query("www.example.test", RecordType::A, None))
        .await;

    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert!(response.answers.is_empty());
    assert_eq!(dot.stats.dns.queries.load(Ordering::SeqCst), 0);
    assert_eq!(
        harness.counter("swg_dns_upstream_errors_total", &[("transport", "tls")]),
        1.0
    );
}

#[tokio::test]
async fn dot_untrusted_ca_rejected() {
    let trusted = TestCa::new();
    let untrusted = TestCa::new();
    let dot = SecureUpstream::dot(untrusted.server_config(&[DOT_NAME], &[])).await;
    let harness = harness_with(&trusted, format!("tls://{}#{DOT_NAME}", dot.addr), 5_000).await;

    let response = harness
        .udp(&query("www.example.test", RecordType::A, None))
        .await;

    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(dot.stats.dns.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn dot_answer_to_another_question_is_dropped() {
    let ca = TestCa::new();
    let dot = SecureUpstream::dot(ca.server_config(&[DOT_NAME], &[])).await;
    let harness = harness_with(&ca, format!("tls://{}#{DOT_NAME}", dot.addr), 300).await;

    let response = harness
        .udp(&query("wrong-question.test", RecordType::A, None))
        .await;

    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert!(response.answers.is_empty());
    assert_eq!(dot.stats.dns.queries.load(Ordering::SeqCst), 1);
    assert_eq!(
        harness.counter("swg_dns_upstream_errors_total", &[("transport", "tls")]),
        1.0
    );
}

#[tokio::test]
async fn doh_answers_over_http2() {
    let ca = TestCa::new();
    let doh = SecureUpstream::doh(ca.server_config(&[DOH_NAME], &[b"h2", b"http/1.1"])).await;
    let url = format!("https://{DOH_NAME}:{}/dns-query#127.0.0.1", doh.addr.port());
    let harness = harness_with(&ca, url, 5_000).await;

    let response = harness
        .udp(&query("www.example.test", RecordType::A, None))
        .await;

    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(
        ipv4_answers(&response),
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]
    );
    assert_eq!(doh.stats.dns.queries.load(Ordering::SeqCst), 1);
    assert_eq!(doh.stats.http2_requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn doh_http2_connection_is_reused() {
    let ca = TestCa::new();
    let doh = SecureUpstream::doh(ca.server_config(&[DOH_NAME], &[b"h2"])).await;
    let url = format!("https://{DOH_NAME}:{}/dns-query#127.0.0.1", doh.addr.port());
    let harness = harness_with(&ca, url, 5_000).await;

    let one = query("one.example.test", RecordType::A, None);
    let two = query("two.example.test", RecordType::A, None);
    let three = query("three.example.test", RecordType::TXT, None);
    let (one, two, three) = tokio::join!(harness.udp(&one), harness.udp(&two), harness.udp(&three));
    let four = harness
        .udp(&query("four.example.test", RecordType::A, None))
        .await;

    for response in [&one, &two, &three, &four] {
        assert_eq!(response.metadata.response_code, ResponseCode::NoError);
        assert_eq!(response.answers.len(), 1);
    }
    assert_eq!(doh.stats.dns.queries.load(Ordering::SeqCst), 4);
    assert_eq!(doh.stats.http2_requests.load(Ordering::SeqCst), 4);
    // Concurrent first queries may each open a connection; the fourth reuses one.
    assert!(doh.stats.handshakes.load(Ordering::SeqCst) <= 3);
}

#[tokio::test]
async fn doh_falls_back_to_http1() {
    let ca = TestCa::new();
    let doh = SecureUpstream::doh(ca.server_config(&[DOH_NAME], &[b"http/1.1"])).await;
    let url = format!("https://{DOH_NAME}:{}/dns-query#127.0.0.1", doh.addr.port());
    let harness = harness_with(&ca, url, 5_000).await;

    let response = harness.udp(&query("nx.test", RecordType::A, None)).await;

    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(doh.stats.dns.queries.load(Ordering::SeqCst), 1);
    assert_eq!(doh.stats.http2_requests.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn doh_wrong_name_certificate_rejected() {
    let ca = TestCa::new();
    let doh = SecureUpstream::doh(ca.server_config(&["other.upstream.test"], &[b"h2"])).await;
    let url = format!("https://{DOH_NAME}:{}/dns-query#127.0.0.1", doh.addr.port());
    let harness = harness_with(&ca, url, 5_000).await;

    let response = harness
        .udp(&query("www.example.test", RecordType::A, None))
        .await;

    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(doh.stats.dns.queries.load(Ordering::SeqCst), 0);
    assert_eq!(
        harness.counter("swg_dns_upstream_errors_total", &[("transport", "https")]),
        1.0
    );
}

#[tokio::test]
async fn doh_error_status_tries_next_upstream() {
    let ca = TestCa::new();
    let doh = SecureUpstream::doh(ca.server_config(&[DOH_NAME], &[b"h2"])).await;
    // The test server returns 404 for any other path.
    let url = format!("https://{DOH_NAME}:{}/other#127.0.0.1", doh.addr.port());
    let roots = vec![ca.pem_path()];
    let harness = Harness::start_with(move |config| {
        let plain = config.upstreams[0].clone();
        config.upstreams = vec![url, plain];
        config.upstream_extra_roots = roots;
    })
    .await;

    let response = harness
        .udp(&query("www.example.test", RecordType::A, None))
        .await;

    assert_eq!(
        ipv4_answers(&response),
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))]
    );
    assert_eq!(doh.stats.dns.queries.load(Ordering::SeqCst), 0);
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 1);
    assert_eq!(
        harness.counter("swg_dns_upstream_errors_total", &[("transport", "https")]),
        1.0
    );
}
