//! The resolver over real sockets: UDP, TCP and DoH (rustls + hyper) against a test
//! upstream on loopback.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::*;
use swg_dns::answer::read_ede;
use swg_dns::{AppClass, EventAction, QueryContext};

fn addresses(message: &Message) -> Vec<IpAddr> {
    message
        .answers
        .iter()
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

async fn doh_ok(
    harness: &Harness,
    name: &str,
    query_type: RecordType,
    context: Option<&QueryContext>,
) -> Message {
    let reply = harness
        .doh(&query(name, query_type, context), Some(GOOD_TOKEN))
        .await;
    assert_eq!(reply.status, 200);
    reply.message.unwrap()
}

#[tokio::test]
async fn app_gets_upstream_answer_for_allowed_name() {
    let harness = Harness::start().await;
    let response = doh_ok(
        &harness,
        "allowed.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
    assert_eq!(read_ede(&response), None);

    let events = harness.recorded.events_for("allowed.test");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, EventAction::Allow);
    assert_eq!(events[0].class, AppClass::App);
    assert_eq!(events[0].app.as_deref(), Some(PLAIN_APP));
    assert_eq!(events[0].client.device.as_deref(), Some("d1"));
}

#[tokio::test]
async fn browser_is_steered_to_proxy_for_allowed_name() {
    let harness = Harness::start().await;
    let safari = app(SAFARI);

    let a = doh_ok(&harness, "allowed.test", RecordType::A, Some(&safari)).await;
    assert_eq!(addresses(&a), vec![ip("127.0.0.1")]);
    assert!(a.answers.iter().all(|record| record.ttl <= 60));
    assert_eq!(read_ede(&a).map(|(code, _)| code), Some(17));

    let aaaa = doh_ok(&harness, "allowed.test", RecordType::AAAA, Some(&safari)).await;
    assert_eq!(addresses(&aaaa), vec![ip("::1")]);

    let https = doh_ok(&harness, "allowed.test", RecordType::HTTPS, Some(&safari)).await;
    assert_eq!(https.metadata.response_code, ResponseCode::NoError);
    assert!(https.answers.is_empty());
    let svcb = doh_ok(&harness, "allowed.test", RecordType::SVCB, Some(&safari)).await;
    assert!(svcb.answers.is_empty());

    let hints = harness.recorded.hints.lock().unwrap().clone();
    assert!(hints
        .iter()
        .any(|hint| hint.host == "allowed.test" && hint.class == AppClass::Browser));
    assert_eq!(hints[0].client.tenant, "t1");
    assert_eq!(hints[0].client_ip, ip("127.0.0.1"));
}

#[tokio::test]
async fn aaaa_is_empty_without_proxy_ipv6() {
    let harness = Harness::start_with(|config| config.proxy_ipv6 = None).await;
    let aaaa = doh_ok(
        &harness,
        "allowed.test",
        RecordType::AAAA,
        Some(&app(SAFARI)),
    )
    .await;
    assert_eq!(aaaa.metadata.response_code, ResponseCode::NoError);
    assert!(aaaa.answers.is_empty());
}

#[tokio::test]
async fn app_is_steered_only_for_suspicious_name() {
    let harness = Harness::start().await;
    let notes = app(PLAIN_APP);
    let response = doh_ok(&harness, "suspicious.test", RecordType::A, Some(&notes)).await;
    assert_eq!(addresses(&response), vec![ip("127.0.0.1")]);
    let (code, text) = read_ede(&response).unwrap();
    assert_eq!(code, 17);
    assert_eq!(
        text,
        "action=inspect;category=potentially_malicious;rule=r-inspect"
    );
    assert_eq!(
        harness.recorded.events_for("suspicious.test")[0].action,
        EventAction::Inspect
    );
}

#[tokio::test]
async fn trusted_app_is_never_steered_but_still_blocked() {
    let harness = Harness::start().await;
    let trusted = app(TRUSTED_APP);
    let suspicious = doh_ok(&harness, "suspicious.test", RecordType::A, Some(&trusted)).await;
    assert_eq!(addresses(&suspicious), vec![ip("192.0.2.10")]);
    assert_eq!(read_ede(&suspicious), None);

    let blocked = doh_ok(&harness, "blocked.test", RecordType::A, Some(&trusted)).await;
    assert_eq!(addresses(&blocked), vec![ip("0.0.0.0")]);
    assert_eq!(
        harness.recorded.events_for("blocked.test")[0].class,
        AppClass::TrustedApp
    );
}

#[tokio::test]
async fn bypassed_app_resolves_without_event() {
    let harness = Harness::start().await;
    let response = doh_ok(
        &harness,
        "blocked.test",
        RecordType::A,
        Some(&app(BYPASSED_APP)),
    )
    .await;
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
    assert!(harness.recorded.events_for("blocked.test").is_empty());
}

#[tokio::test]
async fn app_gets_zero_address_for_blocked_name_with_ede() {
    let harness = Harness::start().await;
    let notes = app(PLAIN_APP);
    let a = doh_ok(&harness, "www.blocked.test", RecordType::A, Some(&notes)).await;
    assert_eq!(addresses(&a), vec![ip("0.0.0.0")]);
    let (code, text) = read_ede(&a).unwrap();
    assert_eq!(code, 15);
    assert_eq!(text, "action=block;category=phishing;rule=r-block");

    let aaaa = doh_ok(&harness, "www.blocked.test", RecordType::AAAA, Some(&notes)).await;
    assert_eq!(addresses(&aaaa), vec![ip("::")]);
    // A blocked query name is never sent upstream.
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn app_gets_nxdomain_for_blocked_name_when_configured() {
    let harness =
        Harness::start_with(|config| config.app_block_answer = swg_dns::AppBlockAnswer::Nxdomain)
            .await;
    let response = doh_ok(
        &harness,
        "blocked.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(read_ede(&response).map(|(code, _)| code), Some(15));
}

#[tokio::test]
async fn warn_steers_browsers_and_blocks_apps() {
    let harness = Harness::start().await;
    let for_app = doh_ok(&harness, "warn.test", RecordType::A, Some(&app(PLAIN_APP))).await;
    assert_eq!(addresses(&for_app), vec![ip("0.0.0.0")]);
    assert_eq!(read_ede(&for_app).map(|(code, _)| code), Some(15));
    let for_browser = doh_ok(&harness, "warn.test", RecordType::A, Some(&app(SAFARI))).await;
    assert_eq!(addresses(&for_browser), vec![ip("127.0.0.1")]);
    let (code, text) = read_ede(&for_browser).unwrap();
    assert_eq!(code, 17);
    assert_eq!(text, "action=warn;category=newly_seen;rule=r-warn");
    let for_trusted = doh_ok(
        &harness,
        "warn.test",
        RecordType::A,
        Some(&app(TRUSTED_APP)),
    )
    .await;
    assert_eq!(addresses(&for_trusted), vec![ip("0.0.0.0")]);

    let actions: Vec<EventAction> = harness
        .recorded
        .events_for("warn.test")
        .iter()
        .map(|e| e.action)
        .collect();
    let expected = vec![EventAction::Block, EventAction::Warn, EventAction::Block];
    assert_eq!(actions, expected);
}

#[tokio::test]
async fn browser_is_steered_for_blocked_name() {
    let harness = Harness::start().await;
    let response = doh_ok(&harness, "blocked.test", RecordType::A, Some(&app(SAFARI))).await;
    assert_eq!(addresses(&response), vec![ip("127.0.0.1")]);
    assert_eq!(read_ede(&response).map(|(code, _)| code), Some(15));
}

#[tokio::test]
async fn blocked_name_behind_cname_blocks_the_chain() {
    let harness = Harness::start().await;
    let response = doh_ok(
        &harness,
        "www.chain.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(addresses(&response), vec![ip("0.0.0.0")]);
    let events = harness.recorded.events_for("www.chain.test");
    assert_eq!(events[0].action, EventAction::Block);
    assert_eq!(events[0].reason, "block cdn.blocked-target.test");
}

#[tokio::test]
async fn phishing_names_from_shared_list_are_blocked() {
    let harness = Harness::start().await;
    for domain in phishing_domains(5) {
        let response = doh_ok(&harness, &domain, RecordType::A, Some(&app(PLAIN_APP))).await;
        assert_eq!(addresses(&response), vec![ip("0.0.0.0")], "{domain}");
    }
}

#[tokio::test]
async fn mixed_case_and_trailing_dot_match_policy_and_echo_question() {
    let harness = Harness::start().await;
    let response = doh_ok(
        &harness,
        "WwW.BlOcKeD.TeSt.",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(addresses(&response), vec![ip("0.0.0.0")]);
    assert_eq!(response.queries[0].name().to_ascii(), "WwW.BlOcKeD.TeSt.");
    assert_eq!(harness.recorded.events_for("www.blocked.test").len(), 1);

    let relative = doh_ok(
        &harness,
        "allowed.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(addresses(&relative), vec![ip("192.0.2.10")]);
}

#[tokio::test]
async fn idn_is_matched_as_a_label() {
    let harness = Harness::start().await;
    let response = doh_ok(
        &harness,
        "bücher.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(addresses(&response), vec![ip("192.0.2.40")]);
    assert_eq!(harness.recorded.events_for("xn--bcher-kva.test").len(), 1);
}

#[tokio::test]
async fn canaries_get_nxdomain() {
    let harness = Harness::start().await;
    for name in [
        "use-application-dns.net",
        "mask.icloud.com",
        "mask-h2.icloud.com",
    ] {
        let response = doh_ok(&harness, name, RecordType::A, Some(&app(SAFARI))).await;
        assert_eq!(
            response.metadata.response_code,
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn domain_exception_resolves_upstream_without_event() {
    let harness = Harness::start().await;
    let response = doh_ok(&harness, "printer.corp", RecordType::A, Some(&app(SAFARI))).await;
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
    assert!(harness.recorded.events_for("printer.corp").is_empty());
    assert!(harness.recorded.hints.lock().unwrap().is_empty());
}

#[tokio::test]
async fn ip_exception_returns_answer_unchanged_and_logs_bypass() {
    let harness = Harness::start().await;
    let response = doh_ok(
        &harness,
        "excepted-ip.test",
        RecordType::A,
        Some(&app(SAFARI)),
    )
    .await;
    assert_eq!(addresses(&response), vec![ip("10.99.0.5")]);
    let events = harness.recorded.events_for("excepted-ip.test");
    assert_eq!(events[0].action, EventAction::BypassIp);
}

#[tokio::test]
async fn context_option_never_goes_upstream() {
    let harness = Harness::start().await;
    let context = QueryContext {
        bundle_id: Some(PLAIN_APP.to_owned()),
        class_hint: Some(AppClass::App),
        private_ip: Some(ip("192.168.1.20")),
    };
    doh_ok(&harness, "context.test", RecordType::A, Some(&context)).await;
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 1);
    assert_eq!(
        harness
            .upstream
            .stats
            .with_context_option
            .load(Ordering::SeqCst),
        0
    );
    let events = harness.recorded.events_for("context.test");
    assert_eq!(events[0].private_ip, Some(ip("192.168.1.20")));
}

#[tokio::test]
async fn class_hint_applies_only_without_bundle_id() {
    let harness = Harness::start().await;
    let hinted = QueryContext {
        class_hint: Some(AppClass::Browser),
        ..QueryContext::default()
    };
    let response = doh_ok(&harness, "allowed.test", RecordType::A, Some(&hinted)).await;
    assert_eq!(addresses(&response), vec![ip("127.0.0.1")]);

    let overridden = QueryContext {
        bundle_id: Some(PLAIN_APP.to_owned()),
        class_hint: Some(AppClass::Browser),
        private_ip: None,
    };
    let response = doh_ok(&harness, "allowed.test", RecordType::A, Some(&overridden)).await;
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
}

#[tokio::test]
async fn upstream_answers_are_cached_across_queries() {
    let harness = Harness::start().await;
    for _ in 0..3 {
        let response = doh_ok(
            &harness,
            "cached.test",
            RecordType::A,
            Some(&app(PLAIN_APP)),
        )
        .await;
        assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
    }
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 1);
    assert_eq!(harness.counter("swg_dns_cache_hits_total", &[]), 2.0);
}

#[tokio::test]
async fn upstream_answer_to_another_question_is_dropped() {
    let harness = Harness::start_with(|config| config.upstream_timeout_ms = 300).await;
    let response = doh_ok(
        &harness,
        "wrong-question.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(response.metadata.response_code, ResponseCode::ServFail);
    assert!(addresses(&response).is_empty());
}

#[tokio::test]
async fn doh_get_and_post_over_http1_and_http2() {
    let harness = Harness::start().await;
    let question = query("allowed.test", RecordType::A, Some(&app(PLAIN_APP)));
    for alpn in [Alpn::H2, Alpn::Http11] {
        let client = DohClient::connect(&harness, alpn).await;
        for reply in [
            client.get(&question, Some(GOOD_TOKEN)).await,
            client.post(&question, Some(GOOD_TOKEN)).await,
        ] {
            assert_eq!(reply.status, 200);
            assert_eq!(
                reply.content_type.as_deref(),
                Some("application/dns-message")
            );
            let message = reply.message.unwrap();
            assert_eq!(message.metadata.id, question.metadata.id);
            assert_eq!(addresses(&message), vec![ip("192.0.2.10")]);
            let max_age: u32 = reply
                .cache_control
                .unwrap()
                .strip_prefix("max-age=")
                .unwrap()
                .parse()
                .unwrap();
            assert!((290..=300).contains(&max_age), "max-age {max_age}");
        }
    }
}

#[tokio::test]
async fn doh_without_or_with_bad_token_gets_401() {
    let harness = Harness::start().await;
    let question = query("allowed.test", RecordType::A, None);
    assert_eq!(harness.doh(&question, None).await.status, 401);
    assert_eq!(harness.doh(&question, Some("forged")).await.status, 401);
    assert_eq!(
        harness.doh(&question, Some(EXPIRED_TOKEN)).await.status,
        401
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "missing_token")]),
        1.0
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "invalid_token")]),
        1.0
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "expired_token")]),
        1.0
    );
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn doh_wrong_path_and_media_type_are_rejected() {
    let harness = Harness::start().await;
    let client = DohClient::connect(&harness, Alpn::H2).await;
    let wrong_path = http::Request::get(format!("https://{DOH_HOST}/other"))
        .body(Default::default())
        .unwrap();
    assert_eq!(client.send(wrong_path).await.status, 404);
    let wrong_type = http::Request::post(format!("https://{DOH_HOST}/dns-query"))
        .header("content-type", "text/plain")
        .header("authorization", format!("Bearer {GOOD_TOKEN}"))
        .body(Default::default())
        .unwrap();
    assert_eq!(client.send(wrong_type).await.status, 415);
    let not_found = harness.counter("swg_dns_refused_total", &[("reason", "http_not_found")]);
    assert_eq!(not_found, 1.0);
    let media_type = harness.counter("swg_dns_refused_total", &[("reason", "http_media_type")]);
    assert_eq!(media_type, 1.0);
}

/// Builds a POST of `question` with the given `Content-Type` and the good token.
fn post_with_content_type(question: &Message, content_type: &str) -> http::Request<Full<Bytes>> {
    http::Request::post(format!("https://{DOH_HOST}/dns-query"))
        .header("content-type", content_type)
        .header("authorization", format!("Bearer {GOOD_TOKEN}"))
        .body(Full::new(Bytes::from(question.to_vec().unwrap())))
        .unwrap()
}

#[tokio::test]
async fn doh_media_type_ignores_case_and_parameters() {
    let harness = Harness::start().await;
    let client = DohClient::connect(&harness, Alpn::H2).await;
    let question = query("allowed.test", RecordType::A, None);
    for content_type in [
        "Application/DNS-Message",
        "application/dns-message; charset=x",
    ] {
        let reply = client
            .send(post_with_content_type(&question, content_type))
            .await;
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.text);
        let message = reply.message.unwrap();
        assert_eq!(addresses(&message), vec![ip("192.0.2.10")]);
    }
    let media_type = harness.counter("swg_dns_refused_total", &[("reason", "http_media_type")]);
    assert_eq!(media_type, 0.0);
}

#[tokio::test]
async fn doh_401_tells_missing_from_rejected_token() {
    let harness = Harness::start().await;
    let question = query("allowed.test", RecordType::A, None);

    let missing = harness.doh(&question, None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        missing.text.trim(),
        "missing device token: send Authorization: Bearer <token>"
    );
    assert_eq!(missing.headers["www-authenticate"], "Bearer");

    let cases = [
        ("forged-token-secret", "invalid device token"),
        (EXPIRED_TOKEN, "expired device token"),
    ];
    for (token, reason) in cases {
        let rejected = harness.doh(&question, Some(token)).await;
        assert_eq!(rejected.status, 401);
        assert!(rejected.text.starts_with(reason), "{}", rejected.text);
        assert!(!rejected.text.contains(token), "{}", rejected.text);
        assert_eq!(
            rejected.headers["www-authenticate"],
            r#"Bearer error="invalid_token""#
        );
    }
}

#[tokio::test]
async fn doh_refusals_have_plain_text_body() {
    let harness = Harness::start().await;
    let client = DohClient::connect(&harness, Alpn::H2).await;
    let question = query("allowed.test", RecordType::A, None);

    let wrong_type = client
        .send(post_with_content_type(&question, "text/plain"))
        .await;
    assert_eq!(wrong_type.status, 415);
    assert_eq!(
        wrong_type.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        wrong_type.text.trim(),
        "unsupported media type: send application/dns-message"
    );

    let wrong_path = http::Request::get(format!("https://{DOH_HOST}/other"))
        .body(Default::default())
        .unwrap();
    let wrong_path = client.send(wrong_path).await;
    assert_eq!(wrong_path.status, 404);
    assert!(
        wrong_path.text.contains("/dns-query"),
        "{}",
        wrong_path.text
    );

    let put = http::Request::put(format!("https://{DOH_HOST}/dns-query"))
        .body(Default::default())
        .unwrap();
    let put = client.send(put).await;
    assert_eq!(put.status, 405);
    assert_eq!(put.headers["allow"], "GET, POST");
    assert!(put.text.contains("GET or POST"), "{}", put.text);

    let no_parameter = http::Request::get(format!("https://{DOH_HOST}/dns-query?other=1"))
        .body(Default::default())
        .unwrap();
    let no_parameter = client.send(no_parameter).await;
    assert_eq!(no_parameter.status, 400);
    assert!(
        no_parameter.text.contains("dns parameter"),
        "{}",
        no_parameter.text
    );
}

#[tokio::test]
async fn doh_body_over_limit_gets_413() {
    let harness = Harness::start().await;
    let client = DohClient::connect(&harness, Alpn::H2).await;
    let request = http::Request::post(format!("https://{DOH_HOST}/dns-query"))
        .header("content-type", "application/dns-message")
        .header("authorization", format!("Bearer {GOOD_TOKEN}"))
        .body(Full::new(Bytes::from(vec![0u8; 65_536])))
        .unwrap();
    let reply = client.send(request).await;
    assert_eq!(reply.status, 413);
    assert!(reply.text.contains("65535 bytes"), "{}", reply.text);
    let too_large = harness.counter("swg_dns_refused_total", &[("reason", "http_too_large")]);
    assert_eq!(too_large, 1.0);
}

#[tokio::test]
async fn doh_h2_refusal_waits_for_request_body() {
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    let harness = Harness::start().await;
    let tls = doh_tls(&harness, Alpn::H2).await;
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(connection);

    // The body follows the headers in 8 chunks 50 ms apart, so the refusal is decided
    // while the client is still sending. hyper's client shows the status even when the
    // stream is reset under it (curl does not), so the test checks that the response
    // came only after the whole body was sent.
    let sent = Arc::new(AtomicUsize::new(0));
    let counted = sent.clone();
    let chunks = futures::stream::unfold(0usize, move |index| {
        let counted = counted.clone();
        async move {
            if index == 8 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            counted.fetch_add(1, Ordering::SeqCst);
            let frame = hyper::body::Frame::data(Bytes::from(vec![b'x'; 512]));
            Some((Ok::<_, std::convert::Infallible>(frame), index + 1))
        }
    });
    let request = http::Request::post(format!("https://{DOH_HOST}/dns-query"))
        .header("content-type", "text/plain")
        .body(http_body_util::StreamBody::new(Box::pin(chunks)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 415);
    assert_eq!(sent.load(Ordering::SeqCst), 8);
}

#[tokio::test]
async fn doh_short_message_gets_400() {
    let harness = Harness::start().await;
    let client = DohClient::connect(&harness, Alpn::H2).await;
    let empty = http::Request::post(format!("https://{DOH_HOST}/dns-query"))
        .header("content-type", "application/dns-message")
        .header("authorization", format!("Bearer {GOOD_TOKEN}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client.send(empty).await.status, 400);
    let short = http::Request::get(format!("https://{DOH_HOST}/dns-query?dns=AAAA"))
        .header("authorization", format!("Bearer {GOOD_TOKEN}"))
        .body(Default::default())
        .unwrap();
    let short = client.send(short).await;
    assert_eq!(short.status, 400);
    assert!(short.text.contains("12-byte header"), "{}", short.text);

    let bad_request = harness.counter("swg_dns_refused_total", &[("reason", "http_bad_request")]);
    assert_eq!(bad_request, 2.0);
    let no_header = harness.counter("swg_dns_dropped_total", &[("reason", "no_header")]);
    assert_eq!(no_header, 0.0);
}

#[tokio::test]
async fn doh_response_message_gets_400() {
    let harness = Harness::start().await;
    let client = DohClient::connect(&harness, Alpn::H2).await;
    let mut response = query("allowed.test", RecordType::A, None);
    response.metadata.message_type = hickory_proto::op::MessageType::Response;
    let reply = client.post(&response, Some(GOOD_TOKEN)).await;
    assert_eq!(reply.status, 400);
    assert!(reply.text.contains("QR=1"), "{}", reply.text);

    let bad_request = harness.counter("swg_dns_refused_total", &[("reason", "http_bad_request")]);
    assert_eq!(bad_request, 1.0);
    let dropped = harness.counter("swg_dns_dropped_total", &[("reason", "response")]);
    assert_eq!(dropped, 0.0);
}

#[tokio::test]
async fn plain_dns_from_location_is_answered_with_bundle_id_only() {
    let harness = Harness::start().await;
    let udp = harness
        .udp(&query("blocked.test", RecordType::A, Some(&app(PLAIN_APP))))
        .await;
    assert_eq!(addresses(&udp), vec![ip("0.0.0.0")]);
    let tcp = harness
        .tcp(&query("allowed.test", RecordType::A, Some(&app(SAFARI))))
        .await;
    assert_eq!(addresses(&tcp), vec![ip("127.0.0.1")]);

    // The class hint is ignored over plain DNS: identity is the location.
    let hinted = QueryContext {
        class_hint: Some(AppClass::Browser),
        ..QueryContext::default()
    };
    let response = harness
        .udp(&query("allowed.test", RecordType::A, Some(&hinted)))
        .await;
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
    let events = harness.recorded.events_for("blocked.test");
    assert_eq!(events[0].client.device, None);
}

#[tokio::test]
async fn plain_dns_from_unknown_source_is_refused() {
    let harness = Harness::start().await;
    let question = query("allowed.test", RecordType::A, None);
    let response = udp_exchange(harness.server.udp_addr(), "127.0.0.2:0", &question)
        .await
        .unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    assert!(response.answers.is_empty());
    assert_eq!(
        read_ede(&response),
        Some((
            18,
            "source address is in no location; use DoH with a device token".to_owned()
        ))
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "unknown_source")]),
        1.0
    );
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn large_answer_sets_tc_over_udp_and_is_complete_over_tcp() {
    let harness = Harness::start().await;
    let mut classic = query("big.test", RecordType::TXT, None);
    classic.edns = None;
    let udp = harness.udp(&classic).await;
    assert!(udp.metadata.truncation, "{udp:?}");
    assert!(udp.answers.is_empty());
    assert_eq!(udp.queries.len(), 1);

    let with_edns = harness.udp(&query("big.test", RecordType::TXT, None)).await;
    assert!(with_edns.metadata.truncation);

    let tcp = harness.tcp(&classic).await;
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), 20);
}

#[tokio::test]
async fn any_query_gets_rfc8482_hinfo() {
    let harness = Harness::start().await;
    let response = harness
        .udp(&query("allowed.test", RecordType::ANY, None))
        .await;
    assert_eq!(response.answers.len(), 1);
    let RData::HINFO(hinfo) = &response.answers[0].data else {
        panic!("expected HINFO")
    };
    assert_eq!(hinfo.cpu, b"RFC8482".to_vec().into_boxed_slice());
}

#[tokio::test]
async fn query_behind_slow_answer_on_one_tcp_connection_returns_first() {
    let harness = Harness::start().await;
    let mut stream = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    let slow = query("slow.test", RecordType::A, None);
    let fast = query("fast.test", RecordType::A, None);
    let started = Instant::now();
    write_framed(&mut stream, &slow.to_vec().unwrap()).await;
    write_framed(&mut stream, &fast.to_vec().unwrap()).await;

    let first = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
    assert_eq!(first.metadata.id, fast.metadata.id);
    assert!(started.elapsed() < support::upstream::SLOW_DELAY);
    let second = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
    assert_eq!(second.metadata.id, slow.metadata.id);
    assert_eq!(addresses(&second), vec![ip("192.0.2.30")]);
}

#[tokio::test]
async fn edns_version_above_zero_gets_badvers() {
    let harness = Harness::start().await;
    let mut versioned = query("allowed.test", RecordType::A, None);
    versioned.edns.as_mut().unwrap().set_version(1);
    let response = harness.udp(&versioned).await;
    // Code 16 reads back as BADSIG: the two names share the value.
    assert_eq!(u16::from(response.metadata.response_code), 16);
    assert_eq!(response.edns.as_ref().unwrap().version(), 0);
    assert!(response.answers.is_empty());
}

#[tokio::test]
async fn zone_transfer_over_tcp_is_refused() {
    let harness = Harness::start().await;
    let mut stream = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    for query_type in [RecordType::AXFR, RecordType::IXFR] {
        let transfer = query("allowed.test", query_type, None);
        write_framed(&mut stream, &transfer.to_vec().unwrap()).await;
        let response = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
        assert_eq!(response.metadata.id, transfer.metadata.id);
        assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    }
}

#[tokio::test]
async fn empty_tcp_message_closes_connection() {
    let harness = Harness::start().await;
    let mut stream = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    write_framed(&mut stream, &[]).await;
    let closed = tokio::time::timeout(Duration::from_secs(2), read_framed(&mut stream))
        .await
        .expect("the connection is closed at once, not after the idle timeout");
    assert!(closed.is_none());
    let no_header = harness.counter("swg_dns_dropped_total", &[("reason", "no_header")]);
    assert_eq!(no_header, 1.0);
}

#[tokio::test]
async fn tcp_message_shorter_than_its_length_times_out() {
    use tokio::io::AsyncWriteExt;

    let harness = Harness::start_with(|config| config.read_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    let started = Instant::now();
    stream.write_all(&[0, 100, 1, 2, 3, 4, 5]).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut stream))
        .await
        .expect("the connection is closed at the read timeout, not after the idle timeout");
    assert!(closed.is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));
    let timed_out = harness.counter("swg_dns_dropped_total", &[("reason", "read_timeout")]);
    assert_eq!(timed_out, 1.0);
}

#[tokio::test]
async fn shutdown_answers_queries_in_flight() {
    let harness = Harness::start().await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let udp_query = query("slow.test", RecordType::A, None);
    socket
        .send_to(&udp_query.to_vec().unwrap(), harness.server.udp_addr())
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    let tcp_query = query("slow.test", RecordType::A, None);
    write_framed(&mut stream, &tcp_query.to_vec().unwrap()).await;
    // Both queries now wait on the slow upstream answer.
    tokio::time::sleep(Duration::from_millis(300)).await;

    harness.server.stop_accepting();
    assert!(harness.server.drain(Duration::from_secs(5)).await);

    let mut buffer = vec![0u8; 4096];
    let (len, _) = tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buffer))
        .await
        .expect("the UDP answer was sent before drain returned")
        .unwrap();
    let udp_answer = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(udp_answer.metadata.id, udp_query.metadata.id);
    assert_eq!(addresses(&udp_answer), vec![ip("192.0.2.30")]);
    let tcp_answer = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
    assert_eq!(tcp_answer.metadata.id, tcp_query.metadata.id);
    assert_eq!(addresses(&tcp_answer), vec![ip("192.0.2.30")]);
}

#[tokio::test]
async fn query_behind_slow_answer_on_one_h2_connection_returns_first() {
    let harness = Harness::start().await;
    let client = std::sync::Arc::new(DohClient::connect(&harness, Alpn::H2).await);
    let started = Instant::now();
    let slow_client = client.clone();
    let slow = tokio::spawn(async move {
        slow_client
            .post(&query("slow.test", RecordType::A, None), Some(GOOD_TOKEN))
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let fast = client
        .post(&query("fast.test", RecordType::A, None), Some(GOOD_TOKEN))
        .await;
    assert_eq!(fast.status, 200);
    assert!(started.elapsed() < support::upstream::SLOW_DELAY);
    assert!(!slow.is_finished());
    assert_eq!(slow.await.unwrap().status, 200);
}

#[tokio::test]
async fn malformed_packet_storm_leaves_server_answering() {
    let harness = Harness::start_with(|config| config.udp_rate_limit_qps = 0).await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let valid = query("allowed.test", RecordType::A, None).to_vec().unwrap();
    let mut state: u32 = 0x9e37_79b9;
    for round in 0..2_000usize {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let mut packet = match round % 4 {
            0 => valid[..(state as usize) % valid.len()].to_vec(),
            1 => (0..(state % 600))
                .map(|i| (state.rotate_left(i) & 0xff) as u8)
                .collect(),
            2 => {
                let mut flipped = valid.clone();
                let index = 12 + (state as usize) % (valid.len() - 12);
                flipped[index] ^= (state >> 8) as u8 | 1;
                flipped
            }
            _ => {
                let mut response = valid.clone();
                response[2] |= 0x80;
                response
            }
        };
        packet.truncate(4096);
        let _ = socket.send_to(&packet, harness.server.udp_addr()).await;
    }

    let mut tcp = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    write_framed(&mut tcp, &[0xff; 7]).await;
    drop(tcp);

    let response = harness
        .udp(&query("after-storm.test", RecordType::A, None))
        .await;
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
    let dropped = harness.counter("swg_dns_dropped_total", &[("reason", "response")]);
    let formerr = harness.counter("swg_dns_refused_total", &[("reason", "malformed")]);
    // The kernel may drop part of the burst before the server reads it.
    assert!(
        dropped >= 100.0 && formerr >= 100.0,
        "dropped {dropped}, formerr {formerr}"
    );
}

#[tokio::test]
async fn formerr_for_garbage_with_header() {
    let harness = Harness::start().await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut packet = query("allowed.test", RecordType::A, None).to_vec().unwrap();
    packet.truncate(20);
    socket
        .send_to(&packet, harness.server.udp_addr())
        .await
        .unwrap();
    let mut buffer = [0u8; 512];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(
        response.metadata.id,
        u16::from_be_bytes([packet[0], packet[1]])
    );
}

#[tokio::test]
async fn trailing_bytes_after_query_are_ignored() {
    let harness = Harness::start().await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let question = query("allowed.test", RecordType::A, None);
    let mut packet = question.to_vec().unwrap();
    packet.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x00]);
    socket
        .send_to(&packet, harness.server.udp_addr())
        .await
        .unwrap();
    let mut buffer = [0u8; 512];
    let (len, _) = tokio::time::timeout(Duration::from_secs(2), socket.recv_from(&mut buffer))
        .await
        .unwrap()
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(response.metadata.id, question.metadata.id);
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&response), vec![ip("192.0.2.10")]);
}

#[tokio::test]
async fn udp_flood_from_one_source_is_rate_limited() {
    let harness = Harness::start_with(|config| {
        config.udp_rate_limit_qps = 1;
        config.udp_rate_limit_burst = 5;
    })
    .await;
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let packet = query("allowed.test", RecordType::A, None).to_vec().unwrap();
    for _ in 0..50 {
        socket
            .send_to(&packet, harness.server.udp_addr())
            .await
            .unwrap();
    }
    let mut answered = 0;
    let mut buffer = [0u8; 512];
    while let Ok(Ok(_)) =
        tokio::time::timeout(Duration::from_millis(500), socket.recv_from(&mut buffer)).await
    {
        answered += 1;
    }
    assert_eq!(answered, 5);
    assert_eq!(
        harness.counter("swg_dns_dropped_total", &[("reason", "rate_limited")]),
        45.0
    );
}

#[tokio::test]
async fn queries_metric_counts_by_transport_and_action() {
    let harness = Harness::start().await;
    harness
        .udp(&query("blocked.test", RecordType::A, None))
        .await;
    harness
        .tcp(&query("allowed.test", RecordType::A, None))
        .await;
    doh_ok(
        &harness,
        "suspicious.test",
        RecordType::A,
        Some(&app(PLAIN_APP)),
    )
    .await;
    assert_eq!(
        harness.counter(
            "swg_dns_queries_total",
            &[("transport", "udp"), ("action", "block")]
        ),
        1.0
    );
    assert_eq!(
        harness.counter(
            "swg_dns_queries_total",
            &[("transport", "tcp"), ("action", "allow")]
        ),
        1.0
    );
    assert_eq!(
        harness.counter(
            "swg_dns_queries_total",
            &[("transport", "doh"), ("action", "inspect")]
        ),
        1.0
    );
}

#[tokio::test]
async fn idle_tcp_connection_is_closed() {
    let harness = Harness::start_with(|config| config.idle_timeout_secs = 1).await;
    let mut stream = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut stream)).await;
    assert!(matches!(closed, Ok(None)), "connection stayed open");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn connections_over_limit_are_closed_and_counted() {
    let harness = Harness::start_with(|config| config.max_connections = 1).await;
    let mut first = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();
    let mut second = tokio::net::TcpStream::connect(harness.server.tcp_addr())
        .await
        .unwrap();

    let question = query("allowed.test", RecordType::A, None);
    write_framed(&mut second, &question.to_vec().unwrap()).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut second)).await;
    assert!(matches!(refused, Ok(None)), "second connection was served");
    let limited = harness.counter("swg_dns_refused_total", &[("reason", "connection_limit")]);
    assert_eq!(limited, 1.0);

    write_framed(&mut first, &question.to_vec().unwrap()).await;
    let answer = Message::from_vec(&read_framed(&mut first).await.unwrap()).unwrap();
    assert_eq!(addresses(&answer), vec![ip("192.0.2.10")]);
}

/// Connects to `server` from the loopback address `source`.
async fn tcp_from(source: [u8; 4], server: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    socket.connect(server).await.unwrap()
}

#[tokio::test]
async fn connections_over_client_limit_are_closed() {
    let harness = Harness::start_with(|config| config.max_connections_per_client = 2).await;
    let server = harness.server.tcp_addr();
    let question = query("allowed.test", RecordType::A, None).to_vec().unwrap();
    let mut open_streams = Vec::new();
    for _ in 0..2 {
        let mut stream = tcp_from([127, 0, 0, 1], server).await;
        write_framed(&mut stream, &question).await;
        assert!(
            read_framed(&mut stream).await.is_some(),
            "connection within the limit was closed"
        );
        open_streams.push(stream);
    }

    let mut third = tcp_from([127, 0, 0, 1], server).await;
    write_framed(&mut third, &question).await;
    let refused = tokio::time::timeout(Duration::from_secs(5), read_framed(&mut third)).await;
    assert!(matches!(refused, Ok(None)), "third connection was served");
    let limited = harness.counter(
        "swg_dns_refused_total",
        &[("reason", "client_connection_limit")],
    );
    assert_eq!(limited, 1.0);

    // Another client still gets an answer: REFUSED, since only 127.0.0.1 is in a location.
    let mut other = tcp_from([127, 0, 0, 2], server).await;
    write_framed(&mut other, &question).await;
    let answer = Message::from_vec(&read_framed(&mut other).await.unwrap()).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::Refused);

    // A closed connection gives its slot back.
    drop(open_streams.pop());
    let mut again = None;
    for _ in 0..50 {
        let mut stream = tcp_from([127, 0, 0, 1], server).await;
        write_framed(&mut stream, &question).await;
        if read_framed(&mut stream).await.is_some() {
            again = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "slot not given back after a close");
}

#[tokio::test]
async fn shared_cache_keeps_per_query_verdicts() {
    // One cached upstream answer, two clients: each gets the verdict for its own app.
    let harness = Harness::start().await;
    let by_browser = doh_ok(&harness, "shared.test", RecordType::A, Some(&app(SAFARI))).await;
    assert_eq!(addresses(&by_browser), vec![ip("127.0.0.1")]);
    let by_location = harness
        .udp(&query("shared.test", RecordType::A, None))
        .await;
    assert_eq!(addresses(&by_location), vec![ip("192.0.2.10")]);
    assert_eq!(harness.upstream.stats.queries.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn doh_body_trickling_past_read_timeout_gets_408() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let harness = Harness::start_with(|config| config.read_timeout_secs = 1).await;
    let mut tls = doh_tls(&harness, Alpn::Http11).await;

    let head = format!(
        "POST /dns-query HTTP/1.1\r\nHost: {DOH_HOST}\r\nContent-Type: application/dns-message\r\n\
         Authorization: Bearer {GOOD_TOKEN}\r\nContent-Length: 100\r\n\r\n0123456789"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut reply = vec![0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut reply)).await;
    let len = read.unwrap().unwrap();
    let status_line = String::from_utf8_lossy(&reply[..len]).into_owned();
    assert!(status_line.starts_with("HTTP/1.1 408"), "{status_line}");
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn doh_invalid_chunk_size_gets_400() {
    use tokio::io::AsyncWriteExt;

    let harness = Harness::start().await;
    let mut tls = doh_tls(&harness, Alpn::Http11).await;

    let request = format!(
        "POST /dns-query HTTP/1.1\r\nHost: {DOH_HOST}\r\nContent-Type: application/dns-message\r\n\
         Authorization: Bearer {GOOD_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n\
         zz\r\nabc\r\n0\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let reply = read_http1_response(&mut tls, Duration::from_secs(5)).await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    let bad_request = harness.counter("swg_dns_refused_total", &[("reason", "http_bad_request")]);
    assert_eq!(bad_request, 1.0);
    let too_large = harness.counter("swg_dns_refused_total", &[("reason", "http_too_large")]);
    assert_eq!(too_large, 0.0);
}

#[tokio::test]
async fn second_server_on_same_udp_port_fails() {
    let first = Harness::start().await;
    let first_udp = first.server.udp_addr();

    let second = Harness::try_start_with(|config| config.udp_listen = first_udp).await;

    let Err(error) = second else {
        panic!("a second resolver started on {first_udp}");
    };
    assert!(
        matches!(
            error,
            swg_dns::ServerError::Bind {
                transport: "udp",
                ..
            }
        ),
        "{error}"
    );
    let response = first.udp(&query("allowed.test", RecordType::A, None)).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
}
