//! The auth host, answered by swg itself on the landing: it keeps each device's
//! long-lived gateway cookie and sends browsers back to sites with one-time tickets.
//!
//! - `GET /.swg/identify?return=<signed return URL>`: with a gateway cookie, a
//!   redirect to `https://<site>/.swg/auth?ticket=…&to=<path>`; without one, the
//!   inspection page.
//! - `GET /.swg/register?ticket=<ticket for the auth host>&return=<signed return
//!   URL>`: sets the gateway cookie of a device that a correlation hint identified,
//!   then redirects back to the site.
//!
//! Each return URL is single-use, so one navigation gets one attempt. Return URLs
//! are signed by swg and name the site they came from; a URL on any other host is
//! rejected, so the auth host is no open redirect.

use http::{Method, Response, StatusCode};

use crate::body::ProxyBody;
use crate::cookies::{set_cookie, SwgCookies, GATEWAY_COOKIE};
use crate::request::{plain, redirect, Exchange};
use crate::signed::SignedValues;
use crate::target::Target;

const IDENTIFY_PATH: &str = "/.swg/identify";
const REGISTER_PATH: &str = "/.swg/register";

/// Answers a request for the auth host. Nothing here is forwarded.
pub(crate) async fn serve(
    exchange: &mut Exchange<'_>,
    target: &Target,
    method: &Method,
    cookies: &SwgCookies,
) -> Response<ProxyBody> {
    let Some(signed) = exchange.shared.signed.clone() else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let path = target.path();
    if path != IDENTIFY_PATH && path != REGISTER_PATH {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    if method != Method::GET {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }

    let auth_host = exchange.shared.config.auth_host.clone();
    let now = swg_identity::unix_now();
    let returned = match target.query_parameter("return") {
        Some(value) => signed
            .signer
            .redeem_return_url(&value, &auth_host, now, signed.spent.as_ref())
            .await
            .ok(),
        None => None,
    };
    let Some((origin, path_and_query)) =
        returned.and_then(|claims| site_of(&claims.url, &claims.host))
    else {
        return exchange.unidentified();
    };
    exchange.url = format!("{origin}{path_and_query}");

    if path == IDENTIFY_PATH {
        identify(
            exchange,
            &signed,
            &auth_host,
            cookies,
            &origin,
            &path_and_query,
            now,
        )
    } else {
        register(exchange, &signed, &auth_host, target, now).await
    }
}

/// Sends a browser with a gateway cookie back to the site with a ticket; shows the
/// inspection page to one without.
fn identify(
    exchange: &mut Exchange<'_>,
    signed: &SignedValues,
    auth_host: &str,
    cookies: &SwgCookies,
    origin: &str,
    path_and_query: &str,
    now: u64,
) -> Response<ProxyBody> {
    let gateway = cookies.gateway.iter().find_map(|value| {
        signed
            .signer
            .verify_gateway_cookie(value, auth_host, now)
            .ok()
    });
    let Some(gateway) = gateway else {
        tracing::debug!(url = %exchange.url, "no gateway cookie on the auth host; inspection page");
        return exchange.inspection();
    };

    let site_host = url::Url::parse(origin)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    let identity = swg_identity::Identity {
        tenant: gateway.tenant,
        device: gateway.device,
        user: gateway.user,
        app_bundle_id: None,
        app_class: swg_identity::AppClass::Browser,
        discovery: swg_identity::Discovery::Ticket,
    };
    let ticket = signed.signer.issue_ticket(&identity, &site_host, now);
    let to: String = url::form_urlencoded::byte_serialize(path_and_query.as_bytes()).collect();
    let location = format!("{origin}/.swg/auth?ticket={ticket}&to={to}");
    redirect(StatusCode::FOUND, &location).unwrap_or_else(|| exchange.unidentified())
}

/// Sets the gateway cookie from a ticket issued for the auth host and redirects
/// back to the site; with an invalid ticket it only redirects.
async fn register(
    exchange: &mut Exchange<'_>,
    signed: &SignedValues,
    auth_host: &str,
    target: &Target,
    now: u64,
) -> Response<ProxyBody> {
    let ticket = match target.query_parameter("ticket") {
        Some(value) => signed
            .signer
            .redeem_ticket(&value, auth_host, now, signed.spent.as_ref())
            .await
            .ok(),
        None => None,
    };
    let Some(mut response) = redirect(StatusCode::FOUND, &exchange.url) else {
        return exchange.unidentified();
    };
    if let Some(ticket) = ticket {
        let identity = ticket.into_identity();
        let value = signed
            .signer
            .issue_gateway_cookie(&identity, auth_host, now);
        let max_age = signed
            .signer
            .config()
            .gateway_cookie_ttl_days
            .saturating_mul(86_400);
        if let Some(cookie) = set_cookie(GATEWAY_COOKIE, &value, max_age, None) {
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, cookie);
        }
    }
    response
}

/// Splits a signed return URL into its origin and path, if it is an `http` or
/// `https` URL on `host`, the site it was issued on.
fn site_of(url: &str, host: &str) -> Option<(String, String)> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return None;
    }
    let parsed_host = parsed
        .host_str()?
        .trim_matches(['[', ']'])
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if parsed_host != host || !parsed.username().is_empty() || parsed.password().is_some() {
        return None;
    }
    let origin = parsed.origin().ascii_serialization();
    let path_and_query = &parsed[url::Position::BeforePath..url::Position::AfterQuery];
    Some((origin, path_and_query.to_owned()))
}
