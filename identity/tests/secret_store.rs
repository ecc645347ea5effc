#![allow(clippy::unwrap_used)]
//! The SQLite secret store, seeding, and key revocation through `LiveKeys`.

use swg_identity::{
    seed_tenant, AuthenticationKey, DisablerPassword, LiveKeys, NewAdminToken, Role, SecretStore,
    SqliteSecretStore, StoreError,
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

#[tokio::test]
async fn seed_skips_tenant_whose_keys_were_deleted() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let store = SqliteSecretStore::open(&path).unwrap();
    let first = seed_tenant(&store, "demo", 100).await.unwrap();
    let key = first.authentication_key.unwrap();
    assert!(store
        .delete_authentication_key("demo", &key.id)
        .await
        .unwrap());
    drop(store);

    // A restart opens the file again and seeds every tenant of the policy.
    let store = SqliteSecretStore::open(&path).unwrap();
    let again = seed_tenant(&store, "demo", 200).await.unwrap();
    assert!(again.authentication_key.is_none());
    assert!(again.admin_token.is_none());
    assert!(store
        .list_authentication_keys("demo")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.list_admin_tokens("demo").await.unwrap().len(), 1);
}

/// The layout of `console.db` written by swg before it recorded which tenants were
/// seeded.
const UNVERSIONED_SCHEMA: &str = "
CREATE TABLE authentication_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    key_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX authentication_keys_tenant ON authentication_keys (tenant);
CREATE TABLE disabler_passwords (
    tenant TEXT NOT NULL,
    slot TEXT NOT NULL CHECK (slot IN ('current', 'previous')),
    password TEXT NOT NULL,
    salt TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, slot)
);
CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX admin_tokens_tenant ON admin_tokens (tenant);
";

#[tokio::test]
async fn old_store_tenants_with_secrets_count_as_seeded() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch(UNVERSIONED_SCHEMA).unwrap();
    // `tokens` lost every key, `keys` every admin token (through the race that
    // deleted the last one), and `disabler` both: each was seeded before.
    connection
        .execute_batch(
            "INSERT INTO admin_tokens VALUES ('t1', 'tokens', 'admin', 'aa', 1);
             INSERT INTO authentication_keys VALUES ('k1', 'keys', 'swgk_x', 'bb', 2);
             INSERT INTO disabler_passwords VALUES ('disabler', 'current', 'pw', '00', 3);",
        )
        .unwrap();
    drop(connection);

    let store = SqliteSecretStore::open(&path).unwrap();
    for tenant in ["tokens", "keys", "disabler"] {
        let seeded = seed_tenant(&store, tenant, 100).await.unwrap();
        assert!(seeded.authentication_key.is_none(), "{tenant}");
        assert!(seeded.admin_token.is_none(), "{tenant}");
    }
    assert!(store
        .list_authentication_keys("tokens")
        .await
        .unwrap()
        .is_empty());
    assert!(store.list_admin_tokens("keys").await.unwrap().is_empty());
    assert!(store
        .list_authentication_keys("disabler")
        .await
        .unwrap()
        .is_empty());

    let fresh = seed_tenant(&store, "fresh", 100).await.unwrap();
    assert!(fresh.authentication_key.is_some());
    assert!(fresh.admin_token.is_some());
}

/// Clears the immutable attribute of a file when dropped, so the temporary folder
/// can be removed.
struct Mutable<'a>(&'a std::path::Path);

impl Drop for Mutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn read_only_file_is_reported_not_writable() {
    use std::os::unix::fs::PermissionsExt as _;

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let store = SqliteSecretStore::open(&path).unwrap();
    seed_tenant(&store, "demo", 1).await.unwrap();
    drop(store);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    // Root ignores file modes, so make the file immutable too.
    let _guard = Mutable(&path);
    if std::fs::OpenOptions::new().write(true).open(&path).is_ok() {
        let status = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "chattr +i failed; run as a non-root user or with CAP_LINUX_IMMUTABLE"
        );
    }

    let error = SqliteSecretStore::open(&path).err().unwrap().to_string();

    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("not writable"), "{error}");
    assert!(error.contains("write access"), "{error}");
}

#[tokio::test]
async fn truncated_file_is_reported_corrupt() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let store = SqliteSecretStore::open(&path).unwrap();
    for tenant in 0..100 {
        seed_tenant(&store, &format!("tenant-{tenant}"), 1)
            .await
            .unwrap();
    }
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 16 * 1024, "{size}");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size / 2)
        .unwrap();

    let error = SqliteSecretStore::open(&path).err().unwrap().to_string();

    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("corrupt"), "{error}");
    assert!(error.contains("backup"), "{error}");
    assert!(error.contains("move it aside"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deletes_keep_last_admin_token() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    // Two handles are two connections, as a second process would have.
    let first = SqliteSecretStore::open(&path).unwrap();
    let second = SqliteSecretStore::open(&path).unwrap();

    for round in 0..50 {
        let tenant = format!("tenant-{round}");
        let one = NewAdminToken::generate(&tenant, Role::Admin, 1);
        let two = NewAdminToken::generate(&tenant, Role::Admin, 2);
        first.insert_admin_token(&one.record).await.unwrap();
        first.insert_admin_token(&two.record).await.unwrap();

        let (deleted_one, deleted_two) = tokio::join!(
            first.delete_admin_token(&tenant, &one.record.id),
            second.delete_admin_token(&tenant, &two.record.id),
        );
        let outcomes = [&deleted_one, &deleted_two];
        let deleted = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Ok(true)))
            .count();
        let kept = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Err(StoreError::LastAdminToken)))
            .count();
        assert_eq!(
            (deleted, kept),
            (1, 1),
            "round {round}: {deleted_one:?} {deleted_two:?}"
        );
        assert_eq!(
            first.list_admin_tokens(&tenant).await.unwrap().len(),
            1,
            "round {round}"
        );
    }
}

#[tokio::test]
async fn last_admin_rule_ignores_read_only_tokens() {
    let store = SqliteSecretStore::open_in_memory().unwrap();
    let admin = NewAdminToken::generate("acme", Role::Admin, 1);
    let reader = NewAdminToken::generate("acme", Role::ReadOnly, 2);
    store.insert_admin_token(&admin.record).await.unwrap();
    store.insert_admin_token(&reader.record).await.unwrap();

    let last = store.delete_admin_token("acme", &admin.record.id).await;
    assert!(matches!(last, Err(StoreError::LastAdminToken)), "{last:?}");
    assert!(!store
        .delete_admin_token("globex", &admin.record.id)
        .await
        .unwrap());
    assert!(!store.delete_admin_token("acme", "missing").await.unwrap());
    assert!(store
        .delete_admin_token("acme", &reader.record.id)
        .await
        .unwrap());
    assert_eq!(store.list_admin_tokens("acme").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_seeding_creates_one_set() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let first = SqliteSecretStore::open(&path).unwrap();
    let second = SqliteSecretStore::open(&path).unwrap();

    for round in 0..20 {
        let tenant = format!("tenant-{round}");
        let (one, two) = tokio::join!(
            seed_tenant(&first, &tenant, 1),
            seed_tenant(&second, &tenant, 1),
        );
        let (one, two) = (one.unwrap(), two.unwrap());
        assert_ne!(
            one.authentication_key.is_some(),
            two.authentication_key.is_some(),
            "round {round}"
        );
        assert_eq!(
            first.list_authentication_keys(&tenant).await.unwrap().len(),
            1
        );
        assert_eq!(first.list_admin_tokens(&tenant).await.unwrap().len(), 1);
        assert!(first.is_seeded(&tenant).await.unwrap());
    }
}

#[tokio::test]
async fn secrets_created_later_mark_tenant_seeded() {
    let store = SqliteSecretStore::open_in_memory().unwrap();
    assert!(!store.is_seeded("acme").await.unwrap());
    let key = AuthenticationKey::generate("acme", 1);
    store.insert_authentication_key(&key).await.unwrap();
    assert!(store.is_seeded("acme").await.unwrap());
    assert!(store
        .delete_authentication_key("acme", &key.id)
        .await
        .unwrap());

    let seeded = seed_tenant(&store, "acme", 2).await.unwrap();
    assert!(seeded.authentication_key.is_none());
    assert!(seeded.admin_token.is_none());

    let token = NewAdminToken::generate("globex", Role::ReadOnly, 1);
    store.insert_admin_token(&token.record).await.unwrap();
    assert!(store.is_seeded("globex").await.unwrap());
}

#[tokio::test]
async fn migration_records_version_and_runs_once() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.execute_batch(UNVERSIONED_SCHEMA).unwrap();
    connection
        .execute_batch("INSERT INTO admin_tokens VALUES ('t1', 'acme', 'admin', 'aa', 7);")
        .unwrap();
    drop(connection);

    drop(SqliteSecretStore::open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 1);
    let seeded: Vec<(String, i64)> = connection
        .prepare("SELECT tenant, seeded_at FROM seeded_tenants")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(seeded, [("acme".to_owned(), 7)]);

    // A tenant given a disabler password after the migration is not seeded by a
    // second migration: the migration runs only on version 0.
    connection
        .execute_batch("INSERT INTO disabler_passwords VALUES ('late', 'current', 'pw', '00', 8);")
        .unwrap();
    drop(connection);
    let store = SqliteSecretStore::open(&path).unwrap();
    assert!(!store.is_seeded("late").await.unwrap());
    assert!(store.is_seeded("acme").await.unwrap());
}

#[test]
fn newer_schema_is_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("console.db");
    drop(SqliteSecretStore::open(&path).unwrap());
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection.pragma_update(None, "user_version", 2).unwrap();
    drop(connection);

    let error = SqliteSecretStore::open(&path).err().unwrap();

    assert!(
        matches!(
            error,
            StoreError::NewerSchema {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains(&path.display().to_string()));
}
