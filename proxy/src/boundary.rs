//! The proxy's boundaries with identity, policy, pages, activity and certificates.
//!
//! The transport code depends only on these traits, so it is tested with small
//! stand-ins, and the binary plugs in swg-identity, swg-policy, swg-blockpages,
//! swg-activity and swg-ca through adapters.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use rustls::sign::CertifiedKey;

use crate::upstream::UpstreamFailure;

/// How a request's identity was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// A device token in `Proxy-Authorization` (explicit proxy).
    Token,
    /// A correlation hint the resolver recorded for the client IP and host.
    Correlation,
    /// The signed host-only `__swg_id` identity cookie.
    Cookie,
    /// A one-time ticket from the auth host.
    Ticket,
}

/// How an app is treated, with the numeric codes of the DNS context option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AppClass {
    /// Unknown (`0`).
    #[default]
    Unknown,
    /// A web browser (`1`).
    Browser,
    /// Any other app (`2`).
    App,
    /// An app the tenant trusts (`3`).
    TrustedApp,
}

impl AppClass {
    /// The numeric code of the DNS context option.
    pub fn code(self) -> u8 {
        match self {
            AppClass::Unknown => 0,
            AppClass::Browser => 1,
            AppClass::App => 2,
            AppClass::TrustedApp => 3,
        }
    }

    /// The class of a numeric code; unknown codes give [`AppClass::Unknown`].
    pub fn from_code(code: u8) -> AppClass {
        match code {
            1 => AppClass::Browser,
            2 => AppClass::App,
            3 => AppClass::TrustedApp,
            _ => AppClass::Unknown,
        }
    }
}

/// Who is asking: the tenant, user and device a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The tenant id.
    pub tenant: String,
    /// The user id.
    pub user: String,
    /// The device id.
    pub device: String,
    /// The asking app's bundle id, when known.
    pub app_bundle_id: Option<String>,
    /// The asking app's class, when known.
    pub app_class: AppClass,
    /// How the identity was found.
    pub discovery: Discovery,
}

/// Establishes identities from device tokens and correlation hints.
pub trait Identify: Send + Sync + 'static {
    /// Verifies a device token and returns its identity, or `None` when the token is
    /// invalid, expired or revoked.
    fn identify_device_token(&self, token: &str) -> Option<ClientIdentity>;

    /// Looks up the correlation hint for `client` asking for `host`.
    fn identify_correlation_hint<'a>(
        &'a self,
        client: IpAddr,
        host: &'a str,
    ) -> BoxFuture<'a, Option<ClientIdentity>>;
}

/// The policy verdict at the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward upstream.
    Allow,
    /// Refuse with the block page.
    Block,
    /// Warn before continuing: browsers get the warn page with "continue", apps and
    /// categories that are not continuable get a block.
    Warn,
    /// Forward with no policy and no activity event (domain exceptions, bypassed apps).
    Bypass,
}

/// A policy decision on one URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to do.
    pub verdict: Verdict,
    /// The policy that applied, if any.
    pub policy: Option<String>,
    /// The rule that decided, if any.
    pub rule: Option<String>,
    /// Categories of the URL or its host.
    pub categories: Vec<String>,
    /// The reason text for logs and the activity report.
    pub reason: String,
}

/// Decides a full URL for an identity.
pub trait Decide: Send + Sync + 'static {
    /// Decides `url` (scheme, host, path and query) for `identity`.
    fn decide_url(&self, identity: &ClientIdentity, url: &str) -> Decision;
}

/// The page sent in response to a request.
#[derive(Debug, Clone)]
pub enum PageKind {
    /// The URL is blocked by policy.
    Block(Decision),
    /// The URL is suspicious: the warn page, whose "continue" form posts
    /// `form_token` to `/.swg/continue` on the same site.
    Warn {
        /// The warn decision.
        decision: Decision,
        /// The signed, single-use "continue" form token.
        form_token: String,
    },
    /// The browser came back from the auth host identified but without keeping the
    /// identity cookie, or the auth host has no gateway cookie: it must accept cookies.
    Inspection,
    /// No identity could be established.
    Unidentified,
    /// The origin could not be fetched, or may not be.
    UpstreamError(UpstreamFailure),
}

/// The facts about a request that a page shows.
#[derive(Debug, Clone)]
pub struct PageRequest {
    /// The page.
    pub kind: PageKind,
    /// The full URL requested.
    pub url: String,
    /// The request id, also in the activity event and the logs.
    pub request_id: String,
    /// Whether the request is a top-level navigation (gets HTML instead of short text).
    pub navigation: bool,
    /// Who asked, if known (for the tenant's branding and the page's details).
    pub identity: Option<ClientIdentity>,
    /// The request's `Accept-Language` header.
    pub accept_language: Option<String>,
}

/// Renders pages.
pub trait RenderPage: Send + Sync + 'static {
    /// Renders the complete response, status and headers included.
    fn render(&self, request: &PageRequest) -> http::Response<Bytes>;
}

/// What the proxy did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Forwarded upstream.
    Allow,
    /// Refused by policy, by the destination check (the event's `failure` then
    /// names the refused destination class), or as a malformed request that policy
    /// had allowed, such as a WebSocket handshake with a body.
    Block,
    /// Warned: the warn page was sent.
    Warn,
    /// The user continued past a warn page.
    Accepted,
    /// Refused because no identity was found.
    Unidentified,
    /// Allowed by policy and the destination check, but the upstream failed.
    UpstreamError,
}

impl Action {
    /// A short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Warn => "warn",
            Action::Accepted => "accepted",
            Action::Unidentified => "unidentified",
            Action::UpstreamError => "upstream_error",
        }
    }
}

/// One request's activity event.
#[derive(Debug, Clone)]
pub struct ProxyEvent {
    /// The request id.
    pub request_id: String,
    /// Who asked, if known.
    pub identity: Option<ClientIdentity>,
    /// The client's address.
    pub client: IpAddr,
    /// The full URL.
    pub url: String,
    /// What the proxy did.
    pub action: Action,
    /// The policy decision, when policy was consulted.
    pub decision: Option<Decision>,
    /// The upstream failure or destination refusal, when one occurred.
    pub failure: Option<UpstreamFailure>,
}

/// Receives activity events. Must not block: the hot path calls it per request.
pub trait Record: Send + Sync + 'static {
    /// Records one event.
    fn record(&self, event: ProxyEvent);
}

/// Supplies leaf certificates for intercepted hosts.
pub trait LeafSource: Send + Sync + 'static {
    /// Returns the leaf for `host` (a DNS name or an IP literal), or `None` when none
    /// can be minted.
    fn leaf(&self, host: &str) -> Option<Arc<CertifiedKey>>;
}

/// The collaborators the proxy calls per request.
#[derive(Clone)]
pub struct Collaborators {
    /// Identity lookups.
    pub identify: Arc<dyn Identify>,
    /// Policy decisions.
    pub decide: Arc<dyn Decide>,
    /// Page rendering.
    pub pages: Arc<dyn RenderPage>,
    /// Activity events.
    pub record: Arc<dyn Record>,
    /// Leaf certificates.
    pub leaves: Arc<dyn LeafSource>,
}
