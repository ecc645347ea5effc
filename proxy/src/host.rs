//! Host names and IP literals as clients write them.
//!
//! Browsers accept IPv4 addresses in decimal-integer, octal and hexadecimal forms
//! (`2130706433`, `0177.0.0.1`, `0x7f.1`), so the proxy normalizes them the same way
//! (the WHATWG URL IPv4 parser) before the destination check sees them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A request's host, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal in any accepted form.
    Ip(IpAddr),
    /// A DNS name, lower-cased, without a trailing dot.
    Name(String),
}

/// A host that is neither a valid IP literal nor a valid DNS name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid host {0:?}")]
pub struct InvalidHost(pub String);

impl Host {
    /// Parses a host as found in a URI authority, Host header or SNI (no port).
    pub fn parse(text: &str) -> Result<Host, InvalidHost> {
        let invalid = || InvalidHost(text.to_owned());
        if let Some(inner) = text
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| invalid());
        }

        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(invalid());
        }
        if let Ok(ip) = trimmed.parse::<Ipv6Addr>() {
            return Ok(Host::Ip(IpAddr::V6(ip)));
        }
        let last_label = trimmed.rsplit('.').next().unwrap_or(trimmed);
        if ends_in_number(last_label) {
            return parse_ipv4(trimmed)
                .map(|ip| Host::Ip(IpAddr::V4(ip)))
                .ok_or_else(invalid);
        }

        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !trimmed.split('.').all(valid_label) {
            return Err(invalid());
        }
        Ok(Host::Name(trimmed.to_ascii_lowercase()))
    }

    /// The host as written in a URL authority (IPv6 in brackets).
    pub fn to_authority_host(&self) -> String {
        match self {
            Host::Ip(IpAddr::V6(ip)) => format!("[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => ip.to_string(),
            Host::Name(name) => name.clone(),
        }
    }
}

/// Splits `host[:port]` (with IPv6 in brackets) into host and optional port.
/// Returns `None` for an empty host, or a port that is not decimal digits for a
/// number from 1 to 65535: port 0 names no service, and connecting to it fails.
pub fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => {
            let digits = &authority[colon + 1..];
            // `u16::from_str` also takes a leading `+`, which RFC 3986 does not.
            if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let port = digits.parse::<u16>().ok().filter(|port| *port != 0)?;
            (&authority[..colon], Some(port))
        }
        _ => (authority, None),
    };
    if host.is_empty() {
        return None;
    }
    Some((host, port))
}

fn ends_in_number(label: &str) -> bool {
    let hex = label
        .strip_prefix("0x")
        .or_else(|| label.strip_prefix("0X"));
    match hex {
        Some(digits) => digits.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()),
    }
}

fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    // Longer inputs overflow any IPv4 part; refusing them keeps the parse in u64.
    if digits.len() > 20 {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

fn parse_ipv4(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = text.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts
        .iter()
        .map(|part| parse_ipv4_number(part))
        .collect::<Option<_>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|n| *n > 255) {
        return None;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut value = *last;
    for (index, n) in leading.iter().enumerate() {
        value += n << (8 * (3 - index as u32));
    }
    u32::try_from(value).ok().map(Ipv4Addr::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: u8, b: u8, c: u8, d: u8) -> Result<Host, InvalidHost> {
        Ok(Host::Ip(IpAddr::V4(Ipv4Addr::new(a, b, c, d))))
    }

    #[test]
    fn ipv4_forms_normalized() {
        assert_eq!(Host::parse("127.0.0.1"), v4(127, 0, 0, 1));
        assert_eq!(Host::parse("2130706434"), v4(127, 0, 0, 2));
        assert_eq!(Host::parse("0x7f000001"), v4(127, 0, 0, 1));
        assert_eq!(Host::parse("0177.0.0.1"), v4(127, 0, 0, 1));
        assert_eq!(Host::parse("0x7f.1"), v4(127, 0, 0, 1));
        assert_eq!(Host::parse("127.1"), v4(127, 0, 0, 1));
        assert_eq!(Host::parse("10.0.258"), v4(10, 0, 1, 2));
        assert_eq!(Host::parse("169.254.169.254."), v4(169, 254, 169, 254));
        assert_eq!(Host::parse("0"), v4(0, 0, 0, 0));
    }

    #[test]
    fn numeric_hosts_out_of_range_invalid() {
        for text in [
            "4294967296",
            "256.0.0.1",
            "1.2.3.4.5",
            "1.2.3.256",
            "0x100000000",
            "99999999999999999999999",
        ] {
            assert!(Host::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ipv6_literals_parsed() {
        let loopback = Ok(Host::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        assert_eq!(Host::parse("[::1]"), loopback);
        assert_eq!(Host::parse("::1"), loopback);
        assert!(matches!(
            Host::parse("[::ffff:127.0.0.1]"),
            Ok(Host::Ip(IpAddr::V6(_)))
        ));
        assert!(Host::parse("[::1").is_err());
    }

    #[test]
    fn names_lowercased_and_checked() {
        assert_eq!(
            Host::parse("WWW.Example.COM."),
            Ok(Host::Name("www.example.com".to_owned()))
        );
        assert_eq!(
            Host::parse("1.example"),
            Ok(Host::Name("1.example".to_owned()))
        );
        assert!(Host::parse("bad host").is_err());
        assert!(Host::parse("a..b").is_err());
        assert!(Host::parse("").is_err());
    }

    #[test]
    fn authority_split() {
        assert_eq!(
            split_host_port("example.com:8443"),
            Some(("example.com", Some(8443)))
        );
        assert_eq!(split_host_port("example.com"), Some(("example.com", None)));
        assert_eq!(split_host_port("[::1]:443"), Some(("[::1]", Some(443))));
        assert_eq!(split_host_port("[::1]"), Some(("[::1]", None)));
        assert_eq!(split_host_port("host:notaport"), None);
    }

    #[test]
    fn port_out_of_range_invalid() {
        for authority in [
            "example.com:0",
            "[::1]:0",
            "example.com:65536",
            "example.com:",
            "example.com:+80",
        ] {
            assert_eq!(split_host_port(authority), None, "{authority}");
        }
        assert_eq!(
            split_host_port("example.com:65535"),
            Some(("example.com", Some(65535)))
        );
    }
}
