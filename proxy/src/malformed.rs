//! Requests that hyper passes to the service but swg rejects as malformed before
//! any identity, policy or upstream work.
//!
//! hyper already answers 400 to conflicting `Content-Length` values, an invalid
//! `Content-Length` and a `Transfer-Encoding` whose last coding is not `chunked`.
//! When a request carries both `Transfer-Encoding: chunked` and `Content-Length`,
//! hyper drops `Content-Length` before the service sees the request and closes the
//! connection after the response, so that case cannot be checked here.

use http::{header, HeaderValue, Request, Response, StatusCode, Version};

use crate::body::ProxyBody;
use crate::connection::Listener;
use crate::request::plain;
use crate::server::Shared;

/// Returns the 400 response for a malformed request, counted in
/// `swg_proxy_requests_total{action="bad_request"}`, or `None` when the request is
/// well formed. Every listener calls this first, before reading any credential.
pub(crate) fn reject<B>(
    shared: &Shared,
    listener: Listener,
    request: &Request<B>,
) -> Option<Response<ProxyBody>> {
    let malformed = Malformed::of(request)?;
    tracing::debug!(
        listener = listener.as_str(),
        problem = ?malformed,
        "malformed request"
    );
    shared
        .metrics
        .requests
        .with_label_values(&[listener.as_str(), "bad_request"])
        .inc();
    Some(malformed.response(request.version()))
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
}

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

    /// Builds the 400 response. Over HTTP/1.x it also closes the connection, because a
    /// client or intermediary that sends such a request may disagree with swg about
    /// where the next request starts.
    pub(crate) fn response(self, version: Version) -> Response<ProxyBody> {
        let text = match self {
            Malformed::DuplicateHost => "bad request: more than one Host header\n",
            Malformed::MissingHost => "bad request: an HTTP/1.1 request needs a Host header\n",
        };
        let mut response = plain(StatusCode::BAD_REQUEST, text);
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
    fn http1_response_closes_connection() {
        let response = Malformed::DuplicateHost.response(Version::HTTP_11);
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let response = Malformed::DuplicateHost.response(Version::HTTP_2);
        assert!(response.headers().get(header::CONNECTION).is_none());
    }
}
