//! Forwarding queries to upstream resolvers over UDP (with TCP retry on truncation)
//! or TCP.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::metrics::DnsMetrics;
use crate::wire::{EDNS_UDP_LIMIT, MAX_MESSAGE_LEN};

/// One upstream resolver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// UDP, retried over TCP when the answer is truncated.
    Udp(SocketAddr),
    /// TCP only.
    Tcp(SocketAddr),
}

impl UpstreamAddr {
    /// Parses `udp://IP:PORT`, `tcp://IP:PORT` or `IP[:PORT]` (UDP, port 53). IPv6
    /// addresses with a port take brackets: `[::1]:53`.
    pub fn parse(entry: &str) -> Option<Self> {
        if let Some(rest) = entry.strip_prefix("udp://") {
            return parse_socket_addr(rest).map(UpstreamAddr::Udp);
        }
        if let Some(rest) = entry.strip_prefix("tcp://") {
            return parse_socket_addr(rest).map(UpstreamAddr::Tcp);
        }
        parse_socket_addr(entry).map(UpstreamAddr::Udp)
    }

    fn socket_addr(self) -> SocketAddr {
        match self {
            UpstreamAddr::Udp(addr) | UpstreamAddr::Tcp(addr) => addr,
        }
    }
}

fn parse_socket_addr(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 53))
}

/// Reads the `nameserver` lines of a resolv.conf file.
pub fn system_upstreams(path: &Path) -> Result<Vec<UpstreamAddr>, UpstreamError> {
    let text = std::fs::read_to_string(path).map_err(|source| UpstreamError::ResolvConf {
        path: path.display().to_string(),
        source,
    })?;
    let upstreams: Vec<UpstreamAddr> = text
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
        })
        // A zone index (fe80::1%eth0) cannot be used by a plain SocketAddr.
        .filter_map(|word| word.parse::<IpAddr>().ok())
        .map(|ip| UpstreamAddr::Udp(SocketAddr::new(ip, 53)))
        .collect();
    if upstreams.is_empty() {
        return Err(UpstreamError::NoUpstreams);
    }
    Ok(upstreams)
}

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Every upstream timed out or failed.
    #[error("no upstream resolver answered")]
    NoAnswer,
    /// No upstream is configured and resolv.conf lists none.
    #[error("no upstream resolver configured and no nameserver in resolv.conf")]
    NoUpstreams,
    /// resolv.conf could not be read.
    #[error("cannot read {path}: {source}")]
    ResolvConf {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A socket operation failed.
    #[error("upstream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The query could not be serialized.
    #[error("query cannot be serialized: {0}")]
    Encode(#[from] hickory_proto::ProtoError),
}

/// Forwards queries to an ordered list of upstreams, trying the next on failure.
pub struct Upstreams {
    addrs: Vec<UpstreamAddr>,
    timeout: Duration,
    metrics: DnsMetrics,
}

impl Upstreams {
    /// Creates a forwarder. `addrs` must not be empty.
    pub fn new(
        addrs: Vec<UpstreamAddr>,
        timeout: Duration,
        metrics: DnsMetrics,
    ) -> Result<Self, UpstreamError> {
        if addrs.is_empty() {
            return Err(UpstreamError::NoUpstreams);
        }
        Ok(Upstreams {
            addrs,
            timeout,
            metrics,
        })
    }

    /// Resolves one question. The answer's question matches `query` and its id and
    /// source match the exchange; anything else is dropped as spoofed or stray.
    pub async fn resolve(&self, query: &Query) -> Result<Message, UpstreamError> {
        let mut request = Message::query();
        request.metadata.recursion_desired = true;
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_LIMIT);
        request.set_edns(edns);

        for addr in &self.addrs {
            let started = Instant::now();
            let result = match addr {
                UpstreamAddr::Udp(server) => self.exchange_udp(&request, *server).await,
                UpstreamAddr::Tcp(server) => exchange_tcp(&request, *server, self.timeout).await,
            };
            let result = match result {
                Ok(response) if response.metadata.truncation => {
                    exchange_tcp(&request, addr.socket_addr(), self.timeout).await
                }
                other => other,
            };
            self.metrics
                .upstream_seconds
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(response) => return Ok(response),
                Err(error) => {
                    tracing::debug!(upstream = %addr.socket_addr(), %error, "upstream exchange failed");
                }
            }
        }
        Err(UpstreamError::NoAnswer)
    }

    async fn exchange_udp(
        &self,
        request: &Message,
        server: SocketAddr,
    ) -> Result<Message, UpstreamError> {
        let bytes = request.to_vec()?;
        let local: SocketAddr = match server {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        socket.connect(server).await?;
        socket.send(&bytes).await?;

        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut buffer = vec![0u8; usize::from(EDNS_UDP_LIMIT) * 4];
        loop {
            // A connected socket only receives datagrams from `server`.
            let len = tokio::time::timeout_at(deadline, socket.recv(&mut buffer))
                .await
                .map_err(|_| UpstreamError::NoAnswer)??;
            if let Some(response) = accept_response(request, &buffer[..len]) {
                return Ok(response);
            }
        }
    }
}

async fn exchange_tcp(
    request: &Message,
    server: SocketAddr,
    timeout: Duration,
) -> Result<Message, UpstreamError> {
    let exchange = async {
        let bytes = request.to_vec()?;
        let len = u16::try_from(bytes.len()).map_err(|_| UpstreamError::NoAnswer)?;
        let mut stream = TcpStream::connect(server).await?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&bytes);
        stream.write_all(&framed).await?;

        loop {
            let len = usize::from(stream.read_u16().await?);
            let mut buffer = vec![0u8; len.min(MAX_MESSAGE_LEN)];
            stream.read_exact(&mut buffer).await?;
            if let Some(response) = accept_response(request, &buffer) {
                return Ok(response);
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UpstreamError::NoAnswer)?
}

/// Parses an upstream datagram and keeps it only if it answers `request`.
fn accept_response(request: &Message, bytes: &[u8]) -> Option<Message> {
    let response = Message::from_vec(bytes).ok()?;
    if response.metadata.message_type != MessageType::Response
        || response.metadata.id != request.metadata.id
    {
        return None;
    }
    let asked = request.queries.first()?;
    let [answered] = response.queries.as_slice() else {
        return None;
    };
    let same_question = answered.query_type() == asked.query_type()
        && answered.query_class() == asked.query_class()
        && answered
            .name()
            .to_lowercase()
            .eq_case(&asked.name().to_lowercase());
    if !same_question {
        tracing::debug!(asked = %asked.name(), answered = %answered.name(), "dropped upstream answer to another question");
        return None;
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_entries_parse() {
        assert_eq!(
            UpstreamAddr::parse("127.0.0.1"),
            Some(UpstreamAddr::Udp(SocketAddr::from(([127, 0, 0, 1], 53))))
        );
        assert_eq!(
            UpstreamAddr::parse("tcp://127.0.0.1:5300"),
            Some(UpstreamAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 5300))))
        );
        assert_eq!(
            UpstreamAddr::parse("udp://[::1]:53"),
            Some(UpstreamAddr::Udp(SocketAddr::from((
                Ipv6Addr::LOCALHOST,
                53
            ))))
        );
        assert_eq!(UpstreamAddr::parse("dns.example"), None);
    }

    #[test]
    fn resolv_conf_nameservers_are_read() {
        let dir = std::env::temp_dir().join(format!("swg-dns-resolv-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("resolv.conf");
        let written = std::fs::write(
            &path,
            "# comment\nsearch lan\nnameserver 127.0.0.53\nnameserver ::1\noptions edns0\n",
        );
        assert!(written.is_ok());

        let upstreams = system_upstreams(&path).ok();
        assert_eq!(
            upstreams,
            Some(vec![
                UpstreamAddr::Udp(SocketAddr::from(([127, 0, 0, 53], 53))),
                UpstreamAddr::Udp(SocketAddr::from((Ipv6Addr::LOCALHOST, 53))),
            ])
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
