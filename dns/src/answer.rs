//! Building the responses swg makes up itself: steered, blocked, canary, RFC 8482 and
//! error answers, and the Extended DNS Error option (RFC 8914).

use std::net::{Ipv4Addr, Ipv6Addr};

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, HINFO};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::wire::EDNS_UDP_LIMIT;

/// EDNS option code of the Extended DNS Error (RFC 8914).
pub const EDE_OPTION_CODE: u16 = 15;

/// Extended DNS Error info-codes swg sends (RFC 8914 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdeCode {
    /// 15 Blocked: the operator's policy blocked the name.
    Blocked = 15,
    /// 17 Filtered: the answer was changed on request of the client's own filtering
    /// (here: steered to the inspection proxy).
    Filtered = 17,
    /// 18 Prohibited: the client is not allowed to use this resolver.
    Prohibited = 18,
}

/// Extra text of the Extended DNS Error on REFUSED answers to plain DNS from a
/// source outside every tenant's locations.
pub const UNKNOWN_SOURCE_TEXT: &str =
    "source address is in no location; use DoH with a device token";

/// Starts a response to `query`: same id, question and RD bit, RA set, and an OPT
/// record when the query had one.
pub fn base_response(query: &Message) -> Message {
    let mut response = Message::response(query.metadata.id, OpCode::Query);
    response.metadata.recursion_desired = query.metadata.recursion_desired;
    response.metadata.recursion_available = true;
    response.metadata.checking_disabled = query.metadata.checking_disabled;
    response.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_UDP_LIMIT);
        response.set_edns(edns);
    }
    response
}

/// A response with only a response code (REFUSED, SERVFAIL, NXDOMAIN).
pub fn code_response(query: &Message, code: ResponseCode) -> Message {
    let mut response = base_response(query);
    response.metadata.response_code = code;
    response
}

/// Copies an upstream answer's code and sections into a response to `query`.
pub fn upstream_response(query: &Message, upstream: Message) -> Message {
    let mut response = base_response(query);
    response.metadata.response_code = upstream.metadata.response_code;
    response.metadata.authentic_data = upstream.metadata.authentic_data;
    // Still truncated after the TCP retry: tell the client the answer is incomplete.
    response.metadata.truncation = upstream.metadata.truncation;
    response.answers = upstream.answers;
    response.authorities = upstream.authorities;
    response.additionals = upstream.additionals;
    response
}

/// The RFC 8482 answer to an ANY query: one HINFO record with CPU "RFC8482".
pub fn any_response(query: &Message, name: &Name) -> Message {
    let mut response = base_response(query);
    let hinfo = HINFO::new("RFC8482".to_owned(), String::new());
    response.add_answer(Record::from_rdata(name.clone(), 3_600, RData::HINFO(hinfo)));
    response
}

/// Address records pointing the name at the proxy; empty for types that would teach
/// the client other addresses (HTTPS, SVCB, AAAA with no proxy IPv6).
pub fn steered_records(
    name: &Name,
    query_type: RecordType,
    ttl: u32,
    ipv4: Ipv4Addr,
    ipv6: Option<Ipv6Addr>,
) -> Vec<Record> {
    match (query_type, ipv6) {
        (RecordType::A, _) => vec![Record::from_rdata(name.clone(), ttl, RData::A(A(ipv4)))],
        (RecordType::AAAA, Some(ipv6)) => vec![Record::from_rdata(
            name.clone(),
            ttl,
            RData::AAAA(AAAA(ipv6)),
        )],
        _ => Vec::new(),
    }
}

/// `0.0.0.0` for A, `::` for AAAA, nothing for other types.
pub fn zero_records(name: &Name, query_type: RecordType, ttl: u32) -> Vec<Record> {
    match query_type {
        RecordType::A => vec![Record::from_rdata(
            name.clone(),
            ttl,
            RData::A(A(Ipv4Addr::UNSPECIFIED)),
        )],
        RecordType::AAAA => vec![Record::from_rdata(
            name.clone(),
            ttl,
            RData::AAAA(AAAA(Ipv6Addr::UNSPECIFIED)),
        )],
        _ => Vec::new(),
    }
}

/// Adds an Extended DNS Error to the response's OPT record. Responses to queries
/// without EDNS have no OPT record and get none (RFC 6891 forbids adding one).
pub fn add_ede(response: &mut Message, code: EdeCode, text: &str) {
    let Some(edns) = response.edns.as_mut() else {
        return;
    };
    let mut value = Vec::with_capacity(2 + text.len());
    value.extend_from_slice(&(code as u16).to_be_bytes());
    value.extend_from_slice(text.as_bytes());
    edns.options_mut().options.push((
        EdnsCode::from(EDE_OPTION_CODE),
        EdnsOption::Unknown(EDE_OPTION_CODE, value),
    ));
}

/// Reads the Extended DNS Error of a response: its info-code and extra text.
pub fn read_ede(response: &Message) -> Option<(u16, String)> {
    let edns = response.edns.as_ref()?;
    match edns.option(EdnsCode::from(EDE_OPTION_CODE))? {
        EdnsOption::Unknown(_, value) if value.len() >= 2 => {
            let code = u16::from_be_bytes([value[0], value[1]]);
            Some((code, String::from_utf8_lossy(&value[2..]).into_owned()))
        }
        _ => None,
    }
}

/// Formats the EDE extra text: `action=block;category=phishing;rule=r1`. Empty fields
/// stay empty so the agent can always split on `;` and `=`.
pub fn ede_text(action: &str, category: Option<&str>, rule: Option<&str>) -> String {
    let clean = |value: Option<&str>| value.unwrap_or("").replace([';', '='], "_");
    format!(
        "action={action};category={};rule={}",
        clean(category),
        clean(rule)
    )
}
