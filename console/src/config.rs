//! The `[console]` section of `swg.toml`.

use std::net::SocketAddr;

use serde::Deserialize;

/// The console listener, its limits, and the endpoints handed to agents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Address and port of the HTTPS listener.
    pub listen: SocketAddr,
    /// Host name of the console's TLS certificate (minted by the swg root CA), also
    /// presented to clients that send no SNI.
    pub host_name: String,
    /// Bundle id of the agent app, the `AppBundleIdentifier` of the MDM profile.
    pub agent_app_bundle_id: String,
    /// Bundle id of the agent's DNS proxy extension, the `ProviderBundleIdentifier`
    /// of the MDM profile.
    pub agent_provider_bundle_id: String,
    /// DoH URL handed to agents at enrolment and in the MDM profile.
    pub doh_url: String,
    /// Explicit proxy address (`host:port`) handed to agents.
    pub proxy: String,
    /// Console URL handed to agents for renewal, settings and activity.
    pub console_url: String,
    /// Maximum request body in bytes (1 024 to 16 777 216).
    pub max_body_bytes: usize,
    /// Maximum body of a policy replacement in bytes (1 024 to 67 108 864).
    pub max_policy_bytes: usize,
    /// Time allowed for the TLS handshake and for each request's headers, in seconds
    /// (1 to 300).
    pub header_timeout_secs: u64,
    /// Time allowed for a whole request, body and handler included, in seconds
    /// (1 to 3 600). CSV exports keep streaming past it once their response has started.
    pub request_timeout_secs: u64,
    /// Maximum concurrent connections (1 to 100 000); further clients wait in the
    /// kernel's accept queue.
    pub max_connections: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9443)),
            host_name: "localhost".to_owned(),
            agent_app_bundle_id: "com.mimecast.SecurityAgent".to_owned(),
            agent_provider_bundle_id: "com.mimecast.SecurityAgent.DNSProvider".to_owned(),
            doh_url: "https://localhost:8053/dns-query".to_owned(),
            proxy: "localhost:3128".to_owned(),
            console_url: "https://localhost:9443".to_owned(),
            max_body_bytes: 1024 * 1024,
            max_policy_bytes: 4 * 1024 * 1024,
            header_timeout_secs: 10,
            request_timeout_secs: 30,
            max_connections: 1024,
        }
    }
}

/// A `[console]` value outside its allowed range.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A number is outside its allowed range.
    #[error("console.{key} = {value} is out of range; allowed: {min} to {max}")]
    OutOfRange {
        /// The key, without the `console.` prefix.
        key: &'static str,
        /// The configured value.
        value: u64,
        /// The smallest allowed value.
        min: u64,
        /// The largest allowed value.
        max: u64,
    },
    /// A text value is empty.
    #[error("console.{0} is empty; set it to a non-empty value")]
    Empty(&'static str),
    /// An endpoint handed to agents is not of the form the agents need.
    #[error("console.{key} = {value:?} is invalid; expected {expected}")]
    InvalidEndpoint {
        /// The key, without the `console.` prefix.
        key: &'static str,
        /// The configured value.
        value: String,
        /// The form the key takes.
        expected: &'static str,
    },
}

impl ConsoleConfig {
    /// Checks every value against its allowed range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&'static str, u64, u64, u64); 5] = [
            (
                "max_body_bytes",
                self.max_body_bytes as u64,
                1024,
                16 * 1024 * 1024,
            ),
            (
                "max_policy_bytes",
                self.max_policy_bytes as u64,
                1024,
                64 * 1024 * 1024,
            ),
            ("header_timeout_secs", self.header_timeout_secs, 1, 300),
            ("request_timeout_secs", self.request_timeout_secs, 1, 3600),
            ("max_connections", self.max_connections as u64, 1, 100_000),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError::OutOfRange {
                    key,
                    value,
                    min,
                    max,
                });
            }
        }
        let texts: [(&'static str, &str); 6] = [
            ("host_name", &self.host_name),
            ("agent_app_bundle_id", &self.agent_app_bundle_id),
            ("agent_provider_bundle_id", &self.agent_provider_bundle_id),
            ("doh_url", &self.doh_url),
            ("proxy", &self.proxy),
            ("console_url", &self.console_url),
        ];
        for (key, value) in texts {
            if value.trim().is_empty() {
                return Err(ConfigError::Empty(key));
            }
        }
        check_host_name("host_name", &self.host_name)?;
        check_https_url("doh_url", &self.doh_url)?;
        check_https_url("console_url", &self.console_url)?;
        check_host_port("proxy", &self.proxy)
    }
}

/// Checks that a host name is a DNS name (labels of letters, digits and hyphens)
/// or an IP address, since it goes into the console's certificate and URL.
fn check_host_name(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let dns_name = value.len() <= 253
        && value.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
        });
    if dns_name || value.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(ConfigError::InvalidEndpoint {
            key,
            value: value.to_owned(),
            expected: "a DNS name such as swg.example.com, or an IP address",
        })
    }
}

/// Checks that an endpoint is an absolute `https://` URL with a host.
fn check_https_url(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let valid =
        url::Url::parse(value).is_ok_and(|url| url.scheme() == "https" && url.host().is_some());
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InvalidEndpoint {
            key,
            value: value.to_owned(),
            expected: "an https:// URL with a host",
        })
    }
}

/// Checks that an endpoint is `host:port` with a port from 1 to 65535.
fn check_host_port(key: &'static str, value: &str) -> Result<(), ConfigError> {
    // A scheme with no default port, so that an explicit `:80` or `:443` is kept.
    let valid = url::Url::parse(&format!("swg-endpoint://{value}/")).is_ok_and(|url| {
        url.host().is_some()
            && url.port().is_some_and(|port| port > 0)
            && url.path() == "/"
            && url.username().is_empty()
    });
    if valid {
        Ok(())
    } else {
        Err(ConfigError::InvalidEndpoint {
            key,
            value: value.to_owned(),
            expected: "host:port, such as proxy.example.com:3128",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        ConsoleConfig::default().validate().unwrap();
    }

    #[test]
    fn host_name_is_dns_name_or_address() {
        for good in [
            "localhost",
            "swg.example.com",
            "gw-1.example",
            "127.0.0.1",
            "::1",
        ] {
            let config = ConsoleConfig {
                host_name: good.to_owned(),
                ..ConsoleConfig::default()
            };
            assert!(config.validate().is_ok(), "{good}");
        }
        for bad in ["gw&co", "a..b", "space name", "x/y", &"a".repeat(64)] {
            let config = ConsoleConfig {
                host_name: bad.to_owned(),
                ..ConsoleConfig::default()
            };
            let error = config.validate().unwrap_err();
            assert!(
                matches!(
                    error,
                    ConfigError::InvalidEndpoint {
                        key: "host_name",
                        ..
                    }
                ),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn endpoints_must_have_their_form() {
        for (doh_url, proxy, console_url, bad_key) in [
            (
                "not a url",
                "localhost:3128",
                "https://localhost:9443",
                "doh_url",
            ),
            (
                "http://localhost/dns-query",
                "localhost:3128",
                "https://localhost:9443",
                "doh_url",
            ),
            (
                "https://localhost/dns-query",
                "no-port",
                "https://localhost:9443",
                "proxy",
            ),
            (
                "https://localhost/dns-query",
                "localhost:0",
                "https://localhost:9443",
                "proxy",
            ),
            (
                "https://localhost/dns-query",
                "localhost:3128/x",
                "https://localhost:9443",
                "proxy",
            ),
            (
                "https://localhost/dns-query",
                "localhost:3128",
                "ftp://x",
                "console_url",
            ),
        ] {
            let config = ConsoleConfig {
                doh_url: doh_url.to_owned(),
                proxy: proxy.to_owned(),
                console_url: console_url.to_owned(),
                ..ConsoleConfig::default()
            };
            match config.validate() {
                Err(ConfigError::InvalidEndpoint { key, .. }) => assert_eq!(key, bad_key),
                other => panic!("{doh_url} {proxy} {console_url}: {other:?}"),
            }
        }
    }

    #[test]
    fn proxy_on_port_80_is_valid() {
        let config = ConsoleConfig {
            proxy: "proxy.example.com:80".to_owned(),
            ..ConsoleConfig::default()
        };
        config.validate().unwrap();
    }
}
