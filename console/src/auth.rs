//! Bearer authentication of agents (device tokens) and administrators (admin
//! tokens).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use swg_identity::{unix_now, AdminTokenRecord, DeviceClaims, Role};

use crate::{ApiError, ConsoleState};

/// Longest `Authorization` header accepted; signed values are at most 4 KiB.
const MAX_AUTHORIZATION_LEN: usize = 4200;

/// Returns the bearer credential of a request with exactly one `Authorization:
/// Bearer` header; a missing, doubled or malformed header is unauthorized.
fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let mut headers = parts.headers.get_all(AUTHORIZATION).iter();
    let (Some(header), None) = (headers.next(), headers.next()) else {
        return Err(ApiError::Unauthorized);
    };
    if header.len() > MAX_AUTHORIZATION_LEN {
        return Err(ApiError::Unauthorized);
    }
    let text = header.to_str().map_err(|_| ApiError::Unauthorized)?;
    let (scheme, credential) = text.split_once(' ').ok_or(ApiError::Unauthorized)?;
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Err(ApiError::Unauthorized);
    }
    Ok(credential)
}

/// An agent authenticated by a valid device token.
#[derive(Debug, Clone)]
pub(crate) struct Agent(pub(crate) DeviceClaims);

impl FromRequestParts<ConsoleState> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match state
            .signer
            .verify_device_token(token, unix_now(), &state.live_keys)
        {
            Ok(claims) => Ok(Self(claims)),
            Err(rejection) => {
                tracing::debug!(reason = rejection.reason(), "device token rejected");
                Err(ApiError::Unauthorized)
            }
        }
    }
}

/// An administrator authenticated by an admin token of either role.
#[derive(Debug, Clone)]
pub(crate) struct Admin(pub(crate) AdminTokenRecord);

impl Admin {
    /// Returns the tenant the token belongs to.
    pub(crate) fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// Fails with 403 unless the token has the admin role.
    pub(crate) fn require_write(&self) -> Result<(), ApiError> {
        match self.0.role {
            Role::Admin => Ok(()),
            Role::ReadOnly => Err(ApiError::Forbidden(
                "this admin token is read-only and cannot change anything",
            )),
        }
    }
}

impl FromRequestParts<ConsoleState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ConsoleState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        match state.secrets.find_admin_token(token).await? {
            Some(record) => Ok(Self(record)),
            None => {
                tracing::debug!("unknown admin token");
                Err(ApiError::Unauthorized)
            }
        }
    }
}
