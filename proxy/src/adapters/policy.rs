use std::sync::Arc;

use swg_policy::{Action, App, PolicySet, PolicyWatcher, Subject};

use crate::boundary::{ClientIdentity, Decide, Decision, Verdict};

/// Decisions by swg-policy on the tenant's current policy.
pub struct PolicyDecider {
    current: Box<dyn Fn() -> Arc<PolicySet> + Send + Sync>,
}

impl PolicyDecider {
    /// Decides on the policy the watcher has loaded at the time of each request.
    pub fn watching(watcher: Arc<PolicyWatcher>) -> PolicyDecider {
        PolicyDecider {
            current: Box::new(move || watcher.current()),
        }
    }

    /// Decides on a fixed policy set.
    pub fn fixed(set: Arc<PolicySet>) -> PolicyDecider {
        PolicyDecider {
            current: Box::new(move || set.clone()),
        }
    }
}

fn blocking_decision(reason: &str) -> Decision {
    Decision {
        verdict: Verdict::Block,
        policy: None,
        rule: None,
        categories: Vec::new(),
        reason: reason.to_owned(),
    }
}

impl Decide for PolicyDecider {
    fn decide_url(&self, identity: &ClientIdentity, url: &str) -> Decision {
        let Ok(parsed) = url::Url::parse(url) else {
            return blocking_decision("invalid URL");
        };
        let set = (self.current)();
        let Some(tenant) = set.tenant(&identity.tenant) else {
            tracing::warn!(tenant = %identity.tenant, "identity names a tenant without policy; blocking");
            return blocking_decision("tenant has no policy");
        };

        let subject = Subject::user(&identity.user);
        let app = match (&identity.app_bundle_id, identity.app_class) {
            (Some(bundle), _) => App::bundle(bundle),
            (None, class) => App::hinted(
                swg_policy::AppClass::from_wire(class.code())
                    .unwrap_or(swg_policy::AppClass::Unknown),
            ),
        };
        let verdict = tenant.decide_url(&parsed, &subject, &app);

        let mapped = match verdict.action {
            Action::Allow | Action::Inspect => Verdict::Allow,
            Action::Warn => Verdict::Warn,
            Action::Block => Verdict::Block,
            Action::Bypass if verdict.is_logged() => Verdict::Allow,
            Action::Bypass => Verdict::Bypass,
        };
        Decision {
            verdict: mapped,
            policy: verdict.policy_id.as_deref().map(str::to_owned),
            rule: verdict.rule_id,
            categories: verdict
                .category
                .map(|category| category.as_str().to_owned())
                .into_iter()
                .collect(),
            reason: verdict.reason,
        }
    }
}
