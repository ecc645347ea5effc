//! The identity of a request, found in this order: the explicit proxy's device token, the `__swg_id`
//! identity cookie, a correlation hint (then the identity cookie is set), and for
//! top-level navigations the inspection flow through the auth host.

use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::body::ProxyBody;
use crate::boundary::{AppClass, ClientIdentity, Discovery};
use crate::connection::ConnectionContext;
use crate::cookies::{set_cookie, SwgCookies, IDENTITY_COOKIE};
use crate::request::redirect;
use crate::server::Shared;
use crate::signed::SignedValues;
use crate::target::{Scheme, Target};

/// The result of looking for the identity of a request.
pub(crate) enum Found {
    /// The request is identified; `set_cookie` is an `__swg_id` to set on the
    /// response when the identity came from a correlation hint.
    Identity {
        identity: ClientIdentity,
        set_cookie: Option<HeaderValue>,
    },
    /// A navigation sent to the auth host: to identify it, or to set the gateway
    /// cookie of a device identified by a hint.
    Redirect(Response<ProxyBody>),
    /// A navigation came back without identity within the attempt window: the
    /// browser does not keep cookies.
    Inspection,
    /// No identity.
    Nothing,
}

/// One request's facts that identification needs.
pub(crate) struct Asking<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) context: &'a ConnectionContext,
    pub(crate) target: &'a Target,
    pub(crate) host: &'a str,
    pub(crate) url: &'a str,
    pub(crate) cookies: &'a SwgCookies,
    /// Whether the request is a top-level navigation that may be redirected.
    pub(crate) top_level_navigation: bool,
}

/// Finds who is asking. This is the one place where a request's identity is
/// established.
pub(crate) async fn establish(asking: &Asking<'_>) -> Found {
    if let Some(token) = &asking.context.device_token {
        let identify = asking.shared.collaborators.identify.as_ref();
        return match token.identity(identify) {
            Some(identity) => identified(identity, None),
            None => {
                tracing::debug!(client = %asking.context.client, host = asking.host, "device token of the connection expired or was revoked");
                Found::Nothing
            }
        };
    }
    let signed = asking.shared.signed.as_ref();
    if let Some(identity) = signed.and_then(|signed| identity_cookie(signed, asking)) {
        return identified(identity, None);
    }

    let hinted = asking
        .shared
        .collaborators
        .identify
        .identify_correlation_hint(asking.context.client.ip(), asking.host)
        .await;
    if let Some(identity) = hinted {
        let Some(signed) = signed else {
            return identified(identity, None);
        };
        let cookie = issue_identity_cookie(signed, &identity, asking.host);
        if let Some(response) = register_gateway_cookie(asking, signed, &identity, &cookie) {
            return Found::Redirect(response);
        }
        return identified(identity, cookie);
    }

    match signed {
        Some(signed) if asking.top_level_navigation && flow_enabled(asking) => {
            if asking
                .shared
                .flows
                .start_attempt(asking.context.client.ip(), asking.host)
            {
                Found::Redirect(identify_at_auth_host(asking, signed))
            } else {
                tracing::debug!(host = %asking.host, "navigation back without identity; inspection page");
                Found::Inspection
            }
        }
        _ => Found::Nothing,
    }
}

fn identified(identity: ClientIdentity, set_cookie: Option<HeaderValue>) -> Found {
    Found::Identity {
        identity,
        set_cookie,
    }
}

/// Tells whether the auth host flow may run for this request: an auth host is
/// configured and the request came over HTTPS. swg's cookies are `Secure`, so over
/// plain HTTP a browser never sends the gateway cookie and drops the identity
/// cookie that the flow sets on return. A redirect there would only end on the
/// inspection page, which tells the user to allow cookies, so a plain-HTTP
/// navigation without identity gets the unidentified page at once.
fn flow_enabled(asking: &Asking<'_>) -> bool {
    !asking.shared.config.auth_host.is_empty() && asking.target.scheme == Scheme::Https
}

/// Returns the identity of the first `__swg_id` value that verifies for this host.
fn identity_cookie(signed: &SignedValues, asking: &Asking<'_>) -> Option<ClientIdentity> {
    let now = swg_identity::unix_now();
    asking.cookies.identity.iter().find_map(|value| {
        let claims = signed
            .signer
            .verify_identity_cookie(value, asking.host, now)
            .ok()?;
        Some(ClientIdentity {
            tenant: claims.tenant,
            user: claims.user,
            device: claims.device,
            app_bundle_id: None,
            app_class: AppClass::from_code(claims.app_class.code()),
            discovery: Discovery::Cookie,
        })
    })
}

/// Signs an `__swg_id` for `identity` on `host` and returns its `Set-Cookie` value.
pub(crate) fn issue_identity_cookie(
    signed: &SignedValues,
    identity: &ClientIdentity,
    host: &str,
) -> Option<HeaderValue> {
    let value = signed.signer.issue_identity_cookie(
        &to_signed_identity(identity),
        host,
        swg_identity::unix_now(),
    );
    set_cookie(
        IDENTITY_COOKIE,
        &value,
        signed.signer.config().identity_cookie_ttl_secs,
        None,
    )
}

/// Converts the identity to swg-identity's type for signing. The discovery is not signed.
pub(crate) fn to_signed_identity(identity: &ClientIdentity) -> swg_identity::Identity {
    swg_identity::Identity {
        tenant: identity.tenant.clone(),
        device: identity.device.clone(),
        user: identity.user.clone(),
        app_bundle_id: identity.app_bundle_id.clone(),
        app_class: swg_identity::AppClass::from_code(identity.app_class.code()).unwrap_or_default(),
        discovery: swg_identity::Discovery::Correlation,
    }
}

/// Returns whether the class may be a browser, which keeps cookies and follows redirects.
pub(crate) fn may_be_browser(class: AppClass) -> bool {
    matches!(class, AppClass::Browser | AppClass::Unknown)
}

/// For a browser's HTTPS navigation identified by a hint, the once-per-device
/// redirect to the auth host that sets its gateway cookie, carrying the `__swg_id`
/// cookie for this site too. A plain-HTTP navigation is not redirected, and does
/// not use up the device's registration, because a browser drops a `Secure`
/// cookie set over plain HTTP.
fn register_gateway_cookie(
    asking: &Asking<'_>,
    signed: &SignedValues,
    identity: &ClientIdentity,
    cookie: &Option<HeaderValue>,
) -> Option<Response<ProxyBody>> {
    let shared = asking.shared;
    if !asking.top_level_navigation || !flow_enabled(asking) || !may_be_browser(identity.app_class)
    {
        return None;
    }
    if !shared
        .flows
        .start_registration(&identity.tenant, &identity.device)
    {
        return None;
    }
    let auth_host = &shared.config.auth_host;
    let now = swg_identity::unix_now();
    let ticket = signed
        .signer
        .issue_ticket(&to_signed_identity(identity), auth_host, now);
    let return_value = return_url(signed, asking, now)?;
    let location = format!(
        "{}/.swg/register?ticket={ticket}&return={return_value}",
        asking.target.origin_on(auth_host)
    );
    tracing::debug!(device = %identity.device, "sending device to the auth host for its gateway cookie");
    let mut response = redirect(StatusCode::FOUND, &location)?;
    if let Some(cookie) = cookie {
        response
            .headers_mut()
            .append(header::SET_COOKIE, cookie.clone());
    }
    Some(response)
}

/// Builds the redirect of an unidentified navigation to the auth host.
fn identify_at_auth_host(asking: &Asking<'_>, signed: &SignedValues) -> Response<ProxyBody> {
    let now = swg_identity::unix_now();
    let location = return_url(signed, asking, now).and_then(|return_value| {
        redirect(
            StatusCode::FOUND,
            &format!(
                "{}/.swg/identify?return={return_value}",
                asking.target.origin_on(&asking.shared.config.auth_host)
            ),
        )
    });
    location.unwrap_or_else(|| {
        crate::request::plain(
            StatusCode::FORBIDDEN,
            "forbidden: the gateway could not identify this device\n",
        )
    })
}

/// A signed return URL for this request, or for the site's root when the URL is
/// too long to sign.
fn return_url(signed: &SignedValues, asking: &Asking<'_>, now: u64) -> Option<String> {
    let auth_host = &asking.shared.config.auth_host;
    signed
        .signer
        .issue_return_url(asking.host, asking.url, auth_host, now)
        .or_else(|_| {
            let root = format!("{}/", asking.target.origin());
            signed
                .signer
                .issue_return_url(asking.host, &root, auth_host, now)
        })
        .ok()
}

/// Returns whether a request is a top-level navigation that may be redirected to
/// the auth host: a GET navigation of a document, not a frame, when
/// `Sec-Fetch-Dest` is sent.
pub(crate) fn is_top_level_navigation<B>(request: &Request<B>, navigation: bool) -> bool {
    if !navigation || request.method() != Method::GET {
        return false;
    }
    match request.headers().get("sec-fetch-dest") {
        Some(dest) => dest.as_bytes().eq_ignore_ascii_case(b"document"),
        None => true,
    }
}
