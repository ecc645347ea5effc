//! Reading queries off the wire and writing responses that fit the transport.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// Largest DNS message any transport carries (the TCP length prefix is 16 bits).
pub const MAX_MESSAGE_LEN: usize = 65_535;

/// Length of the DNS header (RFC 1035 section 4.1.1): a shorter message is no query.
pub const HEADER_LEN: usize = 12;

/// UDP payload size used when the client sent no EDNS option (RFC 1035).
pub const CLASSIC_UDP_LIMIT: usize = 512;

/// The EDNS payload size swg advertises and caps client sizes at (the DNS Flag Day 2020
/// value, which avoids IP fragmentation on common paths).
pub const EDNS_UDP_LIMIT: u16 = 1232;

/// The outcome of reading one incoming packet.
#[derive(Debug)]
pub enum Incoming {
    /// A well-formed standard query with exactly one question.
    Query(Box<Message>),
    /// A packet with a readable header that cannot be answered normally: send this
    /// response (FORMERR, NOTIMP, REFUSED or BADVERS).
    Reject(Box<Message>, RejectReason),
    /// Not a query, or not even a header: send nothing.
    Drop(DropReason),
}

/// Why a packet got an error response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The message does not parse, or has other than one question.
    Malformed,
    /// The opcode or class is not supported.
    NotImplemented,
    /// The EDNS version is above 0, the only one swg speaks (RFC 6891).
    BadVersion,
    /// A zone transfer (AXFR or IXFR): swg is a resolver, not a primary server.
    ZoneTransfer,
}

/// Why a packet was dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Fewer than 12 bytes: no header to answer to.
    NoHeader,
    /// QR=1: a response, never answered (answering responses enables reflection loops).
    Response,
}

impl DropReason {
    /// Returns the label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::NoHeader => "no_header",
            DropReason::Response => "response",
        }
    }
}

/// Reads one incoming message.
pub fn read_query(bytes: &[u8]) -> Incoming {
    let mut decoder = BinDecoder::new(bytes);
    let Ok(header) = Header::read(&mut decoder) else {
        return Incoming::Drop(DropReason::NoHeader);
    };
    if header.metadata.message_type == MessageType::Response {
        return Incoming::Drop(DropReason::Response);
    }

    // Checked before the full parse so a header claiming 65 535 questions costs nothing.
    if header.counts.queries != 1 {
        return reject(&header, ResponseCode::FormErr, RejectReason::Malformed);
    }
    if header.metadata.op_code != OpCode::Query {
        return reject(&header, ResponseCode::NotImp, RejectReason::NotImplemented);
    }

    let message = match Message::from_vec(bytes) {
        Ok(message) => message,
        Err(_) => return reject(&header, ResponseCode::FormErr, RejectReason::Malformed),
    };
    let Some(query) = message.queries.first() else {
        return reject(&header, ResponseCode::FormErr, RejectReason::Malformed);
    };
    if query.query_class() != DNSClass::IN {
        let mut response = error_response(&header, ResponseCode::NotImp);
        response.add_query(query.clone());
        return Incoming::Reject(Box::new(response), RejectReason::NotImplemented);
    }
    if message.edns.as_ref().is_some_and(|edns| edns.version() > 0) {
        // RFC 6891, section 6.1.3: BADVERS, with the highest version swg speaks.
        let mut response = error_response(&header, ResponseCode::BADVERS);
        response.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_LIMIT).set_version(0);
        response.set_edns(edns);
        return Incoming::Reject(Box::new(response), RejectReason::BadVersion);
    }
    if matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR) {
        let mut response = error_response(&header, ResponseCode::Refused);
        response.add_query(query.clone());
        return Incoming::Reject(Box::new(response), RejectReason::ZoneTransfer);
    }
    Incoming::Query(Box::new(message))
}

fn reject(header: &Header, code: ResponseCode, reason: RejectReason) -> Incoming {
    Incoming::Reject(Box::new(error_response(header, code)), reason)
}

fn error_response(header: &Header, code: ResponseCode) -> Message {
    let mut response = Message::error_msg(header.metadata.id, header.metadata.op_code, code);
    response.metadata.recursion_desired = header.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response
}

/// The largest response the client accepts over UDP: its EDNS payload size capped at
/// [`EDNS_UDP_LIMIT`] (and at least 512), or 512 without EDNS.
pub fn udp_limit(query: &Message) -> usize {
    match &query.edns {
        Some(edns) => usize::from(edns.max_payload().clamp(512, EDNS_UDP_LIMIT)),
        None => CLASSIC_UDP_LIMIT,
    }
}

/// Serializes `response`; when it exceeds `limit` bytes, sends a truncated response
/// instead (TC=1, question and OPT only) so the client retries over TCP.
///
/// Returns `None` only if even the truncated form cannot be serialized, which a
/// response built from a parsed query cannot cause.
pub fn encode_response(response: &Message, limit: usize) -> Option<Vec<u8>> {
    if let Ok(bytes) = response.to_vec() {
        if bytes.len() <= limit {
            return Some(bytes);
        }
    }

    let mut truncated = Message::response(response.metadata.id, response.metadata.op_code);
    truncated.metadata = response.metadata;
    truncated.metadata.truncation = true;
    truncated.add_queries(response.queries.iter().cloned());
    if let Some(edns) = response.edns.clone() {
        truncated.set_edns(edns);
    }
    let bytes = truncated.to_vec().ok()?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    // The EDNS options (Extended DNS Error text) pushed it over: drop them.
    truncated.edns = None;
    truncated.to_vec().ok()
}

/// Returns the smallest TTL of the answer and authority records (the DoH
/// `Cache-Control: max-age`), or `None` when both sections are empty.
pub fn min_ttl(response: &Message) -> Option<u32> {
    response
        .answers
        .iter()
        .chain(response.authorities.iter())
        .map(|record: &Record| record.ttl)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Query};
    use hickory_proto::rr::rdata::TXT;
    use hickory_proto::rr::{Name, RData, RecordType};

    fn query_bytes(name: &str) -> Vec<u8> {
        let mut message = Message::query();
        let name = Name::from_ascii(name).unwrap_or_default();
        message.add_query(Query::query(name, RecordType::A));
        message.to_vec().unwrap_or_default()
    }

    #[test]
    fn short_packet_is_dropped() {
        assert!(matches!(
            read_query(&[0; 11]),
            Incoming::Drop(DropReason::NoHeader)
        ));
    }

    #[test]
    fn response_packet_is_dropped() {
        let mut bytes = query_bytes("example.com.");
        bytes[2] |= 0x80;
        assert!(matches!(
            read_query(&bytes),
            Incoming::Drop(DropReason::Response)
        ));
    }

    #[test]
    fn garbage_after_header_gets_formerr_with_same_id() {
        let mut bytes = query_bytes("example.com.");
        bytes.truncate(15);
        let Incoming::Reject(response, RejectReason::Malformed) = read_query(&bytes) else {
            panic!("expected FORMERR");
        };
        assert_eq!(response.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(
            response.metadata.id,
            u16::from_be_bytes([bytes[0], bytes[1]])
        );
    }

    #[test]
    fn two_questions_get_formerr() {
        let mut bytes = query_bytes("example.com.");
        bytes[5] = 2;
        assert!(matches!(
            read_query(&bytes),
            Incoming::Reject(_, RejectReason::Malformed)
        ));
    }

    #[test]
    fn oversized_response_is_truncated_to_limit() {
        let mut response = Message::response(7, OpCode::Query);
        let name = Name::from_ascii("big.example.").unwrap_or_default();
        response.add_query(Query::query(name.clone(), RecordType::TXT));
        for _ in 0..20 {
            let text = TXT::new(vec!["x".repeat(200)]);
            response.add_answer(Record::from_rdata(name.clone(), 60, RData::TXT(text)));
        }
        response.set_edns(Edns::new());

        let bytes = encode_response(&response, 512).unwrap_or_default();
        assert!(bytes.len() <= 512);
        let decoded = Message::from_vec(&bytes).ok();
        assert_eq!(decoded.as_ref().map(|m| m.metadata.truncation), Some(true));
        assert_eq!(decoded.as_ref().map(|m| m.answers.len()), Some(0));

        let full = encode_response(&response, MAX_MESSAGE_LEN).unwrap_or_default();
        assert!(full.len() > 4000);
    }
}
