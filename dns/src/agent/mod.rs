//! The reference device agent: enrols with the console, keeps its device token fresh,
//! and serves a local DNS proxy that forwards every query to swg over DoH with the
//! context option. `swg agent` runs it.

pub mod console;
pub mod https;
pub mod limits;
pub mod presentation;
pub mod proxy;
pub mod session;
mod tls_errors;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use hickory_proto::rr::RecordType;

use self::console::{ConsoleClient, Endpoints};
use self::https::{tls_config, EndpointKind, HttpsClient, TlsClientConfig};
use self::limits::ProxyLimits;
use self::proxy::{serve_local, BypassList, Forwarder, LocalListener};
use self::session::{Credentials, Session, TokenRejections, Trigger};
use crate::context::MAX_BUNDLE_ID_LEN;
use crate::upstream::{system_upstreams, UpstreamAddr, Upstreams};

/// An error of the agent.
#[derive(Debug, Clone, thiserror::Error)]
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
    /// Connecting, a handshake or a whole request took longer than its deadline.
    #[error("{operation} timed out after {} s", after.as_secs_f32())]
    Timeout {
        /// The operation that timed out, with the endpoint's host and port.
        operation: String,
        /// The deadline.
        after: Duration,
    },
    /// The console or the DoH endpoint rejected the authentication key or token; the
    /// text is the server's reason.
    #[error("rejected by swg (HTTP 401): {0}")]
    Unauthorized(String),
    /// The console returned an error status or invalid JSON.
    #[error("console request failed: {0}")]
    Console(String),
    /// A DNS message could not be built or read.
    #[error("invalid DNS message: {0}")]
    Dns(String),
    /// A record type is neither a known mnemonic nor a number.
    #[error(
        "unknown record type {0:?}: use a name such as A, AAAA, HTTPS or TXT, a number \
         such as 65, or TYPE65"
    )]
    RecordType(String),
    /// A name to look up is not a valid DNS name.
    #[error("invalid DNS name {name:?}: {reason}")]
    Name {
        /// The name as given, quoted so that spaces and control characters show.
        name: String,
        /// The parser's reason.
        reason: String,
    },
    /// A bundle id is empty or longer than the context option carries.
    #[error(
        "invalid bundle id {0:?}: a bundle id is 1 to {MAX_BUNDLE_ID_LEN} bytes, such as \
         com.example.notes"
    )]
    BundleId(String),
    /// A local listener could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, Arc<std::io::Error>),
}

/// Checks that `bundle_id` fits the context option: 1 to [`MAX_BUNDLE_ID_LEN`]
/// bytes. A longer one would be cut, and an empty one dropped by swg together with
/// the whole option.
pub fn check_bundle_id(bundle_id: &str) -> Result<(), AgentError> {
    if bundle_id.is_empty() || bundle_id.len() > MAX_BUNDLE_ID_LEN {
        let excerpt: String = bundle_id.chars().take(40).collect();
        let excerpt = if excerpt.len() < bundle_id.len() {
            format!("{excerpt}… ({} bytes)", bundle_id.len())
        } else {
            excerpt
        };
        return Err(AgentError::BundleId(excerpt));
    }
    Ok(())
}

/// The console address and the identity the agent enrols with.
#[derive(Clone)]
pub struct AgentOptions {
    /// The console URL, e.g. `https://localhost:9443`.
    pub server: String,
    /// The tenant's authentication key from the MDM configuration. The agent keeps
    /// it in memory, to enrol again when its token can no longer be renewed.
    pub auth_key: String,
    /// The user id.
    pub user: String,
    /// The device id.
    pub device: String,
    /// A PEM file of extra trusted roots (the swg root CA), besides the webpki roots.
    pub ca_file: Option<PathBuf>,
    /// Resolvers for bypassed apps; empty: the `nameserver` lines of `/etc/resolv.conf`.
    pub system_resolvers: Vec<UpstreamAddr>,
    /// Limits and timeouts of the local DNS proxy.
    pub limits: ProxyLimits,
}

impl std::fmt::Debug for AgentOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentOptions")
            .field("server", &self.server)
            .field("auth_key", &"<redacted>")
            .field("user", &self.user)
            .field("device", &self.device)
            .field("ca_file", &self.ca_file)
            .field("system_resolvers", &self.system_resolvers)
            .field("limits", &self.limits)
            .finish()
    }
}

/// An enrolled agent: its session and its clients.
pub struct Agent {
    session: Session,
    endpoints: Endpoints,
    tls: TlsClientConfig,
    system_resolvers: Vec<UpstreamAddr>,
    limits: ProxyLimits,
    rejections: Arc<TokenRejections>,
}

impl Agent {
    /// Enrols with the console.
    pub async fn enroll(options: &AgentOptions) -> Result<Agent, AgentError> {
        let tls = tls_config(options.ca_file.as_deref())?;
        let server: http::Uri = options
            .server
            .parse()
            .map_err(|_| AgentError::Url(options.server.clone()))?;
        let console = ConsoleClient::new(HttpsClient::new(
            &server,
            tls.clone(),
            EndpointKind::Console,
        )?);
        let enrolment = console
            .enroll(&options.auth_key, &options.user, &options.device)
            .await?;
        tracing::info!(device = %options.device, %enrolment, "enrolled");
        let credentials = Credentials {
            auth_key: options.auth_key.clone(),
            user: options.user.clone(),
            device: options.device.clone(),
        };
        Ok(Agent {
            session: Session::new(console, credentials, &enrolment),
            endpoints: enrolment.endpoints,
            tls,
            system_resolvers: options.system_resolvers.clone(),
            limits: options.limits.clone(),
            rejections: Arc::default(),
        })
    }

    /// Builds the DoH forwarder; bypassed apps go to the system resolvers.
    pub fn forwarder(&self, bypassed: Arc<BypassList>) -> Result<Forwarder, AgentError> {
        let url: http::Uri = self
            .endpoints
            .doh_url
            .parse()
            .map_err(|_| AgentError::Url(self.endpoints.doh_url.clone()))?;
        let path = url
            .path_and_query()
            .map_or("/dns-query", |p| p.as_str())
            .to_owned();
        let doh = HttpsClient::new(&url, self.tls.clone(), EndpointKind::Doh)?
            .with_request_timeout(self.limits.query_deadline);
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
            self.session.token_cell(),
            self.rejections.clone(),
            bypassed,
            system,
            self.limits.clone(),
        ))
    }

    /// Runs the local proxies on `listeners`, bound with [`LocalListener::bind`]
    /// before enrolling so that a busy port fails before the console records a
    /// device, until an error stops it.
    ///
    /// Renews the token before it expires. When the token has expired, or the
    /// console or the DoH endpoint rejects it, enrols again with the authentication
    /// key, retrying with backoff while that fails.
    pub async fn run(mut self, listeners: Vec<LocalListener>) -> Result<(), AgentError> {
        let bypassed = Arc::new(BypassList::default());
        self.refresh_settings(&bypassed).await;
        let forwarder = Arc::new(self.forwarder(bypassed.clone())?);

        let mut tasks = tokio::task::JoinSet::new();
        for listener in listeners {
            tasks.spawn(serve_local(listener, forwarder.clone()));
        }

        let rejections = self.rejections.clone();
        let mut next_refresh = self.session.renewal_time();
        loop {
            tokio::select! {
                Some(result) = tasks.join_next() => {
                    return match result {
                        Ok(outcome) => outcome,
                        Err(error) => Err(AgentError::Http(format!("listener task failed: {error}"))),
                    };
                }
                () = tokio::time::sleep_until(next_refresh) => {
                    next_refresh = self.refresh(Trigger::Schedule, &bypassed).await;
                }
                rejected = rejections.next() => {
                    // Responses to queries sent with a token replaced since then.
                    if rejected != self.session.token() {
                        continue;
                    }
                    let earliest = self.session.earliest_retry();
                    if tokio::time::Instant::now() >= earliest {
                        tracing::warn!("DoH rejected the device token (HTTP 401)");
                        next_refresh = self.refresh(Trigger::Rejection, &bypassed).await;
                    } else {
                        next_refresh = next_refresh.min(earliest);
                    }
                }
            }
        }
    }

    /// Refreshes the token and, when that worked, the settings; returns when to
    /// refresh next.
    async fn refresh(&mut self, trigger: Trigger, bypassed: &BypassList) -> tokio::time::Instant {
        match self.session.refresh(trigger).await {
            Ok(next) => {
                self.refresh_settings(bypassed).await;
                next
            }
            Err(retry) => retry,
        }
    }

    async fn refresh_settings(&self, bypassed: &BypassList) {
        match self.session.console().settings(&self.session.token()).await {
            Ok(settings) => bypassed.replace(settings.bypassed_applications),
            Err(error) => tracing::warn!(%error, "cannot read agent settings"),
        }
    }

    /// Sends one query through DoH as the app `bundle_id` and returns swg's response.
    /// Fails with [`AgentError::Timeout`] when swg does not answer within the
    /// query deadline of [`AgentOptions::limits`].
    pub async fn query(
        &self,
        name: &str,
        query_type: RecordType,
        bundle_id: Option<&str>,
    ) -> Result<Message, AgentError> {
        if let Some(bundle_id) = bundle_id {
            check_bundle_id(bundle_id)?;
        }
        let forwarder = self.forwarder(Arc::new(BypassList::default()))?;
        let name = presentation::parse_name(name)?;
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name, query_type));
        message.set_edns(hickory_proto::op::Edns::new());
        forwarder.through_doh(&message, bundle_id).await
    }

    /// Sends one query for `name` of type `query_type` (a name such as `A` or
    /// `HTTPS`, a number, or `TYPE65`) as the app `bundle_id` and returns swg's
    /// response in presentation form, with its Extended DNS Errors.
    pub async fn query_text(
        &self,
        name: &str,
        query_type: &str,
        bundle_id: Option<&str>,
    ) -> Result<String, AgentError> {
        let query_type = presentation::parse_record_type(query_type)?;
        let response = self.query(name, query_type, bundle_id).await?;
        Ok(presentation::response_text(&response))
    }

    /// Returns the block and warn events of the last 30 days of this device and
    /// user, as JSON.
    pub async fn activity(&self) -> Result<serde_json::Value, AgentError> {
        self.session.console().activity(&self.session.token()).await
    }
}

/// Builds [`AgentError::Unauthorized`] from a 401 body: the `error` field of the
/// console's JSON, or the DoH endpoint's text, at most 300 characters.
pub(crate) fn unauthorized(body: &[u8]) -> AgentError {
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    let text: String = text.trim().chars().take(300).collect();
    if text.is_empty() {
        AgentError::Unauthorized(
            "the authentication key or the device token is not valid for this gateway".to_owned(),
        )
    } else {
        AgentError::Unauthorized(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_keeps_the_server_reason() {
        let json = unauthorized(br#"{"error":"revoked key"}"#);
        assert_eq!(json.to_string(), "rejected by swg (HTTP 401): revoked key");
        let text = unauthorized(b"expired device token: enroll again\n");
        assert_eq!(
            text.to_string(),
            "rejected by swg (HTTP 401): expired device token: enroll again"
        );
        let empty = unauthorized(b"");
        assert!(
            empty.to_string().contains("not valid for this gateway"),
            "{empty}"
        );
    }
}
