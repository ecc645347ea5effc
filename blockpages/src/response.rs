//! HTTP responses for pages: status, security headers and the Content-Security-Policy.

use base64::Engine;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use sha2::{Digest, Sha256};

/// Content-Security-Policy of the plain-text form: nothing may load and nothing may run.
const TEXT_CSP: &str = "default-src 'none'; frame-ancestors 'none'; sandbox";

/// Builds the Content-Security-Policy of an HTML page whose only inline style is `css`.
///
/// The page loads nothing: styles are allowed by the hash of the one inline `<style>`, images
/// only as `data:` URIs (the logo and the empty favicon), forms post only to the page's own
/// origin, and scripts are refused outright.
pub(crate) fn html_csp(css: &str) -> String {
    let digest = Sha256::digest(css.as_bytes());
    let hash = base64::engine::general_purpose::STANDARD.encode(digest);
    format!(
        "default-src 'none'; script-src 'none'; style-src 'sha256-{hash}'; img-src data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// Builds an HTML page response with the security headers every page carries.
pub(crate) fn html_response(
    status: StatusCode,
    body: String,
    csp: &str,
    lang: &str,
) -> Response<Bytes> {
    build(
        status,
        Bytes::from(body),
        "text/html; charset=utf-8",
        csp,
        Some(lang),
    )
}

/// Builds a plain-text response for requests that are not navigations.
pub(crate) fn text_response(
    status: StatusCode,
    body: String,
    lang: Option<&str>,
) -> Response<Bytes> {
    build(
        status,
        Bytes::from(body),
        "text/plain; charset=utf-8",
        TEXT_CSP,
        lang,
    )
}

fn build(
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
    csp: &str,
    lang: Option<&str>,
) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;

    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // The policy and the language tag are built from validated, ASCII-only parts.
    if let Ok(value) = HeaderValue::from_str(csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if let Some(value) = lang.and_then(|lang| HeaderValue::from_str(lang).ok()) {
        headers.insert(header::CONTENT_LANGUAGE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_csp_hashes_the_inline_style() {
        // echo -n 'body{color:red}' | openssl dgst -sha256 -binary | base64
        let csp = html_csp("body{color:red}");
        assert!(
            csp.contains("style-src 'sha256-FcQqt3aNlV7AZnGV4zkQRVeCeJOxbMPnQSx258L803E='"),
            "{csp}"
        );
        assert!(csp.starts_with("default-src 'none'; script-src 'none';"));
        assert!(csp.contains("img-src data:"));
        assert!(csp.contains("form-action 'self'"));
        assert!(csp.contains("base-uri 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }

    #[test]
    fn text_response_carries_security_headers() {
        let response = text_response(StatusCode::FORBIDDEN, "blocked".into(), Some("de"));
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        let headers = response.headers();
        assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-store");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(headers[header::REFERRER_POLICY], "no-referrer");
        assert_eq!(headers[header::CONTENT_SECURITY_POLICY], TEXT_CSP);
        assert_eq!(headers[header::CONTENT_LANGUAGE], "de");
        assert_eq!(response.body(), "blocked");
    }
}
