//! The proxy as a whole: shared state, binding and serving the listeners, shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::boundary::Collaborators;
use crate::budget::Budget;
use crate::config::{ConfigError, ProxyConfig};
use crate::connection::{ConnectionLimiter, Listener};
use crate::listener;
use crate::metrics::ProxyMetrics;
use crate::resolve::{Resolve, UpstreamResolver};
use crate::signed::{FlowMemory, SignedValues};
use crate::stall::ResponseWatch;
use crate::upstream::{OriginTls, TrustError, Upstream};

/// A failure to start the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The origin trust roots could not be loaded.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The client-facing TLS configuration could not be built.
    #[error("building the landing TLS configuration failed: {0}")]
    Tls(#[from] rustls::Error),
    /// The metrics could not be registered.
    #[error("registering proxy metrics failed: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A listener address could not be bound.
    #[error("binding the {listener} listener to {address} failed: {source}")]
    Bind {
        /// The listener.
        listener: &'static str,
        /// The address.
        address: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
}

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) config: ProxyConfig,
    pub(crate) collaborators: Collaborators,
    pub(crate) upstream: Upstream,
    pub(crate) metrics: ProxyMetrics,
    pub(crate) limiter: Arc<ConnectionLimiter>,
    /// The process's budget of response buffers.
    pub(crate) response_budget: Arc<Budget>,
    /// The process's budget of HTTP/2 connection windows offered to clients.
    pub(crate) request_budget: Arc<Budget>,
    pub(crate) landing_tls: Arc<ServerConfig>,
    /// Signer and spent-ticket store of swg's cookies, tickets and form tokens;
    /// without them swg sets no cookies and warn verdicts are blocked.
    pub(crate) signed: Option<SignedValues>,
    /// Redirects to the auth host, recent and per device.
    pub(crate) flows: FlowMemory,
    /// Becomes `true` when the proxy shuts down: connections then finish their
    /// requests in flight and close.
    pub(crate) shutdown: watch::Receiver<bool>,
    shutdown_sender: watch::Sender<bool>,
    /// Every connection and tunnel task, so that shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
}

impl Shared {
    /// Returns a response watch for a client connection opened now.
    pub(crate) fn response_watch(&self) -> Arc<ResponseWatch> {
        ResponseWatch::new(
            self.config.timeouts.idle(),
            self.metrics.stalled_responses.clone(),
        )
    }
}

/// The three bound listeners.
pub struct Listeners {
    /// The TLS landing.
    pub tls: TcpListener,
    /// The plain-HTTP landing.
    pub http: TcpListener,
    /// The explicit proxy.
    pub explicit: TcpListener,
}

/// The inspection proxy.
#[derive(Clone)]
pub struct Proxy {
    shared: Arc<Shared>,
}

impl Proxy {
    /// Creates the proxy with swg's upstream resolver built from `config` and no
    /// signed values: no identity cookies, no auth host, warn verdicts blocked. Use
    /// [`Proxy::builder`] to add them.
    pub fn new(
        config: ProxyConfig,
        collaborators: Collaborators,
        registry: &prometheus::Registry,
    ) -> Result<Proxy, ProxyError> {
        Proxy::builder(config, collaborators).build(registry)
    }

    /// Creates the proxy with a given resolver and no signed values.
    pub fn with_resolver(
        config: ProxyConfig,
        collaborators: Collaborators,
        resolver: Arc<dyn Resolve>,
        registry: &prometheus::Registry,
    ) -> Result<Proxy, ProxyError> {
        Proxy::builder(config, collaborators)
            .resolver(resolver)
            .build(registry)
    }

    /// Starts building a proxy from `config` and `collaborators`.
    pub fn builder(config: ProxyConfig, collaborators: Collaborators) -> ProxyBuilder {
        ProxyBuilder {
            config,
            collaborators,
            resolver: None,
            signed: None,
        }
    }

    /// Adds the addresses of other listeners of this process, such as the
    /// resolver's, the console's and the metrics endpoint's. Requests to them are
    /// refused like requests to the proxy's own listeners, even when
    /// `allowed_destinations` covers their addresses, so that clients cannot
    /// reach swg's own services through the proxy.
    pub fn add_own_listeners(&self, listeners: impl IntoIterator<Item = SocketAddr>) {
        self.shared
            .upstream
            .connector()
            .add_own_listeners(listeners);
    }

    /// Binds the three configured listener addresses.
    pub async fn bind(&self) -> Result<Listeners, ProxyError> {
        let config = &self.shared.config;
        Ok(Listeners {
            tls: bind("tls", config.tls_listen).await?,
            http: bind("http", config.http_listen).await?,
            explicit: bind("explicit", config.explicit_listen).await?,
        })
    }

    /// Serves the listeners until `shutdown` completes, then stops accepting and
    /// lets open connections finish for at most `drain`.
    pub async fn serve(
        &self,
        listeners: Listeners,
        shutdown: impl Future<Output = ()>,
        drain: Duration,
    ) {
        let own_listeners = [&listeners.tls, &listeners.http, &listeners.explicit]
            .into_iter()
            .filter_map(|listener| listener.local_addr().ok());
        self.add_own_listeners(own_listeners);
        let loops = [
            tokio::spawn(listener::accept_loop(
                listeners.tls,
                Listener::Tls,
                self.shared.clone(),
            )),
            tokio::spawn(listener::accept_loop(
                listeners.http,
                Listener::Http,
                self.shared.clone(),
            )),
            tokio::spawn(listener::accept_loop(
                listeners.explicit,
                Listener::Explicit,
                self.shared.clone(),
            )),
        ];

        shutdown.await;
        let _ = self.shared.shutdown_sender.send(true);
        for accept_loop in loops {
            let _ = accept_loop.await;
        }
        self.shared.tasks.close();
        if tokio::time::timeout(drain, self.shared.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                ?drain,
                open = self.shared.tasks.len(),
                "proxy connections still open after the drain time"
            );
        }
    }
}

/// Builds a [`Proxy`] with optional parts.
pub struct ProxyBuilder {
    config: ProxyConfig,
    collaborators: Collaborators,
    resolver: Option<Arc<dyn Resolve>>,
    signed: Option<SignedValues>,
}

impl ProxyBuilder {
    /// Resolves origin names with `resolver` instead of one built from the
    /// configuration.
    pub fn resolver(mut self, resolver: Arc<dyn Resolve>) -> ProxyBuilder {
        self.resolver = Some(resolver);
        self
    }

    /// Issues and checks the identity cookie, tickets, warn form tokens and the
    /// acknowledgement cookie with `signed`.
    pub fn signed_values(mut self, signed: SignedValues) -> ProxyBuilder {
        self.signed = Some(signed);
        self
    }

    /// Validates the configuration and creates the proxy.
    pub fn build(self, registry: &prometheus::Registry) -> Result<Proxy, ProxyError> {
        let ProxyBuilder {
            config,
            collaborators,
            resolver,
            signed,
        } = self;
        config.validate()?;
        let resolver = resolver.unwrap_or_else(|| {
            UpstreamResolver::new(&config.resolver_upstreams, config.static_hosts.clone())
        });
        let origin_tls = OriginTls::new(&config.extra_roots)?;
        let metrics = ProxyMetrics::new(registry)?;
        let upstream = Upstream::new(
            &config,
            resolver,
            origin_tls,
            metrics.upstream_resends.clone(),
        );
        let landing_tls = listener::tls::landing_config(collaborators.leaves.clone())?;
        let (shutdown_sender, shutdown) = watch::channel(false);
        let gateway_lifetime = signed
            .as_ref()
            .map(|signed| {
                signed
                    .signer
                    .config()
                    .gateway_cookie_ttl_days
                    .saturating_mul(86_400)
            })
            .unwrap_or(86_400);
        let shared = Shared {
            limiter: ConnectionLimiter::new(&config.limits),
            response_budget: Budget::new(
                config.limits.max_response_buffer_bytes,
                Some(metrics.response_buffer_bytes.clone()),
            ),
            request_budget: Budget::new(
                config.limits.max_request_buffer_bytes,
                Some(metrics.request_buffer_bytes.clone()),
            ),
            metrics,
            flows: FlowMemory::new(
                Duration::from_secs(config.auth_attempt_window_secs),
                Duration::from_secs(gateway_lifetime),
            ),
            config,
            collaborators,
            upstream,
            landing_tls,
            signed,
            shutdown,
            shutdown_sender,
            tasks: TaskTracker::new(),
        };
        Ok(Proxy {
            shared: Arc::new(shared),
        })
    }
}

/// Binds one listener and logs its address, so that the log shows every listener
/// before the gateway reports itself ready.
async fn bind(listener: &'static str, address: SocketAddr) -> Result<TcpListener, ProxyError> {
    let bound = TcpListener::bind(address)
        .await
        .map_err(|source| ProxyError::Bind {
            listener,
            address,
            source,
        })?;
    let local = bound.local_addr().unwrap_or(address);
    tracing::info!(listener, address = %local, "proxy listening");
    Ok(bound)
}
