//! The target of a request: scheme, host, port and the full URL that policy judges.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::uri::{Authority, PathAndQuery};
use http::{header, Method, Request, Uri};

use crate::host::{split_host_port, Host, InvalidHost};

/// The request target of `OPTIONS *` (RFC 9112 section 3.2.4), which applies to the
/// server in general rather than one resource.
pub(crate) const ASTERISK_FORM: &str = "*";

/// The reason a request names no target that swg accepts. No variant contains user
/// information, so each may be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidTarget {
    /// No authority in the URI, no `Host` header and no fallback authority.
    #[error("no host in the request")]
    MissingHost,
    /// The URI authority or `Host` header carries user information
    /// (`user:password@`). RFC 9110 section 4.2.4 advises recipients to treat it as
    /// an error, and `Host` has no place for it. The text is not kept, because it
    /// may hold a password.
    #[error("user information in the request's authority")]
    UserInformation,
    /// The port is not a number from 1 to 65535.
    #[error("invalid port in authority {0:?}")]
    InvalidPort(String),
    /// The host is neither an IP literal nor a DNS name.
    #[error(transparent)]
    InvalidHost(#[from] InvalidHost),
    /// The asterisk-form with a method other than OPTIONS, which RFC 9112 section
    /// 3.2.4 reserves it for.
    #[error("asterisk-form request target with method {0}")]
    AsteriskForm(Method),
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// The scheme as written in a URL.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// The scheme towards the origin.
    pub(crate) scheme: Scheme,
    /// The normalized host.
    pub(crate) host: Host,
    /// The port towards the origin.
    pub(crate) port: u16,
    /// The path and query, `/` when the request has none, or [`ASTERISK_FORM`] for
    /// `OPTIONS *`.
    pub(crate) path_and_query: String,
}

impl Target {
    /// Derives the target of a request.
    ///
    /// The host comes from the request URI's authority (absolute form, HTTP/2
    /// `:authority`), then the `Host` header, then `fallback_authority` (a CONNECT
    /// authority or the SNI). Without an explicit port, `fallback_port` applies (the
    /// CONNECT port), then the scheme's default. An authority with user information
    /// is rejected. `OPTIONS *` keeps its asterisk-form, and any other method with
    /// that form is rejected.
    pub(crate) fn of_request<B>(
        request: &Request<B>,
        scheme: Scheme,
        fallback_authority: Option<&str>,
        fallback_port: Option<u16>,
    ) -> Result<Target, InvalidTarget> {
        let authority = request
            .uri()
            .authority()
            .map(|authority| authority.as_str())
            .or_else(|| {
                request
                    .headers()
                    .get(header::HOST)
                    .and_then(|value| value.to_str().ok())
            })
            .or(fallback_authority)
            .ok_or(InvalidTarget::MissingHost)?;
        if authority.contains('@') {
            return Err(InvalidTarget::UserInformation);
        }
        let (host_text, port) = split_host_port(authority)
            .ok_or_else(|| InvalidTarget::InvalidPort(authority.to_owned()))?;
        let host = Host::parse(host_text)?;
        let port = port.or(fallback_port).unwrap_or(scheme.default_port());
        let path_and_query = match request.uri().path_and_query().map(PathAndQuery::as_str) {
            Some(ASTERISK_FORM) if request.method() == Method::OPTIONS => ASTERISK_FORM,
            Some(ASTERISK_FORM) => {
                return Err(InvalidTarget::AsteriskForm(request.method().clone()))
            }
            Some(path) if path.starts_with('/') => path,
            _ => "/",
        }
        .to_owned();
        Ok(Target {
            scheme,
            host,
            port,
            path_and_query,
        })
    }

    /// `host` or `host:port` when the port is not the scheme's default.
    pub(crate) fn authority(&self) -> String {
        let mut authority = String::with_capacity(self.authority_len());
        self.push_authority(&mut authority);
        authority
    }

    /// Appends the authority to `out`. Built piece by piece because this runs for
    /// every request, where `format!` would allocate and regrow several strings.
    fn push_authority(&self, out: &mut String) {
        match &self.host {
            Host::Name(name) => out.push_str(name),
            Host::Ip(IpAddr::V4(ip)) => {
                let _ = write!(out, "{ip}");
            }
            Host::Ip(IpAddr::V6(ip)) => {
                let _ = write!(out, "[{ip}]");
            }
        }
        if self.port != self.scheme.default_port() {
            let _ = write!(out, ":{}", self.port);
        }
    }

    /// Returns an upper bound of the authority's length, counting the longest IP
    /// text (IPv6 in brackets, 41 bytes) and the longest port text (`:65535`).
    fn authority_len(&self) -> usize {
        let host = match &self.host {
            Host::Name(name) => name.len(),
            Host::Ip(_) => 41,
        };
        host + 6
    }

    /// `scheme://authority` of this target, the origin of a same-site redirect.
    pub(crate) fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority())
    }

    /// `scheme://other_host[:port]`: another host reached with this target's scheme
    /// and port, which is how a browser that reached the landing on this port reaches
    /// the auth host.
    pub(crate) fn origin_on(&self, other_host: &str) -> String {
        if self.port == self.scheme.default_port() {
            format!("{}://{other_host}", self.scheme.as_str())
        } else {
            format!("{}://{other_host}:{}", self.scheme.as_str(), self.port)
        }
    }

    /// The path without the query.
    pub(crate) fn path(&self) -> &str {
        self.path_and_query
            .split_once('?')
            .map_or(self.path_and_query.as_str(), |(path, _)| path)
    }

    /// The value of query parameter `name`, decoded, if it occurs exactly once.
    /// Duplicated parameters are treated as absent, so that no single copy of a
    /// forged pair is preferred over another.
    pub(crate) fn query_parameter(&self, name: &str) -> Option<String> {
        let (_, query) = self.path_and_query.split_once('?')?;
        let mut values = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned());
        let first = values.next()?;
        values.next().is_none().then_some(first)
    }

    /// Tells whether the target is the asterisk-form of `OPTIONS *`.
    pub(crate) fn is_asterisk_form(&self) -> bool {
        self.path_and_query == ASTERISK_FORM
    }

    /// The full URL that policy decides on, pages show and the activity log records.
    /// For `OPTIONS *` it is the effective request URI of RFC 9112 section 3.3,
    /// whose path is empty (`https://example.com`), so that policy judges the site
    /// and the log keeps it apart from `OPTIONS /`.
    pub(crate) fn url(&self) -> String {
        let scheme = self.scheme.as_str();
        let mut url = String::with_capacity(
            scheme.len() + 3 + self.authority_len() + self.path_and_query.len(),
        );
        url.push_str(scheme);
        url.push_str("://");
        self.push_authority(&mut url);
        if !self.is_asterisk_form() {
            url.push_str(&self.path_and_query);
        }
        url
    }

    /// Builds the absolute URI that the upstream client sends the request to. For
    /// `OPTIONS *` its path is `*`, which hyper-util writes as the asterisk-form
    /// to an HTTP/1.1 origin and h2 sends as `:path *` to an HTTP/2 origin.
    pub(crate) fn upstream_uri(&self) -> Result<Uri, http::Error> {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(match self.scheme {
            Scheme::Http => http::uri::Scheme::HTTP,
            Scheme::Https => http::uri::Scheme::HTTPS,
        });
        parts.authority = Some(Authority::try_from(self.authority())?);
        parts.path_and_query = Some(PathAndQuery::try_from(self.path_and_query.as_str())?);
        Ok(Uri::from_parts(parts)?)
    }

    /// The host name as policy, hints and logs see it (no brackets, no port).
    pub(crate) fn host_name(&self) -> String {
        match &self.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uri: &str, host: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header("host", host);
        }
        builder.body(()).expect("test requests are valid")
    }

    #[test]
    fn host_header_names_target() {
        let target = Target::of_request(
            &request("/a?b=1", Some("Example.COM")),
            Scheme::Https,
            Some("sni.test"),
            None,
        )
        .expect("valid target");
        assert_eq!(target.url(), "https://example.com/a?b=1");
        assert_eq!(target.port, 443);
    }

    #[test]
    fn absolute_form_wins_over_host_header() {
        let target = Target::of_request(
            &request("http://a.test:8080/x", Some("b.test")),
            Scheme::Http,
            None,
            None,
        )
        .expect("valid target");
        assert_eq!(target.url(), "http://a.test:8080/x");
    }

    #[test]
    fn connect_port_applies_without_explicit_port() {
        let target = Target::of_request(
            &request("/", Some("a.test")),
            Scheme::Https,
            None,
            Some(8443),
        )
        .expect("valid target");
        assert_eq!(target.url(), "https://a.test:8443/");
    }

    #[test]
    fn decimal_host_normalized_in_url() {
        let target =
            Target::of_request(&request("/", Some("2130706434")), Scheme::Http, None, None)
                .expect("valid target");
        assert_eq!(target.url(), "http://127.0.0.2/");
    }

    #[test]
    fn ipv6_host_bracketed_in_authority_and_url() {
        let target = Target::of_request(
            &request("/p?q", Some("[2001:DB8::1]:8443")),
            Scheme::Https,
            None,
            None,
        )
        .expect("valid target");
        assert_eq!(target.authority(), "[2001:db8::1]:8443");
        assert_eq!(target.url(), "https://[2001:db8::1]:8443/p?q");
        assert_eq!(target.host_name(), "2001:db8::1");
    }

    #[test]
    fn default_port_left_out_of_authority() {
        let target =
            Target::of_request(&request("/", Some("a.test:443")), Scheme::Https, None, None)
                .expect("valid target");
        assert_eq!(target.authority(), "a.test");
    }

    #[test]
    fn missing_host_uses_fallback_or_fails() {
        let target = Target::of_request(&request("/", None), Scheme::Https, Some("sni.test"), None)
            .expect("valid target");
        assert_eq!(target.host_name(), "sni.test");
        assert!(Target::of_request(&request("/", None), Scheme::Https, None, None).is_err());
    }

    #[test]
    fn user_information_rejected_without_its_text() {
        for (uri, host) in [
            ("http://user:secret@a.test/", None),
            ("/", Some("user:secret@a.test")),
            ("/", Some("user:secret@a.test:8080")),
        ] {
            let error = Target::of_request(&request(uri, host), Scheme::Http, None, None)
                .expect_err("user information is rejected");
            assert_eq!(error, InvalidTarget::UserInformation, "{uri} {host:?}");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }

    #[test]
    fn options_asterisk_kept_in_asterisk_form() {
        let options = Request::builder()
            .method(Method::OPTIONS)
            .uri("*")
            .header("host", "a.test:8080")
            .body(())
            .expect("test requests are valid");
        let target = Target::of_request(&options, Scheme::Http, None, None).expect("valid target");
        assert!(target.is_asterisk_form());
        assert_eq!(target.url(), "http://a.test:8080");
        let uri = target.upstream_uri().expect("valid upstream URI");
        assert_eq!(uri.path_and_query().map(|path| path.as_str()), Some("*"));
        assert_eq!(
            uri.authority().map(|authority| authority.as_str()),
            Some("a.test:8080")
        );
    }

    #[test]
    fn asterisk_form_with_other_method_rejected() {
        let get = request("*", Some("a.test"));
        assert_eq!(
            Target::of_request(&get, Scheme::Http, None, None).map(|target| target.url()),
            Err(InvalidTarget::AsteriskForm(Method::GET))
        );
    }

    #[test]
    fn upstream_uri_matches_url() {
        let target = Target::of_request(
            &request("/p?q=1", Some("[2001:DB8::1]:8443")),
            Scheme::Https,
            None,
            None,
        )
        .expect("valid target");
        let uri = target.upstream_uri().expect("valid upstream URI");
        assert_eq!(uri.to_string(), target.url());
    }
}
