//! The activity event and its small enums.
//!
//! An [`Event`] records one decision of the resolver or the proxy. Callers create
//! no event for bypassed apps and domain exceptions: those never reach policy and
//! are not logged.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::request_id::RequestId;

/// Maximum stored length of [`Event::request`] in bytes (a domain, or a full URL at the proxy).
pub const MAX_REQUEST_BYTES: usize = 2048;
/// Maximum stored length of [`Event::reason`] in bytes.
pub const MAX_REASON_BYTES: usize = 512;
/// Maximum stored length of the tenant, user, device and app fields in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Maximum stored length of the policy and rule ids in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Maximum stored length of one category name in bytes.
pub const MAX_CATEGORY_BYTES: usize = 64;
/// Maximum number of categories stored per event; further ones are dropped.
pub const MAX_CATEGORIES: usize = 16;

/// Defines a field-less enum with a stable lowercase string form used in the
/// store, in JSON and in CSV.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(
                $(#[$vmeta])*
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// Returns the stable string form, as stored and exported.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownValue { kind: stringify!($name), value: text.to_owned() }),
                }
            }
        }
    };
}

/// A string that names no value of one of the event enums.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} value {value:?}")]
pub struct UnknownValue {
    /// The enum that was parsed, such as `Action`.
    pub kind: &'static str,
    /// The rejected text.
    pub value: String,
}

string_enum! {
    /// The action swg took on a request.
    Action {
        /// Forwarded or resolved normally.
        Allow => "allow",
        /// Blocked: block page, 403, or a blocking DNS answer.
        Block => "block",
        /// Warn page shown.
        Warn => "warn",
        /// The user continued past a warn page.
        Accepted => "accepted",
        /// Steered to the inspection proxy.
        Inspect => "inspect",
        /// A DNS answer inside an IP exception, returned unchanged.
        BypassIp => "bypass-ip",
        /// Passed without policy because the tenant could not be filtered.
        Unfiltered => "unfiltered",
    }
}

string_enum! {
    /// The component that made the decision.
    Via {
        /// The resolver.
        Dns => "dns",
        /// The HTTPS inspection proxy.
        Proxy => "proxy",
    }
}

string_enum! {
    /// The method that identified the user and device behind a request.
    Discovery {
        /// The signed identity cookie.
        Cookie => "cookie",
        /// A correlation hint from the resolver.
        Correlation => "correlation",
        /// A one-time ticket from the auth host.
        Ticket => "ticket",
        /// The source address lies in a tenant location.
        Location => "location",
        /// A device token (DoH or explicit proxy).
        Token => "token",
        /// Not identified.
        None => "none",
    }
}

string_enum! {
    /// The class of the app that sent the request.
    AppClass {
        /// No bundle id and no class hint.
        Unknown => "unknown",
        /// A browser from the tenant's browser list.
        Browser => "browser",
        /// Any other app.
        App => "app",
        /// An app the tenant trusts: never sent to the proxy.
        TrustedApp => "trusted-app",
    }
}

/// One decision, as recorded in the activity log.
///
/// Bypassed apps and domain exceptions produce no event: the resolver and the proxy
/// must not record them. Text fields may contain anything a client sent, because the
/// store applies [`Event::sanitize`] before writing. That replaces control characters
/// and truncates each field to its cap (the `MAX_*` constants). Times are stored with
/// millisecond precision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When the decision was made.
    #[serde(with = "millisecond_time")]
    pub time: OffsetDateTime,
    /// Tenant id.
    pub tenant: String,
    /// User id, when known.
    pub user: Option<String>,
    /// Device id, when known.
    pub device: Option<String>,
    /// Method that identified the user and device.
    pub discovery: Discovery,
    /// Bundle id of the asking app, when known.
    pub app: Option<String>,
    /// Class of the asking app.
    pub app_class: AppClass,
    /// Public address the request came from.
    pub client_ip: Option<IpAddr>,
    /// The device's private address, as reported by the agent.
    pub device_ip: Option<IpAddr>,
    /// Component that made the decision.
    pub via: Via,
    /// The domain (at the resolver) or the full URL (at the proxy).
    pub request: String,
    /// Categories of the request, in the order the policy reported them.
    pub categories: Vec<String>,
    /// Id of the policy that decided, when one did.
    pub policy: Option<String>,
    /// Id of the rule that decided, when one did.
    pub rule: Option<String>,
    /// Action swg took.
    pub action: Action,
    /// Human-readable reason for the action.
    pub reason: String,
    /// Short id the block page shows, so an administrator can find this event.
    pub request_id: RequestId,
}

impl Event {
    /// Creates an event with the required fields, the current time, a fresh request
    /// id and every optional field empty.
    pub fn new(
        tenant: impl Into<String>,
        via: Via,
        request: impl Into<String>,
        action: Action,
    ) -> Self {
        Event {
            time: OffsetDateTime::now_utc(),
            tenant: tenant.into(),
            user: None,
            device: None,
            discovery: Discovery::None,
            app: None,
            app_class: AppClass::Unknown,
            client_ip: None,
            device_ip: None,
            via,
            request: request.into(),
            categories: Vec::new(),
            policy: None,
            rule: None,
            action,
            reason: String::new(),
            request_id: RequestId::generate(),
        }
    }

    /// Truncates every text field to its cap without scanning its content.
    ///
    /// The recorder calls this on the hot path so that an oversized field cannot
    /// inflate the in-memory queue; [`Event::sanitize`] does the full cleanup later.
    pub fn truncate_fields(&mut self) {
        truncate_at_boundary(&mut self.tenant, MAX_NAME_BYTES);
        truncate_option(&mut self.user, MAX_NAME_BYTES);
        truncate_option(&mut self.device, MAX_NAME_BYTES);
        truncate_option(&mut self.app, MAX_NAME_BYTES);
        truncate_at_boundary(&mut self.request, MAX_REQUEST_BYTES);
        self.categories.truncate(MAX_CATEGORIES);
        for category in &mut self.categories {
            truncate_at_boundary(category, MAX_CATEGORY_BYTES);
        }
        truncate_option(&mut self.policy, MAX_ID_BYTES);
        truncate_option(&mut self.rule, MAX_ID_BYTES);
        truncate_at_boundary(&mut self.reason, MAX_REASON_BYTES);
    }

    /// Replaces control and bidirectional-override characters in every text field
    /// with U+FFFD and truncates each field to its cap.
    ///
    /// Categories become lowercase, and empty categories are removed.
    pub fn sanitize(&mut self) {
        self.truncate_fields();
        clean_in_place(&mut self.tenant, MAX_NAME_BYTES);
        clean_option(&mut self.user, MAX_NAME_BYTES);
        clean_option(&mut self.device, MAX_NAME_BYTES);
        clean_option(&mut self.app, MAX_NAME_BYTES);
        clean_in_place(&mut self.request, MAX_REQUEST_BYTES);
        for category in &mut self.categories {
            clean_in_place(category, MAX_CATEGORY_BYTES);
            if category.bytes().any(|b| b.is_ascii_uppercase()) {
                category.make_ascii_lowercase();
            }
        }
        self.categories.retain(|category| !category.is_empty());
        clean_option(&mut self.policy, MAX_ID_BYTES);
        clean_option(&mut self.rule, MAX_ID_BYTES);
        clean_in_place(&mut self.reason, MAX_REASON_BYTES);
    }
}

impl Event {
    /// Returns whether [`Event::sanitize`] would leave this event unchanged.
    pub fn is_clean(&self) -> bool {
        let names = [
            Some(&self.tenant),
            self.user.as_ref(),
            self.device.as_ref(),
            self.app.as_ref(),
        ];
        let ids = [self.policy.as_ref(), self.rule.as_ref()];
        names
            .into_iter()
            .flatten()
            .all(|text| is_clean_text(text, MAX_NAME_BYTES))
            && ids
                .into_iter()
                .flatten()
                .all(|text| is_clean_text(text, MAX_ID_BYTES))
            && is_clean_text(&self.request, MAX_REQUEST_BYTES)
            && is_clean_text(&self.reason, MAX_REASON_BYTES)
            && self.categories.len() <= MAX_CATEGORIES
            && self.categories.iter().all(|category| {
                !category.is_empty()
                    && is_clean_text(category, MAX_CATEGORY_BYTES)
                    && !category.bytes().any(|b| b.is_ascii_uppercase())
            })
    }
}

fn is_clean_text(text: &str, max_bytes: usize) -> bool {
    if text.len() > max_bytes {
        return false;
    }
    // Printable ASCII, the common case, needs no character decoding. Folding over
    // every byte, without stopping early, lets the compiler check many at once.
    if text
        .bytes()
        .fold(true, |printable, b| printable & (0x20..0x7f).contains(&b))
    {
        return true;
    }
    !text.chars().any(is_unsafe_char)
}

/// Converts bytes from the wire into a bounded, printable string.
///
/// Invalid UTF-8 becomes U+FFFD, control and bidirectional-override characters
/// become U+FFFD, and the result is cut to at most `max_bytes` bytes on a
/// character boundary.
pub fn text_from_bytes(bytes: &[u8], max_bytes: usize) -> String {
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(max_bytes.saturating_mul(2))])
        .into_owned();
    clean_in_place(&mut text, max_bytes);
    text
}

fn truncate_option(field: &mut Option<String>, max_bytes: usize) {
    if let Some(text) = field {
        truncate_at_boundary(text, max_bytes);
    }
}

fn clean_option(field: &mut Option<String>, max_bytes: usize) {
    if let Some(text) = field {
        clean_in_place(text, max_bytes);
    }
}

/// Cuts `text` to at most `max_bytes` bytes without splitting a character.
fn truncate_at_boundary(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// Characters that must not reach a terminal, a log line or a spreadsheet cell:
/// C0 and C1 controls, DEL, and the Unicode marks that reorder displayed text.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

fn clean_in_place(text: &mut String, max_bytes: usize) {
    if text.chars().any(is_unsafe_char) {
        *text = text
            .chars()
            .map(|c| {
                if is_unsafe_char(c) {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect();
    }
    // The replacement character is 3 bytes long, so cleaning can lengthen the text.
    truncate_at_boundary(text, max_bytes);
}

/// Formats `time` in UTC as RFC 3339 with exactly three fraction digits, such as
/// `2026-11-20T12:00:00.500Z`, so that times of one width sort as text. An empty
/// string for years outside 0 to 9999, which millisecond times from the store
/// cannot have.
pub fn format_time(time: OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// Serde form of event times: written by [`format_time`], read as any RFC 3339
/// time.
mod millisecond_time {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    pub(super) fn serialize<S: Serializer>(
        time: &OffsetDateTime,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_time(*time))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<OffsetDateTime, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_through_string_form() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(*action));
        }
        for class in AppClass::ALL {
            assert_eq!(class.as_str().parse::<AppClass>(), Ok(*class));
        }
        for discovery in Discovery::ALL {
            assert_eq!(discovery.as_str().parse::<Discovery>(), Ok(*discovery));
        }
        for via in Via::ALL {
            assert_eq!(via.as_str().parse::<Via>(), Ok(*via));
        }
        assert_eq!(Action::BypassIp.as_str(), "bypass-ip");
        assert_eq!(AppClass::TrustedApp.as_str(), "trusted-app");
        assert!("Block".parse::<Action>().is_err());
    }

    #[test]
    fn times_have_three_fraction_digits_in_utc() {
        let time = time::macros::datetime!(2026-11-20 13:00:00.5 +01:00);
        assert_eq!(format_time(time), "2026-11-20T12:00:00.500Z");
        let whole = time::macros::datetime!(2026-11-20 12:00:00 UTC);
        assert_eq!(format_time(whole), "2026-11-20T12:00:00.000Z");

        let mut event = Event::new("acme", Via::Dns, "example.com", Action::Allow);
        event.time = time;
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["time"], "2026-11-20T12:00:00.500Z");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back.time, time);
    }

    #[test]
    fn enums_serialize_to_string_form() {
        let json = serde_json::to_string(&Action::BypassIp).unwrap();
        assert_eq!(json, "\"bypass-ip\"");
    }

    #[test]
    fn text_from_bytes_replaces_invalid_utf8_and_controls() {
        let text = text_from_bytes(b"a\xffb\x1b[31mc\r\nd\x7f", 100);
        assert_eq!(text, "a\u{FFFD}b\u{FFFD}[31mc\u{FFFD}\u{FFFD}d\u{FFFD}");
    }

    #[test]
    fn text_from_bytes_caps_length_on_char_boundary() {
        let text = text_from_bytes("é".repeat(10).as_bytes(), 5);
        assert_eq!(text, "éé");
    }

    #[test]
    fn sanitize_caps_every_field() {
        let mut event = Event::new(
            "t".repeat(1000),
            Via::Proxy,
            format!("https://a/{}", "x".repeat(10_000)),
            Action::Block,
        );
        event.reason = "r".repeat(5000);
        event.rule = Some("\u{202E}evil".to_owned());
        event.categories = (0..40).map(|i| format!("Cat{i}")).collect();
        event.categories[1] = String::new();
        event.sanitize();
        assert_eq!(event.request.len(), MAX_REQUEST_BYTES);
        assert_eq!(event.reason.len(), MAX_REASON_BYTES);
        assert_eq!(event.tenant.len(), MAX_NAME_BYTES);
        assert_eq!(event.rule.as_deref(), Some("\u{FFFD}evil"));
        assert_eq!(event.categories.len(), MAX_CATEGORIES - 1);
        assert_eq!(event.categories[0], "cat0");
        assert!(event.is_clean());
    }

    #[test]
    fn is_clean_spots_each_kind_of_dirt() {
        let clean = Event::new("acme", Via::Dns, "example.com", Action::Allow);
        assert!(clean.is_clean());
        let mut dirty = clean.clone();
        dirty.reason = "a\u{7}".to_owned();
        assert!(!dirty.is_clean());
        let mut long = clean.clone();
        long.request = "x".repeat(MAX_REQUEST_BYTES + 1);
        assert!(!long.is_clean());
        let mut upper = clean;
        upper.categories = vec!["News".to_owned()];
        assert!(!upper.is_clean());
    }
}
