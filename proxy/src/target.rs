//! The target of a request: scheme, host, port and the full URL that policy judges.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header;
use http::Request;

use crate::host::{split_host_port, Host, InvalidHost};

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
    /// The path and query, `/` when the request has none.
    pub(crate) path_and_query: String,
}

impl Target {
    /// Derives the target of a request.
    ///
    /// The host comes from the request URI's authority (absolute form, HTTP/2
    /// `:authority`), then the `Host` header, then `fallback_authority` (a CONNECT
    /// authority or the SNI). Without an explicit port, `fallback_port` applies (the
    /// CONNECT port), then the scheme's default.
    pub(crate) fn of_request<B>(
        request: &Request<B>,
        scheme: Scheme,
        fallback_authority: Option<&str>,
        fallback_port: Option<u16>,
    ) -> Result<Target, InvalidHost> {
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
            .ok_or_else(|| InvalidHost(String::new()))?;
        let (host_text, port) =
            split_host_port(authority).ok_or_else(|| InvalidHost(authority.to_owned()))?;
        let host = Host::parse(host_text)?;
        let port = port.or(fallback_port).unwrap_or(scheme.default_port());
        let path_and_query = request
            .uri()
            .path_and_query()
            .map(|path| path.as_str())
            .filter(|path| path.starts_with('/'))
            .unwrap_or("/")
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

    /// The full URL that policy decides on.
    pub(crate) fn url(&self) -> String {
        let scheme = self.scheme.as_str();
        let mut url = String::with_capacity(
            scheme.len() + 3 + self.authority_len() + self.path_and_query.len(),
        );
        url.push_str(scheme);
        url.push_str("://");
        self.push_authority(&mut url);
        url.push_str(&self.path_and_query);
        url
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
}
