//! What the resolver needs from the rest of swg: who a client is, what the tenant's
//! policy says, where events and correlation hints go.
//!
//! Each need is a small trait so the transport code and its tests do not depend on the
//! policy, identity and activity crates; the binary implements these traits over them.

use std::net::IpAddr;
use std::time::SystemTime;

use crate::context::AppClass;

/// A tenant's client as the resolver knows it for one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Tenant id.
    pub tenant: String,
    /// Device id (from the device token); `None` for location clients.
    pub device: Option<String>,
    /// User id (from the device token); `None` for location clients.
    pub user: Option<String>,
    /// Location id, for clients identified by their source address.
    pub location: Option<String>,
    /// How the client was identified.
    pub identified_by: Identification,
}

/// How a client was identified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identification {
    /// A valid device token on a DoH request.
    DeviceToken,
    /// The source address lies in one of the tenant's locations (plain DNS).
    Location,
}

/// Why a device token was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRejection {
    /// The token is malformed or its signature does not verify.
    #[error("device token is invalid")]
    Invalid,
    /// The token has expired.
    #[error("device token has expired")]
    Expired,
    /// The key the token came from was deleted.
    #[error("device token was revoked")]
    Revoked,
    /// The token is sound, but its tenant is not in the policy this gateway loaded.
    #[error("device token is for a tenant that is not in the loaded policy")]
    UnknownTenant,
}

/// Identifies clients of the resolver.
pub trait ClientIdentifier: Send + Sync + 'static {
    /// Verifies a device token from a DoH `Authorization: Bearer` header.
    fn identify_token(&self, token: &str) -> Result<Client, TokenRejection>;

    /// Finds the tenant whose locations contain `source`, for plain DNS.
    fn identify_source(&self, source: IpAddr) -> Option<Client>;
}

/// The class of the asking app after the tenant's lists were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppTreatment {
    /// The app is filtered as this class.
    Filtered(AppClass),
    /// The app is on the tenant's bypass list: resolved with no policy and no event.
    Bypassed,
}

/// A policy verdict for a name or a whole answer, before the app class is applied.
///
/// The order is severity: the worst verdict of a CNAME chain is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    /// A domain exception: resolved upstream with no policy and no event.
    Exception,
    /// An answer address lies in an IP exception: returned unchanged, logged as
    /// `bypass-ip`.
    IpException,
    /// Allowed.
    Allow,
    /// Suspicious: send to the inspection proxy.
    Inspect,
    /// Suspicious: warn page for browsers, blocked for apps (they render no page).
    Warn,
    /// Blocked.
    Block,
}

impl Verdict {
    /// Returns the lower-case name used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Exception => "exception",
            Verdict::IpException => "ip-exception",
            Verdict::Allow => "allow",
            Verdict::Inspect => "inspect",
            Verdict::Warn => "warn",
            Verdict::Block => "block",
        }
    }
}

/// A policy decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// The category that matched, if any (e.g. `phishing`).
    pub category: Option<String>,
    /// Id of the rule that made the decision, if any.
    pub rule: Option<String>,
    /// Id of the policy that applied, if any.
    pub policy: Option<String>,
    /// Why, in a sentence for people.
    pub reason: String,
}

impl Decision {
    /// A decision with only a verdict and a reason.
    pub fn new(verdict: Verdict, reason: impl Into<String>) -> Self {
        Decision {
            verdict,
            category: None,
            rule: None,
            policy: None,
            reason: reason.into(),
        }
    }
}

/// The app that asked, as the policy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppRef<'a> {
    /// Bundle id, when known.
    pub bundle_id: Option<&'a str>,
    /// The class [`DnsPolicy::classify_app`] returned.
    pub class: AppClass,
}

/// The tenant's policy as the resolver applies it.
pub trait DnsPolicy: Send + Sync + 'static {
    /// Computes the app class from the bundle id and the tenant's browser, trusted and
    /// bypassed lists; `hint` is the agent's class, for use only without a bundle id.
    fn classify_app(
        &self,
        client: &Client,
        bundle_id: Option<&str>,
        hint: Option<AppClass>,
    ) -> AppTreatment;

    /// Decides an answer: every name of the CNAME chain (`names[0]` is the name asked;
    /// lower case, A-labels, no trailing dot) and every answer address. The worst
    /// verdict wins; a domain exception on `names[0]` or an address in an IP exception
    /// bypasses policy. Called with the asked name alone and no addresses before the
    /// upstream answer is known.
    fn decide(
        &self,
        client: &Client,
        app: AppRef<'_>,
        names: &[&str],
        addresses: &[IpAddr],
    ) -> Decision;

    /// Tells whether the tenant blocks iCloud Private Relay (its canary names).
    fn blocks_private_relay(&self, client: &Client) -> bool;
}

/// The action an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventAction {
    /// Answered from upstream unchanged.
    Allow,
    /// Steered to the inspection proxy.
    Inspect,
    /// Steered to the proxy for its warn page.
    Warn,
    /// Blocked (block answer, or steered to the block page for browsers).
    Block,
    /// Returned unchanged because an address is in an IP exception.
    BypassIp,
}

impl EventAction {
    /// Returns the lower-case name used by the activity store.
    pub fn as_str(self) -> &'static str {
        match self {
            EventAction::Allow => "allow",
            EventAction::Inspect => "inspect",
            EventAction::Warn => "warn",
            EventAction::Block => "block",
            EventAction::BypassIp => "bypass-ip",
        }
    }
}

/// One DNS activity event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryEvent {
    /// When the answer was sent.
    pub time: SystemTime,
    /// The client (tenant, device, user).
    pub client: Client,
    /// Bundle id of the asking app, if known.
    pub app: Option<String>,
    /// The app class the decision used.
    pub class: AppClass,
    /// Public source address of the query.
    pub client_ip: IpAddr,
    /// Device private address from the context option, if sent.
    pub private_ip: Option<IpAddr>,
    /// The name asked for: lower case, A-label, no trailing dot.
    pub domain: String,
    /// The query type, e.g. `A`.
    pub query_type: String,
    /// Category of the deciding rule, if any.
    pub category: Option<String>,
    /// Id of the deciding rule, if any.
    pub rule: Option<String>,
    /// Id of the policy that applied, if any.
    pub policy: Option<String>,
    /// What the resolver did.
    pub action: EventAction,
    /// Why, in words (e.g. `blocked name in CNAME chain: cdn.bad.example`).
    pub reason: String,
}

/// Receives activity events; must not block (the real sink is a bounded queue).
pub trait EventSink: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: QueryEvent);
}

/// A correlation hint: the proxy reads it to learn who a steered connection belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SteerHint {
    /// Public source address the device's connection to the proxy will come from.
    pub client_ip: IpAddr,
    /// The steered host: lower case, A-label, no trailing dot.
    pub host: String,
    /// The client.
    pub client: Client,
    /// Bundle id of the app, if known.
    pub app: Option<String>,
    /// The app class.
    pub class: AppClass,
}

/// Receives correlation hints; must not block.
pub trait HintSink: Send + Sync + 'static {
    /// Records one hint.
    fn record(&self, hint: SteerHint);
}

/// An event sink that drops everything, for setups with no activity store.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn record(&self, _event: QueryEvent) {}
}

/// A hint sink that drops everything, for setups with no proxy.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHints;

impl HintSink for NoHints {
    fn record(&self, _hint: SteerHint) {}
}
