#![allow(clippy::unwrap_used)]
//! Decisions against policies written to real files: name matching, precedence, targets,
//! exceptions and the app-class mapping.

use std::net::IpAddr;

use swg_policy::{Action, App, AppClass, ExceptionKind, PolicySet, Subject, Tenant, Trace};

const POLICY: &str = r#"
id = "acme"
name = "Acme"
additional_browsers = ["com.example.Browser"]
trusted_apps = ["com.acme.mail"]
bypassed_apps = ["com.acme.vpn"]

[exceptions]
domains = ["intranet.acme.example"]
cidrs = ["10.0.0.0/8", "2001:db8:ff::/48"]

[[locations]]
id = "hq"
cidrs = ["192.0.2.0/24"]

[[locations]]
id = "lab"
cidrs = ["192.0.2.128/25"]

[[groups]]
id = "students"
users = ["sam@acme.example"]

[[policies]]
id = "everyone"
[policies.block]
domains = ["YouTube.com", "example.org.", "bücher.de", "xn--mnchen-3ya.de", "example.com", "tie.example", "blocked-everywhere.example", "intranet.acme.example", "hosts-test.example"]
hosts = ["exact.example.net"]
urls = ["downloads.example/files/", "search.example/find?q=bad"]
ips = ["198.51.100.0/24"]
[policies.allow]
domains = ["vpn.example.com", "tie.example"]
hosts = ["ok.hosts-test.example"]
urls = ["example.com/public/"]
[policies.security]
mode = "all"
action = "block"

[[policies]]
id = "students"
groups = ["students"]
[policies.block]
domains = ["games.example"]

[[policies]]
id = "lab"
locations = ["lab"]
[policies.block]
domains = ["lab-blocked.example"]

[[policies]]
id = "alice"
users = ["alice@acme.example"]
[policies.allow]
domains = ["youtube.com"]
"#;

fn load(text: &str) -> (tempfile::TempDir, PolicySet) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.path().join("casino.txt"),
        "# test feed\ncasino.example\n",
    )
    .unwrap();
    let set = PolicySet::load(&[&path]).unwrap_or_else(|errors| panic!("{errors}"));
    (dir, set)
}

fn dns(tenant: &Tenant, name: &str) -> Action {
    tenant
        .decide_dns(name, &Subject::anyone(), &App::bundle("com.acme.app"))
        .action
}

fn url(tenant: &Tenant, address: &str) -> Action {
    let url = url::Url::parse(address).unwrap();
    tenant
        .decide_url(
            &url,
            &Subject::anyone(),
            &App::bundle("com.apple.mobilesafari"),
        )
        .action
}

#[test]
fn mixed_case_entries_and_names_match() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "youtube.com"), Action::Block);
    assert_eq!(dns(acme, "WWW.YouTube.COM"), Action::Block);
}

#[test]
fn trailing_dots_are_ignored() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "example.org"), Action::Block);
    assert_eq!(dns(acme, "a.example.org."), Action::Block);
    assert_eq!(dns(acme, "youtube.com."), Action::Block);
}

#[test]
fn unicode_entry_matches_punycode_query() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "xn--bcher-kva.de"), Action::Block);
    assert_eq!(dns(acme, "shop.XN--BCHER-KVA.de."), Action::Block);
}

#[test]
fn punycode_entry_matches_unicode_query() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "münchen.de"), Action::Block);
    assert_eq!(dns(acme, "www.MÜNCHEN.de"), Action::Block);
}

#[test]
fn suffix_match_stops_at_label_boundary() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "badexample.com"), Action::Allow);
    assert_eq!(dns(acme, "example.com.evil.test"), Action::Allow);
    assert_eq!(dns(acme, "notyoutube.com"), Action::Allow);
}

#[test]
fn exact_host_entry_skips_subdomains() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "exact.example.net"), Action::Block);
    assert_eq!(dns(acme, "sub.exact.example.net"), Action::Allow);
}

#[test]
fn more_specific_allow_beats_block() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "www.example.com"), Action::Block);
    assert_eq!(dns(acme, "vpn.example.com"), Action::Allow);
    assert_eq!(dns(acme, "gw.vpn.example.com"), Action::Allow);
}

#[test]
fn more_specific_block_beats_allow() {
    let (_dir, set) = load(
        r#"
id = "t"
[[policies]]
id = "p"
[policies.allow]
domains = ["example.com"]
[policies.block]
domains = ["ads.example.com"]
"#,
    );
    let t = set.tenant("t").unwrap();
    assert_eq!(dns(t, "www.example.com"), Action::Allow);
    assert_eq!(dns(t, "x.ads.example.com"), Action::Block);
}

#[test]
fn equal_specificity_allow_wins() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let verdict = acme.decide_dns("a.tie.example", &Subject::anyone(), &App::bundle("x.y"));
    assert_eq!(verdict.action, Action::Allow);
    assert_eq!(
        verdict.rule_id.as_deref(),
        Some("everyone/allow/domain/tie.example")
    );
}

#[test]
fn exact_allow_host_beats_parent_block() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(dns(acme, "ok.hosts-test.example"), Action::Allow);
    assert_eq!(dns(acme, "sub.ok.hosts-test.example"), Action::Block);
    assert_eq!(dns(acme, "other.hosts-test.example"), Action::Block);
}

#[test]
fn domain_exception_bypasses_policy_unlogged() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    for name in [
        "printer.local",
        "nas.home.",
        "wiki.corp",
        "intranet.acme.example",
        "a.intranet.acme.example",
    ] {
        let verdict = acme.decide_dns(
            name,
            &Subject::anyone(),
            &App::bundle("com.apple.mobilesafari"),
        );
        assert_eq!(verdict.action, Action::Bypass, "{name}");
        assert_eq!(verdict.exception, Some(ExceptionKind::Domain), "{name}");
        assert!(!verdict.is_logged(), "{name}");
        assert_eq!(verdict.policy_id, None, "{name}");
    }
    assert!(acme.domain_exception("x.LOCAL."));
    assert!(!acme.domain_exception("local.example.com"));
    assert!(!acme.domain_exception("notlocal"));
}

#[test]
fn ip_exception_bypasses_answer_but_is_logged() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let inside: IpAddr = "10.1.2.3".parse().unwrap();
    assert!(acme.ip_exception(inside));
    assert!(acme.ip_exception("2001:db8:ff::1".parse().unwrap()));
    assert!(!acme.ip_exception("11.0.0.1".parse().unwrap()));

    let verdict = acme.decide_dns_answer(
        &["www.example.com"],
        &[inside],
        &Subject::anyone(),
        &App::bundle("x.y"),
    );
    assert_eq!(verdict.action, Action::Bypass);
    assert_eq!(verdict.exception, Some(ExceptionKind::Ip));
    assert_eq!(verdict.activity_action(), "bypass-ip");
    assert!(verdict.is_logged());
}

#[test]
fn answer_address_in_block_list_blocks() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let verdict = acme.decide_dns_answer(
        &["harmless.test"],
        &[
            "203.0.113.9".parse().unwrap(),
            "198.51.100.7".parse().unwrap(),
        ],
        &Subject::anyone(),
        &App::bundle("x.y"),
    );
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(
        verdict.rule_id.as_deref(),
        Some("everyone/block/ip/198.51.100.0/24")
    );
}

#[test]
fn cname_chain_takes_worst_verdict() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let app = App::bundle("x.y");
    let verdict = acme.decide_dns_answer(
        &["harmless.test", "edge.youtube.com"],
        &[],
        &Subject::anyone(),
        &app,
    );
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(
        verdict.rule_id.as_deref(),
        Some("everyone/block/domain/youtube.com")
    );

    let verdict = acme.decide_dns_answer(
        &["harmless.test", "other.test"],
        &[],
        &Subject::anyone(),
        &app,
    );
    assert_eq!(verdict.action, Action::Allow);
}

/// Every row of the app-class table, at DNS and at the proxy.
#[test]
fn app_class_mapping_table() {
    let (_dir, set) = load(
        r#"
id = "t"
trusted_apps = ["com.acme.mail"]
bypassed_apps = ["com.acme.vpn"]
[[policies]]
id = "p"
[policies.block]
domains = ["blocked.example"]
[policies.content]
mode = "custom"
warn = ["gambling"]
[[feeds]]
id = "casino"
path = "casino.txt"
format = "domains"
category = "gambling"
"#,
    );
    let t = set.tenant("t").unwrap();
    let anyone = Subject::anyone();
    let rows: &[(App<'_>, AppClass, [Action; 3], [Action; 3])] = &[
        // app, class, DNS (allowed, warn, blocked), proxy (allowed, warn, blocked)
        (
            App::bundle("com.apple.mobilesafari"),
            AppClass::Browser,
            [Action::Inspect, Action::Warn, Action::Block],
            [Action::Allow, Action::Warn, Action::Block],
        ),
        (
            App::bundle("com.acme.other"),
            AppClass::App,
            [Action::Allow, Action::Block, Action::Block],
            [Action::Allow, Action::Block, Action::Block],
        ),
        (
            App::bundle("com.acme.mail"),
            AppClass::TrustedApp,
            [Action::Allow, Action::Block, Action::Block],
            [Action::Allow, Action::Block, Action::Block],
        ),
        (
            App::bundle("com.acme.vpn"),
            AppClass::BypassedApp,
            [Action::Bypass; 3],
            [Action::Bypass; 3],
        ),
        (
            App::default(),
            AppClass::Unknown,
            [Action::Allow, Action::Block, Action::Block],
            [Action::Allow, Action::Warn, Action::Block],
        ),
        (
            App::hinted(AppClass::Browser),
            AppClass::Browser,
            [Action::Inspect, Action::Warn, Action::Block],
            [Action::Allow, Action::Warn, Action::Block],
        ),
        (
            App::hinted(AppClass::TrustedApp),
            AppClass::TrustedApp,
            [Action::Allow, Action::Block, Action::Block],
            [Action::Allow, Action::Block, Action::Block],
        ),
    ];
    let names = ["fine.example", "casino.example", "blocked.example"];
    for (app, class, dns_actions, proxy_actions) in rows {
        for (i, name) in names.iter().enumerate() {
            let verdict = t.decide_dns(name, &anyone, app);
            assert_eq!(verdict.app_class, *class, "{app:?}");
            assert_eq!(verdict.action, dns_actions[i], "DNS {name} for {app:?}");
            let url = url::Url::parse(&format!("https://{name}/")).unwrap();
            let verdict = t.decide_url(&url, &anyone, app);
            assert_eq!(verdict.action, proxy_actions[i], "proxy {name} for {app:?}");
        }
    }
    let bypassed = t.decide_dns("blocked.example", &anyone, &App::bundle("com.acme.vpn"));
    assert!(!bypassed.is_logged());
}

#[test]
fn browser_steering_follows_verdict() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let safari = App::bundle("com.apple.mobilesafari");
    assert!(acme
        .decide_dns("youtube.com", &Subject::anyone(), &safari)
        .steers_to_proxy());
    assert!(acme
        .decide_dns("fine.test", &Subject::anyone(), &safari)
        .steers_to_proxy());
    let app = App::bundle("com.acme.other");
    assert!(!acme
        .decide_dns("youtube.com", &Subject::anyone(), &app)
        .steers_to_proxy());
    assert!(!acme
        .decide_dns("fine.test", &Subject::anyone(), &app)
        .steers_to_proxy());
}

#[test]
fn app_class_of_bundle_ids() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    for browser in [
        "com.apple.mobilesafari",
        "com.apple.Safari",
        "com.google.chrome.ios",
        "com.google.Chrome",
        "org.mozilla.ios.Firefox",
        "org.mozilla.firefox",
        "com.microsoft.msedge",
        "com.microsoft.edgemac",
        "com.brave.ios.browser",
        "com.brave.Browser",
        "com.duckduckgo.mobile.ios",
        "COM.APPLE.MOBILESAFARI",
        "com.example.browser",
    ] {
        assert_eq!(
            acme.app_class(Some(browser), None),
            AppClass::Browser,
            "{browser}"
        );
    }
    assert_eq!(
        acme.app_class(Some("com.acme.mail"), None),
        AppClass::TrustedApp
    );
    assert_eq!(
        acme.app_class(Some("com.acme.vpn"), None),
        AppClass::BypassedApp
    );
    assert_eq!(acme.app_class(Some("com.acme.other"), None), AppClass::App);
    // The bundle id wins over the hint; the hint counts only without one.
    assert_eq!(
        acme.app_class(Some("com.acme.other"), Some(AppClass::Browser)),
        AppClass::App
    );
    assert_eq!(acme.app_class(None, Some(AppClass::App)), AppClass::App);
    assert_eq!(acme.app_class(None, None), AppClass::Unknown);
}

#[test]
fn user_policy_beats_group_beats_everyone() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let app = App::bundle("x.y");

    let everyone = acme.decide_dns("games.example", &Subject::anyone(), &app);
    assert_eq!(everyone.action, Action::Allow);
    assert_eq!(everyone.policy_id.as_deref(), Some("everyone"));

    let student = acme.decide_dns("games.example", &Subject::user("sam@acme.example"), &app);
    assert_eq!(student.action, Action::Block);
    assert_eq!(student.policy_id.as_deref(), Some("students"));

    let groups = vec!["students".to_string()];
    let by_caller_group = Subject {
        user: Some("someone@acme.example"),
        groups: &groups,
        location: Some("lab"),
    };
    let verdict = acme.decide_dns("games.example", &by_caller_group, &app);
    assert_eq!(
        verdict.policy_id.as_deref(),
        Some("students"),
        "group beats location"
    );

    let alice = acme.decide_dns("youtube.com", &Subject::user("alice@acme.example"), &app);
    assert_eq!(alice.action, Action::Allow);
    assert_eq!(alice.policy_id.as_deref(), Some("alice"));

    let alice_in_group = Subject {
        user: Some("alice@acme.example"),
        groups: &groups,
        location: None,
    };
    assert_eq!(
        acme.decide_dns("youtube.com", &alice_in_group, &app)
            .policy_id
            .as_deref(),
        Some("alice"),
        "user beats group"
    );
}

#[test]
fn location_policy_applies_to_location() {
    let (_dir, set) = load(POLICY);
    let (tenant, location) = set
        .tenant_by_source("192.0.2.200".parse().unwrap())
        .unwrap();
    assert_eq!(tenant.id(), "acme");
    assert_eq!(location, "lab", "the most specific network wins");
    assert_eq!(
        set.tenant_by_source("192.0.2.5".parse().unwrap())
            .unwrap()
            .1,
        "hq"
    );
    assert!(set
        .tenant_by_source("203.0.113.1".parse().unwrap())
        .is_none());
    // A dual-stack listener sees IPv4 clients as IPv4-mapped IPv6 addresses.
    assert_eq!(
        set.tenant_by_source("::ffff:192.0.2.200".parse().unwrap())
            .map(|(tenant, location)| (tenant.id(), location)),
        Some(("acme", "lab"))
    );

    let subject = Subject {
        location: Some(location),
        ..Subject::default()
    };
    let verdict = tenant.decide_dns("lab-blocked.example", &subject, &App::default());
    assert_eq!(verdict.action, Action::Block);
    assert_eq!(verdict.policy_id.as_deref(), Some("lab"));
}

#[test]
fn url_rules_never_apply_at_dns() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    // A URL rule never blocks the whole name at DNS; the app is sent to the proxy instead,
    // where the full URL is checked. Trusted apps are never sent to the proxy.
    assert_eq!(dns(acme, "downloads.example"), Action::Inspect);
    assert_eq!(dns(acme, "search.example"), Action::Inspect);
    let trusted = acme.decide_dns(
        "downloads.example",
        &Subject::anyone(),
        &App::bundle("com.acme.mail"),
    );
    assert_eq!(trusted.action, Action::Allow);
    // The reason must not claim a check by the proxy that never happens.
    assert!(
        !trusted.reason.contains("the proxy checks"),
        "{}",
        trusted.reason
    );
    assert!(
        trusted
            .reason
            .contains("trusted apps are not sent to the proxy"),
        "{}",
        trusted.reason
    );
    let app = acme.decide_dns("downloads.example", &Subject::anyone(), &App::bundle("x.y"));
    assert!(
        app.reason.ends_with("; the proxy checks the full URL"),
        "{}",
        app.reason
    );
    let mut trace = Trace::default();
    acme.decide_dns_traced(
        "downloads.example",
        &Subject::anyone(),
        &App::bundle("x.y"),
        Some(&mut trace),
    );
    assert!(
        trace
            .steps
            .iter()
            .any(|s| !s.matched && s.detail.contains("proxy only")),
        "{trace}"
    );
}

#[test]
fn url_rule_matches_path_spellings() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let browser = App::bundle("com.apple.mobilesafari");
    for target in [
        "/files/setup.exe",
        "/%66iles/setup.exe",
        "/%66%69%6C%65%73/",
        "//files/setup.exe",
        "/x/../files/",
        "/x/%2e%2e/files/",
        "/./files/",
        "/\\files\\",
        "/%2Ffiles/",
    ] {
        let verdict =
            acme.decide_request("downloads.example", target, &Subject::anyone(), &browser);
        assert_eq!(verdict.action, Action::Block, "{target}");
    }
    let verdict = acme.decide_request(
        "search.example",
        "/find?%71=bad",
        &Subject::anyone(),
        &browser,
    );
    assert_eq!(verdict.action, Action::Block);
    // Decoding happens once, as at the origin: `%2566` is the text `%66`, not `f`.
    let verdict = acme.decide_request(
        "downloads.example",
        "/%2566iles/",
        &Subject::anyone(),
        &browser,
    );
    assert_eq!(verdict.action, Action::Allow);
}

#[test]
fn url_rules_apply_at_proxy() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert_eq!(
        url(acme, "https://downloads.example/files/setup.exe"),
        Action::Block
    );
    assert_eq!(
        url(acme, "https://cdn.downloads.example/FILES/x"),
        Action::Block
    );
    assert_eq!(url(acme, "https://downloads.example/other"), Action::Allow);
    // The query counts only when the entry has one.
    assert_eq!(
        url(acme, "https://search.example/find?q=bad&page=2"),
        Action::Block
    );
    assert_eq!(
        url(acme, "https://search.example/find?q=good"),
        Action::Allow
    );
    assert_eq!(
        url(acme, "https://downloads.example/files/x?anything=1"),
        Action::Block
    );
    // A URL allow entry beats the domain block entry of its host.
    assert_eq!(url(acme, "https://example.com/public/page"), Action::Allow);
    assert_eq!(url(acme, "https://example.com/private"), Action::Block);
    // IP literal hosts are matched against IP entries.
    assert_eq!(url(acme, "http://198.51.100.20/x"), Action::Block);
    assert_eq!(url(acme, "http://[2001:db8::1]/x"), Action::Allow);
}

#[test]
fn private_relay_and_canaries() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    assert!(acme.block_private_relay());
    assert!(acme.canary_nxdomain("mask.icloud.com."));
    assert!(acme.canary_nxdomain("MASK-H2.icloud.com"));
    assert!(acme.canary_nxdomain("use-application-dns.net"));
    assert!(!acme.canary_nxdomain("icloud.com"));

    let (_dir, set) = load("id = \"open\"\nblock_private_relay = false\n");
    let open = set.tenant("open").unwrap();
    assert!(!open.canary_nxdomain("mask.icloud.com"));
    assert!(open.canary_nxdomain("use-application-dns.net"));
}

#[test]
fn verdict_carries_rule_policy_and_reason() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let verdict = acme.decide_dns("www.youtube.com", &Subject::anyone(), &App::bundle("x.y"));
    assert_eq!(
        verdict.rule_id.as_deref(),
        Some("everyone/block/domain/youtube.com")
    );
    assert_eq!(verdict.policy_id.as_deref(), Some("everyone"));
    assert_eq!(verdict.policy_action, Action::Block);
    assert!(
        verdict.reason.contains("www.youtube.com"),
        "{}",
        verdict.reason
    );
    assert_eq!(
        verdict.ede_text(),
        "action=block;rule=everyone/block/domain/youtube.com"
    );
}

#[test]
fn tenant_without_everyone_policy_gets_default() {
    let (_dir, set) =
        load("id = \"t\"\n[[groups]]\nid = \"g\"\n[[policies]]\nid = \"p\"\ngroups = [\"g\"]\n");
    let t = set.tenant("t").unwrap();
    let verdict = t.decide_dns("anything.test", &Subject::anyone(), &App::default());
    assert_eq!(verdict.action, Action::Allow);
    assert_eq!(
        verdict.policy_id.as_deref(),
        Some(swg_policy::TENANT_DEFAULT_POLICY)
    );
    assert_eq!(verdict.rule_id, None);
}

#[test]
fn several_tenants_in_one_file() {
    let (_dir, set) = load(
        r#"
[[tenants]]
id = "a"
[[tenants.policies]]
id = "p"
[tenants.policies.block]
domains = ["a-blocked.example"]

[[tenants]]
id = "b"
"#,
    );
    assert_eq!(
        dns(set.tenant("a").unwrap(), "a-blocked.example"),
        Action::Block
    );
    assert_eq!(
        dns(set.tenant("b").unwrap(), "a-blocked.example"),
        Action::Allow
    );
}

#[test]
fn request_host_with_port_matches() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let browser = App::bundle("com.apple.mobilesafari");
    let verdict = acme.decide_request(
        "www.YouTube.com:8443",
        "/watch?v=1",
        &Subject::anyone(),
        &browser,
    );
    assert_eq!(verdict.action, Action::Block);
    let verdict = acme.decide_request("[2001:db8::1]:443", "/", &Subject::anyone(), &browser);
    assert_eq!(verdict.action, Action::Allow);
    let verdict = acme.decide_request("198.51.100.9:80", "/", &Subject::anyone(), &browser);
    assert_eq!(verdict.action, Action::Block);
}

#[test]
fn hostile_query_names_get_verdicts() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let long = "a.".repeat(2000) + "youtube.com";
    let names = [
        "",
        ".",
        "..",
        "a..youtube.com",
        "\0\u{ffff}.example",
        "xn--.example",
        "ü\u{200d}.example",
        long.as_str(),
    ];
    for name in names {
        let verdict = acme.decide_dns(name, &Subject::anyone(), &App::bundle("x.y"));
        assert!(!verdict.reason.is_empty(), "{name:?}");
    }
    assert_eq!(
        dns(acme, &long),
        Action::Block,
        "a name longer than DNS allows still matches its suffix"
    );
    assert_eq!(dns(acme, "a..youtube.com"), Action::Block);
}

#[test]
fn url_entry_reason_names_its_prefix() {
    let (_dir, set) = load(POLICY);
    let acme = set.tenant("acme").unwrap();
    let decide = |address: &str| {
        acme.decide_url(
            &url::Url::parse(address).unwrap(),
            &Subject::anyone(),
            &App::bundle("com.apple.mobilesafari"),
        )
    };
    let by_url = decide("https://downloads.example/files/setup.exe");
    assert!(
        by_url
            .reason
            .starts_with("downloads.example/files/ is blocked by the entry "),
        "{}",
        by_url.reason
    );
    let by_domain = decide("https://youtube.com/watch");
    assert!(
        by_domain
            .reason
            .starts_with("youtube.com is blocked by the entry "),
        "{}",
        by_domain.reason
    );
}
