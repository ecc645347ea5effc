//! Admin API for tenants' secrets: authentication keys, the disabler password and
//! admin tokens.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use swg_identity::{
    unix_now, AdminTokenRecord, AuthenticationKey, DisablerPassword, DisablerPasswords,
    NewAdminToken, Role, StoreError,
};

use crate::auth::Admin;
use crate::body::{ApiJson, NoBody};
use crate::error::quoted_after;
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
    body: NoBody,
) -> Result<(StatusCode, Json<AuthenticationKey>), ApiError> {
    admin.require_write()?;
    body.check()?;
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
        return Err(ApiError::no_such_id("authentication key", &id));
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
    body: NoBody,
) -> Result<(StatusCode, Json<DisablerPasswords>), ApiError> {
    admin.require_write()?;
    body.check()?;
    let passwords = state
        .secrets
        .rotate_disabler_password(admin.tenant(), &DisablerPassword::generate(unix_now()))
        .await?;
    tracing::info!(tenant = %admin.tenant(), admin = %admin.0.id, "disabler password generated");
    Ok((StatusCode::CREATED, Json(passwords)))
}

/// A tenant's admin tokens (their records; tokens themselves are never stored).
#[derive(Debug, Serialize)]
pub(crate) struct TokenList {
    tokens: Vec<AdminTokenRecord>,
}

/// `GET /api/admin-tokens`: lists the tenant's admin tokens.
pub(crate) async fn list_admin_tokens(
    State(state): State<ConsoleState>,
    admin: Admin,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.secrets.list_admin_tokens(admin.tenant()).await?;
    Ok(Json(TokenList { tokens }))
}

/// The request to create an admin token.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTokenRequest {
    #[serde(deserialize_with = "role_name")]
    role: Role,
}

/// Reads a role from its API name, a JSON string.
///
/// `Role`'s own `Deserialize` would also accept `{"admin": null}`, serde's other
/// form of a unit variant, and reject a number with a syntax error that does not
/// name the field.
fn role_name<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Role, D::Error> {
    let name = String::deserialize(deserializer)?;
    let roles = [Role::Admin, Role::ReadOnly];
    if let Some(role) = roles.into_iter().find(|role| role.as_str() == name) {
        return Ok(role);
    }
    let value = quoted_after(" ", &name);
    Err(D::Error::custom(format!(
        "unknown role{value}, expected `admin` or `read_only`"
    )))
}

/// A new admin token, shown once.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreatedToken {
    token: String,
    #[serde(flatten)]
    record: AdminTokenRecord,
}

/// `POST /api/admin-tokens`: creates an admin token; the response is the only
/// place the token appears, because only its SHA-256 is stored.
pub(crate) async fn create_admin_token(
    State(state): State<ConsoleState>,
    admin: Admin,
    ApiJson(request): ApiJson<NewTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    admin.require_write()?;
    let new = NewAdminToken::generate(admin.tenant(), request.role, unix_now());
    state.secrets.insert_admin_token(&new.record).await?;
    tracing::info!(
        tenant = %admin.tenant(),
        token_id = %new.record.id,
        role = new.record.role.as_str(),
        admin = %admin.0.id,
        "admin token created"
    );
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: new.token,
            record: new.record,
        }),
    ))
}

/// `DELETE /api/admin-tokens/{id}`: deletes an admin token, unless it is the
/// tenant's last token with the admin role, which would lock the tenant out.
///
/// The store checks and deletes in one atomic step, so two tokens that delete
/// each other at the same moment cannot both succeed.
pub(crate) async fn delete_admin_token(
    State(state): State<ConsoleState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin.require_write()?;
    match state.secrets.delete_admin_token(admin.tenant(), &id).await {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::no_such_id("admin token", &id)),
        Err(error @ StoreError::LastAdminToken) => {
            return Err(ApiError::Conflict(error.to_string()))
        }
        Err(error) => return Err(error.into()),
    }
    tracing::info!(tenant = %admin.tenant(), token_id = %id, admin = %admin.0.id, "admin token deleted");
    Ok(StatusCode::NO_CONTENT)
}
