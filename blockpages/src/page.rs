//! What a page is about: the page kinds and the facts the proxy knows about the request.

use http::StatusCode;
use time::OffsetDateTime;

/// Facts about the request that every page shows. Every text field may come from the
/// request or the policy and is treated as hostile: it is cleaned and escaped, and never
/// used as a link.
#[derive(Debug, Clone)]
pub struct PageContext {
    /// Tenant whose branding applies; `None` (or an unknown id) gets the default branding.
    pub tenant_id: Option<String>,
    /// The requested URL.
    pub url: String,
    /// Category that matched, e.g. `phishing`.
    pub category: Option<String>,
    /// Reason text from the policy decision.
    pub reason: Option<String>,
    /// Id of the rule that made the decision.
    pub rule_id: Option<String>,
    /// Request id, for support and the activity log.
    pub request_id: String,
    /// When the decision was made; shown in UTC.
    pub time: OffsetDateTime,
    /// User id, when known.
    pub user: Option<String>,
    /// Device id, when known.
    pub device: Option<String>,
}

impl PageContext {
    /// A context with only the URL and request id set, the time now, and the rest unknown.
    pub fn new(url: impl Into<String>, request_id: impl Into<String>) -> Self {
        PageContext {
            tenant_id: None,
            url: url.into(),
            category: None,
            reason: None,
            rule_id: None,
            request_id: request_id.into(),
            time: OffsetDateTime::now_utc(),
            user: None,
            device: None,
        }
    }
}

/// The warn page's form: what "Continue to site" posts.
#[derive(Debug, Clone)]
pub struct WarnForm {
    /// Signed, short-lived form token, sent as the hidden field `token`.
    pub form_token: String,
    /// Form action: an absolute path on the same site, [`WarnForm::DEFAULT_ACTION`] unless the
    /// proxy chooses another. Anything else (a full URL, `//host`, control characters) is
    /// replaced by the default when rendering.
    pub continue_action: String,
    /// Further hidden fields as (name, value), e.g. the original URL.
    pub hidden_fields: Vec<(String, String)>,
}

impl WarnForm {
    /// Where the proxy accepts "continue".
    pub const DEFAULT_ACTION: &'static str = "/.swg/continue";

    /// A form posting `form_token` to [`WarnForm::DEFAULT_ACTION`] with no further fields.
    pub fn new(form_token: impl Into<String>) -> Self {
        WarnForm {
            form_token: form_token.into(),
            continue_action: Self::DEFAULT_ACTION.to_owned(),
            hidden_fields: Vec::new(),
        }
    }
}

/// Which check of the origin's certificate failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Outside its validity period (expired or not yet valid).
    Expired,
    /// Does not name the requested host.
    WrongName,
    /// Chains to no trusted root.
    UntrustedIssuer,
    /// Signed by its own key.
    SelfSigned,
    /// Any other verification failure.
    Other,
}

/// Why the gateway could not fetch the page from the origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamErrorKind {
    /// The origin's certificate failed verification: 502.
    Certificate(CertificateProblem),
    /// Name resolution or connection failed: 502.
    Unreachable,
    /// The gateway connected, but the origin's response was invalid or never
    /// came: 502.
    InvalidResponse,
    /// Connect, first byte or idle timeout: 504.
    TimedOut,
    /// The origin's response exceeds the configured limit: 502, because the origin's answer,
    /// not the client's request, is at fault.
    ResponseTooLarge,
    /// The client's request body exceeds the configured limit: 413.
    RequestTooLarge,
    /// The destination is an address the gateway refuses (loopback, private, link-local,
    /// metadata, or its own): 403.
    DestinationRefused,
    /// The gateway has no room to pass the response on now: 503.
    Overloaded,
}

/// A page to render.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Page {
    /// Blocked by a list entry or category: 403.
    Block(PageContext),
    /// Suspicious, with "Go back" and "Continue to site": 403.
    Warn(PageContext, WarnForm),
    /// The browser sent no identity cookie and must accept cookies: 403.
    Inspection(PageContext),
    /// No identity could be established: 403.
    Unidentified(PageContext),
    /// The origin could not be fetched: 502, 504, 413, 403 or 503 (see [`UpstreamErrorKind`]).
    UpstreamError(PageContext, UpstreamErrorKind),
}

impl Page {
    /// The request facts shown on the page.
    pub fn context(&self) -> &PageContext {
        match self {
            Page::Block(context)
            | Page::Warn(context, _)
            | Page::Inspection(context)
            | Page::Unidentified(context)
            | Page::UpstreamError(context, _) => context,
        }
    }

    /// The HTTP status the page is sent with.
    pub fn status(&self) -> StatusCode {
        match self {
            Page::Block(_) | Page::Warn(..) | Page::Inspection(_) | Page::Unidentified(_) => {
                StatusCode::FORBIDDEN
            }
            Page::UpstreamError(_, kind) => match kind {
                UpstreamErrorKind::Certificate(_)
                | UpstreamErrorKind::Unreachable
                | UpstreamErrorKind::InvalidResponse
                | UpstreamErrorKind::ResponseTooLarge => StatusCode::BAD_GATEWAY,
                UpstreamErrorKind::TimedOut => StatusCode::GATEWAY_TIMEOUT,
                UpstreamErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                UpstreamErrorKind::DestinationRefused => StatusCode::FORBIDDEN,
                UpstreamErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    /// The template that renders the HTML form, e.g. `block.html`.
    pub(crate) fn template_name(&self) -> &'static str {
        match self {
            Page::Block(_) => "block.html",
            Page::Warn(..) => "warn.html",
            Page::Inspection(_) => "inspection.html",
            Page::Unidentified(_) => "unidentified.html",
            Page::UpstreamError(..) => "upstream_error.html",
        }
    }

    /// Short name of the page kind, available to templates as `page`.
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Page::Block(_) => "block",
            Page::Warn(..) => "warn",
            Page::Inspection(_) => "inspection",
            Page::Unidentified(_) => "unidentified",
            Page::UpstreamError(..) => "upstream_error",
        }
    }

    /// Catalogue keys of the heading and the summary sentence.
    pub(crate) fn title_and_summary_keys(&self) -> (&'static str, &'static str) {
        match self {
            Page::Block(_) => ("block_title", "block_summary"),
            Page::Warn(..) => ("warn_title", "warn_summary"),
            Page::Inspection(_) => ("inspection_title", "inspection_summary"),
            Page::Unidentified(_) => ("unidentified_title", "unidentified_summary"),
            Page::UpstreamError(_, kind) => match kind {
                UpstreamErrorKind::Certificate(_) => {
                    ("error_certificate_title", "error_certificate_summary")
                }
                UpstreamErrorKind::Unreachable => {
                    ("error_unreachable_title", "error_unreachable_summary")
                }
                UpstreamErrorKind::InvalidResponse => (
                    "error_invalid_response_title",
                    "error_invalid_response_summary",
                ),
                UpstreamErrorKind::TimedOut => ("error_timeout_title", "error_timeout_summary"),
                UpstreamErrorKind::ResponseTooLarge => (
                    "error_response_too_large_title",
                    "error_response_too_large_summary",
                ),
                UpstreamErrorKind::RequestTooLarge => (
                    "error_request_too_large_title",
                    "error_request_too_large_summary",
                ),
                UpstreamErrorKind::DestinationRefused => {
                    ("error_refused_title", "error_refused_summary")
                }
                UpstreamErrorKind::Overloaded => {
                    ("error_overloaded_title", "error_overloaded_summary")
                }
            },
        }
    }
}

impl UpstreamErrorKind {
    /// Short name available to templates as `error.kind`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            UpstreamErrorKind::Certificate(_) => "certificate",
            UpstreamErrorKind::Unreachable => "unreachable",
            UpstreamErrorKind::InvalidResponse => "invalid_response",
            UpstreamErrorKind::TimedOut => "timed_out",
            UpstreamErrorKind::ResponseTooLarge => "response_too_large",
            UpstreamErrorKind::RequestTooLarge => "request_too_large",
            UpstreamErrorKind::DestinationRefused => "destination_refused",
            UpstreamErrorKind::Overloaded => "overloaded",
        }
    }
}

impl CertificateProblem {
    /// Catalogue key of the sentence that explains the failed check.
    pub(crate) fn message_key(self) -> &'static str {
        match self {
            CertificateProblem::Expired => "error_certificate_expired",
            CertificateProblem::WrongName => "error_certificate_wrong_name",
            CertificateProblem::UntrustedIssuer => "error_certificate_untrusted_issuer",
            CertificateProblem::SelfSigned => "error_certificate_self_signed",
            CertificateProblem::Other => "error_certificate_other",
        }
    }
}
