#![allow(clippy::unwrap_used)]
//! Loading, generating and validating signing keys.

use swg_identity::{IdentityConfig, InlineSigningKey, SigningKeyError, SigningKeys};

#[cfg(unix)]
#[test]
fn key_file_is_generated_private_and_reloaded() {
    use std::os::unix::fs::PermissionsExt as _;
    let directory = tempfile::tempdir().unwrap();
    let config = IdentityConfig::default();

    let generated = config.load_signing_keys(directory.path()).unwrap();
    let path = directory.path().join("secrets/signing.key");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let reloaded = config.load_signing_keys(directory.path()).unwrap();
    assert_eq!(generated.active_id(), reloaded.active_id());
}

#[test]
fn key_file_errors_name_the_line() {
    let text = "# comment\n\nk1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\nk2 c2hvcnQ\n";
    let error = SigningKeys::parse("keys.txt", text).unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("keys.txt:4:"), "{message}");
    assert!(message.contains("at least 32"), "{message}");
}

#[test]
fn duplicate_key_ids_are_rejected() {
    let secret = vec![1u8; 32];
    let error = SigningKeys::from_secrets(
        "test",
        &[("k1".to_owned(), secret.clone()), ("k1".to_owned(), secret)],
    )
    .unwrap_err();
    assert!(matches!(error, SigningKeyError::DuplicateId { .. }));
}

#[test]
fn key_id_with_dot_is_rejected() {
    let error =
        SigningKeys::from_secrets("test", &[("a.b".to_owned(), vec![1u8; 32])]).unwrap_err();
    assert!(matches!(error, SigningKeyError::Parse { .. }));
}

#[test]
fn inline_keys_win_over_file() {
    let directory = tempfile::tempdir().unwrap();
    let config = IdentityConfig {
        signing_keys: vec![InlineSigningKey {
            id: "inline1".to_owned(),
            secret: "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVoxMjM0NTY".to_owned(),
        }],
        ..IdentityConfig::default()
    };
    config.validate().unwrap();
    let keys = config.load_signing_keys(directory.path()).unwrap();
    assert_eq!(keys.active_id(), "inline1");
    assert!(!directory.path().join("secrets/signing.key").exists());
}

#[test]
fn config_out_of_range_names_key() {
    let config = IdentityConfig {
        ticket_ttl_secs: 3600,
        ..IdentityConfig::default()
    };
    let message = config.validate().unwrap_err().to_string();
    assert_eq!(
        message,
        "identity.ticket_ttl_secs = 3600 is out of range; allowed: 5 to 300"
    );
}

#[test]
fn config_parses_from_toml_and_rejects_unknown_keys() {
    let config: IdentityConfig =
        toml::from_str("token_ttl_hours = 12\nhint_ttl_secs = 60").unwrap();
    assert_eq!(config.token_ttl_hours, 12);
    assert_eq!(config.hint_ttl_secs, 60);
    assert_eq!(config.ack_ttl_secs, 3600);
    assert!(toml::from_str::<IdentityConfig>("token_ttl = 12").is_err());
}
