//! The proxy with curl as the client and HTTPS origins run by the test.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use support::{args, curl, origin, CurlResult, Harness};
use swg_proxy::boundary::Action;

async fn harness_with_origin() -> (Harness, u16) {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let address = origin::start_https(certificate, &[b"h2", b"http/1.1"]).await;
    (harness, address.port())
}

#[tokio::test]
async fn explicit_proxy_http2_and_http1() {
    let (harness, port) = harness_with_origin().await;
    let url = format!("https://origin.test:{port}/small");

    let mut h2 = harness.explicit_args();
    h2.push("--http2".to_owned());
    let result = curl(h2, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.version, "2");
    assert_eq!(result.body, "hello from origin\n");

    let mut h1 = harness.explicit_args();
    h1.push("--http1.1".to_owned());
    let result = curl(h1, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.version, "1.1");
    assert_eq!(result.body, "hello from origin\n");
}

#[tokio::test]
async fn landing_http2_and_http1() {
    let (harness, port) = harness_with_origin().await;
    let url = format!("https://origin.test:{port}/small");

    let mut h2 = harness.landing_args("origin.test", port);
    h2.push("--http2".to_owned());
    let result = curl(h2, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.version, "2");
    assert_eq!(result.body, "hello from origin\n");

    let mut h1 = harness.landing_args("origin.test", port);
    h1.push("--http1.1".to_owned());
    let result = curl(h1, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.version, "1.1");

    let events = harness.events.actions();
    assert_eq!(events.len(), 2);
    assert!(events
        .iter()
        .all(|(event_url, action)| event_url == &url && *action == Action::Allow));
}

#[tokio::test]
async fn explicit_proxy_requires_token() {
    let (harness, port) = harness_with_origin().await;
    let url = format!("https://origin.test:{port}/small");

    let no_token = args(&["-x", &format!("http://{}", harness.explicit), "-i"]);
    let result = curl(no_token, &format!("http://origin.test:{port}/small")).await;
    assert_eq!(result.status, 407);
    assert!(
        result
            .body
            .to_ascii_lowercase()
            .contains("proxy-authenticate: bearer realm=\"swg\""),
        "{}",
        result.body
    );
    assert!(
        result.body.contains("send a device token"),
        "{}",
        result.body
    );

    // A rejected token is named as such, not as a missing one.
    let rejected = args(&[
        "-x",
        &format!("http://{}", harness.explicit),
        "-i",
        "--proxy-header",
        "Proxy-Authorization: Bearer wrong",
    ]);
    let result = curl(rejected, &format!("http://origin.test:{port}/small")).await;
    assert_eq!(result.status, 407);
    assert!(
        result
            .body
            .contains("the device token is invalid, expired or revoked"),
        "{}",
        result.body
    );

    let bad = args(&[
        "-x",
        &format!("http://{}", harness.explicit),
        "--proxy-header",
        "Proxy-Authorization: Bearer wrong",
        "-k",
    ]);
    let result = curl(bad, &url).await;
    assert!(
        result
            .stderr
            .contains("CONNECT tunnel failed, response 407"),
        "{}",
        result.stderr
    );

    let basic = args(&[
        "-x",
        &format!("http://{}", harness.explicit),
        "--proxy-user",
        &format!("device:{}", support::GOOD_TOKEN),
        "--cacert",
        &harness.swg_root.display().to_string(),
    ]);
    let result = curl(basic, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
}

#[tokio::test]
async fn pac_file_served_without_token() {
    let harness = Harness::start(|_| {}).await;
    let result = curl(
        Vec::new(),
        &format!("http://{}/proxy.pac", harness.explicit),
    )
    .await;
    assert_eq!(result.status, 200);
    assert!(result.body.contains("FindProxyForURL"), "{}", result.body);
}

#[tokio::test]
async fn plain_http_through_explicit_proxy_and_landing() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let origin = origin::start_http().await;
    let url = format!("http://plain.test:{}/small", origin.port());

    let result = curl(harness.explicit_args(), &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, "hello from origin\n");

    let landing = args(&[
        "--connect-to",
        &format!(
            "plain.test:{}:127.0.0.1:{}",
            origin.port(),
            harness.http.port()
        ),
    ]);
    let result = curl(landing, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, "hello from origin\n");
}

#[tokio::test]
async fn hop_by_hop_headers_removed_and_host_kept() {
    let (harness, port) = harness_with_origin().await;
    let url = format!("https://origin.test:{port}/headers");
    let mut h1 = harness.explicit_args();
    h1.extend(args(&[
        "--http1.1",
        "-H",
        "Connection: keep-alive, X-Private",
        "-H",
        "X-Private: secret",
        "-H",
        "Keep-Alive: timeout=5",
        "-H",
        "X-End-To-End: yes",
    ]));
    let result = curl(h1, &url).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    let body = result.body.to_ascii_lowercase();
    assert!(body.contains("x-end-to-end: yes"), "{body}");
    assert!(!body.contains("x-private"), "{body}");
    assert!(!body.contains("keep-alive"), "{body}");
    assert!(!body.contains("proxy-authorization"), "{body}");
    // The origin speaks HTTP/2, so the host arrives as the :authority of the URI.
    assert!(
        body.starts_with(&format!("http/2.0 get https://origin.test:{port}/headers")),
        "{body}"
    );
}

#[tokio::test]
async fn alt_svc_removed_from_responses() {
    let (harness, port) = harness_with_origin().await;
    let mut request = harness.explicit_args();
    request.push("-i".to_owned());
    let result = curl(request, &format!("https://origin.test:{port}/alt-svc")).await;
    let body = result.body.to_ascii_lowercase();
    assert!(body.contains("x-origin: kept"), "{body}");
    assert!(!body.contains("alt-svc:"), "{body}");
}

#[tokio::test]
async fn head_and_trailers_pass() {
    let (harness, port) = harness_with_origin().await;
    // The length is over the default response body limit (16 GiB), which does not
    // apply to a response to HEAD. The second origin route sends a body on HEAD
    // over HTTP/2, which swg must not pass on.
    let too_large = 17u64 << 30;
    let cases = [
        (format!("/zeros?{too_large}"), too_large),
        ("/head-with-body".to_owned(), 18),
    ];
    for version in ["--http1.1", "--http2"] {
        for (path, length) in &cases {
            let mut head = harness.explicit_args();
            head.extend(args(&["-I", version]));
            let result = curl(head, &format!("https://origin.test:{port}{path}")).await;
            assert_eq!(result.status, 200, "{version} {path}: {}", result.stderr);
            assert!(
                result
                    .body
                    .to_ascii_lowercase()
                    .contains(&format!("content-length: {length}")),
                "{version} {path}: {}",
                result.body
            );
        }
    }

    let mut trailers = harness.explicit_args();
    trailers.extend(args(&["--http2", "-v"]));
    let result = curl(trailers, &format!("https://origin.test:{port}/trailers")).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, "body with trailers\n");
    assert!(
        result
            .stderr
            .to_ascii_lowercase()
            .contains("x-checksum: abc123"),
        "{}",
        result.stderr
    );
}

#[tokio::test]
async fn upload_with_expect_continue_and_chunks() {
    let (harness, port) = harness_with_origin().await;
    let body_path = harness.dir.path().join("upload.bin");
    std::fs::write(&body_path, vec![7u8; 3 * 1024 * 1024]).unwrap();

    let mut expect = harness.explicit_args();
    expect.extend(args(&[
        "--http1.1",
        "-H",
        "Expect: 100-continue",
        "--data-binary",
    ]));
    expect.push(format!("@{}", body_path.display()));
    let result = curl(expect, &format!("https://origin.test:{port}/count")).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, format!("{}\n", 3 * 1024 * 1024));

    let mut chunked = harness.explicit_args();
    chunked.extend(args(&[
        "--http1.1",
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
    ]));
    chunked.push(format!("@{}", body_path.display()));
    let result = curl(chunked, &format!("https://origin.test:{port}/count")).await;
    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, format!("{}\n", 3 * 1024 * 1024));
}

#[tokio::test]
async fn missing_sni_refused_with_alert() {
    let harness = Harness::start(|_| {}).await;
    // curl sends no SNI for an IP literal.
    let request = harness.landing_args("127.0.0.1", 443);
    let result = curl(request, "https://127.0.0.1/small").await;
    assert_eq!(result.status, 0);
    assert!(result.stderr.contains("alert"), "{}", result.stderr);
    assert_eq!(
        harness.metric(
            "swg_proxy_tls_handshake_failures_total",
            &[("reason", "no_sni")]
        ),
        1.0
    );
}

#[tokio::test]
async fn host_differing_from_sni_judged_by_host() {
    let (harness, port) = harness_with_origin().await;
    harness
        .policy
        .blocked_prefixes
        .lock()
        .unwrap()
        .push("https://blocked.test".to_owned());
    let mut request = harness.landing_args("origin.test", port);
    request.extend(args(&["--http1.1", "-H", "Host: blocked.test"]));
    let result = curl(request, &format!("https://origin.test:{port}/small")).await;
    assert_eq!(result.status, 403, "{}", result.stderr);
    assert_eq!(result.body, "swg-page: block\n");
}

#[tokio::test]
async fn unidentified_landing_request_refused() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
        config.auth_host = String::new();
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let port = origin::start_https(certificate, &[b"h2", b"http/1.1"])
        .await
        .port();
    *harness.identify.hints_enabled.lock().unwrap() = false;
    let mut navigation = harness.landing_args("origin.test", port);
    navigation.extend(args(&["-H", "Accept: text/html"]));
    let result = curl(navigation, &format!("https://origin.test:{port}/small")).await;
    assert_eq!(result.status, 403);
    assert_eq!(result.body, "swg-page: unidentified\n");

    let subresource = harness.landing_args("origin.test", port);
    let result = curl(subresource, &format!("https://origin.test:{port}/small")).await;
    assert_eq!(result.status, 403);
    assert!(result.body.starts_with("forbidden"), "{}", result.body);
}

#[tokio::test]
async fn reserved_swg_path_answered_by_proxy() {
    let (harness, port) = harness_with_origin().await;
    let result = curl(
        harness.landing_args("origin.test", port),
        &format!("https://origin.test:{port}/.swg/unknown"),
    )
    .await;
    assert_eq!(result.status, 404);
    assert_eq!(result.body, "not found\n");
}

#[tokio::test]
async fn policy_applies_to_every_request_on_a_connection() {
    let (harness, port) = harness_with_origin().await;
    harness
        .policy
        .blocked_prefixes
        .lock()
        .unwrap()
        .push(format!("https://origin.test:{port}/zeros"));
    for version in ["--http2", "--http1.1"] {
        let mut request = harness.landing_args("origin.test", port);
        request.push(version.to_owned());
        // One curl run, one connection, two requests.
        request.push(format!("https://origin.test:{port}/small"));
        let result = curl(request, &format!("https://origin.test:{port}/zeros?10")).await;
        assert!(
            result.body.starts_with("hello from origin\n"),
            "{}",
            result.body
        );
        assert!(
            result.body.ends_with("swg-page: block\n"),
            "{}",
            result.body
        );
        assert_eq!(result.status, 403);
    }
}

/// An origin stops offering HTTP/2 on new connections. The request that finds out
/// on a new connection of a pool that speaks only HTTP/2 is sent again through
/// the pool that negotiates the version, and the origin's later requests go there
/// too.
#[tokio::test]
async fn origin_dropping_http2_served_by_negotiating_pool() {
    // rustls rejects an offer of h2 alone with an alert when it offers only
    // http/1.1, and goes on without ALPN when it offers nothing, as nginx does on
    // a listener without HTTP/2.
    let later_alpns: [&[&[u8]]; 2] = [&[b"http/1.1"], &[]];
    for later_alpn in later_alpns {
        origin_dropping_http2(later_alpn).await;
    }
}

/// Starts the proxy with `origin.test` resolving to loopback.
async fn harness_resolving_origin() -> Harness {
    Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await
}

/// Requests to an origin that swg has not reached before wait for the first
/// one's connection to show the origin's ALPN choice, instead of each opening a
/// connection.
#[tokio::test]
async fn first_requests_to_origin_share_connections() {
    let harness = harness_resolving_origin().await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let delay = Duration::from_millis(300);
    let (origin, accepted) = origin::start_slow_handshake(certificate, delay).await;
    let port = origin.port();
    let url = format!("https://origin.test:{port}/small");
    let fetch = || curl(harness.landing_args("origin.test", port), &url);

    let served = futures::future::join_all((0..10).map(|_| fetch())).await;
    for response in &served {
        assert_eq!(response.status, 200, "{}", response.stderr);
        assert_eq!(response.body, "hello from origin\n");
    }
    // The first request's connection in the pool that negotiates the version,
    // then one connection of the first pool that speaks only HTTP/2.
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// Requests that wait for the new connection that an origin then accepts only in
/// HTTP/1.1 are all sent again through the pool that negotiates the version.
#[tokio::test]
async fn requests_waiting_for_declined_connection_sent_again() {
    let harness = harness_resolving_origin().await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let delay = Duration::from_millis(500);
    let (origin, _) = origin::start_h2_then_http1(certificate, &[b"http/1.1"], delay).await;
    let port = origin.port();
    let url = format!("https://origin.test:{port}/small");
    let fetch = || curl(harness.landing_args("origin.test", port), &url);
    let served = fetch().await;
    assert_eq!(served.status, 200, "{}", served.stderr);

    // The origin takes 500 ms to decline the HTTP/2 pool's new connection, so
    // the requests after the first wait for it, and hyper-util fails them as
    // cancelled.
    let waiting = futures::future::join_all((0..10).map(|_| fetch())).await;
    for served in &waiting {
        assert_eq!(served.status, 200, "{}", served.stderr);
        assert_eq!(served.body, "hello from origin\n");
    }
    let resends = harness.metric(
        "swg_proxy_upstream_resends_total",
        &[("reason", "not_http2")],
    );
    assert!(resends >= 2.0, "{resends} requests sent again");
}

async fn origin_dropping_http2(later_alpn: &[&[u8]]) {
    let harness = harness_resolving_origin().await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (origin, accepted) =
        origin::start_h2_then_http1(certificate, later_alpn, Duration::ZERO).await;
    let port = origin.port();
    let url = format!("https://origin.test:{port}/small");
    let fetch = || curl(harness.landing_args("origin.test", port), &url);

    // The first response shows HTTP/2, so the second request goes to a pool that
    // speaks only HTTP/2, whose new connection the origin accepts only in
    // HTTP/1.1.
    for _ in 0..2 {
        let served = fetch().await;
        assert_eq!(served.status, 200, "{}", served.stderr);
        assert_eq!(served.body, "hello from origin\n");
    }
    let resends = || {
        harness.metric(
            "swg_proxy_upstream_resends_total",
            &[("reason", "not_http2")],
        )
    };
    assert_eq!(resends(), 1.0);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // Later requests, also at once, share the first connection.
    let later = futures::future::join_all((0..5).map(|_| fetch())).await;
    for served in &later {
        assert_eq!(served.status, 200, "{}", served.stderr);
    }
    assert_eq!(resends(), 1.0);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// Starts the proxy and an origin that refuses its first HTTP/2 stream, and returns
/// them with the URL of that origin.
async fn harness_with_refusing_origin() -> (Harness, Arc<origin::RefusingOrigin>, String) {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (address, origin) = origin::start_refusing_h2(certificate).await;
    let url = format!("https://origin.test:{}/refused", address.port());
    (harness, origin, url)
}

#[tokio::test]
async fn refused_stream_sent_again_without_body() {
    let (harness, origin, url) = harness_with_refusing_origin().await;

    let result = curl(harness.explicit_args(), &url).await;

    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.body, "GET\n");
    assert_eq!(origin.streams.load(Ordering::SeqCst), 2);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_resends_total",
            &[("reason", "refused_stream")]
        ),
        1.0
    );
}

#[tokio::test]
async fn refused_stream_with_body_not_sent_again() {
    let (harness, origin, url) = harness_with_refusing_origin().await;

    let mut post = harness.explicit_args();
    post.extend(args(&["--data-binary", "order=1"]));
    let result = curl(post, &url).await;

    assert_eq!(result.status, 502, "{}", result.stderr);
    assert_eq!(origin.streams.load(Ordering::SeqCst), 1);
    assert_eq!(harness.metric("swg_proxy_upstream_resends_total", &[]), 0.0);
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "invalid_response")]
        ),
        1.0
    );
}

/// With the default pools, the origin's second request goes to a pool that
/// speaks only HTTP/2, whose new connection the origin accepts only in HTTP/1.1.
/// It is sent again through pool 0, whose connection refuses it, and then goes
/// on to the last attempt like any request the origin did not process.
#[tokio::test]
async fn declined_then_refused_reaches_last_attempt() {
    let harness = harness_resolving_origin().await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (address, _origin) = origin::start_refusing_h2_then_http1(certificate).await;
    let url = format!("https://origin.test:{}/small", address.port());
    for _ in 0..2 {
        let result = curl(harness.explicit_args(), &url).await;
        assert_eq!(result.status, 200, "{}", result.stderr);
        assert_eq!(result.body, "hello from origin\n");
    }
    let resends =
        |reason| harness.metric("swg_proxy_upstream_resends_total", &[("reason", reason)]);
    assert!(resends("not_http2") >= 1.0);
    assert!(resends("refused_stream") >= 3.0);
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
}

#[tokio::test]
async fn third_attempt_goes_over_http1() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
        // Both requests start on the connection that negotiates the version.
        config.limits.http2_connections_per_origin = 0;
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (address, origin) = origin::start_refusing_h2_then_http1(certificate).await;
    let port = address.port();

    let result = curl(
        harness.explicit_args(),
        &format!("https://origin.test:{port}/headers"),
    )
    .await;

    assert_eq!(result.status, 200, "{}", result.stderr);
    // hyper-util turns the absolute-form URI into origin form and a Host header.
    assert!(
        result.body.starts_with("HTTP/1.1 GET /headers\n"),
        "{}",
        result.body
    );
    assert!(
        result.body.contains(&format!("host: origin.test:{port}\n")),
        "{}",
        result.body
    );
    assert_eq!(origin.connections.load(Ordering::SeqCst), 3);
    assert_eq!(origin.streams.load(Ordering::SeqCst), 2);
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_resends_total",
            &[("reason", "refused_stream")]
        ),
        2.0
    );

    // The last attempt keeps no connection: a second request refused twice again
    // opens a fourth one instead of reusing the third.
    let again = curl(
        harness.explicit_args(),
        &format!("https://origin.test:{port}/headers"),
    )
    .await;
    assert_eq!(again.status, 200, "{}", again.stderr);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 4);
    assert_eq!(origin.streams.load(Ordering::SeqCst), 4);
}

/// Starts the proxy and an origin whose first connection ends with a GOAWAY naming
/// `last_stream_id`, and returns them with the URL of that origin.
async fn harness_with_goaway_origin(
    last_stream_id: u32,
) -> (Harness, Arc<origin::goaway::GoawayOrigin>, String) {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
        // The requests share the connection that negotiates the version.
        config.limits.http2_connections_per_origin = 0;
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (address, origin) = origin::goaway::start_goaway_h2(certificate, last_stream_id).await;
    let url = format!("https://origin.test:{}/goaway", address.port());
    (harness, origin, url)
}

/// Sends a GET and, once the origin has received its stream, a POST without a body,
/// which goes on the same pooled origin connection as stream 3. Returns the results
/// of the GET and of the POST.
async fn get_then_post(
    harness: &Harness,
    origin: &origin::goaway::GoawayOrigin,
    url: &str,
) -> (CurlResult, CurlResult) {
    let get_args = harness.explicit_args();
    let get_url = url.to_owned();
    let get = tokio::spawn(async move { curl(get_args, &get_url).await });
    tokio::time::timeout(Duration::from_secs(20), origin.first_stream_received())
        .await
        .expect("the GET did not reach the origin within 20 s");

    let mut post_args = harness.explicit_args();
    post_args.extend(args(&["-X", "POST"]));
    let post = curl(post_args, url).await;
    (get.await.unwrap(), post)
}

#[tokio::test]
async fn goaway_post_above_last_stream_sent_again() {
    let (harness, origin, url) = harness_with_goaway_origin(1).await;

    let (get, post) = get_then_post(&harness, &origin, &url).await;

    assert_eq!(get.status, 200, "{}", get.stderr);
    assert_eq!(get.body, "");
    assert_eq!(post.status, 200, "{}", post.stderr);
    assert_eq!(post.body, "POST\n");
    assert_eq!(*origin.first_connection_streams.lock().unwrap(), [1, 3]);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 2);
    assert_eq!(*origin.later_requests.lock().unwrap(), [(2, Method::POST)]);
    assert_eq!(harness.metric("swg_proxy_upstream_errors_total", &[]), 0.0);
    assert_eq!(
        harness.metric("swg_proxy_upstream_resends_total", &[("reason", "goaway")]),
        1.0
    );
    assert_eq!(harness.metric("swg_proxy_upstream_resends_total", &[]), 1.0);
}

/// The origin allows one stream at a time, so a second GET waits in swg for a free
/// stream. The GOAWAY that then ends the connection names only the first GET's
/// stream: h2 reports the GOAWAY to the waiting GET, which is sent again on a new
/// connection. The origin closes without responding to the first GET.
#[tokio::test]
async fn goaway_get_waiting_for_stream_sent_again() {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("origin.test", "127.0.0.1")]);
        // The second GET waits on the connection that negotiates the version.
        config.limits.http2_connections_per_origin = 0;
    })
    .await;
    let certificate = harness.origin_ca.valid_leaf(&["origin.test"]);
    let (address, origin) = origin::goaway::start_goaway_h2_one_stream(certificate).await;
    let url = format!("https://origin.test:{}/goaway", address.port());

    let first_args = harness.explicit_args();
    let first_url = url.clone();
    let first = tokio::spawn(async move { curl(first_args, &first_url).await });
    tokio::time::timeout(Duration::from_secs(20), origin.first_stream_received())
        .await
        .expect("the first GET did not reach the origin within 20 s");
    let second_args = harness.explicit_args();
    let second_url = url.clone();
    let second = tokio::spawn(async move { curl(second_args, &second_url).await });
    // Once policy has decided the second GET, it goes to the origin's connection
    // and waits there for the only stream. Waiting for the client's connection
    // alone, even 1.5 s more, let the GET arrive only as the GOAWAY closed the
    // connection on a loaded machine (502).
    let decided = async {
        while harness.policy.decided.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), decided)
        .await
        .expect("the second GET was not decided within 20 s");
    tokio::time::sleep(Duration::from_millis(500)).await;
    origin.allow_goaway();

    let first = first.await.unwrap();
    let second = second.await.unwrap();
    // The origin may have processed the first GET before it stopped.
    assert_eq!(first.status, 502, "{}", first.stderr);
    assert_eq!(second.status, 200, "{}", second.stderr);
    assert_eq!(second.body, "GET\n");
    assert_eq!(*origin.first_connection_streams.lock().unwrap(), [1]);
    assert_eq!(*origin.later_requests.lock().unwrap(), [(2, Method::GET)]);
    assert_eq!(
        harness.metric("swg_proxy_upstream_resends_total", &[("reason", "goaway")]),
        1.0
    );
    assert_eq!(harness.metric("swg_proxy_upstream_resends_total", &[]), 1.0);
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "invalid_response")]
        ),
        1.0
    );
}

#[tokio::test]
async fn goaway_post_at_last_stream_not_sent_again() {
    let (harness, origin, url) = harness_with_goaway_origin(3).await;

    let (get, post) = get_then_post(&harness, &origin, &url).await;

    assert_eq!(get.status, 200, "{}", get.stderr);
    assert_eq!(post.status, 502, "{}", post.stderr);
    assert!(
        post.body
            .starts_with("swg-page: upstream-error invalid_response"),
        "{}",
        post.body
    );
    assert_eq!(*origin.first_connection_streams.lock().unwrap(), [1, 3]);
    assert_eq!(origin.connections.load(Ordering::SeqCst), 1);
    assert!(origin.later_requests.lock().unwrap().is_empty());
    assert_eq!(harness.metric("swg_proxy_upstream_resends_total", &[]), 0.0);
    assert_eq!(
        harness.metric(
            "swg_proxy_upstream_errors_total",
            &[("kind", "invalid_response")]
        ),
        1.0
    );
}

/// Starts the proxy with `plain.test` resolving to loopback and a plain-HTTP
/// origin, and returns them with the origin's port.
async fn harness_with_plain_origin() -> (Harness, u16) {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[("plain.test", "127.0.0.1")]);
    })
    .await;
    let origin = origin::start_http().await;
    (harness, origin.port())
}

/// Arguments that send curl to the plain-HTTP landing for `plain.test:port` in
/// HTTP/2 with prior knowledge, with no HTTP/1.1 request first.
fn plain_landing_http2_args(harness: &Harness, port: u16) -> Vec<String> {
    args(&[
        "--http2-prior-knowledge",
        "--connect-to",
        &format!("plain.test:{port}:127.0.0.1:{}", harness.http.port()),
    ])
}

/// Sends `request` to the plain-HTTP landing in segments of `segment` bytes with
/// a pause after each, and returns everything the proxy sends back until it closes
/// the connection. Panics when the connection is still open after 20 s.
async fn send_to_plain_landing(harness: &Harness, request: &[u8], segment: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut tcp = tokio::net::TcpStream::connect(harness.http).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    for part in request.chunks(segment) {
        tcp.write_all(part).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut response))
        .await
        .expect("the proxy did not close the connection within 20 s")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn plain_landing_serves_http2_prior_knowledge() {
    let (harness, port) = harness_with_plain_origin().await;
    let url = format!("http://plain.test:{port}/headers");

    let result = curl(plain_landing_http2_args(&harness, port), &url).await;

    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.version, "2");
    let body = result.body.to_ascii_lowercase();
    assert!(body.starts_with("http/1.1 get /headers\n"), "{body}");
    assert!(
        body.contains(&format!("host: plain.test:{port}\n")),
        "{body}"
    );
    let events = harness.events.0.lock().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].url, url);
    assert_eq!(events[0].action, Action::Allow);
    let device = events[0]
        .identity
        .as_ref()
        .map(|identity| identity.device.as_str());
    assert_eq!(device, Some("device-1"));
}

#[tokio::test]
async fn plain_landing_http2_blocked_url_gets_block_page() {
    let (harness, port) = harness_with_plain_origin().await;
    let url = format!("http://plain.test:{port}/zeros?10");
    harness
        .policy
        .blocked_prefixes
        .lock()
        .unwrap()
        .push(format!("http://plain.test:{port}/zeros"));

    let result = curl(plain_landing_http2_args(&harness, port), &url).await;

    assert_eq!(result.status, 403, "{}", result.stderr);
    assert_eq!(result.version, "2");
    assert_eq!(result.body, "swg-page: block\n");
    assert_eq!(harness.events.actions(), [(url, Action::Block)]);
}

/// Policy judges each stream of one HTTP/2 connection opened with prior knowledge.
/// curl 7.88.1 fails a second request on a reused connection opened with prior
/// knowledge ("Error in the HTTP2 framing layer"), so hyper's client sends them.
#[tokio::test]
async fn plain_landing_http2_policy_per_stream() {
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (harness, port) = harness_with_plain_origin().await;
    harness
        .policy
        .blocked_prefixes
        .lock()
        .unwrap()
        .push(format!("http://plain.test:{port}/zeros"));
    let tcp = tokio::net::TcpStream::connect(harness.http).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(connection);

    let cases = [
        ("/small", 200, "hello from origin\n", Action::Allow),
        ("/zeros?10", 403, "swg-page: block\n", Action::Block),
        ("/small", 200, "hello from origin\n", Action::Allow),
    ];
    for (path, status, body, _) in cases {
        let request = http::Request::get(format!("http://plain.test:{port}{path}"))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), status, "{path}");
        assert_eq!(response.version(), http::Version::HTTP_2, "{path}");
        let received = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(received, body.as_bytes(), "{path}");
    }
    let expected: Vec<(String, Action)> = cases
        .iter()
        .map(|(path, _, _, action)| (format!("http://plain.test:{port}{path}"), *action))
        .collect();
    assert_eq!(harness.events.actions(), expected);
}

#[tokio::test]
async fn plain_landing_http1_sent_byte_by_byte() {
    let (harness, port) = harness_with_plain_origin().await;
    // "P" matches the start of the HTTP/2 preface, so swg waits for the next byte.
    let request = format!(
        "POST /count HTTP/1.1\r\nHost: plain.test:{port}\r\nContent-Length: 5\r\n\
         Connection: close\r\n\r\nhello"
    );

    let response = send_to_plain_landing(&harness, request.as_bytes(), 1).await;

    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\n5\n"), "{response}");
}

#[tokio::test]
async fn plain_landing_serves_short_http1_request() {
    let harness = Harness::start(|config| {
        config.timeouts.client_header_read_ms = 30_000;
    })
    .await;
    // 18 bytes, fewer than the 24 of the HTTP/2 preface. The client keeps its side
    // open, so a proxy waiting for 24 bytes would send nothing. Without a Host
    // header the request gets 400.
    let mut tcp = tokio::net::TcpStream::connect(harness.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"PUT / HTTP/1.1\r\n\r\n")
        .await
        .unwrap();
    let mut head = [0u8; 12];
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_exact(&mut tcp, &mut head),
    )
    .await
    .expect("no response within 10 s")
    .unwrap();
    assert_eq!(&head, b"HTTP/1.1 400");
}

#[tokio::test]
async fn plain_landing_partial_preface_times_out() {
    let harness = Harness::start(|config| {
        config.timeouts.client_header_read_ms = 300;
    })
    .await;
    let started = std::time::Instant::now();
    // Every byte matches the HTTP/2 preface, so swg waits for the rest until the
    // header read timeout and then closes the connection without a response.
    let mut tcp = tokio::net::TcpStream::connect(harness.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut tcp, b"PRI * HTTP/2.0\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut tcp, &mut response),
    )
    .await
    .expect("the connection was still open after 10 s")
    .unwrap();
    assert!(
        response.is_empty(),
        "{}",
        String::from_utf8_lossy(&response)
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
}

#[tokio::test]
async fn explicit_tunnel_serves_http2_prior_knowledge() {
    let (harness, port) = harness_with_plain_origin().await;
    let url = format!("http://plain.test:{port}/small");
    let mut request = harness.explicit_args();
    request.extend(args(&["--proxytunnel", "--http2-prior-knowledge"]));

    let result = curl(request, &url).await;

    assert_eq!(result.status, 200, "{}", result.stderr);
    assert_eq!(result.version, "2");
    assert_eq!(result.body, "hello from origin\n");
    assert_eq!(harness.events.actions(), [(url, Action::Allow)]);
}
