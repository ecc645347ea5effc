//! Decisions: a host name at DNS, a URL at the proxy, a whole DNS answer (CNAME chain and
//! addresses).
//!
//! Order of evaluation, first match wins: bypassed app, domain exception, block/allow
//! lists of the selected policy, security categories, content categories, tenant default
//! (allow). The policy's action is then mapped per app class (`map_dns`, `map_proxy`).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::app::{App, AppClass};
use crate::category::{Category, CategoryGroup};
use crate::index::Fact;
use crate::model::{CategoryAction, EntryKind, ListKind, Policy, Source};
use crate::name::{label_count, normalize_query};
use crate::tenant::{Subject, Tenant};
use crate::verdict::{note, Action, ExceptionKind, Trace, Verdict};

/// Where a decision is made; URL rules apply only at the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Dns,
    Proxy,
}

/// The policy's own decision, before the app-class mapping.
#[derive(Debug, Clone)]
struct Outcome {
    action: Action,
    rule_id: Option<String>,
    category: Option<Category>,
    policy_id: Option<Arc<str>>,
    reason: String,
    exception: Option<ExceptionKind>,
}

/// A block/allow list entry that matched, ranked by specificity: labels of the entry's
/// host, then the length of its path (host-level entries have none).
struct ListHit {
    specificity: (usize, usize),
    list: ListKind,
    rule_id: String,
}

/// A category entry that matched and that the policy gives an action.
struct CategoryHit {
    action: CategoryAction,
    category: Category,
    rule_id: String,
}

/// Collects the matches of one name or URL for one policy.
struct Matches<'t> {
    tenant: &'t Tenant,
    policy_index: u32,
    policy: &'t Policy,
    list: Option<ListHit>,
    security: Option<CategoryHit>,
    content: Option<CategoryHit>,
}

impl<'t> Matches<'t> {
    fn new(tenant: &'t Tenant, policy_index: u32, policy: &'t Policy) -> Matches<'t> {
        Matches {
            tenant,
            policy_index,
            policy,
            list: None,
            security: None,
            content: None,
        }
    }

    /// Keeps the more specific list entry; at equal specificity allow wins.
    fn list_entry(&mut self, hit: ListHit, trace: &mut Option<&mut Trace>) {
        let better = match &self.list {
            None => true,
            Some(best) => {
                hit.specificity > best.specificity
                    || (hit.specificity == best.specificity
                        && hit.list == ListKind::Allow
                        && best.list == ListKind::Block)
            }
        };
        note(
            trace,
            true,
            || hit.rule_id.clone(),
            || {
                if better {
                    format!(
                        "{} entry matches (specificity {:?})",
                        hit.list.as_str(),
                        hit.specificity
                    )
                } else {
                    format!(
                        "{} entry matches, but a more specific or allowing entry already decided",
                        hit.list.as_str()
                    )
                }
            },
        );
        if better {
            self.list = Some(hit);
        }
    }

    /// Keeps the worst category action per group; at equal action the first one found.
    fn category_entry(
        &mut self,
        category: Category,
        rule_id: impl FnOnce() -> String,
        trace: &mut Option<&mut Trace>,
    ) {
        let setting = match category.group() {
            CategoryGroup::Security => &self.policy.security,
            CategoryGroup::Content => &self.policy.content,
        };
        let Some(action) = setting.action_for(category) else {
            note(trace, false, rule_id, || {
                format!(
                    "in category {category}, which policy {} does not act on",
                    self.policy.id
                )
            });
            return;
        };
        let rule_id = rule_id();
        note(
            trace,
            true,
            || rule_id.clone(),
            || {
                format!(
                    "in category {category}: {}",
                    if action == CategoryAction::Block {
                        "block"
                    } else {
                        "warn"
                    }
                )
            },
        );
        let slot = match category.group() {
            CategoryGroup::Security => &mut self.security,
            CategoryGroup::Content => &mut self.content,
        };
        if slot.as_ref().is_none_or(|best| action > best.action) {
            *slot = Some(CategoryHit {
                action,
                category,
                rule_id,
            });
        }
    }

    /// Considers one fact of the index for a name suffix; `url` carries the request's
    /// lower-case path and path-plus-query at the proxy.
    #[allow(clippy::too_many_arguments)]
    fn fact(
        &mut self,
        suffix: &str,
        is_whole_name: bool,
        fact: Fact,
        stage: Stage,
        url: Option<(&str, &str)>,
        trace: &mut Option<&mut Trace>,
    ) {
        let tenant = self.tenant;
        let Some(source) = tenant.shared.sources.get(fact.source as usize) else {
            return;
        };
        match source {
            Source::DefaultException | Source::Exception { .. } => {}
            Source::List {
                tenant: owner,
                policy,
                list,
                entry,
            } => {
                if *owner != tenant.index || *policy != self.policy_index {
                    return;
                }
                let prefix = format!(
                    "{}/{}/{}/{}",
                    self.policy.id,
                    list.as_str(),
                    entry.as_str(),
                    suffix
                );
                match entry {
                    EntryKind::Host if !is_whole_name => {
                        note(
                            trace,
                            false,
                            || prefix,
                            || "exact host entry; the name is a subdomain of it".into(),
                        );
                    }
                    EntryKind::Url => {
                        if let Some((rule_id, path_len)) =
                            self.url_rule(fact, prefix, stage, url, trace)
                        {
                            let hit = ListHit {
                                specificity: (label_count(suffix), path_len + 1),
                                list: *list,
                                rule_id,
                            };
                            self.list_entry(hit, trace);
                        }
                    }
                    _ => {
                        let hit = ListHit {
                            specificity: (label_count(suffix), 0),
                            list: *list,
                            rule_id: prefix,
                        };
                        self.list_entry(hit, trace);
                    }
                }
            }
            Source::Feed { feed, category } => {
                if !tenant
                    .uses_feed
                    .get(*feed as usize)
                    .copied()
                    .unwrap_or(false)
                {
                    return;
                }
                let feed_id = tenant.feed_id(*feed);
                let listed = self.feed_list(*feed);
                if fact.extra == Fact::NO_EXTRA {
                    if let Some(list) = listed {
                        let hit = ListHit {
                            specificity: (label_count(suffix), 0),
                            list,
                            rule_id: format!(
                                "{}/{}/{feed_id}/{suffix}",
                                self.policy.id,
                                list.as_str()
                            ),
                        };
                        self.list_entry(hit, trace);
                    }
                    if let Some(category) = category {
                        self.category_entry(*category, || format!("{feed_id}/{suffix}"), trace);
                    }
                } else if let Some((rule_id, path_len)) =
                    self.url_rule(fact, format!("{feed_id}/{suffix}"), stage, url, trace)
                {
                    if let Some(list) = listed {
                        let hit = ListHit {
                            specificity: (label_count(suffix), path_len + 1),
                            list,
                            rule_id: format!("{}/{}/{rule_id}", self.policy.id, list.as_str()),
                        };
                        self.list_entry(hit, trace);
                    }
                    if let Some(category) = category {
                        self.category_entry(*category, || rule_id, trace);
                    }
                }
            }
        }
    }

    /// The list a feed feeds in the selected policy, if any (allow is checked first).
    fn feed_list(&self, feed: u32) -> Option<ListKind> {
        if self.policy.allow_feeds.contains(&feed) {
            Some(ListKind::Allow)
        } else if self.policy.block_feeds.contains(&feed) {
            Some(ListKind::Block)
        } else {
            None
        }
    }

    /// Checks a URL-rule fact; returns the rule id and the length of its path prefix when
    /// it matches. At DNS URL rules never match.
    fn url_rule(
        &self,
        fact: Fact,
        prefix: String,
        stage: Stage,
        url: Option<(&str, &str)>,
        trace: &mut Option<&mut Trace>,
    ) -> Option<(String, usize)> {
        let rule = self.tenant.shared.url_rules.get(fact.extra as usize)?;
        let rule_id = format!("{prefix}{}", rule.path);
        let (path, path_and_query) = match (stage, url) {
            (Stage::Proxy, Some(url)) => url,
            _ => {
                note(
                    trace,
                    false,
                    || rule_id,
                    || "URL rule; it applies at the proxy only".into(),
                );
                return None;
            }
        };
        if rule.matches(path, path_and_query) {
            note(
                trace,
                true,
                || rule_id.clone(),
                || "URL prefix matches".into(),
            );
            Some((rule_id, rule.path.len()))
        } else {
            note(
                trace,
                false,
                || rule_id,
                || "URL prefix does not match the path".into(),
            );
            None
        }
    }

    /// Turns the matches into the policy's decision, in precedence order.
    fn outcome(self, name: &str, trace: &mut Option<&mut Trace>) -> Outcome {
        let policy_id = Some(self.policy.id.clone());
        if let Some(hit) = self.list {
            let (action, verb) = match hit.list {
                ListKind::Allow => (Action::Allow, "allowed"),
                ListKind::Block => (Action::Block, "blocked"),
            };
            note(
                trace,
                true,
                || hit.rule_id.clone(),
                || format!("decides: the block/allow list overrides categories ({verb})"),
            );
            return Outcome {
                action,
                reason: format!(
                    "{name} is {verb} by the entry {} of policy {}",
                    hit.rule_id, self.policy.id
                ),
                rule_id: Some(hit.rule_id),
                category: None,
                policy_id,
                exception: None,
            };
        }
        note(
            trace,
            false,
            || "block/allow lists".into(),
            || format!("no entry of policy {} matches", self.policy.id),
        );

        if let Some(hit) = self.security.or(self.content) {
            let action = match hit.action {
                CategoryAction::Block => Action::Block,
                CategoryAction::Warn => Action::Warn,
            };
            note(
                trace,
                true,
                || hit.rule_id.clone(),
                || format!("decides: category {} ({action})", hit.category),
            );
            return Outcome {
                action,
                reason: format!(
                    "{name} is in the {} category {} ({}), set to {action} by policy {}",
                    hit.category.group().as_str(),
                    hit.category,
                    hit.rule_id,
                    self.policy.id
                ),
                rule_id: Some(hit.rule_id),
                category: Some(hit.category),
                policy_id,
                exception: None,
            };
        }
        note(
            trace,
            false,
            || "categories".into(),
            || "no category the policy acts on matches".into(),
        );

        note(trace, true, || "tenant default".into(), || "allow".into());
        Outcome {
            action: Action::Allow,
            rule_id: None,
            category: None,
            policy_id,
            reason: format!(
                "no rule of policy {} matches {name}; the default is allow",
                self.policy.id
            ),
            exception: None,
        }
    }
}

/// The verdict for a bypassed app, if the class is one.
fn bypassed_app(class: AppClass, trace: &mut Option<&mut Trace>) -> Option<Verdict> {
    if class != AppClass::BypassedApp {
        return None;
    }
    note(
        trace,
        true,
        || "bypassed apps".into(),
        || "the app is bypassed: no policy, not logged".into(),
    );
    Some(Verdict {
        action: Action::Bypass,
        policy_action: Action::Bypass,
        app_class: class,
        rule_id: None,
        category: None,
        policy_id: None,
        reason: "the app is a bypassed app".into(),
        exception: Some(ExceptionKind::BypassedApp),
    })
}

fn worse(current: Option<Outcome>, candidate: Outcome) -> Outcome {
    match current {
        Some(current) if current.action.severity() >= candidate.action.severity() => current,
        _ => candidate,
    }
}

/// Maps the policy's action to the DNS action of an app class.
fn map_dns(outcome: Outcome, class: AppClass, trace: &mut Option<&mut Trace>) -> Verdict {
    let action = match (outcome.action, class) {
        (Action::Bypass, _) => Action::Bypass,
        (Action::Allow, AppClass::Browser) => Action::Inspect,
        (Action::Allow, _) => Action::Allow,
        (Action::Warn, AppClass::Browser) => Action::Warn,
        (Action::Warn, AppClass::TrustedApp) => Action::Block,
        (Action::Warn, _) => Action::Inspect,
        (Action::Block | Action::Inspect, _) => Action::Block,
    };
    finish(outcome, class, action, "DNS", trace)
}

/// Maps the policy's action to the proxy action of an app class: apps cannot show a warn
/// page, so warn means block for them.
fn map_proxy(outcome: Outcome, class: AppClass, trace: &mut Option<&mut Trace>) -> Verdict {
    let action = match (outcome.action, class) {
        (Action::Warn, AppClass::App | AppClass::TrustedApp) => Action::Block,
        (Action::Inspect, _) => Action::Allow,
        (action, _) => action,
    };
    finish(outcome, class, action, "proxy", trace)
}

fn finish(
    outcome: Outcome,
    class: AppClass,
    action: Action,
    stage: &str,
    trace: &mut Option<&mut Trace>,
) -> Verdict {
    note(
        trace,
        true,
        || format!("app class {class}"),
        || {
            format!(
                "policy action {} becomes {action} at the {stage}",
                outcome.action
            )
        },
    );
    Verdict {
        action,
        policy_action: outcome.action,
        app_class: class,
        rule_id: outcome.rule_id,
        category: outcome.category,
        policy_id: outcome.policy_id,
        reason: outcome.reason,
        exception: outcome.exception,
    }
}

impl Tenant {
    /// Decides a DNS query for `name` (any case, trailing dot or not, Unicode or A-labels).
    ///
    /// URL rules never apply here. The returned action is mapped per app class: browsers
    /// get `inspect` for allowed names (and keep `warn` and `block`, which the resolver
    /// also steers to the proxy); apps get `allow`, `inspect` for `warn` (the proxy then
    /// blocks), or `block`; trusted apps get `allow` or `block`; bypassed apps `bypass`.
    pub fn decide_dns(&self, name: &str, subject: &Subject<'_>, app: &App<'_>) -> Verdict {
        self.decide_dns_traced(name, subject, app, None)
    }

    /// [`Tenant::decide_dns`], recording every rule consulted into `trace` when given.
    pub fn decide_dns_traced(
        &self,
        name: &str,
        subject: &Subject<'_>,
        app: &App<'_>,
        trace: Option<&mut Trace>,
    ) -> Verdict {
        let mut trace = trace;
        let class = self.class_of(app);
        if let Some(verdict) = bypassed_app(class, &mut trace) {
            return verdict;
        }
        let outcome = self.judge_host(name, subject, Stage::Dns, None, &mut trace);
        map_dns(outcome, class, &mut trace)
    }

    /// Decides a whole DNS answer: every name of the CNAME chain (`names[0]` is the name
    /// asked) and every answer address; the worst verdict wins.
    ///
    /// A domain exception on the asked name, or an answer address inside an IP exception,
    /// bypasses policy for the whole answer (the latter is logged as `bypass-ip`).
    pub fn decide_dns_answer(
        &self,
        names: &[&str],
        addresses: &[IpAddr],
        subject: &Subject<'_>,
        app: &App<'_>,
    ) -> Verdict {
        self.decide_dns_answer_traced(names, addresses, subject, app, None)
    }

    /// [`Tenant::decide_dns_answer`] with an optional trace.
    pub fn decide_dns_answer_traced(
        &self,
        names: &[&str],
        addresses: &[IpAddr],
        subject: &Subject<'_>,
        app: &App<'_>,
        trace: Option<&mut Trace>,
    ) -> Verdict {
        let mut trace = trace;
        let class = self.class_of(app);
        if let Some(verdict) = bypassed_app(class, &mut trace) {
            return verdict;
        }

        let mut worst: Option<Outcome> = None;
        for (position, name) in names.iter().enumerate() {
            let outcome = self.judge_host(name, subject, Stage::Dns, None, &mut trace);
            if outcome.exception == Some(ExceptionKind::Domain) {
                if position == 0 {
                    return map_dns(outcome, class, &mut trace);
                }
                // An exception deeper in the chain neither allows nor blocks the chain.
                continue;
            }
            worst = Some(worse(worst, outcome));
        }
        for address in addresses {
            if let Some(network) = self.ip_exception_network(*address) {
                note(
                    &mut trace,
                    true,
                    || format!("exception/{network}"),
                    || format!("answer address {address} is in an IP exception"),
                );
                let outcome = Outcome {
                    action: Action::Bypass,
                    rule_id: Some(format!("exception/{network}")),
                    category: None,
                    policy_id: None,
                    reason: format!("answer address {address} is in the IP exception {network}"),
                    exception: Some(ExceptionKind::Ip),
                };
                return map_dns(outcome, class, &mut trace);
            }
        }
        for address in addresses {
            let outcome = self.judge_ip(*address, subject, &mut trace);
            worst = Some(worse(worst, outcome));
        }

        let outcome = match worst {
            Some(outcome) => outcome,
            None => {
                let (policy_index, policy) = self.select_policy(subject, &mut trace);
                Matches::new(self, policy_index, policy).outcome("the answer", &mut trace)
            }
        };
        map_dns(outcome, class, &mut trace)
    }

    /// Decides a request at the proxy from its URL (scheme, host, path, query).
    pub fn decide_url(&self, url: &url::Url, subject: &Subject<'_>, app: &App<'_>) -> Verdict {
        self.decide_url_traced(url, subject, app, None)
    }

    /// [`Tenant::decide_url`] with an optional trace.
    pub fn decide_url_traced(
        &self,
        url: &url::Url,
        subject: &Subject<'_>,
        app: &App<'_>,
        trace: Option<&mut Trace>,
    ) -> Verdict {
        let host = match url.host() {
            Some(url::Host::Domain(domain)) => domain.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => String::new(),
        };
        let path_and_query = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        };
        self.decide_request_traced(&host, &path_and_query, subject, app, trace)
    }

    /// Decides a request at the proxy from its host and its path with the query (the
    /// request target of origin-form HTTP), without building a URL.
    pub fn decide_request(
        &self,
        host: &str,
        path_and_query: &str,
        subject: &Subject<'_>,
        app: &App<'_>,
    ) -> Verdict {
        self.decide_request_traced(host, path_and_query, subject, app, None)
    }

    /// [`Tenant::decide_request`] with an optional trace.
    pub fn decide_request_traced(
        &self,
        host: &str,
        path_and_query: &str,
        subject: &Subject<'_>,
        app: &App<'_>,
        trace: Option<&mut Trace>,
    ) -> Verdict {
        let mut trace = trace;
        let class = self.class_of(app);
        if let Some(verdict) = bypassed_app(class, &mut trace) {
            return verdict;
        }
        let lower = path_and_query.to_lowercase();
        let path = lower
            .split_once('?')
            .map_or(lower.as_str(), |(path, _)| path);
        let outcome = self.judge_host(
            host,
            subject,
            Stage::Proxy,
            Some((path, &lower)),
            &mut trace,
        );
        map_proxy(outcome, class, &mut trace)
    }

    pub(crate) fn feed_id(&self, feed: u32) -> &str {
        self.feeds
            .iter()
            .find(|f| f.feed == feed)
            .map_or("feed", |f| f.id.as_str())
    }

    /// Finds the domain exception covering the normalized `name`, if any.
    pub(crate) fn find_domain_exception(
        &self,
        name: &str,
        trace: &mut Option<&mut Trace>,
    ) -> Option<String> {
        let mut found = None;
        self.shared.names.for_each_suffix(name, |suffix, facts| {
            for fact in facts {
                let mine = match self.shared.sources.get(fact.source as usize) {
                    Some(Source::DefaultException) => true,
                    Some(Source::Exception { tenant }) => *tenant == self.index,
                    _ => false,
                };
                if mine {
                    found = Some(suffix.to_string());
                    return false;
                }
            }
            true
        });
        match &found {
            Some(suffix) => note(
                trace,
                true,
                || format!("exception/{suffix}"),
                || format!("{name} is under the exception domain {suffix}"),
            ),
            None => note(
                trace,
                false,
                || "domain exceptions".into(),
                || format!("{name} is under no exception domain"),
            ),
        }
        found
    }

    /// The policy's decision for a host name (or IP literal), with URL rules at the proxy.
    fn judge_host(
        &self,
        host: &str,
        subject: &Subject<'_>,
        stage: Stage,
        url: Option<(&str, &str)>,
        trace: &mut Option<&mut Trace>,
    ) -> Outcome {
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.judge_ip_host(ip, subject, stage, url, trace);
        }
        let name = normalize_query(host);

        if let Some(suffix) = self.find_domain_exception(&name, trace) {
            return Outcome {
                action: Action::Bypass,
                rule_id: Some(format!("exception/{suffix}")),
                category: None,
                policy_id: None,
                reason: format!("{name} is under the exception domain {suffix}"),
                exception: Some(ExceptionKind::Domain),
            };
        }

        let (policy_index, policy) = self.select_policy(subject, trace);
        let mut matches = Matches::new(self, policy_index, policy);
        self.shared.names.for_each_suffix(&name, |suffix, facts| {
            let whole = suffix.len() == name.len();
            for fact in facts {
                matches.fact(suffix, whole, *fact, stage, url, trace);
            }
            true
        });
        matches.outcome(&name, trace)
    }

    /// The policy's decision for an IP literal host: IP entries, plus URL rules written
    /// for that address.
    fn judge_ip_host(
        &self,
        ip: IpAddr,
        subject: &Subject<'_>,
        stage: Stage,
        url: Option<(&str, &str)>,
        trace: &mut Option<&mut Trace>,
    ) -> Outcome {
        let (policy_index, policy) = self.select_policy(subject, trace);
        let mut matches = Matches::new(self, policy_index, policy);
        self.ip_matches(ip, &mut matches, trace);
        if stage == Stage::Proxy {
            let text = ip.to_string();
            if let Some(facts) = self.shared.names.facts_of_name(&text) {
                for fact in facts {
                    matches.fact(&text, true, fact, stage, url, trace);
                }
            }
        }
        matches.outcome(&ip.to_string(), trace)
    }

    /// The policy's decision for an answer address.
    fn judge_ip(
        &self,
        ip: IpAddr,
        subject: &Subject<'_>,
        trace: &mut Option<&mut Trace>,
    ) -> Outcome {
        let (policy_index, policy) = self.select_policy(subject, trace);
        let mut matches = Matches::new(self, policy_index, policy);
        self.ip_matches(ip, &mut matches, trace);
        matches.outcome(&ip.to_string(), trace)
    }

    fn ip_matches(&self, ip: IpAddr, matches: &mut Matches<'_>, trace: &mut Option<&mut Trace>) {
        self.shared.ips.for_each_match(ip, |network: IpNet, fact| {
            match self.shared.sources.get(fact.source as usize) {
                Some(Source::List {
                    tenant,
                    policy,
                    list,
                    ..
                }) if *tenant == self.index && *policy == matches.policy_index => {
                    let hit = ListHit {
                        specificity: (usize::from(network.prefix_len()), 0),
                        list: *list,
                        rule_id: format!("{}/{}/ip/{network}", matches.policy.id, list.as_str()),
                    };
                    matches.list_entry(hit, trace);
                }
                Some(Source::Feed { feed, category })
                    if self.uses_feed.get(*feed as usize).copied().unwrap_or(false) =>
                {
                    let feed_id = self.feed_id(*feed);
                    if let Some(list) = matches.feed_list(*feed) {
                        let hit = ListHit {
                            specificity: (usize::from(network.prefix_len()), 0),
                            list,
                            rule_id: format!(
                                "{}/{}/{feed_id}/{ip}",
                                matches.policy.id,
                                list.as_str()
                            ),
                        };
                        matches.list_entry(hit, trace);
                    }
                    if let Some(category) = category {
                        matches.category_entry(*category, || format!("{feed_id}/{ip}"), trace);
                    }
                }
                _ => {}
            }
        });
    }
}
