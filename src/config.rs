//! `swg.toml`: the configuration file, one section per component.
//!
//! Every section is a struct with `#[serde(default, deny_unknown_fields)]`,
//! so a missing file or section means the documented defaults, and a
//! misspelled key is an error that names the file, line and column. Adding a
//! component's section is one field here plus its `validate()` call.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Name of the configuration file read from the working directory when
/// `--config` is not given.
pub(crate) const DEFAULT_CONFIG_FILE: &str = "swg.toml";

/// Default data folder, relative to the working directory.
pub(crate) const DEFAULT_DATA_DIR: &str = "swg-data";

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    /// Folder for the generated root CA, secrets and the embedded store.
    pub(crate) data_dir: PathBuf,
    /// Threads that run the listeners; 0 means one per core the process may use.
    pub(crate) worker_threads: usize,
    /// `[ca]`: the root CA.
    pub(crate) ca: swg_ca::CaConfig,
    /// `[leaf]`: leaf certificates and their cache.
    pub(crate) leaf: swg_ca::LeafConfig,
    /// `[operations]`: the health and metrics listener.
    pub(crate) operations: OperationsConfig,
    /// `[policy]`: the tenants' policy files.
    pub(crate) policy: swg_policy::PolicyConfig,
    /// `[activity]`: the activity log and its store.
    pub(crate) activity: swg_activity::ActivityConfig,
    /// `[identity]`: lifetimes of tokens, cookies and tickets, and the signing keys.
    pub(crate) identity: swg_identity::IdentityConfig,
    /// `[console]`: the admin and agent API listener.
    pub(crate) console: swg_console::ConsoleConfig,
    /// `[pages]`: block, warn and error page templates and branding.
    pub(crate) pages: swg_blockpages::PagesConfig,
    /// `[dns]`: the agent-facing resolver.
    pub(crate) dns: swg_dns::DnsConfig,
    /// `[proxy]`: the inspection proxy.
    pub(crate) proxy: swg_proxy::ProxyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            worker_threads: 0,
            ca: swg_ca::CaConfig::default(),
            leaf: swg_ca::LeafConfig::default(),
            operations: OperationsConfig::default(),
            policy: swg_policy::PolicyConfig::default(),
            activity: swg_activity::ActivityConfig::default(),
            identity: swg_identity::IdentityConfig::default(),
            console: swg_console::ConsoleConfig::default(),
            pages: swg_blockpages::PagesConfig::default(),
            dns: swg_dns::DnsConfig::default(),
            proxy: swg_proxy::ProxyConfig::default(),
        }
    }
}

/// The `[operations]` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct OperationsConfig {
    /// Address of the listener serving `/healthz`, `/readyz` and `/metrics`.
    /// Port 0 picks a free port, which is logged.
    pub(crate) listen: SocketAddr,
}

impl Default for OperationsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

/// Error from reading or validating the configuration.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The file named with `--config` could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
        /// Description of the problem.
        message: String,
    },
    /// A value is outside its allowed range.
    #[error("{path}: {source}")]
    Invalid {
        /// The file, or `defaults` when no file was read.
        path: String,
        /// The section's own error, which names the key and its allowed range.
        source: SectionError,
    },
}

/// Error of one section's `validate()`.
pub(crate) type SectionError = Box<dyn std::error::Error + Send + Sync>;

/// Replaces Rust's integer type names in a parse message, such as "expected
/// usize", with plain words.
fn plain_types(message: &str) -> String {
    let mut plain = message.to_owned();
    for (rust, words) in [
        ("expected usize", "expected a whole number, 0 or more"),
        ("expected u64", "expected a whole number, 0 or more"),
        ("expected u32", "expected a whole number, 0 or more"),
        ("expected u16", "expected a whole number from 0 to 65535"),
        ("expected u8", "expected a whole number from 0 to 255"),
        ("expected i64", "expected a whole number"),
    ] {
        plain = plain.replace(rust, words);
    }
    plain
}

/// Largest accepted `worker_threads`.
const MAX_WORKER_THREADS: usize = 1024;

/// Command-line options that locate the configuration file and the data folder.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ConfigArgs {
    /// Configuration file [default: ./swg.toml if it exists].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Data folder for the root CA and other state; overrides `data_dir`
    /// in the configuration file [default: ./swg-data].
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// Reads the configuration file (the one given, or `./swg.toml` if it
    /// exists, or none), applies command-line overrides and validates it.
    pub(crate) fn load(&self) -> Result<(Config, Option<PathBuf>), ConfigError> {
        let path = match &self.config {
            Some(path) => Some(path.clone()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.is_file()),
        };

        let mut config = match &path {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }

        let source = path
            .as_ref()
            .map_or_else(|| "defaults".to_owned(), |p| p.display().to_string());
        config
            .validate()
            .map_err(|source_error| ConfigError::Invalid {
                path: source,
                source: source_error,
            })?;
        Ok((config, path))
    }
}

impl Config {
    /// Reads and parses `path` (no validation).
    pub(crate) fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` names it in errors.
    pub(crate) fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|error| {
            let (line, column) = error
                .span()
                .map_or((1, 1), |span| line_and_column(text, span.start));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: plain_types(error.message().trim_end()),
            }
        })
    }

    /// Checks every section's values. Each section's `validate()` returns
    /// its crate's own error type, which `?` boxes.
    pub(crate) fn validate(&self) -> Result<(), SectionError> {
        if self.worker_threads > MAX_WORKER_THREADS {
            return Err(format!(
                "worker_threads = {} is out of range; allowed: 0 (one per core) to {MAX_WORKER_THREADS}",
                self.worker_threads
            )
            .into());
        }
        self.ca.validate()?;
        self.leaf.validate()?;
        self.policy.validate()?;
        self.activity.validate()?;
        self.identity.validate()?;
        self.console.validate()?;
        self.pages.validate()?;
        self.dns.validate()?;
        self.proxy.validate()?;
        self.check_distinct_listeners()?;
        self.check_doh_host_name()?;
        Ok(())
    }

    /// Checks that agents connect to the DoH listener under the one host name it
    /// serves: `console.doh_url`, when set, must name `dns.doh_host`. Otherwise every
    /// agent's handshake fails, with an access-denied alert for another name or a
    /// certificate for the wrong name for an IP address (which sends no server
    /// name, so it gets `dns.doh_host`'s certificate).
    fn check_doh_host_name(&self) -> Result<(), SectionError> {
        if self.console.doh_url == swg_console::ConsoleConfig::default().doh_url {
            // Left at its default, the URL is derived from dns.doh_host at start.
            return Ok(());
        }
        let Ok(url) = url::Url::parse(&self.console.doh_url) else {
            return Ok(());
        };
        let wanted = self.dns.doh_host.trim_end_matches('.');
        match url.host() {
            Some(url::Host::Domain(host)) => {
                if host.trim_end_matches('.').eq_ignore_ascii_case(wanted) {
                    return Ok(());
                }
                Err(format!(
                    "console.doh_url names host {host:?}, but the DoH listener serves only \
                     dns.doh_host = {wanted:?}; set both to the same host name"
                )
                .into())
            }
            Some(url::Host::Ipv4(address)) => {
                if address.to_string() == wanted {
                    return Ok(());
                }
                Err(format!(
                    "console.doh_url names the address {address}, but the DoH certificate \
                     names only dns.doh_host = {wanted:?}, so agents would reject it; set \
                     dns.doh_host = \"{address}\" or put {wanted:?} in console.doh_url"
                )
                .into())
            }
            Some(url::Host::Ipv6(address)) => Err(format!(
                "console.doh_url names the IPv6 address {address}, but dns.doh_host \
                 cannot be an IPv6 address, so the DoH certificate cannot name it; put \
                 {wanted:?} in console.doh_url"
            )
            .into()),
            None => Ok(()),
        }
    }

    /// Checks that no two TCP listeners share an address and port, so that a clash
    /// names both keys instead of failing at the second bind. Port 0 (any free
    /// port) never clashes.
    fn check_distinct_listeners(&self) -> Result<(), SectionError> {
        let listeners = [
            ("operations.listen", self.operations.listen),
            ("console.listen", self.console.listen),
            ("dns.doh_listen", self.dns.doh_listen),
            ("dns.tcp_listen", self.dns.tcp_listen),
            ("proxy.tls_listen", self.proxy.tls_listen),
            ("proxy.http_listen", self.proxy.http_listen),
            ("proxy.explicit_listen", self.proxy.explicit_listen),
        ];
        for (position, (key, address)) in listeners.iter().enumerate() {
            for (other_key, other) in &listeners[position + 1..] {
                if address.port() != 0 && listeners_clash(*address, *other) {
                    return Err(format!(
                        "{key} ({address}) and {other_key} ({other}) use the same port \
                         on overlapping addresses; give each listener its own port"
                    )
                    .into());
                }
            }
        }
        Ok(())
    }
}

/// Tells whether binding both TCP addresses fails: the same port, and the same IP,
/// or an unspecified IP that covers the other. `0.0.0.0` covers every IPv4
/// address. `::` covers every address of both families, because swg's IPv6
/// listeners accept IPv4 too (Linux's default of `IPV6_V6ONLY` off).
fn listeners_clash(first: SocketAddr, second: SocketAddr) -> bool {
    let covers = |wide: SocketAddr, other: SocketAddr| {
        wide.ip().is_unspecified() && (wide.is_ipv6() || other.is_ipv4())
    };
    first.port() == second.port()
        && (first.ip() == second.ip() || covers(first, second) || covers(second, first))
}

/// Converts a byte offset into a 1-based line and column (in characters).
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_listeners_are_named() {
        let text =
            "[proxy]\ntls_listen = \"127.0.0.1:13128\"\nexplicit_listen = \"127.0.0.1:13128\"\n";
        let config = Config::from_toml(text, Path::new("swg.toml")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert_eq!(
            error,
            "proxy.tls_listen (127.0.0.1:13128) and proxy.explicit_listen (127.0.0.1:13128) \
             use the same port on overlapping addresses; give each listener its own port"
        );

        let unspecified = "[console]\nlisten = \"0.0.0.0:9090\"\n";
        let config = Config::from_toml(unspecified, Path::new("swg.toml")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("operations.listen (127.0.0.1:9090) and console.listen"),
            "{error}"
        );

        let dual_stack = "[console]\nlisten = \"[::]:9090\"\n";
        let config = Config::from_toml(dual_stack, Path::new("swg.toml")).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.starts_with("operations.listen (127.0.0.1:9090) and console.listen ([::]:9090)"),
            "{error}"
        );

        let apart =
            "[console]\nlisten = \"127.0.0.2:9090\"\n[operations]\nlisten = \"127.0.0.1:0\"\n";
        let config = Config::from_toml(apart, Path::new("swg.toml")).unwrap();
        assert!(config.validate().is_ok());
        assert!(Config::from_toml("", Path::new("swg.toml"))
            .unwrap()
            .validate()
            .is_ok());
    }

    #[test]
    fn empty_file_gives_documented_defaults() {
        let config = Config::from_toml("", Path::new("swg.toml")).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("swg-data"));
        assert_eq!(config.operations.listen, "127.0.0.1:9090".parse().unwrap());
        assert_eq!(config.leaf.validity_days, 30);
        assert_eq!(config.leaf.cache_entries, 100_000);
        assert_eq!(config.ca.key_type, swg_ca::KeyType::EcdsaP256);
    }

    #[test]
    fn every_section_parses() {
        let text = r#"
data_dir = "/var/lib/swg"

[ca]
key_type = "rsa-3072"
common_name = "Example Root"
organization = "Example"

[leaf]
validity_days = 90
cache_entries = 5000

[operations]
listen = "[::1]:9191"
"#;
        let config = Config::from_toml(text, Path::new("swg.toml")).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/swg"));
        assert_eq!(config.ca.key_type, swg_ca::KeyType::Rsa3072);
        assert_eq!(config.ca.common_name, "Example Root");
        assert_eq!(config.leaf.validity_days, 90);
        assert_eq!(config.leaf.cache_entries, 5000);
        assert_eq!(config.operations.listen, "[::1]:9191".parse().unwrap());
        assert!(config.validate().is_ok());
    }

    #[test]
    fn worker_threads_are_bounded() {
        let config = Config::from_toml("worker_threads = 2\n", Path::new("swg.toml")).unwrap();
        assert_eq!(config.worker_threads, 2);
        assert!(config.validate().is_ok());
        let config = Config::from_toml("worker_threads = 5000\n", Path::new("swg.toml")).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("worker_threads = 5000 is out of range"),
            "{message}"
        );
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let text = "data_dir = \"x\"\n\n[leaf]\nvalidity_dayz = 3\n";
        let error = Config::from_toml(text, Path::new("/etc/swg.toml")).unwrap_err();
        let message = error.to_string();
        assert!(
            message.starts_with("/etc/swg.toml:4:1: unknown field `validity_dayz`"),
            "{message}"
        );
    }

    #[test]
    fn small_rsa_key_type_names_line() {
        let text = "[ca]\nkey_type = \"rsa-1024\"\n";
        let message = Config::from_toml(text, Path::new("swg.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("swg.toml:2:"), "{message}");
        assert!(message.contains("1024 bits are too weak"), "{message}");
    }

    #[test]
    fn out_of_range_value_names_file_and_key() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("swg.toml");
        std::fs::write(&path, "[leaf]\nvalidity_days = 400\n").unwrap();
        let args = ConfigArgs {
            config: Some(path.clone()),
            data_dir: None,
        };
        let message = args.load().unwrap_err().to_string();
        assert_eq!(
            message,
            format!(
                "{}: leaf.validity_days = 400 is out of range; allowed: 1 to 397",
                path.display()
            )
        );
    }

    #[test]
    fn range_errors_match_across_sections() {
        for (section, expected) in [
            (
                "[proxy.limits]\nmax_headers = 5\n",
                "proxy.limits.max_headers = 5 is out of range; allowed: 8 to 1000",
            ),
            (
                "[proxy]\nauth_attempt_window_secs = 0\n",
                "proxy.auth_attempt_window_secs = 0 is out of range; allowed: 1 to 3600",
            ),
            (
                "[activity]\nretention_days = 91\n",
                "activity.retention_days = 91 is out of range; allowed: 1 to 90",
            ),
            (
                "[dns]\nsteer_ttl_secs = 61\n",
                "dns.steer_ttl_secs = 61 is out of range; allowed: 1 to 60",
            ),
            (
                "[identity]\nticket_ttl_secs = 3600\n",
                "identity.ticket_ttl_secs = 3600 is out of range; allowed: 5 to 300",
            ),
        ] {
            let config = Config::from_toml(section, Path::new("swg.toml")).unwrap();
            let message = config.validate().unwrap_err().to_string();
            assert_eq!(message, expected, "{section}");
        }
    }

    #[test]
    fn doh_url_must_name_doh_host() {
        let mismatch = "[console]\ndoh_url = \"https://localhost:18053/dns-query\"\n\
                        [dns]\ndoh_host = \"dns.example.net\"\n";
        let config = Config::from_toml(mismatch, Path::new("swg.toml")).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("dns.doh_host = \"dns.example.net\""),
            "{message}"
        );

        // An address sends no server name, so it gets dns.doh_host's certificate.
        for (url, expected) in [
            (
                "https://127.0.0.1:8053/dns-query",
                "dns.doh_host = \"127.0.0.1\"",
            ),
            ("https://[::1]:8053/dns-query", "IPv6 address ::1"),
        ] {
            let text =
                format!("[console]\ndoh_url = \"{url}\"\n[dns]\ndoh_host = \"dns.example.net\"\n");
            let config = Config::from_toml(&text, Path::new("swg.toml")).unwrap();
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(expected), "{message}");
        }

        for fine in [
            "[console]\ndoh_url = \"https://DNS.example.net:8053/dns-query\"\n[dns]\ndoh_host = \"dns.example.net\"\n",
            "[console]\ndoh_url = \"https://127.0.0.1:8053/dns-query\"\n[dns]\ndoh_host = \"127.0.0.1\"\n",
            "[dns]\ndoh_host = \"dns.example.net\"\n",
        ] {
            let config = Config::from_toml(fine, Path::new("swg.toml")).unwrap();
            assert!(config.validate().is_ok(), "{fine}");
        }
    }

    #[test]
    fn data_dir_option_overrides_file() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("swg.toml");
        std::fs::write(&path, "data_dir = \"from-file\"\n").unwrap();
        let args = ConfigArgs {
            config: Some(path.clone()),
            data_dir: Some("from-flag".into()),
        };
        let (config, used) = args.load().unwrap();
        assert_eq!(config.data_dir, PathBuf::from("from-flag"));
        assert_eq!(used, Some(path));
    }

    #[test]
    fn missing_config_file_is_an_error() {
        let args = ConfigArgs {
            config: Some("/nonexistent/swg.toml".into()),
            data_dir: None,
        };
        let message = args.load().unwrap_err().to_string();
        assert!(
            message.starts_with("cannot read configuration file /nonexistent/swg.toml"),
            "{message}"
        );
    }

    #[test]
    fn wrong_type_is_reported() {
        let text = "[operations]\nlisten = \"not an address\"\n";
        let message = Config::from_toml(text, Path::new("swg.toml"))
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("swg.toml:2:10:"), "{message}");

        let text = "[proxy.limits]\nmax_headers = -1\n";
        let message = Config::from_toml(text, Path::new("swg.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.ends_with("expected a whole number, 0 or more"),
            "{message}"
        );
    }
}
