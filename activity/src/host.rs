//! The host name of a request, for the domain filter and the top-domains chart.

/// Returns the lowercase host name of `request`, which is either a bare domain (from
/// the resolver) or a URL (from the proxy).
///
/// The scheme, user info, port, path, query and fragment are removed, and so is a
/// trailing dot. IPv6 literals keep their brackets. Text that is neither a domain nor
/// a URL comes back lowercased as it is, up to the first `/`, `?` or `#`.
pub fn request_host(request: &str) -> String {
    host_text(request).to_lowercase()
}

/// Returns the host name part of `request` as it is written, without lowercasing.
pub(crate) fn host_text(request: &str) -> &str {
    let after_scheme = match request.find("://") {
        Some(index) => &request[index + 3..],
        None => request,
    };
    let authority_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    let authority = &after_scheme[..authority_end];
    let host_and_port = match authority.rfind('@') {
        Some(index) => &authority[index + 1..],
        None => authority,
    };
    let host = if host_and_port.starts_with('[') {
        match host_and_port.find(']') {
            Some(index) => &host_and_port[..=index],
            None => host_and_port,
        }
    } else {
        match host_and_port.rfind(':') {
            Some(index)
                if host_and_port[index + 1..]
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
            {
                &host_and_port[..index]
            }
            _ => host_and_port,
        }
    };
    host.strip_suffix('.').unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_host_handles_domains_and_urls() {
        let cases = [
            ("Example.COM.", "example.com"),
            ("https://www.example.com/path?q=1", "www.example.com"),
            ("http://user:pw@shop.example.org:8080/x", "shop.example.org"),
            ("https://[2001:db8::1]:443/", "[2001:db8::1]"),
            ("https://example.net?x=a/b", "example.net"),
            ("https://example.net#frag", "example.net"),
            ("", ""),
        ];
        for (request, host) in cases {
            assert_eq!(request_host(request), host, "request {request:?}");
        }
    }
}
