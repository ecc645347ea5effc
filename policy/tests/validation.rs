#![allow(clippy::unwrap_used)]
//! Validation: bad files are rejected whole, with every problem located at file:line:column.

use std::path::Path;

use swg_policy::{DiagnosticKind, LoadErrors, PolicySet};

fn errors_of(text: &str) -> (tempfile::TempDir, LoadErrors) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(dir.path().join("present.txt"), "x.example\n").unwrap();
    let errors = PolicySet::load(&[&path]).unwrap_err();
    (dir, errors)
}

fn lines(errors: &LoadErrors) -> Vec<String> {
    errors
        .diagnostics
        .iter()
        .map(|d| format!("{}:{} {:?} {}", d.line, d.column, d.kind, d.message))
        .collect()
}

#[test]
fn every_error_in_a_file_is_reported() {
    let text = r#"id = "acme"
colour = "blue"
[exceptions]
domains = ["ok.example", "bad..example"]
cidrs = ["10.0.0.0/33", "192.0.2.1/24"]

[[feeds]]
id = "missing"
path = "no-such-feed.txt"
format = "domains"
category = "malware"

[[feeds]]
id = "weird"
path = "present.txt"
format = "domains"
category = "kittens"

[[policies]]
id = "p"
groups = ["nobody"]
[policies.block]
domains = ["fine.example", "spaces are bad.example"]
[policies.security]
mode = "custom"
block = ["malware", "gambling"]

[[policies]]
id = "p"
"#;
    let (_dir, errors) = errors_of(text);
    let found = lines(&errors);
    let expected = [
        ("2:1", DiagnosticKind::UnknownKey, "unknown key `colour`"),
        (
            "4:26",
            DiagnosticKind::InvalidValue,
            "invalid exception domain \"bad..example\"",
        ),
        (
            "5:10",
            DiagnosticKind::InvalidValue,
            "invalid CIDR \"10.0.0.0/33\"",
        ),
        (
            "5:25",
            DiagnosticKind::InvalidValue,
            "host bits set; write 192.0.2.0/24",
        ),
        ("9:8", DiagnosticKind::MissingFeed, "no-such-feed.txt"),
        (
            "17:12",
            DiagnosticKind::InvalidValue,
            "unknown category \"kittens\"",
        ),
        (
            "21:11",
            DiagnosticKind::UnknownReference,
            "unknown group `nobody`",
        ),
        (
            "23:28",
            DiagnosticKind::InvalidValue,
            "invalid domain \"spaces are bad.example\"",
        ),
        (
            "26:21",
            DiagnosticKind::InvalidValue,
            "gambling is a content category",
        ),
        ("29:6", DiagnosticKind::Duplicate, "duplicate policy id `p`"),
    ];
    for (position, kind, text) in expected {
        assert!(
            errors
                .diagnostics
                .iter()
                .any(|d| format!("{}:{}", d.line, d.column) == position
                    && d.kind == kind
                    && d.message.contains(text)),
            "missing {position} {kind:?} {text:?} in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(
        errors.diagnostics.len(),
        expected.len(),
        "{}",
        found.join("\n")
    );
}

#[test]
fn messages_say_what_is_allowed() {
    let (_dir, errors) = errors_of(
        "id = \"t\"\nshade = 1\n[[policies]]\nid = \"p\"\n[policies.content]\nmode = \"some\"\n",
    );
    let text = errors.to_string();
    assert!(
        text.contains("allowed keys: id, name, block_private_relay"),
        "{text}"
    );
    assert!(text.contains("allowed: none, all, custom"), "{text}");
}

#[test]
fn missing_feed_listed_in_a_policy_is_reported_once() {
    let (_dir, errors) = errors_of(
        "id = \"t\"\n[[feeds]]\nid = \"f\"\npath = \"gone.txt\"\nformat = \"domains\"\n\
         [[policies]]\nid = \"p\"\n[policies.block]\nfeeds = [\"f\"]\n",
    );
    assert_eq!(errors.diagnostics.len(), 1, "{errors:?}");
    assert_eq!(errors.diagnostics[0].kind, DiagnosticKind::MissingFeed);
}

#[test]
fn missing_feed_names_its_path() {
    let (dir, errors) = errors_of("id = \"t\"\n[[feeds]]\nid = \"f\"\npath = \"feeds/gone.txt\"\nformat = \"hosts\"\ncategory = \"malware\"\n");
    assert_eq!(errors.diagnostics.len(), 1);
    let diagnostic = &errors.diagnostics[0];
    assert_eq!(diagnostic.kind, DiagnosticKind::MissingFeed);
    let expected = dir.path().join("feeds/gone.txt");
    assert!(
        diagnostic.message.contains(&expected.display().to_string()),
        "{}",
        diagnostic.message
    );
    assert!(
        diagnostic
            .to_string()
            .starts_with(&format!("{}:4:8: ", dir.path().join("bad.toml").display())),
        "{diagnostic}"
    );
}

#[test]
fn syntax_errors_are_located() {
    let (_dir, errors) = errors_of("id = \"t\"\nname = \n");
    assert_eq!(errors.diagnostics[0].kind, DiagnosticKind::Syntax);
    assert_eq!(errors.diagnostics[0].line, 2);
}

#[test]
fn duplicate_tenant_ids_across_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.toml");
    let b = dir.path().join("b.toml");
    std::fs::write(&a, "id = \"same\"\n").unwrap();
    std::fs::write(&b, "\nid = \"same\"\n").unwrap();
    let errors = PolicySet::load(&[&a, &b]).unwrap_err();
    assert_eq!(errors.diagnostics.len(), 1);
    let diagnostic = &errors.diagnostics[0];
    assert_eq!(diagnostic.path, b);
    assert_eq!((diagnostic.line, diagnostic.column), (2, 6));
    assert!(
        diagnostic.message.contains(&format!("{}:1:6", a.display())),
        "{}",
        diagnostic.message
    );
}

#[test]
fn overlapping_locations_of_two_tenants_are_rejected() {
    let (_dir, errors) = errors_of(
        "[[tenants]]\nid = \"a\"\n[[tenants.locations]]\nid = \"x\"\ncidrs = [\"192.0.2.0/24\"]\n[[tenants]]\nid = \"b\"\n[[tenants.locations]]\nid = \"y\"\ncidrs = [\"192.0.2.64/26\"]\n",
    );
    assert_eq!(errors.diagnostics.len(), 1);
    let diagnostic = &errors.diagnostics[0];
    // Points at the first tenant's CIDR and names the second one's position.
    assert_eq!((diagnostic.line, diagnostic.column), (5, 10), "{errors}");
    assert!(diagnostic.message.contains("overlaps"), "{errors}");
    assert!(diagnostic.message.contains(":10:10)"), "{errors}");
}

#[test]
fn overlaps_are_found_among_many_nested_locations() {
    // Two tenants with thousands of equal networks, nested networks and disjoint
    // ones: comparing every pair would build millions of messages.
    let mut text = String::new();
    for tenant in ["a", "b"] {
        text.push_str(&format!("[[tenants]]\nid = \"{tenant}\"\n"));
        for i in 0..3000 {
            let cidr = match i % 3 {
                0 => "10.0.0.0/8".to_owned(),
                1 => format!("10.{}.0.0/16", i % 256),
                _ if tenant == "a" => format!("172.16.{}.0/24", i % 256),
                _ => format!("192.168.{}.0/24", i % 256),
            };
            text.push_str(&format!(
                "[[tenants.locations]]\nid = \"l{i}\"\ncidrs = [\"{cidr}\"]\n"
            ));
        }
    }
    let (_dir, errors) = errors_of(&text);

    assert!(errors.count() > 100, "{}", errors.count());
    assert!(
        errors
            .diagnostics
            .iter()
            .all(|d| d.message.contains("overlaps")
                || matches!(d.kind, DiagnosticKind::Omitted { .. })),
        "{errors}"
    );
    // The 172.16 and 192.168 networks of the two tenants are disjoint.
    assert!(
        !errors
            .diagnostics
            .iter()
            .any(|d| d.message.contains("172.16.")),
        "{errors}"
    );
}

#[test]
fn wrong_types_and_conflicting_targets_are_reported() {
    let (_dir, errors) = errors_of(
        "id = \"t\"\ntrusted_apps = \"com.a\"\nbypassed_apps = [\"com.b\"]\nadditional_browsers = [\"COM.B\"]\n[[groups]]\nid = \"g\"\n[[policies]]\nid = \"p\"\nusers = [\"u\"]\ngroups = [\"g\"]\n",
    );
    let kinds: Vec<DiagnosticKind> = errors.diagnostics.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&DiagnosticKind::WrongType), "{errors}");
    assert!(kinds.contains(&DiagnosticKind::Duplicate), "{errors}");
    assert!(
        errors.to_string().contains("a policy targets one kind"),
        "{errors}"
    );
}

#[test]
fn unreadable_file_is_reported() {
    let errors = PolicySet::load(&[Path::new("/nonexistent/swg/policy.toml")]).unwrap_err();
    assert_eq!(errors.diagnostics[0].kind, DiagnosticKind::Io);
    assert!(errors.to_string().contains("/nonexistent/swg/policy.toml"));
}

#[test]
fn example_policy_is_valid() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/examples/policy.toml"
    );
    let set = PolicySet::load(&[example]).unwrap_or_else(|errors| panic!("{errors}"));
    assert!(!set.tenants().is_empty());
}
