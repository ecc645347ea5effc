//! The identity cookie, the auth host flow, warn with "continue" and apps' warn
//! verdicts, through the TLS landing with curl as the client.

#![allow(clippy::unwrap_used)]

mod support;

use support::{args, cookie_pair, curl_full, origin, FullResponse, Harness, AUTH_HOST};
use swg_proxy::boundary::{Action, AppClass, Discovery};

const SITE: &str = "www.site.example";
const WARN_SITE: &str = "www.warn.example";

async fn harness() -> (Harness, u16) {
    let harness = Harness::start(|config| {
        config.static_hosts = support::static_hosts(&[
            (SITE, "127.0.0.1"),
            (WARN_SITE, "127.0.0.1"),
            ("other.site.example", "127.0.0.1"),
        ]);
    })
    .await;
    let certificate = harness
        .origin_ca
        .valid_leaf(&[SITE, WARN_SITE, "other.site.example"]);
    let port = origin::start_https(certificate, &[b"h2", b"http/1.1"])
        .await
        .port();
    (harness, port)
}

/// curl arguments for `host` on the landing, plus `extra`.
fn get_args(harness: &Harness, host: &str, port: u16, extra: &[&str]) -> Vec<String> {
    let mut list = harness.landing_args(host, port);
    list.extend(args(extra));
    list
}

const NAVIGATION: [&str; 4] = ["-H", "Accept: text/html", "-H", "Sec-Fetch-Mode: navigate"];

fn navigation<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut list = NAVIGATION.to_vec();
    list.extend_from_slice(extra);
    list
}

async fn fetch(
    harness: &Harness,
    host: &str,
    port: u16,
    path: &str,
    extra: &[&str],
) -> FullResponse {
    curl_full(
        get_args(harness, host, port, extra),
        &format!("https://{host}:{port}{path}"),
    )
    .await
}

/// Fetches `location` (an absolute URL on the landing) with `extra` arguments.
async fn follow(harness: &Harness, location: &str, extra: &[&str]) -> FullResponse {
    let url = url::Url::parse(location).unwrap();
    let host = url.host_str().unwrap().to_owned();
    let port = url.port().unwrap();
    curl_full(get_args(harness, &host, port, extra), location).await
}

fn events(harness: &Harness) -> Vec<swg_proxy::boundary::ProxyEvent> {
    harness.events.0.lock().unwrap().clone()
}

#[tokio::test]
async fn hint_sets_cookie_hidden_from_origin() {
    let (harness, port) = harness().await;

    // The first navigation of the device also sets its gateway cookie on the auth host.
    let first = fetch(&harness, SITE, port, "/headers", &navigation(&[])).await;
    assert_eq!(first.status, 302);
    let location = first.header("location").unwrap();
    assert!(
        location.starts_with(&format!("https://{AUTH_HOST}:{port}/.swg/register?ticket=")),
        "{location}"
    );
    let identity_cookie = first.set_cookie("__swg_id").unwrap();
    assert!(identity_cookie.ends_with("; Secure; HttpOnly; SameSite=Lax"));
    assert!(!identity_cookie.contains("Domain="));

    let registered = follow(&harness, &location, &[]).await;
    assert_eq!(registered.status, 302);
    assert_eq!(
        registered.header("location").unwrap(),
        format!("https://{SITE}:{port}/headers")
    );
    let gateway = registered.set_cookie("__swg_gw").unwrap();
    assert!(gateway.contains("; Secure; HttpOnly; SameSite=Lax"));

    // Later navigations go straight through and still get the cookie set.
    let cookie_header = format!(
        "Cookie: site=1; __swg_ack=forged; {}; other=2",
        cookie_pair(&identity_cookie)
    );
    let second = fetch(
        &harness,
        SITE,
        port,
        "/headers",
        &navigation(&["-H", &cookie_header]),
    )
    .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert!(
        second.body.contains("cookie: site=1; other=2\n"),
        "{}",
        second.body
    );
    assert!(!second.body.contains("__swg"), "{}", second.body);
}

#[tokio::test]
async fn origin_set_cookie_passes_unchanged_beside_swg_cookie() {
    let (harness, port) = harness().await;
    // Not a navigation: no redirect, the hint answers and __swg_id is added.
    let response = fetch(
        &harness,
        SITE,
        port,
        "/small",
        &["-H", "Cookie: __swg_id=x"],
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, "hello from origin\n");
    assert_eq!(response.header_values("set-cookie").len(), 1);
    assert!(response.set_cookie("__swg_id").is_some());
}

#[tokio::test]
async fn identity_cookie_identifies_after_hint_expires() {
    let (harness, port) = harness().await;
    let hinted = fetch(&harness, SITE, port, "/small", &[]).await;
    let cookie = cookie_pair(&hinted.set_cookie("__swg_id").unwrap());
    *harness.identify.hints_enabled.lock().unwrap() = false;

    let with_cookie = fetch(
        &harness,
        SITE,
        port,
        "/small",
        &["-H", &format!("Cookie: {cookie}")],
    )
    .await;
    assert_eq!(with_cookie.status, 200, "{}", with_cookie.body);
    assert!(with_cookie.set_cookie("__swg_id").is_none());
    let last = events(&harness).pop().unwrap();
    assert_eq!(last.action, Action::Allow);
    assert_eq!(last.identity.unwrap().discovery, Discovery::Cookie);

    // The cookie is host-only: on another host it identifies nobody.
    let other_host = fetch(
        &harness,
        "other.site.example",
        port,
        "/small",
        &["-H", &format!("Cookie: {cookie}")],
    )
    .await;
    assert_eq!(other_host.status, 403);
}

#[tokio::test]
async fn bad_identity_cookies_rejected_without_crash() {
    let (harness, port) = harness().await;
    *harness.identify.hints_enabled.lock().unwrap() = false;
    let hinted_value = harness.signer.issue_identity_cookie(
        &swg_identity::Identity {
            tenant: "tenant-a".to_owned(),
            device: "device-1".to_owned(),
            user: "user-1".to_owned(),
            app_bundle_id: None,
            app_class: swg_identity::AppClass::Browser,
            discovery: swg_identity::Discovery::Correlation,
        },
        SITE,
        swg_identity::unix_now(),
    );
    let truncated = &hinted_value[..hinted_value.len() - 3];
    let expired = harness.signer.issue_identity_cookie(
        &swg_identity::Identity {
            tenant: "tenant-a".to_owned(),
            device: "device-1".to_owned(),
            user: "user-1".to_owned(),
            app_bundle_id: None,
            app_class: swg_identity::AppClass::Browser,
            discovery: swg_identity::Discovery::Correlation,
        },
        SITE,
        swg_identity::unix_now() - 200_000,
    );
    let oversized = "a".repeat(6000);
    for value in [
        truncated,
        expired.as_str(),
        oversized.as_str(),
        "v1.id.k1.e30.AAAA",
    ] {
        let response = fetch(
            &harness,
            SITE,
            port,
            "/small",
            &["-H", &format!("Cookie: __swg_id={value}")],
        )
        .await;
        assert_eq!(response.status, 403, "{value:.40}");
        assert!(response.body.starts_with("forbidden"), "{}", response.body);
    }

    // A valid value among duplicates and junk still identifies.
    let duplicated = fetch(
        &harness,
        SITE,
        port,
        "/small",
        &[
            "-H",
            &format!("Cookie: __swg_id=junk; __swg_id={hinted_value}"),
        ],
    )
    .await;
    assert_eq!(duplicated.status, 200);
}

#[tokio::test]
async fn unidentified_navigation_goes_through_auth_host_once() {
    let (harness, port) = harness().await;
    let from_new_ip = ["--interface", "127.0.0.3"];

    let first = fetch(
        &harness,
        SITE,
        port,
        "/small?x=1",
        &navigation(&from_new_ip),
    )
    .await;
    assert_eq!(first.status, 302);
    let identify = first.header("location").unwrap();
    assert!(
        identify.starts_with(&format!("https://{AUTH_HOST}:{port}/.swg/identify?return=")),
        "{identify}"
    );

    // A second navigation within the attempt window gets the inspection page.
    let again = fetch(&harness, SITE, port, "/small", &navigation(&from_new_ip)).await;
    assert_eq!(again.status, 403);
    assert_eq!(again.body, "swg-page: inspection\n");

    // Subresources and POSTs are never redirected.
    let subresource = fetch(&harness, SITE, port, "/small", &from_new_ip).await;
    assert_eq!(subresource.status, 403);
    assert!(subresource.body.starts_with("forbidden"));
    let mut post = navigation(&from_new_ip);
    post.extend(["--http1.1", "-X", "POST", "-d", "a=1"]);
    let post = fetch(&harness, "other.site.example", port, "/small", &post).await;
    assert_eq!(post.status, 403);

    // The auth host with the device's gateway cookie sends the browser back.
    let gateway = harness.signer.issue_gateway_cookie(
        &swg_identity::Identity {
            tenant: "tenant-a".to_owned(),
            device: "device-7".to_owned(),
            user: "user-7".to_owned(),
            app_bundle_id: None,
            app_class: swg_identity::AppClass::Browser,
            discovery: swg_identity::Discovery::Ticket,
        },
        AUTH_HOST,
        swg_identity::unix_now(),
    );
    let gateway_header = format!("Cookie: __swg_gw={gateway}");
    let back = follow(&harness, &identify, &["-H", &gateway_header]).await;
    assert_eq!(back.status, 302);
    let ticket_url = back.header("location").unwrap();
    assert!(
        ticket_url.starts_with(&format!("https://{SITE}:{port}/.swg/auth?ticket=")),
        "{ticket_url}"
    );
    assert!(ticket_url.ends_with("&to=%2Fsmall%3Fx%3D1"), "{ticket_url}");

    // The return URL is single-use: one attempt per navigation.
    let replayed = follow(&harness, &identify, &navigation(&["-H", &gateway_header])).await;
    assert_eq!(replayed.status, 403);
    assert_eq!(replayed.body, "swg-page: unidentified\n");

    // The ticket sets __swg_id and leads to the original URL.
    let redeemed = follow(&harness, &ticket_url, &from_new_ip).await;
    assert_eq!(redeemed.status, 302);
    assert_eq!(
        redeemed.header("location").unwrap(),
        format!("https://{SITE}:{port}/small?x=1")
    );
    let cookie = cookie_pair(&redeemed.set_cookie("__swg_id").unwrap());
    let mut with_cookie = navigation(&from_new_ip);
    let cookie_header = format!("Cookie: {cookie}");
    with_cookie.extend(["-H", &cookie_header]);
    let landed = fetch(&harness, SITE, port, "/small?x=1", &with_cookie).await;
    assert_eq!(landed.status, 200);
    let last = events(&harness).pop().unwrap();
    let identity = last.identity.unwrap();
    assert_eq!(identity.device, "device-7");
    assert_eq!(identity.discovery, Discovery::Cookie);

    // A replayed ticket sets nothing.
    let replayed = follow(&harness, &ticket_url, &navigation(&from_new_ip)).await;
    assert_eq!(replayed.status, 403);
    assert!(replayed.set_cookie("__swg_id").is_none());
}

#[tokio::test]
async fn auth_host_without_gateway_cookie_shows_inspection_page() {
    let (harness, port) = harness().await;
    let first = fetch(
        &harness,
        SITE,
        port,
        "/",
        &navigation(&["--interface", "127.0.0.3"]),
    )
    .await;
    let identify = first.header("location").unwrap();
    let page = follow(&harness, &identify, &navigation(&[])).await;
    assert_eq!(page.status, 403);
    assert_eq!(page.body, "swg-page: inspection\n");
}

#[tokio::test]
async fn auth_flow_rejects_forged_values_and_open_redirects() {
    let (harness, port) = harness().await;
    let now = swg_identity::unix_now();
    let identity = swg_identity::Identity {
        tenant: "tenant-a".to_owned(),
        device: "device-1".to_owned(),
        user: "user-1".to_owned(),
        app_bundle_id: None,
        app_class: swg_identity::AppClass::Browser,
        discovery: swg_identity::Discovery::Ticket,
    };
    let gateway = harness
        .signer
        .issue_gateway_cookie(&identity, AUTH_HOST, now);
    let gateway_header = format!("Cookie: __swg_gw={gateway}");

    // A return URL naming another host than the one it was issued for.
    let to_evil = harness
        .signer
        .issue_return_url(SITE, "https://evil.example/", AUTH_HOST, now)
        .unwrap();
    let forged = "v1.ret.k1.e30.AAAA";
    let expired = harness
        .signer
        .issue_return_url(
            SITE,
            &format!("https://{SITE}:{port}/"),
            AUTH_HOST,
            now - 10_000,
        )
        .unwrap();
    let other_auth = harness
        .signer
        .issue_return_url(SITE, &format!("https://{SITE}:{port}/"), "auth.other", now)
        .unwrap();
    for value in [
        to_evil.as_str(),
        forged,
        expired.as_str(),
        other_auth.as_str(),
        "",
    ] {
        let response = fetch(
            &harness,
            AUTH_HOST,
            port,
            &format!("/.swg/identify?return={value}"),
            &navigation(&["-H", &gateway_header]),
        )
        .await;
        assert_eq!(response.status, 403, "{value:.40}");
        assert!(response.header("location").is_none());
    }
    // A duplicated parameter counts as absent.
    let valid = harness
        .signer
        .issue_return_url(SITE, &format!("https://{SITE}:{port}/"), AUTH_HOST, now)
        .unwrap();
    let duplicated = fetch(
        &harness,
        AUTH_HOST,
        port,
        &format!("/.swg/identify?return={valid}&return={valid}"),
        &["-H", &gateway_header],
    )
    .await;
    assert_eq!(duplicated.status, 403);

    // The ticket endpoint never leaves the site.
    let ticket = harness.signer.issue_ticket(&identity, SITE, now);
    let redeemed = fetch(
        &harness,
        SITE,
        port,
        &format!("/.swg/auth?ticket={ticket}&to=%2F%2Fevil.example%2F"),
        &[],
    )
    .await;
    assert_eq!(redeemed.status, 302);
    assert_eq!(
        redeemed.header("location").unwrap(),
        format!("https://{SITE}:{port}/")
    );
    // Tickets for another host, forged or expired set no cookie.
    let other_host = harness
        .signer
        .issue_ticket(&identity, "other.site.example", now);
    for value in [other_host.as_str(), "v1.tkt.k1.e30.AAAA", &"x".repeat(5000)] {
        let response = fetch(
            &harness,
            SITE,
            port,
            &format!("/.swg/auth?ticket={value}&to=%2F"),
            &navigation(&[]),
        )
        .await;
        assert_eq!(response.status, 403, "{value:.40}");
        assert!(response.set_cookie("__swg_id").is_none());
    }

    // Unknown auth host paths and unknown reserved paths get 404.
    let unknown = fetch(&harness, AUTH_HOST, port, "/", &[]).await;
    assert_eq!(unknown.status, 404);
    let unknown = fetch(&harness, SITE, port, "/.swg/other", &[]).await;
    assert_eq!(unknown.status, 404);
}

fn warn_on(harness: &Harness, prefix: String, rule: &str, category: &str) {
    harness.policy.warn_prefixes.lock().unwrap().push((
        prefix,
        rule.to_owned(),
        category.to_owned(),
    ));
}

fn form_token(page: &FullResponse) -> String {
    page.body
        .trim_end()
        .strip_prefix("swg-page: warn token=")
        .unwrap_or_else(|| panic!("not a warn page: {}", page.body))
        .to_owned()
}

async fn post_continue(
    harness: &Harness,
    host: &str,
    port: u16,
    form: &str,
    cookie: &str,
) -> FullResponse {
    // HTTP/1.1, because swg may answer before it reads a body, and curl reports the
    // HTTP/2 stream reset that follows as an error.
    let mut extra = navigation(&["--http1.1", "-X", "POST", "--data-raw", form]);
    let cookie_header = format!("Cookie: {cookie}");
    if !cookie.is_empty() {
        extra.extend(["-H", &cookie_header]);
    }
    fetch(harness, host, port, "/.swg/continue", &extra).await
}

#[tokio::test]
async fn warn_page_continue_and_acknowledgement() {
    let (harness, port) = harness().await;
    warn_on(
        &harness,
        format!("https://{WARN_SITE}:{port}/small"),
        "rule-a",
        "newly-seen",
    );
    warn_on(
        &harness,
        format!("https://{WARN_SITE}:{port}/headers"),
        "rule-b",
        "newly-seen",
    );
    let id = fetch(&harness, WARN_SITE, port, "/zeros?1", &[]).await;
    let id_cookie = cookie_pair(&id.set_cookie("__swg_id").unwrap());

    let page = fetch(
        &harness,
        WARN_SITE,
        port,
        "/small",
        &["-H", &format!("Cookie: {id_cookie}")],
    )
    .await;
    assert_eq!(page.status, 403);
    let token = form_token(&page);

    let accepted = post_continue(
        &harness,
        WARN_SITE,
        port,
        &format!("token={token}"),
        &id_cookie,
    )
    .await;
    assert_eq!(accepted.status, 303, "{}", accepted.body);
    assert_eq!(
        accepted.header("location").unwrap(),
        format!("https://{WARN_SITE}:{port}/small")
    );
    let ack = accepted.set_cookie("__swg_ack").unwrap();
    assert!(ack.contains("; Domain=warn.example;"), "{ack}");
    assert!(ack.contains("Max-Age=3600"), "{ack}");
    assert!(ack.ends_with("; Secure; HttpOnly; SameSite=Lax"), "{ack}");
    let accepted_event = events(&harness).pop().unwrap();
    assert_eq!(accepted_event.action, Action::Accepted);
    assert_eq!(
        accepted_event.decision.unwrap().rule.as_deref(),
        Some("rule-a")
    );

    // Under the acknowledgement the URL passes and is logged as allow.
    let cookies = format!("Cookie: {id_cookie}; {}", cookie_pair(&ack));
    let passed = fetch(&harness, WARN_SITE, port, "/small", &["-H", &cookies]).await;
    assert_eq!(passed.status, 200);
    assert_eq!(passed.body, "hello from origin\n");
    let allowed = events(&harness).pop().unwrap();
    assert_eq!(allowed.action, Action::Allow);
    assert!(allowed
        .decision
        .unwrap()
        .reason
        .starts_with("warning accepted earlier"));

    // Another rule on the same site warns again.
    let other_rule = fetch(&harness, WARN_SITE, port, "/headers", &["-H", &cookies]).await;
    assert_eq!(other_rule.status, 403);
    form_token(&other_rule);

    // The same token again gets the warn page, with a fresh token.
    let replayed = post_continue(
        &harness,
        WARN_SITE,
        port,
        &format!("token={token}&url=https%3A%2F%2F{WARN_SITE}%3A{port}%2Fsmall"),
        &id_cookie,
    )
    .await;
    assert_eq!(replayed.status, 403);
    assert_ne!(form_token(&replayed), token);
    assert!(replayed.set_cookie("__swg_ack").is_none());
}

#[tokio::test]
async fn continue_rejects_bad_tokens_with_warn_page() {
    let (harness, port) = harness().await;
    warn_on(
        &harness,
        format!("https://{WARN_SITE}:{port}/"),
        "rule-a",
        "newly-seen",
    );
    let id = fetch(
        &harness,
        WARN_SITE,
        port,
        "/small",
        &["-H", "Accept: text/plain"],
    )
    .await;
    let id_cookie = cookie_pair(&id.set_cookie("__swg_id").unwrap());
    let now = swg_identity::unix_now();
    let url = format!("https://{WARN_SITE}:{port}/small");
    let issue = |tenant: &str, device: &str, host: &str, at: u64| {
        harness
            .signer
            .issue_continue_form(tenant, device, host, "rule-a", &url, at)
            .unwrap()
    };
    let valid = issue("tenant-a", "device-1", WARN_SITE, now);
    let cases = [
        ("forged", format!("{}x", &valid[..valid.len() - 1])),
        ("truncated", valid[..valid.len() / 2].to_owned()),
        (
            "expired",
            issue("tenant-a", "device-1", WARN_SITE, now - 100_000),
        ),
        (
            "other host",
            issue("tenant-a", "device-1", "other.warn.example", now),
        ),
        (
            "other device",
            issue("tenant-a", "device-2", WARN_SITE, now),
        ),
        (
            "other tenant",
            issue("tenant-b", "device-1", WARN_SITE, now),
        ),
        ("oversized", "v".repeat(9000)),
        ("duplicated", format!("{valid}&token={valid}")),
    ];
    for (case, token) in cases {
        let response = post_continue(
            &harness,
            WARN_SITE,
            port,
            &format!("token={token}&url=https%3A%2F%2Fevil.example%2F"),
            &id_cookie,
        )
        .await;
        assert_eq!(response.status, 403, "{case}");
        assert!(
            response.body.starts_with("swg-page: warn token="),
            "{case}: {}",
            response.body
        );
        assert!(response.set_cookie("__swg_ack").is_none(), "{case}");
        assert!(response.header("location").is_none(), "{case}");
    }
    // The valid token still works once: the rejected attempts did not spend it.
    let accepted = post_continue(
        &harness,
        WARN_SITE,
        port,
        &format!("token={valid}"),
        &id_cookie,
    )
    .await;
    assert_eq!(accepted.status, 303);

    // A body over the form limit is refused without reading it all.
    let mut sender = h2_connection(&harness, WARN_SITE).await;
    let request = http::Request::post(format!("https://{WARN_SITE}:{port}/.swg/continue"))
        .header("cookie", id_cookie.as_str())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(())
        .unwrap();
    let (response, mut stream) = sender.send_request(request, false).unwrap();
    stream.reserve_capacity(100_000);
    let _ = stream.send_data(
        bytes::Bytes::from(format!("token={}", "a".repeat(100_000))),
        true,
    );
    assert_eq!(response.await.unwrap().status(), 400);

    // GET on the continue path is not allowed.
    let get = fetch(
        &harness,
        WARN_SITE,
        port,
        "/.swg/continue",
        &["-H", &format!("Cookie: {id_cookie}")],
    )
    .await;
    assert_eq!(get.status, 405);
}

#[tokio::test]
async fn warn_for_app_blocked_with_plain_text() {
    let (harness, port) = harness().await;
    *harness.identify.hint_class.lock().unwrap() = AppClass::App;
    warn_on(
        &harness,
        format!("https://{WARN_SITE}:{port}/"),
        "rule-a",
        "newly-seen",
    );
    let response = fetch(&harness, WARN_SITE, port, "/small", &navigation(&[])).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.body, "forbidden: blocked by policy\n");
    assert!(response.header("location").is_none());
    let event = events(&harness).pop().unwrap();
    assert_eq!(event.action, Action::Block);
    assert!(event
        .decision
        .unwrap()
        .reason
        .starts_with("warn verdict blocked for an app"),);
}

#[tokio::test]
async fn not_continuable_category_blocked() {
    let (harness, port) = harness().await;
    warn_on(
        &harness,
        format!("https://{WARN_SITE}:{port}/"),
        "rule-m",
        "malware",
    );
    let response = fetch(&harness, WARN_SITE, port, "/small", &[]).await;
    assert_eq!(response.status, 403);
    assert_eq!(response.body, "swg-page: block\n");
    assert_eq!(events(&harness).pop().unwrap().action, Action::Block);
}

/// An HTTP/2 connection to the TLS landing with SNI `host`.
async fn h2_connection(harness: &Harness, host: &str) -> h2::client::SendRequest<bytes::Bytes> {
    let tls = harness.landing_tls(host, b"h2").await;
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender
}

#[tokio::test]
async fn split_http2_cookie_headers_lose_swg_cookies() {
    let (harness, port) = harness().await;
    let mut sender = h2_connection(&harness, SITE).await;

    let request = http::Request::get(format!("https://{SITE}:{port}/headers"))
        .header("cookie", "a=1")
        .header("cookie", "__swg_id=forged")
        .header("cookie", "b=2; __swg_ack=forged")
        .body(())
        .unwrap();
    let (response, _) = sender.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("cookie: a=1; b=2\n"), "{text}");
    assert!(!text.contains("__swg"), "{text}");
}

#[tokio::test]
async fn real_warn_page_posts_token_and_url_to_continue() {
    let dir = tempfile::tempdir().unwrap();
    let pages =
        swg_blockpages::Pages::new(&swg_blockpages::PagesConfig::default(), dir.path()).unwrap();
    let harness = Harness::start_with_pages(
        |config| {
            config.static_hosts = support::static_hosts(&[(WARN_SITE, "127.0.0.1")]);
        },
        std::sync::Arc::new(swg_proxy::adapters::BlockPages(std::sync::Arc::new(pages))),
    )
    .await;
    let certificate = harness.origin_ca.valid_leaf(&[WARN_SITE]);
    let port = origin::start_https(certificate, &[b"h2", b"http/1.1"])
        .await
        .port();
    warn_on(
        &harness,
        format!("https://{WARN_SITE}:{port}/"),
        "rule-a",
        "newly-seen",
    );

    // The device's first navigation goes to the auth host to set its gateway cookie.
    let first = fetch(&harness, WARN_SITE, port, "/small?q=1", &navigation(&[])).await;
    assert_eq!(first.status, 302);
    let page = fetch(&harness, WARN_SITE, port, "/small?q=1", &navigation(&[])).await;
    assert_eq!(page.status, 403);
    assert_eq!(page.header("cache-control").as_deref(), Some("no-store"));
    assert!(
        // minijinja escapes "/" in attribute values as "&#x2f;".
        page.body
            .contains(r#"<form method="post" action="&#x2f;.swg&#x2f;continue">"#),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains(r#"<input type="hidden" name="token" value="v1.cont."#));
    assert!(page.body.contains(&format!(
        r#"<input type="hidden" name="url" value="https:&#x2f;&#x2f;{WARN_SITE}:{port}&#x2f;small?q=1">"#
    )));
}
