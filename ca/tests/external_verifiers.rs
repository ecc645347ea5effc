//! Leaves checked by verifiers other than rustls: `openssl verify` and
//! `openssl x509 -text` on exported leaves, and Python's `ssl` module with
//! VERIFY_X509_STRICT in a real handshake against a rustls server.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{openssl, start_server, Fixture};
use swg_ca::{normalize_host, LeafMinter};
use time::{Duration, OffsetDateTime};

fn write_leaf(fixture: &Fixture, host: &str, folder: &Path) -> (String, String) {
    let minter = LeafMinter::new(Arc::clone(&fixture.root), Duration::days(30)).unwrap();
    let der = minter
        .mint_der(&normalize_host(host).unwrap(), OffsetDateTime::now_utc())
        .unwrap();
    let leaf = folder.join("leaf.der");
    std::fs::write(&leaf, der).unwrap();
    let root = folder.join("root.pem");
    std::fs::write(&root, fixture.root.cert_pem()).unwrap();
    let leaf_pem = folder.join("leaf.pem");
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        leaf.to_str().unwrap(),
        "-out",
        leaf_pem.to_str().unwrap(),
    ]);
    (
        root.to_str().unwrap().to_owned(),
        leaf_pem.to_str().unwrap().to_owned(),
    )
}

/// Returns the colon-separated hex on the line after `header` in
/// `openssl x509 -text` output, without OpenSSL 1.1's `keyid:` prefix.
fn identifier_after(text: &str, header: &str) -> String {
    let mut lines = text.lines();
    lines
        .find(|line| line.contains(header))
        .unwrap_or_else(|| panic!("no {header} in {text}"));
    lines
        .next()
        .unwrap()
        .trim()
        .trim_start_matches("keyid:")
        .to_owned()
}

fn parse_openssl_date(line: &str) -> OffsetDateTime {
    let format = time::macros::format_description!(
        "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
    );
    let value = line.split_once('=').unwrap().1.trim();
    time::PrimitiveDateTime::parse(value, &format)
        .unwrap()
        .assume_utc()
}

#[test]
fn openssl_verifies_leaf_and_shows_its_extensions() {
    let fixture = Fixture::new();
    let folder = tempfile::tempdir().unwrap();
    for host in [
        "www.example.com",
        "127.0.0.1",
        "::1",
        "xn--bcher-kva.example",
    ] {
        let (root, leaf) = write_leaf(&fixture, host, folder.path());

        let verified = openssl(&[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            &root,
            &leaf,
        ]);
        assert_eq!(verified.trim(), format!("{leaf}: OK"));

        let text = openssl(&["x509", "-in", &leaf, "-noout", "-text"]);
        let expected_san = if host.contains(':') {
            "IP Address:0:0:0:0:0:0:0:1".to_owned()
        } else if host.parse::<std::net::IpAddr>().is_ok() {
            format!("IP Address:{host}")
        } else {
            format!("DNS:{host}")
        };
        assert!(
            text.contains(&expected_san),
            "{host}: no {expected_san} in {text}"
        );
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(text.contains("Digital Signature"), "{text}");
        assert!(text.contains("CA:FALSE"), "{text}");

        let root_text = openssl(&["x509", "-in", &root, "-noout", "-text"]);
        assert_eq!(
            identifier_after(&text, "Authority Key Identifier"),
            identifier_after(&root_text, "Subject Key Identifier")
        );

        let dates = openssl(&["x509", "-in", &leaf, "-noout", "-startdate", "-enddate"]);
        let mut lines = dates.lines();
        let not_before = parse_openssl_date(lines.next().unwrap());
        let not_after = parse_openssl_date(lines.next().unwrap());
        assert_eq!(not_after - not_before, Duration::days(30));
        assert!(not_after - not_before <= Duration::days(397));
        let backdate = OffsetDateTime::now_utc() - not_before;
        assert!(
            backdate >= Duration::minutes(59) && backdate <= Duration::minutes(61),
            "{backdate}"
        );
    }
}

#[test]
fn openssl_shows_root_as_ca_with_ten_years() {
    let fixture = Fixture::new();
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("root.pem");
    std::fs::write(&root, fixture.root.cert_pem()).unwrap();
    let text = openssl(&["x509", "-in", root.to_str().unwrap(), "-noout", "-text"]);
    assert!(text.contains("CA:TRUE"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("Subject Key Identifier"), "{text}");
    let span = fixture.root.not_after() - fixture.root.not_before();
    assert!(
        span >= Duration::days(3652) && span < Duration::days(3653),
        "{span}"
    );
}

#[test]
fn long_host_has_no_common_name() {
    let fixture = Fixture::new();
    let folder = tempfile::tempdir().unwrap();
    let host = format!("{}.example.com", "a".repeat(58));
    let (root, leaf) = write_leaf(&fixture, &host, folder.path());
    openssl(&["verify", "-x509_strict", "-CAfile", &root, &leaf]);
    let text = openssl(&["x509", "-in", &leaf, "-noout", "-text"]);
    assert!(
        text.contains("X509v3 Subject Alternative Name: critical"),
        "{text}"
    );
    assert!(!text.contains("CN = aaaa"), "{text}");
}

const PYTHON_CLIENT: &str = r#"
import socket, ssl, sys
cafile, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=cafile)
context.verify_flags |= ssl.VERIFY_X509_STRICT
with socket.create_connection(("127.0.0.1", port)) as raw:
    with context.wrap_socket(raw, server_hostname=name) as tls:
        tls.sendall(b"hello")
        print(tls.version(), tls.recv(5).decode())
"#;

#[tokio::test]
async fn python_strict_verification_accepts_the_chain() {
    let fixture = Fixture::new();
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("root.pem");
    std::fs::write(&root, fixture.root.cert_pem()).unwrap();
    let address = start_server(Arc::clone(&fixture.cache), "127.0.0.1:0").await;

    let long_host = format!("{}.example.com", "a".repeat(58));
    for name in [
        "www.example.com",
        "127.0.0.1",
        long_host.as_str(),
        "xn--bcher-kva.example",
    ] {
        let output = tokio::process::Command::new("python3")
            .args([
                "-c",
                PYTHON_CLIENT,
                root.to_str().unwrap(),
                &address.port().to_string(),
                name,
            ])
            .output()
            .await
            .expect("python3 must be installed (Debian package python3)");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{name}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(stdout.trim(), "TLSv1.3 world", "{name}");
    }
}
