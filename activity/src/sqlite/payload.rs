//! The `events.payload` column: the fields no query filters on, packed into one
//! blob.
//!
//! Binding one blob instead of eleven columns makes each insert cheaper, because
//! SQLite copies every bound text and builds a record header entry for every
//! column. The enums and addresses also take a byte or a few here instead of their
//! text form.
//! Queries filter only on the columns of `events` and on the index tables, so
//! nothing needs to look inside the blob but [`decode`].
//!
//! Layout, version 1, integers little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 1 | format version, 1 |
//! | 1 each | discovery, app class, via (codes below) |
//! | 1 + 0, 4 or 16 each | client IP, device IP: 0 (none), 4 or 6, then the address |
//! | 16 | request id, as text |
//! | text | request |
//! | optional text each | policy, rule |
//! | text | reason |
//! | 1, then text each | number of categories, then each category |
//!
//! A text is its length in bytes as a `u16` followed by its UTF-8 bytes; an
//! optional text that is absent is the length `0xFFFF` alone. Every text is capped
//! well below that length by [`Event::sanitize`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::event::{AppClass, Discovery, Event, Via};
use crate::request_id::{RequestId, REQUEST_ID_LEN};

/// The layout version this build writes and reads.
const VERSION: u8 = 1;
/// Length that marks an absent optional text.
const ABSENT: u16 = u16::MAX;

/// The fields of an event that live in the payload.
pub(super) struct Payload {
    pub(super) discovery: Discovery,
    pub(super) app_class: AppClass,
    pub(super) via: Via,
    pub(super) client_ip: Option<IpAddr>,
    pub(super) device_ip: Option<IpAddr>,
    pub(super) request_id: RequestId,
    pub(super) request: String,
    pub(super) policy: Option<String>,
    pub(super) rule: Option<String>,
    pub(super) reason: String,
    pub(super) categories: Vec<String>,
}

/// Writes the payload of a sanitized `event` into `out`, which is cleared first.
pub(super) fn encode(event: &Event, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[
        VERSION,
        discovery_code(event.discovery),
        app_class_code(event.app_class),
        via_code(event.via),
    ]);
    put_ip(out, event.client_ip);
    put_ip(out, event.device_ip);
    out.extend_from_slice(event.request_id.as_str().as_bytes());
    put_text(out, &event.request);
    put_optional(out, event.policy.as_deref());
    put_optional(out, event.rule.as_deref());
    put_text(out, &event.reason);
    // Sanitizing keeps at most MAX_CATEGORIES (16) categories.
    out.push(event.categories.len().min(usize::from(u8::MAX)) as u8);
    for category in event.categories.iter().take(usize::from(u8::MAX)) {
        put_text(out, category);
    }
}

/// Reads a payload written by [`encode`], or returns none when it is malformed.
pub(super) fn decode(bytes: &[u8]) -> Option<Payload> {
    let mut reader = Reader(bytes);
    if reader.byte()? != VERSION {
        return None;
    }

    let discovery = discovery_of(reader.byte()?)?;
    let app_class = app_class_of(reader.byte()?)?;
    let via = via_of(reader.byte()?)?;
    let client_ip = reader.ip()?;
    let device_ip = reader.ip()?;
    let request_id = std::str::from_utf8(reader.take(REQUEST_ID_LEN)?)
        .ok()?
        .parse()
        .ok()?;
    let request = reader.text()?;
    let policy = reader.optional()?;
    let rule = reader.optional()?;
    let reason = reader.text()?;
    let count = reader.byte()?;
    let categories = (0..count)
        .map(|_| reader.text())
        .collect::<Option<Vec<_>>>()?;
    if !reader.0.is_empty() {
        return None;
    }

    Some(Payload {
        discovery,
        app_class,
        via,
        client_ip,
        device_ip,
        request_id,
        request,
        policy,
        rule,
        reason,
        categories,
    })
}

fn put_ip(out: &mut Vec<u8>, ip: Option<IpAddr>) {
    match ip {
        None => out.push(0),
        Some(IpAddr::V4(v4)) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        Some(IpAddr::V6(v6)) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    // Sanitized texts are at most a few kilobytes; a longer one is cut on a
    // character boundary rather than written with a wrong length.
    let mut end = text.len().min(usize::from(ABSENT - 1));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&(end as u16).to_le_bytes());
    out.extend_from_slice(&text.as_bytes()[..end]);
}

fn put_optional(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => put_text(out, text),
        None => out.extend_from_slice(&ABSENT.to_le_bytes()),
    }
}

/// The unread rest of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize) -> Option<&'a [u8]> {
        if self.0.len() < count {
            return None;
        }
        let (taken, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(taken)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|bytes| bytes[0])
    }

    fn length(&mut self) -> Option<u16> {
        self.take(2)
            .map(|bytes| u16::from_le_bytes([bytes[0], bytes[1]]))
    }

    fn ip(&mut self) -> Option<Option<IpAddr>> {
        match self.byte()? {
            0 => Some(None),
            4 => {
                let octets: [u8; 4] = self.take(4)?.try_into().ok()?;
                Some(Some(IpAddr::V4(Ipv4Addr::from(octets))))
            }
            6 => {
                let octets: [u8; 16] = self.take(16)?.try_into().ok()?;
                Some(Some(IpAddr::V6(Ipv6Addr::from(octets))))
            }
            _ => None,
        }
    }

    fn text_of_length(&mut self, length: u16) -> Option<String> {
        let bytes = self.take(usize::from(length))?;
        String::from_utf8(bytes.to_vec()).ok()
    }

    fn text(&mut self) -> Option<String> {
        let length = self.length()?;
        if length == ABSENT {
            return None;
        }
        self.text_of_length(length)
    }

    fn optional(&mut self) -> Option<Option<String>> {
        match self.length()? {
            ABSENT => Some(None),
            length => self.text_of_length(length).map(Some),
        }
    }
}

// The codes are part of the stored format: never renumber them.

fn discovery_code(discovery: Discovery) -> u8 {
    match discovery {
        Discovery::None => 0,
        Discovery::Cookie => 1,
        Discovery::Correlation => 2,
        Discovery::Ticket => 3,
        Discovery::Location => 4,
        Discovery::Token => 5,
    }
}

fn discovery_of(code: u8) -> Option<Discovery> {
    Discovery::ALL
        .iter()
        .copied()
        .find(|discovery| discovery_code(*discovery) == code)
}

fn app_class_code(class: AppClass) -> u8 {
    match class {
        AppClass::Unknown => 0,
        AppClass::Browser => 1,
        AppClass::App => 2,
        AppClass::TrustedApp => 3,
    }
}

fn app_class_of(code: u8) -> Option<AppClass> {
    AppClass::ALL
        .iter()
        .copied()
        .find(|class| app_class_code(*class) == code)
}

fn via_code(via: Via) -> u8 {
    match via {
        Via::Dns => 0,
        Via::Proxy => 1,
    }
}

fn via_of(code: u8) -> Option<Via> {
    Via::ALL.iter().copied().find(|via| via_code(*via) == code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Action;

    fn full_event() -> Event {
        let mut event = Event::new("acme", Via::Proxy, "https://é.example/a?b", Action::Block);
        event.discovery = Discovery::Ticket;
        event.app_class = AppClass::TrustedApp;
        event.client_ip = Some("2001:db8::7".parse().unwrap());
        event.device_ip = Some("10.1.2.3".parse().unwrap());
        event.policy = Some("p-1".to_owned());
        event.rule = None;
        event.reason = String::new();
        event.categories = vec!["phishing".to_owned(), "newly-seen".to_owned()];
        event
    }

    #[test]
    fn payload_round_trips_every_field() {
        let event = full_event();
        let mut bytes = Vec::new();
        encode(&event, &mut bytes);
        let payload = decode(&bytes).unwrap();

        assert_eq!(payload.discovery, Discovery::Ticket);
        assert_eq!(payload.app_class, AppClass::TrustedApp);
        assert_eq!(payload.via, Via::Proxy);
        assert_eq!(payload.client_ip, event.client_ip);
        assert_eq!(payload.device_ip, event.device_ip);
        assert_eq!(payload.request_id, event.request_id);
        assert_eq!(payload.request, "https://é.example/a?b");
        assert_eq!(payload.policy.as_deref(), Some("p-1"));
        assert_eq!(payload.rule, None);
        assert_eq!(payload.reason, "");
        assert_eq!(payload.categories, ["phishing", "newly-seen"]);
    }

    #[test]
    fn every_enum_value_has_its_own_code() {
        for discovery in Discovery::ALL {
            assert_eq!(discovery_of(discovery_code(*discovery)), Some(*discovery));
        }
        for class in AppClass::ALL {
            assert_eq!(app_class_of(app_class_code(*class)), Some(*class));
        }
        for via in Via::ALL {
            assert_eq!(via_of(via_code(*via)), Some(*via));
        }
    }

    #[test]
    fn malformed_payloads_are_rejected() {
        let mut bytes = Vec::new();
        encode(&full_event(), &mut bytes);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "accepted {cut} bytes");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut newer = bytes;
        newer[0] = 2;
        assert!(decode(&newer).is_none());
    }
}
