//! Forwarding queries to upstream resolvers over UDP (with TCP retry on truncation),
//! TCP, TLS (DoT) or HTTPS (DoH).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::metrics::DnsMetrics;
use crate::secure_upstream::{exchange_https, exchange_tls, Connections, UpstreamTls};
use crate::wire::{EDNS_UDP_LIMIT, MAX_MESSAGE_LEN};

/// One upstream resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAddr {
    /// UDP, retried over TCP when the answer is truncated.
    Udp(SocketAddr),
    /// TCP only.
    Tcp(SocketAddr),
    /// DNS over TLS (RFC 7858).
    Tls {
        /// Address of the upstream.
        addr: SocketAddr,
        /// Name (or IP address) its certificate must be valid for.
        name: ServerName<'static>,
    },
    /// DNS over HTTPS (RFC 8484), POST.
    Https {
        /// Address connected to; never looked up through the system resolver.
        addr: SocketAddr,
        /// Name (or IP address) its certificate must be valid for: the URL's host.
        name: ServerName<'static>,
        /// The URL queries are posted to.
        url: http::Uri,
    },
}

/// The forms an upstream entry may take, for error messages.
pub const UPSTREAM_FORMATS: &str = "udp://IP[:PORT], tcp://IP[:PORT], IP[:PORT], \
     tls://IP[:PORT][#NAME] or https://HOST[:PORT]/PATH[#IP]";

impl UpstreamAddr {
    /// Parses `udp://IP:PORT`, `tcp://IP:PORT` or `IP[:PORT]` (UDP, port 53),
    /// `tls://IP[:PORT][#NAME]` (port 853) or `https://HOST[:PORT]/PATH[#IP]`. IPv6
    /// addresses with a port take brackets: `[::1]:53`. See [`UpstreamAddr::parse_entry`]
    /// for the reason an entry is rejected.
    pub fn parse(entry: &str) -> Option<Self> {
        Self::parse_entry(entry).ok()
    }

    /// Parses one `upstreams` entry, or returns the reason it is invalid.
    pub fn parse_entry(entry: &str) -> Result<Self, &'static str> {
        if let Some(rest) = entry.strip_prefix("udp://") {
            return parse_socket_addr(rest, 53)
                .map(UpstreamAddr::Udp)
                .ok_or("not an IP address with an optional port");
        }
        if let Some(rest) = entry.strip_prefix("tcp://") {
            return parse_socket_addr(rest, 53)
                .map(UpstreamAddr::Tcp)
                .ok_or("not an IP address with an optional port");
        }
        if let Some(rest) = entry.strip_prefix("tls://") {
            return parse_tls(rest);
        }
        if entry.starts_with("https://") {
            return parse_https(entry);
        }
        parse_socket_addr(entry, 53).map(UpstreamAddr::Udp).ok_or(
            "not an IP address with an optional port, nor a udp://, tcp://, tls:// or https:// URL",
        )
    }

    /// Returns the address the upstream is reached at.
    pub fn socket_addr(&self) -> SocketAddr {
        match self {
            UpstreamAddr::Udp(addr) | UpstreamAddr::Tcp(addr) => *addr,
            UpstreamAddr::Tls { addr, .. } | UpstreamAddr::Https { addr, .. } => *addr,
        }
    }

    /// Returns the transport as a metric label: `udp`, `tcp`, `tls` or `https`.
    pub fn transport(&self) -> &'static str {
        match self {
            UpstreamAddr::Udp(_) => "udp",
            UpstreamAddr::Tcp(_) => "tcp",
            UpstreamAddr::Tls { .. } => "tls",
            UpstreamAddr::Https { .. } => "https",
        }
    }
}

fn parse_tls(rest: &str) -> Result<UpstreamAddr, &'static str> {
    let (address, name) = match rest.split_once('#') {
        Some((address, name)) => (address, Some(name)),
        None => (rest, None),
    };
    let addr = parse_socket_addr(address, 853)
        .ok_or("tls:// takes an IP address with an optional port (the name goes after #)")?;
    let name = match name {
        Some(name) => ServerName::try_from(name.to_owned())
            .map_err(|_| "the name after # is not a DNS name or IP address")?,
        None => ServerName::IpAddress(addr.ip().into()),
    };
    Ok(UpstreamAddr::Tls { addr, name })
}

fn parse_https(entry: &str) -> Result<UpstreamAddr, &'static str> {
    let (url, address) = match entry.split_once('#') {
        Some((url, address)) => (url, Some(address)),
        None => (entry, None),
    };
    let url: http::Uri = url.parse().map_err(|_| "not a valid https URL")?;
    if url.query().is_some() {
        return Err("the https URL must not have a query");
    }
    let host = url.host().ok_or("the https URL has no host")?;
    let host = host
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(host);
    let port = url.port_u16().unwrap_or(443);
    let literal = host.parse::<IpAddr>().ok();
    let ip = match (address, literal) {
        (Some(address), _) => address
            .parse::<IpAddr>()
            .map_err(|_| "the address after # is not an IP address")?,
        (None, Some(ip)) => ip,
        (None, None) => {
            return Err(
                "an https URL with a host name needs its IP address after # \
                 (it is never looked up through the system resolver)",
            )
        }
    };
    let name = match literal {
        Some(ip) => ServerName::IpAddress(ip.into()),
        None => {
            ServerName::try_from(host.to_owned()).map_err(|_| "the URL's host is not a DNS name")?
        }
    };
    if url.path() == "/" {
        return Err("the https URL needs a path, usually /dns-query");
    }
    Ok(UpstreamAddr::Https {
        addr: SocketAddr::new(ip, port),
        name,
        url,
    })
}

fn parse_socket_addr(text: &str, default_port: u16) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    text.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, default_port))
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
    /// A file of extra TLS roots could not be used.
    #[error("cannot use upstream root file {path}: {reason}")]
    ExtraRoot {
        /// The file.
        path: String,
        /// The reason it is unusable.
        reason: String,
    },
    /// The TLS setup or handshake with a DoT or DoH upstream failed (including a
    /// certificate that is not valid for the configured name).
    #[error("upstream TLS failed: {0}")]
    Tls(String),
    /// The HTTP exchange with a DoH upstream failed or did not return 200.
    #[error("upstream HTTP exchange failed: {0}")]
    Http(String),
}

/// Forwards queries to an ordered list of upstreams, trying the next on failure.
pub struct Upstreams {
    addrs: Vec<UpstreamAddr>,
    timeout: Duration,
    tls: UpstreamTls,
    /// Kept DoT and DoH connections, one entry per element of `addrs`.
    connections: Vec<Connections>,
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
        let connections = addrs.iter().map(|_| Connections::default()).collect();
        Ok(Upstreams {
            addrs,
            timeout,
            tls: UpstreamTls::new(&[])?,
            connections,
            metrics,
        })
    }

    /// Trusts, for DoT and DoH upstreams, the certificates of the PEM files
    /// `extra_roots` in addition to the webpki roots.
    pub fn with_extra_roots(mut self, extra_roots: &[PathBuf]) -> Result<Self, UpstreamError> {
        self.tls = UpstreamTls::new(extra_roots)?;
        Ok(self)
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

        for (addr, connections) in self.addrs.iter().zip(&self.connections) {
            let started = Instant::now();
            let result = match addr {
                UpstreamAddr::Udp(server) => self.exchange_udp(&request, *server).await,
                UpstreamAddr::Tcp(server) => exchange_tcp(&request, *server, self.timeout).await,
                UpstreamAddr::Tls { addr, name } => {
                    within(
                        self.timeout,
                        exchange_tls(&self.tls, connections, &request, *addr, name),
                    )
                    .await
                }
                UpstreamAddr::Https { addr, name, url } => {
                    within(
                        self.timeout,
                        exchange_https(&self.tls, connections, &request, *addr, name, url),
                    )
                    .await
                }
            };
            let result = match (addr, result) {
                (UpstreamAddr::Udp(server), Ok(response)) if response.metadata.truncation => {
                    exchange_tcp(&request, *server, self.timeout).await
                }
                (_, other) => other,
            };
            self.metrics
                .upstream_seconds
                .observe(started.elapsed().as_secs_f64());
            match result {
                Ok(response) => return Ok(response),
                Err(error) => {
                    self.metrics
                        .upstream_errors
                        .with_label_values(&[addr.transport()])
                        .inc();
                    tracing::debug!(upstream = %addr.socket_addr(), transport = addr.transport(), %error, "upstream exchange failed");
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

/// Bounds an exchange by the upstream timeout.
async fn within(
    timeout: Duration,
    exchange: impl std::future::Future<Output = Result<Message, UpstreamError>>,
) -> Result<Message, UpstreamError> {
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| UpstreamError::NoAnswer)?
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

/// Parses an upstream message and keeps it only if it answers `request`.
pub(crate) fn accept_response(request: &Message, bytes: &[u8]) -> Option<Message> {
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
    fn tls_entries_parse() {
        assert_eq!(
            UpstreamAddr::parse("tls://127.0.0.1#dot.example"),
            Some(UpstreamAddr::Tls {
                addr: SocketAddr::from(([127, 0, 0, 1], 853)),
                name: ServerName::try_from("dot.example").unwrap_or_else(|_| unreachable!()),
            })
        );
        assert_eq!(
            UpstreamAddr::parse("tls://[::1]:8853"),
            Some(UpstreamAddr::Tls {
                addr: SocketAddr::from((Ipv6Addr::LOCALHOST, 8853)),
                name: ServerName::IpAddress(IpAddr::from(Ipv6Addr::LOCALHOST).into()),
            })
        );
        assert!(UpstreamAddr::parse_entry("tls://dot.example").is_err());
        assert!(UpstreamAddr::parse_entry("tls://127.0.0.1#bad name").is_err());
    }

    #[test]
    fn https_entries_parse() {
        let Ok(UpstreamAddr::Https { addr, name, url }) =
            UpstreamAddr::parse_entry("https://dns.example/dns-query#127.0.0.1")
        else {
            unreachable!("a valid DoH entry parses");
        };
        assert_eq!(addr, SocketAddr::from(([127, 0, 0, 1], 443)));
        assert_eq!(
            name,
            ServerName::try_from("dns.example").unwrap_or_else(|_| unreachable!())
        );
        assert_eq!(url.to_string(), "https://dns.example/dns-query");

        let literal = UpstreamAddr::parse_entry("https://[::1]:8443/q").map(|u| u.socket_addr());
        assert_eq!(literal, Ok(SocketAddr::from((Ipv6Addr::LOCALHOST, 8443))));
    }

    #[test]
    fn https_entries_without_address_rejected() {
        assert_eq!(
            UpstreamAddr::parse_entry("https://dns.example/dns-query"),
            Err(
                "an https URL with a host name needs its IP address after # \
                 (it is never looked up through the system resolver)"
            )
        );
        assert_eq!(
            UpstreamAddr::parse_entry("https://127.0.0.1"),
            Err("the https URL needs a path, usually /dns-query")
        );
        assert!(UpstreamAddr::parse_entry("https://dns.example/dns-query#dns.example").is_err());
        assert!(UpstreamAddr::parse_entry("https://127.0.0.1/dns-query?dns=x").is_err());
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
