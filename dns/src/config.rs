//! The `[dns]` section of `swg.toml`.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::upstream::{UpstreamAddr, UPSTREAM_FORMATS};

/// What an app (not a browser) gets for a blocked name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AppBlockAnswer {
    /// `0.0.0.0` for A and `::` for AAAA, so the app fails fast on connect.
    #[default]
    Zero,
    /// NXDOMAIN.
    Nxdomain,
}

/// Resolver configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Address of the DoH (HTTPS) listener.
    pub doh_listen: SocketAddr,
    /// Address of the plain DNS UDP listener.
    pub udp_listen: SocketAddr,
    /// Address of the plain DNS TCP listener.
    pub tcp_listen: SocketAddr,
    /// Host name the DoH listener presents a certificate for.
    pub doh_host: String,
    /// Upstream resolvers as `udp://IP:PORT`, `tcp://IP:PORT` or `IP[:PORT]` (UDP with
    /// TCP retry on truncation), `tls://IP[:PORT][#NAME]` (DoT, port 853) or
    /// `https://HOST[:PORT]/PATH[#IP]` (DoH). Empty: the `nameserver` lines of
    /// `/etc/resolv.conf`.
    pub upstreams: Vec<String>,
    /// PEM files of CA certificates trusted for DoT and DoH upstreams in addition to
    /// the webpki roots.
    pub upstream_extra_roots: Vec<PathBuf>,
    /// Maximum number of upstream answers in the shared cache.
    pub cache_size: u64,
    /// Public IPv4 address of the inspection proxy, the A answer for steered names.
    pub proxy_ipv4: Ipv4Addr,
    /// Public IPv6 address of the proxy; absent: AAAA for steered names is empty NOERROR.
    pub proxy_ipv6: Option<Ipv6Addr>,
    /// TTL in seconds of steered and blocked answers (1..=60).
    pub steer_ttl_secs: u32,
    /// The proxy's auth host, answered with the proxy's addresses for every client, with
    /// no policy and no event. Not read from `[dns]`: the binary copies `[proxy] auth_host`
    /// here, lower-case and without a trailing dot.
    #[serde(skip)]
    pub auth_host: Option<String>,
    /// What apps get for a blocked name: `zero` or `nxdomain`.
    pub app_block_answer: AppBlockAnswer,
    /// Time in milliseconds to wait for one upstream answer before trying the next upstream.
    pub upstream_timeout_ms: u64,
    /// Seconds a TCP or DoH connection may stay idle (no query in flight or arriving).
    pub idle_timeout_secs: u64,
    /// Seconds allowed to read one TCP message or one HTTP request head once it started.
    pub read_timeout_secs: u64,
    /// Seconds a TCP or DoH connection may leave a response unread (the server's write
    /// stays blocked) before it is closed.
    pub write_timeout_secs: u64,
    /// Maximum number of open TCP plus DoH connections. Plain TCP connections from
    /// sources in no location count apart, against a second pool of the same size.
    pub max_connections: usize,
    /// Maximum number of open TCP plus DoH connections from one client: an IPv4
    /// address, or an IPv6 prefix of `client_ipv6_prefix_len` bits. The pool of TCP
    /// connections from sources in no location has the same per-client limit.
    pub max_connections_per_client: usize,
    /// Maximum number of queries in flight on one TCP or DoH connection. On TCP a
    /// query counts until its response is written.
    pub max_queries_per_connection: usize,
    /// Maximum number of queries in flight across all listeners.
    pub max_queries_in_flight: usize,
    /// Queries per second allowed from one source over plain UDP (0: no limit). A
    /// source is an IPv4 address, or an IPv6 prefix of `client_ipv6_prefix_len` bits.
    pub udp_rate_limit_qps: u32,
    /// Burst size of the per-source UDP rate limit.
    pub udp_rate_limit_burst: u32,
    /// Length of the IPv6 prefix counted as one client by the UDP rate limit and the
    /// per-client connection limit (32 to 128). A host usually controls a whole /64,
    /// and a spoofed flood aimed at a victim can use any address of its network.
    pub client_ipv6_prefix_len: u8,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            doh_listen: SocketAddr::from(([127, 0, 0, 1], 8053)),
            udp_listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            tcp_listen: SocketAddr::from(([127, 0, 0, 1], 5353)),
            doh_host: "localhost".to_owned(),
            upstreams: Vec::new(),
            upstream_extra_roots: Vec::new(),
            cache_size: 200_000,
            proxy_ipv4: Ipv4Addr::LOCALHOST,
            proxy_ipv6: Some(Ipv6Addr::LOCALHOST),
            steer_ttl_secs: 60,
            auth_host: None,
            app_block_answer: AppBlockAnswer::Zero,
            upstream_timeout_ms: 2_000,
            idle_timeout_secs: 30,
            read_timeout_secs: 5,
            write_timeout_secs: 10,
            max_connections: 4_096,
            max_connections_per_client: 512,
            max_queries_per_connection: 64,
            max_queries_in_flight: 8_192,
            udp_rate_limit_qps: 500,
            udp_rate_limit_burst: 1_000,
            client_ipv6_prefix_len: swg_identity::DEFAULT_IPV6_CLIENT_PREFIX_LEN,
        }
    }
}

/// A `[dns]` key with a value outside its allowed range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A numeric key is out of range.
    #[error("dns.{key} = {value} is out of range; allowed: {allowed}")]
    OutOfRange {
        /// The key, e.g. `steer_ttl_secs`.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// The allowed range in words.
        allowed: &'static str,
    },
    /// An upstream entry cannot be parsed.
    #[error("dns.upstreams entry {entry:?} is invalid: {reason}; expected {formats}", formats = UPSTREAM_FORMATS)]
    InvalidUpstream {
        /// The entry as written.
        entry: String,
        /// The reason it is invalid.
        reason: &'static str,
    },
    /// `doh_host` is empty, or neither a DNS name nor a dotted-quad IPv4 address.
    #[error("dns.doh_host {0:?} is not a host name or an IPv4 address such as 192.0.2.1")]
    InvalidDohHost(String),
}

impl DnsConfig {
    /// Checks every key against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check(
            "steer_ttl_secs",
            self.steer_ttl_secs.into(),
            1,
            60,
            "1 to 60",
        )?;
        check(
            "cache_size",
            self.cache_size,
            0,
            100_000_000,
            "0 to 100000000",
        )?;
        check(
            "upstream_timeout_ms",
            self.upstream_timeout_ms,
            50,
            30_000,
            "50 to 30000",
        )?;
        check(
            "idle_timeout_secs",
            self.idle_timeout_secs,
            1,
            3_600,
            "1 to 3600",
        )?;
        check(
            "read_timeout_secs",
            self.read_timeout_secs,
            1,
            120,
            "1 to 120",
        )?;
        check(
            "write_timeout_secs",
            self.write_timeout_secs,
            1,
            120,
            "1 to 120",
        )?;
        check(
            "max_connections",
            self.max_connections as u64,
            1,
            1_000_000,
            "1 to 1000000",
        )?;
        check(
            "max_connections_per_client",
            self.max_connections_per_client as u64,
            1,
            1_000_000,
            "1 to 1000000",
        )?;
        check(
            "max_queries_per_connection",
            self.max_queries_per_connection as u64,
            1,
            1_024,
            "1 to 1024",
        )?;
        check(
            "max_queries_in_flight",
            self.max_queries_in_flight as u64,
            1,
            1_000_000,
            "1 to 1000000",
        )?;
        if self.udp_rate_limit_qps > 0 {
            check(
                "udp_rate_limit_burst",
                self.udp_rate_limit_burst.into(),
                1,
                u32::MAX.into(),
                "at least 1 when udp_rate_limit_qps is set",
            )?;
        }
        check(
            "client_ipv6_prefix_len",
            self.client_ipv6_prefix_len.into(),
            (*swg_identity::IPV6_CLIENT_PREFIX_LENS.start()).into(),
            (*swg_identity::IPV6_CLIENT_PREFIX_LENS.end()).into(),
            "32 to 128",
        )?;

        // A name whose last label is all digits can only be an IPv4 address, and then
        // only in dotted-quad form: `127.1` would be rewritten by URL parsers.
        let numeric =
            self.doh_host.rsplit('.').next().is_some_and(|label| {
                !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit())
            });
        let host_ok = !self.doh_host.is_empty()
            && self.doh_host.len() <= 253
            && self.doh_host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
            && (!numeric || self.doh_host.parse::<std::net::Ipv4Addr>().is_ok());
        if !host_ok {
            return Err(ConfigError::InvalidDohHost(self.doh_host.clone()));
        }

        self.upstream_addrs()?;
        Ok(())
    }

    /// Parses the `upstreams` entries (empty when the system resolver is meant).
    pub fn upstream_addrs(&self) -> Result<Vec<UpstreamAddr>, ConfigError> {
        self.upstreams
            .iter()
            .map(|entry| {
                UpstreamAddr::parse_entry(entry).map_err(|reason| ConfigError::InvalidUpstream {
                    entry: entry.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// The upstream timeout as a `Duration`.
    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    /// The idle timeout as a `Duration`.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// The read timeout as a `Duration`.
    pub fn read_timeout(&self) -> Duration {
        Duration::from_secs(self.read_timeout_secs)
    }

    /// Returns the write timeout as a `Duration`.
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs(self.write_timeout_secs)
    }
}

fn check(
    key: &'static str,
    value: u64,
    min: u64,
    max: u64,
    allowed: &'static str,
) -> Result<(), ConfigError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ConfigError::OutOfRange {
            key,
            value,
            allowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert!(DnsConfig::default().validate().is_ok());
    }

    #[test]
    fn client_ipv6_prefix_len_is_checked() {
        let with_prefix_len = |prefix_len: u8| DnsConfig {
            client_ipv6_prefix_len: prefix_len,
            ..DnsConfig::default()
        };
        assert!(with_prefix_len(32).validate().is_ok());
        assert!(with_prefix_len(128).validate().is_ok());
        let message = with_prefix_len(129).validate().err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("dns.client_ipv6_prefix_len = 129 is out of range; allowed: 32 to 128")
        );
        assert!(with_prefix_len(16).validate().is_err());
    }

    #[test]
    fn doh_host_numeric_forms() {
        let with_host = |host: &str| DnsConfig {
            doh_host: host.to_owned(),
            ..DnsConfig::default()
        };
        for fine in [
            "localhost",
            "dns.example.net",
            "127.0.0.1",
            "1.example",
            "a-1.b2",
        ] {
            assert!(with_host(fine).validate().is_ok(), "{fine}");
        }
        for rejected in ["127.1", "2130706433", "1.2.3.4.5", "300.1.1.1", "", "a..b"] {
            let message = with_host(rejected).validate().err().map(|e| e.to_string());
            assert_eq!(
                message,
                Some(format!(
                    "dns.doh_host {rejected:?} is not a host name or an IPv4 address such as \
                     192.0.2.1"
                )),
                "{rejected}"
            );
        }
    }

    #[test]
    fn steer_ttl_over_sixty_is_rejected() {
        let config = DnsConfig {
            steer_ttl_secs: 61,
            ..DnsConfig::default()
        };
        let message = config.validate().err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("dns.steer_ttl_secs = 61 is out of range; allowed: 1 to 60")
        );
    }

    #[test]
    fn bad_upstream_is_rejected() {
        let config = DnsConfig {
            upstreams: vec!["dns.example".to_owned()],
            ..DnsConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::InvalidUpstream { .. })
        ));
    }

    #[test]
    fn doh_upstream_without_address_names_the_reason() {
        let config = DnsConfig {
            upstreams: vec!["https://dns.example/dns-query".to_owned()],
            ..DnsConfig::default()
        };
        let message = config.validate().err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some(
                "dns.upstreams entry \"https://dns.example/dns-query\" is invalid: an https URL \
                 with a host name needs its IP address after # (it is never looked up through \
                 the system resolver); expected udp://IP[:PORT], tcp://IP[:PORT], IP[:PORT], \
                 tls://IP[:PORT][#NAME] or https://HOST[:PORT]/PATH[#IP]"
            )
        );
    }
}
