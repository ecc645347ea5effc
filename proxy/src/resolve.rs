//! Resolution of origin names through swg's own resolver.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use futures::future::BoxFuture;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::TokioResolver;

/// A failed resolution.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// No resolver upstream is configured and the name is not in `static_hosts`.
    #[error("no resolver upstream configured for {0}")]
    NoUpstream(String),
    /// The name has no address records.
    #[error("no address found for {0}")]
    NotFound(String),
    /// The upstream resolver failed.
    #[error("resolving {host} failed: {message}")]
    Failed {
        /// The name looked up.
        host: String,
        /// The resolver's error.
        message: String,
    },
}

/// Turns an origin name into addresses.
pub trait Resolve: Send + Sync + 'static {
    /// Returns the addresses of `host` (a lower-case DNS name without trailing dot).
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>>;
}

/// The production resolver: static mappings first, then hickory-resolver with the
/// configured upstreams. It never reads `/etc/resolv.conf` or `/etc/hosts`.
pub struct UpstreamResolver {
    static_hosts: BTreeMap<String, Vec<IpAddr>>,
    dns: Option<TokioResolver>,
}

impl UpstreamResolver {
    /// Creates a resolver that sends queries to `upstreams` over UDP and TCP.
    pub fn new(upstreams: &[SocketAddr], static_hosts: BTreeMap<String, Vec<IpAddr>>) -> Arc<Self> {
        let static_hosts = static_hosts
            .into_iter()
            .map(|(name, addresses)| (name.trim_end_matches('.').to_ascii_lowercase(), addresses))
            .collect();
        let dns = (!upstreams.is_empty()).then(|| {
            let mut config = ResolverConfig::from_parts(None, Vec::new(), Vec::new());
            for upstream in upstreams {
                let mut udp = ConnectionConfig::udp();
                udp.port = upstream.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = upstream.port();
                config.add_name_server(NameServerConfig::new(upstream.ip(), true, vec![udp, tcp]));
            }
            let mut builder =
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
            let options: &mut ResolverOpts = builder.options_mut();
            options.use_hosts_file = ResolveHosts::Never;
            builder.build()
        });
        let dns = match dns {
            Some(Ok(resolver)) => Some(resolver),
            Some(Err(error)) => {
                tracing::error!(%error, "building the upstream resolver failed; only static_hosts resolve");
                None
            }
            None => None,
        };
        Arc::new(Self { static_hosts, dns })
    }
}

impl Resolve for UpstreamResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, ResolveError>> {
        Box::pin(async move {
            if let Some(addresses) = self.static_hosts.get(host) {
                return Ok(addresses.clone());
            }
            let Some(dns) = &self.dns else {
                return Err(ResolveError::NoUpstream(host.to_owned()));
            };
            // The trailing dot makes the name fully qualified, so no search domain is tried.
            let lookup =
                dns.lookup_ip(format!("{host}."))
                    .await
                    .map_err(|error| ResolveError::Failed {
                        host: host.to_owned(),
                        message: error.to_string(),
                    })?;
            let addresses: Vec<IpAddr> = lookup.iter().collect();
            if addresses.is_empty() {
                return Err(ResolveError::NotFound(host.to_owned()));
            }
            Ok(addresses)
        })
    }
}
