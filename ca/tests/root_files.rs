//! Loading operator-supplied CAs from PEM files, rejecting unusable ones
//! with messages that name the file, and storing generated CAs.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::openssl;
use swg_ca::store::{self, CaFiles, CaOrigin};
use swg_ca::{CaConfig, CaError, KeyAlgorithm, KeyType, RootCa};

const CA_EXTENSIONS: [&str; 4] = [
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
];

/// Creates a self-signed CA with openssl: `new_key` is e.g. `rsa:2048` or
/// `ec`; returns (certificate, PKCS#8 key).
fn openssl_ca(folder: &Path, name: &str, new_key: &str, extensions: &[&str]) -> (PathBuf, PathBuf) {
    let cert = folder.join(format!("{name}-cert.pem"));
    let key = folder.join(format!("{name}-key.pem"));
    let mut args = vec![
        "req",
        "-x509",
        "-nodes",
        "-days",
        "30",
        "-subj",
        "/CN=Test CA/O=swg tests",
        "-newkey",
        new_key,
    ];
    if new_key == "ec" {
        args.extend(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    args.extend([
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    args.extend(extensions);
    openssl(&args);
    (cert, key)
}

fn traditional_key(key: &Path, name: &str) -> PathBuf {
    let output = key.with_file_name(name);
    openssl(&[
        "pkey",
        "-in",
        key.to_str().unwrap(),
        "-traditional",
        "-out",
        output.to_str().unwrap(),
    ]);
    output
}

fn load_error(cert: &Path, key: &Path) -> CaError {
    RootCa::load(cert, key).unwrap_err()
}

#[test]
fn ec_key_in_pkcs8_and_sec1_loads() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, pkcs8) = openssl_ca(folder.path(), "ec", "ec", &CA_EXTENSIONS);
    let sec1 = traditional_key(&pkcs8, "sec1.pem");
    assert!(std::fs::read_to_string(&sec1)
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));

    for key in [&pkcs8, &sec1] {
        let root = RootCa::load(&cert, key).unwrap();
        assert_eq!(root.key_algorithm(), KeyAlgorithm::EcdsaP256);
        assert_eq!(root.subject(), "CN=Test CA, O=swg tests");
    }
}

#[test]
fn rsa_pkcs8_and_pkcs1_keys_sign() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, pkcs8) = openssl_ca(folder.path(), "rsa", "rsa:2048", &CA_EXTENSIONS);
    let pkcs1 = traditional_key(&pkcs8, "pkcs1.pem");
    assert!(std::fs::read_to_string(&pkcs1)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));

    for key in [&pkcs8, &pkcs1] {
        let root = RootCa::load(&cert, key).unwrap();
        assert_eq!(root.key_algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
        let fixture = common::Fixture::with_root(root);
        fixture.cache.get("rsa.example").unwrap();
    }
}

#[test]
fn mismatched_key_is_rejected_naming_both_files() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, _) = openssl_ca(folder.path(), "one", "ec", &CA_EXTENSIONS);
    let (_, other_key) = openssl_ca(folder.path(), "two", "ec", &CA_EXTENSIONS);
    let (_, rsa_key) = openssl_ca(folder.path(), "three", "rsa:2048", &CA_EXTENSIONS);

    for key in [&other_key, &rsa_key] {
        let error = load_error(&cert, key);
        assert!(matches!(error, CaError::KeyMismatch { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(key.to_str().unwrap()), "{message}");
        assert!(message.contains(cert.to_str().unwrap()), "{message}");
        assert!(message.contains("does not match"), "{message}");
    }
}

#[test]
fn non_ca_certificate_is_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_ca(
        folder.path(),
        "leaf",
        "ec",
        &["-addext", "basicConstraints=critical,CA:FALSE"],
    );
    let error = load_error(&cert, &key);
    assert!(matches!(error, CaError::NotCa { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&format!("{}: the certificate is not a CA", cert.display())));
}

#[test]
fn ca_without_cert_sign_usage_is_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_ca(
        folder.path(),
        "nosign",
        "ec",
        &[
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,digitalSignature",
        ],
    );
    let error = load_error(&cert, &key);
    assert!(
        matches!(error, CaError::CannotSignCertificates { .. }),
        "{error:?}"
    );
}

#[test]
fn expired_ca_is_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = params.self_signed(&key_pair).unwrap();
    let cert_path = folder.path().join("expired.pem");
    let key_path = folder.path().join("expired-key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();

    let error = load_error(&cert_path, &key_path);
    assert!(matches!(error, CaError::Expired { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("expired.pem: the CA certificate expired at 2021-01-01T00:00:00Z;"),
        "{message}"
    );
}

#[test]
fn rsa_1024_ca_is_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_ca(folder.path(), "weak", "rsa:1024", &CA_EXTENSIONS);
    let error = load_error(&cert, &key);
    assert!(
        matches!(error, CaError::RsaTooSmall { bits: 1024, .. }),
        "{error:?}"
    );
    assert!(error
        .to_string()
        .contains("RSA key of 1024 bits is too weak"));
}

#[test]
fn unreadable_and_malformed_files_are_named() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_ca(folder.path(), "ok", "ec", &CA_EXTENSIONS);
    let missing = folder.path().join("missing.pem");
    let garbage = folder.path().join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();

    let error = load_error(&missing, &key);
    assert!(matches!(error, CaError::Read { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&format!("cannot read {}", missing.display())));

    // A folder where a file is expected cannot be read even by root.
    let error = load_error(&cert, folder.path());
    assert!(matches!(error, CaError::Read { .. }), "{error:?}");

    let error = load_error(&garbage, &key);
    assert!(matches!(error, CaError::NoCertificate { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&format!("{}: no PEM certificate", garbage.display())));

    let error = load_error(&cert, &garbage);
    assert!(matches!(error, CaError::InvalidKey { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&format!("{}: no PEM private key", garbage.display())));
}

#[test]
fn encrypted_key_is_rejected_with_advice() {
    let folder = tempfile::tempdir().unwrap();
    let (cert, key) = openssl_ca(folder.path(), "enc", "ec", &CA_EXTENSIONS);
    let encrypted = folder.path().join("encrypted.pem");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        key.to_str().unwrap(),
        "-out",
        encrypted.to_str().unwrap(),
        "-passout",
        "pass:secret",
    ]);
    let error = load_error(&cert, &encrypted);
    assert!(
        error.to_string().contains("the key is encrypted"),
        "{error}"
    );
}

#[test]
fn generated_ca_key_mode_0600_and_reused() {
    let folder = tempfile::tempdir().unwrap();
    let files = CaFiles::new(&CaConfig::default(), folder.path());
    assert_eq!(files.cert, folder.path().join("ca/root-cert.pem"));

    let (first, origin) = store::load_or_generate(&CaConfig::default(), &files).unwrap();
    assert_eq!(origin, CaOrigin::Generated);
    let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let folder_mode = std::fs::metadata(files.key.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(folder_mode, 0o700);

    let (second, origin) = store::load_or_generate(&CaConfig::default(), &files).unwrap();
    assert_eq!(origin, CaOrigin::Loaded);
    assert_eq!(first.fingerprint(), second.fingerprint());

    // openssl reads what swg wrote.
    let text = openssl(&[
        "x509",
        "-in",
        files.cert.to_str().unwrap(),
        "-noout",
        "-subject",
    ]);
    assert!(text.contains("CN = swg Root CA"), "{text}");
    openssl(&["pkey", "-in", files.key.to_str().unwrap(), "-noout"]);
}

#[test]
fn init_refuses_to_replace_without_force() {
    let folder = tempfile::tempdir().unwrap();
    let config = CaConfig::default();
    let files = CaFiles::new(&config, folder.path());
    let first = store::init(&config, KeyType::EcdsaP256, &files, false).unwrap();

    let error = store::init(&config, KeyType::EcdsaP256, &files, false).unwrap_err();
    assert!(matches!(error, CaError::AlreadyExists { .. }), "{error:?}");
    assert!(error.to_string().contains("pass --force"));
    assert_eq!(
        store::load(&files).unwrap().fingerprint(),
        first.fingerprint(),
        "the old CA is untouched"
    );

    let replaced = store::init(&config, KeyType::EcdsaP256, &files, true).unwrap();
    assert_ne!(replaced.fingerprint(), first.fingerprint());
    assert_eq!(
        store::load(&files).unwrap().fingerprint(),
        replaced.fingerprint()
    );
    let mode = std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn half_present_ca_stops_the_start() {
    let folder = tempfile::tempdir().unwrap();
    let config = CaConfig::default();
    let files = CaFiles::new(&config, folder.path());
    store::init(&config, KeyType::EcdsaP256, &files, false).unwrap();
    std::fs::remove_file(&files.cert).unwrap();

    let error = store::load_or_generate(&config, &files).unwrap_err();
    assert!(matches!(error, CaError::Incomplete { .. }), "{error:?}");
    assert!(!files.cert.exists(), "nothing was regenerated");
}

#[test]
fn supplied_files_are_never_generated() {
    let folder = tempfile::tempdir().unwrap();
    let config = CaConfig {
        cert_file: Some(folder.path().join("ca.pem")),
        key_file: Some(folder.path().join("ca-key.pem")),
        ..CaConfig::default()
    };
    let files = CaFiles::new(&config, folder.path());
    let error = store::load_or_generate(&config, &files).unwrap_err();
    assert!(matches!(error, CaError::NotFound { .. }), "{error:?}");
    assert!(!folder.path().join("ca.pem").exists());
}

#[test]
fn rsa_2048_root_generates_and_signs_leaves() {
    let root = RootCa::generate(KeyType::Rsa2048, &CaConfig::default()).unwrap();
    assert_eq!(root.key_algorithm(), KeyAlgorithm::Rsa { bits: 2048 });
    let fixture = common::Fixture::with_root(root);
    fixture.cache.get("rsa.example").unwrap();
}

#[test]
fn leaf_aki_copies_an_unusual_ca_ski() {
    use x509_parser::extensions::ParsedExtension;
    use x509_parser::prelude::{FromDer, X509Certificate};

    let folder = tempfile::tempdir().unwrap();
    let mut extensions = CA_EXTENSIONS.to_vec();
    // Five bytes, made by no standard hash method.
    extensions.extend(["-addext", "subjectKeyIdentifier=0102030405"]);
    // Without this, openssl computes the root's own AKI from the key, so the
    // root no longer looks self-signed to `openssl verify`.
    extensions.extend(["-addext", "authorityKeyIdentifier=keyid:always"]);
    let (cert, key) = openssl_ca(folder.path(), "ski", "ec", &extensions);
    let root = RootCa::load(&cert, &key).unwrap();
    assert_eq!(root.certificate().key_identifier(), [1, 2, 3, 4, 5]);

    let fixture = common::Fixture::with_root(root);
    let leaf = fixture.cache.get("ski.example").unwrap();
    let (_, certificate) = X509Certificate::from_der(&leaf.cert[0]).unwrap();
    let authority = certificate
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(authority, [1, 2, 3, 4, 5]);

    let leaf_pem = folder.path().join("leaf.pem");
    let der_path = folder.path().join("leaf.der");
    std::fs::write(&der_path, &leaf.cert[0]).unwrap();
    openssl(&[
        "x509",
        "-inform",
        "DER",
        "-in",
        der_path.to_str().unwrap(),
        "-out",
        leaf_pem.to_str().unwrap(),
    ]);
    openssl(&[
        "verify",
        "-x509_strict",
        "-CAfile",
        cert.to_str().unwrap(),
        leaf_pem.to_str().unwrap(),
    ]);
}
