//! Binding the listeners and starting the resolver.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::ResolvesServerCert;
use rustls::ServerConfig;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::cache::CachingUpstream;
use crate::config::{ConfigError, DnsConfig};
use crate::connections::{ConnectionLimiter, ConnectionPool};
use crate::doh::{serve_doh, DohCertificates, DohLimits};
use crate::metrics::DnsMetrics;
use crate::ratelimit::RateLimiter;
use crate::resolver::{Backends, Resolver};
use crate::tcp::{serve_tcp, TcpConnections, TcpLimits};
use crate::udp::serve_udp;
use crate::upstream::{system_upstreams, UpstreamError, Upstreams};

/// An error that stops the resolver from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The `[dns]` section is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No upstream resolver could be found.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// A listener could not be bound.
    #[error("cannot listen on {transport} {addr}: {source}")]
    Bind {
        /// `udp`, `tcp` or `doh`.
        transport: &'static str,
        /// The configured address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics could not be registered (usually: registered twice).
    #[error("cannot register DNS metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// The running resolver: its listeners and their bound addresses.
pub struct DnsServer {
    resolver: Arc<Resolver>,
    udp_addr: SocketAddr,
    tcp_addr: SocketAddr,
    doh_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
    in_flight: Arc<Semaphore>,
    max_in_flight: usize,
}

impl DnsServer {
    /// Binds the UDP, TCP and (with `certificates`) DoH listeners and starts serving.
    ///
    /// `certificates` supplies the DoH listener's certificate for `doh_host`; without
    /// it only plain DNS is served. It is asked only for handshakes whose SNI is
    /// `doh_host` or that send no SNI, and handshakes for other names fail. With no
    /// configured upstreams the `nameserver` lines of `/etc/resolv.conf` are used.
    pub async fn start(
        config: DnsConfig,
        backends: Backends,
        certificates: Option<Arc<dyn ResolvesServerCert>>,
        registry: &prometheus::Registry,
    ) -> Result<Self, ServerError> {
        config.validate()?;
        let metrics = DnsMetrics::new(registry)?;
        let mut upstream_addrs = config.upstream_addrs()?;
        if upstream_addrs.is_empty() {
            upstream_addrs = system_upstreams(Path::new("/etc/resolv.conf"))?;
        }
        let upstreams = Upstreams::new(upstream_addrs, config.upstream_timeout(), metrics.clone())?
            .with_extra_roots(&config.upstream_extra_roots)?;
        let upstream = CachingUpstream::new(upstreams, config.cache_size, metrics.clone());

        // TCP connections from sources in no location get a pool of their own, so that
        // they can never take the slots that DoH and the tenants' offices share.
        let new_pool = |pool| {
            ConnectionLimiter::new(
                pool,
                config.max_connections_per_client,
                config.max_connections,
                config.client_ipv6_prefix_len,
                metrics.refused.clone(),
            )
        };
        let connections = new_pool(ConnectionPool::Shared);
        let tcp_connections = TcpConnections {
            known_sources: connections.clone(),
            unknown_sources: new_pool(ConnectionPool::UnknownSources),
        };
        let config = Arc::new(config);
        let resolver = Arc::new(Resolver::new(config.clone(), upstream, backends, metrics));
        let in_flight = Arc::new(Semaphore::new(config.max_queries_in_flight));
        let in_flight_total = in_flight.clone();
        let limiter = RateLimiter::new(
            config.udp_rate_limit_qps,
            config.udp_rate_limit_burst,
            config.client_ipv6_prefix_len,
        )
        .map(Arc::new);
        let mut tasks = Vec::new();

        let (udp, tcp) = bind_plain(config.udp_listen, config.tcp_listen).await?;
        let udp_addr = udp.local_addr().unwrap_or(config.udp_listen);
        let udp = Arc::new(udp);
        // Several receive loops on one socket keep every core busy under load.
        let receivers = std::thread::available_parallelism()
            .map_or(1, usize::from)
            .min(8);
        for _ in 0..receivers {
            tasks.push(tokio::spawn(serve_udp(
                udp.clone(),
                resolver.clone(),
                in_flight.clone(),
                limiter.clone(),
            )));
        }

        let tcp_addr = tcp.local_addr().unwrap_or(config.tcp_listen);
        let tcp_limits = TcpLimits {
            idle_timeout: config.idle_timeout(),
            read_timeout: config.read_timeout(),
            write_timeout: config.write_timeout(),
            max_queries_per_connection: config.max_queries_per_connection,
        };
        tasks.push(tokio::spawn(serve_tcp(
            tcp,
            resolver.clone(),
            tcp_connections,
            in_flight.clone(),
            tcp_limits,
        )));

        let mut doh_addr = None;
        if let Some(certificates) = certificates {
            let listener = TcpListener::bind(config.doh_listen)
                .await
                .map_err(|source| ServerError::Bind {
                    transport: "doh",
                    addr: config.doh_listen,
                    source,
                })?;
            doh_addr = Some(listener.local_addr().unwrap_or(config.doh_listen));
            let mut tls = ServerConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|error| ServerError::Bind {
                transport: "doh",
                addr: config.doh_listen,
                source: std::io::Error::other(error),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(DohCertificates::new(
                certificates,
                &config.doh_host,
                resolver
                    .metrics()
                    .refused
                    .with_label_values(&["tls_server_name"]),
            )));
            tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let limits = DohLimits {
                idle_timeout: config.idle_timeout(),
                read_timeout: config.read_timeout(),
                write_timeout: config.write_timeout(),
                max_queries_per_connection: config.max_queries_per_connection,
            };
            let acceptor = TlsAcceptor::from(Arc::new(tls));
            tasks.push(tokio::spawn(serve_doh(
                listener,
                acceptor,
                resolver.clone(),
                connections,
                in_flight,
                limits,
            )));
        }

        tracing::info!(udp = %udp_addr, tcp = %tcp_addr, doh = ?doh_addr, "DNS resolver listening");
        Ok(DnsServer {
            resolver,
            udp_addr,
            tcp_addr,
            doh_addr,
            tasks,
            in_flight: in_flight_total,
            max_in_flight: config.max_queries_in_flight,
        })
    }

    /// Returns the bound UDP address (useful when the configuration sets port 0).
    pub fn udp_addr(&self) -> SocketAddr {
        self.udp_addr
    }

    /// Returns the bound TCP address.
    pub fn tcp_addr(&self) -> SocketAddr {
        self.tcp_addr
    }

    /// Returns the bound DoH address, if DoH is served.
    pub fn doh_addr(&self) -> Option<SocketAddr> {
        self.doh_addr
    }

    /// Returns the query handler, for callers that answer queries themselves.
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    /// Stops accepting connections and packets. Connections already open finish their
    /// queries in flight.
    pub fn stop_accepting(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Waits until every query in flight (UDP, TCP and DoH) has been answered, or until
    /// `deadline` has passed; returns whether all were answered. Call it after
    /// [`DnsServer::stop_accepting`], so that no new query starts meanwhile.
    pub async fn drain(&self, deadline: Duration) -> bool {
        let all = u32::try_from(self.max_in_flight).unwrap_or(u32::MAX);
        let waiting =
            self.max_in_flight - self.in_flight.available_permits().min(self.max_in_flight);
        if waiting > 0 {
            tracing::info!(queries = waiting, "waiting for DNS queries in flight");
        }
        match tokio::time::timeout(deadline, self.in_flight.acquire_many(all)).await {
            Ok(Ok(_all_permits)) => true,
            Ok(Err(_closed)) => true,
            Err(_elapsed) => {
                tracing::warn!(
                    deadline_secs = deadline.as_secs(),
                    "DNS queries still in flight at the shutdown deadline"
                );
                false
            }
        }
    }
}

/// Binds the UDP and TCP listeners. When both addresses are the same, TCP takes the
/// port UDP got, which matters for port 0: a port free for UDP may be taken for TCP,
/// so binding is retried with a new port a few times.
async fn bind_plain(
    udp_listen: SocketAddr,
    tcp_listen: SocketAddr,
) -> Result<(UdpSocket, TcpListener), ServerError> {
    let bind_error = |transport, addr, source| ServerError::Bind {
        transport,
        addr,
        source,
    };
    let attempts = if udp_listen == tcp_listen && udp_listen.port() == 0 {
        10
    } else {
        1
    };
    let mut last_error = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(udp_listen)
            .await
            .map_err(|source| bind_error("udp", udp_listen, source))?;
        let tcp_addr = match (udp_listen == tcp_listen, udp.local_addr()) {
            (true, Ok(bound)) => bound,
            _ => tcp_listen,
        };
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(source) => last_error = Some(source),
        }
    }
    let source = last_error.unwrap_or_else(|| std::io::Error::other("no attempt made"));
    Err(bind_error("tcp", tcp_listen, source))
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}
