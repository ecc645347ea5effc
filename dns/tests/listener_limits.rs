//! The listeners under clients that misbehave: clients that stop reading their
//! answers, sources outside every location holding TCP connections, queries over the
//! in-flight limit, IPv4 clients of an IPv6 listener, and TLS handshakes for names the
//! DoH listener does not serve. Every test uses real sockets on loopback.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use rustls::pki_types::ServerName;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use support::*;
use swg_dns::answer::read_ede;
use swg_dns::{Backends, Client, ClientIdentifier, Identification, TokenRejection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

/// Receive buffer of the clients that stop reading, so that the server's writes block
/// after a few answers instead of filling megabytes of kernel buffers.
const SMALL_RECEIVE_BUFFER: u32 = 4096;

/// Two tenants: `t1` (location source 127.0.0.1, and the device token) and `t2`
/// (location source 127.0.0.4).
struct TwoTenants;

impl ClientIdentifier for TwoTenants {
    fn identify_token(&self, token: &str) -> Result<Client, TokenRejection> {
        TestIdentifier.identify_token(token)
    }

    fn identify_source(&self, source: IpAddr) -> Option<Client> {
        let (tenant, location) = match source {
            IpAddr::V4(v4) if v4.octets() == [127, 0, 0, 1] => ("t1", "hq"),
            IpAddr::V4(v4) if v4.octets() == [127, 0, 0, 4] => ("t2", "branch"),
            _ => return None,
        };
        Some(Client {
            tenant: tenant.to_owned(),
            device: None,
            user: None,
            location: Some(location.to_owned()),
            identified_by: Identification::Location,
        })
    }
}

async fn start_two_tenants(adjust: impl FnOnce(&mut swg_dns::DnsConfig)) -> Harness {
    Harness::start_with_backends(adjust, |recorded| {
        Some(Backends {
            identifier: Arc::new(TwoTenants),
            policy: Arc::new(TestPolicy::new()),
            events: Arc::new(RecordedEvents(recorded.clone())),
            hints: Arc::new(RecordedHints(recorded.clone())),
        })
    })
    .await
}

/// Connects from the loopback address `source` with a small receive buffer.
async fn connect_from(source: [u8; 4], server: SocketAddr, receive_buffer: u32) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(receive_buffer).unwrap();
    socket.bind(SocketAddr::from((source, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

fn framed(message: &Message) -> Vec<u8> {
    let bytes = message.to_vec().unwrap();
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&bytes);
    framed
}

/// Sends `query` over UDP from `bind` and waits at most `timeout` for the response.
async fn udp_within(
    server: SocketAddr,
    bind: &str,
    query: &Message,
    timeout: Duration,
) -> Option<Message> {
    let socket = UdpSocket::bind(bind).await.unwrap();
    socket
        .send_to(&query.to_vec().unwrap(), server)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 65_535];
    let (len, _) = tokio::time::timeout(timeout, socket.recv_from(&mut buffer))
        .await
        .ok()?
        .ok()?;
    Some(Message::from_vec(&buffer[..len]).unwrap())
}

/// Reads and discards until the server closes or resets the connection; returns
/// whether that happened within `timeout`.
async fn closed_within<R: AsyncReadExt + Unpin>(stream: &mut R, timeout: Duration) -> bool {
    let mut buffer = vec![0u8; 65_536];
    let drain = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(timeout, drain).await.is_ok()
}

/// Writes `batch(0)`, `batch(1)`, … to `writer` for at most 10 s. Stops early when one
/// write stays blocked for 1 s, because the server stopped reading. Returns the writer,
/// so that the connection stays open.
async fn keep_writing<W: AsyncWriteExt + Unpin>(
    mut writer: W,
    mut batch: impl FnMut(u32) -> Vec<u8>,
) -> W {
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(10) {
        let bytes = batch(round);
        let write = async {
            writer.write_all(&bytes).await?;
            writer.flush().await
        };
        if !matches!(
            tokio::time::timeout(Duration::from_secs(1), write).await,
            Ok(Ok(()))
        ) {
            break;
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    writer
}

/// Waits until the server has stopped answering queries over `transport`, because the
/// clients that stopped reading have filled the kernel's buffers, or at most 10 s.
async fn wait_until_stalled(harness: &Harness, transport: &str) {
    let answered = || harness.counter("swg_dns_queries_total", &[("transport", transport)]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = answered();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = answered();
        if now == last && now > 0.0 {
            return;
        }
        last = now;
    }
}

/// Waits up to 8 s until `swg_dns_dropped_total{labels}` reaches `expected`; returns
/// its last value.
async fn wait_for_counter(harness: &Harness, labels: &[(&str, &str)], expected: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let value = harness.counter("swg_dns_dropped_total", labels);
        if value >= expected || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_tcp_clients_cost_only_themselves() {
    let connections = 16;
    let harness = start_two_tenants(|config| {
        config.max_queries_in_flight = 32;
        config.max_queries_per_connection = 8;
        config.idle_timeout_secs = 30;
        config.write_timeout_secs = 3;
    })
    .await;
    let server = harness.server.tcp_addr();

    // Each connection keeps asking for answers of about 4 KiB and reads none of them,
    // until the server stops reading its queries.
    let batch = framed(&query("big.test", RecordType::TXT, None)).repeat(100);
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in 0..connections {
        let stream = connect_from([127, 0, 0, 1], server, SMALL_RECEIVE_BUFFER).await;
        let (reader, writer) = stream.into_split();
        readers.push(reader);
        let batch = batch.clone();
        writers.push(tokio::spawn(keep_writing(writer, move |_| batch.clone())));
    }
    wait_until_stalled(&harness, "tcp").await;

    // Another tenant is still answered over UDP, and devices over DoH.
    let question = query("plain.test", RecordType::A, None);
    let started = Instant::now();
    let answer = udp_within(
        harness.server.udp_addr(),
        "127.0.0.4:0",
        &question,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        answer.is_some(),
        "UDP query of another tenant unanswered while TCP clients do not read"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    let doh = harness.doh(&question, Some(GOOD_TOKEN)).await;
    assert_eq!(
        doh.status, 200,
        "DoH while TCP clients do not read: {}",
        doh.text
    );

    // Once the write deadline has passed, every non-reading connection is closed.
    let write_timeouts = [("reason", "write_timeout")];
    let closed = wait_for_counter(&harness, &write_timeouts, f64::from(connections)).await;
    assert_eq!(closed, f64::from(connections));
    for reader in &mut readers {
        assert!(
            closed_within(reader, Duration::from_secs(2)).await,
            "non-reading connection still open after its write deadline"
        );
    }
    for writer in writers {
        writer.abort();
    }
}

/// Encodes an HPACK integer with a prefix of `prefix_bits` bits (RFC 7541 section 5.1),
/// the first byte starting with `first`.
fn hpack_integer(first: u8, prefix_bits: u32, value: usize) -> Vec<u8> {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        return vec![first | value as u8];
    }
    let mut bytes = vec![first | max as u8];
    let mut rest = value - max;
    while rest >= 128 {
        bytes.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    bytes.push(rest as u8);
    bytes
}

/// Encodes a header field without indexing whose name is entry `name_index` of the
/// HPACK static table, with a literal value that is not Huffman-coded.
fn hpack_field(name_index: usize, value: &str) -> Vec<u8> {
    let mut bytes = hpack_integer(0x00, 4, name_index);
    bytes.extend(hpack_integer(0x00, 7, value.len()));
    bytes.extend_from_slice(value.as_bytes());
    bytes
}

fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut frame = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Builds the path of a DoH GET for `message`.
fn doh_path(message: &Message) -> String {
    let encoded =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(message.to_vec().unwrap());
    format!("/dns-query?dns={encoded}")
}

/// Builds `count` pipelined HTTP/1.1 DoH GET requests.
fn http1_requests(message: &Message, count: usize) -> Vec<u8> {
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: {DOH_HOST}\r\nauthorization: Bearer {GOOD_TOKEN}\r\n\r\n",
        doh_path(message)
    );
    request.repeat(count).into_bytes()
}

/// Builds the HTTP/2 connection preface with settings that give the server an unlimited
/// flow control window, so only the TCP connection can hold its writes back.
fn h2_preface() -> Vec<u8> {
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    // SETTINGS_INITIAL_WINDOW_SIZE (4) = 2^31 - 1.
    let mut settings = 4u16.to_be_bytes().to_vec();
    settings.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    bytes.extend(h2_frame(0x4, 0, 0, &settings));
    // Opens the connection window to 2^31 - 1 as well.
    let increment = 0x7fff_ffffu32 - 65_535;
    bytes.extend(h2_frame(0x8, 0, 0, &increment.to_be_bytes()));
    bytes
}

/// Builds HTTP/2 DoH GET requests on streams `first_stream`, `first_stream + 2`, …
fn h2_requests(message: &Message, first_stream: u32, count: u32) -> Vec<u8> {
    // Static table entries: 2 `:method: GET`, 7 `:scheme: https`, 4 `:path`,
    // 1 `:authority`, 23 `authorization`.
    let mut block = vec![0x82, 0x87];
    block.extend(hpack_field(4, &doh_path(message)));
    block.extend(hpack_field(1, DOH_HOST));
    block.extend(hpack_field(23, &format!("Bearer {GOOD_TOKEN}")));
    let mut bytes = Vec::new();
    for index in 0..count {
        // END_STREAM | END_HEADERS.
        bytes.extend(h2_frame(0x1, 0x5, first_stream + 2 * index, &block));
    }
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_reading_doh_clients_cost_only_themselves() {
    let harness = start_two_tenants(|config| {
        config.max_queries_in_flight = 32;
        config.idle_timeout_secs = 30;
        config.write_timeout_secs = 3;
    })
    .await;
    let doh_addr = harness.server.doh_addr().unwrap();
    let big = query("big.test", RecordType::TXT, None);

    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for alpn in [Alpn::Http11, Alpn::Http11, Alpn::H2, Alpn::H2] {
        let tcp = connect_from([127, 0, 0, 1], doh_addr, SMALL_RECEIVE_BUFFER).await;
        let server_name = ServerName::try_from(DOH_HOST).unwrap();
        let tls = doh_tls_on(&harness, alpn, tcp, server_name).await.unwrap();
        let (reader, writer) = tokio::io::split(tls);
        readers.push(reader);
        let big = big.clone();
        // HTTP/2 streams go in rounds of 32, since the server refuses streams over
        // its limit of 64 open at once.
        let batch = move |round: u32| match alpn {
            Alpn::Http11 => http1_requests(&big, 100),
            Alpn::H2 if round == 0 => h2_preface(),
            Alpn::H2 => h2_requests(&big, 1 + (round - 1) * 2 * 32, 32),
        };
        writers.push(tokio::spawn(keep_writing(writer, batch)));
    }
    wait_until_stalled(&harness, "doh").await;

    let question = query("plain.test", RecordType::A, None);
    let answer = udp_within(
        harness.server.udp_addr(),
        "127.0.0.4:0",
        &question,
        Duration::from_secs(1),
    )
    .await;
    assert!(
        answer.is_some(),
        "UDP query unanswered while DoH clients do not read"
    );
    let doh = harness.doh(&question, Some(GOOD_TOKEN)).await;
    assert_eq!(
        doh.status, 200,
        "DoH while DoH clients do not read: {}",
        doh.text
    );

    let write_timeouts = [("reason", "write_timeout")];
    let closed = wait_for_counter(&harness, &write_timeouts, readers.len() as f64).await;
    assert_eq!(
        closed,
        readers.len() as f64,
        "non-reading DoH connections closed"
    );
    for reader in &mut readers {
        assert!(
            closed_within(reader, Duration::from_secs(2)).await,
            "non-reading DoH connection still open after its write deadline"
        );
    }
    for writer in writers {
        writer.abort();
    }
}

#[tokio::test]
async fn unknown_source_tcp_leaves_doh_slots() {
    let harness = Harness::start_with(|config| {
        config.max_connections = 4;
        config.max_connections_per_client = 3;
        config.idle_timeout_secs = 30;
        config.read_timeout_secs = 1;
    })
    .await;
    let tcp_addr = harness.server.tcp_addr();

    // Sources in no location open as many idle connections as the limits allow.
    let mut idle = Vec::new();
    for source in [[127, 0, 0, 3], [127, 0, 0, 5]] {
        for _ in 0..3 {
            idle.push(connect_from(source, tcp_addr, 65_536).await);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Three from the first source and one from the second fill the pool of four. The
    // last two are refused under the pool's own reason.
    assert_eq!(
        harness.counter(
            "swg_dns_refused_total",
            &[("reason", "unknown_source_connection_limit")]
        ),
        2.0
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "connection_limit")]),
        0.0
    );

    // DoH and the office's TCP are still served.
    let question = query("allowed.test", RecordType::A, None);
    let tcp = TcpStream::connect(harness.server.doh_addr().unwrap())
        .await
        .unwrap();
    let handshake = doh_tls_on(
        &harness,
        Alpn::H2,
        tcp,
        ServerName::try_from(DOH_HOST).unwrap(),
    )
    .await;
    assert!(handshake.is_ok(), "DoH handshake failed: {handshake:?}");
    let doh = harness.doh(&question, Some(GOOD_TOKEN)).await;
    assert_eq!(doh.status, 200);
    let mut office = TcpStream::connect(tcp_addr).await.unwrap();
    write_framed(&mut office, &question.to_vec().unwrap()).await;
    let answer = tokio::time::timeout(Duration::from_secs(2), read_framed(&mut office)).await;
    let answer = Message::from_vec(&answer.unwrap().expect("office TCP query unanswered")).unwrap();
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);

    // Idle connections from outside every location last the read timeout, not the
    // idle timeout.
    for stream in &mut idle {
        assert!(
            closed_within(stream, Duration::from_secs(3)).await,
            "idle connection from outside every location still open"
        );
    }

    // A query from outside every location gets REFUSED, then the connection is closed.
    let mut outsider = connect_from([127, 0, 0, 7], tcp_addr, 65_536).await;
    write_framed(&mut outsider, &question.to_vec().unwrap()).await;
    let refused = read_framed(&mut outsider).await.unwrap();
    let refused = Message::from_vec(&refused).unwrap();
    assert_eq!(refused.metadata.response_code, ResponseCode::Refused);
    assert_eq!(read_ede(&refused).map(|(code, _)| code), Some(18));
    assert!(
        closed_within(&mut outsider, Duration::from_millis(500)).await,
        "connection from outside every location still open after REFUSED"
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "unknown_source")]),
        1.0
    );
}

#[tokio::test]
async fn tcp_query_over_in_flight_limit_gets_servfail() {
    let harness = Harness::start_with(|config| config.max_queries_in_flight = 1).await;
    let mut stream = TcpStream::connect(harness.server.tcp_addr()).await.unwrap();
    let slow = query("slow.test", RecordType::A, None);
    let fast = query("fast.test", RecordType::A, None);
    write_framed(&mut stream, &slow.to_vec().unwrap()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    write_framed(&mut stream, &fast.to_vec().unwrap()).await;

    let started = Instant::now();
    let first = tokio::time::timeout(Duration::from_secs(1), read_framed(&mut stream))
        .await
        .expect("no response to the query over the limit")
        .unwrap();
    let first = Message::from_vec(&first).unwrap();
    assert!(started.elapsed() < support::upstream::SLOW_DELAY);
    assert_eq!(first.metadata.id, fast.metadata.id);
    assert_eq!(first.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(first.queries.len(), 1);
    assert_eq!(first.queries[0].name().to_ascii(), "fast.test.");
    assert_eq!(
        harness.counter("swg_dns_dropped_total", &[("reason", "overloaded")]),
        1.0
    );

    let second = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
    assert_eq!(second.metadata.id, slow.metadata.id);
    assert_eq!(second.metadata.response_code, ResponseCode::NoError);
}

#[tokio::test]
async fn mapped_ipv4_clients_match_location() {
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:0".parse().unwrap();
    let harness = Harness::start_with(|config| {
        config.udp_listen = mapped;
        config.tcp_listen = mapped;
        config.doh_listen = mapped;
    })
    .await;
    let as_ipv4 = |addr: SocketAddr| SocketAddr::from(([127, 0, 0, 1], addr.port()));
    let question = query("blocked.test", RecordType::A, None);

    let udp = udp_within(
        as_ipv4(harness.server.udp_addr()),
        "127.0.0.1:0",
        &question,
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(udp.metadata.response_code, ResponseCode::NoError);

    let mut stream = TcpStream::connect(as_ipv4(harness.server.tcp_addr()))
        .await
        .unwrap();
    write_framed(&mut stream, &question.to_vec().unwrap()).await;
    let tcp = Message::from_vec(&read_framed(&mut stream).await.unwrap()).unwrap();
    assert_eq!(tcp.metadata.response_code, ResponseCode::NoError);

    let doh_addr = as_ipv4(harness.server.doh_addr().unwrap());
    let tcp = TcpStream::connect(doh_addr).await.unwrap();
    let mut tls = doh_tls_on(
        &harness,
        Alpn::Http11,
        tcp,
        ServerName::try_from(DOH_HOST).unwrap(),
    )
    .await
    .unwrap();
    tls.write_all(&http1_requests(&question, 1)).await.unwrap();
    let response = read_http1_response(&mut tls, Duration::from_secs(2)).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // Events and hints carry the IPv4 address, as the proxy sees the same client.
    let events = harness.recorded.events_for("blocked.test");
    assert_eq!(events.len(), 3);
    for event in events {
        assert_eq!(event.client_ip, IpAddr::from([127, 0, 0, 1]));
    }
}

/// A certificate resolver that records the SNI of every ClientHello it is asked for.
#[derive(Debug)]
struct SniRecorder {
    inner: Arc<dyn ResolvesServerCert>,
    asked: Arc<Mutex<Vec<Option<String>>>>,
}

impl ResolvesServerCert for SniRecorder {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = client_hello.server_name().map(str::to_owned);
        self.asked.lock().unwrap().push(sni);
        self.inner.resolve(client_hello)
    }
}

#[tokio::test]
async fn doh_handshake_for_other_sni_fails() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let recorder_asked = asked.clone();
    let harness = Harness::start_with_certificates(
        |_| {},
        |inner| {
            Arc::new(SniRecorder {
                inner,
                asked: recorder_asked,
            })
        },
    )
    .await;
    let doh_addr = harness.server.doh_addr().unwrap();
    let connect = || TcpStream::connect(doh_addr);

    for made_up in ["made-up.example", "www.bank.test"] {
        let name = ServerName::try_from(made_up).unwrap();
        let handshake = doh_tls_on(&harness, Alpn::H2, connect().await.unwrap(), name).await;
        assert!(handshake.is_err(), "handshake for {made_up} succeeded");
    }
    assert_eq!(
        *asked.lock().unwrap(),
        Vec::<Option<String>>::new(),
        "certificates requested for made-up names"
    );
    assert_eq!(
        harness.counter("swg_dns_refused_total", &[("reason", "tls_server_name")]),
        2.0
    );

    // The DoH host name, in any case, and a handshake without SNI are served.
    for name in [DOH_HOST, "DNS.Swg.Test"] {
        let name = ServerName::try_from(name).unwrap();
        let handshake = doh_tls_on(&harness, Alpn::H2, connect().await.unwrap(), name).await;
        assert!(handshake.is_ok(), "{handshake:?}");
    }
    let by_address = ServerName::IpAddress(IpAddr::from([127, 0, 0, 1]).into());
    let handshake = doh_tls_on(&harness, Alpn::H2, connect().await.unwrap(), by_address).await;
    assert!(handshake.is_ok(), "{handshake:?}");

    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        vec![Some(DOH_HOST.to_owned()), Some(DOH_HOST.to_owned()), None]
    );
}
