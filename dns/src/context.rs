//! The per-query context option: an EDNS(0) option that the device agent adds to every
//! query to say which app asked.
//!
//! Wire format of the option value: the magic `SWG1`, then TLVs of `type: u8`,
//! `len: u16` (big-endian) and `len` bytes of value. Known types are `1` app bundle id
//! (UTF-8), `2` app class (one byte: `0` unknown, `1` browser, `2` app, `3` trusted app)
//! and `3` device private IP (4 or 16 bytes). Unknown types are skipped so the agent can
//! add fields without breaking older servers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EDNS option code of the context option (local/experimental range of RFC 6891).
pub const CONTEXT_OPTION_CODE: u16 = 65431;

/// The four bytes every context option value starts with.
pub const CONTEXT_MAGIC: &[u8; 4] = b"SWG1";

const TLV_BUNDLE_ID: u8 = 1;
const TLV_APP_CLASS: u8 = 2;
const TLV_PRIVATE_IP: u8 = 3;

/// Maximum length of a bundle id accepted from the option; longer values are rejected
/// because no real bundle id comes near it and the id ends up in logs and events.
pub const MAX_BUNDLE_ID_LEN: usize = 255;

/// The class of the app that sent a query, as it decides steering (see `docs/dns.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AppClass {
    /// Not known: neither a bundle id nor a class hint came with the query.
    Unknown,
    /// A web browser: every allowed domain goes to the proxy.
    Browser,
    /// An ordinary app: sent to the proxy only for suspicious domains.
    App,
    /// A trusted app: never sent to the proxy, still filtered and logged.
    TrustedApp,
}

impl AppClass {
    /// Returns the wire byte of this class in the context option.
    pub fn to_byte(self) -> u8 {
        match self {
            AppClass::Unknown => 0,
            AppClass::Browser => 1,
            AppClass::App => 2,
            AppClass::TrustedApp => 3,
        }
    }

    /// Parses the wire byte of the context option; `None` for an undefined value.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(AppClass::Unknown),
            1 => Some(AppClass::Browser),
            2 => Some(AppClass::App),
            3 => Some(AppClass::TrustedApp),
            _ => None,
        }
    }

    /// Returns the lower-case name used in events and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AppClass::Unknown => "unknown",
            AppClass::Browser => "browser",
            AppClass::App => "app",
            AppClass::TrustedApp => "trusted_app",
        }
    }
}

/// The decoded context option.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryContext {
    /// Bundle id of the app that asked, e.g. `com.apple.mobilesafari`.
    pub bundle_id: Option<String>,
    /// The agent's own idea of the app class; a hint used only without a bundle id.
    pub class_hint: Option<AppClass>,
    /// The device's private (LAN) address.
    pub private_ip: Option<IpAddr>,
}

/// Why a context option value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    /// The value does not start with `SWG1`.
    #[error("context option does not start with the magic SWG1")]
    BadMagic,
    /// A TLV header or value runs past the end of the option.
    #[error("context option TLV of type {tlv_type} is truncated")]
    Truncated {
        /// Type byte of the truncated TLV (0 when even the type byte is missing).
        tlv_type: u8,
    },
    /// The bundle id is not UTF-8, is empty or is longer than [`MAX_BUNDLE_ID_LEN`].
    #[error(
        "context option bundle id is invalid (empty, not UTF-8 or over {MAX_BUNDLE_ID_LEN} bytes)"
    )]
    InvalidBundleId,
    /// The app class TLV is not one byte with a defined value.
    #[error("context option app class is invalid")]
    InvalidAppClass,
    /// The private IP TLV is neither 4 nor 16 bytes.
    #[error("context option private IP has length {0}, expected 4 or 16")]
    InvalidPrivateIp(usize),
    /// The same TLV type appears twice.
    #[error("context option repeats TLV type {0}")]
    Duplicate(u8),
}

impl QueryContext {
    /// Encodes the option value (magic and TLVs), as the agent sends it.
    ///
    /// A bundle id longer than [`MAX_BUNDLE_ID_LEN`] is cut at a character boundary
    /// so the output always decodes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + 64);
        out.extend_from_slice(CONTEXT_MAGIC);

        if let Some(bundle_id) = &self.bundle_id {
            let mut end = bundle_id.len().min(MAX_BUNDLE_ID_LEN);
            while !bundle_id.is_char_boundary(end) {
                end -= 1;
            }
            push_tlv(&mut out, TLV_BUNDLE_ID, &bundle_id.as_bytes()[..end]);
        }
        if let Some(class) = self.class_hint {
            push_tlv(&mut out, TLV_APP_CLASS, &[class.to_byte()]);
        }
        match self.private_ip {
            Some(IpAddr::V4(ip)) => push_tlv(&mut out, TLV_PRIVATE_IP, &ip.octets()),
            Some(IpAddr::V6(ip)) => push_tlv(&mut out, TLV_PRIVATE_IP, &ip.octets()),
            None => {}
        }
        out
    }

    /// Decodes an option value. Unknown TLV types are skipped.
    pub fn decode(value: &[u8]) -> Result<Self, ContextError> {
        let Some(mut rest) = value.strip_prefix(CONTEXT_MAGIC.as_slice()) else {
            return Err(ContextError::BadMagic);
        };

        let mut context = QueryContext::default();
        while !rest.is_empty() {
            let (tlv_type, body, tail) = split_tlv(rest)?;
            rest = tail;
            match tlv_type {
                TLV_BUNDLE_ID => {
                    if context.bundle_id.is_some() {
                        return Err(ContextError::Duplicate(tlv_type));
                    }
                    context.bundle_id = Some(decode_bundle_id(body)?);
                }
                TLV_APP_CLASS => {
                    if context.class_hint.is_some() {
                        return Err(ContextError::Duplicate(tlv_type));
                    }
                    let [byte] = body else {
                        return Err(ContextError::InvalidAppClass);
                    };
                    context.class_hint =
                        Some(AppClass::from_byte(*byte).ok_or(ContextError::InvalidAppClass)?);
                }
                TLV_PRIVATE_IP => {
                    if context.private_ip.is_some() {
                        return Err(ContextError::Duplicate(tlv_type));
                    }
                    context.private_ip = Some(decode_ip(body)?);
                }
                _ => {}
            }
        }
        Ok(context)
    }
}

fn push_tlv(out: &mut Vec<u8>, tlv_type: u8, value: &[u8]) {
    let len = u16::try_from(value.len()).expect("TLV values are cut to at most 255 bytes");
    out.push(tlv_type);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(value);
}

/// Splits one TLV off the front: returns its type, its value and the remaining bytes.
fn split_tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), ContextError> {
    let [tlv_type, len_high, len_low, rest @ ..] = input else {
        let tlv_type = input.first().copied().unwrap_or(0);
        return Err(ContextError::Truncated { tlv_type });
    };
    let len = usize::from(u16::from_be_bytes([*len_high, *len_low]));
    if rest.len() < len {
        return Err(ContextError::Truncated {
            tlv_type: *tlv_type,
        });
    }
    let (body, tail) = rest.split_at(len);
    Ok((*tlv_type, body, tail))
}

fn decode_bundle_id(body: &[u8]) -> Result<String, ContextError> {
    if body.is_empty() || body.len() > MAX_BUNDLE_ID_LEN {
        return Err(ContextError::InvalidBundleId);
    }
    let text = std::str::from_utf8(body).map_err(|_| ContextError::InvalidBundleId)?;
    if text.chars().any(char::is_control) {
        return Err(ContextError::InvalidBundleId);
    }
    Ok(text.to_owned())
}

fn decode_ip(body: &[u8]) -> Result<IpAddr, ContextError> {
    if let Ok(octets) = <[u8; 4]>::try_from(body) {
        return Ok(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Ok(octets) = <[u8; 16]>::try_from(body) {
        return Ok(IpAddr::V6(Ipv6Addr::from(octets)));
    }
    Err(ContextError::InvalidPrivateIp(body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full_context() -> QueryContext {
        QueryContext {
            bundle_id: Some("com.apple.mobilesafari".to_owned()),
            class_hint: Some(AppClass::Browser),
            private_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 1, 20))),
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let context = full_context();
        assert_eq!(QueryContext::decode(&context.encode()), Ok(context));

        let v6 = QueryContext {
            private_ip: Some(
                "fd00::20"
                    .parse()
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ),
            ..QueryContext::default()
        };
        assert_eq!(QueryContext::decode(&v6.encode()), Ok(v6));
    }

    #[test]
    fn encoded_bytes_match_the_wire_format() {
        let context = QueryContext {
            bundle_id: Some("a.b".to_owned()),
            class_hint: Some(AppClass::TrustedApp),
            private_ip: None,
        };
        assert_eq!(
            context.encode(),
            b"SWG1\x01\x00\x03a.b\x02\x00\x01\x03".to_vec()
        );
    }

    #[test]
    fn magic_only_decodes_to_empty_context() {
        assert_eq!(QueryContext::decode(b"SWG1"), Ok(QueryContext::default()));
    }

    #[test]
    fn wrong_magic_is_rejected() {
        assert_eq!(
            QueryContext::decode(b"SWG2\x01\x00\x01a"),
            Err(ContextError::BadMagic)
        );
        assert_eq!(QueryContext::decode(b"SW"), Err(ContextError::BadMagic));
        assert_eq!(QueryContext::decode(b""), Err(ContextError::BadMagic));
    }

    #[test]
    fn truncation_inside_a_tlv_is_rejected() {
        let full = full_context().encode();
        // TLV boundaries: after the magic, the bundle id (3 + 22), the class (3 + 1).
        let boundaries = [4, 29, 33];
        for cut in 4..full.len() {
            let result = QueryContext::decode(&full[..cut]);
            if boundaries.contains(&cut) {
                assert!(result.is_ok(), "cut at TLV boundary {cut} gave {result:?}");
            } else {
                assert!(
                    matches!(result, Err(ContextError::Truncated { .. })),
                    "cut at {cut} gave {result:?}"
                );
            }
        }
    }

    #[test]
    fn huge_length_is_truncated_not_allocated() {
        let value = b"SWG1\x01\xff\xffabc";
        assert_eq!(
            QueryContext::decode(value),
            Err(ContextError::Truncated { tlv_type: 1 })
        );
    }

    #[test]
    fn oversized_bundle_id_is_rejected() {
        let mut value = b"SWG1\x01\x01\x00".to_vec();
        value.extend(std::iter::repeat_n(b'a', 256));
        assert_eq!(
            QueryContext::decode(&value),
            Err(ContextError::InvalidBundleId)
        );
    }

    #[test]
    fn invalid_fields_are_rejected() {
        assert_eq!(
            QueryContext::decode(b"SWG1\x01\x00\x02\xff\xfe"),
            Err(ContextError::InvalidBundleId)
        );
        assert_eq!(
            QueryContext::decode(b"SWG1\x01\x00\x00"),
            Err(ContextError::InvalidBundleId)
        );
        assert_eq!(
            QueryContext::decode(b"SWG1\x02\x00\x01\x09"),
            Err(ContextError::InvalidAppClass)
        );
        assert_eq!(
            QueryContext::decode(b"SWG1\x02\x00\x02\x01\x01"),
            Err(ContextError::InvalidAppClass)
        );
        assert_eq!(
            QueryContext::decode(b"SWG1\x03\x00\x05\x01\x02\x03\x04\x05"),
            Err(ContextError::InvalidPrivateIp(5))
        );
        assert_eq!(
            QueryContext::decode(b"SWG1\x02\x00\x01\x01\x02\x00\x01\x02"),
            Err(ContextError::Duplicate(2))
        );
    }

    #[test]
    fn unknown_tlv_types_are_skipped() {
        let value = b"SWG1\x09\x00\x02zz\x01\x00\x01x";
        let context = QueryContext::decode(value);
        assert_eq!(context.map(|c| c.bundle_id), Ok(Some("x".to_owned())));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A deterministic pseudo-random walk over short inputs behind the magic.
        let mut state: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            let mut value = CONTEXT_MAGIC.to_vec();
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let len = (state % 24) as usize;
            for i in 0..len {
                value.push((state.rotate_left(i as u32 * 3) & 0x07) as u8);
            }
            let _ = QueryContext::decode(&value);
        }
    }
}
