//! Hop-by-hop header handling (RFC 9110 section 7.6.1) and headers swg removes.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that apply to one connection only, whether or not `Connection` lists them.
/// They are header names rather than strings, which the http crate would parse at
/// each lookup.
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers before a message crosses the proxy.
///
/// `TE` survives only as `trailers`, because swg forwards trailers. With
/// `keep_websocket_upgrade`, `Connection: upgrade` and `Upgrade` survive so that a
/// WebSocket handshake reaches the other side; every other header that `Connection`
/// lists is removed anyway.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap, keep_websocket_upgrade: bool) {
    // Most messages carry none of these headers, and one pass over the names costs
    // less than a lookup for each of them. Headers that `Connection` lists count
    // only when `Connection` itself is present, which the pass finds.
    let any_hop_by_hop = headers
        .keys()
        .any(|name| name == header::TE || HOP_BY_HOP.contains(name));
    if !any_hop_by_hop && !keep_websocket_upgrade {
        return;
    }

    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if keep_websocket_upgrade && name == header::UPGRADE {
            continue;
        }
        headers.remove(name);
    }

    for name in &HOP_BY_HOP {
        let keep =
            keep_websocket_upgrade && (name == header::CONNECTION || name == header::UPGRADE);
        if !keep {
            headers.remove(name);
        }
    }
    if keep_websocket_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }

    let te_trailers = headers
        .get_all(header::TE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("trailers"));
    headers.remove(header::TE);
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes headers of an origin's response that would let a browser go around the
/// proxy: `Alt-Svc` advertises HTTP/3 (QUIC) endpoints that bypass TCP interception.
pub(crate) fn remove_bypass_headers(headers: &mut HeaderMap) {
    headers.remove(header::ALT_SVC);
}

/// Whether the request asks for a WebSocket upgrade over HTTP/1.1.
pub(crate) fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let upgrade_websocket = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("websocket"))
        });
    connection_upgrade && upgrade_websocket
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn hop_by_hop_and_listed_headers_removed() {
        let mut map = headers(&[
            ("connection", "keep-alive, x-private, close"),
            ("keep-alive", "timeout=5"),
            ("x-private", "secret"),
            ("proxy-authorization", "Bearer token"),
            ("proxy-connection", "keep-alive"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "gzip, trailers"),
            ("trailer", "x-checksum"),
            ("accept", "*/*"),
        ]);
        remove_hop_by_hop(&mut map, false);

        let mut names: Vec<&str> = map.keys().map(|name| name.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, vec!["accept", "te", "trailer"]);
        assert_eq!(map.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
    }

    #[test]
    fn each_hop_by_hop_header_removed_alone() {
        for name in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "transfer-encoding",
            "upgrade",
            "te",
        ] {
            let mut map = headers(&[(name, "x"), ("accept", "*/*")]);
            remove_hop_by_hop(&mut map, false);
            let names: Vec<&str> = map.keys().map(|name| name.as_str()).collect();
            assert_eq!(names, vec!["accept"], "{name}");
        }
    }

    #[test]
    fn ordinary_headers_kept() {
        let mut map = headers(&[("accept", "*/*"), ("cookie", "a=1"), ("x-trace", "7")]);
        remove_hop_by_hop(&mut map, false);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn te_without_trailers_removed() {
        let mut map = headers(&[("te", "gzip")]);
        remove_hop_by_hop(&mut map, false);
        assert!(map.get("te").is_none());
    }

    #[test]
    fn websocket_upgrade_kept_when_asked() {
        let mut map = headers(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "websocket"),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ]);
        assert!(is_websocket_upgrade(&map));
        remove_hop_by_hop(&mut map, true);

        assert_eq!(
            map.get("connection").map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        assert_eq!(
            map.get("upgrade").map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            map.get("sec-websocket-extensions").map(|v| v.as_bytes()),
            Some(&b"permessage-deflate; client_max_window_bits"[..])
        );
    }

    #[test]
    fn alt_svc_removed() {
        let mut map = headers(&[("alt-svc", "h3=\":443\""), ("server", "origin")]);
        remove_bypass_headers(&mut map);
        assert!(map.get("alt-svc").is_none());
        assert!(map.get("server").is_some());
    }
}
