//! swg's own paths under `/.swg/` on every intercepted site: the end of the
//! inspection flow (`/.swg/auth?ticket=…`) and the warn page's "continue"
//! (`POST /.swg/continue`). Nothing under `/.swg/` is ever forwarded.

use std::time::Duration;

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::body::ProxyBody;
use crate::boundary::{ClientIdentity, Discovery, Verdict};
use crate::cookies::{set_cookie, SwgCookies, ACK_COOKIE};
use crate::identify::issue_identity_cookie;
use crate::request::{plain, redirect, Exchange, RESERVED_PREFIX};
use crate::target::Target;
use crate::warn::{self, WarnOutcome};

/// Path to which the auth host sends a browser back with a one-time ticket.
pub(crate) const TICKET_PATH: &str = "/.swg/auth";
/// Path that the warn page's "continue" form posts to.
pub(crate) const CONTINUE_PATH: &str = "/.swg/continue";

/// Largest "continue" form body read; the real form is a token and a URL, each at
/// most 4 KiB.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Time a client has to send the "continue" form body.
const FORM_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Redeems the ticket of `GET /.swg/auth?ticket=…&to=/path`: sets `__swg_id` and
/// redirects to the path on this site.
///
/// A missing, forged, expired or replayed ticket gets the unidentified page, unless
/// the browser already holds a valid identity cookie for the site (a reload of this
/// URL); then it is only redirected.
pub(crate) async fn redeem_ticket(
    exchange: &mut Exchange<'_>,
    target: &Target,
    host: &str,
    cookies: &SwgCookies,
) -> Response<ProxyBody> {
    let Some(signed) = exchange.shared.signed.as_ref() else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let path = target
        .query_parameter("to")
        .filter(|path| is_safe_path(path))
        .unwrap_or_else(|| "/".to_owned());
    let location = format!("{}{path}", target.origin());
    let now = swg_identity::unix_now();

    let redeemed = match target.query_parameter("ticket") {
        Some(ticket) => signed
            .signer
            .redeem_ticket(&ticket, host, now, signed.spent.as_ref())
            .await
            .ok(),
        None => None,
    };
    if let Some(claims) = redeemed {
        let identity = ClientIdentity {
            tenant: claims.tenant,
            user: claims.user,
            device: claims.device,
            app_bundle_id: None,
            app_class: crate::boundary::AppClass::from_code(claims.app_class.code()),
            discovery: Discovery::Ticket,
        };
        tracing::debug!(host, device = %identity.device, "ticket redeemed; setting the identity cookie");
        if let Some(response) = redirect(StatusCode::FOUND, &location) {
            exchange
                .set_cookies
                .extend(issue_identity_cookie(signed, &identity, host));
            return exchange.with_cookies(response);
        }
    }

    let holds_cookie = cookies.identity.iter().any(|value| {
        signed
            .signer
            .verify_identity_cookie(value, host, now)
            .is_ok()
    });
    match redirect(StatusCode::FOUND, &location) {
        Some(response) if holds_cookie => response,
        _ => exchange.unidentified(),
    }
}

/// Handles `POST /.swg/continue`: checks the form token (purpose, tenant, host,
/// device, expiry, single use), sets `__swg_ack` for the registrable domain, records
/// `accepted` and answers 303 to the original URL.
///
/// A token that does not verify gets the warn page again for the URL in the form
/// (or this site's root), with a fresh token; the client learns nothing about which
/// check failed.
pub(crate) async fn accept_warning(
    exchange: &mut Exchange<'_>,
    target: &Target,
    host: &str,
    identity: ClientIdentity,
    cookies: &SwgCookies,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    if request.method() != Method::POST {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let Some(signed) = exchange.shared.signed.clone() else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    exchange.navigation = wants_html(&request);
    let Some(form) = read_form(request).await else {
        return plain(StatusCode::BAD_REQUEST, "invalid form\n");
    };

    let now = swg_identity::unix_now();
    let redeemed = match &form.token {
        Some(token) => signed
            .signer
            .redeem_continue_form(
                token,
                &identity.tenant,
                &identity.device,
                host,
                now,
                signed.spent.as_ref(),
            )
            .await
            .ok(),
        None => None,
    };
    let Some(claims) = redeemed else {
        let url = same_site_url(form.url.as_deref(), target, host);
        return warn_again(exchange, identity, host, cookies, url);
    };

    let destination = same_site_url(Some(&claims.url), target, host);
    let existing = cookies.ack.iter().find(|value| {
        signed
            .signer
            .verify_ack_cookie(value, &identity.tenant, host, now)
            .is_ok()
    });
    let value = signed.signer.acknowledge_warning(
        existing.map(String::as_str),
        &identity.tenant,
        host,
        &claims.rule_id,
        now,
    );
    let domain = swg_identity::registrable_domain(host);
    // A Domain attribute widens the cookie to the registrable domain. A host that is
    // its own registrable domain (or an IP literal) gets a host-only cookie, which
    // has the same scope.
    let domain = (domain != host).then_some(domain);
    exchange.set_cookies.extend(set_cookie(
        ACK_COOKIE,
        &value,
        signed.signer.config().ack_ttl_secs,
        domain.as_deref(),
    ));

    let mut decision = exchange
        .shared
        .collaborators
        .decide
        .decide_url(&identity, &destination);
    decision.rule = Some(claims.rule_id);
    decision.reason = format!("user continued past the warning: {}", decision.reason);
    exchange.url = destination.clone();
    tracing::debug!(url = %destination, rule = ?decision.rule, "warning accepted");
    exchange.accepted(identity, decision);
    redirect(StatusCode::SEE_OTHER, &destination)
        .unwrap_or_else(|| plain(StatusCode::BAD_REQUEST, "invalid URL\n"))
}

/// Answers a "continue" whose token did not verify as a fresh request for `url`
/// would be answered, but never forwarded.
fn warn_again(
    exchange: &mut Exchange<'_>,
    identity: ClientIdentity,
    host: &str,
    cookies: &SwgCookies,
    url: String,
) -> Response<ProxyBody> {
    tracing::debug!(url = %url, "continue form token rejected");
    exchange.url = url;
    let mut decision = exchange
        .shared
        .collaborators
        .decide
        .decide_url(&identity, &exchange.url);
    match decision.verdict {
        Verdict::Block => exchange.blocked(identity, decision),
        Verdict::Warn => match warn::judge(exchange.shared, &identity, host, &decision, cookies) {
            WarnOutcome::Warn => exchange.warned(identity, decision, host),
            WarnOutcome::Block(reason) => {
                decision.reason = reason;
                exchange.blocked(identity, decision)
            }
            WarnOutcome::Acknowledged => see_other(&exchange.url),
        },
        Verdict::Allow | Verdict::Bypass => see_other(&exchange.url),
    }
}

fn see_other(url: &str) -> Response<ProxyBody> {
    redirect(StatusCode::SEE_OTHER, url)
        .unwrap_or_else(|| plain(StatusCode::BAD_REQUEST, "invalid URL\n"))
}

/// The fields of a "continue" form.
struct ContinueFields {
    token: Option<String>,
    url: Option<String>,
}

/// Reads an `application/x-www-form-urlencoded` body of at most [`MAX_FORM_BYTES`];
/// `None` when it is larger, slower than [`FORM_READ_TIMEOUT`] or unreadable. A field
/// given twice counts as absent.
async fn read_form(request: Request<Incoming>) -> Option<ContinueFields> {
    let body = Limited::new(request.into_body(), MAX_FORM_BYTES);
    let bytes = tokio::time::timeout(FORM_READ_TIMEOUT, body.collect())
        .await
        .ok()?
        .ok()?
        .to_bytes();
    let single = |name: &str| {
        let mut values = url::form_urlencoded::parse(&bytes)
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned());
        let first = values.next()?;
        values.next().is_none().then_some(first)
    };
    Some(ContinueFields {
        token: single("token"),
        url: single("url"),
    })
}

/// Returns whether the request expects an HTML page (a form submission by a browser).
fn wants_html<B>(request: &Request<B>) -> bool {
    let header_text = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
    };
    header_text("sec-fetch-mode").is_some_and(|mode| mode.eq_ignore_ascii_case("navigate"))
        || header_text("accept").is_some_and(|accept| accept.contains("text/html"))
}

/// `url` when it is an absolute URL on this very site (scheme, host and port),
/// otherwise the site's root: a redirect never leaves the site.
pub(crate) fn same_site_url(url: Option<&str>, target: &Target, host: &str) -> String {
    let root = format!("{}/", target.origin());
    let Some(parsed) = url.and_then(|url| url::Url::parse(url).ok()) else {
        return root;
    };
    let parsed_host = parsed.host_str().map(|name| {
        name.trim_matches(['[', ']'])
            .trim_end_matches('.')
            .to_ascii_lowercase()
    });
    let same_site = parsed.scheme() == target.scheme.as_str()
        && parsed_host.as_deref() == Some(host)
        && parsed.port_or_known_default() == Some(target.port)
        && parsed.username().is_empty()
        && parsed.password().is_none();
    if same_site {
        parsed.to_string()
    } else {
        root
    }
}

/// Returns whether `path` is a path on the same site that swg may redirect to: absolute,
/// not protocol-relative, free of backslashes, made of printable ASCII only (so
/// it is a valid `Location` value), and outside `/.swg/`.
pub(crate) fn is_safe_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.starts_with("//")
        && !path.starts_with(RESERVED_PREFIX)
        && !path.contains('\\')
        && path.bytes().all(|byte| byte.is_ascii_graphic())
        && path.len() <= swg_identity::MAX_SIGNED_VALUE_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths_stay_on_the_site() {
        assert!(is_safe_path("/"));
        assert!(is_safe_path("/a/b?c=d"));
        for unsafe_path in [
            "",
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example",
            "/.swg/auth?ticket=x",
            "/a\r\nSet-Cookie: x=y",
            "/a b",
            "/caf\u{e9}",
        ] {
            assert!(!is_safe_path(unsafe_path), "{unsafe_path:?}");
        }
    }
}
