//! Requests that hyper passes to the service but swg rejects as malformed before
//! any identity, policy or upstream work.
//!
//! A CONNECT request is malformed on an intercepted connection (either landing, or
//! the HTTP inside a CONNECT tunnel). There swg acts as the origin, does not
//! advertise extended CONNECT (RFC 8441), and has no tunnel to offer. Only the
//! explicit proxy's own connection serves CONNECT.
//!
//! hyper already answers 400 to conflicting `Content-Length` values, an invalid
//! `Content-Length` and a `Transfer-Encoding` whose last coding is not `chunked`.
//! When a request carries both `Transfer-Encoding: chunked` and `Content-Length`,
//! hyper drops `Content-Length` before the service sees the request and closes the
//! connection after the response, so that case cannot be checked here.

use http::{header, HeaderValue, Method, Request, Response, StatusCode, Version};

use crate::body::ProxyBody;
use crate::connection::Listener;
use crate::request::plain;
use crate::server::Shared;

/// Returns the 400 response for a malformed request on the explicit proxy's own
/// connection, counted in `swg_proxy_requests_total{action="bad_request"}`, or
/// `None` when the request is well formed. The explicit proxy calls this first,
/// before reading any credential.
pub(crate) fn reject<B>(
    shared: &Shared,
    listener: Listener,
    request: &Request<B>,
) -> Option<Response<ProxyBody>> {
    let malformed = Malformed::of(request)?;
    Some(rejection(shared, listener, request, malformed))
}

/// Returns the 400 or 405 response for a malformed request on an intercepted
/// connection, counted as [`reject`] counts it, or `None` when the request is well
/// formed. Intercepted connections call this first, before any identity work.
pub(crate) fn reject_intercepted<B>(
    shared: &Shared,
    listener: Listener,
    request: &Request<B>,
) -> Option<Response<ProxyBody>> {
    let malformed = Malformed::of_intercepted(request)?;
    Some(rejection(shared, listener, request, malformed))
}

/// Counts and logs the rejection of `request` and builds its response.
fn rejection<B>(
    shared: &Shared,
    listener: Listener,
    request: &Request<B>,
    malformed: Malformed,
) -> Response<ProxyBody> {
    tracing::debug!(
        listener = listener.as_str(),
        problem = ?malformed,
        method = %request.method(),
        "malformed request"
    );
    shared
        .metrics
        .requests
        .with_label_values(&[listener.as_str(), "bad_request"])
        .inc();
    malformed.response(request.version())
}

/// The problem that makes a request malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// More than one `Host` field line. RFC 9112 section 3.2 requires 400, because
    /// each hop could pick a different one and judge and forward different hosts.
    DuplicateHost,
    /// An HTTP/1.1 request other than CONNECT with no `Host` field, even in absolute
    /// form. RFC 9112 section 3.2 requires 400; without it the TLS landing would fall
    /// back to the SNI and judge a host the request never named.
    MissingHost,
    /// A CONNECT request on an intercepted connection, where swg acts as the
    /// origin. Forwarding it would send a tunnel request to the origin, and
    /// on the TLS landing open TLS to the CONNECT port.
    Connect,
}

/// The methods that swg forwards from an intercepted connection, sent in the
/// `Allow` field of the 405 to CONNECT (RFC 9110 section 15.5.6). swg forwards
/// every method other than CONNECT, so these are the other methods that RFC 9110
/// and RFC 5789 (PATCH) define. The origin behind may accept fewer.
const FORWARDED_METHODS: &str = "GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, PATCH";

impl Malformed {
    /// Finds the first problem of `request`, or `None` when it is well formed.
    pub(crate) fn of<B>(request: &Request<B>) -> Option<Malformed> {
        let mut hosts = request.headers().get_all(header::HOST).iter();
        let first = hosts.next();
        if first.is_some() && hosts.next().is_some() {
            return Some(Malformed::DuplicateHost);
        }
        if first.is_none()
            && request.version() == Version::HTTP_11
            && request.method() != http::Method::CONNECT
        {
            return Some(Malformed::MissingHost);
        }
        None
    }

    /// Finds the first problem of `request` on an intercepted connection, or `None`
    /// when it is well formed.
    pub(crate) fn of_intercepted<B>(request: &Request<B>) -> Option<Malformed> {
        Malformed::of(request)
            .or_else(|| (request.method() == Method::CONNECT).then_some(Malformed::Connect))
    }

    /// Builds the 400 response, or 405 for CONNECT. Over HTTP/1.x it also closes the
    /// connection, because a client or intermediary that sends such a request may
    /// disagree with swg about where the next request starts. A client that sent
    /// CONNECT may already be sending tunnel bytes, such as a TLS ClientHello.
    pub(crate) fn response(self, version: Version) -> Response<ProxyBody> {
        let mut response = match self {
            Malformed::DuplicateHost => plain(
                StatusCode::BAD_REQUEST,
                "bad request: more than one Host header\n",
            ),
            Malformed::MissingHost => plain(
                StatusCode::BAD_REQUEST,
                "bad request: an HTTP/1.1 request needs a Host header\n",
            ),
            Malformed::Connect => {
                let mut response = plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed: an intercepted connection does not accept CONNECT\n",
                );
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static(FORWARDED_METHODS));
                response
            }
        };
        if version < Version::HTTP_2 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_host_found() {
        let request = Request::builder()
            .header("host", "a.test")
            .header("host", "b.test")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&request), Some(Malformed::DuplicateHost));
    }

    #[test]
    fn single_host_or_http10_accepted() {
        let single = Request::builder()
            .header("host", "a.test")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&single), None);
        let http10 = Request::builder()
            .version(Version::HTTP_10)
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&http10), None);
        let connect = Request::builder()
            .method(http::Method::CONNECT)
            .uri("a.test:443")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&connect), None);
    }

    #[test]
    fn http11_without_host_rejected() {
        let missing = Request::builder()
            .uri("/path")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&missing), Some(Malformed::MissingHost));
        let absolute = Request::builder()
            .uri("http://a.test/")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&absolute), Some(Malformed::MissingHost));
    }

    #[test]
    fn connect_rejected_only_when_intercepted() {
        let connect = Request::builder()
            .method(Method::CONNECT)
            .uri("a.test:443")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of(&connect), None);
        assert_eq!(
            Malformed::of_intercepted(&connect),
            Some(Malformed::Connect)
        );
        let get = Request::builder()
            .uri("/path")
            .header("host", "a.test")
            .body(())
            .expect("test requests are valid");
        assert_eq!(Malformed::of_intercepted(&get), None);
    }

    #[test]
    fn connect_response_is_405_with_allow() {
        let response = Malformed::Connect.response(Version::HTTP_11);
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(response.headers()[header::ALLOW], FORWARDED_METHODS);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn http1_response_closes_connection() {
        let response = Malformed::DuplicateHost.response(Version::HTTP_11);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = Malformed::DuplicateHost.response(Version::HTTP_2);
        assert!(response.headers().get(header::CONNECTION).is_none());
    }
}
