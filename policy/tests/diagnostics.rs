#![allow(clippy::unwrap_used)]
//! Diagnostics of invalid policy files: their order, their number, how they name tables,
//! and what a syntax error does to the checks of its key.

use std::time::Instant;

use swg_policy::{Diagnostic, DiagnosticKind, LoadErrors, PolicySet};

/// Loads `text` as the only policy file and returns its errors.
fn errors_of(text: &str) -> LoadErrors {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    PolicySet::load(&[&path]).unwrap_err()
}

fn positions(errors: &LoadErrors) -> Vec<(usize, usize)> {
    errors
        .diagnostics
        .iter()
        .map(|d| (d.line, d.column))
        .collect()
}

fn messages(errors: &LoadErrors) -> Vec<String> {
    errors
        .diagnostics
        .iter()
        .map(Diagnostic::to_string)
        .collect()
}

/// Builds a file of about `size` bytes: a valid tenant id, then one `line` per line,
/// each made unique by `{}` (replaced with the line number). Returns the text and the
/// number of repeated lines.
fn repeated(line: &str, size: usize) -> (String, usize) {
    let mut text = String::from("id = \"t\"\n");
    let mut count = 0;
    while text.len() < size {
        text.push_str(&line.replace("{}", &count.to_string()));
        text.push('\n');
        count += 1;
    }
    (text, count)
}

/// Checks that `errors` lists 100 problems in position order and ends with an entry
/// that counts the `total - 100` others.
fn assert_capped(errors: &LoadErrors, total: usize) {
    assert_eq!(errors.diagnostics.len(), 101);
    assert_eq!(errors.count(), total);
    let last = errors.diagnostics.last().unwrap();
    assert_eq!(last.kind, DiagnosticKind::Omitted { count: total - 100 });
    assert!(
        last.message
            .starts_with(&format!("{} more problems", total - 100)),
        "{last}"
    );
    let listed = positions(errors);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted);
}

#[test]
fn unknown_keys_beyond_limit_are_counted() {
    let (text, count) = repeated("colour{} = 1", 20_000);
    assert!(count > 1000, "{count}");

    let errors = errors_of(&text);

    assert_capped(&errors, count);
    // The 100 listed keys are the first 100 of the file: lines 2 to 101.
    assert_eq!(errors.diagnostics[0].line, 2);
    assert_eq!(errors.diagnostics[99].line, 101);
    // The last entry points at the first key that is not listed.
    assert_eq!(errors.diagnostics[100].line, 102);
    assert!(
        errors
            .to_string()
            .starts_with(&format!("{count} error(s) in the policy\n")),
        "{}",
        messages(&errors)[0]
    );
}

#[test]
fn four_mebibyte_file_of_errors_is_capped() {
    // Every check that runs while reading a file: unknown keys, syntax errors and
    // wrong types (items of an array, so that one key yields many).
    let size = 4 << 20;
    let (unknown, unknown_count) = repeated("colour{} = 1", size);
    let (syntax, syntax_count) = repeated("key{} = =", size);
    let mut wrong_types = String::from("id = \"t\"\ntrusted_apps = [\n");
    let mut wrong_type_count = 0;
    while wrong_types.len() < size {
        wrong_types.push_str("1,\n");
        wrong_type_count += 1;
    }
    wrong_types.push_str("]\n");

    // And a check that runs after reading: invalid domains.
    let mut domains =
        String::from("id = \"t\"\n[[policies]]\nid = \"p\"\n[policies.block]\ndomains = [\n");
    let mut domain_count = 0;
    while domains.len() < size {
        domains.push_str("\"a..b\",\n");
        domain_count += 1;
    }
    domains.push_str("]\n");

    for (name, text, total) in [
        ("unknown keys", unknown, unknown_count),
        ("syntax errors", syntax, syntax_count),
        ("wrong types", wrong_types, wrong_type_count),
        ("invalid domains", domains, domain_count),
    ] {
        let started = Instant::now();
        let errors = errors_of(&text);
        // Timing belongs in benchmarks, so this only prints the order of magnitude.
        eprintln!(
            "{name}: {} bytes, {total} problems, loaded in {:?}",
            text.len(),
            started.elapsed()
        );
        assert_capped(&errors, total);
    }
}

#[test]
fn problems_found_while_reading_are_in_position_order() {
    // Keys are checked before values, and TOML reports a missing value after the
    // problems of the next lines, so the order of discovery is not the file order.
    let text = "id = \"t\"\n\
                name = \n\
                trusted_apps = 5\n\
                colour = 1\n\
                bypassed_apps = [\"a\", = ]\n\
                [[policies]]\n\
                id = \"p\"\n\
                users = \"u\"\n\
                shade = 2\n";

    let errors = errors_of(text);

    let found = positions(&errors);
    let mut sorted = found.clone();
    sorted.sort();
    assert_eq!(found, sorted, "{}", messages(&errors).join("\n"));
    assert_eq!(found.len(), 6, "{}", messages(&errors).join("\n"));
}

#[test]
fn problems_of_every_check_are_in_position_order() {
    // A wrong type and an unknown key are found while reading the file, the invalid
    // domain afterwards, yet the domain comes before the unknown key in the file.
    let text = "id = \"t\"\n\
                [[policies]]\n\
                id = \"p\"\n\
                [policies.block]\n\
                domains = [\"ok.example\", 5, \"bad..example\"]\n\
                [policies.content]\n\
                mode = \"custom\"\n\
                colour = 1\n";

    let errors = errors_of(text);

    assert_eq!(
        positions(&errors),
        vec![(5, 26), (5, 29), (8, 1)],
        "{}",
        messages(&errors).join("\n")
    );
}

#[test]
fn problems_beyond_limit_across_checks_are_counted() {
    // 60 unknown keys on lines 2 to 61, then a policy with 60 invalid domains on
    // lines 66 to 125: the first 100 are listed whichever check found them.
    let mut text = String::from("id = \"t\"\n");
    for i in 0..60 {
        text.push_str(&format!("colour{i} = 1\n"));
    }
    text.push_str("[[policies]]\nid = \"p\"\n[policies.block]\ndomains = [\n");
    for _ in 0..60 {
        text.push_str("\"a..b\",\n");
    }
    text.push_str("]\n");

    let errors = errors_of(&text);

    assert_capped(&errors, 120);
    assert_eq!(errors.diagnostics[59].kind, DiagnosticKind::UnknownKey);
    assert_eq!(errors.diagnostics[60].kind, DiagnosticKind::InvalidValue);
    assert_eq!(errors.diagnostics[60].line, 66);
    assert_eq!(errors.diagnostics[99].line, 105);
    assert_eq!(errors.diagnostics[100].line, 106);
}

#[test]
fn problems_of_several_files_are_in_load_order() {
    let dir = tempfile::tempdir().unwrap();
    let second = dir.path().join("a.toml");
    let first = dir.path().join("b.toml");
    std::fs::write(
        &first,
        "id = \"one\"\ncolour = 1\n[exceptions]\ndomains = [\"a..b\"]\n",
    )
    .unwrap();
    std::fs::write(
        &second,
        "id = \"two\"\n[exceptions]\ndomains = [\"a..b\"]\nshade = 1\n",
    )
    .unwrap();

    let errors = PolicySet::load(&[&first, &second]).unwrap_err();

    let found: Vec<(std::path::PathBuf, usize)> = errors
        .diagnostics
        .iter()
        .map(|d| (d.path.clone(), d.line))
        .collect();
    assert_eq!(
        found,
        vec![
            (first.clone(), 2),
            (first.clone(), 4),
            (second.clone(), 3),
            (second.clone(), 4)
        ],
        "{}",
        messages(&errors).join("\n")
    );
}

#[test]
fn category_messages_name_tables_by_full_path() {
    let text = "[[tenants]]\n\
                id = \"t\"\n\
                [[tenants.policies]]\n\
                id = \"p\"\n\
                [tenants.policies.security]\n\
                mode = \"custom\"\n\
                block = [\"gambling\"]\n\
                [tenants.policies.content]\n\
                action = \"block\"\n";

    let errors = errors_of(text);

    let found = messages(&errors);
    for expected in [
        "gambling is a content category; list it under [tenants.policies.content]",
        "[tenants.policies.content] needs `mode`",
    ] {
        assert!(
            found.iter().any(|m| m.contains(expected)),
            "missing {expected:?} in:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn messages_name_tables_by_full_path() {
    let text = "id = \"t\"\n\
                colour = 1\n\
                [exceptions]\n\
                hue = 1\n\
                [[locations]]\n\
                id = \"l\"\n\
                cidrs = [\"192.0.2.0/24\"]\n\
                tint = 1\n\
                [[policies]]\n\
                id = \"p\"\n\
                shade = 1\n\
                [policies.block]\n\
                size = 1\n\
                [policies.security]\n\
                mode = \"all\"\n\
                level = 1\n\
                [policies.content]\n\
                mode = \"none\"\n\
                depth = 1\n";

    let errors = errors_of(text);

    let found = messages(&errors);
    for (key, table) in [
        ("colour", "the top-level table"),
        ("hue", "[exceptions]"),
        ("tint", "[[locations]]"),
        ("shade", "[[policies]]"),
        ("size", "[policies.block]"),
        ("level", "[policies.security]"),
        ("depth", "[policies.content]"),
    ] {
        let expected = format!("unknown key `{key}` in {table};");
        assert!(
            found.iter().any(|m| m.contains(&expected)),
            "missing {expected:?} in:\n{}",
            found.join("\n")
        );
    }
    assert_eq!(found.len(), 7, "{}", found.join("\n"));
}

#[test]
fn messages_name_tenant_tables_by_full_path() {
    let text = "[[tenants]]\n\
                id = \"t\"\n\
                colour = 1\n\
                [[tenants.groups]]\n\
                id = \"g\"\n\
                tint = 1\n\
                [[tenants.feeds]]\n\
                id = \"f\"\n\
                hue = 1\n\
                [[tenants.policies]]\n\
                id = \"p\"\n\
                [tenants.policies.allow]\n\
                size = 1\n\
                [tenants.policies.content]\n\
                mode = \"none\"\n\
                depth = 1\n";

    let errors = errors_of(text);

    let found = messages(&errors);
    for (key, table) in [
        ("colour", "[[tenants]]"),
        ("tint", "[[tenants.groups]]"),
        ("hue", "[[tenants.feeds]]"),
        ("size", "[tenants.policies.allow]"),
        ("depth", "[tenants.policies.content]"),
    ] {
        let expected = format!("unknown key `{key}` in {table};");
        assert!(
            found.iter().any(|m| m.contains(&expected)),
            "missing {expected:?} in:\n{}",
            found.join("\n")
        );
    }
}

#[test]
fn syntax_error_in_value_hides_key_checks() {
    let text = "id = \"t\"\n\
                block_private_relay = =\n\
                [[policies]]\n\
                id = \"p\"\n\
                [policies.content]\n\
                mode = \"none\"\n\
                garbage = =\n";

    let errors = errors_of(text);

    let found = messages(&errors);
    let kinds: Vec<DiagnosticKind> = errors.diagnostics.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![DiagnosticKind::Syntax, DiagnosticKind::Syntax],
        "{}",
        found.join("\n")
    );
    assert_eq!(positions(&errors), vec![(2, 23), (7, 11)]);
}

#[test]
fn syntax_error_on_next_line_keeps_key_checks() {
    let text = "id = \"t\"\ncolour = 1\n= 2\n";

    let errors = errors_of(text);

    let found = messages(&errors);
    assert!(
        found.iter().any(|m| m.contains("unknown key `colour`")),
        "{}",
        found.join("\n")
    );
    assert!(
        errors
            .diagnostics
            .iter()
            .any(|d| d.kind == DiagnosticKind::Syntax && d.line == 3),
        "{}",
        found.join("\n")
    );
}

#[test]
fn broken_id_reports_syntax_only() {
    for text in [
        "id = =\nname = \"x\"\n",
        "id =\nname = \"x\"\n",
        "id = \"\\q\"\n",
        "[[tenants]]\nid = =\n",
        "[[tenants]]\nid =\n[[tenants]]\nid =\n",
        "id = \"t\"\n[[locations]]\nid = =\ncidrs = [\"10.0.0.0/8\"]\n",
        "id = \"t\"\n[[feeds]]\nid = \"f\"\npath =\nformat =\n",
    ] {
        let errors = errors_of(text);
        let kinds: Vec<_> = errors.diagnostics.iter().map(|d| d.kind).collect();
        assert!(
            kinds.iter().all(|kind| *kind == DiagnosticKind::Syntax),
            "{text:?}: {:?}",
            messages(&errors)
        );
        assert!(!kinds.is_empty(), "{text:?}");
    }

    // An id of the wrong type is reported as such, not as missing as well.
    let errors = errors_of("id = 5\n");
    assert_eq!(messages(&errors).len(), 1, "{:?}", messages(&errors));
    assert_eq!(errors.diagnostics[0].kind, DiagnosticKind::WrongType);

    // Tenants without a readable id are not named by a stand-in in other messages.
    let errors = errors_of(
        "[[tenants]]\nid = =\n[[tenants.locations]]\nid = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n\
         [[tenants]]\nid = 4\n[[tenants.locations]]\nid = \"a\"\ncidrs = [\"10.0.0.0/8\"]\n",
    );
    assert!(
        messages(&errors)
            .iter()
            .all(|message| !message.contains('#')),
        "{:?}",
        messages(&errors)
    );

    // A table with no syntax error still needs its id.
    let errors = errors_of("id = \"t\"\n[[locations]]\ncidrs = [\"10.0.0.0/8\"]\n");
    assert!(
        messages(&errors)
            .iter()
            .any(|message| message.contains("a location needs an `id`")),
        "{:?}",
        messages(&errors)
    );
}
