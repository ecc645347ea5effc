//! Exports of the root certificate: PEM, DER and the Apple configuration
//! profile, checked with the plist crate and Python's plistlib.

#![allow(clippy::unwrap_used)]

use plist::Value;
use swg_ca::{export, CaConfig, KeyType, RootCa};

fn root() -> RootCa {
    RootCa::generate(KeyType::EcdsaP256, &CaConfig::default()).unwrap()
}

#[test]
fn pem_and_der_round_trip() {
    let root = root();
    let pem = export::pem(&root);
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
    assert!(pem.lines().all(|line| line.len() <= 64));
    let parsed = swg_ca::CaCertificate::from_pem(pem.as_bytes(), "export").unwrap();
    assert_eq!(parsed.fingerprint(), root.fingerprint());
    assert_eq!(export::der(&root), root.cert_der().to_vec());
}

fn string<'a>(dict: &'a plist::Dictionary, key: &str) -> &'a str {
    dict.get(key)
        .and_then(Value::as_string)
        .unwrap_or_else(|| panic!("no string {key}"))
}

#[test]
fn mobileconfig_has_one_root_payload() {
    let root = root();
    let xml = export::mobileconfig(&root);
    let text = std::str::from_utf8(&xml).unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(text.contains("<!DOCTYPE plist"), "{text}");

    let profile = Value::from_reader_xml(xml.as_slice())
        .unwrap()
        .into_dictionary()
        .unwrap();
    assert_eq!(string(&profile, "PayloadType"), "Configuration");
    assert_eq!(
        profile
            .get("PayloadVersion")
            .and_then(Value::as_signed_integer),
        Some(1)
    );
    let identifier = string(&profile, "PayloadIdentifier");
    let short_fingerprint = root.fingerprint_hex()[..16].to_ascii_lowercase();
    assert_eq!(identifier, format!("swg.root-ca.{short_fingerprint}"));
    assert_eq!(string(&profile, "PayloadUUID").len(), 36);
    assert!(!string(&profile, "PayloadDisplayName").is_empty());

    let payloads = profile
        .get("PayloadContent")
        .and_then(Value::as_array)
        .unwrap();
    assert_eq!(payloads.len(), 1);
    let payload = payloads[0].as_dictionary().unwrap();
    assert_eq!(string(payload, "PayloadType"), "com.apple.security.root");
    assert_eq!(
        payload.get("PayloadContent").and_then(Value::as_data),
        Some(root.cert_der().as_ref())
    );
    assert!(string(payload, "PayloadCertificateFileName").ends_with(".cer"));
    assert!(string(payload, "PayloadIdentifier").starts_with(identifier));
    assert_eq!(
        payload
            .get("PayloadVersion")
            .and_then(Value::as_signed_integer),
        Some(1)
    );
    assert_ne!(
        string(payload, "PayloadUUID"),
        string(&profile, "PayloadUUID")
    );
    assert!(!string(payload, "PayloadDisplayName").is_empty());
}

#[test]
fn mobileconfig_is_deterministic_per_ca() {
    let root = root();
    assert_eq!(export::mobileconfig(&root), export::mobileconfig(&root));
    let other = self::root();
    assert_ne!(export::mobileconfig(&root), export::mobileconfig(&other));
}

const PLISTLIB_CHECK: &str = r#"
import plistlib, sys
profile = plistlib.loads(open(sys.argv[1], "rb").read())
payload = profile["PayloadContent"][0]
assert profile["PayloadType"] == "Configuration", profile
assert payload["PayloadType"] == "com.apple.security.root", payload
print(profile["PayloadIdentifier"], len(payload["PayloadContent"]), payload["PayloadUUID"])
"#;

#[test]
fn python_plistlib_reads_the_mobileconfig() {
    let root = root();
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("root.mobileconfig");
    std::fs::write(&path, export::mobileconfig(&root)).unwrap();

    let output = std::process::Command::new("python3")
        .args(["-c", PLISTLIB_CHECK, path.to_str().unwrap()])
        .output()
        .expect("python3 must be installed (Debian package python3)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let fields: Vec<&str> = stdout.split_whitespace().collect();
    assert_eq!(
        fields[0],
        format!(
            "swg.root-ca.{}",
            root.fingerprint_hex()[..16].to_ascii_lowercase()
        )
    );
    assert_eq!(fields[1], root.cert_der().len().to_string());
    assert_eq!(fields[2].len(), 36);
}
