//! Reading a policy file: TOML is parsed into a spanned tree and walked by hand, so that
//! every unknown key, wrong type and syntax error of a file is reported, not only the
//! first one, each with its byte range. Semantic checks (domains, CIDRs, references)
//! happen later, in `compile`.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::error::DiagnosticKind;

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

/// One file's tenants as written.
#[derive(Debug, Default)]
pub(crate) struct RawFile {
    pub(crate) tenants: Vec<RawTenant>,
}

#[derive(Debug, Default)]
pub(crate) struct RawTenant {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
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
    pub(crate) name: Option<Sp<String>>,
    pub(crate) cidrs: Vec<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawGroup {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    pub(crate) name: Option<Sp<String>>,
    pub(crate) users: Vec<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawFeed {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
    pub(crate) path: Option<Sp<String>>,
    pub(crate) format: Option<Sp<String>>,
    pub(crate) category: Option<Sp<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct RawPolicy {
    pub(crate) span: Range<usize>,
    pub(crate) id: Option<Sp<String>>,
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
    pub(crate) mode: Option<Sp<String>>,
    pub(crate) action: Option<Sp<String>>,
    pub(crate) block: Vec<Sp<String>>,
    pub(crate) warn: Vec<Sp<String>>,
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

/// Parses and walks one file's text. All syntax errors and structural errors are returned,
/// with a raw file that contains whatever could be read.
pub(crate) fn parse_file(text: &str) -> (RawFile, Vec<RawError>) {
    let (document, syntax_errors) = DeTable::parse_recoverable(text);
    let mut walker = Walker { errors: Vec::new() };
    for error in syntax_errors {
        walker.errors.push(RawError {
            span: error.span().unwrap_or(0..0),
            kind: DiagnosticKind::Syntax,
            message: format!("invalid TOML: {}", error.message().trim_end()),
        });
    }

    let root = document.get_ref();
    let mut file = RawFile::default();
    if let Some(tenants) = root.get("tenants") {
        walker.check_keys(
            root,
            &["tenants"],
            "the top level of a file with [[tenants]]",
        );
        for (table, span) in walker.table_array(tenants, "tenants") {
            file.tenants.push(walker.tenant(table, span));
        }
    } else if !root.is_empty() {
        file.tenants.push(walker.tenant(root, document.span()));
    }
    (file, walker.errors)
}

struct Walker {
    errors: Vec<RawError>,
}

impl Walker {
    fn error(&mut self, span: Range<usize>, kind: DiagnosticKind, message: String) {
        self.errors.push(RawError {
            span,
            kind,
            message,
        });
    }

    fn check_keys(&mut self, table: &DeTable<'_>, allowed: &[&str], context: &str) {
        for key in table.keys() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                self.error(
                    key.span(),
                    DiagnosticKind::UnknownKey,
                    format!(
                        "unknown key `{}` in {context}; allowed keys: {}",
                        key.get_ref(),
                        allowed.join(", ")
                    ),
                );
            }
        }
    }

    fn wrong_type(&mut self, value: &Spanned<DeValue<'_>>, key: &str, expected: &str) {
        self.error(
            value.span(),
            DiagnosticKind::WrongType,
            format!(
                "`{key}` must be {expected}, not {}",
                value.get_ref().type_str()
            ),
        );
    }

    fn string(&mut self, table: &DeTable<'_>, key: &str) -> Option<Sp<String>> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::String(text) => Some(Sp {
                span: value.span(),
                value: text.to_string(),
            }),
            _ => {
                self.wrong_type(value, key, "a string");
                None
            }
        }
    }

    fn boolean(&mut self, table: &DeTable<'_>, key: &str) -> Option<bool> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(flag) => Some(*flag),
            _ => {
                self.wrong_type(value, key, "true or false");
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
        let value = table.get(key)?;
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(value, key, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.get_ref() {
                DeValue::String(text) => out.push(Sp {
                    span: item.span(),
                    value: text.to_string(),
                }),
                _ => self.wrong_type(item, key, "an array of strings"),
            }
        }
        Some(Sp {
            span: value.span(),
            value: out,
        })
    }

    fn table<'a, 'i>(
        &mut self,
        table: &'a DeTable<'i>,
        key: &str,
    ) -> Option<(&'a DeTable<'i>, Range<usize>)> {
        let value = table.get(key)?;
        match value.get_ref() {
            DeValue::Table(inner) => Some((inner, value.span())),
            _ => {
                self.wrong_type(value, key, "a table");
                None
            }
        }
    }

    fn table_array<'a, 'i>(
        &mut self,
        value: &'a Spanned<DeValue<'i>>,
        key: &str,
    ) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        let DeValue::Array(items) = value.get_ref() else {
            self.wrong_type(value, key, "an array of tables (`[[...]]`)");
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            match item.get_ref() {
                DeValue::Table(table) => out.push((table, item.span())),
                _ => self.wrong_type(item, key, "an array of tables (`[[...]]`)"),
            }
        }
        out
    }

    fn sub_tables<'a, 'i>(
        &mut self,
        table: &'a DeTable<'i>,
        key: &str,
    ) -> Vec<(&'a DeTable<'i>, Range<usize>)> {
        match table.get(key) {
            Some(value) => self.table_array(value, key),
            None => Vec::new(),
        }
    }

    fn tenant(&mut self, table: &DeTable<'_>, span: Range<usize>) -> RawTenant {
        self.check_keys(table, TENANT_KEYS, "a tenant");
        let mut tenant = RawTenant {
            span,
            id: self.string(table, "id"),
            name: self.string(table, "name"),
            block_private_relay: self.boolean(table, "block_private_relay"),
            additional_browsers: self.strings(table, "additional_browsers"),
            trusted_apps: self.strings(table, "trusted_apps"),
            bypassed_apps: self.strings(table, "bypassed_apps"),
            ..RawTenant::default()
        };

        if let Some((exceptions, _)) = self.table(table, "exceptions") {
            self.check_keys(exceptions, &["domains", "cidrs"], "[exceptions]");
            tenant.exception_domains = self.strings(exceptions, "domains");
            tenant.exception_cidrs = self.strings(exceptions, "cidrs");
        }
        for (location, span) in self.sub_tables(table, "locations") {
            self.check_keys(location, &["id", "name", "cidrs"], "a location");
            tenant.locations.push(RawLocation {
                span,
                id: self.string(location, "id"),
                name: self.string(location, "name"),
                cidrs: self.strings(location, "cidrs"),
            });
        }
        for (group, span) in self.sub_tables(table, "groups") {
            self.check_keys(group, &["id", "name", "users"], "a group");
            tenant.groups.push(RawGroup {
                span,
                id: self.string(group, "id"),
                name: self.string(group, "name"),
                users: self.strings(group, "users"),
            });
        }
        for (feed, span) in self.sub_tables(table, "feeds") {
            self.check_keys(feed, &["id", "path", "format", "category"], "a feed");
            tenant.feeds.push(RawFeed {
                span,
                id: self.string(feed, "id"),
                path: self.string(feed, "path"),
                format: self.string(feed, "format"),
                category: self.string(feed, "category"),
            });
        }
        for (policy, span) in self.sub_tables(table, "policies") {
            tenant.policies.push(self.policy(policy, span));
        }
        tenant
    }

    fn policy(&mut self, table: &DeTable<'_>, span: Range<usize>) -> RawPolicy {
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
            "a policy",
        );
        let mut policy = RawPolicy {
            span,
            id: self.string(table, "id"),
            name: self.string(table, "name"),
            users: self.strings_spanned(table, "users"),
            groups: self.strings_spanned(table, "groups"),
            locations: self.strings_spanned(table, "locations"),
            ..RawPolicy::default()
        };
        if let Some((list, _)) = self.table(table, "block") {
            policy.block = self.list(list, "[block]");
        }
        if let Some((list, _)) = self.table(table, "allow") {
            policy.allow = self.list(list, "[allow]");
        }
        if let Some((categories, span)) = self.table(table, "security") {
            policy.security = Some(self.categories(categories, span, "[security]"));
        }
        if let Some((categories, span)) = self.table(table, "content") {
            policy.content = Some(self.categories(categories, span, "[content]"));
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

    fn categories(
        &mut self,
        table: &DeTable<'_>,
        span: Range<usize>,
        context: &str,
    ) -> RawCategories {
        self.check_keys(table, &["mode", "action", "block", "warn"], context);
        RawCategories {
            span,
            mode: self.string(table, "mode"),
            action: self.string(table, "action"),
            block: self.strings(table, "block"),
            warn: self.strings(table, "warn"),
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

    #[test]
    fn wrong_types_are_reported() {
        let (_, errors) = parse_file("id = 5\ntrusted_apps = \"x\"\n");
        assert_eq!(errors.len(), 2);
        assert!(errors.iter().all(|e| e.kind == DiagnosticKind::WrongType));
    }
}
