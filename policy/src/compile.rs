//! Compiling raw policy files into a [`PolicySet`]: semantic validation (domains, CIDRs,
//! ids, references, categories, feed files) and building the shared index. Every problem
//! of every file is collected; any problem rejects the whole set.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use crate::category::{Category, CategoryGroup};
use crate::error::{Diagnostic, DiagnosticKind, DiagnosticList, LineIndex, LoadErrors};
use crate::feed::{parse_lines, parse_url_prefix, FeedEntry, FeedFormat, FeedStats, LineFormat};
use crate::index::{Fact, NameIndex};
use crate::model::{
    CategoryAction, CategorySetting, EntryKind, FeedInfo, Group, IpIndex, ListKind, Location,
    Policy, Shared, Source, Target, TenantFeed, TenantStats, UrlRule,
};
use crate::name::normalize_name;
use crate::parse::{parse_file, RawCategories, RawFeed, RawList, RawPolicy, RawTenant, Sp};
use crate::set::PolicySet;
use crate::tenant::{Tenant, DEFAULT_EXCEPTION_DOMAINS, TENANT_DEFAULT_POLICY};
use crate::upload::Upload;

/// Tenant fields gathered before the shared index is complete.
struct TenantDraft {
    tenant: Tenant,
}

/// Position of a tenant id's first definition.
struct Definition {
    path: PathBuf,
    line: usize,
    column: usize,
}

/// A location network with its owner and position, for overlap checks across tenants.
struct LocationNet {
    network: IpNet,
    tenant: usize,
    location: usize,
    line: usize,
    column: usize,
}

/// Returns pairs of indexes of `nets` of different tenants whose networks overlap:
/// for each network that overlaps another tenant's network listed before it in
/// address order, one such pair. The cost is O(n log n) however the networks
/// nest, because an uploaded policy chooses them.
fn overlapping_pairs(nets: &[LocationNet]) -> Vec<(usize, usize)> {
    let mut order: Vec<usize> = (0..nets.len()).collect();
    order.sort_by_key(|&i| {
        let network = &nets[i].network;
        (
            matches!(network, IpNet::V6(_)),
            network.network(),
            network.prefix_len(),
        )
    });

    // Two networks overlap only when one contains the other. In this order every
    // network comes after the networks that contain it, so a stack of the
    // networks that contain the current one finds every overlap. Each stack entry
    // keeps up to two distinct tenants found in it and below it, with a network of
    // each, so a different tenant is found without walking the stack.
    struct Entry {
        index: usize,
        tenants: [Option<(usize, usize)>; 2],
    }
    let mut stack: Vec<Entry> = Vec::new();
    let mut pairs = Vec::new();
    for index in order {
        let net = &nets[index];
        while stack
            .last()
            .is_some_and(|top| !nets[top.index].network.contains(&net.network))
        {
            stack.pop();
        }
        let below = stack.last().map_or([None, None], |top| top.tenants);
        if let Some((_, other)) = below.iter().flatten().find(|(t, _)| *t != net.tenant) {
            pairs.push((*other, index));
        }
        let tenants = match below {
            [Some(first), None] if first.0 != net.tenant => {
                [Some(first), Some((net.tenant, index))]
            }
            [None, _] => [Some((net.tenant, index)), None],
            full => full,
        };
        stack.push(Entry { index, tenants });
    }
    pairs
}

pub(crate) struct Compiler {
    diagnostics: DiagnosticList,
    names: NameIndex,
    ips: IpIndex,
    url_rules: Vec<UrlRule>,
    sources: Vec<Source>,
    source_ids: HashMap<Source, u32>,
    feeds: Vec<FeedInfo>,
    feed_keys: HashMap<(PathBuf, FeedFormat, Option<Category>), u32>,
    /// Feed ids of the tenant being compiled whose feed failed to load; references to them
    /// are not reported again as unknown.
    failed_feed_ids: HashSet<String>,
    inputs: Vec<PathBuf>,
    tenants: Vec<TenantDraft>,
    tenant_ids: HashMap<String, Definition>,
    location_nets: Vec<LocationNet>,
    files: Vec<PathBuf>,
    /// The text of each file of `files`.
    texts: Vec<Arc<str>>,
    /// The policy file whose text came from outside the machine, and the feed files
    /// that text may name.
    upload: Option<Upload>,
}

/// Things a policy of a tenant can refer to.
struct PolicyContext<'a> {
    tenant: u32,
    index: u32,
    groups: &'a [Group],
    locations: &'a [Location],
    feeds: &'a [TenantFeed],
}

/// Context for reporting problems in one file.
struct FileContext<'a> {
    path: &'a Path,
    lines: LineIndex<'a>,
}

impl Compiler {
    /// Applies the rule of `upload` to the feed paths of its file, and keeps other
    /// tenants' ids, networks and files out of that file's diagnostics.
    pub(crate) fn set_upload(&mut self, upload: Option<&Upload>) {
        self.upload = upload.cloned();
    }

    /// Tells whether `path` is the file of an uploaded text.
    fn is_uploaded(&self, path: &Path) -> bool {
        self.upload
            .as_ref()
            .is_some_and(|upload| upload.file() == path)
    }

    pub(crate) fn new() -> Compiler {
        let seed =
            std::collections::hash_map::RandomState::new().hash_one(0x5367_5f70_6f6c_6963_u64);
        let mut compiler = Compiler {
            diagnostics: DiagnosticList::new(),
            names: NameIndex::new(seed),
            ips: IpIndex::default(),
            url_rules: Vec::new(),
            sources: Vec::new(),
            source_ids: HashMap::new(),
            feeds: Vec::new(),
            feed_keys: HashMap::new(),
            failed_feed_ids: HashSet::new(),
            inputs: Vec::new(),
            tenants: Vec::new(),
            tenant_ids: HashMap::new(),
            location_nets: Vec::new(),
            files: Vec::new(),
            texts: Vec::new(),
            upload: None,
        };
        let source = compiler.source_id(Source::DefaultException);
        for domain in DEFAULT_EXCEPTION_DOMAINS {
            // The built-in names are valid single labels; a failure here is a bug in the list.
            let inserted = compiler.names.insert(domain, Fact::plain(source));
            debug_assert!(
                inserted.is_ok(),
                "built-in exception domains fit in an empty index"
            );
        }
        compiler
    }

    /// Records an unreadable file.
    pub(crate) fn io_error(&mut self, path: &Path, error: &std::io::Error) {
        self.diagnostics.push(Diagnostic::whole_file(
            path,
            DiagnosticKind::Io,
            format!("cannot read the policy file: {error}"),
        ));
    }

    /// Compiles one file's text.
    pub(crate) fn add_file(&mut self, path: &Path, text: &str) {
        self.files.push(path.to_path_buf());
        self.texts.push(Arc::from(text));
        self.inputs.push(path.to_path_buf());
        self.diagnostics.add_file(path);
        let file = FileContext {
            path,
            lines: LineIndex::new(text),
        };
        let (raw, errors) = parse_file(text);
        for error in errors {
            self.report(&file, error.span, error.kind, error.message);
        }
        if raw.tenants.is_empty() && text.trim().is_empty() {
            self.report(
                &file,
                0..0,
                DiagnosticKind::MissingKey,
                "the file defines no tenant; add `id = \"...\"` or [[tenants]]".into(),
            );
        }
        for tenant in raw.tenants {
            self.tenant(&file, tenant);
        }
    }

    /// Finishes the set, or returns every problem found.
    pub(crate) fn finish(mut self) -> Result<PolicySet, LoadErrors> {
        self.check_location_overlaps();
        if !self.diagnostics.is_empty() {
            return Err(self.diagnostics.into_errors());
        }

        self.names.shrink_to_fit();
        self.url_rules.shrink_to_fit();
        let shared = Arc::new(Shared {
            names: self.names,
            ips: self.ips,
            url_rules: self.url_rules,
            sources: self.sources,
            feeds: self.feeds,
        });
        let tenants = self
            .tenants
            .into_iter()
            .map(|draft| Tenant {
                shared: shared.clone(),
                ..draft.tenant
            })
            .collect();
        let mut inputs = self.inputs;
        inputs.sort();
        inputs.dedup();
        Ok(PolicySet::new(
            tenants, shared, self.files, self.texts, inputs,
        ))
    }

    fn report(
        &mut self,
        file: &FileContext<'_>,
        span: Range<usize>,
        kind: DiagnosticKind,
        message: String,
    ) {
        self.diagnostics
            .push(Diagnostic::at(file.path, &file.lines, span, kind, message));
    }

    fn source_id(&mut self, source: Source) -> u32 {
        if let Some(id) = self.source_ids.get(&source) {
            return *id;
        }
        let id = self.sources.len() as u32;
        self.sources.push(source.clone());
        self.source_ids.insert(source, id);
        id
    }

    fn insert_name(&mut self, file: &FileContext<'_>, span: &Range<usize>, name: &str, fact: Fact) {
        if self.names.insert(name, fact).is_err() {
            self.report(
                file,
                span.clone(),
                DiagnosticKind::InvalidValue,
                "the policy set holds too many names (more than 2^31 or 4 GiB)".into(),
            );
        }
    }

    fn tenant(&mut self, file: &FileContext<'_>, raw: RawTenant) {
        let index = self.tenants.len() as u32;
        let id = self.tenant_id(file, &raw);
        let mut stats = TenantStats::default();

        let additional_browsers =
            self.bundle_ids(file, &raw.additional_browsers, "additional_browsers");
        let trusted_apps = self.bundle_ids(file, &raw.trusted_apps, "trusted_apps");
        let bypassed_apps = self.bundle_ids(file, &raw.bypassed_apps, "bypassed_apps");
        self.check_app_conflicts(file, &raw);

        let exception_source = self.source_id(Source::Exception { tenant: index });
        for domain in &raw.exception_domains {
            if let Some(name) = self.domain(file, domain, "exception domain") {
                self.insert_name(file, &domain.span, &name, Fact::plain(exception_source));
                stats.exceptions += 1;
            }
        }
        let exception_cidrs: Vec<IpNet> = raw
            .exception_cidrs
            .iter()
            .filter_map(|cidr| self.cidr(file, cidr))
            .collect();
        stats.exceptions += exception_cidrs.len();

        let locations = self.locations(file, &raw, index as usize);
        stats.locations = locations.len();
        let groups = self.groups(file, &raw);
        let (feeds, uses_feed_ids) = self.tenant_feeds(file, &raw);
        let mut policies = Vec::new();
        let mut policy_ids: HashMap<String, Range<usize>> = HashMap::new();
        for raw_policy in &raw.policies {
            let policy_index = policies.len() as u32;
            let context = PolicyContext {
                tenant: index,
                index: policy_index,
                groups: &groups,
                locations: &locations,
                feeds: &feeds,
            };
            if let Some(policy) =
                self.policy(file, raw_policy, &context, &mut policy_ids, &mut stats)
            {
                policies.push(policy);
            }
        }
        if !policies
            .iter()
            .any(|p: &Policy| p.target == Target::Everyone)
        {
            policies.push(Policy {
                id: Arc::from(TENANT_DEFAULT_POLICY),
                name: "Tenant default".into(),
                target: Target::Everyone,
                security: CategorySetting::All(CategoryAction::Block),
                content: CategorySetting::None,
                allow_feeds: Vec::new(),
                block_feeds: Vec::new(),
            });
        }
        stats.policies = policies.len();

        let mut uses_feed = vec![false; self.feeds.len()];
        for feed in &uses_feed_ids {
            uses_feed[*feed as usize] = true;
            let info = &self.feeds[*feed as usize];
            stats.feed_entries += info.stats.entries;
            stats.feed_skipped += info.stats.skipped;
        }
        let mut user_groups: HashMap<String, Vec<String>> = HashMap::new();
        for group in &groups {
            for user in &group.users {
                user_groups
                    .entry(user.clone())
                    .or_default()
                    .push(group.id.clone());
            }
        }

        self.tenants.push(TenantDraft {
            tenant: Tenant {
                index,
                name: raw.name.map_or_else(|| id.clone(), |n| n.value),
                id,
                file: file.path.to_path_buf(),
                block_private_relay: raw.block_private_relay.unwrap_or(true),
                additional_browsers,
                trusted_apps,
                bypassed_apps,
                exception_domains: raw
                    .exception_domains
                    .iter()
                    .map(|d| d.value.clone())
                    .collect(),
                exception_cidrs,
                locations,
                groups,
                user_groups,
                policies,
                feeds,
                uses_feed,
                stats,
                shared: Arc::new(Shared {
                    names: NameIndex::new(0),
                    ips: IpIndex::default(),
                    url_rules: Vec::new(),
                    sources: Vec::new(),
                    feeds: Vec::new(),
                }),
            },
        });
    }

    /// Returns the tenant's id, or a stand-in (see [`stand_in_id`]) after reporting
    /// that it is missing.
    fn tenant_id(&mut self, file: &FileContext<'_>, raw: &RawTenant) -> String {
        let Some(id) = &raw.id else {
            if !raw.id_unreadable {
                self.report(
                    file,
                    raw.span.clone(),
                    DiagnosticKind::MissingKey,
                    "a tenant needs an `id`".into(),
                );
            }
            return stand_in_id(self.tenants.len());
        };
        self.check_id(file, id, "tenant id");
        let (line, column) = file.lines.position(id.span.start);
        if let Some(first) = self.tenant_ids.get(&id.value) {
            let message = format!(
                "duplicate tenant id `{}`; it is already defined at {}:{}:{}",
                id.value,
                first.path.display(),
                first.line,
                first.column
            );
            self.report(file, id.span.clone(), DiagnosticKind::Duplicate, message);
        } else {
            self.tenant_ids.insert(
                id.value.clone(),
                Definition {
                    path: file.path.to_path_buf(),
                    line,
                    column,
                },
            );
        }
        id.value.clone()
    }

    /// Returns the id of a tenant item (`what`: location, group, feed, policy) when it is
    /// present and not a duplicate in this tenant, reporting it otherwise. A present id is
    /// also checked for its allowed characters. An id that is there but `unreadable` has
    /// been reported while reading.
    fn item_id<'r>(
        &mut self,
        file: &FileContext<'_>,
        id: &'r Option<Sp<String>>,
        unreadable: bool,
        item_span: &Range<usize>,
        what: &str,
        is_duplicate: impl FnOnce(&str) -> bool,
    ) -> Option<&'r Sp<String>> {
        let Some(id) = id else {
            if !unreadable {
                self.report(
                    file,
                    item_span.clone(),
                    DiagnosticKind::MissingKey,
                    format!("a {what} needs an `id`"),
                );
            }
            return None;
        };
        self.check_id(file, id, &format!("{what} id"));
        if is_duplicate(&id.value) {
            self.report(
                file,
                id.span.clone(),
                DiagnosticKind::Duplicate,
                format!("duplicate {what} id `{}` in this tenant", id.value),
            );
            return None;
        }
        Some(id)
    }

    fn check_id(&mut self, file: &FileContext<'_>, id: &Sp<String>, what: &str) {
        let valid = !id.value.is_empty()
            && id.value.len() <= 64
            && id
                .value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid {
            self.report(
                file,
                id.span.clone(),
                DiagnosticKind::InvalidValue,
                format!(
                    "invalid {what} {:?}; use 1 to 64 ASCII letters, digits, '-', '_' or '.'",
                    id.value
                ),
            );
        }
    }

    fn bundle_ids(
        &mut self,
        file: &FileContext<'_>,
        list: &[Sp<String>],
        key: &str,
    ) -> Vec<String> {
        let mut out = Vec::with_capacity(list.len());
        for id in list {
            let valid = !id.value.is_empty()
                && id
                    .value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !valid {
                self.report(
                    file,
                    id.span.clone(),
                    DiagnosticKind::InvalidValue,
                    format!("invalid bundle id {:?} in `{key}`; a bundle id has ASCII letters, digits, '-', '_' and '.'", id.value),
                );
                continue;
            }
            out.push(id.value.clone());
        }
        out
    }

    fn check_app_conflicts(&mut self, file: &FileContext<'_>, raw: &RawTenant) {
        let lists: [(&str, &Vec<Sp<String>>); 3] = [
            ("bypassed_apps", &raw.bypassed_apps),
            ("trusted_apps", &raw.trusted_apps),
            ("additional_browsers", &raw.additional_browsers),
        ];
        for (i, (first_key, first)) in lists.iter().enumerate() {
            for (second_key, second) in &lists[i + 1..] {
                for id in second.iter() {
                    if first
                        .iter()
                        .any(|other| other.value.eq_ignore_ascii_case(&id.value))
                    {
                        self.report(
                            file,
                            id.span.clone(),
                            DiagnosticKind::Duplicate,
                            format!("bundle id {:?} is in both `{first_key}` and `{second_key}`; an app has one class", id.value),
                        );
                    }
                }
            }
        }
    }

    fn domain(
        &mut self,
        file: &FileContext<'_>,
        domain: &Sp<String>,
        what: &str,
    ) -> Option<String> {
        match normalize_name(&domain.value) {
            Ok(name) => Some(name.into_owned()),
            Err(error) => {
                self.report(
                    file,
                    domain.span.clone(),
                    DiagnosticKind::InvalidValue,
                    format!("invalid {what} {:?}: {error}", domain.value),
                );
                None
            }
        }
    }

    fn cidr(&mut self, file: &FileContext<'_>, cidr: &Sp<String>) -> Option<IpNet> {
        let text = cidr.value.trim();
        if let Ok(network) = text.parse::<IpNet>() {
            if network.trunc() != network {
                self.report(
                    file,
                    cidr.span.clone(),
                    DiagnosticKind::InvalidValue,
                    format!("CIDR {text:?} has host bits set; write {}", network.trunc()),
                );
                return None;
            }
            return Some(network);
        }
        if let Ok(address) = text.parse::<IpAddr>() {
            return Some(IpNet::from(address));
        }
        self.report(
            file,
            cidr.span.clone(),
            DiagnosticKind::InvalidValue,
            format!("invalid CIDR {text:?}; write an address with a prefix length, like 192.0.2.0/24 or 2001:db8::/32, or a single address"),
        );
        None
    }

    fn locations(
        &mut self,
        file: &FileContext<'_>,
        raw: &RawTenant,
        tenant: usize,
    ) -> Vec<Location> {
        let mut locations: Vec<Location> = Vec::new();
        for raw_location in &raw.locations {
            let Some(id) = self.item_id(
                file,
                &raw_location.id,
                raw_location.id_unreadable,
                &raw_location.span,
                "location",
                |id| locations.iter().any(|l| l.id == id),
            ) else {
                continue;
            };
            if raw_location.cidrs.is_empty() {
                self.report(
                    file,
                    id.span.clone(),
                    DiagnosticKind::MissingKey,
                    format!(
                        "location `{}` needs at least one entry in `cidrs`",
                        id.value
                    ),
                );
            }
            let mut cidrs = Vec::with_capacity(raw_location.cidrs.len());
            for raw_cidr in &raw_location.cidrs {
                let Some(network) = self.cidr(file, raw_cidr) else {
                    continue;
                };
                let (line, column) = file.lines.position(raw_cidr.span.start);
                self.location_nets.push(LocationNet {
                    network,
                    tenant,
                    location: locations.len(),
                    line,
                    column,
                });
                cidrs.push(network);
            }
            locations.push(Location {
                id: id.value.clone(),
                name: raw_location
                    .name
                    .as_ref()
                    .map_or_else(|| id.value.clone(), |n| n.value.clone()),
                cidrs,
            });
        }
        locations
    }

    /// Rejects networks that two tenants claim, since plain DNS from them could not be
    /// attributed to one tenant.
    ///
    /// An overlap between an uploaded file and another file is reported in the uploaded
    /// file, whichever comes first, and without the other tenant's id, network or file,
    /// because the uploader may not see them.
    fn check_location_overlaps(&mut self) {
        let uploaded = |net: &LocationNet| {
            self.tenants
                .get(net.tenant)
                .is_some_and(|draft| self.is_uploaded(&draft.tenant.file))
        };
        let mut diagnostics: Vec<Diagnostic> = Vec::new();
        let mut seen = HashSet::new();
        for (first, second) in overlapping_pairs(&self.location_nets) {
            let (a, b) = (&self.location_nets[first], &self.location_nets[second]);
            // A tenant without a readable id is reported already, and its stand-in id
            // means nothing to the reader.
            let unnamed = |net: &LocationNet| {
                self.tenants
                    .get(net.tenant)
                    .is_some_and(|draft| is_stand_in_id(&draft.tenant.id))
            };
            if unnamed(a) || unnamed(b) {
                continue;
            }
            let (a_uploaded, b_uploaded) = (uploaded(a), uploaded(b));
            let (a, b) = if b_uploaded && !a_uploaded {
                (b, a)
            } else {
                (a, b)
            };
            let hide_other = a_uploaded != b_uploaded;
            let tenant_a = &self.tenants[a.tenant].tenant;
            let location_a = tenant_a
                .locations
                .get(a.location)
                .map_or("?", |l| l.id.as_str());
            let message = if hide_other {
                format!(
                    "location `{location_a}` network {} overlaps a network of another tenant. Plain DNS from one source must belong to one tenant, so use networks that no other tenant uses.",
                    a.network
                )
            } else {
                let (b_id, b_place) = self.tenants.get(b.tenant).map_or_else(
                    || ("?".to_owned(), String::new()),
                    |t| {
                        let place =
                            format!(" ({}:{}:{})", t.tenant.file.display(), b.line, b.column);
                        (t.tenant.id.clone(), place)
                    },
                );
                format!(
                    "location `{location_a}` network {} of tenant `{}` overlaps {} of tenant `{b_id}`{b_place}; plain DNS from one source must belong to one tenant",
                    a.network, tenant_a.id, b.network
                )
            };
            // Without the other side, overlaps with several networks read alike, and
            // repeating them would tell the uploader how many networks overlap.
            if seen.insert((a.line, a.column, message.clone())) {
                diagnostics.push(Diagnostic {
                    path: tenant_a.file.clone(),
                    line: a.line,
                    column: a.column,
                    kind: DiagnosticKind::Duplicate,
                    message,
                });
            }
        }
        self.diagnostics.extend(diagnostics);
    }

    fn groups(&mut self, file: &FileContext<'_>, raw: &RawTenant) -> Vec<Group> {
        let mut groups: Vec<Group> = Vec::new();
        for raw_group in &raw.groups {
            let Some(id) = self.item_id(
                file,
                &raw_group.id,
                raw_group.id_unreadable,
                &raw_group.span,
                "group",
                |id| groups.iter().any(|g| g.id == id),
            ) else {
                continue;
            };
            groups.push(Group {
                id: id.value.clone(),
                name: raw_group
                    .name
                    .as_ref()
                    .map_or_else(|| id.value.clone(), |n| n.value.clone()),
                users: raw_group.users.iter().map(|u| u.value.clone()).collect(),
            });
        }
        groups
    }

    fn tenant_feeds(
        &mut self,
        file: &FileContext<'_>,
        raw: &RawTenant,
    ) -> (Vec<TenantFeed>, Vec<u32>) {
        let mut feeds: Vec<TenantFeed> = Vec::new();
        let mut used = Vec::new();
        self.failed_feed_ids.clear();
        for raw_feed in &raw.feeds {
            let Some(id) = self.item_id(
                file,
                &raw_feed.id,
                raw_feed.id_unreadable,
                &raw_feed.span,
                "feed",
                |id| feeds.iter().any(|f| f.id == id),
            ) else {
                continue;
            };
            if let Some(feed) = self.feed(file, raw_feed, id) {
                feeds.push(TenantFeed {
                    id: id.value.clone(),
                    feed,
                });
                used.push(feed);
            } else {
                self.failed_feed_ids.insert(id.value.clone());
            }
        }
        (feeds, used)
    }

    fn feed(&mut self, file: &FileContext<'_>, raw: &RawFeed, id: &Sp<String>) -> Option<u32> {
        let Some(path) = &raw.path else {
            if !raw.path_unreadable {
                self.report(
                    file,
                    raw.span.clone(),
                    DiagnosticKind::MissingKey,
                    format!("feed `{}` needs a `path`", id.value),
                );
            }
            return None;
        };
        let Some(format_text) = &raw.format else {
            if !raw.format_unreadable {
                self.report(
                    file,
                    raw.span.clone(),
                    DiagnosticKind::MissingKey,
                    format!(
                        "feed `{}` needs a `format`: hosts, domains, adblock or directory",
                        id.value
                    ),
                );
            }
            return None;
        };
        let Some(format) = FeedFormat::parse(&format_text.value) else {
            self.report(
                file,
                format_text.span.clone(),
                DiagnosticKind::InvalidValue,
                format!(
                    "unknown feed format {:?}; allowed: hosts, domains, adblock, directory",
                    format_text.value
                ),
            );
            return None;
        };
        let category = match (&raw.category, format) {
            (Some(category), FeedFormat::Directory) => {
                self.report(
                    file,
                    category.span.clone(),
                    DiagnosticKind::InvalidValue,
                    "a directory feed takes its categories from its folder names; remove `category`".into(),
                );
                return None;
            }
            (None, _) => None,
            (Some(category), _) => Some(self.category(file, category)?),
        };

        let base = file.path.parent().unwrap_or(Path::new(""));
        let forbidden = self
            .upload
            .as_ref()
            .filter(|upload| upload.file() == file.path)
            .and_then(|upload| upload.check_feed_path(&id.value, base, &path.value).err());
        if let Some(message) = forbidden {
            self.report(
                file,
                path.span.clone(),
                DiagnosticKind::InvalidValue,
                message,
            );
            return None;
        }
        let resolved = base.join(&path.value);
        let exists = if format == FeedFormat::Directory {
            resolved.is_dir()
        } else {
            resolved.is_file()
        };
        if !exists {
            let what = if format == FeedFormat::Directory {
                "directory"
            } else {
                "file"
            };
            self.report(
                file,
                path.span.clone(),
                DiagnosticKind::MissingFeed,
                format!(
                    "feed {what} not found: {} (paths are relative to the policy file)",
                    std::path::absolute(&resolved)
                        .unwrap_or_else(|_| resolved.clone())
                        .display()
                ),
            );
            return None;
        }
        let key_path = std::fs::canonicalize(&resolved).unwrap_or_else(|_| resolved.clone());
        if let Some(feed) = self.feed_keys.get(&(key_path.clone(), format, category)) {
            return Some(*feed);
        }

        let feed = self.feeds.len() as u32;
        let loaded = match format {
            FeedFormat::Directory => self.load_directory(&resolved, feed),
            _ => {
                let line_format = match format {
                    FeedFormat::Hosts => LineFormat::Hosts,
                    FeedFormat::Domains => LineFormat::Domains,
                    _ => LineFormat::Adblock,
                };
                self.load_file(&resolved, line_format, feed, category)
            }
        };
        match loaded {
            Ok(stats) => {
                tracing::debug!(feed = %resolved.display(), entries = stats.entries, skipped = stats.skipped, "loaded feed");
                self.feeds.push(FeedInfo {
                    path: resolved,
                    format,
                    stats,
                });
                self.feed_keys.insert((key_path, format, category), feed);
                Some(feed)
            }
            Err(error) => {
                self.report(
                    file,
                    path.span.clone(),
                    DiagnosticKind::MissingFeed,
                    format!("cannot read feed {}: {error}", resolved.display()),
                );
                None
            }
        }
    }

    fn load_file(
        &mut self,
        path: &Path,
        format: LineFormat,
        feed: u32,
        category: Option<Category>,
    ) -> std::io::Result<FeedStats> {
        let bytes = std::fs::read(path)?;
        self.inputs.push(path.to_path_buf());
        let source = self.source_id(Source::Feed { feed, category });
        Ok(self.load_bytes(&bytes, format, source))
    }

    fn load_bytes(&mut self, bytes: &[u8], format: LineFormat, source: u32) -> FeedStats {
        let names = &mut self.names;
        let ips = &mut self.ips;
        let url_rules = &mut self.url_rules;
        let mut full = false;
        let mut stats = parse_lines(bytes, format, |entry| match entry {
            FeedEntry::Domain(name) => full |= names.insert(&name, Fact::plain(source)).is_err(),
            FeedEntry::Ip(ip) => ips.insert(IpNet::from(ip), Fact::plain(source)),
            FeedEntry::Url(prefix) => {
                let rule = url_rules.len() as u32;
                url_rules.push(UrlRule {
                    has_query: prefix.path.contains('?'),
                    path: prefix.path.into_boxed_str(),
                    separator_end: prefix.separator_end,
                });
                full |= names
                    .insert(
                        &prefix.host,
                        Fact {
                            source,
                            extra: rule,
                        },
                    )
                    .is_err();
            }
        });
        if full {
            stats.skipped += 1;
            tracing::error!("the name index is full; feed entries were dropped");
        }
        stats
    }

    /// Loads a category directory: one folder per category with `domains` and optional
    /// `urls` files. Folders whose name is not a known category are skipped and counted.
    fn load_directory(&mut self, path: &Path, feed: u32) -> std::io::Result<FeedStats> {
        let mut stats = FeedStats::default();
        let mut folders: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|p| p.is_dir())
            .collect();
        folders.sort();
        // Watch the directory and its folders too, so that a new category folder or a new
        // `urls` file triggers a reload (their modification times change).
        self.inputs.push(path.to_path_buf());
        self.inputs.extend(folders.iter().cloned());
        for folder in folders {
            let folder_name = folder
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let Some(category) = Category::parse(&folder_name) else {
                tracing::warn!(feed = %path.display(), folder = %folder_name, "skipping a feed folder that is not a known category");
                stats.absorb(FeedStats {
                    entries: 0,
                    skipped: 1,
                    skipped_examples: vec![crate::feed::SkippedLine {
                        line: 0,
                        reason: format!("folder {folder_name:?} is not a known category"),
                    }],
                });
                continue;
            };
            for (file_name, format) in
                [("domains", LineFormat::Domains), ("urls", LineFormat::Urls)]
            {
                let file = folder.join(file_name);
                if file.is_file() {
                    stats.absorb(self.load_file(&file, format, feed, Some(category))?);
                }
            }
        }
        Ok(stats)
    }

    fn category(&mut self, file: &FileContext<'_>, name: &Sp<String>) -> Option<Category> {
        let category = Category::parse(&name.value);
        if category.is_none() {
            self.report(
                file,
                name.span.clone(),
                DiagnosticKind::InvalidValue,
                format!(
                    "unknown category {:?}; known categories: {}",
                    name.value,
                    Category::names_list()
                ),
            );
        }
        category
    }

    fn policy(
        &mut self,
        file: &FileContext<'_>,
        raw: &RawPolicy,
        context: &PolicyContext<'_>,
        ids: &mut HashMap<String, Range<usize>>,
        stats: &mut TenantStats,
    ) -> Option<Policy> {
        let id = self.item_id(
            file,
            &raw.id,
            raw.id_unreadable,
            &raw.span,
            "policy",
            |id| ids.contains_key(id),
        )?;
        ids.insert(id.value.clone(), id.span.clone());

        let target = self.target(file, raw, context.groups, context.locations);
        let security = self.category_setting(file, raw.security.as_ref(), CategoryGroup::Security);
        let content = self.category_setting(file, raw.content.as_ref(), CategoryGroup::Content);
        stats.block_entries += self.list(
            file,
            &raw.block,
            context.tenant,
            context.index,
            ListKind::Block,
        );
        stats.allow_entries += self.list(
            file,
            &raw.allow,
            context.tenant,
            context.index,
            ListKind::Allow,
        );
        let block_feeds = self.list_feeds(
            file,
            &raw.block.feeds,
            context.feeds,
            stats,
            ListKind::Block,
        );
        let allow_feeds = self.list_feeds(
            file,
            &raw.allow.feeds,
            context.feeds,
            stats,
            ListKind::Allow,
        );

        Some(Policy {
            id: Arc::from(id.value.as_str()),
            name: raw
                .name
                .as_ref()
                .map_or_else(|| id.value.clone(), |n| n.value.clone()),
            target,
            security,
            content,
            allow_feeds,
            block_feeds,
        })
    }

    /// Resolves the feed ids a block or allow list names.
    fn list_feeds(
        &mut self,
        file: &FileContext<'_>,
        ids: &[Sp<String>],
        feeds: &[TenantFeed],
        stats: &mut TenantStats,
        list: ListKind,
    ) -> Vec<u32> {
        let mut out = Vec::new();
        for id in ids {
            match feeds.iter().find(|f| f.id == id.value) {
                Some(feed) => {
                    let entries = self.feeds[feed.feed as usize].stats.entries;
                    match list {
                        ListKind::Allow => stats.allow_entries += entries,
                        ListKind::Block => stats.block_entries += entries,
                    }
                    out.push(feed.feed);
                }
                // The feed itself is already reported.
                None if self.failed_feed_ids.contains(&id.value) => {}
                None => {
                    let known: Vec<&str> = feeds.iter().map(|f| f.id.as_str()).collect();
                    self.report(
                        file,
                        id.span.clone(),
                        DiagnosticKind::UnknownReference,
                        format!(
                            "unknown feed `{}`; feeds of this tenant: {}",
                            id.value,
                            list_or_none(&known)
                        ),
                    );
                }
            }
        }
        out
    }

    fn target(
        &mut self,
        file: &FileContext<'_>,
        raw: &RawPolicy,
        groups: &[Group],
        locations: &[Location],
    ) -> Target {
        let given: Vec<(&str, &Sp<Vec<Sp<String>>>)> = [
            ("users", &raw.users),
            ("groups", &raw.groups),
            ("locations", &raw.locations),
        ]
        .into_iter()
        .filter_map(|(key, list)| list.as_ref().map(|list| (key, list)))
        .collect();
        if given.len() > 1 {
            self.report(
                file,
                given[1].1.span.clone(),
                DiagnosticKind::InvalidValue,
                "a policy targets one kind: `users`, `groups` or `locations` (or none of them for everyone)".into(),
            );
        }
        let Some((key, list)) = given.first() else {
            return Target::Everyone;
        };
        if list.value.is_empty() {
            self.report(
                file,
                list.span.clone(),
                DiagnosticKind::InvalidValue,
                format!("`{key}` must name at least one entry"),
            );
        }
        let ids: Vec<String> = list.value.iter().map(|v| v.value.clone()).collect();
        match *key {
            "groups" => {
                for group in &list.value {
                    if !groups.iter().any(|g| g.id == group.value) {
                        let known: Vec<&str> = groups.iter().map(|g| g.id.as_str()).collect();
                        self.report(
                            file,
                            group.span.clone(),
                            DiagnosticKind::UnknownReference,
                            format!(
                                "unknown group `{}`; groups of this tenant: {}",
                                group.value,
                                list_or_none(&known)
                            ),
                        );
                    }
                }
                Target::Groups(ids)
            }
            "locations" => {
                for location in &list.value {
                    if !locations.iter().any(|l| l.id == location.value) {
                        let known: Vec<&str> = locations.iter().map(|l| l.id.as_str()).collect();
                        self.report(
                            file,
                            location.span.clone(),
                            DiagnosticKind::UnknownReference,
                            format!(
                                "unknown location `{}`; locations of this tenant: {}",
                                location.value,
                                list_or_none(&known)
                            ),
                        );
                    }
                }
                Target::Locations(ids)
            }
            _ => Target::Users(ids),
        }
    }

    fn category_setting(
        &mut self,
        file: &FileContext<'_>,
        raw: Option<&RawCategories>,
        group: CategoryGroup,
    ) -> CategorySetting {
        let Some(raw) = raw else {
            return match group {
                CategoryGroup::Security => CategorySetting::All(CategoryAction::Block),
                CategoryGroup::Content => CategorySetting::None,
            };
        };
        let section = raw.table_name(group);
        let Some(mode) = &raw.mode else {
            self.report(
                file,
                raw.span.clone(),
                DiagnosticKind::MissingKey,
                format!("{section} needs `mode`: none, all or custom"),
            );
            return CategorySetting::None;
        };
        match mode.value.as_str() {
            "none" | "all" => {
                for list in [&raw.block, &raw.warn] {
                    if let Some(first) = list.first() {
                        self.report(
                            file,
                            first.span.clone(),
                            DiagnosticKind::InvalidValue,
                            format!("`block` and `warn` lists belong to mode \"custom\"; {section} has mode {:?}", mode.value),
                        );
                    }
                }
                if mode.value == "none" {
                    if let Some(action) = &raw.action {
                        self.report(
                            file,
                            action.span.clone(),
                            DiagnosticKind::InvalidValue,
                            "mode \"none\" takes no `action`".into(),
                        );
                    }
                    return CategorySetting::None;
                }
                let action = match &raw.action {
                    None => CategoryAction::Block,
                    Some(action) => self
                        .category_action(file, action)
                        .unwrap_or(CategoryAction::Block),
                };
                CategorySetting::All(action)
            }
            "custom" => {
                if let Some(action) = &raw.action {
                    self.report(
                        file,
                        action.span.clone(),
                        DiagnosticKind::InvalidValue,
                        "mode \"custom\" takes `block` and `warn` lists, not `action`".into(),
                    );
                }
                let mut list = Vec::new();
                for (names, action) in [
                    (&raw.block, CategoryAction::Block),
                    (&raw.warn, CategoryAction::Warn),
                ] {
                    for name in names {
                        let Some(category) = self.category(file, name) else {
                            continue;
                        };
                        if category.group() != group {
                            self.report(
                                file,
                                name.span.clone(),
                                DiagnosticKind::InvalidValue,
                                format!(
                                    "{category} is a {} category; list it under {}",
                                    category.group().as_str(),
                                    raw.table_name(category.group())
                                ),
                            );
                        } else if list.iter().any(|(c, _)| *c == category) {
                            self.report(
                                file,
                                name.span.clone(),
                                DiagnosticKind::Duplicate,
                                format!("category {category} is listed twice in {section}"),
                            );
                        } else {
                            list.push((category, action));
                        }
                    }
                }
                CategorySetting::Custom(list)
            }
            other => {
                self.report(
                    file,
                    mode.span.clone(),
                    DiagnosticKind::InvalidValue,
                    format!("unknown mode {other:?} in {section}; allowed: none, all, custom"),
                );
                CategorySetting::None
            }
        }
    }

    fn category_action(
        &mut self,
        file: &FileContext<'_>,
        action: &Sp<String>,
    ) -> Option<CategoryAction> {
        match action.value.as_str() {
            "block" => Some(CategoryAction::Block),
            "warn" => Some(CategoryAction::Warn),
            other => {
                self.report(
                    file,
                    action.span.clone(),
                    DiagnosticKind::InvalidValue,
                    format!("unknown action {other:?}; allowed: block, warn"),
                );
                None
            }
        }
    }

    /// Adds one block or allow list; returns the number of valid entries.
    fn list(
        &mut self,
        file: &FileContext<'_>,
        raw: &RawList,
        tenant: u32,
        policy: u32,
        list: ListKind,
    ) -> usize {
        let mut count = 0;
        let source = |entry| Source::List {
            tenant,
            policy,
            list,
            entry,
        };
        for (entries, entry) in [
            (&raw.domains, EntryKind::Domain),
            (&raw.hosts, EntryKind::Host),
        ] {
            let id = self.source_id(source(entry));
            for domain in entries {
                if let Some(name) = self.domain(file, domain, "domain") {
                    self.insert_name(file, &domain.span, &name, Fact::plain(id));
                    count += 1;
                }
            }
        }
        let url_source = self.source_id(source(EntryKind::Url));
        for url in &raw.urls {
            match parse_url_prefix(&url.value) {
                Ok(prefix) => {
                    let rule = self.url_rules.len() as u32;
                    self.url_rules.push(UrlRule {
                        has_query: prefix.path.contains('?'),
                        path: prefix.path.into_boxed_str(),
                        separator_end: false,
                    });
                    self.insert_name(file, &url.span, &prefix.host, Fact { source: url_source, extra: rule });
                    count += 1;
                }
                Err(reason) => self.report(
                    file,
                    url.span.clone(),
                    DiagnosticKind::InvalidValue,
                    format!("invalid URL entry {:?}: {reason}; write host/path, like example.com/downloads/", url.value),
                ),
            }
        }
        let ip_source = self.source_id(source(EntryKind::Ip));
        for cidr in &raw.ips {
            if let Some(network) = self.cidr(file, cidr) {
                self.ips.insert(network, Fact::plain(ip_source));
                count += 1;
            }
        }
        count
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() {
        "none defined".into()
    } else {
        items.join(", ")
    }
}

/// Returns the placeholder for the missing id of the tenant at `index`. It starts
/// with `#`, which no valid tenant id contains, and the set is rejected anyway.
fn stand_in_id(index: usize) -> String {
    format!("#{index}")
}

/// Tells whether `id` is a stand-in from [`stand_in_id`].
fn is_stand_in_id(id: &str) -> bool {
    id.starts_with('#')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks the sweep against comparing every pair, on pseudo-random nested,
    /// equal and disjoint networks of three tenants.
    #[test]
    fn overlapping_pairs_match_every_pair_compared() {
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..50 {
            let nets: Vec<LocationNet> = (0..60)
                .map(|i| {
                    let value = next();
                    let prefix = 8 + (value % 17) as u8;
                    let address = std::net::Ipv4Addr::new(
                        10,
                        (value >> 8) as u8 % 4,
                        (value >> 16) as u8 % 4,
                        0,
                    );
                    LocationNet {
                        network: IpNet::new(address.into(), prefix).unwrap().trunc(),
                        tenant: (value >> 24) as usize % 3,
                        location: i,
                        line: i,
                        column: 1,
                    }
                })
                .collect();
            let overlaps = |a: &LocationNet, b: &LocationNet| {
                a.tenant != b.tenant
                    && (a.network.contains(&b.network) || b.network.contains(&a.network))
            };
            let pairs = overlapping_pairs(&nets);
            for &(a, b) in &pairs {
                assert!(
                    overlaps(&nets[a], &nets[b]),
                    "{:?} {:?}",
                    nets[a].network,
                    nets[b].network
                );
            }
            // Every network that overlaps another tenant's is in a reported pair.
            for (i, net) in nets.iter().enumerate() {
                let overlapping = nets.iter().any(|other| overlaps(net, other));
                let reported = pairs.iter().any(|&(a, b)| a == i || b == i);
                let partner_reported = pairs
                    .iter()
                    .any(|&(a, b)| overlaps(net, &nets[a]) || overlaps(net, &nets[b]));
                assert!(
                    !overlapping || reported || partner_reported,
                    "{:?}",
                    net.network
                );
            }
            assert_eq!(
                pairs.is_empty(),
                !nets.iter().any(|a| nets.iter().any(|b| overlaps(a, b)))
            );
        }
    }
}
