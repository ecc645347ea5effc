//! The agent's local DNS proxy: plain DNS on loopback in, DoH with the context option
//! out. Queries of bypassed apps go to the system resolver instead.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::https::HttpsClient;
use super::AgentError;
use crate::answer;
use crate::context::{QueryContext, CONTEXT_OPTION_CODE};
use crate::doh::DNS_MESSAGE;
use crate::upstream::Upstreams;
use crate::wire::{self, Incoming, MAX_MESSAGE_LEN};

/// Forwards queries to swg over DoH, adding the context option.
pub struct Forwarder {
    doh: HttpsClient,
    doh_path: String,
    token: Arc<RwLock<String>>,
    bypassed: Arc<RwLock<HashSet<String>>>,
    system: Option<Upstreams>,
}

impl Forwarder {
    /// Creates a forwarder. `system` resolves bypassed apps' queries; without it they
    /// are sent to swg like the others.
    pub fn new(
        doh: HttpsClient,
        doh_path: String,
        token: Arc<RwLock<String>>,
        bypassed: Arc<RwLock<HashSet<String>>>,
        system: Option<Upstreams>,
    ) -> Self {
        Forwarder {
            doh,
            doh_path,
            token,
            bypassed,
            system,
        }
    }

    /// Forwards one query from the app `bundle_id` and returns the response to send
    /// (sized for UDP when `udp` is set); `None` means send nothing.
    pub async fn forward(
        &self,
        packet: &[u8],
        bundle_id: Option<&str>,
        udp: bool,
    ) -> Option<Vec<u8>> {
        let query = match wire::read_query(packet) {
            Incoming::Query(query) => query,
            Incoming::Reject(response, _) => {
                return wire::encode_response(&response, wire::CLASSIC_UDP_LIMIT)
            }
            Incoming::Drop(_) => return None,
        };
        let limit = if udp {
            wire::udp_limit(&query)
        } else {
            MAX_MESSAGE_LEN
        };

        let bypassed =
            bundle_id.is_some_and(|id| self.bypassed.read().is_ok_and(|set| set.contains(id)));
        let response = match (&self.system, bypassed) {
            (Some(system), true) => match system.resolve(&query.queries[0]).await {
                Ok(upstream) => answer::upstream_response(&query, upstream),
                Err(_) => answer::code_response(&query, ResponseCode::ServFail),
            },
            _ => self
                .through_doh(&query, bundle_id)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "DoH query failed");
                    answer::code_response(&query, ResponseCode::ServFail)
                }),
        };
        wire::encode_response(&response, limit)
    }

    /// Sends `query` to swg with the context option and returns swg's response.
    pub async fn through_doh(
        &self,
        query: &Message,
        bundle_id: Option<&str>,
    ) -> Result<Message, AgentError> {
        let mut outgoing = query.clone();
        let client_had_edns = outgoing.edns.is_some();
        let edns = outgoing.edns.get_or_insert_with(Edns::new);
        let context = QueryContext {
            bundle_id: bundle_id.map(str::to_owned),
            ..QueryContext::default()
        };
        edns.options_mut()
            .remove(EdnsCode::from(CONTEXT_OPTION_CODE));
        edns.options_mut().options.push((
            EdnsCode::from(CONTEXT_OPTION_CODE),
            EdnsOption::Unknown(CONTEXT_OPTION_CODE, context.encode()),
        ));
        let body = Bytes::from(
            outgoing
                .to_vec()
                .map_err(|error| AgentError::Dns(error.to_string()))?,
        );

        let token = self
            .token
            .read()
            .map(|token| token.clone())
            .unwrap_or_default();
        let response = self
            .doh
            .send(|| {
                Request::post(self.doh_path.as_str())
                    .header(http::header::CONTENT_TYPE, DNS_MESSAGE)
                    .header(http::header::ACCEPT, DNS_MESSAGE)
                    .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
                    .body(Full::new(body.clone()))
                    .map_err(|error| AgentError::Http(error.to_string()))
            })
            .await?;
        if response.status() == http::StatusCode::UNAUTHORIZED {
            return Err(AgentError::Unauthorized);
        }
        if !response.status().is_success() {
            return Err(AgentError::Http(format!(
                "DoH answered HTTP {}",
                response.status()
            )));
        }

        let mut message = Message::from_vec(response.body())
            .map_err(|error| AgentError::Dns(error.to_string()))?;
        if message.metadata.id != query.metadata.id {
            return Err(AgentError::Dns("DoH response has another id".to_owned()));
        }
        // A client that sent no OPT record must not get one back (RFC 6891).
        if !client_had_edns {
            message.edns = None;
        }
        Ok(message)
    }
}

/// A local DNS listener of the agent, bound but not served yet: UDP and TCP on one
/// address, for the app `bundle_id`.
#[derive(Debug)]
pub struct LocalListener {
    addr: SocketAddr,
    bundle_id: Option<String>,
    udp: Arc<UdpSocket>,
    tcp: TcpListener,
}

impl LocalListener {
    /// Binds UDP and TCP on `addr` for the app `bundle_id`.
    pub async fn bind(addr: SocketAddr, bundle_id: Option<String>) -> Result<Self, AgentError> {
        let udp = Arc::new(
            UdpSocket::bind(addr)
                .await
                .map_err(|error| AgentError::Listen(addr, error))?,
        );
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|error| AgentError::Listen(addr, error))?;
        Ok(LocalListener {
            addr,
            bundle_id,
            udp,
            tcp,
        })
    }
}

/// Serves plain DNS on `listener` (UDP and TCP) for its app, forever.
pub async fn serve_local(
    listener: LocalListener,
    forwarder: Arc<Forwarder>,
) -> Result<(), AgentError> {
    let LocalListener {
        addr,
        bundle_id,
        udp,
        tcp,
    } = listener;
    tracing::info!(listen = %addr, app = ?bundle_id, "agent DNS proxy listening");

    let tcp_forwarder = forwarder.clone();
    let tcp_bundle = bundle_id.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            let forwarder = tcp_forwarder.clone();
            let bundle_id = tcp_bundle.clone();
            tokio::spawn(async move {
                while let Ok(len) = stream.read_u16().await {
                    let mut packet = vec![0u8; usize::from(len)];
                    if stream.read_exact(&mut packet).await.is_err() {
                        return;
                    }
                    let Some(response) = forwarder
                        .forward(&packet, bundle_id.as_deref(), false)
                        .await
                    else {
                        continue;
                    };
                    let Ok(len) = u16::try_from(response.len()) else {
                        continue;
                    };
                    let mut framed = len.to_be_bytes().to_vec();
                    framed.extend_from_slice(&response);
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });

    let mut buffer = vec![0u8; MAX_MESSAGE_LEN];
    loop {
        let Ok((len, source)) = udp.recv_from(&mut buffer).await else {
            continue;
        };
        let packet = buffer[..len].to_vec();
        let (udp, forwarder, bundle_id) = (udp.clone(), forwarder.clone(), bundle_id.clone());
        tokio::spawn(async move {
            if let Some(response) = forwarder.forward(&packet, bundle_id.as_deref(), true).await {
                let _ = udp.send_to(&response, source).await;
            }
        });
    }
}
