#![allow(clippy::unwrap_used)]
//! Hot reload with real files: changes are picked up, bad files are rejected and counted,
//! replacements are validated and written atomically.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::Registry;
use swg_policy::{Action, App, PolicyWatcher, ReplaceError, Subject};
use tokio_util::sync::CancellationToken;

fn policy_blocking(domain: &str) -> String {
    format!(
        "id = \"acme\"\n[[feeds]]\nid = \"f\"\npath = \"feed.txt\"\nformat = \"domains\"\ncategory = \"malware\"\n[[policies]]\nid = \"p\"\n[policies.block]\ndomains = [\"{domain}\"]\n"
    )
}

fn blocks(watcher: &PolicyWatcher, name: &str) -> bool {
    let set = watcher.current();
    let tenant = set.tenant("acme").unwrap();
    tenant
        .decide_dns(name, &Subject::anyone(), &App::bundle("x.y"))
        .action
        == Action::Block
}

fn reloads(registry: &Registry, result: &str) -> u64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "swg_policy_reload_total")
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| metric.get_label().iter().any(|l| l.value() == result))
        .map(|metric| metric.get_counter().get_value() as u64)
        .sum()
}

fn rules_gauge(registry: &Registry, kind: &str) -> i64 {
    registry
        .gather()
        .iter()
        .filter(|family| family.name() == "swg_policy_rules")
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| {
            metric
                .get_label()
                .iter()
                .any(|l| l.name() == "kind" && l.value() == kind)
        })
        .map(|metric| metric.get_gauge().get_value() as i64)
        .sum()
}

/// Waits until `condition` holds, for at most `limit`; returns the time it took.
async fn wait_for(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if condition() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_changes_and_rejects_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&dir.path().join("feed.txt"), "feed-one.example\n");
    write(&path, &policy_blocking("aaaa.example"));

    let registry = Registry::new();
    let shutdown = CancellationToken::new();
    let watcher = PolicyWatcher::spawn(vec![path.clone()], &registry, shutdown.clone()).unwrap();
    assert!(blocks(&watcher, "aaaa.example"));
    assert_eq!(rules_gauge(&registry, "block"), 1);

    // Same size, new content: the content hash detects the change.
    write(&path, &policy_blocking("bbbb.example"));
    let took = wait_for(Duration::from_secs(3), || blocks(&watcher, "bbbb.example")).await;
    let took = took.expect("the changed policy was not picked up");
    assert!(took <= Duration::from_secs(2), "reload took {took:?}");
    assert!(!blocks(&watcher, "aaaa.example"));
    assert_eq!(reloads(&registry, "ok"), 1);

    // A bad file: the old policy stays, the failure is counted once.
    write(&path, "id = \"acme\"\nunknown_key = 1\n");
    let counted = wait_for(Duration::from_secs(3), || reloads(&registry, "error") == 1).await;
    assert!(counted.is_some(), "the failed reload was not counted");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        reloads(&registry, "error"),
        1,
        "a bad file is counted once, not every poll"
    );
    assert!(blocks(&watcher, "bbbb.example"));

    // A feed change reloads too.
    write(&path, &policy_blocking("bbbb.example"));
    wait_for(Duration::from_secs(3), || reloads(&registry, "ok") == 2)
        .await
        .unwrap();
    write(
        &dir.path().join("feed.txt"),
        "feed-one.example\nfeed-two.example\n",
    );
    let took = wait_for(Duration::from_secs(3), || {
        blocks(&watcher, "feed-two.example")
    })
    .await;
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(2)),
        "feed change took {took:?}"
    );
    assert_eq!(rules_gauge(&registry, "feed_entries"), 2);

    shutdown.cancel();
}

#[tokio::test]
async fn readers_keep_their_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&dir.path().join("feed.txt"), "x.example\n");
    write(&path, &policy_blocking("old.example"));
    let watcher = PolicyWatcher::new(vec![path.clone()], &Registry::new()).unwrap();

    let snapshot = watcher.current();
    write(&path, &policy_blocking("new-one.example"));
    assert!(watcher.check_now());
    let tenant = snapshot.tenant("acme").unwrap();
    let verdict = tenant.decide_dns("old.example", &Subject::anyone(), &App::default());
    assert_eq!(verdict.action, Action::Block, "an old snapshot stays whole");
    assert!(blocks(&watcher, "new-one.example"));
    assert!(!watcher.check_now(), "nothing changed since");
}

#[tokio::test]
async fn replace_validates_and_writes_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    write(&dir.path().join("feed.txt"), "x.example\n");
    write(&path, &policy_blocking("first.example"));
    let registry = Registry::new();
    let watcher = PolicyWatcher::new(vec![path.clone()], &registry).unwrap();

    let bad = "id = \"acme\"\n[exceptions]\ncidrs = [\"300.0.0.0/8\"]\n";
    let error = watcher.replace_file(&path, bad).unwrap_err();
    assert!(
        matches!(&error, ReplaceError::Invalid(errors) if errors.diagnostics[0].line == 3),
        "{error}"
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        policy_blocking("first.example")
    );
    assert!(blocks(&watcher, "first.example"));

    let set = watcher
        .replace_file(&path, &policy_blocking("second.example"))
        .unwrap();
    assert!(Arc::ptr_eq(&set, &watcher.current()));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        policy_blocking("second.example")
    );
    assert!(blocks(&watcher, "second.example"));
    assert_eq!(reloads(&registry, "ok"), 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let other = dir.path().join("other.toml");
    assert!(matches!(
        watcher.replace_file(&other, "id = \"x\"\n"),
        Err(ReplaceError::UnknownFile(_))
    ));
}

#[tokio::test]
async fn replace_tenant_checks_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("acme.toml");
    let shared = dir.path().join("shared.toml");
    write(&dir.path().join("feed.txt"), "x.example\n");
    write(&single, &policy_blocking("first.example"));
    write(
        &shared,
        "[[tenants]]\nid = \"b\"\n[[tenants]]\nid = \"c\"\n",
    );
    let watcher =
        PolicyWatcher::new(vec![single.clone(), shared.clone()], &Registry::new()).unwrap();

    let wrong = watcher
        .replace_tenant("acme", "id = \"someone-else\"\n")
        .unwrap_err();
    assert!(matches!(wrong, ReplaceError::WrongTenant { .. }), "{wrong}");
    let clash = watcher.replace_tenant("acme", "id = \"b\"\n").unwrap_err();
    assert!(matches!(clash, ReplaceError::Invalid(_)), "{clash}");
    let shared_file = watcher.replace_tenant("b", "id = \"b\"\n").unwrap_err();
    assert!(
        matches!(shared_file, ReplaceError::SharedFile { .. }),
        "{shared_file}"
    );
    assert!(matches!(
        watcher.replace_tenant("zzz", "id = \"zzz\"\n"),
        Err(ReplaceError::UnknownTenant(_))
    ));

    watcher
        .replace_tenant("acme", &policy_blocking("third.example"))
        .unwrap();
    assert!(blocks(&watcher, "third.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_tenant_keeps_feeds_in_folder() {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = dir.path().join("policy");
    std::fs::create_dir_all(policy_dir.join("feeds")).unwrap();
    let file = policy_dir.join("acme.toml");
    let outside = dir.path().join("secret.txt");
    write(&outside, "secret.example\n");
    write(&policy_dir.join("feeds").join("ok.txt"), "ok.example\n");
    write(&policy_dir.join("feed.txt"), "x.example\n");
    write(&file, &policy_blocking("first.example"));
    let watcher = PolicyWatcher::new(vec![file.clone()], &Registry::new()).unwrap();

    // Without a security table a policy blocks every security category.
    let feed_policy = |path: &str| {
        format!(
            "id = \"acme\"\n[[feeds]]\nid = \"f\"\npath = {path:?}\nformat = \"domains\"\ncategory = \"malware\"\n[[policies]]\nid = \"p\"\n"
        )
    };
    for path in [
        outside.to_str().unwrap(),
        "../secret.txt",
        "feeds/../../secret.txt",
        "/etc/hostname",
    ] {
        let error = watcher
            .replace_tenant("acme", &feed_policy(path))
            .unwrap_err();
        let ReplaceError::Invalid(errors) = &error else {
            panic!("{path}: {error}");
        };
        assert_eq!(errors.diagnostics.len(), 1, "{path}: {errors}");
        assert!(
            errors.diagnostics[0]
                .message
                .contains("not allowed in an uploaded policy"),
            "{path}: {errors}"
        );
    }
    // A symbolic link in the folder that points outside it is not followed either.
    std::os::unix::fs::symlink(dir.path(), policy_dir.join("feeds").join("up")).unwrap();
    let error = watcher
        .replace_tenant("acme", &feed_policy("feeds/up/secret.txt"))
        .unwrap_err();
    assert!(
        error.to_string().contains("through a symbolic link"),
        "{error}"
    );
    assert!(blocks(&watcher, "first.example"));

    watcher
        .replace_tenant("acme", &feed_policy("feeds/ok.txt"))
        .unwrap();
    assert!(blocks(&watcher, "ok.example"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_feed_gains_new_category() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    std::fs::create_dir_all(lists.join("malware")).unwrap();
    write(&lists.join("malware").join("domains"), "evil.example\n");
    let path = dir.path().join("policy.toml");
    write(
        &path,
        "id = \"acme\"\n[[feeds]]\nid = \"ut1\"\npath = \"lists\"\nformat = \"directory\"\n[[policies]]\nid = \"p\"\n[policies.content]\nmode = \"all\"\n",
    );
    let shutdown = CancellationToken::new();
    let watcher = PolicyWatcher::spawn(vec![path], &Registry::new(), shutdown.clone()).unwrap();
    assert!(blocks(&watcher, "evil.example"));
    assert!(!blocks(&watcher, "casino.example"));

    std::fs::create_dir_all(lists.join("gambling")).unwrap();
    write(&lists.join("gambling").join("domains"), "casino.example\n");
    let took = wait_for(Duration::from_secs(4), || {
        blocks(&watcher, "casino.example")
    })
    .await;
    assert!(took.is_some(), "the new category folder was not picked up");
    shutdown.cancel();
}
