//! The agent API: enrolment, renewal, settings and the device's activity.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use swg_identity::{unix_now, IssuedDeviceToken, SaltedHash};

use crate::auth::Agent;
use crate::body::ApiJson;
use crate::{ApiError, ConsoleState};

/// Maximum length of a device or user id at enrolment, in bytes.
const MAX_ID_LEN: usize = 256;
/// Most activity events returned to a device.
const DEVICE_ACTIVITY_LIMIT: usize = 500;

/// The enrolment request, from the agent's MDM configuration.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct EnrollRequest {
    authentication_key: String,
    device_id: String,
    user_id: String,
}

/// The endpoints for the agent's DNS, proxied traffic and console calls.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Endpoints {
    doh_url: String,
    proxy: String,
    console_url: String,
}

/// A device token and where to use it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenResponse {
    token: String,
    token_type: &'static str,
    /// Expiry in seconds since the Unix epoch.
    expires_at: u64,
    endpoints: Endpoints,
}

fn token_response(state: &ConsoleState, issued: IssuedDeviceToken) -> TokenResponse {
    TokenResponse {
        token: issued.token,
        token_type: "Bearer",
        expires_at: issued.claims.expires_at,
        endpoints: Endpoints {
            doh_url: state.config.doh_url.clone(),
            proxy: state.config.proxy.clone(),
            console_url: state.config.console_url.clone(),
        },
    }
}

/// Checks a device or user id: 1 to 256 bytes of UTF-8, not only white space, no
/// control characters.
fn check_id(name: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.len() > MAX_ID_LEN || value.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(format!(
            "{name} must be 1 to {MAX_ID_LEN} bytes of UTF-8, not only white space, without \
             control characters"
        )));
    }
    Ok(())
}

/// `POST /api/agent/enroll`: trades an authentication key for a device token.
pub(crate) async fn enroll(
    State(state): State<ConsoleState>,
    ApiJson(request): ApiJson<EnrollRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    check_id("deviceId", &request.device_id)?;
    check_id("userId", &request.user_id)?;
    if request.authentication_key.len() > MAX_ID_LEN {
        return Err(ApiError::Unauthorized);
    }

    let Some(key) = state
        .secrets
        .find_authentication_key(&request.authentication_key)
        .await?
    else {
        tracing::info!(device = %request.device_id, "enrolment with an unknown authentication key");
        return Err(ApiError::Unauthorized);
    };

    require_tenant_in_policy(&state, &key.tenant, &request.device_id)?;
    // A key created through another replica or `swg secrets` is not in the
    // snapshot yet, and the token issued now would be refused as revoked.
    if !state.live_keys.is_live(&key.tenant, &key.id) {
        state.live_keys.refresh(state.secrets.as_ref()).await?;
    }
    let issued = state.signer.issue_device_token(
        &key.tenant,
        &request.device_id,
        &request.user_id,
        &key.id,
        unix_now(),
    );
    tracing::info!(tenant = %key.tenant, device = %request.device_id, key_id = %key.id, "device enrolled");
    Ok(Json(token_response(&state, issued)))
}

/// Fails with 409 when `tenant` is not in the policy in force: the resolver and the
/// proxy refuse tokens of such a tenant, so issuing one would only move the failure
/// to the device's first query.
fn require_tenant_in_policy(
    state: &ConsoleState,
    tenant: &str,
    device: &str,
) -> Result<(), ApiError> {
    if state.policy.current().tenant(tenant).is_some() {
        return Ok(());
    }
    tracing::warn!(%tenant, %device, "device token rejected: the tenant is not in the policy in force");
    Err(ApiError::Conflict(
        "this tenant is not in the policy that the gateway has loaded, so its devices \
         cannot be served; the operator must add the tenant's policy file (or fix it) first"
            .to_owned(),
    ))
}

/// `POST /api/agent/renew`: trades a valid device token for a fresh one.
pub(crate) async fn renew(
    State(state): State<ConsoleState>,
    Agent(claims): Agent,
) -> Result<Json<TokenResponse>, ApiError> {
    require_tenant_in_policy(&state, &claims.tenant, &claims.device)?;
    let issued = state.signer.issue_device_token(
        &claims.tenant,
        &claims.device,
        &claims.user,
        &claims.key_id,
        unix_now(),
    );
    tracing::debug!(tenant = %claims.tenant, device = %claims.device, "device token renewed");
    Ok(Json(token_response(&state, issued)))
}

/// The salted hashes of the disabler passwords.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DisablerHashes {
    current: Option<SaltedHash>,
    previous: Option<SaltedHash>,
}

/// The tenant settings an agent applies.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AgentSettings {
    additional_browsers: Vec<String>,
    trusted_applications: Vec<String>,
    bypassed_applications: Vec<String>,
    disabler_password: DisablerHashes,
}

/// `GET /api/agent/settings`: app lists and disabler password hashes.
pub(crate) async fn settings(
    State(state): State<ConsoleState>,
    Agent(claims): Agent,
) -> Result<Json<AgentSettings>, ApiError> {
    let policy = state.policy.current();
    let (additional_browsers, trusted_applications, bypassed_applications) = match policy
        .tenant(&claims.tenant)
    {
        Some(tenant) => (
            tenant.additional_browsers().to_vec(),
            tenant.trusted_apps().to_vec(),
            tenant.bypassed_apps().to_vec(),
        ),
        None => {
            tracing::warn!(tenant = %claims.tenant, "device of a tenant that no policy defines");
            (Vec::new(), Vec::new(), Vec::new())
        }
    };

    let passwords = state.secrets.disabler_passwords(&claims.tenant).await?;
    let disabler_password = DisablerHashes {
        current: passwords.as_ref().map(|p| p.current.salted_hash()),
        previous: passwords
            .as_ref()
            .and_then(|p| p.previous.as_ref())
            .map(|p| p.salted_hash()),
    };

    Ok(Json(AgentSettings {
        additional_browsers,
        trusted_applications,
        bypassed_applications,
        disabler_password,
    }))
}

/// The device's recent block and warn events.
#[derive(Debug, Serialize)]
pub(crate) struct DeviceActivity {
    events: Vec<swg_activity::Event>,
}

/// `GET /api/agent/activity`: the block and warn events of the last 30 days of the
/// token's device and user, newest first, at most [`DEVICE_ACTIVITY_LIMIT`].
/// [`ActivityStore::device_recent`](swg_activity::ActivityStore::device_recent)
/// applies the window, which reaches from 30 days before the request up to the
/// request, both ends inclusive.
///
/// The device and the user must both match. An authentication key is shared by the
/// whole tenant, so a device id alone would let anyone holding the key read another
/// user's history by enrolling under that user's device id.
pub(crate) async fn activity(
    State(state): State<ConsoleState>,
    Agent(claims): Agent,
) -> Result<Json<DeviceActivity>, ApiError> {
    let store = state.activity.clone();
    let now = time::OffsetDateTime::now_utc();

    let events = tokio::task::spawn_blocking(move || {
        store.device_recent(
            &claims.tenant,
            &claims.device,
            &claims.user,
            now,
            DEVICE_ACTIVITY_LIMIT,
        )
    })
    .await??;
    Ok(Json(DeviceActivity { events }))
}
