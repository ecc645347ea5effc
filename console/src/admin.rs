//! Admin API for tenants' secrets: authentication keys and the disabler password.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use swg_identity::{unix_now, AuthenticationKey, DisablerPassword, DisablerPasswords};

use crate::auth::Admin;
use crate::{ApiError, ConsoleState};

/// A tenant's authentication keys.
#[derive(Debug, Serialize)]
pub(crate) struct KeyList {
    keys: Vec<AuthenticationKey>,
}

/// `GET /api/keys`: lists the tenant's authentication keys.
pub(crate) async fn list_keys(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<Json<KeyList>, ApiError> {
    let keys = state
        .secrets
        .list_authentication_keys(admin.tenant())
        .await?;
    Ok(Json(KeyList { keys }))
}

/// `POST /api/keys`: creates an authentication key.
pub(crate) async fn create_key(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<(StatusCode, Json<AuthenticationKey>), ApiError> {
    admin.require_write()?;
    let key = AuthenticationKey::generate(admin.tenant(), unix_now());
    state.secrets.insert_authentication_key(&key).await?;
    state.live_keys.refresh(state.secrets.as_ref()).await?;
    tracing::info!(tenant = %key.tenant, key_id = %key.id, admin = %admin.0.id, "authentication key created");
    Ok((StatusCode::CREATED, Json(key)))
}

/// `DELETE /api/keys/{id}`: deletes an authentication key, which stops new
/// enrolments with it and revokes the device tokens issued under it.
pub(crate) async fn delete_key(
    State(state): State<ConsoleState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin.require_write()?;
    if !state
        .secrets
        .delete_authentication_key(admin.tenant(), &id)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "no authentication key with id {id:?}"
        )));
    }
    state.live_keys.refresh(state.secrets.as_ref()).await?;
    tracing::info!(tenant = %admin.tenant(), key_id = %id, admin = %admin.0.id, "authentication key deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/disabler-password`: shows the current and previous passwords.
pub(crate) async fn show_disabler(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<Json<DisablerPasswords>, ApiError> {
    state
        .secrets
        .disabler_passwords(admin.tenant())
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound("no disabler password yet; generate one with POST".to_owned())
        })
}

/// `POST /api/disabler-password`: generates a new password; the current one
/// becomes the previous one, and both stay valid.
pub(crate) async fn generate_disabler(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<(StatusCode, Json<DisablerPasswords>), ApiError> {
    admin.require_write()?;
    let passwords = state
        .secrets
        .rotate_disabler_password(admin.tenant(), &DisablerPassword::generate(unix_now()))
        .await?;
    tracing::info!(tenant = %admin.tenant(), admin = %admin.0.id, "disabler password generated");
    Ok((StatusCode::CREATED, Json(passwords)))
}
