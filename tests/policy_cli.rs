#![allow(clippy::unwrap_used)]
//! `swg policy check` and `swg policy explain`, run as the real binary.

use std::path::Path;
use std::process::{Command, Output};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/examples/policy.toml");

fn swg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_accepts_the_example_policy() {
    let output = swg(&["policy", "check", EXAMPLE]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("ok, tenant acme (Acme Corporation): 4 policies"),
        "{stdout}"
    );
    assert!(
        stdout.contains("12 feed entries, 1 feed lines skipped"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 3: local name \"localhost\""),
        "{stdout}"
    );
}

#[test]
fn check_prints_every_error_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&good, "id = \"good\"\n").unwrap();
    std::fs::write(
        &bad,
        "id = \"bad\"\nextra = true\n[exceptions]\ncidrs = [\"10.0.0.0/40\"]\n[[feeds]]\nid = \"f\"\npath = \"gone.txt\"\nformat = \"domains\"\ncategory = \"malware\"\n",
    )
    .unwrap();

    let output = swg(&[
        "policy",
        "check",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let bad_path = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{bad_path}:2:1: unknown key `extra`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{bad_path}:4:10: invalid CIDR \"10.0.0.0/40\"")),
        "{stderr}"
    );
    let gone = Path::new(&bad_path).with_file_name("gone.txt");
    assert!(
        stderr.contains(&format!(
            "{bad_path}:7:8: feed file not found: {}",
            gone.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("3 problem(s) found"), "{stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing is reported as ok: {}",
        text(&output.stdout)
    );
}

#[test]
fn explain_prints_verdict_and_rules() {
    let output = swg(&[
        "policy",
        "explain",
        "--policy",
        EXAMPLE,
        "--tenant",
        "acme",
        "--app",
        "com.acme.other",
        "https://downloads.example/cracks/tool.exe",
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("app class: app"), "{stdout}");
    // At DNS the URL entry only sends the app to the proxy; at the proxy it blocks.
    let (dns, proxy) = stdout.split_once("proxy:").unwrap();
    assert!(dns.contains("verdict: inspect"), "{dns}");
    assert!(dns.contains("applies at the proxy only"), "{dns}");
    assert!(proxy.contains("verdict: block"), "{proxy}");
    assert!(
        proxy.contains("rule:    everyone/block/url/downloads.example/cracks/"),
        "{proxy}"
    );
}

#[test]
fn explain_reports_canary_nxdomain() {
    for name in ["use-application-dns.net", "mask.icloud.com"] {
        let output = swg(&[
            "policy", "explain", "--policy", EXAMPLE, "--tenant", "acme", name,
        ]);
        let stdout = text(&output.stdout);
        assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
        assert!(stdout.contains("verdict: block"), "{name}: {stdout}");
        assert!(stdout.contains("NXDOMAIN"), "{name}: {stdout}");
    }
}

#[test]
fn check_reads_a_file_named_twice_once() {
    let output = swg(&["policy", "check", EXAMPLE, EXAMPLE]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert_eq!(stdout.matches("ok, tenant acme").count(), 1, "{stdout}");
}

#[test]
fn explain_rejects_unknown_location_and_group() {
    for (option, value, expected) in [
        ("--location", "nosuch", "has no location `nosuch`"),
        ("--group", "nosuch", "has no group `nosuch`"),
    ] {
        let output = swg(&[
            "policy",
            "explain",
            "--policy",
            EXAMPLE,
            "--tenant",
            "acme",
            option,
            value,
            "example.com",
        ]);
        assert!(!output.status.success(), "{option}");
        let stderr = text(&output.stderr);
        assert!(stderr.contains(expected), "{option}: {stderr}");
    }
}

#[test]
fn explain_rejects_invalid_names_and_schemes() {
    for input in ["bad name", "ftp://files.example/"] {
        let output = swg(&[
            "policy", "explain", "--policy", EXAMPLE, "--tenant", "acme", input,
        ]);
        assert!(!output.status.success(), "{input}");
        assert!(text(&output.stderr).contains("error:"), "{input}");
    }
}

#[test]
fn explain_uses_user_and_group_targets() {
    let output = swg(&[
        "policy",
        "explain",
        "--policy",
        EXAMPLE,
        "--tenant",
        "acme",
        "--user",
        "ada@acme.example",
        "--group",
        "interns",
        "casino.example",
    ]);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(
        stdout.contains("policy:  ada"),
        "user beats group: {stdout}"
    );
    assert!(stdout.contains("verdict: allow"), "{stdout}");
    assert!(
        stdout.contains(
            "[no   ] policy interns: targets groups interns, but policy ada is more specific or comes first"
        ),
        "{stdout}"
    );
}

#[test]
fn explain_rejects_unknown_tenant() {
    let output = swg(&[
        "policy",
        "explain",
        "--policy",
        EXAMPLE,
        "--tenant",
        "nobody",
        "example.com",
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output.stderr).contains("no tenant `nobody`"),
        "{}",
        text(&output.stderr)
    );
}
