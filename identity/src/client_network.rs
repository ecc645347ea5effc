//! The network a client address is counted under by per-client limits.
//!
//! An IPv4 host usually has one address, but an IPv6 host usually controls a whole
//! /64 and can pick a new address from it for every connection or query. Limits
//! counted per exact address would then not limit it at all, so the resolver and
//! the proxy count IPv6 clients per prefix.

use std::net::IpAddr;
use std::ops::RangeInclusive;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// The IPv6 prefix length that per-client limits use unless configured: the
/// subnet size of one IPv6 link, which a single host can fill with addresses.
pub const DEFAULT_IPV6_CLIENT_PREFIX_LEN: u8 = 64;

/// The IPv6 prefix lengths a configuration may choose. Shorter prefixes than /32
/// would count whole providers as one client.
pub const IPV6_CLIENT_PREFIX_LENS: RangeInclusive<u8> = 32..=128;

/// Returns the network `address` is counted under: the address alone for IPv4
/// (and for IPv4 addresses mapped into IPv6), its first `ipv6_prefix_len` bits for
/// IPv6.
///
/// `ipv6_prefix_len` above 128 counts as 128.
pub fn client_network(address: IpAddr, ipv6_prefix_len: u8) -> IpNet {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
        IpAddr::V6(v6) => {
            let prefix_len = ipv6_prefix_len.min(128);
            // A prefix length of at most 128 is always valid.
            Ipv6Net::new(v6, prefix_len)
                .map(|network| IpNet::V6(network.trunc()))
                .unwrap_or(IpNet::V6(Ipv6Net::from(v6)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(address: &str, prefix_len: u8) -> String {
        let address: IpAddr = match address.parse() {
            Ok(address) => address,
            Err(error) => panic!("{address}: {error}"),
        };
        client_network(address, prefix_len).to_string()
    }

    #[test]
    fn networks_of_addresses() {
        let cases = [
            ("192.0.2.7", 64, "192.0.2.7/32"),
            ("192.0.2.7", 128, "192.0.2.7/32"),
            ("::ffff:192.0.2.7", 64, "192.0.2.7/32"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 56, "2001:db8:1::/56"),
            ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 48, "2001:db8:1::/48"),
            (
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd",
                128,
                "2001:db8:1:2:aaaa:bbbb:cccc:dddd/128",
            ),
            ("2001:db8::1", 200, "2001:db8::1/128"),
            ("::1", 64, "::/64"),
        ];
        for (address, prefix_len, expected) in cases {
            assert_eq!(
                network(address, prefix_len),
                expected,
                "{address} with /{prefix_len}"
            );
        }
    }

    #[test]
    fn addresses_of_one_link_share_a_network() {
        assert_eq!(
            network("2001:db8:0:1::1", 64),
            network("2001:db8:0:1:ffff:ffff:ffff:fffe", 64)
        );
        assert_ne!(
            network("2001:db8:0:1::1", 64),
            network("2001:db8:0:2::1", 64)
        );
        assert_ne!(network("192.0.2.1", 64), network("192.0.2.2", 64));
    }
}
