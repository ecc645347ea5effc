#![allow(clippy::unwrap_used)]
//! Feeds: the real threat lists, the other formats, and hostile input.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use swg_policy::{Action, App, Category, PolicySet, Subject, Tenant};

const SHARED_DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/data");

fn data(name: &str) -> PathBuf {
    Path::new(SHARED_DATA).join(name)
}

/// Tenant `real` with URLhaus as malware, the phishing list as phishing, and the
/// phishing allowlist as the allow list of its only policy.
fn real_lists() -> (tempfile::TempDir, PolicySet) {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        r#"
id = "real"
[[feeds]]
id = "urlhaus"
path = {:?}
format = "adblock"
category = "malware"
[[feeds]]
id = "phishing"
path = {:?}
format = "domains"
category = "phishing"
[[feeds]]
id = "phishing-allowlist"
path = {:?}
format = "domains"
[[policies]]
id = "everyone"
[policies.allow]
feeds = ["phishing-allowlist"]
"#,
        data("urlhaus-filter-online.txt").display().to_string(),
        data("phishing-domains.txt").display().to_string(),
        data("phishing-allowlist.txt").display().to_string(),
    );
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let set = PolicySet::load(&[&path]).unwrap_or_else(|errors| panic!("{errors}"));
    (dir, set)
}

fn lines(name: &str, comment: char) -> Vec<String> {
    std::fs::read_to_string(data(name))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(comment))
        .map(str::to_string)
        .collect()
}

fn app_dns(tenant: &Tenant, name: &str) -> swg_policy::Verdict {
    tenant.decide_dns(name, &Subject::anyone(), &App::bundle("com.example.app"))
}

fn proxy(tenant: &Tenant, address: &str) -> swg_policy::Verdict {
    let url = url::Url::parse(address).unwrap();
    tenant.decide_url(
        &url,
        &Subject::anyone(),
        &App::bundle("com.apple.mobilesafari"),
    )
}

#[test]
fn urlhaus_loads_every_line() {
    let (_dir, set) = real_lists();
    let urlhaus = set
        .feeds()
        .iter()
        .find(|f| f.path.ends_with("urlhaus-filter-online.txt"))
        .unwrap();
    let rules = lines("urlhaus-filter-online.txt", '!');
    assert_eq!(
        urlhaus.stats.skipped, 0,
        "{:?}",
        urlhaus.stats.skipped_examples
    );
    assert_eq!(urlhaus.stats.entries, rules.len());
}

#[test]
fn urlhaus_bare_host_is_blocked_at_dns() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    let verdict = app_dns(real, "111101111.ru");
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(verdict.category, Category::parse("malware"));
    assert_eq!(verdict.rule_id.as_deref(), Some("urlhaus/111101111.ru"));
    assert_eq!(app_dns(real, "www.111101111.ru").action, Action::Block);
}

#[test]
fn urlhaus_ip_is_blocked() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    let verdict = real.decide_dns_answer(
        &["innocent.test"],
        &["1.1.104.12".parse().unwrap()],
        &Subject::anyone(),
        &App::bundle("x.y"),
    );
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(verdict.rule_id.as_deref(), Some("urlhaus/1.1.104.12"));
    assert_eq!(
        proxy(real, "http://1.1.104.12/bins/x").action,
        Action::Block
    );
    assert_eq!(proxy(real, "http://1.1.104.13/").action, Action::Allow);
}

#[test]
fn urlhaus_url_rule_applies_at_proxy_only() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    // At DNS the URL rule only sends the app to the proxy, which checks the path.
    assert_eq!(
        app_dns(real, "astenterprises.com.pk").action,
        Action::Inspect
    );
    let verdict = proxy(real, "https://astenterprises.com.pk/ef/ef.vbs");
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(
        verdict.rule_id.as_deref(),
        Some("urlhaus/astenterprises.com.pk/ef/ef.vbs")
    );
    assert_eq!(
        proxy(real, "https://astenterprises.com.pk/ef/ef.vbs.txt").action,
        Action::Allow
    );
    assert_eq!(
        proxy(real, "https://astenterprises.com.pk/index.html").action,
        Action::Allow
    );
}

#[test]
fn urlhaus_query_rule_matches_its_query() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    assert_eq!(app_dns(real, "docs.google.com").action, Action::Inspect);
    let blocked = "https://docs.google.com/uc?export=download&id=140vkyfrfhbqkukc2hnw-gsvi5wjw6iyi";
    assert_eq!(proxy(real, blocked).action, Action::Block);
    assert_eq!(
        proxy(
            real,
            "https://docs.google.com/uc?export=download&id=somethingelse"
        )
        .action,
        Action::Allow
    );
}

#[test]
fn phishing_domains_are_blocked() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    let verdict = app_dns(real, "0x-project.com");
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(verdict.category, Category::parse("phishing"));
    assert_eq!(app_dns(real, "login.0x-project.com.").action, Action::Block);
}

#[test]
fn every_phishing_entry_not_allowlisted_is_blocked() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    let allow: HashSet<String> = lines("phishing-allowlist.txt", '#').into_iter().collect();
    let covered = |name: &str| {
        let labels: Vec<&str> = name.split('.').collect();
        (0..labels.len()).any(|i| allow.contains(&labels[i..].join(".")))
    };
    let mut blocked = 0;
    for name in lines("phishing-domains.txt", '#') {
        let action = app_dns(real, &name).action;
        if covered(&name) {
            assert_eq!(action, Action::Allow, "{name}");
        } else {
            assert_eq!(action, Action::Block, "{name}");
            blocked += 1;
        }
    }
    assert!(blocked > 13_000, "{blocked}");
}

#[test]
fn allowlisted_names_are_never_blocked() {
    let (_dir, set) = real_lists();
    let real = set.tenant("real").unwrap();
    let blocklist: HashSet<String> = lines("phishing-domains.txt", '#').into_iter().collect();
    let allowlist = lines("phishing-allowlist.txt", '#');
    for name in &allowlist {
        let verdict = app_dns(real, name);
        assert_eq!(verdict.action, Action::Allow, "{name}: {}", verdict.reason);
    }

    // Names on both lists are allowed by the allow list, not merely unmatched.
    let both: Vec<&String> = allowlist
        .iter()
        .filter(|n| blocklist.contains(*n))
        .collect();
    assert!(both.iter().any(|n| n.as_str() == "metmask.com"), "{both:?}");
    for name in both {
        let verdict = app_dns(real, name);
        assert_eq!(
            verdict.rule_id.as_deref(),
            Some(format!("everyone/allow/phishing-allowlist/{name}").as_str())
        );
    }

    // Names only on the allowlist match no category either.
    for name in allowlist
        .iter()
        .filter(|n| !blocklist.contains(*n))
        .take(200)
    {
        let verdict = app_dns(real, name);
        assert_eq!(verdict.category, None, "{name}");
    }
}

#[test]
fn allowlisted_name_without_allow_list_is_not_matched() {
    let dir = tempfile::tempdir().unwrap();
    let policy = format!(
        "id = \"t\"\n[[feeds]]\nid = \"phishing\"\npath = {:?}\nformat = \"domains\"\ncategory = \"phishing\"\n",
        data("phishing-domains.txt").display().to_string()
    );
    let path = dir.path().join("p.toml");
    std::fs::write(&path, policy).unwrap();
    let set = PolicySet::load(&[&path]).unwrap();
    let t = set.tenant("t").unwrap();
    assert_eq!(app_dns(t, "1ethereum.ru").action, Action::Allow);
    assert_eq!(app_dns(t, "myetherwallet.com").action, Action::Allow);
    assert_eq!(app_dns(t, "metmask.com").action, Action::Block);
}

fn load_one(dir: &Path, policy: &str) -> PolicySet {
    let path = dir.join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    PolicySet::load(&[&path]).unwrap_or_else(|errors| panic!("{errors}"))
}

#[test]
fn hosts_feed_blocks_names() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hosts"),
        "127.0.0.1 localhost\n::1 localhost ip6-localhost\n0.0.0.0 ads.example tracker.example # trackers\n127.0.0.1 Beacon.Example.\n",
    )
    .unwrap();
    let set = load_one(dir.path(), "id = \"t\"\n[[feeds]]\nid = \"ads\"\npath = \"hosts\"\nformat = \"hosts\"\ncategory = \"advertising\"\n[[policies]]\nid = \"p\"\n[policies.content]\nmode = \"all\"\n");
    let t = set.tenant("t").unwrap();
    for name in [
        "ads.example",
        "tracker.example",
        "beacon.example",
        "x.ads.example",
    ] {
        assert_eq!(app_dns(t, name).action, Action::Block, "{name}");
    }
    assert_eq!(app_dns(t, "localhost").action, Action::Allow);
    assert_eq!(set.feeds()[0].stats.entries, 3);
    assert_eq!(set.feeds()[0].stats.skipped, 2);
}

#[test]
fn category_directory_uses_folder_names() {
    let dir = tempfile::tempdir().unwrap();
    let lists = dir.path().join("lists");
    for (folder, domains, urls) in [
        (
            "malware",
            "evil.example\n",
            Some("files.example/payload/\n"),
        ),
        ("adult", "adult.example\n", None),
        ("kittens", "cute.example\n", None),
    ] {
        std::fs::create_dir_all(lists.join(folder)).unwrap();
        std::fs::write(lists.join(folder).join("domains"), domains).unwrap();
        if let Some(urls) = urls {
            std::fs::write(lists.join(folder).join("urls"), urls).unwrap();
        }
    }
    let set = load_one(
        dir.path(),
        "id = \"t\"\n[[feeds]]\nid = \"ut1\"\npath = \"lists\"\nformat = \"directory\"\n[[policies]]\nid = \"p\"\n[policies.content]\nmode = \"custom\"\nwarn = [\"adult\"]\n",
    );
    let t = set.tenant("t").unwrap();
    let evil = app_dns(t, "evil.example");
    assert_eq!(evil.action, Action::Block);
    assert_eq!(evil.category, Category::parse("malware"));
    assert_eq!(
        app_dns(t, "adult.example").action,
        Action::Block,
        "apps render no warn page, so warn means block"
    );
    assert_eq!(app_dns(t, "cute.example").action, Action::Allow);
    assert_eq!(
        proxy(t, "https://files.example/payload/a.bin").action,
        Action::Block
    );
    assert_eq!(
        app_dns(t, "files.example").action,
        Action::Inspect,
        "a name with URL rules is sent to the proxy"
    );

    let stats = &set.feeds()[0].stats;
    assert_eq!(stats.entries, 3);
    assert_eq!(
        stats.skipped, 1,
        "the unknown folder is skipped and counted"
    );
    assert!(stats.skipped_examples[0].reason.contains("kittens"));
}

#[test]
fn hostile_feed_loads_and_counts_skips() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"good.example\n");
    bytes.extend((0u8..=255).cycle().take(10_000));
    bytes.push(b'\n');
    bytes.extend(std::iter::repeat_n(b'x', 1_000_000));
    bytes.extend_from_slice(b".example\n\r\n\0\0\0\nbad..example\na b\n.\n");
    bytes.extend_from_slice(&[0xc3, 0x28, b'\n']);
    bytes.extend_from_slice(b"also-good.example\r\n");
    std::fs::write(dir.path().join("junk.txt"), &bytes).unwrap();

    let set = load_one(dir.path(), "id = \"t\"\n[[feeds]]\nid = \"junk\"\npath = \"junk.txt\"\nformat = \"adblock\"\ncategory = \"malware\"\n");
    let t = set.tenant("t").unwrap();
    assert_eq!(app_dns(t, "good.example").action, Action::Block);
    assert_eq!(app_dns(t, "also-good.example").action, Action::Block);
    let stats = &set.feeds()[0].stats;
    assert_eq!(stats.entries, 2);
    assert!(stats.skipped >= 6, "{stats:?}");
    assert_eq!(t.stats().feed_skipped, stats.skipped);
}

#[test]
fn million_entry_feed_loads() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("big.txt");
    swg_policy::synthetic::write_domain_list(&list, 1_000_000, 7).unwrap();
    let set = load_one(dir.path(), "id = \"t\"\n[[feeds]]\nid = \"big\"\npath = \"big.txt\"\nformat = \"domains\"\ncategory = \"malware\"\n");
    let stats = &set.feeds()[0].stats;
    assert_eq!(stats.entries, 1_000_000);
    assert_eq!(stats.skipped, 0);
    let t = set.tenant("t").unwrap();
    let last = swg_policy::synthetic::domains(1_000_000, 7).last().unwrap();
    assert_eq!(app_dns(t, &last).action, Action::Block);
}

#[test]
fn shared_feed_is_loaded_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("list.txt"), "shared.example\n").unwrap();
    let feed = "[[tenants.feeds]]\nid = \"f\"\npath = \"list.txt\"\nformat = \"domains\"\ncategory = \"malware\"\n";
    let set = load_one(dir.path(), &format!("[[tenants]]\nid = \"a\"\n{feed}\n[[tenants]]\nid = \"b\"\n{feed}\n[[tenants]]\nid = \"c\"\n"));
    assert_eq!(set.feeds().len(), 1);
    assert_eq!(
        app_dns(set.tenant("a").unwrap(), "shared.example").action,
        Action::Block
    );
    assert_eq!(
        app_dns(set.tenant("b").unwrap(), "shared.example").action,
        Action::Block
    );
    assert_eq!(
        app_dns(set.tenant("c").unwrap(), "shared.example").action,
        Action::Allow,
        "c does not name the feed"
    );
}
