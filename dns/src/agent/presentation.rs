//! Text forms for `swg agent query`: record types as the user writes them, and
//! swg's response with its Extended DNS Errors spelled out.

use std::fmt::Write as _;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::RecordType;

use super::AgentError;
use crate::answer::EDE_OPTION_CODE;

/// Parses a record type: a mnemonic such as `A` or `https` (any case), a number
/// such as `65`, or the RFC 3597 form `TYPE65`.
pub fn parse_record_type(text: &str) -> Result<RecordType, AgentError> {
    let upper = text.trim().to_ascii_uppercase();
    let number = upper.strip_prefix("TYPE").unwrap_or(&upper);
    if let Ok(code) = number.parse::<u16>() {
        return Ok(RecordType::from(code));
    }
    upper
        .parse::<RecordType>()
        .map_err(|_| AgentError::RecordType(text.to_owned()))
}

/// Parses a name to look up, with or without its trailing dot. IDNs are converted
/// to their ASCII form.
pub fn parse_name(text: &str) -> Result<hickory_proto::rr::Name, AgentError> {
    hickory_proto::rr::Name::from_utf8(text).map_err(|error| AgentError::Name {
        name: text.to_owned(),
        reason: error.to_string(),
    })
}

/// Formats `response` like hickory's presentation form, with a line per Extended
/// DNS Error after the OPT line: `; EDE: 15 (Blocked): action=block;...`.
pub fn response_text(response: &Message) -> String {
    let errors = extended_errors(response);
    let text = response.to_string();
    if errors.is_empty() {
        return text;
    }

    let mut out = String::with_capacity(text.len() + 80 * errors.len());
    let mut placed = false;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if !placed && line.starts_with("; edns ") {
            push_errors(&mut out, &errors);
            placed = true;
        }
    }
    if !placed {
        push_errors(&mut out, &errors);
    }
    out
}

fn push_errors(out: &mut String, errors: &[(u16, String)]) {
    for (code, text) in errors {
        let _ = write!(out, "; EDE: {code} ({})", ede_name(*code));
        if !text.is_empty() {
            let _ = write!(out, ": {text}");
        }
        out.push('\n');
    }
}

/// Returns the info-code and extra text of every Extended DNS Error option.
fn extended_errors(response: &Message) -> Vec<(u16, String)> {
    let Some(edns) = &response.edns else {
        return Vec::new();
    };
    edns.options()
        .options
        .iter()
        .filter_map(|(_, option)| match option {
            EdnsOption::Unknown(EDE_OPTION_CODE, value) if value.len() >= 2 => {
                let code = u16::from_be_bytes([value[0], value[1]]);
                Some((code, String::from_utf8_lossy(&value[2..]).into_owned()))
            }
            _ => None,
        })
        .collect()
}

/// Returns the name of an Extended DNS Error info-code (RFC 8914 section 4).
fn ede_name(code: u16) -> &'static str {
    match code {
        0 => "Other Error",
        1 => "Unsupported DNSKEY Algorithm",
        2 => "Unsupported DS Digest Type",
        3 => "Stale Answer",
        4 => "Forged Answer",
        5 => "DNSSEC Indeterminate",
        6 => "DNSSEC Bogus",
        7 => "Signature Expired",
        8 => "Signature Not Yet Valid",
        9 => "DNSKEY Missing",
        10 => "RRSIGs Missing",
        11 => "No Zone Key Bit Set",
        12 => "NSEC Missing",
        13 => "Cached Error",
        14 => "Not Ready",
        15 => "Blocked",
        16 => "Censored",
        17 => "Filtered",
        18 => "Prohibited",
        19 => "Stale NXDOMAIN Answer",
        20 => "Not Authoritative",
        21 => "Not Supported",
        22 => "No Reachable Authority",
        23 => "Network Error",
        24 => "Invalid Data",
        _ => "unassigned in RFC 8914",
    }
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::{Edns, Query, ResponseCode};
    use hickory_proto::rr::Name;

    use super::*;
    use crate::answer::{add_ede, code_response, EdeCode};

    #[test]
    fn record_types_by_name_number_and_rfc3597_form() {
        let cases = [
            ("A", RecordType::A),
            ("https", RecordType::HTTPS),
            ("65", RecordType::HTTPS),
            ("TYPE65", RecordType::HTTPS),
            ("type28", RecordType::AAAA),
            ("65280", RecordType::Unknown(65_280)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_record_type(text).ok(), Some(expected), "{text}");
        }
    }

    #[test]
    fn unknown_record_type_names_accepted_forms() {
        let error = parse_record_type("BOGUS").err().map(|e| e.to_string());
        let Some(error) = error else {
            panic!("BOGUS parsed as a record type");
        };
        assert!(error.contains("\"BOGUS\""), "{error}");
        assert!(error.contains("TYPE65"), "{error}");
        assert!(parse_record_type("TYPE70000").is_err());
    }

    #[test]
    fn response_text_shows_ede_code_and_text() {
        let mut query = Message::query();
        let Ok(name) = Name::from_ascii("blocked.example.") else {
            panic!("invalid test name");
        };
        query.add_query(Query::query(name, RecordType::A));
        query.set_edns(Edns::new());
        let mut response = code_response(&query, ResponseCode::NoError);
        add_ede(
            &mut response,
            EdeCode::Blocked,
            "action=block;category=phishing;rule=r1",
        );

        let text = response_text(&response);
        let lines: Vec<&str> = text.lines().collect();
        let edns_line = lines.iter().position(|line| line.starts_with("; edns "));
        let ede_line = lines.iter().position(|line| {
            *line == "; EDE: 15 (Blocked): action=block;category=phishing;rule=r1"
        });
        assert!(edns_line.is_some(), "{text}");
        assert_eq!(ede_line, edns_line.map(|index| index + 1), "{text}");
    }

    #[test]
    fn response_text_without_ede_is_unchanged() {
        let mut query = Message::query();
        let Ok(name) = Name::from_ascii("example.") else {
            panic!("invalid test name");
        };
        query.add_query(Query::query(name, RecordType::A));
        let response = code_response(&query, ResponseCode::NoError);
        assert_eq!(response_text(&response), response.to_string());
    }
}
