//! The signed value format shared by device tokens, cookies and tickets.
//!
//! A signed value reads `v1.<purpose>.<key id>.<payload>.<mac>`:
//!
//! - `v1` is the format version;
//! - `<purpose>` is the [`Purpose`] label (`dt`, `id`, `ack`, ...);
//! - `<key id>` names the [`SigningKeys`] entry that made the MAC;
//! - `<payload>` is the JSON claims, base64url without padding;
//! - `<mac>` is HMAC-SHA256, base64url without padding, over the bytes `swg`, a NUL
//!   byte, and everything before the last `.`.
//!
//! Because the purpose is inside the MAC input, a value made for one purpose never
//! verifies as another even if an attacker edits the label. Every part uses only
//! base64url characters and `.`, so a value fits in a cookie, a header or a query
//! string unescaped. Checks run cheapest first, and the payload is parsed only after
//! the MAC has been verified in constant time.

use std::sync::Arc;

use base64::Engine as _;
use ring::hmac;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::metrics::Metrics;
use crate::{IdentityConfig, Rejection, SigningKeys};

/// Maximum length of a signed value in bytes; longer input is rejected unread.
pub const MAX_SIGNED_VALUE_LEN: usize = 4096;

const VERSION: &str = "v1";
const MAC_CONTEXT: &[u8] = b"swg\0";
const BASE64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// What a signed value is for; a value verifies only for the purpose it was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// An agent's device token (`Authorization: Bearer`).
    DeviceToken,
    /// The host-only `__swg_id` identity cookie set by the proxy.
    IdentityCookie,
    /// The `__swg_ack` warn acknowledgement cookie for a registrable domain.
    AckCookie,
    /// A one-time ticket that carries a device's identity from the auth host to a site.
    Ticket,
    /// The form token of a warn page's "continue" button.
    ContinueForm,
    /// The long-lived device cookie on the auth host.
    GatewayCookie,
    /// The return URL handed to the auth host when the proxy redirects there.
    ReturnUrl,
}

impl Purpose {
    /// Returns the short label written into the value and used as a metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::DeviceToken => "dt",
            Self::IdentityCookie => "id",
            Self::AckCookie => "ack",
            Self::Ticket => "tkt",
            Self::ContinueForm => "cont",
            Self::GatewayCookie => "gw",
            Self::ReturnUrl => "ret",
        }
    }
}

/// Claims that carry an expiry time.
pub(crate) trait Expiring {
    /// Returns the expiry in seconds since the Unix epoch; the value is invalid from
    /// that second on.
    fn expires_at(&self) -> u64;
}

/// Issues and verifies every kind of signed value.
///
/// One `Signer` is shared by the console, the resolver and the proxy; it is cheap
/// to clone.
#[derive(Clone)]
pub struct Signer {
    keys: Arc<SigningKeys>,
    config: Arc<IdentityConfig>,
    metrics: Metrics,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("keys", &self.keys).finish()
    }
}

impl Signer {
    /// Creates a signer with `keys` and the lifetimes in `config`, and registers
    /// the rejection counters with `registry`.
    pub fn new(
        keys: SigningKeys,
        config: &IdentityConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            keys: Arc::new(keys),
            config: Arc::new(config.clone()),
            metrics: Metrics::register(registry)?,
        })
    }

    /// Returns the configuration whose lifetimes this signer applies.
    pub fn config(&self) -> &IdentityConfig {
        &self.config
    }

    /// Signs `claims` for `purpose` with the active key.
    pub(crate) fn seal<T: Serialize>(&self, purpose: Purpose, claims: &T) -> String {
        let payload =
            serde_json::to_vec(claims).expect("claims are plain structs of strings and numbers");
        let (key_id, key) = self.keys.active();
        let signed_part = format!(
            "{VERSION}.{}.{key_id}.{}",
            purpose.label(),
            BASE64URL.encode(payload)
        );
        let mac = hmac::sign(key, &mac_input(&signed_part));
        format!("{signed_part}.{}", BASE64URL.encode(mac.as_ref()))
    }

    /// Verifies `value` for `purpose` at time `now` and returns its claims, counting
    /// any rejection.
    pub(crate) fn open<T: DeserializeOwned + Expiring>(
        &self,
        purpose: Purpose,
        value: &str,
        now: u64,
    ) -> Result<T, Rejection> {
        self.open_uncounted(purpose, value, now)
            .map_err(|rejection| self.reject(purpose, rejection))
    }

    /// Counts `rejection` of a value made for `purpose` and returns it.
    pub(crate) fn reject(&self, purpose: Purpose, rejection: Rejection) -> Rejection {
        self.metrics.count(purpose, rejection);
        tracing::debug!(
            purpose = purpose.label(),
            reason = rejection.reason(),
            "rejected signed value"
        );
        rejection
    }

    fn open_uncounted<T: DeserializeOwned + Expiring>(
        &self,
        purpose: Purpose,
        value: &str,
        now: u64,
    ) -> Result<T, Rejection> {
        if value.len() > MAX_SIGNED_VALUE_LEN {
            return Err(Rejection::Oversized);
        }

        let (signed_part, mac) = value.rsplit_once('.').ok_or(Rejection::Malformed)?;
        let mut parts = signed_part.splitn(4, '.');
        let (Some(version), Some(label), Some(key_id), Some(payload)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Rejection::Malformed);
        };
        if version != VERSION {
            return Err(if version.starts_with('v') {
                Rejection::UnsupportedVersion
            } else {
                Rejection::Malformed
            });
        }
        if label != purpose.label() {
            return Err(Rejection::WrongPurpose);
        }

        let key = self.keys.find(key_id).ok_or(Rejection::UnknownSigningKey)?;
        let mac = BASE64URL.decode(mac).map_err(|_| Rejection::Malformed)?;
        hmac::verify(key, &mac_input(signed_part), &mac).map_err(|_| Rejection::BadSignature)?;

        let payload = BASE64URL
            .decode(payload)
            .map_err(|_| Rejection::Malformed)?;
        let claims: T = serde_json::from_slice(&payload).map_err(|_| Rejection::Malformed)?;
        if now >= claims.expires_at() {
            return Err(Rejection::Expired);
        }
        Ok(claims)
    }
}

fn mac_input(signed_part: &str) -> Vec<u8> {
    let mut input = Vec::with_capacity(MAC_CONTEXT.len() + signed_part.len());
    input.extend_from_slice(MAC_CONTEXT);
    input.extend_from_slice(signed_part.as_bytes());
    input
}

/// Lowercases a host name and removes a trailing dot, so audiences compare equal
/// however the client spelled the host.
pub(crate) fn normalize_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}
