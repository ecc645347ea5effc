//! The `[proxy]` section of the configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Settings of the three proxy listeners and the upstream client.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxyConfig {
    /// Address of the TLS landing, where steered HTTPS traffic arrives.
    pub tls_listen: SocketAddr,
    /// Address of the plain-HTTP landing, where steered HTTP traffic arrives.
    pub http_listen: SocketAddr,
    /// Address of the explicit proxy (CONNECT and absolute-form HTTP).
    pub explicit_listen: SocketAddr,
    /// Path at which the explicit proxy serves the PAC file, without authentication.
    pub pac_path: String,
    /// Content of the PAC file. Empty means a PAC file that sends everything to
    /// `explicit_listen`.
    pub pac_content: String,
    /// Destination networks that the upstream client may reach although the
    /// destination check would reject them (loopback, private, link-local ...).
    pub allowed_destinations: Vec<IpNet>,
    /// swg's own public addresses: never a destination, whatever `allowed_destinations` says.
    pub own_addresses: Vec<IpAddr>,
    /// PEM files with extra root certificates trusted for origins, beside the webpki roots.
    pub extra_roots: Vec<PathBuf>,
    /// DNS servers (address and port) that resolve origin names. The system resolver
    /// is never used, because it may point back at swg.
    pub resolver_upstreams: Vec<SocketAddr>,
    /// Fixed host name to address mappings consulted before DNS.
    pub static_hosts: BTreeMap<String, Vec<IpAddr>>,
    /// Timeouts, in milliseconds.
    pub timeouts: TimeoutConfig,
    /// Size and count limits.
    pub limits: LimitConfig,
    /// Host name of swg's auth host, which keeps the long-lived gateway cookie and
    /// sends browsers back to sites with one-time tickets. Requests for this host are
    /// answered by swg and never forwarded. Empty turns the inspection-page flow off.
    pub auth_host: String,
    /// Security categories whose warn verdicts cannot be continued past: they are
    /// blocked instead of warned.
    pub not_continuable_categories: Vec<String>,
    /// Seconds after a redirect to the auth host during which another navigation
    /// from the same client IP to the same host without identity gets the
    /// inspection page instead of a second redirect (1 to 3600). This is what keeps
    /// a browser that drops cookies out of a redirect loop.
    pub auth_attempt_window_secs: u64,
}

/// Timeouts of the proxy, each in milliseconds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutConfig {
    /// TCP connect to an origin.
    pub connect_ms: u64,
    /// TLS handshake, with a client or with an origin.
    pub tls_handshake_ms: u64,
    /// From sending a request upstream to receiving the response head.
    pub first_byte_ms: u64,
    /// Maximum silence inside a request or response body, in either direction. A
    /// response body also ends when its client takes none of it for this long. A
    /// WebSocket tunnel in which no byte moves either way for this long is closed.
    pub idle_ms: u64,
    /// Time a client has to send a complete request head (slow-loris protection).
    pub client_header_read_ms: u64,
    /// Time an idle pooled origin connection is kept for reuse. Each one keeps buffers
    /// (about 50 KiB with HTTP/2) and a file descriptor, and the pool has one per
    /// origin recently visited.
    pub origin_idle_ms: u64,
}

/// Size and count limits of the proxy.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitConfig {
    /// Largest HTTP/1.1 request head in bytes, from the request line through the
    /// empty line, and the HTTP/2 header list size at which a stream gets 431. It
    /// also sizes hyper's read buffer for HTTP/1.1 response heads, which is checked
    /// only between reads.
    pub max_header_bytes: u32,
    /// Largest number of header fields in an HTTP/1.1 request or response.
    pub max_headers: usize,
    /// Largest request body forwarded upstream, in bytes.
    pub max_request_body_bytes: u64,
    /// Largest response body forwarded to the client, in bytes.
    pub max_response_body_bytes: u64,
    /// Open connections allowed from one client over all listeners. A client is
    /// an IPv4 address, or an IPv6 prefix of `client_ipv6_prefix_len` bits.
    pub max_connections_per_client: usize,
    /// Length of the IPv6 prefix counted as one client by the per-client limits
    /// and budgets (32 to 128). A host usually controls a whole /64 and can
    /// connect from a new address of it each time.
    pub client_ipv6_prefix_len: u8,
    /// Open client connections allowed over all listeners and clients. Each uses
    /// TLS and HTTP buffers and a file descriptor. A CONNECT or WebSocket tunnel
    /// counts as its connection until it ends. When unset, 20 000 or
    /// `max_connections_per_client` when that is larger.
    pub max_connections: Option<usize>,
    /// Concurrent HTTP/2 streams allowed per client connection.
    pub max_concurrent_streams: u32,
    /// Pools that speak only HTTP/2, each with one connection to an origin, for
    /// the origins known to speak HTTP/2. A request goes on the first connection
    /// with fewer than `http2_streams_per_origin_connection` requests in flight,
    /// and on the least busy one when all have that many. With 0, every request
    /// goes to the pool that negotiates the version, one connection per HTTP/2
    /// origin.
    pub http2_connections_per_origin: usize,
    /// Requests in flight on one HTTP/2 connection to an origin before swg uses
    /// the next connection to that origin.
    pub http2_streams_per_origin_connection: u32,
    /// Bytes that the responses in flight to all clients may buffer together,
    /// counting each at the most it can buffer: one HTTP/2 stream window (2 MiB)
    /// or hyper's HTTP/1.1 read buffer, or its length when that is smaller. A
    /// response that does not fit is refused with 503.
    pub max_response_buffer_bytes: u64,
    /// The same for the responses to one client over all its
    /// connections, at most `max_response_buffer_bytes`. When unset, 512 MiB or
    /// `max_response_buffer_bytes` when that is smaller.
    pub max_response_buffer_bytes_per_client: Option<u64>,
    /// Bytes that HTTP/2 clients may upload ahead of their origins, all together:
    /// the connection windows swg offers them, which bound what hyper buffers for
    /// request bodies that an origin reads slowly. Each HTTP/2 client connection
    /// reserves the largest window that fits, from 8 MiB down to 128 KiB, for its
    /// whole life. When none fits, it gets the protocol's initial 64 KiB window,
    /// which is not counted.
    pub max_request_buffer_bytes: u64,
    /// The same for the HTTP/2 connections of one client, at most
    /// `max_request_buffer_bytes`. When unset, 256 MiB or
    /// `max_request_buffer_bytes` when that is smaller.
    pub max_request_buffer_bytes_per_client: Option<u64>,
    /// Streams a client may reset before they are accepted, per connection, before the
    /// connection is closed (HTTP/2 rapid-reset protection).
    pub max_pending_accept_reset_streams: usize,
    /// Streams swg may reset because of client errors, per connection, before the
    /// connection is closed.
    pub max_local_error_reset_streams: usize,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        Self {
            tls_listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            explicit_listen: SocketAddr::from(([127, 0, 0, 1], 3128)),
            pac_path: "/proxy.pac".to_owned(),
            pac_content: String::new(),
            allowed_destinations: Vec::new(),
            own_addresses: Vec::new(),
            extra_roots: Vec::new(),
            resolver_upstreams: Vec::new(),
            static_hosts: BTreeMap::new(),
            timeouts: TimeoutConfig::default(),
            limits: LimitConfig::default(),
            auth_host: "auth.swg.localhost".to_owned(),
            not_continuable_categories: vec!["malware".to_owned(), "phishing".to_owned()],
            auth_attempt_window_secs: 30,
        }
    }
}

impl Default for TimeoutConfig {
    fn default() -> Self {
        Self {
            connect_ms: 5_000,
            tls_handshake_ms: 10_000,
            first_byte_ms: 30_000,
            idle_ms: 60_000,
            client_header_read_ms: 10_000,
            origin_idle_ms: 30_000,
        }
    }
}

/// The smallest response buffer budget: below two HTTP/2 stream windows, a client
/// could not receive two responses of unknown length at once.
const MIN_RESPONSE_BUFFER_BYTES: u64 = 4 << 20;

/// hyper's limit on HTTP/1.1 header fields when none is set. hyper then parses
/// into a fixed array. With a limit set, it fills a vector of that many entries for
/// every head, about 2 % of swg's instructions per HTTP/1.1 request under callgrind.
pub(crate) const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The per-client response buffer budget when none is set and the process's
/// budget is larger.
const DEFAULT_RESPONSE_BUFFER_BYTES_PER_CLIENT: u64 = 512 << 20;

/// The limit on open client connections in all when none is set and the
/// per-client limit is lower.
const DEFAULT_MAX_CONNECTIONS: usize = 20_000;

/// The per-client request buffer budget when none is set and the process's
/// budget is larger: 32 HTTP/2 connections with the largest window.
const DEFAULT_REQUEST_BUFFER_BYTES_PER_CLIENT: u64 = 256 << 20;

impl LimitConfig {
    /// Returns the response buffer budget of one client address: the configured
    /// one, or 512 MiB capped at the process's budget.
    pub fn response_buffer_bytes_per_client(&self) -> u64 {
        self.max_response_buffer_bytes_per_client
            .unwrap_or(DEFAULT_RESPONSE_BUFFER_BYTES_PER_CLIENT.min(self.max_response_buffer_bytes))
    }

    /// Returns the limit on open client connections in all: the configured one,
    /// or 20 000 raised to `max_connections_per_client`.
    pub fn connections_in_all(&self) -> usize {
        self.max_connections
            .unwrap_or(DEFAULT_MAX_CONNECTIONS.max(self.max_connections_per_client))
    }

    /// Returns the request buffer budget of one client address: the configured
    /// one, or 256 MiB capped at the process's budget.
    pub fn request_buffer_bytes_per_client(&self) -> u64 {
        self.max_request_buffer_bytes_per_client
            .unwrap_or(DEFAULT_REQUEST_BUFFER_BYTES_PER_CLIENT.min(self.max_request_buffer_bytes))
    }

    /// Returns `max_headers` to hand to hyper, or none when it is hyper's default.
    pub(crate) fn hyper_max_headers(&self) -> Option<usize> {
        (self.max_headers != HYPER_DEFAULT_MAX_HEADERS).then_some(self.max_headers)
    }
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: HYPER_DEFAULT_MAX_HEADERS,
            max_request_body_bytes: 4 << 30,
            max_response_body_bytes: 16 << 30,
            max_connections_per_client: 512,
            client_ipv6_prefix_len: swg_identity::DEFAULT_IPV6_CLIENT_PREFIX_LEN,
            max_connections: None,
            max_concurrent_streams: 100,
            http2_connections_per_origin: 16,
            http2_streams_per_origin_connection: 100,
            max_response_buffer_bytes: 2 << 30,
            max_response_buffer_bytes_per_client: None,
            max_request_buffer_bytes: 1 << 30,
            max_request_buffer_bytes_per_client: None,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
        }
    }
}

/// A `[proxy]` value outside its allowed range. The message is the key followed by
/// the problem, such as "proxy.limits.max_headers = 5 is out of range; allowed: 8
/// to 1000".
#[derive(Debug, thiserror::Error)]
#[error("proxy.{key} {problem}")]
pub struct ConfigError {
    /// The key, relative to `[proxy]`.
    pub key: &'static str,
    /// The problem and the allowed values, worded to follow the key.
    pub problem: String,
}

impl ProxyConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.pac_path.starts_with('/') || self.pac_path.starts_with("/.swg/") {
            return Err(invalid(
                "pac_path",
                "must start with / and lie outside /.swg/",
            ));
        }
        let timeouts = [
            ("timeouts.connect_ms", self.timeouts.connect_ms),
            ("timeouts.tls_handshake_ms", self.timeouts.tls_handshake_ms),
            ("timeouts.first_byte_ms", self.timeouts.first_byte_ms),
            ("timeouts.idle_ms", self.timeouts.idle_ms),
            (
                "timeouts.client_header_read_ms",
                self.timeouts.client_header_read_ms,
            ),
            ("timeouts.origin_idle_ms", self.timeouts.origin_idle_ms),
        ];
        for (key, value) in timeouts {
            if !(1..=3_600_000).contains(&value) {
                return Err(out_of_range(key, value, "1 to 3600000 milliseconds"));
            }
        }
        let limits = &self.limits;
        if !(1024..=1 << 20).contains(&limits.max_header_bytes) {
            return Err(out_of_range(
                "limits.max_header_bytes",
                limits.max_header_bytes,
                "1024 to 1048576",
            ));
        }
        if !(8..=1000).contains(&limits.max_headers) {
            return Err(out_of_range(
                "limits.max_headers",
                limits.max_headers,
                "8 to 1000",
            ));
        }
        if limits.max_request_body_bytes == 0 {
            return Err(out_of_range(
                "limits.max_request_body_bytes",
                0,
                "at least 1",
            ));
        }
        if limits.max_response_body_bytes == 0 {
            return Err(out_of_range(
                "limits.max_response_body_bytes",
                0,
                "at least 1",
            ));
        }
        if !(1..=100_000).contains(&limits.max_connections_per_client) {
            return Err(out_of_range(
                "limits.max_connections_per_client",
                limits.max_connections_per_client,
                "1 to 100000",
            ));
        }
        if !swg_identity::IPV6_CLIENT_PREFIX_LENS.contains(&limits.client_ipv6_prefix_len) {
            return Err(out_of_range(
                "limits.client_ipv6_prefix_len",
                limits.client_ipv6_prefix_len,
                &format!(
                    "{} to {}",
                    swg_identity::IPV6_CLIENT_PREFIX_LENS.start(),
                    swg_identity::IPV6_CLIENT_PREFIX_LENS.end()
                ),
            ));
        }
        if !(limits.max_connections_per_client..=1_000_000).contains(&limits.connections_in_all()) {
            return Err(out_of_range(
                "limits.max_connections",
                limits.connections_in_all(),
                &format!(
                    "proxy.limits.max_connections_per_client ({}) to 1000000",
                    limits.max_connections_per_client
                ),
            ));
        }
        if !(1..=10_000).contains(&limits.max_concurrent_streams) {
            return Err(out_of_range(
                "limits.max_concurrent_streams",
                limits.max_concurrent_streams,
                "1 to 10000",
            ));
        }
        if limits.http2_connections_per_origin > 256 {
            return Err(out_of_range(
                "limits.http2_connections_per_origin",
                limits.http2_connections_per_origin,
                "0 to 256",
            ));
        }
        if !(1..=10_000).contains(&limits.http2_streams_per_origin_connection) {
            return Err(out_of_range(
                "limits.http2_streams_per_origin_connection",
                limits.http2_streams_per_origin_connection,
                "1 to 10000",
            ));
        }
        if limits.max_response_buffer_bytes < MIN_RESPONSE_BUFFER_BYTES {
            return Err(out_of_range(
                "limits.max_response_buffer_bytes",
                limits.max_response_buffer_bytes,
                "at least 4194304 (two HTTP/2 stream windows)",
            ));
        }
        if !(MIN_RESPONSE_BUFFER_BYTES..=limits.max_response_buffer_bytes)
            .contains(&limits.response_buffer_bytes_per_client())
        {
            return Err(out_of_range(
                "limits.max_response_buffer_bytes_per_client",
                limits.response_buffer_bytes_per_client(),
                &format!(
                    "4194304 (two HTTP/2 stream windows) to \
                     proxy.limits.max_response_buffer_bytes ({})",
                    limits.max_response_buffer_bytes
                ),
            ));
        }
        if limits.request_buffer_bytes_per_client() > limits.max_request_buffer_bytes {
            return Err(out_of_range(
                "limits.max_request_buffer_bytes_per_client",
                limits.request_buffer_bytes_per_client(),
                &format!(
                    "0 to proxy.limits.max_request_buffer_bytes ({})",
                    limits.max_request_buffer_bytes
                ),
            ));
        }
        if limits.max_pending_accept_reset_streams == 0 {
            return Err(out_of_range(
                "limits.max_pending_accept_reset_streams",
                0,
                "at least 1",
            ));
        }
        if limits.max_local_error_reset_streams == 0 {
            return Err(out_of_range(
                "limits.max_local_error_reset_streams",
                0,
                "at least 1",
            ));
        }
        if !self.auth_host.is_empty() && crate::host::Host::parse(&self.auth_host).is_err() {
            return Err(invalid(
                "auth_host",
                "must be empty or a valid host name such as auth.swg.example",
            ));
        }
        if !(1..=3600).contains(&self.auth_attempt_window_secs) {
            return Err(out_of_range(
                "auth_attempt_window_secs",
                self.auth_attempt_window_secs,
                "1 to 3600",
            ));
        }
        Ok(())
    }

    /// Returns whether `host` is the configured auth host.
    pub(crate) fn is_auth_host(&self, host: &str) -> bool {
        !self.auth_host.is_empty()
            && host
                .trim_end_matches('.')
                .eq_ignore_ascii_case(self.auth_host.trim_end_matches('.'))
    }

    /// Returns whether a warn verdict in one of `categories` may be continued past.
    pub(crate) fn is_continuable(&self, categories: &[String]) -> bool {
        !categories.iter().any(|category| {
            self.not_continuable_categories
                .iter()
                .any(|blocked| blocked.eq_ignore_ascii_case(category))
        })
    }

    /// The PAC file served at `pac_path`, for a request without a usable `Host`.
    /// See [`ProxyConfig::pac_file_for`].
    pub fn pac_file(&self) -> String {
        self.pac_file_for(None)
    }

    /// The PAC file served at `pac_path` to a request whose `Host` header (with or
    /// without a port) is `request_host`.
    ///
    /// `pac_content` is served as it is. Without it, the PAC file sends everything
    /// to `explicit_listen`. When that listener is on an unspecified address
    /// (`0.0.0.0`, `::`), which no client can connect to, the file names the host
    /// that the client fetched it from instead, with the listener's port: the PAC
    /// file is served by the explicit proxy itself, so that host reaches it. A
    /// `request_host` that is not a valid host name or IP literal is ignored, so
    /// that nothing from the request but a checked host ends up in the script.
    ///
    /// NOTE: without a valid `request_host`, a PAC file for an unspecified listener
    /// still names the unspecified address, which clients cannot use.
    pub fn pac_file_for(&self, request_host: Option<&str>) -> String {
        if !self.pac_content.is_empty() {
            return self.pac_content.clone();
        }
        let proxy = match request_host.and_then(pac_proxy_host) {
            Some(host) if self.explicit_listen.ip().is_unspecified() => {
                format!("{host}:{}", self.explicit_listen.port())
            }
            _ => self.explicit_listen.to_string(),
        };
        format!("function FindProxyForURL(url, host) {{ return \"PROXY {proxy}\"; }}\n")
    }
}

/// Returns the host of a `Host` header value, normalized and in the form a PAC
/// `PROXY` entry takes (IPv6 in brackets), or none when it is not a valid host.
fn pac_proxy_host(value: &str) -> Option<String> {
    let (host, _port) = crate::host::split_host_port(value.trim())?;
    let host = crate::host::Host::parse(host).ok()?;
    Some(host.to_authority_host())
}

impl TimeoutConfig {
    /// The TCP connect timeout.
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }

    /// The TLS handshake timeout.
    pub fn tls_handshake(&self) -> Duration {
        Duration::from_millis(self.tls_handshake_ms)
    }

    /// The time to the response head.
    pub fn first_byte(&self) -> Duration {
        Duration::from_millis(self.first_byte_ms)
    }

    /// The idle timeout of bodies and WebSocket tunnels.
    pub fn idle(&self) -> Duration {
        Duration::from_millis(self.idle_ms)
    }

    /// The request head read timeout.
    pub fn client_header_read(&self) -> Duration {
        Duration::from_millis(self.client_header_read_ms)
    }

    /// Returns how long an idle pooled origin connection is kept.
    pub fn origin_idle(&self) -> Duration {
        Duration::from_millis(self.origin_idle_ms)
    }
}

fn invalid(key: &'static str, problem: &str) -> ConfigError {
    ConfigError {
        key,
        problem: problem.to_owned(),
    }
}

/// Builds the error of a number outside `allowed`, worded like the other sections'
/// range errors.
fn out_of_range(key: &'static str, value: impl std::fmt::Display, allowed: &str) -> ConfigError {
    ConfigError {
        key,
        problem: format!("= {value} is out of range; allowed: {allowed}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_flow_keys_validated() {
        assert!(ProxyConfig::default().validate().is_ok());

        let config = ProxyConfig {
            auth_host: "not a host/".to_owned(),
            ..ProxyConfig::default()
        };
        assert_eq!(config.validate().unwrap_err().key, "auth_host");

        let config = ProxyConfig {
            auth_attempt_window_secs: 0,
            ..ProxyConfig::default()
        };
        assert_eq!(
            config.validate().unwrap_err().key,
            "auth_attempt_window_secs"
        );

        let off = ProxyConfig {
            auth_host: String::new(),
            ..ProxyConfig::default()
        };
        assert!(off.validate().is_ok());
        assert!(!off.is_auth_host(""));
    }

    #[test]
    fn response_buffer_budgets_validated() {
        let with_limits = |process: u64, per_client: u64| ProxyConfig {
            limits: LimitConfig {
                max_response_buffer_bytes: process,
                max_response_buffer_bytes_per_client: Some(per_client),
                ..LimitConfig::default()
            },
            ..ProxyConfig::default()
        };
        assert!(with_limits(4 << 20, 4 << 20).validate().is_ok());
        assert_eq!(
            with_limits((4 << 20) - 1, 4 << 20)
                .validate()
                .unwrap_err()
                .key,
            "limits.max_response_buffer_bytes"
        );
        assert_eq!(
            with_limits(8 << 20, (4 << 20) - 1)
                .validate()
                .unwrap_err()
                .key,
            "limits.max_response_buffer_bytes_per_client"
        );
        assert_eq!(
            with_limits(8 << 20, 16 << 20).validate().unwrap_err().key,
            "limits.max_response_buffer_bytes_per_client"
        );

        // Unset, the per-client budget follows a smaller process budget.
        let mut config = with_limits(256 << 20, 0);
        config.limits.max_response_buffer_bytes_per_client = None;
        assert!(config.validate().is_ok());
        assert_eq!(config.limits.response_buffer_bytes_per_client(), 256 << 20);
        assert_eq!(
            LimitConfig::default().response_buffer_bytes_per_client(),
            512 << 20
        );
    }

    #[test]
    fn connection_limits_validated() {
        let with_limits = |per_client: usize, total: Option<usize>| ProxyConfig {
            limits: LimitConfig {
                max_connections_per_client: per_client,
                max_connections: total,
                ..LimitConfig::default()
            },
            ..ProxyConfig::default()
        };
        assert!(with_limits(4, Some(4)).validate().is_ok());
        assert_eq!(
            with_limits(4, Some(3)).validate().unwrap_err().key,
            "limits.max_connections"
        );
        assert_eq!(
            with_limits(4, Some(1_000_001)).validate().unwrap_err().key,
            "limits.max_connections"
        );
        // Unset, the limit in all follows a larger per-client limit, so that
        // configurations written before it existed still load.
        let raised = with_limits(30_000, None);
        assert!(raised.validate().is_ok());
        assert_eq!(raised.limits.connections_in_all(), 30_000);
        assert_eq!(LimitConfig::default().connections_in_all(), 20_000);
    }

    #[test]
    fn client_ipv6_prefix_len_validated() {
        let with_prefix_len = |prefix_len: u8| ProxyConfig {
            limits: LimitConfig {
                client_ipv6_prefix_len: prefix_len,
                ..LimitConfig::default()
            },
            ..ProxyConfig::default()
        };
        for prefix_len in [32, 48, 56, 64, 128] {
            assert!(
                with_prefix_len(prefix_len).validate().is_ok(),
                "/{prefix_len}"
            );
        }
        for prefix_len in [0, 31, 129, 255] {
            let error = with_prefix_len(prefix_len).validate().unwrap_err();
            assert_eq!(error.key, "limits.client_ipv6_prefix_len");
            assert_eq!(
                error.to_string(),
                format!(
                    "proxy.limits.client_ipv6_prefix_len = {prefix_len} is out of range; \
                     allowed: 32 to 128"
                )
            );
        }
        assert_eq!(LimitConfig::default().client_ipv6_prefix_len, 64);
    }

    #[test]
    fn request_buffer_budgets_validated() {
        let with_limits = |process: u64, per_client: Option<u64>| ProxyConfig {
            limits: LimitConfig {
                max_request_buffer_bytes: process,
                max_request_buffer_bytes_per_client: per_client,
                ..LimitConfig::default()
            },
            ..ProxyConfig::default()
        };
        // Zero is allowed: every HTTP/2 client then gets the protocol's window.
        assert!(with_limits(0, None).validate().is_ok());
        assert!(with_limits(64 << 20, Some(64 << 20)).validate().is_ok());
        assert_eq!(
            with_limits(64 << 20, Some((64 << 20) + 1))
                .validate()
                .unwrap_err()
                .key,
            "limits.max_request_buffer_bytes_per_client"
        );
        assert_eq!(
            with_limits(64 << 20, None)
                .limits
                .request_buffer_bytes_per_client(),
            64 << 20
        );
        assert_eq!(
            LimitConfig::default().request_buffer_bytes_per_client(),
            256 << 20
        );
    }

    #[test]
    fn auth_host_matched_without_case_or_trailing_dot() {
        let config = ProxyConfig::default();
        assert!(config.is_auth_host("auth.swg.localhost"));
        assert!(config.is_auth_host("AUTH.swg.localhost."));
        assert!(!config.is_auth_host("www.auth.swg.localhost"));
    }

    #[test]
    fn malware_and_phishing_not_continuable_by_default() {
        let config = ProxyConfig::default();
        assert!(!config.is_continuable(&["Malware".to_owned()]));
        assert!(!config.is_continuable(&["newly-seen".to_owned(), "phishing".to_owned()]));
        assert!(config.is_continuable(&["newly-seen".to_owned()]));
        assert!(config.is_continuable(&[]));
    }

    #[test]
    fn pac_file_names_reachable_proxy() {
        let wildcard = ProxyConfig {
            explicit_listen: "0.0.0.0:3128".parse().unwrap(),
            ..ProxyConfig::default()
        };
        let entry = |config: &ProxyConfig, host: Option<&str>| {
            let file = config.pac_file_for(host);
            let start = file.find("PROXY ").unwrap() + "PROXY ".len();
            file[start..].split('"').next().unwrap().to_owned()
        };
        assert_eq!(
            entry(&wildcard, Some("gw.example.net:3128")),
            "gw.example.net:3128"
        );
        assert_eq!(
            entry(&wildcard, Some("GW.example.net")),
            "gw.example.net:3128"
        );
        assert_eq!(
            entry(&wildcard, Some("198.51.100.7:8080")),
            "198.51.100.7:3128"
        );
        assert_eq!(
            entry(&wildcard, Some("[2001:db8::7]:3128")),
            "[2001:db8::7]:3128"
        );
        // A value that is not a host never reaches the script.
        assert_eq!(entry(&wildcard, Some("x\"; alert(1); \"")), "0.0.0.0:3128");
        assert_eq!(entry(&wildcard, None), "0.0.0.0:3128");

        let bound = ProxyConfig {
            explicit_listen: "192.0.2.10:3128".parse().unwrap(),
            ..ProxyConfig::default()
        };
        assert_eq!(entry(&bound, Some("other.example.net")), "192.0.2.10:3128");

        let custom = ProxyConfig {
            pac_content: "function FindProxyForURL() { return \"DIRECT\"; }".to_owned(),
            ..wildcard
        };
        assert_eq!(
            custom.pac_file_for(Some("gw.example.net")),
            custom.pac_content
        );
    }
}
