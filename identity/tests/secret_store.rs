#![allow(clippy::unwrap_used)]
//! The SQLite secret store, seeding, and key revocation through `LiveKeys`.

use swg_identity::{
    seed_tenant, AuthenticationKey, DisablerPassword, LiveKeys, NewAdminToken, Role, SecretStore,
    SqliteSecretStore,
};

#[tokio::test]
async fn seed_creates_secrets_once() {
    let store = SqliteSecretStore::open_in_memory().unwrap();
    let first = seed_tenant(&store, "demo", 100).await.unwrap();
    let key = first.authentication_key.unwrap();
    let token = first.admin_token.unwrap();
    assert!(key.key.starts_with("swgk_"));
    assert!(token.token.starts_with("swga_"));
    assert_eq!(token.record.role, Role::Admin);

    let second = seed_tenant(&store, "demo", 200).await.unwrap();
    assert!(second.authentication_key.is_none());
    assert!(second.admin_token.is_none());

    let found = store.find_admin_token(&token.token).await.unwrap().unwrap();
    assert_eq!(found.tenant, "demo");
    assert_eq!(found.role, Role::Admin);
    assert!(store.disabler_passwords("demo").await.unwrap().is_some());
}

#[tokio::test]
async fn admin_token_is_stored_only_as_hash() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let store = SqliteSecretStore::open(&path).unwrap();
    let token = NewAdminToken::generate("acme", Role::ReadOnly, 1);
    store.insert_admin_token(&token.record).await.unwrap();
    drop(store);

    let connection = rusqlite::Connection::open(&path).unwrap();
    let stored: String = connection
        .query_row("SELECT token_sha256 FROM admin_tokens", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(stored, swg_identity::sha256_hex(token.token.as_bytes()));
    assert_ne!(stored, token.token);

    let store = SqliteSecretStore::open(&path).unwrap();
    let found = store.find_admin_token(&token.token).await.unwrap().unwrap();
    assert_eq!(found.role, Role::ReadOnly);
    assert!(store
        .find_admin_token("swga_wrong")
        .await
        .unwrap()
        .is_none());
}

#[cfg(unix)]
#[test]
fn database_file_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("state/console.db");
    SqliteSecretStore::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn deleting_key_removes_it_from_live_keys() {
    let store = SqliteSecretStore::open_in_memory().unwrap();
    let first = AuthenticationKey::generate("acme", 1);
    let second = AuthenticationKey::generate("acme", 2);
    store.insert_authentication_key(&first).await.unwrap();
    store.insert_authentication_key(&second).await.unwrap();

    let live = LiveKeys::new();
    live.refresh(&store).await.unwrap();
    assert!(live.is_live("acme", &first.id));
    assert!(live.is_live("acme", &second.id));

    let found = store
        .find_authentication_key(&second.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, second.id);

    assert!(!store
        .delete_authentication_key("globex", &first.id)
        .await
        .unwrap());
    assert!(store
        .delete_authentication_key("acme", &first.id)
        .await
        .unwrap());
    live.refresh(&store).await.unwrap();
    assert!(!live.is_live("acme", &first.id));
    assert!(live.is_live("acme", &second.id));
    assert!(store
        .find_authentication_key(&first.key)
        .await
        .unwrap()
        .is_none());

    let keys = store.list_authentication_keys("acme").await.unwrap();
    assert_eq!(keys.len(), 1);
}

#[tokio::test]
async fn disabler_rotation_keeps_previous() {
    let store = SqliteSecretStore::open_in_memory().unwrap();
    let first = DisablerPassword::generate(1);
    let second = DisablerPassword::generate(2);
    let third = DisablerPassword::generate(3);

    store
        .rotate_disabler_password("acme", &first)
        .await
        .unwrap();
    let after_second = store
        .rotate_disabler_password("acme", &second)
        .await
        .unwrap();
    assert_eq!(after_second.current, second);
    assert_eq!(after_second.previous.as_ref(), Some(&first));

    let after_third = store
        .rotate_disabler_password("acme", &third)
        .await
        .unwrap();
    assert_eq!(after_third.current, third);
    assert_eq!(after_third.previous.as_ref(), Some(&second));
    assert_eq!(
        store.disabler_passwords("acme").await.unwrap(),
        Some(after_third)
    );
    assert_eq!(store.disabler_passwords("globex").await.unwrap(), None);
}

#[test]
fn disabler_hash_is_sha256_of_salt_and_password() {
    let password = DisablerPassword::generate(1);
    assert_eq!(password.password.len(), 12);
    let hash = password.salted_hash();
    let mut input = hex::decode(&hash.salt).unwrap();
    input.extend_from_slice(password.password.as_bytes());
    assert_eq!(hash.sha256, swg_identity::sha256_hex(&input));
}
