//! Device tokens: what an agent presents on every DoH query and agent API call.

use serde::{Deserialize, Serialize};

use crate::signed::Expiring;
use crate::{LiveKeys, Purpose, Rejection, Signer};

/// The claims of a device token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceClaims {
    /// The tenant id.
    #[serde(rename = "t")]
    pub tenant: String,
    /// The device id the agent enrolled with.
    #[serde(rename = "d")]
    pub device: String,
    /// The user id the agent enrolled with.
    #[serde(rename = "u")]
    pub user: String,
    /// The id of the authentication key the agent enrolled with; deleting that key
    /// revokes the token.
    #[serde(rename = "k")]
    pub key_id: String,
    /// Issue time in seconds since the Unix epoch.
    #[serde(rename = "iat")]
    pub issued_at: u64,
    /// Expiry time in seconds since the Unix epoch.
    #[serde(rename = "exp")]
    pub expires_at: u64,
}

impl Expiring for DeviceClaims {
    fn expires_at(&self) -> u64 {
        self.expires_at
    }
}

/// A newly signed device token and its claims.
#[derive(Clone)]
pub struct IssuedDeviceToken {
    /// The token to hand to the agent.
    pub token: String,
    /// What the token says.
    pub claims: DeviceClaims,
}

impl std::fmt::Debug for IssuedDeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedDeviceToken")
            .field("token", &"<redacted>")
            .field("claims", &self.claims)
            .finish()
    }
}

impl Signer {
    /// Signs a device token for `device` and `user` of `tenant`, enrolled with the
    /// authentication key `key_id`, valid for `identity.token_ttl_hours` from `now`.
    pub fn issue_device_token(
        &self,
        tenant: &str,
        device: &str,
        user: &str,
        key_id: &str,
        now: u64,
    ) -> IssuedDeviceToken {
        let claims = DeviceClaims {
            tenant: tenant.to_owned(),
            device: device.to_owned(),
            user: user.to_owned(),
            key_id: key_id.to_owned(),
            issued_at: now,
            expires_at: now.saturating_add(self.config().token_ttl_hours.saturating_mul(3600)),
        };
        IssuedDeviceToken {
            token: self.seal(Purpose::DeviceToken, &claims),
            claims,
        }
    }

    /// Verifies a device token at `now`: signature, expiry, and that its
    /// authentication key is still in `live_keys`.
    pub fn verify_device_token(
        &self,
        token: &str,
        now: u64,
        live_keys: &LiveKeys,
    ) -> Result<DeviceClaims, Rejection> {
        let claims: DeviceClaims = self.open(Purpose::DeviceToken, token, now)?;
        if !live_keys.is_live(&claims.tenant, &claims.key_id) {
            return Err(self.reject(Purpose::DeviceToken, Rejection::RevokedKey));
        }
        Ok(claims)
    }

    /// Verifies a device token like [`Signer::verify_device_token`] and also
    /// requires that it belongs to `tenant`.
    pub fn verify_device_token_for_tenant(
        &self,
        token: &str,
        tenant: &str,
        now: u64,
        live_keys: &LiveKeys,
    ) -> Result<DeviceClaims, Rejection> {
        let claims = self.verify_device_token(token, now, live_keys)?;
        if claims.tenant != tenant {
            return Err(self.reject(Purpose::DeviceToken, Rejection::WrongTenant));
        }
        Ok(claims)
    }
}
