//! Explanations: the verdict for a name or URL with every rule consulted, for
//! `swg policy explain` and the console.

use std::fmt;

use crate::app::{App, AppClass};
use crate::name::{normalize_name, NameError};
use crate::tenant::{Canary, Subject, Tenant};
use crate::verdict::{Action, Trace, Verdict};

/// One decision with its trace.
#[derive(Debug, Clone)]
pub struct Explained {
    /// The verdict.
    pub verdict: Verdict,
    /// The rules consulted, in order.
    pub trace: Trace,
}

/// The explanation of a name (DNS only) or a URL (DNS for its host, then the proxy).
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The app class the decisions used.
    pub app_class: AppClass,
    /// The decision at DNS for the name or the URL's host.
    pub dns: Explained,
    /// The decision at the proxy, for URLs.
    pub proxy: Option<Explained>,
}

/// Reasons an input could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// The input looks like a URL but does not parse as one.
    #[error("invalid URL {input:?}: {source}")]
    InvalidUrl {
        /// The input.
        input: String,
        /// The parse error.
        source: url::ParseError,
    },
    /// The URL has no host.
    #[error("the URL {0:?} has no host")]
    NoHost(String),
    /// The URL's scheme is not one the proxy sees.
    #[error("the URL {0:?} is not http, https, ws or wss")]
    UnsupportedScheme(String),
    /// The input is neither a URL nor a valid host name.
    #[error("invalid host name {input:?}: {source}")]
    InvalidName {
        /// The input.
        input: String,
        /// Why the name is invalid.
        source: NameError,
    },
}

impl Tenant {
    /// Explains how `name_or_url` is decided for `subject` and `app`. Input with `://` is a
    /// URL (decided at DNS for its host and at the proxy); anything else is a host name.
    pub fn explain(
        &self,
        name_or_url: &str,
        subject: &Subject<'_>,
        app: &App<'_>,
    ) -> Result<Explanation, ExplainError> {
        let app_class = self.app_class(app.bundle_id, app.class_hint);
        if !name_or_url.contains("://") {
            normalize_name(name_or_url).map_err(|source| ExplainError::InvalidName {
                input: name_or_url.to_string(),
                source,
            })?;
            return Ok(Explanation {
                app_class,
                dns: self.explain_dns(name_or_url, subject, app),
                proxy: None,
            });
        }

        let url = url::Url::parse(name_or_url).map_err(|source| ExplainError::InvalidUrl {
            input: name_or_url.to_string(),
            source,
        })?;
        if !matches!(url.scheme(), "http" | "https" | "ws" | "wss") {
            return Err(ExplainError::UnsupportedScheme(name_or_url.to_string()));
        }
        let host = url
            .host_str()
            .ok_or_else(|| ExplainError::NoHost(name_or_url.to_string()))?;
        let mut trace = Trace::default();
        let verdict = self.decide_url_traced(&url, subject, app, Some(&mut trace));
        Ok(Explanation {
            app_class,
            dns: self.explain_dns(host, subject, app),
            proxy: Some(Explained { verdict, trace }),
        })
    }

    fn explain_dns(&self, name: &str, subject: &Subject<'_>, app: &App<'_>) -> Explained {
        let mut trace = Trace::default();
        if let Some(canary) = Canary::of(name) {
            if self.canary_nxdomain(name) {
                return self.explain_canary(canary, app);
            }
        }
        let verdict = self.decide_dns_traced(name, subject, app, Some(&mut trace));
        Explained { verdict, trace }
    }

    /// Explains the NXDOMAIN the resolver returns for a canary name before it applies any
    /// policy, so that `explain` and the live resolver agree.
    fn explain_canary(&self, canary: Canary, app: &App<'_>) -> Explained {
        let (rule, reason) = match canary {
            Canary::ApplicationDns => (
                "canary/use-application-dns",
                "the resolver answers NXDOMAIN for this canary so browsers keep DNS on the device",
            ),
            Canary::PrivateRelay => (
                "canary/private-relay",
                "the resolver answers NXDOMAIN for this canary because the tenant blocks iCloud Private Relay",
            ),
        };
        let mut trace = Trace::default();
        trace.push(true, rule.to_owned(), reason.to_owned());
        let verdict = Verdict {
            action: Action::Block,
            policy_action: Action::Block,
            app_class: self.app_class(app.bundle_id, app.class_hint),
            rule_id: Some(rule.to_owned()),
            category: None,
            policy_id: None,
            reason: reason.to_owned(),
            exception: None,
        };
        Explained { verdict, trace }
    }
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = &self.verdict;
        writeln!(
            f,
            "  verdict: {} (policy action {})",
            verdict.action, verdict.policy_action
        )?;
        writeln!(
            f,
            "  policy:  {}",
            verdict.policy_id.as_deref().unwrap_or("-")
        )?;
        writeln!(
            f,
            "  rule:    {}",
            verdict.rule_id.as_deref().unwrap_or("-")
        )?;
        writeln!(
            f,
            "  category: {}",
            verdict.category.map_or("-", |c| c.as_str())
        )?;
        writeln!(f, "  reason:  {}", verdict.reason)?;
        writeln!(
            f,
            "  logged:  {}",
            if verdict.is_logged() { "yes" } else { "no" }
        )?;
        writeln!(f, "  rules consulted:")?;
        write!(f, "{}", self.trace)
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "app class: {}", self.app_class)?;
        writeln!(f, "DNS:")?;
        write!(f, "{}", self.dns)?;
        if let Some(proxy) = &self.proxy {
            writeln!(f, "proxy:")?;
            write!(f, "{proxy}")?;
        }
        Ok(())
    }
}
