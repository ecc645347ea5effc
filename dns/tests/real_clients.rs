//! The listeners against the system's DNS clients: `dig` over UDP and TCP, `kdig` over
//! DoH. Ignored by default because a fresh machine lacks them; `.ci/run` installs
//! bind9-dnsutils and knot-dnsutils and runs these.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::*;

/// Runs `program` with `args` off the async runtime and returns its standard output.
async fn run(program: &'static str, args: Vec<String>) -> String {
    let output = run_output(program, args).await;
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `program` with `args` off the async runtime and returns its exit status and
/// output.
async fn run_output(program: &'static str, args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || Command::new(program).args(&args).output())
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

/// Writes the DoH certificate as a PEM file in `dir` and returns its path.
fn write_doh_ca(harness: &Harness, dir: &Path) -> PathBuf {
    let ca = dir.join("doh.pem");
    let pem = format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        base64_lines(harness.certificate.as_ref())
    );
    std::fs::write(&ca, pem).unwrap();
    ca
}

fn dig_args(server: SocketAddr, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        format!("@{}", server.ip()),
        "-p".to_owned(),
        server.port().to_string(),
        "+tries=1".to_owned(),
        "+time=5".to_owned(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    args
}

#[tokio::test]
#[ignore = "needs dig; run by .ci/run"]
async fn dig_over_udp_gets_policy_answers() {
    let harness = Harness::start().await;
    let addr = harness.server.udp_addr();

    let allowed = run("dig", dig_args(addr, &["+short", "allowed.test", "A"])).await;
    assert_eq!(allowed.trim(), "192.0.2.10");

    let blocked = run("dig", dig_args(addr, &["blocked.test", "A"])).await;
    assert!(blocked.contains("0.0.0.0"), "{blocked}");
    assert!(blocked.contains("EDE: 15 (Blocked)"), "{blocked}");
    assert!(
        blocked.contains("action=block;category=phishing;rule=r-block"),
        "{blocked}"
    );

    let canary = run("dig", dig_args(addr, &["use-application-dns.net"])).await;
    assert!(canary.contains("status: NXDOMAIN"), "{canary}");

    let any = run("dig", dig_args(addr, &["allowed.test", "ANY"])).await;
    assert!(any.contains("\"RFC8482\""), "{any}");
}

#[tokio::test]
#[ignore = "needs dig; run by .ci/run"]
async fn dig_sees_tc_over_udp_and_full_answer_over_tcp() {
    let harness = Harness::start().await;
    let addr = harness.server.udp_addr();

    let truncated = run(
        "dig",
        dig_args(addr, &["+ignore", "+noedns", "big.test", "TXT"]),
    )
    .await;
    assert!(truncated.contains(" tc"), "{truncated}");

    let retried = run("dig", dig_args(addr, &["+noedns", "big.test", "TXT"])).await;
    assert!(retried.contains("ANSWER: 20"), "{retried}");

    let tcp_addr = harness.server.tcp_addr();
    let over_tcp = run("dig", dig_args(tcp_addr, &["+tcp", "big.test", "TXT"])).await;
    assert!(over_tcp.contains("ANSWER: 20"), "{over_tcp}");
    assert!(!over_tcp.contains(" tc"), "{over_tcp}");
}

#[tokio::test]
#[ignore = "needs dig; run by .ci/run"]
async fn dig_over_tcp_gets_steered_answer_for_mixed_case_name() {
    let harness = Harness::start().await;
    let addr = harness.server.tcp_addr();
    let output = run("dig", dig_args(addr, &["+tcp", "WwW.BlOcKeD.TeSt.", "A"])).await;
    assert!(output.contains("0.0.0.0"), "{output}");
    assert!(output.contains("WwW.BlOcKeD.TeSt."), "{output}");
}

#[tokio::test]
#[ignore = "needs kdig; run by .ci/run"]
async fn kdig_over_doh_reaches_listener_and_is_refused_without_token() {
    // kdig cannot send an Authorization header, so the DoH answer path itself is covered
    // by the hyper client tests; this pins that kdig's RFC 8484 requests (POST and GET,
    // HTTP/2 over TLS) reach the handler and are refused, never answered.
    let harness = Harness::start().await;
    let doh = harness.server.doh_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_doh_ca(&harness, dir.path());

    for method in ["+nohttps-get", "+https-get"] {
        let args = vec![
            format!("@{}", doh.ip()),
            "-p".to_owned(),
            doh.port().to_string(),
            "+https=/dns-query".to_owned(),
            method.to_owned(),
            format!("+tls-ca={}", ca.display()),
            format!("+tls-hostname={DOH_HOST}"),
            "+retry=0".to_owned(),
            "+time=5".to_owned(),
            "allowed.test".to_owned(),
        ];
        let output = run("kdig", args).await;
        assert!(!output.contains("192.0.2.10"), "{output}");
    }
    let refused = harness.counter("swg_dns_refused_total", &[("reason", "missing_token")]);
    assert_eq!(refused, 2.0);
}

#[tokio::test]
#[ignore = "needs curl; run by .ci/run"]
async fn curl_over_http2_gets_status_of_refused_post() {
    let harness = Harness::start().await;
    let doh = harness.server.doh_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = write_doh_ca(&harness, dir.path());
    let body = dir.path().join("body");
    std::fs::write(&body, vec![b'x'; 20_000]).unwrap();

    // At 10 kB/s the body takes about 2 s, so each refusal is decided while curl is
    // still sending it.
    for (method, path, content_type, expected) in [
        ("POST", "/dns-query", "text/plain", "415"),
        ("PUT", "/dns-query", "application/dns-message", "405"),
        ("POST", "/other", "application/dns-message", "404"),
    ] {
        let args = vec![
            "--http2".to_owned(),
            "--silent".to_owned(),
            "--show-error".to_owned(),
            "--limit-rate".to_owned(),
            "10k".to_owned(),
            "--max-time".to_owned(),
            "10".to_owned(),
            "--output".to_owned(),
            "/dev/null".to_owned(),
            "--write-out".to_owned(),
            "%{http_version} %{http_code}".to_owned(),
            "--cacert".to_owned(),
            ca.display().to_string(),
            "--resolve".to_owned(),
            format!("{DOH_HOST}:{}:127.0.0.1", doh.port()),
            "--request".to_owned(),
            method.to_owned(),
            "--header".to_owned(),
            format!("Content-Type: {content_type}"),
            "--data-binary".to_owned(),
            format!("@{}", body.display()),
            format!("https://{DOH_HOST}:{}{path}", doh.port()),
        ];
        let output = run_output("curl", args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{method} {path}: {stderr}");
        let written = String::from_utf8_lossy(&output.stdout);
        assert_eq!(written, format!("2 {expected}"), "{method} {path}");
    }
}

fn base64_lines(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    encoded
        .as_bytes()
        .chunks(64)
        .map(|chunk| String::from_utf8_lossy(chunk).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}
