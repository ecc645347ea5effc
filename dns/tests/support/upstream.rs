//! A small authoritative DNS server for tests: serves a fixed zone over UDP and TCP on
//! loopback and counts what it received.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsCode;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Seconds the slow name waits before it is answered.
pub const SLOW_DELAY: Duration = Duration::from_millis(1_500);

/// Counters of what the test upstream saw.
#[derive(Default)]
pub struct UpstreamStats {
    /// Queries received (UDP and TCP).
    pub queries: AtomicUsize,
    /// Queries that carried the swg context option (must stay 0).
    pub with_context_option: AtomicUsize,
}

/// The running test upstream.
pub struct TestUpstream {
    /// Address of both the UDP and the TCP listener.
    pub addr: SocketAddr,
    /// What it saw.
    pub stats: Arc<UpstreamStats>,
}

impl TestUpstream {
    /// Starts the server on a free loopback port.
    pub async fn start() -> TestUpstream {
        // A port free for UDP may be taken for TCP: retry with another one.
        let mut bound = None;
        for _ in 0..20 {
            let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            if let Ok(tcp) = TcpListener::bind(addr).await {
                bound = Some((udp, addr, tcp));
                break;
            }
        }
        let (udp, addr, tcp) = bound.expect("a free UDP and TCP port pair on loopback");
        let stats = Arc::new(UpstreamStats::default());

        let udp = Arc::new(udp);
        let udp_stats = stats.clone();
        tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_535];
            loop {
                let Ok((len, peer)) = udp.recv_from(&mut buffer).await else {
                    continue;
                };
                let packet = buffer[..len].to_vec();
                let udp = udp.clone();
                let stats = udp_stats.clone();
                tokio::spawn(async move {
                    if let Some(response) = respond(&packet, &stats, 512).await {
                        let _ = udp.send_to(&response, peer).await;
                    }
                });
            }
        });

        let tcp_stats = stats.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = tcp.accept().await else {
                    continue;
                };
                let stats = tcp_stats.clone();
                tokio::spawn(async move {
                    while let Ok(len) = stream.read_u16().await {
                        let mut packet = vec![0u8; usize::from(len)];
                        if stream.read_exact(&mut packet).await.is_err() {
                            return;
                        }
                        if let Some(response) = respond(&packet, &stats, 65_535).await {
                            let mut framed = (response.len() as u16).to_be_bytes().to_vec();
                            framed.extend_from_slice(&response);
                            if stream.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });

        TestUpstream { addr, stats }
    }
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn a(owner: &Name, ip: [u8; 4]) -> Record {
    Record::from_rdata(owner.clone(), 300, RData::A(A(Ipv4Addr::from(ip))))
}

pub async fn respond(packet: &[u8], stats: &UpstreamStats, udp_limit: usize) -> Option<Vec<u8>> {
    let query = Message::from_vec(packet).ok()?;
    stats.queries.fetch_add(1, Ordering::SeqCst);
    if let Some(edns) = &query.edns {
        if edns.option(EdnsCode::from(65431)).is_some() {
            stats.with_context_option.fetch_add(1, Ordering::SeqCst);
        }
    }
    let question = query.queries.first()?.clone();
    let owner = question.name().clone();
    let qname = owner.to_lowercase().to_ascii();
    let qtype = question.query_type();

    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.message_type = MessageType::Response;
    response.metadata.authoritative = true;
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.add_query(question.clone());

    match (qname.as_str(), qtype) {
        ("slow.test.", _) => {
            tokio::time::sleep(SLOW_DELAY).await;
            if qtype == RecordType::A {
                response.add_answer(a(&owner, [192, 0, 2, 30]));
            }
        }
        ("nx.test.", _) => {
            response.metadata.response_code = ResponseCode::NXDomain;
            let soa = SOA::new(name("test."), name("admin.test."), 1, 3600, 600, 86400, 60);
            response.add_authority(Record::from_rdata(name("test."), 60, RData::SOA(soa)));
        }
        ("www.chain.test.", _) => {
            let middle = name("edge.chain.test.");
            let target = name("cdn.blocked-target.test.");
            response.add_answer(Record::from_rdata(
                owner.clone(),
                300,
                RData::CNAME(CNAME(middle.clone())),
            ));
            response.add_answer(Record::from_rdata(
                middle,
                300,
                RData::CNAME(CNAME(target.clone())),
            ));
            if qtype == RecordType::A {
                response.add_answer(a(&target, [192, 0, 2, 20]));
            }
        }
        ("big.test.", RecordType::TXT) => {
            for index in 0..20 {
                let text = TXT::new(vec![format!("{index:02}{}", "x".repeat(198))]);
                response.add_answer(Record::from_rdata(owner.clone(), 300, RData::TXT(text)));
            }
        }
        ("excepted-ip.test.", RecordType::A) => {
            response.add_answer(a(&owner, [10, 99, 0, 5]));
        }
        ("xn--bcher-kva.test.", RecordType::A) => {
            response.add_answer(a(&owner, [192, 0, 2, 40]));
        }
        ("wrong-question.test.", _) => {
            // Answers another question: a resolver must drop this.
            response.queries.clear();
            response.add_query(hickory_proto::op::Query::query(name("other.test."), qtype));
            response.add_answer(a(&name("other.test."), [192, 0, 2, 66]));
        }
        (_, RecordType::A) => {
            response.add_answer(a(&owner, [192, 0, 2, 10]));
        }
        (_, RecordType::AAAA) => {
            let address = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
            response.add_answer(Record::from_rdata(
                owner.clone(),
                300,
                RData::AAAA(AAAA(address)),
            ));
        }
        (_, RecordType::TXT) => {
            response.add_answer(Record::from_rdata(
                owner.clone(),
                300,
                RData::TXT(TXT::new(vec!["hello".to_owned()])),
            ));
        }
        _ => {}
    }
    if let Some(edns) = &query.edns {
        let mut ours = hickory_proto::op::Edns::new();
        ours.set_max_payload(edns.max_payload().max(512));
        response.set_edns(ours);
    }

    let bytes = response.to_vec().ok()?;
    let limit = match &query.edns {
        _ if udp_limit == 65_535 => udp_limit,
        Some(edns) => usize::from(edns.max_payload()).min(udp_limit),
        None => udp_limit,
    };
    if bytes.len() > limit {
        let mut truncated = response.truncate();
        truncated.metadata.message_type = MessageType::Response;
        return truncated.to_vec().ok();
    }
    Some(bytes)
}
