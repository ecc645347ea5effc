//! Verdicts and the explanation trace that decisions can produce.

use std::fmt;
use std::sync::Arc;

use crate::app::AppClass;
use crate::category::Category;

/// The action taken on a query or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Answer or forward normally.
    Allow,
    /// Steer to the inspection proxy (DNS only).
    Inspect,
    /// Show a warn page with "continue" (browsers at the proxy); the resolver steers it.
    Warn,
    /// Block: a block page at the proxy, `0.0.0.0` (or steering, for browsers) at DNS.
    Block,
    /// No policy: resolve or forward unchanged.
    Bypass,
}

impl Action {
    /// Stable lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Inspect => "inspect",
            Action::Warn => "warn",
            Action::Block => "block",
            Action::Bypass => "bypass",
        }
    }

    /// Severity used to pick the worst verdict of a CNAME chain (block > warn > allow).
    pub(crate) fn severity(self) -> u8 {
        match self {
            Action::Bypass => 0,
            Action::Allow => 1,
            Action::Inspect => 2,
            Action::Warn => 3,
            Action::Block => 4,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kind of exception that produced a bypass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExceptionKind {
    /// A domain exception: no policy and no activity event.
    Domain,
    /// An IP exception on an answer address: no policy, but logged as `bypass-ip`.
    Ip,
    /// A bypassed app: no policy and no activity event.
    BypassedApp,
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The action after the app-class mapping, which is what the caller carries out.
    pub action: Action,
    /// The policy's own action before the app-class mapping (`allow`, `warn`, `block` or
    /// `bypass`).
    pub policy_action: Action,
    /// The app class the mapping used.
    pub app_class: AppClass,
    /// The rule that decided, such as `everyone/block/domain/example.com` or
    /// `urlhaus/bad.example`; `None` for the tenant default.
    pub rule_id: Option<String>,
    /// The category of the deciding feed entry.
    pub category: Option<Category>,
    /// The policy that applied; `None` for exceptions and bypassed apps.
    pub policy_id: Option<Arc<str>>,
    /// Why, in a sentence for people.
    pub reason: String,
    /// Set when an exception or a bypassed app produced the verdict.
    pub exception: Option<ExceptionKind>,
}

impl Verdict {
    /// Returns false for verdicts that produce no activity event (domain exceptions and
    /// bypassed apps).
    pub fn is_logged(&self) -> bool {
        !matches!(
            self.exception,
            Some(ExceptionKind::Domain | ExceptionKind::BypassedApp)
        )
    }

    /// The activity-log action: the action's name, or `bypass-ip` for IP exceptions.
    pub fn activity_action(&self) -> &'static str {
        if self.exception == Some(ExceptionKind::Ip) {
            "bypass-ip"
        } else {
            self.action.as_str()
        }
    }

    /// Returns true when the resolver must answer with the proxy's address: inspect, and
    /// warn or block for browsers (so the browser sees the page).
    pub fn steers_to_proxy(&self) -> bool {
        self.action == Action::Inspect
            || (self.app_class == AppClass::Browser
                && matches!(self.action, Action::Warn | Action::Block))
    }

    /// The Extended DNS Error extra text: `action=block;category=phishing;rule=<id>`.
    pub fn ede_text(&self) -> String {
        let mut text = format!("action={}", self.action);
        if let Some(category) = self.category {
            text.push_str(";category=");
            text.push_str(category.as_str());
        }
        if let Some(rule) = &self.rule_id {
            text.push_str(";rule=");
            text.push_str(rule);
        }
        text
    }
}

/// One rule consulted during a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceStep {
    /// Whether the rule matched (and so took part in the decision).
    pub matched: bool,
    /// The rule, as an id or a short description.
    pub rule: String,
    /// The reason it did or did not match.
    pub detail: String,
}

/// Every rule a decision consulted, in order. Decisions fill it only when asked, so the
/// query path pays nothing for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// The steps in evaluation order.
    pub steps: Vec<TraceStep>,
}

impl Trace {
    pub(crate) fn push(
        &mut self,
        matched: bool,
        rule: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.steps.push(TraceStep {
            matched,
            rule: rule.into(),
            detail: detail.into(),
        });
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for step in &self.steps {
            let mark = if step.matched { "match" } else { "no   " };
            writeln!(f, "  [{mark}] {}: {}", step.rule, step.detail)?;
        }
        Ok(())
    }
}

/// Records a step when tracing; free when not.
pub(crate) fn note(
    trace: &mut Option<&mut Trace>,
    matched: bool,
    rule: impl FnOnce() -> String,
    detail: impl FnOnce() -> String,
) {
    if let Some(trace) = trace.as_deref_mut() {
        trace.push(matched, rule(), detail());
    }
}
