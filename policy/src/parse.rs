//! Reading a policy file: TOML is parsed into a spanned tree and walked by hand, so that
//! the unknown keys, wrong types and syntax errors of a file are reported together, not
//! only the first one, each with its byte range (the first 100 in position order).
//! Semantic checks (domains, CIDRs, references) happen later, in `compile`.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::category::CategoryGroup;
use crate::error::{omitted_message, DiagnosticKind, FirstProblems, Positioned};

/// A value with the byte range it came from.
#[derive(Debug, Clone)]
pub(crate) struct Sp<T> {
    pub(crate) span: Range<usize>,
    pub(crate) value: T,
}

/// A problem found while walking, before it gets its file and line.
#[derive(Debug)]
pub(crate) struct RawError {
    pub(crate) span: Range<usize>,
    pub(crate) kind: DiagnosticKind,
    pub(crate) message: String,
}

impl Positioned for RawError {
    type Key = usize;

    fn position(&self) -> usize {
        self.span.start
    }
}

/// One file's tenants as written.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub(crate) tenants: Vec<RawTenant>,
}

#[derive(Debug, Default)]
pub(crate) struct RawTenant {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    /// The table has an `id` that could not be read (a syntax error in it, or the
    /// wrong type), which is reported already.
    pub(crate) id_unreadable: bool,
    pub(crate) name: Option<Sp<String>>,
    pub(crate) block_private_relay: Option<bool>,
    pub(crate) additional_browsers: Vec<Sp<String>>,
    pub(crate) trusted_apps: Vec<Sp<String>>,
    pub(crate) bypassed_apps: Vec<Sp<String>>,
    pub(crate) exception_domains: Vec<Sp<String>>,
    pub(crate) exception_cidrs: Vec<Sp<String>>,
    pub(crate) locations: Vec<RawLocation>,
    pub(crate) groups: Vec<RawGroup>,
    pub(crate) feeds: Vec<RawFeed>,
    pub(crate) policies: Vec<RawPolicy>,
}

#[derive(Debug, Default)]
pub(crate) struct RawLocation {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    /// The table has an `id` that could not be read (a syntax error in it, or the
    /// wrong type), which is reported already.
    pub(crate) id_unreadable: bool,
    pub(crate) name: Option<Sp<String>>,
    pub(crate) cidrs: Vec<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawGroup {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    /// The table has an `id` that could not be read (a syntax error in it, or the
    /// wrong type), which is reported already.
    pub(crate) id_unreadable: bool,
    pub(crate) name: Option<Sp<String>>,
    pub(crate) users: Vec<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawFeed {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    /// The table has an `id` that could not be read (a syntax error in it, or the
    /// wrong type), which is reported already.
    pub(crate) id_unreadable: bool,
    pub(crate) path: Option<Sp<String>>,
    /// `path` is there but could not be read.
    pub(crate) path_unreadable: bool,
    pub(crate) format: Option<Sp<String>>,
    /// `format` is there but could not be read.
    pub(crate) format_unreadable: bool,
    pub(crate) category: Option<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawPolicy {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    /// The table has an `id` that could not be read (a syntax error in it, or the
    /// wrong type), which is reported already.
    pub(crate) id_unreadable: bool,
    pub(crate) name: Option<Sp<String>>,
    pub(crate) users: Option<Sp<Vec<Sp<String>>>>,
    pub(crate) groups: Option<Sp<Vec<Sp<String>>>>,
    pub(crate) locations: Option<Sp<Vec<Sp<String>>>>,
    pub(crate) block: RawList,
    pub(crate) allow: RawList,
    pub(crate) security: Option<RawCategories>,
    pub(crate) content: Option<RawCategories>,
}

#[derive(Debug, Default)]
pub(crate) struct RawList {
    pub(crate) domains: Vec<Sp<String>>,
    pub(crate) hosts: Vec<Sp<String>>,
    pub(crate) urls: Vec<Sp<String>>,
    pub(crate) ips: Vec<Sp<String>>,
    pub(crate) feeds: Vec<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawCategories {
    pub(crate) span: Range<usize>,
    /// Dotted path of the policy's array of tables: `policies` or `tenants.policies`.
    pub(crate) policy_path: String,
    pub(crate) mode: Option<Sp<String>>,
    pub(crate) action: Option<Sp<String>>,
    pub(crate) block: Vec<Sp<String>>,
    pub(crate) warn: Vec<Sp<String>>,
}

impl RawCategories {
    /// Names the category table of `group` in this policy, as in `[policies.security]`.
    pub(crate) fn table_name(&self, group: CategoryGroup) -> String {
        format!("[{}.{}]", self.policy_path, group.as_str())
    }
}

const TENANT_KEYS: &[&str] = &[
    "id",
    "name",
    "block_private_relay",
    "additional_browsers",
    "trusted_apps",
    "bypassed_apps",
    "exceptions",
    "locations",
    "groups",
    "feeds",
    "policies",
];

/// Parses and walks one file's text. Returns a raw file that contains whatever could be
/// read, and the syntax and structure errors in position order: the first 100, then one
/// [`DiagnosticKind::Omitted`] entry for the others, if any.
pub(crate) fn parse_file(text: &str) -> (RawFile, Vec<RawError>) {
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    let mut walker = Walker::new(text);
    for error in syntax_errors {
        let span = error.span().unwrap_or(0..0);
        walker.syntax_starts.push(span.start);
        walker.error(span, DiagnosticKind::Syntax, || {
            format!("invalid TOML: {}", error.message().trim_end())
        });
    }
    walker.syntax_starts.sort_unstable();

    let root = document.get_ref();
    let mut file = RawFile::default();
    if root.contains_key("tenants") {
        walker.check_keys(root, &["tenants"], "the top-level table");
        for (table, span) in walker.sub_tables(root, "tenants") {
            file.tenants.push(walker.tenant(table, span, "tenants."));
        }
    } else if !root.is_empty() {
        file.tenants.push(walker.tenant(root, document.span(), ""));
    }
    (file, walker.finish())
}

/// A key's value, and whether a syntax error lies in it.
struct Entry<'a, 'i> {
    value: &'a Spanned<DeValue<'i>>,
    /// The value was read past a syntax error, so its type and content may be a stand-in
    /// of the parser, such as the integer 0 for a missing value. No further problem is
    /// reported about it.
    damaged: bool,
}

struct Walker<'t> {
    text: &'t str,
    errors: FirstProblems<RawError>,
    /// Start offsets of the syntax errors, sorted.
    syntax_starts: Vec<usize>,
}

impl<'t> Walker<'t> {
    fn new(text: &'t str) -> Self {
        Walker {
            text,
            errors: FirstProblems::new(),
            syntax_starts: Vec::new(),
        }
    }

    fn finish(self) -> Vec<RawError> {
        let (mut errors, omitted) = self.errors.finish();
        if let Some((first, count)) = omitted {
            errors.push(RawError {
                span: first.span,
                kind: DiagnosticKind::Omitted { count },
                message: omitted_message(count),
            });
        }
        errors
    }

    /// Records a problem. `message` runs only if the problem may be listed.
    fn error(
        &mut self,
        span: Range<usize>,
        kind: DiagnosticKind,
        message: impl FnOnce() -> String,
    ) {
        self.errors.push_with(span.start, || RawError {
            span,
            kind,
            message: message(),
        });
    }

    /// Reports every key of `table` that is not in `allowed`. `context` names the table
    /// by its dotted path, as a user would search for it in the file.
    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for (key, value) in table.iter() {
            if allowed.contains(&key.get_ref().as_ref()) || self.damaged(&key.span(), value) {
                continue;
            }
            self.error(key.span(), DiagnosticKind::UnknownKey, || {
                format!(
                    "unknown key `{}` in {context}; allowed keys: {}",
                    key.get_ref(),
                    allowed.join(", ")
                )
            });
        }
    }

    /// Tells whether a syntax error starts between the start of `key` and the end of the
    /// line where its value ends. A table value counts up to the end of the key's line
    /// only, since the keys below a `[table]` header have checks of their own.
    fn damaged(&self, key: &Range<usize>, value: &Spanned<DeValue<'_>>) -> bool {
        let first = self
            .syntax_starts
            .partition_point(|start| *start < key.start);
        let Some(&error) = self.syntax_starts.get(first) else {
            return false;
        };

        let holds_tables = match value.get_ref() {
            DeValue::Table(_) => true,
            DeValue::Array(items) => items
                .iter()
                .any(|item| matches!(item.get_ref(), DeValue::Table(_))),
            _ => false,
        };
        let end = if holds_tables {
            key.end
        } else {
            key.end.max(value.span().end)
        };
        error <= self.line_end(end)
    }

    /// Returns the offset of the line feed that ends the line of `offset`, or the text's
    /// length on the last line.
    fn line_end(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[offset..]
            .iter()
            .position(|byte| *byte == b'\n')
            .map_or(self.text.len(), |length| offset + length)
    }

    fn entry<'a, 'i>(&self, table: &'a DeTable<'i>, key: &str) -> Option<Entry<'a, 'i>> {
        let (name, value) = table.get_key_value(key)?;
        Some(Entry {
            value,
            damaged: self.damaged(&name.span(), value),
        })
    }

    /// Reports that `value`, of `key` or of one of its items, is not of the `expected`
    /// type, unless `entry` is damaged.
    fn wrong_type(
        &mut self,
        entry: &Entry<'_, '_>,
        value: &Spanned<DeValue<'_>>,
        key: &str,
        expected: &str,
    ) {
        if entry.damaged {
            return;
        }
        self.error(value.span(), DiagnosticKind::WrongType, || {
            format!(
                "`{key}` must be {expected}, not {}",
                value.get_ref().type_str()
            )
        });
    }

    /// Reads a string. A damaged value reads as absent: the parser's stand-in (such
    /// as an empty string for `id =`) would only cause follow-up problems.
    fn string(&mut self, table: &DeTable<'_>, key: &str) -> Option<Sp<String>> {
        let entry = self.entry(table, key)?;
        if entry.damaged {
            return None;
        }
        match entry.value.get_ref() {
            DeValue::String(text) => Some(Sp {
                span: entry.value.span(),
                value: text.to_string(),
            }),
            _ => {
                self.wrong_type(&entry, entry.value, key, "a string");
                None
            }
        }
    }

    /// Reads a string that the table needs, and returns whether the key is there but
    /// could not be read (a problem reported already), so that it is not also called
    /// missing.
    fn required_string(&mut self, table: &DeTable<'_>, key: &str) -> (Option<Sp<String>>, bool) {
        let value = self.string(table, key);
        let unreadable = value.is_none() && table.contains_key(key);
        (value, unreadable)
    }

    fn boolean(&mut self, table: &DeTable<'_>, key: &str) -> Option<bool> {
        let entry = self.entry(table, key)?;
        if entry.damaged {
            return None;
        }
        match entry.value.get_ref() {
            DeValue::Boolean(flag) => Some(*flag),
            _ => {
                self.wrong_type(&entry, entry.value, key, "true or false");
                None
            }
        }
    }

    fn strings(&mut self, table: &DeTable<'_>, key: &str) -> Vec<Sp<String>> {
        self.strings_spanned(table, key)
            .map(|list| list.value)
            .unwrap_or_default()
    }

    fn strings_spanned(&mut self, table: &DeTable<'_>, key: &str) -> Option<Sp<Vec<Sp<String>>>> {
        let entry = self.entry(table, key)?;
        let DeValue::Array(items) = entry.value.get_ref() else {
            self.wrong_type(&entry, entry.value, key, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.get_ref() {
                DeValue::String(text) => out.push(Sp {
                    span: item.span(),
                    value: text.to_string(),
                }),
                _ => self.wrong_type(&entry, item, key, "an array of strings"),
            }
        }
        Some(Sp {
            span: entry.value.span(),
            value: out,
        })
    }

    fn table<'a, 'i>(
        &mut self,
        table: &'a DeTable<'i>,
        key: &str,
    ) -> Option<(&'a DeTable<'i>, Range<usize>)> {
        let entry = self.entry(table, key)?;
        match entry.value.get_ref() {
            DeValue::Table(inner) => Some((inner, entry.value.span())),
            _ => {
                self.wrong_type(&entry, entry.value, key, "a table");
                None
            }
        }
    }

    /// Returns the tables of the array of tables `key`.
    fn sub_tables<'a, 'i>(
        &mut self,
        table: &'a DeTable<'i>,
        key: &str,
    ) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        match self.entry(table, key) {
            Some(entry) => self.table_array(&entry, key),
            None => Vec::new(),
        }
    }

    fn table_array<'a, 'i>(
        &mut self,
        entry: &Entry<'a, 'i>,
        key: &str,
    ) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        let DeValue::Array(items) = entry.value.get_ref() else {
            self.wrong_type(entry, entry.value, key, "an array of tables (`[[...]]`)");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.get_ref() {
                DeValue::Table(table) => out.push((table, item.span())),
                _ => self.wrong_type(entry, item, key, "an array of tables (`[[...]]`)"),
            }
        }
        out
    }

    /// Reads one tenant. `prefix` is the dotted path of the tenant's table followed by a
    /// dot (`tenants.`), or empty for a file whose top level is the tenant.
    fn tenant(&mut self, table: &DeTable<'_>, span: Range<usize>, prefix: &str) -> RawTenant {
        let context = if prefix.is_empty() {
            "the top-level table".to_owned()
        } else {
            format!("[[{}]]", prefix.trim_end_matches('.'))
        };
        self.check_keys(table, TENANT_KEYS, &context);
        let (id, id_unreadable) = self.required_string(table, "id");
        let mut tenant = RawTenant {
            span,
            id,
            id_unreadable,
            name: self.string(table, "name"),
            block_private_relay: self.boolean(table, "block_private_relay"),
            additional_browsers: self.strings(table, "additional_browsers"),
            trusted_apps: self.strings(table, "trusted_apps"),
            bypassed_apps: self.strings(table, "bypassed_apps"),
            ..RawTenant::default()
        };

        if let Some((exceptions, _)) = self.table(table, "exceptions") {
            self.check_keys(
                exceptions,
                &["domains", "cidrs"],
                &format!("[{prefix}exceptions]"),
            );
            tenant.exception_domains = self.strings(exceptions, "domains");
            tenant.exception_cidrs = self.strings(exceptions, "cidrs");
        }
        for (location, span) in self.sub_tables(table, "locations") {
            self.check_keys(
                location,
                &["id", "name", "cidrs"],
                &format!("[[{prefix}locations]]"),
            );
            let (id, id_unreadable) = self.required_string(location, "id");
            tenant.locations.push(RawLocation {
                span,
                id,
                id_unreadable,
                name: self.string(location, "name"),
                cidrs: self.strings(location, "cidrs"),
            });
        }
        for (group, span) in self.sub_tables(table, "groups") {
            self.check_keys(
                group,
                &["id", "name", "users"],
                &format!("[[{prefix}groups]]"),
            );
            let (id, id_unreadable) = self.required_string(group, "id");
            tenant.groups.push(RawGroup {
                span,
                id,
                id_unreadable,
                name: self.string(group, "name"),
                users: self.strings(group, "users"),
            });
        }
        for (feed, span) in self.sub_tables(table, "feeds") {
            self.check_keys(
                feed,
                &["id", "path", "format", "category"],
                &format!("[[{prefix}feeds]]"),
            );
            let (id, id_unreadable) = self.required_string(feed, "id");
            let (path, path_unreadable) = self.required_string(feed, "path");
            let (format, format_unreadable) = self.required_string(feed, "format");
            tenant.feeds.push(RawFeed {
                span,
                id,
                id_unreadable,
                path,
                path_unreadable,
                format,
                format_unreadable,
                category: self.string(feed, "category"),
            });
        }
        let policies = format!("{prefix}policies");
        for (policy, span) in self.sub_tables(table, "policies") {
            tenant.policies.push(self.policy(policy, span, &policies));
        }
        tenant
    }

    /// Reads one policy. `path` is the dotted path of its array of tables.
    fn policy(&mut self, table: &DeTable<'_>, span: Range<usize>, path: &str) -> RawPolicy {
        self.check_keys(
            table,
            &[
                "id",
                "name",
                "users",
                "groups",
                "locations",
                "block",
                "allow",
                "security",
                "content",
            ],
            &format!("[[{path}]]"),
        );
        let (id, id_unreadable) = self.required_string(table, "id");
        let mut policy = RawPolicy {
            span,
            id,
            id_unreadable,
            name: self.string(table, "name"),
            users: self.strings_spanned(table, "users"),
            groups: self.strings_spanned(table, "groups"),
            locations: self.strings_spanned(table, "locations"),
            ..RawPolicy::default()
        };
        if let Some((list, _)) = self.table(table, "block") {
            policy.block = self.list(list, &format!("[{path}.block]"));
        }
        if let Some((list, _)) = self.table(table, "allow") {
            policy.allow = self.list(list, &format!("[{path}.allow]"));
        }
        if let Some((categories, span)) = self.table(table, "security") {
            policy.security =
                Some(self.categories(categories, span, path, CategoryGroup::Security));
        }
        if let Some((categories, span)) = self.table(table, "content") {
            policy.content = Some(self.categories(categories, span, path, CategoryGroup::Content));
        }
        policy
    }

    fn list(&mut self, table: &DeTable<'_>, context: &str) -> RawList {
        self.check_keys(
            table,
            &["domains", "hosts", "urls", "ips", "feeds"],
            context,
        );
        RawList {
            domains: self.strings(table, "domains"),
            hosts: self.strings(table, "hosts"),
            urls: self.strings(table, "urls"),
            ips: self.strings(table, "ips"),
            feeds: self.strings(table, "feeds"),
        }
    }

    /// Reads the category table of `group` of a policy whose array of tables is at
    /// `policy_path`.
    fn categories(
        &mut self,
        table: &DeTable<'_>,
        span: Range<usize>,
        policy_path: &str,
        group: CategoryGroup,
    ) -> RawCategories {
        let categories = RawCategories {
            span,
            policy_path: policy_path.to_owned(),
            ..RawCategories::default()
        };
        let context = categories.table_name(group);
        self.check_keys(table, &["mode", "action", "block", "warn"], &context);

        RawCategories {
            mode: self.string(table, "mode"),
            action: self.string(table, "action"),
            block: self.strings(table, "block"),
            warn: self.strings(table, "warn"),
            ..categories
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_tenant_file_is_read() {
        let (file, errors) = parse_file(
            "id = \"acme\"\nname = \"Acme\"\n[exceptions]\ndomains = [\"corp.example\"]\n",
        );
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(file.tenants.len(), 1);
        assert_eq!(file.tenants[0].id.as_ref().unwrap().value, "acme");
        assert_eq!(file.tenants[0].exception_domains[0].value, "corp.example");
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let text =
            "[[tenants]]\nid = \"a\"\ncolour = 1\n[[tenants.policies]]\nid = \"p\"\nshade = 2\n";
        let (_, errors) = parse_file(text);
        let unknown: Vec<_> = errors
            .iter()
            .filter(|e| e.kind == DiagnosticKind::UnknownKey)
            .map(|e| &text[e.span.clone()])
            .collect();
        assert_eq!(unknown, vec!["colour", "shade"]);
    }

    fn kinds_and_texts<'t>(text: &'t str, errors: &[RawError]) -> Vec<(DiagnosticKind, &'t str)> {
        errors
            .iter()
            .map(|e| (e.kind, &text[e.span.start..e.span.end.max(e.span.start)]))
            .collect()
    }

    #[test]
    fn syntax_error_in_multiline_array_hides_its_key() {
        let text = "id = \"t\"\ncolour = [\n  1,\n  =]\n";
        let (_, errors) = parse_file(text);
        assert!(
            errors.iter().all(|e| e.kind == DiagnosticKind::Syntax),
            "{:?}",
            kinds_and_texts(text, &errors)
        );
        assert!(!errors.is_empty());
    }

    #[test]
    fn syntax_error_in_array_hides_item_types() {
        let text = "id = \"t\"\ntrusted_apps = [1, =]\n";
        let (_, errors) = parse_file(text);
        assert!(
            errors.iter().all(|e| e.kind == DiagnosticKind::Syntax),
            "{:?}",
            kinds_and_texts(text, &errors)
        );
        assert!(!errors.is_empty());
    }

    #[test]
    fn syntax_error_below_table_header_keeps_table_check() {
        let text = "id = \"t\"\n[colour]\nx = =\n";
        let (_, errors) = parse_file(text);
        let found = kinds_and_texts(text, &errors);
        assert!(
            found.contains(&(DiagnosticKind::UnknownKey, "colour")),
            "{found:?}"
        );
        assert_eq!(found[0].0, DiagnosticKind::UnknownKey, "{found:?}");
        assert_eq!(found[1].0, DiagnosticKind::Syntax, "{found:?}");
        assert_eq!(found.len(), 2, "{found:?}");
    }

    #[test]
    fn errors_beyond_maximum_become_one_entry() {
        let mut text = String::from("id = \"t\"\n");
        for i in 0..150 {
            text.push_str(&format!("k{i} = 1\n"));
        }
        let (_, errors) = parse_file(&text);
        assert_eq!(errors.len(), 101);
        assert!(errors[..100]
            .iter()
            .all(|e| e.kind == DiagnosticKind::UnknownKey));
        assert_eq!(&text[errors[99].span.clone()], "k99");
        let last = &errors[100];
        assert_eq!(last.kind, DiagnosticKind::Omitted { count: 50 });
        // The entry points at the first key that is not listed.
        assert_eq!(&text[last.span.clone()], "k100");
    }

    #[test]
    fn wrong_types_are_reported() {
        let (_, errors) = parse_file("id = 5\ntrusted_apps = \"x\"\n");
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.kind == DiagnosticKind::WrongType));
    }
}
