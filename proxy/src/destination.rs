//! The destination check that keeps the proxy out of the operator's network (SSRF guard).
//!
//! The check is a pure function of an address and the configuration, so it is tested
//! without opening a connection. The upstream connector calls it on every address a
//! name resolves to, right before connecting, so a name that resolves to a refused
//! address is refused as well.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Why a destination address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// One of swg's own public addresses, or one of the proxy's own listeners.
    Own,
    /// 0.0.0.0/8 or `::`.
    Unspecified,
    /// 127.0.0.0/8 or `::1`.
    Loopback,
    /// RFC 1918 ranges, IPv6 unique-local fc00::/7 or the deprecated site-local fec0::/10.
    Private,
    /// 169.254.0.0/16 or fe80::/10.
    LinkLocal,
    /// Carrier-grade NAT shared space 100.64.0.0/10.
    SharedAddressSpace,
    /// Cloud metadata endpoints 169.254.169.254 and fd00:ec2::254.
    Metadata,
    /// Multicast or the IPv4 broadcast address.
    Multicast,
    /// Reserved, documentation and benchmarking ranges that are never a public origin.
    Reserved,
}

impl Refusal {
    /// A short label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Own => "own_address",
            Refusal::Unspecified => "unspecified",
            Refusal::Loopback => "loopback",
            Refusal::Private => "private",
            Refusal::LinkLocal => "link_local",
            Refusal::SharedAddressSpace => "shared_address_space",
            Refusal::Metadata => "metadata",
            Refusal::Multicast => "multicast",
            Refusal::Reserved => "reserved",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The configured exceptions of the destination check.
#[derive(Debug, Clone, Default)]
pub struct DestinationPolicy {
    allowed: Vec<IpNet>,
    own: Vec<IpAddr>,
}

impl DestinationPolicy {
    /// Creates the check from the networks allowed despite their class and swg's own
    /// addresses, which stay refused whatever `allowed` contains.
    pub fn new(allowed: Vec<IpNet>, own: Vec<IpAddr>) -> Self {
        Self { allowed, own }
    }

    /// Checks one destination address.
    ///
    /// An address is refused when it or the IPv4 address embedded in it (IPv4-mapped,
    /// IPv4-compatible, NAT64 or 6to4 forms) belongs to a refused class, unless the
    /// address as written lies in an allowed network. Allowed networks are matched
    /// against the address as written only, so allowing 127.0.0.1/32 does not allow
    /// `::ffff:127.0.0.1`.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let embedded = embedded_ipv4(ip).map(IpAddr::V4);
        let is_own = |candidate: IpAddr| self.own.iter().any(|own| canonical(*own) == candidate);
        if is_own(canonical(ip)) {
            return Err(Refusal::Own);
        }
        // A connection to 0.0.0.0 or :: reaches this host's own listeners, so no
        // allowed network lets it through.
        if is_this_network(canonical(ip)) {
            return Err(Refusal::Unspecified);
        }

        let class = classify(ip).or_else(|| embedded.and_then(classify));
        match class {
            None => Ok(()),
            Some(_) if self.allowed.iter().any(|net| net.contains(&ip)) => Ok(()),
            Some(refusal) => Err(refusal),
        }
    }
}

/// Returns whether `ip` is the unspecified address or, for IPv4, in 0.0.0.0/8
/// ("this network", RFC 1122 section 3.2.1.3).
fn is_this_network(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.octets()[0] == 0,
        IpAddr::V6(ip) => ip.is_unspecified(),
    }
}

/// Returns the IPv4 address embedded in `ip`, or `ip` itself.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    embedded_ipv4(ip).map_or(ip, IpAddr::V4)
}

/// Returns the IPv4 address carried inside an IPv6 address by the transition forms a
/// router or a NAT64 gateway would route to that IPv4 address.
fn embedded_ipv4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let segments = v6.segments();
    let octets = v6.octets();
    let tail = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);

    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible (::a.b.c.d, deprecated), excluding :: and ::1 themselves.
    if segments[..6].iter().all(|s| *s == 0) && u32::from(tail) > 1 {
        return Some(tail);
    }
    // NAT64 well-known prefix 64:ff9b::/96 and the local-use prefix 64:ff9b:1::/48.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || segments[..3] == [0x64, 0xff9b, 1] {
        return Some(tail);
    }
    // 6to4 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
    if segments[0] == 0x2002 {
        return Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]));
    }
    None
}

fn classify(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let [a, b, c, _] = ip.octets();
    let refusal = match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => Refusal::Metadata,
        (0, _, _) => Refusal::Unspecified,
        (127, _, _) => Refusal::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => Refusal::Private,
        (169, 254, _) => Refusal::LinkLocal,
        (100, 64..=127, _) => Refusal::SharedAddressSpace,
        (224..=239, _, _) | (255, 255, 255) => Refusal::Multicast,
        // IETF protocol assignments, TEST-NET-1/2/3, benchmarking, and 240.0.0.0/4.
        (192, 0, 0) | (192, 0, 2) | (198, 51, 100) | (203, 0, 113) | (198, 18..=19, _) => {
            Refusal::Reserved
        }
        (240..=255, _, _) => Refusal::Reserved,
        _ => return None,
    };
    Some(refusal)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    let segments = ip.segments();
    let refusal = match segments[0] {
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => Refusal::Metadata,
        _ if ip.is_unspecified() => Refusal::Unspecified,
        _ if ip.is_loopback() => Refusal::Loopback,
        0xfc00..=0xfdff => Refusal::Private,
        0xfec0..=0xfeff => Refusal::Private,
        0xfe80..=0xfebf => Refusal::LinkLocal,
        0xff00..=0xffff => Refusal::Multicast,
        // Documentation 2001:db8::/32 and the discard prefix 100::/64.
        0x2001 if segments[1] == 0x0db8 => Refusal::Reserved,
        0x0100 if segments[1..4] == [0, 0, 0] => Refusal::Reserved,
        _ => return None,
    };
    Some(refusal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("test addresses are valid")
    }

    #[test]
    fn refused_classes_without_exceptions() {
        let policy = DestinationPolicy::default();
        let cases = [
            ("0.0.0.0", Refusal::Unspecified),
            ("::", Refusal::Unspecified),
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.0.9", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("10.1.2.3", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.255", Refusal::Private),
            ("192.168.1.1", Refusal::Private),
            ("fd12:3456::1", Refusal::Private),
            ("fec0::1", Refusal::Private),
            ("169.254.1.1", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("100.64.0.1", Refusal::SharedAddressSpace),
            ("100.127.255.254", Refusal::SharedAddressSpace),
            ("169.254.169.254", Refusal::Metadata),
            ("fd00:ec2::254", Refusal::Metadata),
            ("224.0.0.1", Refusal::Multicast),
            ("255.255.255.255", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("240.0.0.1", Refusal::Reserved),
            ("2001:db8::1", Refusal::Reserved),
            ("::ffff:127.0.0.1", Refusal::Loopback),
            ("::ffff:10.0.0.1", Refusal::Private),
            ("::ffff:169.254.169.254", Refusal::Metadata),
            ("::ffff:100.64.1.1", Refusal::SharedAddressSpace),
            ("::127.0.0.1", Refusal::Loopback),
            ("::192.168.0.1", Refusal::Private),
            ("64:ff9b::7f00:1", Refusal::Loopback),
            ("64:ff9b::a9fe:a9fe", Refusal::Metadata),
            ("64:ff9b:1::a00:1", Refusal::Private),
            ("2002:7f00:1::1", Refusal::Loopback),
            ("2002:c0a8:101::1", Refusal::Private),
        ];
        for (address, expected) in cases {
            assert_eq!(policy.check(ip(address)), Err(expected), "{address}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        let policy = DestinationPolicy::default();
        for address in [
            "93.184.215.14",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "169.255.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert_eq!(policy.check(ip(address)), Ok(()), "{address}");
        }
    }

    #[test]
    fn allowed_network_matches_written_form_only() {
        let allowed = vec!["127.0.0.1/32".parse().expect("valid network")];
        let policy = DestinationPolicy::new(allowed, Vec::new());

        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("127.0.0.2")), Err(Refusal::Loopback));
        assert_eq!(policy.check(ip("::1")), Err(Refusal::Loopback));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Err(Refusal::Loopback));
    }

    #[test]
    fn own_address_refused_even_when_allowed() {
        let allowed = vec!["0.0.0.0/0".parse().expect("valid network")];
        let policy = DestinationPolicy::new(allowed, vec![ip("203.0.113.7"), ip("8.8.4.4")]);

        assert_eq!(policy.check(ip("8.8.4.4")), Err(Refusal::Own));
        assert_eq!(policy.check(ip("::ffff:8.8.4.4")), Err(Refusal::Own));
        assert_eq!(policy.check(ip("203.0.113.7")), Err(Refusal::Own));
        assert_eq!(policy.check(ip("8.8.8.8")), Ok(()));
    }

    #[test]
    fn unspecified_refused_even_when_allowed() {
        let allowed = vec![
            "0.0.0.0/0".parse().expect("valid network"),
            "::/0".parse().expect("valid network"),
        ];
        let policy = DestinationPolicy::new(allowed, Vec::new());
        for address in ["0.0.0.0", "0.1.2.3", "::", "::ffff:0.0.0.0"] {
            assert_eq!(
                policy.check(ip(address)),
                Err(Refusal::Unspecified),
                "{address}"
            );
        }
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
    }
}
