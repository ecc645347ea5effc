//! Warn verdicts: who may continue past the warn page, and whether an earlier
//! "continue" still covers the request.

use crate::boundary::{AppClass, ClientIdentity, Decision};
use crate::cookies::SwgCookies;
use crate::server::Shared;

/// The handling of a warn verdict for one request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum WarnOutcome {
    /// Show the warn page with "continue".
    Warn,
    /// Block, for the reason given: apps render no pages, some categories may not
    /// be continued past, and without signed values there is no "continue".
    Block(String),
    /// The user accepted this rule's warning on this registrable domain earlier.
    Acknowledged,
}

/// Decides what the warn `decision` becomes for `identity` on `host`.
pub(crate) fn judge(
    shared: &Shared,
    identity: &ClientIdentity,
    host: &str,
    decision: &Decision,
    cookies: &SwgCookies,
) -> WarnOutcome {
    if matches!(identity.app_class, AppClass::App | AppClass::TrustedApp) {
        return WarnOutcome::Block(format!(
            "warn verdict blocked for an app: {}",
            decision.reason
        ));
    }
    if !shared.config.is_continuable(&decision.categories) {
        return WarnOutcome::Block(format!(
            "warn verdict blocked because its category may not be continued past: {}",
            decision.reason
        ));
    }
    let Some(signed) = &shared.signed else {
        return WarnOutcome::Block(format!(
            "warn verdict blocked because continuing is not available: {}",
            decision.reason
        ));
    };

    let rule = acknowledgement_key(decision);
    let now = swg_identity::unix_now();
    let acknowledged = cookies.ack.iter().any(|value| {
        signed
            .signer
            .verify_ack_cookie(value, &identity.tenant, host, now)
            .is_ok_and(|cookie| cookie.acknowledges(&rule, now))
    });
    if acknowledged {
        WarnOutcome::Acknowledged
    } else {
        WarnOutcome::Warn
    }
}

/// Builds the reason recorded for a request let through by an earlier "continue".
pub(crate) fn acknowledged_reason(reason: &str) -> String {
    format!("warning accepted earlier: {reason}")
}

/// Returns the id under which a warning is acknowledged: the rule id, or for a decision
/// without one, its first category.
pub(crate) fn acknowledgement_key(decision: &Decision) -> String {
    match (&decision.rule, decision.categories.first()) {
        (Some(rule), _) => rule.clone(),
        (None, Some(category)) => format!("category:{category}"),
        (None, None) => "warn".to_owned(),
    }
}

/// Signs the "continue" form token of the warn page for `url`; a URL too long to
/// sign returns to the site's root instead.
pub(crate) fn issue_form_token(
    shared: &Shared,
    identity: &ClientIdentity,
    host: &str,
    decision: &Decision,
    url: &str,
) -> Option<String> {
    let signed = shared.signed.as_ref()?;
    let rule = acknowledgement_key(decision);
    let now = swg_identity::unix_now();
    let issue = |url: &str| {
        signed
            .signer
            .issue_continue_form(&identity.tenant, &identity.device, host, &rule, url, now)
    };
    issue(url)
        .or_else(|_| {
            let root = url::Url::parse(url)
                .map(|parsed| format!("{}/", parsed.origin().ascii_serialization()))
                .unwrap_or_else(|_| "/".to_owned());
            issue(&root)
        })
        .ok()
}
