//! A tenant: its settings, app lists, exceptions, locations, groups and policies.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;

use crate::app::{is_built_in_browser, App, AppClass};
use crate::model::{Group, Location, Policy, Shared, Target, TenantFeed, TenantStats};
use crate::verdict::Trace;

/// Exception domains every tenant has: names under these suffixes are resolved upstream,
/// never proxied, never evaluated and never logged.
pub const DEFAULT_EXCEPTION_DOMAINS: &[&str] = &[
    "local",
    "internal",
    "lan",
    "home",
    "corp",
    "localdomain",
    "domain",
    "mail",
];

/// Host names of the DNS canaries (see [`Canary`]).
pub const CANARY_DOH: &str = "use-application-dns.net";

/// Host names of iCloud Private Relay's canary.
pub const CANARY_PRIVATE_RELAY: &[&str] = &["mask.icloud.com", "mask-h2.icloud.com"];

/// A canary name that browsers or the OS probe to decide whether to bypass the resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canary {
    /// `use-application-dns.net`: NXDOMAIN keeps Firefox's own DNS over HTTPS off.
    ApplicationDns,
    /// `mask.icloud.com`, `mask-h2.icloud.com`: NXDOMAIN turns iCloud Private Relay off.
    PrivateRelay,
}

impl Canary {
    /// Recognizes a canary name (normalized or not).
    pub fn of(name: &str) -> Option<Canary> {
        let name = crate::name::normalize_query(name);
        if name == CANARY_DOH {
            Some(Canary::ApplicationDns)
        } else if CANARY_PRIVATE_RELAY.contains(&name.as_ref()) {
            Some(Canary::PrivateRelay)
        } else {
            None
        }
    }
}

/// The subject of a decision: user, groups and location, as far as they are known.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// The user id from the device token or cookie.
    pub user: Option<&'a str>,
    /// Groups known to the caller, in addition to the groups the policy file gives the user.
    pub groups: &'a [String],
    /// The location id (plain DNS from a tenant's network).
    pub location: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// Creates a subject with no user, group or location: only policies for everyone apply.
    pub fn anyone() -> Subject<'a> {
        Subject::default()
    }

    /// Creates a subject for a user, with the groups the policy file gives them.
    pub fn user(user: &'a str) -> Subject<'a> {
        Subject {
            user: Some(user),
            ..Subject::default()
        }
    }
}

/// One tenant of a [`crate::PolicySet`].
#[derive(Debug)]
pub struct Tenant {
    pub(crate) index: u32,
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) file: PathBuf,
    pub(crate) block_private_relay: bool,
    pub(crate) additional_browsers: Vec<String>,
    pub(crate) trusted_apps: Vec<String>,
    pub(crate) bypassed_apps: Vec<String>,
    pub(crate) exception_domains: Vec<String>,
    pub(crate) exception_cidrs: Vec<IpNet>,
    pub(crate) locations: Vec<Location>,
    pub(crate) groups: Vec<Group>,
    pub(crate) user_groups: HashMap<String, Vec<String>>,
    pub(crate) policies: Vec<Policy>,
    pub(crate) feeds: Vec<TenantFeed>,
    pub(crate) uses_feed: Vec<bool>,
    pub(crate) stats: TenantStats,
    pub(crate) shared: Arc<Shared>,
}

/// Id of the policy a tenant gets when none of its policies targets everyone.
pub const TENANT_DEFAULT_POLICY: &str = "tenant-default";

impl Tenant {
    /// The tenant id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The policy file the tenant came from.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Whether iCloud Private Relay is blocked (its canary names get NXDOMAIN).
    pub fn block_private_relay(&self) -> bool {
        self.block_private_relay
    }

    /// Returns true when the resolver must answer NXDOMAIN for `name`: the application-DNS
    /// canary always, the Private Relay canaries when the tenant blocks Private Relay.
    pub fn canary_nxdomain(&self, name: &str) -> bool {
        match Canary::of(name) {
            Some(Canary::ApplicationDns) => true,
            Some(Canary::PrivateRelay) => self.block_private_relay,
            None => false,
        }
    }

    /// Bundle ids the tenant adds to the built-in browsers.
    pub fn additional_browsers(&self) -> &[String] {
        &self.additional_browsers
    }

    /// Bundle ids of trusted apps.
    pub fn trusted_apps(&self) -> &[String] {
        &self.trusted_apps
    }

    /// Bundle ids of bypassed apps (the agent keeps their queries away from swg).
    pub fn bypassed_apps(&self) -> &[String] {
        &self.bypassed_apps
    }

    /// The tenant's own exception domains, as written (the built-in ones are in
    /// [`DEFAULT_EXCEPTION_DOMAINS`]).
    pub fn exception_domains(&self) -> &[String] {
        &self.exception_domains
    }

    /// The tenant's IP exceptions.
    pub fn exception_cidrs(&self) -> &[IpNet] {
        &self.exception_cidrs
    }

    /// The tenant's policies, in file order (with the tenant default last when the file
    /// has no policy for everyone).
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The tenant's locations.
    pub fn locations(&self) -> &[Location] {
        &self.locations
    }

    /// The tenant's groups.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// What the tenant has loaded.
    pub fn stats(&self) -> &TenantStats {
        &self.stats
    }

    /// The class of an app: bypassed, trusted, browser (built-in or additional) or app by
    /// bundle id; without a bundle id the agent's hint, or unknown.
    pub fn app_class(&self, bundle_id: Option<&str>, class_hint: Option<AppClass>) -> AppClass {
        let Some(bundle_id) = bundle_id.filter(|id| !id.is_empty()) else {
            return match class_hint {
                Some(AppClass::BypassedApp) | None => AppClass::Unknown,
                Some(hint) => hint,
            };
        };
        let listed = |list: &[String]| list.iter().any(|id| id.eq_ignore_ascii_case(bundle_id));
        if listed(&self.bypassed_apps) {
            AppClass::BypassedApp
        } else if listed(&self.trusted_apps) {
            AppClass::TrustedApp
        } else if is_built_in_browser(bundle_id) || listed(&self.additional_browsers) {
            AppClass::Browser
        } else {
            AppClass::App
        }
    }

    pub(crate) fn class_of(&self, app: &App<'_>) -> AppClass {
        self.app_class(app.bundle_id, app.class_hint)
    }

    /// Returns true when `ip` falls in one of the tenant's IP exceptions: an answer with
    /// that address is returned unchanged, with no policy, and logged as `bypass-ip`.
    pub fn ip_exception(&self, ip: IpAddr) -> bool {
        self.ip_exception_network(ip).is_some()
    }

    pub(crate) fn ip_exception_network(&self, ip: IpAddr) -> Option<IpNet> {
        self.exception_cidrs
            .iter()
            .find(|network| network.contains(&ip))
            .copied()
    }

    /// Returns true when `name` is under one of the domain exceptions (the built-in ones
    /// or the tenant's): resolve upstream, no policy, no event.
    pub fn domain_exception(&self, name: &str) -> bool {
        let name = crate::name::normalize_query(name);
        self.find_domain_exception(&name, &mut None).is_some()
    }

    /// The groups of a subject: the caller's plus those the policy file gives the user.
    fn in_group(&self, subject: &Subject<'_>, group: &str) -> bool {
        subject.groups.iter().any(|g| g == group)
            || subject
                .user
                .and_then(|user| self.user_groups.get(user))
                .is_some_and(|groups| groups.iter().any(|g| g == group))
    }

    fn applies(&self, target: &Target, subject: &Subject<'_>) -> bool {
        match target {
            Target::Everyone => true,
            Target::Users(users) => subject
                .user
                .is_some_and(|user| users.iter().any(|u| u == user)),
            Target::Groups(groups) => groups.iter().any(|group| self.in_group(subject, group)),
            Target::Locations(locations) => subject
                .location
                .is_some_and(|location| locations.iter().any(|l| l == location)),
        }
    }

    /// Selects the policy for `subject`. The most specific target wins: user over group over
    /// location over everyone. Among equally specific ones, the first in the file wins.
    pub(crate) fn select_policy(
        &self,
        subject: &Subject<'_>,
        trace: &mut Option<&mut Trace>,
    ) -> (u32, &Policy) {
        let mut best: Option<(u8, usize)> = None;
        for (index, policy) in self.policies.iter().enumerate() {
            let rank = policy.target.rank();
            if best.is_none_or(|(best_rank, _)| rank > best_rank)
                && self.applies(&policy.target, subject)
            {
                best = Some((rank, index));
            }
        }
        // Compilation always adds a policy for everyone, so one applies.
        let index = best.map_or(self.policies.len() - 1, |(_, index)| index);

        if let Some(trace) = trace.as_deref_mut() {
            let selected = &self.policies[index].id;
            for (other, policy) in self.policies.iter().enumerate() {
                let target = policy.target.describe();
                let detail = if other == index {
                    format!("selected: targets {target}, the most specific target that applies")
                } else if self.applies(&policy.target, subject) {
                    format!(
                        "targets {target}, but policy {selected} is more specific or comes first"
                    )
                } else {
                    format!("targets {target}, which does not include this subject")
                };
                trace.push(other == index, format!("policy {}", policy.id), detail);
            }
        }
        (index as u32, &self.policies[index])
    }
}
