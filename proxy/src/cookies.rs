//! swg's own cookies on intercepted sites: taking every `__swg_*` cookie out of a
//! request before it goes upstream, and building swg's `Set-Cookie` values.
//!
//! The names start with `__swg_`, which sites do not use, so swg's cookies never
//! overwrite a site's cookies. Every `__swg_*` pair is removed from requests, so an
//! origin never sees one, not even a cookie of that name that it set itself.
//! `Set-Cookie` headers from origins pass unchanged: a site that sets `__swg_id`
//! only makes swg's check fail, because every value swg reads is signed.

use http::header::{self, HeaderMap, HeaderValue};

/// The host-only identity cookie on a site.
pub(crate) const IDENTITY_COOKIE: &str = "__swg_id";
/// The warn acknowledgement cookie, for a registrable domain.
pub(crate) const ACK_COOKIE: &str = "__swg_ack";
/// The long-lived device cookie on the auth host.
pub(crate) const GATEWAY_COOKIE: &str = "__swg_gw";

const RESERVED_NAME_PREFIX: &[u8] = b"__swg_";
/// Values kept per swg cookie name; further duplicates are ignored, so a flood of
/// cookies costs no more than this many signature checks.
const MAX_VALUES_PER_NAME: usize = 4;

/// The values of swg's cookies found in one request, in the order sent.
#[derive(Debug, Default, Clone)]
pub(crate) struct SwgCookies {
    /// `__swg_id` values.
    pub(crate) identity: Vec<String>,
    /// `__swg_ack` values.
    pub(crate) ack: Vec<String>,
    /// `__swg_gw` values.
    pub(crate) gateway: Vec<String>,
}

impl SwgCookies {
    /// Removes every `__swg_*` pair from the `Cookie` headers in `headers` and
    /// returns swg's values.
    ///
    /// HTTP/2 clients may split cookies over several `cookie` fields (RFC 9113
    /// section 8.2.3). When anything is removed, the remaining pairs are joined into
    /// one `Cookie` header, which suits HTTP/1.1 and HTTP/2 origins alike. Headers
    /// without swg cookies are left exactly as they were.
    pub(crate) fn take(headers: &mut HeaderMap) -> SwgCookies {
        let mut found = SwgCookies::default();
        let mut site_pairs: Vec<&[u8]> = Vec::new();
        let mut removed_any = false;
        for value in headers.get_all(header::COOKIE) {
            for pair in value.as_bytes().split(|byte| *byte == b';') {
                let pair = pair.trim_ascii();
                if pair.is_empty() {
                    continue;
                }
                let (name, cookie_value) = match pair.iter().position(|byte| *byte == b'=') {
                    Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
                    None => (pair, &[][..]),
                };
                if !is_reserved_name(name) {
                    site_pairs.push(pair);
                    continue;
                }
                removed_any = true;
                found.keep(name, cookie_value);
            }
        }
        if !removed_any {
            return found;
        }

        let joined = site_pairs.join(&b"; "[..]);
        headers.remove(header::COOKIE);
        if !joined.is_empty() {
            // Every byte comes from a valid header value, and "; " is valid too.
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                headers.insert(header::COOKIE, value);
            }
        }
        found
    }

    fn keep(&mut self, name: &[u8], value: &[u8]) {
        let list = match name {
            b"__swg_id" => &mut self.identity,
            b"__swg_ack" => &mut self.ack,
            b"__swg_gw" => &mut self.gateway,
            _ => return,
        };
        if list.len() >= MAX_VALUES_PER_NAME {
            return;
        }
        // Signed values are ASCII; anything else can never verify.
        if let Ok(text) = std::str::from_utf8(value) {
            if !text.is_empty() {
                list.push(text.to_owned());
            }
        }
    }
}

fn is_reserved_name(name: &[u8]) -> bool {
    name.len() >= RESERVED_NAME_PREFIX.len()
        && name[..RESERVED_NAME_PREFIX.len()].eq_ignore_ascii_case(RESERVED_NAME_PREFIX)
}

/// Builds a `Set-Cookie` value for one of swg's cookies: `Secure; HttpOnly;
/// SameSite=Lax` on path `/`, host-only unless `domain` is given.
///
/// `value` is a signed value (base64url characters and dots), so it needs no quoting.
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    max_age_secs: u64,
    domain: Option<&str>,
) -> Option<HeaderValue> {
    let domain = domain
        .map(|domain| format!("; Domain={domain}"))
        .unwrap_or_default();
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age_secs}{domain}; Secure; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::COOKIE, HeaderValue::from_static(value));
        }
        headers
    }

    fn cookie_values(headers: &HeaderMap) -> Vec<String> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .map(|value| value.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn swg_cookies_removed_and_site_cookies_site_pairs() {
        let mut headers = headers(&["a=1; __swg_id=v1.id.x; b=2", "__swg_ack=v1.ack.y;c=3"]);
        let found = SwgCookies::take(&mut headers);
        assert_eq!(found.identity, vec!["v1.id.x"]);
        assert_eq!(found.ack, vec!["v1.ack.y"]);
        assert_eq!(cookie_values(&headers), vec!["a=1; b=2; c=3"]);
    }

    #[test]
    fn only_swg_cookies_leaves_no_cookie_header() {
        let mut headers = headers(&["__swg_id=x", "__SWG_other=y"]);
        SwgCookies::take(&mut headers);
        assert!(headers.get(header::COOKIE).is_none());
    }

    #[test]
    fn headers_without_swg_cookies_unchanged() {
        let mut headers = headers(&["a=1;b=2", "c=3"]);
        SwgCookies::take(&mut headers);
        assert_eq!(cookie_values(&headers), vec!["a=1;b=2", "c=3"]);
    }

    #[test]
    fn duplicates_bounded_and_empty_values_ignored() {
        let mut headers =
            headers(&["__swg_id=1; __swg_id=2; __swg_id=; __swg_id=3; __swg_id=4; __swg_id=5"]);
        let found = SwgCookies::take(&mut headers);
        assert_eq!(found.identity, vec!["1", "2", "3", "4"]);
    }

    #[test]
    fn site_cookie_with_similar_name_site_pairs() {
        let mut headers = headers(&["swg_id=1; __swgid=2; __swg_id=3"]);
        SwgCookies::take(&mut headers);
        assert_eq!(cookie_values(&headers), vec!["swg_id=1; __swgid=2"]);
    }

    #[test]
    fn set_cookie_attributes() {
        let value = set_cookie(IDENTITY_COOKIE, "v1.id.abc", 60, None).unwrap();
        assert_eq!(
            value,
            "__swg_id=v1.id.abc; Path=/; Max-Age=60; Secure; HttpOnly; SameSite=Lax"
        );
        let value = set_cookie(ACK_COOKIE, "v", 3600, Some("example.com")).unwrap();
        assert_eq!(
            value,
            "__swg_ack=v; Path=/; Max-Age=3600; Domain=example.com; Secure; HttpOnly; SameSite=Lax"
        );
    }
}
