//! Signed cookies: `__swg_id` (identity on a site), `__swg_ack` (warn
//! acknowledgements for a registrable domain) and the auth host's gateway cookie.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::signed::{normalize_host, Expiring};
use crate::{AppClass, Discovery, Identity, Purpose, Rejection, Signer, MAX_SIGNED_VALUE_LEN};

/// Maximum number of acknowledged rules one `__swg_ack` cookie keeps; the oldest
/// acknowledgement is dropped first.
pub const MAX_ACK_ENTRIES: usize = 16;

/// The claims of the host-only `__swg_id` identity cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityCookie {
    /// The tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// The device id.
    #[serde(rename = "d")]
    pub device: String,
    /// The user id.
    #[serde(rename = "u")]
    pub user: String,
    /// The app class of the browser that holds the cookie.
    #[serde(rename = "c")]
    pub app_class: AppClass,
    /// The host the cookie was set on (lowercase, no trailing dot).
    #[serde(rename = "h")]
    pub host: String,
    /// Expiry time in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for IdentityCookie {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl IdentityCookie {
    /// Returns the identity this cookie carries, discovered by cookie.
    pub fn into_identity(self) -> Identity {
        Identity {
            tenant: self.tenant,
            device: self.device,
            user: self.user,
            app_bundle_id: None,
            app_class: self.app_class,
            discovery: Discovery::Cookie,
        }
    }
}

/// One acknowledged warn rule in the `__swg_ack` cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckEntry {
    /// The id of the rule whose warning the user accepted.
    #[serde(rename = "r")]
    pub rule_id: String,
    /// When the acknowledgement lapses, in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

/// The claims of the `__swg_ack` warn acknowledgement cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckCookie {
    /// The tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// The registrable domain the acknowledgements apply to.
    #[serde(rename = "dom")]
    pub domain: String,
    /// The acknowledged rules, oldest first.
    #[serde(rename = "rules")]
    pub entries: Vec<AckEntry>,
    /// Expiry of the whole cookie: that of its latest acknowledgement.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for AckCookie {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

impl AckCookie {
    /// Returns whether the user accepted the warning of `rule_id` and that
    /// acknowledgement is still valid at `now`.
    pub fn acknowledges(&self, rule_id: &str, now: u64) -> bool {
        self.entries
            .iter()
            .any(|entry| entry.rule_id == rule_id && now < entry.expires_at)
    }
}

/// The claims of the long-lived device cookie on the auth host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayCookie {
    /// The tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// The device id.
    #[serde(rename = "d")]
    pub device: String,
    /// The user id.
    #[serde(rename = "u")]
    pub user: String,
    /// The auth host the cookie was set on.
    #[serde(rename = "h")]
    pub host: String,
    /// Expiry time in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for GatewayCookie {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// Returns the registrable domain of `host` (`www.example.co.uk` gives
/// `example.co.uk`) from the public suffix list; an IP literal, a single label or
/// a public suffix itself is returned unchanged.
pub fn registrable_domain(host: &str) -> String {
    let host = normalize_host(host);
    if host.parse::<IpAddr>().is_ok() || host.trim_matches(['[', ']']).parse::<IpAddr>().is_ok() {
        return host;
    }
    match psl::domain_str(&host) {
        Some(domain) => domain.to_owned(),
        None => host,
    }
}

impl Signer {
    /// Signs an `__swg_id` cookie value for `identity` on `host`, valid for
    /// `identity.identity_cookie_ttl_secs` from `now`.
    pub fn issue_identity_cookie(&self, identity: &Identity, host: &str, now: u64) -> String {
        let claims = IdentityCookie {
            tenant: identity.tenant.clone(),
            device: identity.device.clone(),
            user: identity.user.clone(),
            app_class: identity.app_class,
            host: normalize_host(host),
            expires_at: now.saturating_add(self.config().identity_cookie_ttl_secs),
        };
        self.seal(Purpose::IdentityCookie, &claims)
    }

    /// Verifies an `__swg_id` cookie value presented on `host` at `now`.
    pub fn verify_identity_cookie(
        &self,
        value: &str,
        host: &str,
        now: u64,
    ) -> Result<IdentityCookie, Rejection> {
        let claims: IdentityCookie = self.open(Purpose::IdentityCookie, value, now)?;
        if claims.host != normalize_host(host) {
            return Err(self.reject(Purpose::IdentityCookie, Rejection::WrongAudience));
        }
        Ok(claims)
    }

    /// Returns a new `__swg_ack` cookie value that adds the acknowledgement of
    /// `rule_id` on `host`'s registrable domain to the `existing` cookie value.
    ///
    /// An existing value that does not verify for this tenant and domain is
    /// ignored; expired acknowledgements are dropped, and the oldest ones go when
    /// the cookie would exceed [`MAX_ACK_ENTRIES`] or [`MAX_SIGNED_VALUE_LEN`].
    pub fn acknowledge_warning(
        &self,
        existing: Option<&str>,
        tenant: &str,
        host: &str,
        rule_id: &str,
        now: u64,
    ) -> String {
        let mut entries = existing
            .and_then(|value| self.verify_ack_cookie(value, tenant, host, now).ok())
            .map(|cookie| cookie.entries)
            .unwrap_or_default();
        entries.retain(|entry| entry.rule_id != rule_id && now < entry.expires_at);
        entries.push(AckEntry {
            rule_id: rule_id.to_owned(),
            expires_at: now.saturating_add(self.config().ack_ttl_secs),
        });

        let mut cookie = AckCookie {
            tenant: tenant.to_owned(),
            domain: registrable_domain(host),
            entries,
            expires_at: 0,
        };
        loop {
            if cookie.entries.len() > MAX_ACK_ENTRIES {
                cookie.entries.remove(0);
                continue;
            }
            cookie.expires_at = cookie
                .entries
                .iter()
                .map(|entry| entry.expires_at)
                .max()
                .unwrap_or(now);
            let value = self.seal(Purpose::AckCookie, &cookie);
            if value.len() <= MAX_SIGNED_VALUE_LEN || cookie.entries.len() <= 1 {
                return value;
            }
            cookie.entries.remove(0);
        }
    }

    /// Verifies an `__swg_ack` cookie value presented on `host` for `tenant` at
    /// `now`; the cookie applies to every host of the same registrable domain.
    pub fn verify_ack_cookie(
        &self,
        value: &str,
        tenant: &str,
        host: &str,
        now: u64,
    ) -> Result<AckCookie, Rejection> {
        let claims: AckCookie = self.open(Purpose::AckCookie, value, now)?;
        if claims.tenant != tenant {
            return Err(self.reject(Purpose::AckCookie, Rejection::WrongTenant));
        }
        if claims.domain != registrable_domain(host) {
            return Err(self.reject(Purpose::AckCookie, Rejection::WrongAudience));
        }
        Ok(claims)
    }

    /// Signs the auth host's gateway cookie for `identity` on `auth_host`, valid
    /// for `identity.gateway_cookie_ttl_days` from `now`.
    pub fn issue_gateway_cookie(&self, identity: &Identity, auth_host: &str, now: u64) -> String {
        let claims = GatewayCookie {
            tenant: identity.tenant.clone(),
            device: identity.device.clone(),
            user: identity.user.clone(),
            host: normalize_host(auth_host),
            expires_at: now
                .saturating_add(self.config().gateway_cookie_ttl_days.saturating_mul(86_400)),
        };
        self.seal(Purpose::GatewayCookie, &claims)
    }

    /// Verifies a gateway cookie value presented on `auth_host` at `now`.
    pub fn verify_gateway_cookie(
        &self,
        value: &str,
        auth_host: &str,
        now: u64,
    ) -> Result<GatewayCookie, Rejection> {
        let claims: GatewayCookie = self.open(Purpose::GatewayCookie, value, now)?;
        if claims.host != normalize_host(auth_host) {
            return Err(self.reject(Purpose::GatewayCookie, Rejection::WrongAudience));
        }
        Ok(claims)
    }
}
