//! End-to-end tests of `swg ca init`, `swg ca show` and `swg ca export`
//! through the built binary.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

fn swg(folder: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(args)
        .current_dir(folder)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn openssl(args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl must be installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        stderr(&output)
    );
    stdout(&output)
}

#[test]
fn init_keeps_existing_ca_without_force() {
    let folder = tempfile::tempdir().unwrap();

    let created = swg(folder.path(), &["ca", "init"]);
    assert!(created.status.success(), "{}", stderr(&created));
    assert!(
        stdout(&created).contains("Key type:    ECDSA P-256"),
        "{}",
        stdout(&created)
    );
    let certificate = folder.path().join("swg-data/ca/root-cert.pem");
    let key = folder.path().join("swg-data/ca/root-key.pem");
    let original = std::fs::read(&certificate).unwrap();
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let refused = swg(folder.path(), &["ca", "init"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("a root CA already exists"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("--force"));
    assert_eq!(std::fs::read(&certificate).unwrap(), original);

    let replaced = swg(
        folder.path(),
        &["ca", "init", "--force", "--key-type", "rsa-2048"],
    );
    assert!(replaced.status.success(), "{}", stderr(&replaced));
    assert!(stdout(&replaced).contains("Key type:    RSA 2048"));
    assert_ne!(std::fs::read(&certificate).unwrap(), original);
}

#[test]
fn init_rejects_weak_and_unknown_key_types() {
    let folder = tempfile::tempdir().unwrap();
    let weak = swg(folder.path(), &["ca", "init", "--key-type", "rsa-1024"]);
    assert_eq!(weak.status.code(), Some(2));
    assert!(
        stderr(&weak).contains("RSA keys of 1024 bits are too weak"),
        "{}",
        stderr(&weak)
    );

    let unknown = swg(folder.path(), &["ca", "init", "--key-type", "dsa"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("expected one of ecdsa-p256, rsa-2048"),
        "{}",
        stderr(&unknown)
    );
    assert!(!folder.path().join("swg-data/ca").exists());
}

#[test]
fn show_prints_subject_key_type_fingerprint_and_validity() {
    let folder = tempfile::tempdir().unwrap();
    let missing = swg(folder.path(), &["ca", "show"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("no root CA at"),
        "{}",
        stderr(&missing)
    );

    assert!(swg(folder.path(), &["ca", "init"]).status.success());
    let shown = swg(folder.path(), &["ca", "show"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    let text = stdout(&shown);

    let certificate = folder.path().join("swg-data/ca/root-cert.pem");
    let fingerprint = openssl(&[
        "x509",
        "-in",
        certificate.to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let fingerprint = fingerprint.trim().split_once('=').unwrap().1;
    assert!(
        text.contains(&format!("SHA-256:     {fingerprint}\n")),
        "{text}"
    );
    assert!(
        text.contains("Subject:     CN=swg Root CA, O=swg\n"),
        "{text}"
    );
    assert!(text.contains("Key type:    ECDSA P-256\n"), "{text}");
    assert!(text.contains("Not before:  "), "{text}");
    assert!(text.contains("Not after:   "), "{text}");
    assert!(
        text.contains("Key check:   matches the certificate\n"),
        "{text}"
    );

    // Another CA's key in place of this one's: shown, but reported and failed.
    let other = tempfile::tempdir().unwrap();
    assert!(swg(other.path(), &["ca", "init"]).status.success());
    std::fs::copy(
        other.path().join("swg-data/ca/root-key.pem"),
        folder.path().join("swg-data/ca/root-key.pem"),
    )
    .unwrap();
    let mismatched = swg(folder.path(), &["ca", "show"]);
    assert_eq!(mismatched.status.code(), Some(1));
    assert!(
        stdout(&mismatched).contains("Key check:   DOES NOT MATCH"),
        "{}",
        stdout(&mismatched)
    );
    assert!(
        stderr(&mismatched).contains("does not match the certificate"),
        "{}",
        stderr(&mismatched)
    );
}

#[test]
fn export_writes_pem_der_and_mobileconfig() {
    let folder = tempfile::tempdir().unwrap();
    let data = folder.path().join("elsewhere");
    let data_arg = data.to_str().unwrap();
    assert!(swg(folder.path(), &["ca", "init", "--data-dir", data_arg])
        .status
        .success());
    let certificate = std::fs::read_to_string(data.join("ca/root-cert.pem")).unwrap();

    let pem = swg(
        folder.path(),
        &["ca", "export", "--data-dir", data_arg, "--format", "pem"],
    );
    assert!(pem.status.success(), "{}", stderr(&pem));
    assert_eq!(stdout(&pem), certificate);

    let der_path = folder.path().join("root.cer");
    let der = swg(
        folder.path(),
        &[
            "ca",
            "export",
            "--data-dir",
            data_arg,
            "--format",
            "der",
            "--out",
            der_path.to_str().unwrap(),
        ],
    );
    assert!(der.status.success(), "{}", stderr(&der));
    let reencoded = openssl(&["x509", "-inform", "DER", "-in", der_path.to_str().unwrap()]);
    assert_eq!(reencoded, certificate);

    let profile = swg(
        folder.path(),
        &[
            "ca",
            "export",
            "--data-dir",
            data_arg,
            "--format",
            "mobileconfig",
        ],
    );
    assert!(profile.status.success(), "{}", stderr(&profile));
    let value = plist::Value::from_reader_xml(profile.stdout.as_slice()).unwrap();
    let payloads = value
        .as_dictionary()
        .unwrap()
        .get("PayloadContent")
        .unwrap()
        .as_array()
        .unwrap();
    let payload = payloads[0].as_dictionary().unwrap();
    assert_eq!(
        payload.get("PayloadType").unwrap().as_string(),
        Some("com.apple.security.root")
    );
    assert_eq!(
        payload.get("PayloadContent").unwrap().as_data(),
        Some(std::fs::read(&der_path).unwrap().as_slice())
    );
}

#[test]
fn export_without_ca_fails() {
    let folder = tempfile::tempdir().unwrap();
    let output = swg(folder.path(), &["ca", "export", "--format", "der"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("no root CA at swg-data/ca/root-cert.pem"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn der_export_to_terminal_is_rejected() {
    let folder = tempfile::tempdir().unwrap();
    assert!(swg(folder.path(), &["ca", "init"]).status.success());

    // script(1) from bsdutils (essential in Debian) runs the command on a
    // pseudo-terminal, as if a person typed it.
    let command = format!("{} ca export --format der", env!("CARGO_BIN_EXE_swg"));
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(folder.path())
        .output()
        .expect("script must be installed (Debian package bsdutils)");
    assert_eq!(output.status.code(), Some(1));
    let terminal = stdout(&output);
    assert!(
        terminal.contains("binary DER is not written to a terminal"),
        "{terminal}"
    );
    assert!(
        !terminal.contains('\u{fffd}'),
        "no binary bytes reached the terminal: {terminal:?}"
    );
}
