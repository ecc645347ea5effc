//! The reference device agent: enrols with the console, keeps its device token fresh,
//! and serves a local DNS proxy that forwards every query to swg over DoH with the
//! context option. `swg agent` runs it.

pub mod console;
pub mod https;
pub mod proxy;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};

use self::console::{ConsoleClient, Enrolment};
use self::https::{tls_config, HttpsClient};
use self::proxy::{serve_local, Forwarder, LocalListener};
use crate::upstream::{system_upstreams, UpstreamAddr, Upstreams};

/// An error of the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A URL is not an `https://` URL with a host.
    #[error("invalid URL {0:?}: expected https://host[:port][/path]")]
    Url(String),
    /// The CA file cannot be read or contains no valid certificate.
    #[error("invalid CA file {0}")]
    CaFile(String),
    /// TLS setup or handshake failed.
    #[error("TLS failed: {0}")]
    Tls(String),
    /// An HTTP exchange failed.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The console or the DoH endpoint rejected the authentication key or token.
    #[error("rejected by swg (HTTP 401): the authentication key or the device token is not valid for this gateway")]
    Unauthorized,
    /// The console returned an error status or invalid JSON.
    #[error("console request failed: {0}")]
    Console(String),
    /// A DNS message could not be built or read.
    #[error("invalid DNS message: {0}")]
    Dns(String),
    /// A local listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
}

/// The console address and the identity the agent enrols with.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The console URL, e.g. `https://localhost:9443`.
    pub server: String,
    /// The tenant's authentication key from the MDM configuration.
    pub auth_key: String,
    /// The user id.
    pub user: String,
    /// The device id.
    pub device: String,
    /// A PEM file of extra trusted roots (the swg root CA), besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Resolvers for bypassed apps; empty: the `nameserver` lines of `/etc/resolv.conf`.
    pub system_resolvers: Vec<UpstreamAddr>,
}

/// An enrolled agent: its token and its clients.
pub struct Agent {
    console: ConsoleClient,
    token: Arc<RwLock<String>>,
    enrolment: Enrolment,
    tls: Arc<rustls::ClientConfig>,
    system_resolvers: Vec<UpstreamAddr>,
}

impl Agent {
    /// Enrols with the console.
    pub async fn enroll(options: &AgentOptions) -> Result<Agent, AgentError> {
        let tls = tls_config(options.ca_file.as_deref())?;
        let server: http::Uri = options
            .server
            .parse()
            .map_err(|_| AgentError::Url(options.server.clone()))?;
        let console = ConsoleClient::new(HttpsClient::new(&server, tls.clone())?);
        let enrolment = console
            .enroll(&options.auth_key, &options.user, &options.device)
            .await?;
        tracing::info!(device = %options.device, %enrolment, "enrolled");
        Ok(Agent {
            console,
            token: Arc::new(RwLock::new(enrolment.token.clone())),
            enrolment,
            tls,
            system_resolvers: options.system_resolvers.clone(),
        })
    }

    /// Builds the DoH forwarder; bypassed apps go to the system resolvers.
    pub fn forwarder(
        &self,
        bypassed: Arc<RwLock<HashSet<String>>>,
    ) -> Result<Forwarder, AgentError> {
        let url: http::Uri = self
            .enrolment
            .endpoints
            .doh_url
            .parse()
            .map_err(|_| AgentError::Url(self.enrolment.endpoints.doh_url.clone()))?;
        let path = url
            .path_and_query()
            .map_or("/dns-query", |p| p.as_str())
            .to_owned();
        let doh = HttpsClient::new(&url, self.tls.clone())?;
        let addrs = if self.system_resolvers.is_empty() {
            system_upstreams(std::path::Path::new("/etc/resolv.conf")).ok()
        } else {
            Some(self.system_resolvers.clone())
        };
        let metrics = crate::metrics::DnsMetrics::standalone();
        let system =
            addrs.and_then(|addrs| Upstreams::new(addrs, Duration::from_secs(2), metrics).ok());
        Ok(Forwarder::new(
            doh,
            path,
            self.token.clone(),
            bypassed,
            system,
        ))
    }

    /// Runs the local proxies on `listeners`, bound with [`LocalListener::bind`]
    /// before enrolling so that a busy port fails before the console records a
    /// device, and renews the token before it expires, until an error stops it.
    pub async fn run(self, listeners: Vec<LocalListener>) -> Result<(), AgentError> {
        let bypassed = Arc::new(RwLock::new(HashSet::new()));
        self.refresh_settings(&bypassed).await;
        let forwarder = Arc::new(self.forwarder(bypassed.clone())?);

        let mut tasks = tokio::task::JoinSet::new();
        for listener in listeners {
            tasks.spawn(serve_local(listener, forwarder.clone()));
        }

        let mut expires_at = self.enrolment.expires_at;
        loop {
            let now = swg_identity::unix_now();
            // Renew at half the remaining lifetime, at least a minute apart.
            let wait = Duration::from_secs(expires_at.saturating_sub(now).max(120) / 2);
            tokio::select! {
                Some(result) = tasks.join_next() => {
                    return match result {
                        Ok(outcome) => outcome,
                        Err(error) => Err(AgentError::Http(format!("listener task failed: {error}"))),
                    };
                }
                () = tokio::time::sleep(wait) => {
                    let token = self.token.read().map(|token| token.clone()).unwrap_or_default();
                    match self.console.renew(&token).await {
                        Ok(renewed) => {
                            expires_at = renewed.expires_at;
                            if let Ok(mut current) = self.token.write() {
                                *current = renewed.token;
                            }
                            tracing::info!(expires_at = %console::rfc3339(expires_at), "device token renewed");
                        }
                        Err(error) => tracing::warn!(%error, "token renewal failed; retrying at the next interval"),
                    }
                    self.refresh_settings(&bypassed).await;
                }
            }
        }
    }

    async fn refresh_settings(&self, bypassed: &RwLock<HashSet<String>>) {
        let token = self
            .token
            .read()
            .map(|token| token.clone())
            .unwrap_or_default();
        match self.console.settings(&token).await {
            Ok(settings) => {
                if let Ok(mut set) = bypassed.write() {
                    *set = settings.bypassed_applications.into_iter().collect();
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read agent settings"),
        }
    }

    /// Sends one query through DoH as the app `bundle_id` and returns swg's response.
    pub async fn query(
        &self,
        name: &str,
        query_type: RecordType,
        bundle_id: Option<&str>,
    ) -> Result<Message, AgentError> {
        let forwarder = self.forwarder(Arc::new(RwLock::new(HashSet::new())))?;
        let name = Name::from_utf8(name).map_err(|error| AgentError::Dns(error.to_string()))?;
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name, query_type));
        message.set_edns(hickory_proto::op::Edns::new());
        forwarder.through_doh(&message, bundle_id).await
    }

    /// Sends one query for `name` of type `query_type` (such as `A` or `HTTPS`) as the app
    /// `bundle_id` and returns swg's response in presentation form.
    pub async fn query_text(
        &self,
        name: &str,
        query_type: &str,
        bundle_id: Option<&str>,
    ) -> Result<String, AgentError> {
        let query_type: RecordType = query_type
            .to_ascii_uppercase()
            .parse()
            .map_err(|_| AgentError::Dns(format!("unknown record type {query_type:?}")))?;
        let response = self.query(name, query_type, bundle_id).await?;
        Ok(response.to_string())
    }

    /// Returns the device's block and warn events of the last 30 days, as JSON.
    pub async fn activity(&self) -> Result<serde_json::Value, AgentError> {
        let token = self
            .token
            .read()
            .map(|token| token.clone())
            .unwrap_or_default();
        self.console.activity(&token).await
    }
}
