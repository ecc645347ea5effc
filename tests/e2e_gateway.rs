//! End-to-end checks of one running gateway with real clients. dig queries go through
//! the reference agent for each kind of app, and curl and headless Chromium go through
//! the TLS landing. The admin and device APIs are called with the secrets that
//! `swg serve` printed, and bad input is sent between real requests.
//!
//! One gateway (with its upstream DNS, origin and agent) serves every test of this
//! file; each test uses its own host names or device, so its assertions do not depend
//! on the others.

#![allow(clippy::unwrap_used)]

mod e2e;

use std::net::SocketAddr;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use e2e::{
    curl_get, dig_a, require_tool, run, spki_sha256_base64, Agent, Bed, BROWSER_APP, BYPASSED_APP,
    IP_EXCEPTION_ADDRESS, IP_EXCEPTION_NAME, ORIGIN_IP, ORIGIN_MARKER, PLAIN_APP,
    SYSTEM_RESOLVER_ANSWER, TRUSTED_APP,
};
use serde_json::Value;
use swg_test_harness::{BrowserOptions, Chromium};

const USER: &str = "alice@e2e.test";
const DEVICE: &str = "e2e-phone";

struct Shared {
    bed: Bed,
    agent: Agent,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        for tool in ["dnsmasq", "nginx", "dig", "curl", "openssl", "unshare"] {
            require_tool(tool);
        }
        let bed = Bed::start(true);
        let agent = bed.agent(
            USER,
            DEVICE,
            &[BROWSER_APP, PLAIN_APP, TRUSTED_APP, BYPASSED_APP],
        );
        Shared { bed, agent }
    })
}

/// Launches Chromium with every host mapped to the TLS landing and the swg root's key
/// accepted.
async fn chromium(shared: &Shared) -> Chromium {
    let options = BrowserOptions {
        host_resolver_rules: Some(format!("MAP * 127.0.0.1:{}", shared.bed.swg.ports.tls)),
        ignore_certificate_errors_spki_list: vec![spki_sha256_base64(&shared.bed.swg.root_pem())],
        ..BrowserOptions::default()
    };
    Chromium::launch(options).await.unwrap()
}

/// `https://<host>:<origin port><path>`: the landing forwards to the origin's port.
fn origin_url(shared: &Shared, host: &str, path: &str) -> String {
    format!("https://{host}:{}{path}", shared.bed.origin_port)
}

/// curl through the TLS landing for `url`, trusting only swg's root; returns status and
/// body.
fn curl_via_landing(shared: &Shared, host: &str, path: &str) -> (u16, String) {
    let port = shared.bed.origin_port;
    let output = run(Command::new(require_tool("curl"))
        .args(["--silent", "--show-error", "--max-time", "10", "--cacert"])
        .arg(shared.bed.swg.root_pem())
        .arg("--connect-to")
        .arg(format!(
            "{host}:{port}:127.0.0.1:{}",
            shared.bed.swg.ports.tls
        ))
        .args(["--write-out", "\n%{http_code}"])
        .arg(origin_url(shared, host, path)));
    let (body, status) = output.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

// ---- plain app --------------------------------------------------------------------

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn plain_app_gets_real_address() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(PLAIN_APP, "plain-allowed.test"),
        [ORIGIN_IP]
    );
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn plain_app_warn_name_gets_zero() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(PLAIN_APP, "www.casino.test"),
        ["0.0.0.0"]
    );
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn plain_app_warn_url_is_blocked() {
    let shared = shared();
    // The host has a URL rule, so the app is steered to the proxy, which sees the path.
    assert_eq!(
        shared.agent.resolve(PLAIN_APP, "mixed.web.test"),
        ["127.0.0.1"]
    );
    let (status, body) = curl_via_landing(shared, "mixed.web.test", "/casino/table");
    // curl's request is not a navigation, so it gets the short text body, not the page.
    assert_eq!(
        (status, body.as_str()),
        (403, "forbidden: blocked by policy\n")
    );
    let url = origin_url(shared, "mixed.web.test", "/casino/table");
    let events = shared
        .bed
        .swg
        .wait_activity(DEVICE, Duration::from_secs(5), |events| {
            events.iter().any(|e| e["request"] == url.as_str())
        });
    let event = events
        .iter()
        .find(|e| e["request"] == url.as_str())
        .expect("the proxy logged the request");
    assert_eq!(event["action"], "block", "{event}");
    assert_eq!(event["app"], PLAIN_APP, "{event}");
    assert_eq!(event["app_class"], "app", "{event}");
    assert_eq!(
        event["categories"],
        serde_json::json!(["gambling"]),
        "{event}"
    );
    // Elsewhere on the host the app reaches the origin.
    let (status, body) = curl_via_landing(shared, "mixed.web.test", "/news");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(ORIGIN_MARKER), "{body}");
}

// ---- trusted and bypassed apps ----------------------------------------------------

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn trusted_app_is_never_steered() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(TRUSTED_APP, "trusted-allowed.test"),
        [ORIGIN_IP]
    );
    // A URL rule steers browsers and apps, never trusted apps.
    assert_eq!(
        shared.agent.resolve(TRUSTED_APP, "mixed.web.test"),
        [ORIGIN_IP]
    );
    assert_eq!(
        shared.agent.resolve(TRUSTED_APP, "www.blocked.test"),
        ["0.0.0.0"]
    );
    let events = shared
        .bed
        .swg
        .wait_activity(DEVICE, Duration::from_secs(5), |events| {
            ["trusted-allowed.test", "www.blocked.test"]
                .iter()
                .all(|name| events.iter().any(|e| e["request"] == *name))
        });
    let of = |name: &str| events.iter().find(|e| e["request"] == name).cloned();
    let allowed = of("trusted-allowed.test").expect("trusted app's query logged");
    assert_eq!(allowed["action"], "allow");
    assert_eq!(allowed["app"], TRUSTED_APP);
    assert_eq!(allowed["app_class"], "trusted-app");
    let blocked = of("www.blocked.test").expect("trusted app's blocked query logged");
    assert_eq!(blocked["action"], "block");
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn bypassed_app_uses_system_resolver() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(BYPASSED_APP, "bypassed-only.test"),
        [SYSTEM_RESOLVER_ANSWER]
    );
    // A later query of this device is logged, so the writer has caught up past the
    // bypassed one.
    shared.agent.resolve(PLAIN_APP, "after-bypass.test");
    let events = shared
        .bed
        .swg
        .wait_activity(DEVICE, Duration::from_secs(5), |events| {
            events.iter().any(|e| e["request"] == "after-bypass.test")
        });
    assert!(events.iter().any(|e| e["request"] == "after-bypass.test"));
    assert!(
        !events.iter().any(|e| e["request"] == "bypassed-only.test"),
        "bypassed query was logged"
    );
}

// ---- browser ----------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs dnsmasq, nginx, dig, unshare, chromium; run by .ci/run"]
async fn browser_loads_allowed_site() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(BROWSER_APP, "news.web.test"),
        ["127.0.0.1"]
    );
    let chromium = chromium(shared).await;
    let tab = chromium.new_tab().await.unwrap();
    tab.goto(&origin_url(shared, "news.web.test", "/front"))
        .await
        .unwrap();
    let text = tab.visible_text().await.unwrap();
    chromium.close().await;
    assert!(text.contains(ORIGIN_MARKER), "{text}");
    assert!(text.contains("news.web.test/front"), "{text}");
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn landing_chain_verifies_with_swg_root() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(BROWSER_APP, "chain.web.test"),
        ["127.0.0.1"]
    );
    // curl fails unless the leaf chains to swg's root for this name.
    let (status, body) = curl_via_landing(shared, "chain.web.test", "/");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(ORIGIN_MARKER), "{body}");
}

#[tokio::test]
#[ignore = "needs dnsmasq, nginx, dig, unshare, chromium; run by .ci/run"]
async fn browser_phishing_domain_shows_block_page() {
    let shared = shared();
    let phishing = &shared.bed.phishing;
    // Browsers are steered even for blocked names, so they can see the page.
    assert_eq!(shared.agent.resolve(BROWSER_APP, phishing), ["127.0.0.1"]);
    let chromium = chromium(shared).await;
    let tab = chromium.new_tab().await.unwrap();
    tab.goto(&format!("https://{phishing}/login"))
        .await
        .unwrap();
    let text = tab.visible_text().await.unwrap();
    chromium.close().await;
    assert!(text.contains("This page is blocked"), "{text}");
    assert!(text.contains("phishing"), "{text}");
    assert!(!text.contains(ORIGIN_MARKER), "{text}");
}

#[tokio::test]
#[ignore = "needs chromium, dnsmasq, nginx, unshare; run by .ci/run"]
async fn browser_warn_page_continues_to_site() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(BROWSER_APP, "casino.test"),
        ["127.0.0.1"]
    );
    let url = origin_url(shared, "casino.test", "/tables");
    let chromium = chromium(shared).await;
    let tab = chromium.new_tab().await.unwrap();
    tab.goto(&url).await.unwrap();
    let warned = tab.visible_text().await.unwrap();
    let continued = if warned.contains("This page may be risky") {
        tab.click_and_wait_for_navigation("form button[type=submit]")
            .await
            .unwrap();
        Some(tab.visible_text().await.unwrap())
    } else {
        None
    };
    chromium.close().await;
    assert!(warned.contains("This page may be risky"), "{warned}");
    assert!(warned.contains("gambling"), "{warned}");
    assert!(!warned.contains(ORIGIN_MARKER), "{warned}");
    let continued = continued.unwrap();
    assert!(continued.contains(ORIGIN_MARKER), "{continued}");
    assert!(continued.contains("casino.test/tables"), "{continued}");
    let events = shared
        .bed
        .swg
        .wait_activity(DEVICE, Duration::from_secs(5), |events| {
            events
                .iter()
                .any(|e| e["request"] == url.as_str() && e["action"] == "accepted")
        });
    let actions: Vec<&str> = events
        .iter()
        .filter(|e| e["request"] == url.as_str())
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert!(actions.contains(&"warn"), "{actions:?}");
    assert!(actions.contains(&"accepted"), "{actions:?}");
}

#[tokio::test]
#[ignore = "needs dnsmasq, nginx, dig, unshare, chromium; run by .ci/run"]
async fn browser_blocks_only_blocked_path() {
    let shared = shared();
    assert_eq!(
        shared.agent.resolve(BROWSER_APP, "www.shop.test"),
        ["127.0.0.1"]
    );
    let chromium = chromium(shared).await;
    let tab = chromium.new_tab().await.unwrap();
    tab.goto(&origin_url(shared, "www.shop.test", "/blocked/item"))
        .await
        .unwrap();
    let blocked = tab.visible_text().await.unwrap();
    tab.goto(&origin_url(shared, "www.shop.test", "/catalogue"))
        .await
        .unwrap();
    let allowed = tab.visible_text().await.unwrap();
    chromium.close().await;
    assert!(blocked.contains("This page is blocked"), "{blocked}");
    assert!(!blocked.contains(ORIGIN_MARKER), "{blocked}");
    assert!(allowed.contains(ORIGIN_MARKER), "{allowed}");
    assert!(allowed.contains("www.shop.test/catalogue"), "{allowed}");
}

// ---- activity ---------------------------------------------------------------------

/// Returns the (via, request, action, app) of each event, sorted.
fn summarize(events: &[Value]) -> Vec<(String, String, String, String)> {
    let field = |event: &Value, name: &str| event[name].as_str().unwrap_or_default().to_owned();
    let mut summary: Vec<_> = events
        .iter()
        .map(|e| {
            (
                field(e, "via"),
                field(e, "request"),
                field(e, "action"),
                field(e, "app"),
            )
        })
        .collect();
    summary.sort();
    summary
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn activity_report_lists_expected_events() {
    let shared = shared();
    let user = "bob@e2e.test";
    let device = "e2e-activity-laptop";
    let agent = shared.bed.agent(
        user,
        device,
        &[BROWSER_APP, PLAIN_APP, TRUSTED_APP, BYPASSED_APP],
    );
    let phishing = format!("report-login.{}", shared.bed.phishing);
    let port = shared.bed.origin_port;
    assert_eq!(agent.resolve(PLAIN_APP, "report-allowed.test"), [ORIGIN_IP]);
    assert_eq!(agent.resolve(PLAIN_APP, "report.casino.test"), ["0.0.0.0"]);
    assert_eq!(
        agent.resolve(BROWSER_APP, "report-warn.casino.test"),
        ["127.0.0.1"]
    );
    assert_eq!(
        agent.resolve(TRUSTED_APP, "report.blocked.test"),
        ["0.0.0.0"]
    );
    assert_eq!(
        agent.resolve(PLAIN_APP, IP_EXCEPTION_NAME),
        [IP_EXCEPTION_ADDRESS]
    );
    assert_eq!(
        agent.resolve(BYPASSED_APP, "report-bypassed.test"),
        [SYSTEM_RESOLVER_ANSWER]
    );
    assert_eq!(agent.resolve(BROWSER_APP, "report.web.test"), ["127.0.0.1"]);
    let (status, body) = curl_via_landing(shared, "report.web.test", "/page");
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent.resolve(BROWSER_APP, &phishing), ["127.0.0.1"]);
    let (status, body) = curl_via_landing(shared, &phishing, "/login");
    assert_eq!(status, 403, "{body}");

    let expected: Vec<(String, String, String, String)> = vec![
        ("dns", IP_EXCEPTION_NAME, "bypass-ip", PLAIN_APP),
        ("dns", "report-allowed.test", "allow", PLAIN_APP),
        ("dns", "report-warn.casino.test", "warn", BROWSER_APP),
        ("dns", "report.blocked.test", "block", TRUSTED_APP),
        ("dns", "report.casino.test", "block", PLAIN_APP),
        ("dns", "report.web.test", "inspect", BROWSER_APP),
        ("dns", &phishing, "block", BROWSER_APP),
        (
            "proxy",
            &format!("https://report.web.test:{port}/page"),
            "allow",
            BROWSER_APP,
        ),
        (
            "proxy",
            &format!("https://{phishing}:{port}/login"),
            "block",
            BROWSER_APP,
        ),
    ]
    .into_iter()
    .map(|(via, request, action, app)| (via.into(), request.into(), action.into(), app.into()))
    .collect();
    let mut expected = expected;
    expected.sort();
    shared
        .bed
        .swg
        .wait_activity(device, Duration::from_secs(5), |events| {
            events.len() >= expected.len()
        });
    // Give a late, unexpected event the time to arrive before comparing.
    std::thread::sleep(Duration::from_millis(300));
    let events = shared.bed.swg.activity_of_device(device);
    assert_eq!(summarize(&events), expected, "{events:#?}");
    for event in &events {
        assert_eq!(event["user"], user, "{event}");
        assert_eq!(event["device"], device, "{event}");
        assert_eq!(event["tenant"], e2e::TENANT, "{event}");
    }
    let casino = events
        .iter()
        .find(|e| e["request"] == "report.casino.test")
        .unwrap();
    assert_eq!(
        casino["categories"],
        serde_json::json!(["gambling"]),
        "{casino}"
    );
    let phishing_event = events
        .iter()
        .find(|e| e["request"] == phishing.as_str())
        .unwrap();
    assert_eq!(
        phishing_event["categories"],
        serde_json::json!(["phishing"]),
        "{phishing_event}"
    );
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn device_api_lists_block_and_warn() {
    let shared = shared();
    let user = "carol@e2e.test";
    let device = "e2e-device-api";
    let agent = shared.bed.agent(user, device, &[BROWSER_APP, PLAIN_APP]);
    agent.resolve(PLAIN_APP, "device-api.blocked.test");
    agent.resolve(BROWSER_APP, "device-api.casino.test");
    agent.resolve(PLAIN_APP, "device-api-allowed.test");
    shared
        .bed
        .swg
        .wait_activity(device, Duration::from_secs(5), |events| events.len() >= 3);
    let output = run(Command::new(env!("CARGO_BIN_EXE_swg"))
        .args([
            "agent",
            "activity",
            "--server",
            &shared.bed.swg.console_url(),
        ])
        .args([
            "--auth-key",
            &shared.bed.swg.auth_key,
            "--user",
            user,
            "--device",
            device,
        ])
        .arg("--ca-file")
        .arg(shared.bed.swg.root_pem()));
    let value: Value = serde_json::from_str(&output).unwrap();
    let events = value["events"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| value.as_array().cloned().unwrap_or_default());
    let mut seen: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            (
                e["request"].as_str().unwrap_or_default().to_owned(),
                e["action"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("device-api.blocked.test".to_owned(), "block".to_owned()),
            ("device-api.casino.test".to_owned(), "warn".to_owned()),
        ],
        "{output}"
    );
}

// ---- console downloads ------------------------------------------------------------

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn admin_downloads_root_ca_formats() {
    let shared = shared();
    let swg = &shared.bed.swg;
    let root = std::fs::read(swg.root_pem()).unwrap();
    let (status, pem) = swg.admin_get("/api/certificate?format=pem");
    assert_eq!(status, 200);
    assert_eq!(pem, root);
    let (status, der) = swg.admin_get("/api/certificate?format=der");
    assert_eq!(status, 200);
    let der_path = shared.bed.folder.path().join("downloaded-root.der");
    std::fs::write(&der_path, &der).unwrap();
    let converted = run(Command::new(require_tool("openssl"))
        .args(["x509", "-inform", "der", "-in"])
        .arg(&der_path));
    assert_eq!(converted.as_bytes(), root.as_slice());
    let (status, profile) = swg.admin_get("/api/certificate?format=mobileconfig");
    assert_eq!(status, 200);
    let profile: plist::Value = plist::from_bytes(&profile).unwrap();
    let content = profile.as_dictionary().unwrap()["PayloadContent"]
        .as_array()
        .unwrap();
    let payload = content[0].as_dictionary().unwrap();
    assert_eq!(
        payload["PayloadType"].as_string(),
        Some("com.apple.security.root")
    );
    assert_eq!(payload["PayloadContent"].as_data(), Some(der.as_slice()));
    let (status, _) = curl_get(
        &format!("{}/api/certificate?format=pem", swg.console_url()),
        &swg.root_pem(),
        None,
    );
    assert_eq!(status, 401);
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn admin_downloads_mdm_profiles() {
    let shared = shared();
    let swg = &shared.bed.swg;
    for (mdm, user, device) in [
        ("generic", "{{USER_ID}}", "{{DEVICE_ID}}"),
        ("mobileiron", "${userEmailAddress}", "${deviceSN}"),
        ("maas360", "%email%", "%deviceSerialNumber%"),
        ("simplemdm", "{{email_address}}", "{{serial_number}}"),
        ("meraki", "$OWNEREMAIL", "$DEVICESERIAL"),
        ("intune", "{{mail}}", "{{serialnumber}}"),
        ("mosyle", "%Email%", "%SerialNumber%"),
    ] {
        let (status, body) = swg.admin_get(&format!("/api/mdm-profile?mdm={mdm}"));
        assert_eq!(status, 200, "{mdm}: {}", String::from_utf8_lossy(&body));
        let profile: plist::Value = plist::from_bytes(&body).unwrap();
        let content = profile.as_dictionary().unwrap()["PayloadContent"]
            .as_array()
            .unwrap();
        let payload = content
            .iter()
            .filter_map(plist::Value::as_dictionary)
            .find(|p| p["PayloadType"].as_string() == Some("com.apple.dnsProxy.managed"))
            .unwrap_or_else(|| panic!("{mdm}: no dnsProxy payload"));
        let config = payload["ProviderConfiguration"].as_dictionary().unwrap();
        assert_eq!(config["userId"].as_string(), Some(user), "{mdm}");
        assert_eq!(config["deviceId"].as_string(), Some(device), "{mdm}");
        assert_eq!(
            config["authenticationKey"].as_string(),
            Some(swg.auth_key.as_str()),
            "{mdm}"
        );
        let bypassed = config["bypassedApplications"].as_array().unwrap();
        assert_eq!(bypassed[0].as_string(), Some(BYPASSED_APP), "{mdm}");
        let trusted = config["trustedApplications"].as_array().unwrap();
        assert_eq!(trusted[0].as_string(), Some(TRUSTED_APP), "{mdm}");
    }
}

// ---- bad input --------------------------------------------------------------------

fn send_udp(server: SocketAddr, payload: &[u8]) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.send_to(payload, server).unwrap();
}

fn send_tcp(server: SocketAddr, payload: &[u8]) {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(server) else {
        return;
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let _ = stream.write_all(payload);
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn malformed_input_leaves_requests_working() {
    let shared = shared();
    let ports = shared.bed.swg.ports;
    let dns = SocketAddr::from(([127, 0, 0, 1], ports.dns));
    let tls = SocketAddr::from(([127, 0, 0, 1], ports.tls));
    let http = SocketAddr::from(([127, 0, 0, 1], ports.http));
    let explicit = SocketAddr::from(([127, 0, 0, 1], ports.explicit));
    let doh = SocketAddr::from(([127, 0, 0, 1], ports.doh));

    let dns_garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        // A header claiming five questions and nothing after it.
        vec![0, 1, 1, 0, 0, 5, 0, 0, 0, 0, 0, 0],
        // A question with a compression pointer to itself.
        vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
        // A label longer than the message.
        vec![0, 3, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 63, b'a', b'b'],
        // A response (QR=1), which must be ignored.
        vec![0, 4, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0],
        (0..=255u8).cycle().take(4096).collect(),
    ];
    let tls_garbage: Vec<Vec<u8>> = vec![
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        // A handshake record whose length runs past the data.
        vec![0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0x00],
        // A ClientHello with a truncated body.
        vec![
            0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0x00, 0x40, 0x03, 0x03, 0, 0,
        ],
        // A ClientHello with no extensions and so no SNI.
        {
            let mut hello = vec![0x03, 0x03];
            hello.extend_from_slice(&[7; 32]);
            hello.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
            let mut handshake = vec![1, 0, 0, hello.len() as u8];
            handshake.extend_from_slice(&hello);
            let mut record = vec![0x16, 0x03, 0x01, 0, handshake.len() as u8];
            record.extend_from_slice(&handshake);
            record
        },
        vec![0x16; 1000],
    ];
    let http_garbage: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\r\n\r\n".to_vec(),
        b"GET / HTTP/9.9\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello"
            .to_vec(),
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(100_000)).into_bytes(),
        b"CONNECT :::: HTTP/1.1\r\n\r\n".to_vec(),
        b"GET http://[::1 HTTP/1.1\r\n\r\n".to_vec(),
    ];

    let check = |round: usize| {
        let name = format!("round{round}.bad-input.test");
        assert_eq!(
            shared.agent.resolve(PLAIN_APP, &name),
            [ORIGIN_IP],
            "round {round}"
        );
        assert_eq!(dig_a(dns, &name), [ORIGIN_IP], "plain DNS, round {round}");
        let host = format!("round{round}.web.test");
        assert_eq!(shared.agent.resolve(BROWSER_APP, &host), ["127.0.0.1"]);
        let (status, body) = curl_via_landing(shared, &host, "/");
        assert_eq!(status, 200, "round {round}: {body}");
    };
    check(0);
    for round in 1..=3 {
        for packet in &dns_garbage {
            send_udp(dns, packet);
            let mut framed = (packet.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(packet);
            send_tcp(dns, &framed);
        }
        for hello in &tls_garbage {
            send_tcp(tls, hello);
            send_tcp(doh, hello);
        }
        for request in &http_garbage {
            send_tcp(http, request);
            send_tcp(explicit, request);
        }
        check(round);
    }
    assert!(
        shared.bed.swg.process.exited().is_none(),
        "swg exited after bad input"
    );
}

// ---- fixture ----------------------------------------------------------------------

/// The test policy must load as the gateway loads it, so the ignored tests fail only
/// for what they check; this needs no system tools.
#[test]
fn test_policy_passes_check() {
    let folder = tempfile::tempdir().unwrap();
    let feeds = folder.path().join("feeds");
    e2e::write_feeds(&feeds);
    let policy = folder.path().join("policy.toml");
    std::fs::write(&policy, e2e::policy_text(&feeds, &e2e::phishing_list())).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(["policy", "check"])
        .arg(&policy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("ok, tenant e2e"), "{stdout}");
    assert!(!e2e::a_phishing_domain().is_empty());
}

#[test]
#[ignore = "needs dnsmasq, nginx, dig, unshare; run by .ci/run"]
fn auth_host_is_steered_without_event() {
    let shared = shared();
    let device = "e2e-auth-host";
    let agent = shared.bed.agent(USER, device, &[TRUSTED_APP]);

    // Trusted apps are never steered by policy, so the proxy's address here can only
    // come from the auth-host rule.
    assert_eq!(
        agent.resolve(TRUSTED_APP, "auth.swg.localhost"),
        ["127.0.0.1"]
    );
    assert_eq!(
        agent.resolve(TRUSTED_APP, "plain-allowed.test"),
        [ORIGIN_IP]
    );

    let events = shared
        .bed
        .swg
        .wait_activity(device, Duration::from_secs(5), |events| {
            events.iter().any(|e| e["request"] == "plain-allowed.test")
        });
    assert!(
        events.iter().any(|e| e["request"] == "plain-allowed.test"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["request"].as_str().unwrap_or("").contains("auth.swg")),
        "the auth host must not be logged: {events:?}"
    );
}
