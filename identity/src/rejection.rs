//! Why a signed value was rejected.

/// The reason a device token, cookie, ticket or form token was not accepted.
///
/// Callers that face clients map every variant to one generic answer (401 for the
/// agent API, a fresh identification for the proxy), so that a client learns
/// nothing about which check failed. The variant is for metrics and debug logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The value is longer than [`crate::MAX_SIGNED_VALUE_LEN`]; it was not decoded.
    #[error("signed value is too long")]
    Oversized,
    /// The value is not of the form `v1.<purpose>.<key id>.<payload>.<mac>` or a
    /// part is not valid base64url or JSON.
    #[error("signed value is malformed")]
    Malformed,
    /// The value starts with a version other than `v1`.
    #[error("signed value has an unsupported version")]
    UnsupportedVersion,
    /// The value was made for another purpose (a cookie presented as a ticket).
    #[error("signed value was made for another purpose")]
    WrongPurpose,
    /// No verification key has the key id the value names.
    #[error("signed value names an unknown signing key")]
    UnknownSigningKey,
    /// The MAC does not match: the value was altered, truncated or signed with
    /// another key under the same key id.
    #[error("signed value has an invalid signature")]
    BadSignature,
    /// The value's expiry time has passed.
    #[error("signed value has expired")]
    Expired,
    /// The value belongs to another tenant than the one expected.
    #[error("signed value belongs to another tenant")]
    WrongTenant,
    /// The value was issued for another host or registrable domain.
    #[error("signed value was issued for another host")]
    WrongAudience,
    /// The value was issued for another device.
    #[error("signed value was issued for another device")]
    WrongDevice,
    /// The authentication key the token was issued under has been deleted.
    #[error("signed value was issued under a deleted authentication key")]
    RevokedKey,
    /// A single-use value (ticket, form token, return URL) was presented again.
    #[error("single-use value was already used")]
    Replayed,
    /// The store of spent tickets could not be reached, so single use cannot be
    /// enforced and the value is rejected.
    #[error("store of spent tickets is unavailable")]
    SpentStoreUnavailable,
}

impl Rejection {
    /// Returns the `reason` label value used in the rejection metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Oversized => "oversized",
            Self::Malformed => "malformed",
            Self::UnsupportedVersion => "unsupported_version",
            Self::WrongPurpose => "wrong_purpose",
            Self::UnknownSigningKey => "unknown_signing_key",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::WrongTenant => "wrong_tenant",
            Self::WrongAudience => "wrong_audience",
            Self::WrongDevice => "wrong_device",
            Self::RevokedKey => "revoked_key",
            Self::Replayed => "replayed",
            Self::SpentStoreUnavailable => "spent_store_unavailable",
        }
    }
}
