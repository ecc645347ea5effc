//! Decisions: a host name at DNS, a URL at the proxy, a whole DNS answer (CNAME chain and
//! addresses).
//!
//! Order of evaluation, first match wins: bypassed app, domain exception, block/allow
//! lists of the selected policy, security categories, content categories, tenant default
//! (allow). The policy's action is then mapped per app class (`map_dns`, `map_proxy`).
//!
//! The query path allocates only for the verdict's own strings: rule ids are kept as
//! references into the name and the index until a rule wins, and trace text is built only
//! when a trace is asked for.

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

/// Place of a decision: URL rules apply only at the proxy.
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

/// A matched rule, not yet turned into its id string.
#[derive(Debug, Clone, Copy)]
enum Rule<'a> {
    /// An entry of the policy's own block or allow list (`path` is empty for host entries).
    List {
        list: ListKind,
        entry: EntryKind,
        host: &'a str,
        path: &'a str,
    },
    /// An entry of a feed that the policy uses as a block or allow list.
    FeedList {
        list: ListKind,
        feed: u32,
        host: &'a str,
        path: &'a str,
    },
    /// An entry of a feed, counted for its category.
    Feed {
        feed: u32,
        host: &'a str,
        path: &'a str,
    },
    /// A network of the policy's own list.
    ListNetwork { list: ListKind, network: IpNet },
    /// An address of a feed that the policy uses as a list.
    FeedListAddress {
        list: ListKind,
        feed: u32,
        ip: IpAddr,
    },
    /// An address of a feed, counted for its category.
    FeedAddress { feed: u32, ip: IpAddr },
}

impl Rule<'_> {
    /// Renders the rule id: `policy/list/kind/entry` for list entries, `feed/entry` for
    /// feeds.
    fn render(&self, tenant: &Tenant, policy: &Policy) -> String {
        match *self {
            Rule::List {
                list,
                entry,
                host,
                path,
            } => concat(&[
                &policy.id,
                "/",
                list.as_str(),
                "/",
                entry.as_str(),
                "/",
                host,
                path,
            ]),
            Rule::FeedList {
                list,
                feed,
                host,
                path,
            } => concat(&[
                &policy.id,
                "/",
                list.as_str(),
                "/",
                tenant.feed_id(feed),
                "/",
                host,
                path,
            ]),
            Rule::Feed { feed, host, path } => concat(&[tenant.feed_id(feed), "/", host, path]),
            Rule::ListNetwork { list, network } => {
                format!("{}/{}/ip/{network}", policy.id, list.as_str())
            }
            Rule::FeedListAddress { list, feed, ip } => {
                format!(
                    "{}/{}/{}/{ip}",
                    policy.id,
                    list.as_str(),
                    tenant.feed_id(feed)
                )
            }
            Rule::FeedAddress { feed, ip } => format!("{}/{ip}", tenant.feed_id(feed)),
        }
    }
}

/// Concatenates with one allocation; cheaper than `format!` on the query path.
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// A block/allow list entry that matched, ranked by specificity: labels of the entry's
/// host (or prefix length of a network), then the length of its path plus one (host-level
/// entries have zero).
struct ListHit<'a> {
    specificity: (usize, usize),
    list: ListKind,
    rule: Rule<'a>,
}

/// A category entry that matched and that the policy gives an action.
struct CategoryHit<'a> {
    action: CategoryAction,
    category: Category,
    rule: Rule<'a>,
}

/// Collects the matches of one name or URL for one policy.
struct Matches<'a> {
    tenant: &'a Tenant,
    policy_index: u32,
    policy: &'a Policy,
    list: Option<ListHit<'a>>,
    security: Option<CategoryHit<'a>>,
    content: Option<CategoryHit<'a>>,
    /// A URL rule exists for the name but could not be checked (at DNS, with no URL).
    unchecked_url_rule: Option<Rule<'a>>,
}

impl<'a> Matches<'a> {
    fn new(tenant: &'a Tenant, policy_index: u32, policy: &'a Policy) -> Matches<'a> {
        Matches {
            tenant,
            policy_index,
            policy,
            list: None,
            security: None,
            content: None,
            unchecked_url_rule: None,
        }
    }

    fn render(&self, rule: &Rule<'_>) -> String {
        rule.render(self.tenant, self.policy)
    }

    /// Keeps the more specific list entry; at equal specificity allow wins.
    fn list_entry(&mut self, hit: ListHit<'a>, trace: &mut Option<&mut Trace>) {
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
            || self.render(&hit.rule),
            || {
                if better {
                    format!(
                        "{} entry matches (specificity {:?})",
                        hit.list.as_str(),
                        hit.specificity
                    )
                } else {
                    format!(
                        "{} entry matches, but a more specific or allowing entry is already found",
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
        rule: Rule<'a>,
        trace: &mut Option<&mut Trace>,
    ) {
        let setting = match category.group() {
            CategoryGroup::Security => &self.policy.security,
            CategoryGroup::Content => &self.policy.content,
        };
        let Some(action) = setting.action_for(category) else {
            note(
                trace,
                false,
                || self.render(&rule),
                || {
                    format!(
                        "in category {category}, which policy {} does not act on",
                        self.policy.id
                    )
                },
            );
            return;
        };
        note(
            trace,
            true,
            || self.render(&rule),
            || format!("in category {category}: {}", category_action(action)),
        );
        let slot = match category.group() {
            CategoryGroup::Security => &mut self.security,
            CategoryGroup::Content => &mut self.content,
        };
        if slot.as_ref().is_none_or(|best| action > best.action) {
            *slot = Some(CategoryHit {
                action,
                category,
                rule,
            });
        }
    }

    /// Considers one fact of the index for a name suffix; `url` carries the request's
    /// lower-case path and path-plus-query at the proxy.
    fn fact(
        &mut self,
        suffix: &'a str,
        is_whole_name: bool,
        fact: Fact,
        url: Option<(&str, &str)>,
        trace: &mut Option<&mut Trace>,
    ) {
        let tenant = self.tenant;
        let Some(source) = tenant.shared.sources.get(fact.source as usize) else {
            return;
        };
        match *source {
            Source::DefaultException | Source::Exception { .. } => {}
            Source::List {
                tenant: owner,
                policy,
                list,
                entry,
            } => {
                if owner != tenant.index || policy != self.policy_index {
                    return;
                }
                let mut rule = Rule::List {
                    list,
                    entry,
                    host: suffix,
                    path: "",
                };
                let specificity = match entry {
                    EntryKind::Host if !is_whole_name => {
                        note(
                            trace,
                            false,
                            || self.render(&rule),
                            || "exact host entry; the name is a subdomain of it".into(),
                        );
                        return;
                    }
                    EntryKind::Url => {
                        let Some(path) = self.url_rule(fact, rule, url, trace) else {
                            return;
                        };
                        rule = Rule::List {
                            list,
                            entry,
                            host: suffix,
                            path,
                        };
                        (label_count(suffix), path.len() + 1)
                    }
                    _ => (label_count(suffix), 0),
                };
                self.list_entry(
                    ListHit {
                        specificity,
                        list,
                        rule,
                    },
                    trace,
                );
            }
            Source::Feed { feed, category } => {
                if !tenant
                    .uses_feed
                    .get(feed as usize)
                    .copied()
                    .unwrap_or(false)
                {
                    return;
                }
                let path = if fact.extra == Fact::NO_EXTRA {
                    ""
                } else {
                    let rule = Rule::Feed {
                        feed,
                        host: suffix,
                        path: "",
                    };
                    match self.url_rule(fact, rule, url, trace) {
                        Some(path) => path,
                        None => return,
                    }
                };
                let specificity = (
                    label_count(suffix),
                    if path.is_empty() { 0 } else { path.len() + 1 },
                );
                if let Some(list) = self.feed_list(feed) {
                    let rule = Rule::FeedList {
                        list,
                        feed,
                        host: suffix,
                        path,
                    };
                    self.list_entry(
                        ListHit {
                            specificity,
                            list,
                            rule,
                        },
                        trace,
                    );
                }
                if let Some(category) = category {
                    let rule = Rule::Feed {
                        feed,
                        host: suffix,
                        path,
                    };
                    self.category_entry(category, rule, trace);
                }
            }
        }
    }

    /// Returns the list a feed supplies in the selected policy, if any (allow first).
    fn feed_list(&self, feed: u32) -> Option<ListKind> {
        if self.policy.allow_feeds.contains(&feed) {
            Some(ListKind::Allow)
        } else if self.policy.block_feeds.contains(&feed) {
            Some(ListKind::Block)
        } else {
            None
        }
    }

    /// Checks a URL-rule fact; returns the rule's path prefix when it matches. Without a
    /// URL (at DNS) URL rules never match.
    fn url_rule(
        &mut self,
        fact: Fact,
        host_rule: Rule<'a>,
        url: Option<(&str, &str)>,
        trace: &mut Option<&mut Trace>,
    ) -> Option<&'a str> {
        let tenant: &'a Tenant = self.tenant;
        let rule = tenant.shared.url_rules.get(fact.extra as usize)?;
        let rendered = || concat(&[&self.render(&host_rule), &rule.path]);
        let Some((path, path_and_query)) = url else {
            note(trace, false, rendered, || {
                "URL rule; it applies at the proxy only".into()
            });
            self.unchecked_url_rule.get_or_insert(host_rule);
            return None;
        };
        if rule.matches(path, path_and_query) {
            note(trace, true, rendered, || "URL prefix matches".into());
            Some(&rule.path)
        } else {
            note(trace, false, rendered, || {
                "URL prefix does not match the path".into()
            });
            None
        }
    }

    /// Turns the matches into the policy's decision, in precedence order.
    fn outcome(self, name: &str, trace: &mut Option<&mut Trace>) -> Outcome {
        let policy_id = Some(self.policy.id.clone());
        if let Some(hit) = &self.list {
            let rule_id = self.render(&hit.rule);
            let (action, verb) = match hit.list {
                ListKind::Allow => (Action::Allow, "allowed"),
                ListKind::Block => (Action::Block, "blocked"),
            };
            note(
                trace,
                true,
                || rule_id.clone(),
                || format!("decides: the block/allow list overrides categories ({verb})"),
            );
            // A URL entry covers the paths under its prefix, not the whole host.
            let subject = match hit.rule {
                Rule::List { path, .. } if !path.is_empty() => concat(&[name, path]),
                _ => name.to_owned(),
            };
            return Outcome {
                action,
                reason: concat(&[
                    &subject,
                    " is ",
                    verb,
                    " by the entry ",
                    &rule_id,
                    " of policy ",
                    &self.policy.id,
                ]),
                rule_id: Some(rule_id),
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

        if let Some(hit) = self.security.as_ref().or(self.content.as_ref()) {
            let rule_id = self.render(&hit.rule);
            let action = match hit.action {
                CategoryAction::Block => Action::Block,
                CategoryAction::Warn => Action::Warn,
            };
            note(
                trace,
                true,
                || rule_id.clone(),
                || format!("decides: category {} ({action})", hit.category),
            );
            return Outcome {
                action,
                reason: concat(&[
                    name,
                    " is in the ",
                    hit.category.group().as_str(),
                    " category ",
                    hit.category.as_str(),
                    " (",
                    &rule_id,
                    "), which policy ",
                    &self.policy.id,
                    " sets to ",
                    action.as_str(),
                ]),
                rule_id: Some(rule_id),
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

        if let Some(rule) = &self.unchecked_url_rule {
            // Only the proxy sees the path, so a name with URL rules is inspected there.
            let rule_id = self.render(rule);
            note(
                trace,
                true,
                || rule_id.clone(),
                || "decides: URL rules exist for the name, so the proxy checks the full URL".into(),
            );
            return Outcome {
                action: Action::Inspect,
                reason: concat(&[
                    name,
                    " has URL rules (",
                    &rule_id,
                    ") in policy ",
                    &self.policy.id,
                    URL_CHECK_SUFFIX,
                ]),
                rule_id: Some(rule_id),
                category: None,
                policy_id,
                exception: None,
            };
        }

        note(trace, true, || "tenant default".into(), || "allow".into());
        Outcome {
            action: Action::Allow,
            rule_id: None,
            category: None,
            reason: concat(&[
                "no rule of policy ",
                &self.policy.id,
                " matches ",
                name,
                "; the default is allow",
            ]),
            policy_id,
            exception: None,
        }
    }
}

fn category_action(action: CategoryAction) -> &'static str {
    match action {
        CategoryAction::Block => "block",
        CategoryAction::Warn => "warn",
    }
}

/// Returns the verdict for a bypassed app, if the class is one.
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

/// The end of the reason of a name with URL rules, which DNS sends to the proxy.
const URL_CHECK_SUFFIX: &str = "; the proxy checks the full URL";

/// Maps the policy's action to the DNS action of an app class. Browsers are inspected for
/// every allowed name; other apps only where the proxy must check the full URL, and trusted
/// apps never. Apps render no warn page, so warn means block for them.
fn map_dns(mut outcome: Outcome, class: AppClass, trace: &mut Option<&mut Trace>) -> Verdict {
    if outcome.action == Action::Inspect && class == AppClass::TrustedApp {
        // The name is not sent to the proxy, so its URL rules are never checked.
        if let Some(stem) = outcome.reason.strip_suffix(URL_CHECK_SUFFIX) {
            outcome.reason = concat(&[
                stem,
                "; trusted apps are not sent to the proxy, so the URL rules are not checked",
            ]);
        }
    }
    let action = match (outcome.action, class) {
        (Action::Bypass, _) => Action::Bypass,
        (Action::Allow, AppClass::Browser) => Action::Inspect,
        (Action::Allow, _) => Action::Allow,
        (Action::Inspect, AppClass::TrustedApp) => Action::Allow,
        (Action::Inspect, _) => Action::Inspect,
        (Action::Warn, AppClass::Browser) => Action::Warn,
        (Action::Warn, _) => Action::Block,
        (Action::Block, _) => Action::Block,
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
    /// URL rules never apply here. The returned action is mapped per app class. Browsers
    /// get `inspect` for allowed names and keep `warn` and `block`, which the resolver also
    /// steers to the proxy. Apps get `allow`, `inspect` for `warn` (the proxy then blocks),
    /// or `block`. Trusted apps get `allow` or `block`, and bypassed apps `bypass`.
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
        let lower = crate::request_target::canonical_target(path_and_query);
        let path = lower
            .split_once('?')
            .map_or(lower.as_str(), |(path, _)| path);
        let outcome = self.judge_host(
            strip_port(host),
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

    fn is_my_exception(&self, fact: &Fact) -> bool {
        match self.shared.sources.get(fact.source as usize) {
            Some(Source::DefaultException) => true,
            Some(Source::Exception { tenant }) => *tenant == self.index,
            _ => false,
        }
    }

    /// Finds the domain exception covering the normalized `name`, if any.
    pub(crate) fn find_domain_exception(
        &self,
        name: &str,
        trace: &mut Option<&mut Trace>,
    ) -> Option<String> {
        let mut found = None;
        self.shared.names.for_each_suffix(name, |suffix, facts| {
            if facts.iter().any(|fact| self.is_my_exception(fact)) {
                found = Some(suffix.to_string());
                return false;
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
        let url = if stage == Stage::Proxy { url } else { None };

        // Exceptions come first. Tracing walks them separately so the explanation lists
        // them first; the query path finds them in the same walk as everything else.
        if trace.is_some() {
            if let Some(suffix) = self.find_domain_exception(&name, trace) {
                return exception_outcome(&name, &suffix);
            }
        }

        let (policy_index, policy) = self.select_policy(subject, trace);
        let mut matches = Matches::new(self, policy_index, policy);
        let mut exception = None;
        self.shared.names.for_each_suffix(&name, |suffix, facts| {
            if facts.iter().any(|fact| self.is_my_exception(fact)) {
                exception = Some(suffix);
                return false;
            }
            let whole = suffix.len() == name.len();
            for fact in facts {
                matches.fact(suffix, whole, *fact, url, trace);
            }
            true
        });
        if let Some(suffix) = exception {
            return exception_outcome(&name, suffix);
        }
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
        let text = ip.to_string();
        if stage == Stage::Proxy {
            if let Some(facts) = self.shared.names.facts_of_name(&text) {
                for fact in facts {
                    matches.fact(&text, true, fact, url, trace);
                }
            }
        }
        matches.outcome(&text, trace)
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

    fn ip_matches<'a>(
        &'a self,
        ip: IpAddr,
        matches: &mut Matches<'a>,
        trace: &mut Option<&mut Trace>,
    ) {
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
                        rule: Rule::ListNetwork {
                            list: *list,
                            network,
                        },
                    };
                    matches.list_entry(hit, trace);
                }
                Some(Source::Feed { feed, category })
                    if self.uses_feed.get(*feed as usize).copied().unwrap_or(false) =>
                {
                    if let Some(list) = matches.feed_list(*feed) {
                        let hit = ListHit {
                            specificity: (usize::from(network.prefix_len()), 0),
                            list,
                            rule: Rule::FeedListAddress {
                                list,
                                feed: *feed,
                                ip,
                            },
                        };
                        matches.list_entry(hit, trace);
                    }
                    if let Some(category) = category {
                        matches.category_entry(
                            *category,
                            Rule::FeedAddress { feed: *feed, ip },
                            trace,
                        );
                    }
                }
                _ => {}
            }
        });
    }
}

/// Removes a `:port` suffix from a Host header value (`example.com:8443`,
/// `[2001:db8::1]:443`); a bare IPv6 address is returned unchanged.
fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port))
            if !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit())
                && (!name.contains(':') || name.ends_with(']')) =>
        {
            name
        }
        _ => host,
    }
}

fn exception_outcome(name: &str, suffix: &str) -> Outcome {
    Outcome {
        action: Action::Bypass,
        rule_id: Some(concat(&["exception/", suffix])),
        category: None,
        policy_id: None,
        reason: concat(&[name, " is under the exception domain ", suffix]),
        exception: Some(ExceptionKind::Domain),
    }
}
