//! The resolver's backends over the swg crates: tenants and policy from swg-policy,
//! device tokens and correlation hints from swg-identity, events to swg-activity.

use std::net::IpAddr;
use std::sync::Arc;

use swg_activity::{Event, Recorder, Via};
use swg_identity::{CorrelationHints, Identity, LiveKeys, Rejection, Signer};
use swg_policy::{App, ExceptionKind, PolicySet, PolicyWatcher, Subject};

use crate::backends::{
    AppRef, AppTreatment, Client, ClientIdentifier, Decision, DnsPolicy, EventAction, EventSink,
    HintSink, Identification, QueryEvent, SteerHint, TokenRejection, Verdict,
};
use crate::context::AppClass;

/// The source of the current policy set: a [`PolicyWatcher`] or a fixed set.
#[derive(Clone)]
pub enum PolicySource {
    /// The watcher's current set, hot-reloaded.
    Watcher(Arc<PolicyWatcher>),
    /// A set that never changes (tests, `swg policy explain`).
    Fixed(Arc<PolicySet>),
}

impl PolicySource {
    fn current(&self) -> Arc<PolicySet> {
        match self {
            PolicySource::Watcher(watcher) => watcher.current(),
            PolicySource::Fixed(set) => set.clone(),
        }
    }
}

/// Tenants' policies, app lists and locations from swg-policy.
pub struct SwgPolicy {
    policies: PolicySource,
}

impl SwgPolicy {
    /// Creates the backend over `policies`.
    pub fn new(policies: PolicySource) -> Self {
        SwgPolicy { policies }
    }
}

impl DnsPolicy for SwgPolicy {
    fn classify_app(
        &self,
        client: &Client,
        bundle_id: Option<&str>,
        hint: Option<AppClass>,
    ) -> AppTreatment {
        let set = self.policies.current();
        let Some(tenant) = set.tenant(&client.tenant) else {
            return AppTreatment::Filtered(AppClass::Unknown);
        };
        match tenant.app_class(bundle_id, hint.map(to_policy_class)) {
            swg_policy::AppClass::BypassedApp => AppTreatment::Bypassed,
            class => AppTreatment::Filtered(from_policy_class(class)),
        }
    }

    fn decide(
        &self,
        client: &Client,
        app: AppRef<'_>,
        names: &[&str],
        addresses: &[IpAddr],
    ) -> Decision {
        let set = self.policies.current();
        let Some(tenant) = set.tenant(&client.tenant) else {
            // The tenant left the policy set after its client was identified: fail closed.
            return Decision::new(
                Verdict::Block,
                format!("tenant {} has no policy", client.tenant),
            );
        };
        let subject = Subject {
            user: client.user.as_deref(),
            groups: &[],
            location: client.location.as_deref(),
        };
        let policy_app = App {
            bundle_id: app.bundle_id,
            class_hint: Some(to_policy_class(app.class)),
        };
        let verdict = tenant.decide_dns_answer(names, addresses, &subject, &policy_app);
        to_decision(verdict)
    }

    fn blocks_private_relay(&self, client: &Client) -> bool {
        // An unknown tenant keeps the default (on).
        self.policies
            .current()
            .tenant(&client.tenant)
            .is_none_or(|tenant| tenant.block_private_relay())
    }
}

fn to_decision(verdict: swg_policy::Verdict) -> Decision {
    let kind = match (verdict.exception, verdict.policy_action) {
        (Some(ExceptionKind::Ip), _) => Verdict::IpException,
        (Some(ExceptionKind::Domain | ExceptionKind::BypassedApp), _) => Verdict::Exception,
        (None, swg_policy::Action::Bypass) => Verdict::Exception,
        (None, swg_policy::Action::Allow) => Verdict::Allow,
        (None, swg_policy::Action::Inspect) => Verdict::Inspect,
        (None, swg_policy::Action::Warn) => Verdict::Warn,
        (None, swg_policy::Action::Block) => Verdict::Block,
    };
    Decision {
        verdict: kind,
        category: verdict
            .category
            .map(|category| category.as_str().to_owned()),
        rule: verdict.rule_id,
        policy: verdict.policy_id.map(|id| id.to_string()),
        reason: verdict.reason,
    }
}

fn to_policy_class(class: AppClass) -> swg_policy::AppClass {
    match class {
        AppClass::Unknown => swg_policy::AppClass::Unknown,
        AppClass::Browser => swg_policy::AppClass::Browser,
        AppClass::App => swg_policy::AppClass::App,
        AppClass::TrustedApp => swg_policy::AppClass::TrustedApp,
    }
}

fn from_policy_class(class: swg_policy::AppClass) -> AppClass {
    match class {
        swg_policy::AppClass::Browser => AppClass::Browser,
        swg_policy::AppClass::App => AppClass::App,
        swg_policy::AppClass::TrustedApp => AppClass::TrustedApp,
        swg_policy::AppClass::Unknown | swg_policy::AppClass::BypassedApp => AppClass::Unknown,
    }
}

/// Device tokens verified by swg-identity; plain DNS sources matched against the
/// tenants' locations.
pub struct SwgIdentifier {
    signer: Arc<Signer>,
    live_keys: Arc<LiveKeys>,
    policies: PolicySource,
}

impl SwgIdentifier {
    /// Creates the identifier.
    pub fn new(signer: Arc<Signer>, live_keys: Arc<LiveKeys>, policies: PolicySource) -> Self {
        SwgIdentifier {
            signer,
            live_keys,
            policies,
        }
    }
}

impl ClientIdentifier for SwgIdentifier {
    fn identify_token(&self, token: &str) -> Result<Client, TokenRejection> {
        let claims = self
            .signer
            .verify_device_token(token, swg_identity::unix_now(), &self.live_keys)
            .map_err(|rejection| match rejection {
                Rejection::Expired => TokenRejection::Expired,
                Rejection::RevokedKey => TokenRejection::Revoked,
                _ => TokenRejection::Invalid,
            })?;
        // A token for a tenant with no policy cannot be served (nothing to decide with).
        if self.policies.current().tenant(&claims.tenant).is_none() {
            tracing::debug!(
                tenant = %claims.tenant,
                device = %claims.device,
                "device token rejected: its tenant is not in the loaded policy"
            );
            return Err(TokenRejection::UnknownTenant);
        }
        Ok(Client {
            tenant: claims.tenant,
            device: Some(claims.device),
            user: Some(claims.user),
            location: None,
            identified_by: Identification::DeviceToken,
        })
    }

    fn identify_source(&self, source: IpAddr) -> Option<Client> {
        let set = self.policies.current();
        // An IPv4 location network never contains the IPv4-mapped IPv6 form of its addresses.
        let (tenant, location) = set.tenant_by_source(source.to_canonical())?;
        Some(Client {
            tenant: tenant.id().to_owned(),
            device: None,
            user: None,
            location: Some(location.to_owned()),
            identified_by: Identification::Location,
        })
    }
}

/// Sends events to the activity log's bounded queue.
pub struct ActivityEvents {
    recorder: Recorder,
}

impl ActivityEvents {
    /// Creates the sink.
    pub fn new(recorder: Recorder) -> Self {
        ActivityEvents { recorder }
    }
}

impl EventSink for ActivityEvents {
    fn record(&self, event: QueryEvent) {
        let action = match event.action {
            EventAction::Allow => swg_activity::Action::Allow,
            EventAction::Inspect => swg_activity::Action::Inspect,
            EventAction::Warn => swg_activity::Action::Warn,
            EventAction::Block => swg_activity::Action::Block,
            EventAction::BypassIp => swg_activity::Action::BypassIp,
        };
        let mut record = Event::new(event.client.tenant, Via::Dns, event.domain, action);
        record.user = event.client.user;
        record.device = event.client.device;
        record.discovery = match event.client.identified_by {
            Identification::DeviceToken => swg_activity::Discovery::Token,
            Identification::Location => swg_activity::Discovery::Location,
        };
        record.app = event.app;
        record.app_class = match event.class {
            AppClass::Unknown => swg_activity::AppClass::Unknown,
            AppClass::Browser => swg_activity::AppClass::Browser,
            AppClass::App => swg_activity::AppClass::App,
            AppClass::TrustedApp => swg_activity::AppClass::TrustedApp,
        };
        record.client_ip = Some(event.client_ip);
        record.device_ip = event.private_ip;
        record.categories = event.category.into_iter().collect();
        record.policy = event.policy;
        record.rule = event.rule;
        record.reason = event.reason;
        self.recorder.record(record);
    }
}

/// Records correlation hints in swg-identity's store without waiting for it.
pub struct HintRecorder {
    hints: Arc<dyn CorrelationHints>,
}

impl HintRecorder {
    /// Creates the sink.
    pub fn new(hints: Arc<dyn CorrelationHints>) -> Self {
        HintRecorder { hints }
    }
}

impl HintSink for HintRecorder {
    fn record(&self, hint: SteerHint) {
        let identity = Identity {
            tenant: hint.client.tenant,
            device: hint.client.device.unwrap_or_default(),
            user: hint.client.user.unwrap_or_default(),
            app_bundle_id: hint.app,
            app_class: match hint.class {
                AppClass::Unknown => swg_identity::AppClass::Unknown,
                AppClass::Browser => swg_identity::AppClass::Browser,
                AppClass::App => swg_identity::AppClass::App,
                AppClass::TrustedApp => swg_identity::AppClass::TrustedApp,
            },
            discovery: match hint.client.identified_by {
                Identification::DeviceToken => swg_identity::Discovery::Token,
                Identification::Location => swg_identity::Discovery::Location,
            },
        };
        let hints = self.hints.clone();
        let (client_ip, host) = (hint.client_ip, hint.host);
        // The store may be remote (Redis): the answer must not wait for it.
        tokio::spawn(async move {
            if let Err(error) = hints.record(client_ip, &host, &identity).await {
                tracing::warn!(%error, %host, "cannot record correlation hint");
            }
        });
    }
}
