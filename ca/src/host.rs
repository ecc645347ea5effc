//! Host names as they go into leaf certificates: normalization of SNI and
//! URL hosts to A-labels or IP addresses, with typed errors for bad input.

use std::borrow::Cow;
use std::net::IpAddr;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};

/// Longest DNS name in presentation form, without the trailing dot (RFC 1035).
const MAX_NAME_LEN: usize = 253;
/// Longest DNS label (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A host name that cannot go into a certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The name is empty.
    #[error("empty host name")]
    Empty,
    /// A label is empty (`a..b`, a leading dot, or two trailing dots).
    #[error("host {host:?} has an empty label")]
    EmptyLabel {
        /// The host as given.
        host: String,
    },
    /// A label is longer than 63 octets in A-label form.
    #[error("host {host:?} has a label of {length} octets; at most 63 are allowed")]
    LabelTooLong {
        /// The host as given.
        host: String,
        /// Octets of the longest label.
        length: usize,
    },
    /// The name is longer than 253 octets in A-label form.
    #[error("host {host:?} is {length} octets long in A-label form; at most 253 are allowed")]
    NameTooLong {
        /// The host as given.
        host: String,
        /// Octets of the A-label form.
        length: usize,
    },
    /// IDNA (UTS #46) processing rejected the name, or it contains a
    /// character other than letters, digits, `-` and `_`.
    #[error("host {host:?} is not a valid domain name (IDNA UTS #46 rejects it or it contains characters other than letters, digits, '-' and '_')")]
    Invalid {
        /// The host as given.
        host: String,
    },
}

/// A normalized host: a lowercase A-label DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafHost<'a> {
    /// A DNS name in lowercase A-label form, without a trailing dot.
    Dns(Cow<'a, str>),
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
}

impl LeafHost<'_> {
    /// Returns the text form used as cache key and common name.
    pub fn key(&self) -> Cow<'_, str> {
        match self {
            Self::Dns(name) => Cow::Borrowed(name),
            Self::Ip(ip) => Cow::Owned(ip.to_string()),
        }
    }
}

/// Normalizes `host` (a DNS name in Unicode or ASCII, with or without a
/// trailing dot, or an IP literal with or without brackets).
///
/// The common case, an already lowercase ASCII name with no `xn--` label, is
/// checked in place and borrowed, so a cache lookup allocates nothing.
pub fn normalize(host: &str) -> Result<LeafHost<'_>, HostError> {
    if host.is_empty() {
        return Err(HostError::Empty);
    }
    if let Some(ip) = parse_ip(host) {
        return Ok(LeafHost::Ip(ip));
    }

    let name = host.strip_suffix('.').unwrap_or(host);
    if is_plain_lowercase(name) {
        check_lengths(name, host)?;
        return Ok(LeafHost::Dns(Cow::Borrowed(name)));
    }

    // Full UTS #46 ToASCII, as browsers apply it to URL hosts (no hyphen
    // position checks, underscores kept for the many real hosts that use them).
    let ascii = Uts46::new()
        .to_ascii(
            name.as_bytes(),
            AsciiDenyList::URL,
            Hyphens::Allow,
            DnsLength::Ignore,
        )
        .map_err(|_| HostError::Invalid {
            host: host.to_owned(),
        })?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii).to_owned();
    if !ascii.bytes().all(|b| is_name_byte(b) || b == b'.') {
        return Err(HostError::Invalid {
            host: host.to_owned(),
        });
    }
    check_lengths(&ascii, host)?;
    Ok(LeafHost::Dns(Cow::Owned(ascii)))
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    host.parse().ok()
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
}

/// Reports whether UTS #46 would return `name` unchanged: lowercase letters,
/// digits, `-`, `_` and dots, with no punycode label that would need decoding
/// to be validated.
fn is_plain_lowercase(name: &str) -> bool {
    let bytes = name.as_bytes();
    if !bytes.iter().all(|&b| is_name_byte(b) || b == b'.') {
        return false;
    }
    !name.split('.').any(|label| label.starts_with("xn--"))
}

fn check_lengths(name: &str, host: &str) -> Result<(), HostError> {
    if name.len() > MAX_NAME_LEN {
        return Err(HostError::NameTooLong {
            host: host.to_owned(),
            length: name.len(),
        });
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(HostError::EmptyLabel {
                host: host.to_owned(),
            });
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(HostError::LabelTooLong {
                host: host.to_owned(),
                length: label.len(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dns(host: &str) -> String {
        match normalize(host) {
            Ok(LeafHost::Dns(name)) => name.into_owned(),
            other => panic!("{host:?} normalized to {other:?}"),
        }
    }

    #[test]
    fn lowercase_ascii_is_borrowed_unchanged() {
        assert!(matches!(
            normalize("www.example.com"),
            Ok(LeafHost::Dns(Cow::Borrowed("www.example.com")))
        ));
        assert!(matches!(
            normalize("a_b.example.com."),
            Ok(LeafHost::Dns(Cow::Borrowed("a_b.example.com")))
        ));
    }

    #[test]
    fn unicode_and_uppercase_become_lowercase_a_labels() {
        assert_eq!(dns("Bücher.Example"), "xn--bcher-kva.example");
        assert_eq!(dns("WWW.EXAMPLE.COM."), "www.example.com");
        assert_eq!(dns("xn--bcher-kva.example"), "xn--bcher-kva.example");
        assert_eq!(dns("パリ.jp"), "xn--odk7b.jp");
    }

    #[test]
    fn ip_literals_with_and_without_brackets() {
        assert_eq!(
            normalize("127.0.0.1"),
            Ok(LeafHost::Ip("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(normalize("[::1]"), Ok(LeafHost::Ip("::1".parse().unwrap())));
        assert_eq!(
            normalize("2001:db8::1"),
            Ok(LeafHost::Ip("2001:db8::1".parse().unwrap()))
        );
        assert_eq!(normalize("[::1]").unwrap().key(), "::1");
    }

    #[test]
    fn invalid_names_return_typed_errors() {
        assert_eq!(normalize(""), Err(HostError::Empty));
        assert!(matches!(
            normalize("a..example"),
            Err(HostError::EmptyLabel { .. })
        ));
        assert!(matches!(
            normalize(".example"),
            Err(HostError::EmptyLabel { .. })
        ));
        assert!(matches!(
            normalize("example.."),
            Err(HostError::EmptyLabel { .. })
        ));
        let long_label = format!("{}.example", "a".repeat(64));
        assert_eq!(
            normalize(&long_label),
            Err(HostError::LabelTooLong {
                host: long_label.clone(),
                length: 64
            })
        );
        let long_name = vec!["a".repeat(60); 5].join(".");
        assert!(matches!(
            normalize(&long_name),
            Err(HostError::NameTooLong { length: 304, .. })
        ));
        for bad in [
            "exa mple.com",
            "a/b.com",
            "*.example.com",
            "xn--a.example",
            "a@b.com",
            "[::1",
            "ex\u{0}ample.com",
        ] {
            assert!(
                matches!(normalize(bad), Err(HostError::Invalid { .. })),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn name_of_exactly_253_octets_is_accepted() {
        let name = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(name.len(), 253);
        assert_eq!(dns(&name), name);
    }
}
