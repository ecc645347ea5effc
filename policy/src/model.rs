//! The compiled policy: tenants, their policies, locations and groups, and the shared
//! matching structures every tenant's decisions read.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use ipnet::IpNet;

use crate::category::Category;
use crate::feed::{FeedFormat, FeedStats};
use crate::index::{Fact, NameIndex};

/// Whether a list entry allows or blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ListKind {
    Allow,
    Block,
}

impl ListKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ListKind::Allow => "allow",
            ListKind::Block => "block",
        }
    }
}

/// The shape of a list entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EntryKind {
    /// A domain and all its subdomains.
    Domain,
    /// Exactly one host name.
    Host,
    /// Host plus path prefix; applies at the proxy only.
    Url,
    /// An IP address or CIDR.
    Ip,
}

impl EntryKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EntryKind::Domain => "domain",
            EntryKind::Host => "host",
            EntryKind::Url => "url",
            EntryKind::Ip => "ip",
        }
    }
}

/// Origin of a fact in the shared index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    /// The built-in exception domains, for every tenant.
    DefaultException,
    /// A tenant's own exception domains.
    Exception { tenant: u32 },
    /// An entry of a policy's block or allow list.
    List {
        tenant: u32,
        policy: u32,
        list: ListKind,
        entry: EntryKind,
    },
    /// An entry of a feed: in one category, or in none when the feed only feeds policies'
    /// block or allow lists.
    Feed {
        feed: u32,
        category: Option<Category>,
    },
}

/// A URL-prefix rule; the host is the index name the rule's fact hangs on.
#[derive(Debug, Clone)]
pub(crate) struct UrlRule {
    pub(crate) path: Box<str>,
    pub(crate) has_query: bool,
    pub(crate) separator_end: bool,
}

impl UrlRule {
    /// Returns true when the lower-case `path` (and `query`, when the rule has one)
    /// starts with the rule's prefix.
    pub(crate) fn matches(&self, path: &str, path_and_query: &str) -> bool {
        let subject = if self.has_query { path_and_query } else { path };
        let Some(rest) = subject.strip_prefix(&*self.path) else {
            return false;
        };
        if !self.separator_end {
            return true;
        }
        // The AdBlock `^` matches the end of the address or one separator character:
        // anything but a letter, a digit or one of `_-.%`.
        match rest.chars().next() {
            None => true,
            Some(c) => !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '%')),
        }
    }
}

/// IP entries: exact addresses (feeds) and networks (policy lists).
#[derive(Debug, Default)]
pub(crate) struct IpIndex {
    pub(crate) exact: HashMap<IpAddr, Vec<Fact>>,
    pub(crate) networks: Vec<(IpNet, Fact)>,
}

impl IpIndex {
    pub(crate) fn insert(&mut self, network: IpNet, fact: Fact) {
        if network.prefix_len() == network.max_prefix_len() {
            let facts = self.exact.entry(network.addr()).or_default();
            if !facts.contains(&fact) {
                facts.push(fact);
            }
        } else {
            self.networks.push((network, fact));
        }
    }

    /// Calls `visit(network, fact)` for every entry containing `ip`.
    pub(crate) fn for_each_match(&self, ip: IpAddr, mut visit: impl FnMut(IpNet, Fact)) {
        if let Some(facts) = self.exact.get(&ip) {
            for fact in facts {
                visit(IpNet::from(ip), *fact);
            }
        }
        for (network, fact) in &self.networks {
            if network.contains(&ip) {
                visit(*network, *fact);
            }
        }
    }
}

/// A loaded feed file or directory, shared by every tenant that names it.
#[derive(Debug, Clone)]
pub struct FeedInfo {
    /// The file or directory.
    pub path: PathBuf,
    /// Its format.
    pub format: FeedFormat,
    /// Counts from loading it.
    pub stats: FeedStats,
}

/// Matching structures shared by all tenants of a policy set.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) names: NameIndex,
    pub(crate) ips: IpIndex,
    pub(crate) url_rules: Vec<UrlRule>,
    pub(crate) sources: Vec<Source>,
    pub(crate) feeds: Vec<FeedInfo>,
}

/// The subjects a policy applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Everyone in the tenant.
    Everyone,
    /// Members of any of these groups.
    Groups(Vec<String>),
    /// Users at any of these locations.
    Locations(Vec<String>),
    /// These users.
    Users(Vec<String>),
}

impl Target {
    /// Specificity rank: higher wins (user 3, group 2, location 1, everyone 0).
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Target::Everyone => 0,
            Target::Locations(_) => 1,
            Target::Groups(_) => 2,
            Target::Users(_) => 3,
        }
    }

    /// Short description for explanations.
    pub(crate) fn describe(&self) -> String {
        match self {
            Target::Everyone => "everyone".into(),
            Target::Groups(ids) => format!("groups {}", ids.join(", ")),
            Target::Locations(ids) => format!("locations {}", ids.join(", ")),
            Target::Users(ids) => format!("users {}", ids.join(", ")),
        }
    }
}

/// A policy's setting for the categories of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CategorySetting {
    /// No category of the group has an effect.
    None,
    /// Every category of the group gets this action.
    All(CategoryAction),
    /// Only the listed categories have an effect.
    Custom(Vec<(Category, CategoryAction)>),
}

impl CategorySetting {
    /// Returns the action for `category`, if the setting gives one.
    pub fn action_for(&self, category: Category) -> Option<CategoryAction> {
        match self {
            CategorySetting::None => None,
            CategorySetting::All(action) => Some(*action),
            CategorySetting::Custom(list) => {
                list.iter().find(|(c, _)| *c == category).map(|(_, a)| *a)
            }
        }
    }
}

/// The action a category setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CategoryAction {
    /// Show a warn page (browsers); apps are blocked.
    Warn,
    /// Block.
    Block,
}

/// One policy of a tenant.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Id, unique within the tenant.
    pub id: Arc<str>,
    /// Display name.
    pub name: String,
    /// The subjects it applies to.
    pub target: Target,
    /// Security category setting.
    pub security: CategorySetting,
    /// Content category setting.
    pub content: CategorySetting,
    /// Feeds whose entries act as allow-list entries of this policy.
    pub(crate) allow_feeds: Vec<u32>,
    /// Feeds whose entries act as block-list entries of this policy.
    pub(crate) block_feeds: Vec<u32>,
}

/// A named set of source networks of a tenant.
#[derive(Debug, Clone)]
pub struct Location {
    /// Id, unique within the tenant.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Source networks.
    pub cidrs: Vec<IpNet>,
}

/// A group of users of a tenant.
#[derive(Debug, Clone)]
pub struct Group {
    /// Id, unique within the tenant.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Member user ids.
    pub users: Vec<String>,
}

/// A feed as one tenant names it.
#[derive(Debug, Clone)]
pub(crate) struct TenantFeed {
    pub(crate) id: String,
    pub(crate) feed: u32,
}

/// Counts of what a tenant has loaded, per kind of rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantStats {
    /// Policies.
    pub policies: usize,
    /// Block-list entries (domains, hosts, URLs, IPs).
    pub block_entries: usize,
    /// Allow-list entries.
    pub allow_entries: usize,
    /// Exception domains and CIDRs of the tenant (the built-in domains not counted).
    pub exceptions: usize,
    /// Locations.
    pub locations: usize,
    /// Feed entries of the tenant's feeds.
    pub feed_entries: usize,
    /// Skipped feed lines of the tenant's feeds.
    pub feed_skipped: usize,
}
