#![allow(clippy::unwrap_used)]
//! `swg secrets admin-token` and `swg secrets auth-key`, run as the real binary
//! against a console state store that the test seeds itself.

use std::path::Path;
use std::process::{Command, Output};

use swg_identity::{Role, SecretStore, SqliteSecretStore};

fn swg(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swg"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .current_dir(data_dir)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Returns the secret at the end of the command's one output line.
fn printed_secret(output: &Output) -> String {
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    stdout.trim().rsplit(' ').next().unwrap().to_owned()
}

#[tokio::test]
async fn secrets_commands_add_working_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let output = swg(dir.path(), &["secrets", "admin-token", "--tenant", "demo"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("no console state at"),
        "{}",
        text(&output.stderr)
    );

    let store = SqliteSecretStore::open(&dir.path().join("console.db")).unwrap();
    swg_identity::seed_tenant(&store, "demo", swg_identity::unix_now())
        .await
        .unwrap();

    let output = swg(dir.path(), &["secrets", "admin-token", "--tenant", "other"]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("tenant \"other\" has no secrets"),
        "{}",
        text(&output.stderr)
    );

    let token = printed_secret(&swg(
        dir.path(),
        &[
            "secrets",
            "admin-token",
            "--tenant",
            "demo",
            "--role",
            "read-only",
        ],
    ));
    let record = store.find_admin_token(&token).await.unwrap().unwrap();
    assert_eq!(record.tenant, "demo");
    assert_eq!(record.role, Role::ReadOnly);
    assert_eq!(store.list_admin_tokens("demo").await.unwrap().len(), 2);

    // The API's spelling of the role works too.
    let token = printed_secret(&swg(
        dir.path(),
        &[
            "secrets",
            "admin-token",
            "--tenant",
            "demo",
            "--role",
            "read_only",
        ],
    ));
    let record = store.find_admin_token(&token).await.unwrap().unwrap();
    assert_eq!(record.role, Role::ReadOnly);

    let key = printed_secret(&swg(
        dir.path(),
        &["secrets", "auth-key", "--tenant", "demo"],
    ));
    let found = store.find_authentication_key(&key).await.unwrap().unwrap();
    assert_eq!(found.tenant, "demo");
    assert_eq!(
        store.list_authentication_keys("demo").await.unwrap().len(),
        2
    );
}
