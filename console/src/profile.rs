//! Downloads for devices: the root CA certificate and the MDM configuration profile.

use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use plist::{Dictionary, Value};
use serde::Deserialize;
use swg_identity::AuthenticationKey;

use crate::auth::Admin;
use crate::error::quoted_after;
use crate::query::ApiQuery;
use crate::{ApiError, ConsoleState};

const MOBILECONFIG_TYPE: &str = "application/x-apple-aspen-config";

/// Query of `GET /api/certificate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertificateQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/certificate?format=pem|der|mobileconfig`: the root CA certificate.
pub(crate) async fn certificate(
    State(state): State<ConsoleState>,
    _admin: Admin,
    ApiQuery(query): ApiQuery<CertificateQuery>,
) -> Result<Response, ApiError> {
    let ca = state.root_certificate.as_ref();
    let (content_type, file_name, body) = match query.format.as_deref().unwrap_or("pem") {
        "pem" => (
            "application/x-pem-file",
            "swg-root-ca.pem",
            swg_ca::export::pem(ca).into_bytes(),
        ),
        "der" => (
            "application/pkix-cert",
            "swg-root-ca.cer",
            swg_ca::export::der(ca),
        ),
        "mobileconfig" => (
            MOBILECONFIG_TYPE,
            "swg-root-ca.mobileconfig",
            swg_ca::export::mobileconfig(ca),
        ),
        other => {
            let value = quoted_after(" ", other);
            return Err(ApiError::BadRequest(format!(
                "unknown format{value}; use pem, der or mobileconfig"
            )));
        }
    };
    Ok(download(content_type, file_name, body))
}

fn download(content_type: &'static str, file_name: &str, body: Vec<u8>) -> Response {
    (
        [
            (CONTENT_TYPE, content_type.to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file_name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// An MDM whose variables fill the user and device ids of the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mdm {
    /// Any MDM: `{{USER_ID}}` and `{{DEVICE_ID}}`, for the administrator to
    /// replace with their MDM's own variables.
    Generic,
    /// Ivanti (MobileIron).
    MobileIron,
    /// IBM MaaS360.
    Maas360,
    /// SimpleMDM.
    SimpleMdm,
    /// Cisco Meraki Systems Manager.
    Meraki,
    /// Microsoft Intune.
    Intune,
    /// Mosyle.
    Mosyle,
}

impl Mdm {
    /// Every MDM, in the order the API documents them.
    pub const ALL: [Mdm; 7] = [
        Mdm::Generic,
        Mdm::MobileIron,
        Mdm::Maas360,
        Mdm::SimpleMdm,
        Mdm::Meraki,
        Mdm::Intune,
        Mdm::Mosyle,
    ];

    /// Returns the MDM for the `mdm` query value.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mdm| mdm.name() == name)
    }

    /// Returns the `mdm` query value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::MobileIron => "mobileiron",
            Self::Maas360 => "maas360",
            Self::SimpleMdm => "simplemdm",
            Self::Meraki => "meraki",
            Self::Intune => "intune",
            Self::Mosyle => "mosyle",
        }
    }

    /// Returns the MDM's variables for the user's email and the device's serial
    /// number, which the MDM substitutes when it pushes the profile.
    pub fn placeholders(self) -> (&'static str, &'static str) {
        match self {
            Self::Generic => ("{{USER_ID}}", "{{DEVICE_ID}}"),
            Self::MobileIron => ("${userEmailAddress}", "${deviceSN}"),
            Self::Maas360 => ("%email%", "%deviceSerialNumber%"),
            Self::SimpleMdm => ("{{email_address}}", "{{serial_number}}"),
            Self::Meraki => ("$OWNEREMAIL", "$DEVICESERIAL"),
            Self::Intune => ("{{mail}}", "{{serialnumber}}"),
            Self::Mosyle => ("%Email%", "%SerialNumber%"),
        }
    }
}

/// Query of `GET /api/mdm-profile`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfileQuery {
    #[serde(default)]
    mdm: Option<String>,
    /// The id of the authentication key to embed; the newest key by default.
    #[serde(default)]
    key: Option<String>,
}

/// `GET /api/mdm-profile?mdm=...`: the agent's configuration profile.
pub(crate) async fn mdm_profile(
    State(state): State<ConsoleState>,
    admin: Admin,
    ApiQuery(query): ApiQuery<ProfileQuery>,
) -> Result<Response, ApiError> {
    let mdm_name = query.mdm.as_deref().unwrap_or("generic");
    let mdm = Mdm::parse(mdm_name).ok_or_else(|| {
        let names: Vec<&str> = Mdm::ALL.iter().map(|mdm| mdm.name()).collect();
        let value = quoted_after(" ", mdm_name);
        ApiError::BadRequest(format!(
            "unknown mdm{value}; use one of {}",
            names.join(", ")
        ))
    })?;

    let keys = state
        .secrets
        .list_authentication_keys(admin.tenant())
        .await?;
    let key = match &query.key {
        Some(id) => keys
            .iter()
            .find(|key| &key.id == id)
            .ok_or_else(|| ApiError::no_such_id("authentication key", id))?,
        None => keys.last().ok_or_else(|| {
            ApiError::Conflict(
                "the tenant has no authentication key; create one with POST /api/keys".to_owned(),
            )
        })?,
    };

    let policy = state.policy.current();
    let (browsers, trusted, bypassed) = match policy.tenant(admin.tenant()) {
        Some(tenant) => (
            tenant.additional_browsers().to_vec(),
            tenant.trusted_apps().to_vec(),
            tenant.bypassed_apps().to_vec(),
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let lists = AppLists {
        browsers,
        trusted,
        bypassed,
    };
    let body = render_profile(&state, admin.tenant(), key, mdm, &lists)?;
    let file_name = format!("swg-agent-{}.mobileconfig", mdm.name());
    Ok(download(MOBILECONFIG_TYPE, &file_name, body))
}

struct AppLists {
    browsers: Vec<String>,
    trusted: Vec<String>,
    bypassed: Vec<String>,
}

fn strings(values: &[String]) -> Value {
    Value::Array(values.iter().cloned().map(Value::String).collect())
}

/// Builds the XML plist of a configuration profile with one
/// `com.apple.dnsProxy.managed` payload.
fn render_profile(
    state: &ConsoleState,
    tenant: &str,
    key: &AuthenticationKey,
    mdm: Mdm,
    lists: &AppLists,
) -> Result<Vec<u8>, ApiError> {
    let config = &state.config;
    let (user_placeholder, device_placeholder) = mdm.placeholders();

    let mut provider = Dictionary::new();
    provider.insert("authenticationKey".into(), Value::String(key.key.clone()));
    provider.insert("userId".into(), Value::String(user_placeholder.into()));
    provider.insert("deviceId".into(), Value::String(device_placeholder.into()));
    provider.insert("bypassedApplications".into(), strings(&lists.bypassed));
    provider.insert("trustedApplications".into(), strings(&lists.trusted));
    provider.insert("additionalBrowsers".into(), strings(&lists.browsers));
    provider.insert("dohUrl".into(), Value::String(config.doh_url.clone()));
    provider.insert("proxy".into(), Value::String(config.proxy.clone()));
    provider.insert(
        "consoleUrl".into(),
        Value::String(config.console_url.clone()),
    );

    let identifier = format!("swg.agent.{tenant}");
    let mut payload = Dictionary::new();
    payload.insert(
        "PayloadType".into(),
        Value::String("com.apple.dnsProxy.managed".into()),
    );
    payload.insert("PayloadVersion".into(), Value::Integer(1.into()));
    payload.insert(
        "PayloadIdentifier".into(),
        Value::String(format!("{identifier}.dnsproxy")),
    );
    payload.insert(
        "PayloadUUID".into(),
        Value::String(uuid::Uuid::new_v4().to_string().to_uppercase()),
    );
    payload.insert(
        "PayloadDisplayName".into(),
        Value::String("swg DNS proxy".into()),
    );
    payload.insert(
        "AppBundleIdentifier".into(),
        Value::String(config.agent_app_bundle_id.clone()),
    );
    payload.insert(
        "ProviderBundleIdentifier".into(),
        Value::String(config.agent_provider_bundle_id.clone()),
    );
    payload.insert("ProviderConfiguration".into(), Value::Dictionary(provider));

    let mut profile = Dictionary::new();
    profile.insert("PayloadType".into(), Value::String("Configuration".into()));
    profile.insert("PayloadVersion".into(), Value::Integer(1.into()));
    profile.insert("PayloadIdentifier".into(), Value::String(identifier));
    profile.insert(
        "PayloadUUID".into(),
        Value::String(uuid::Uuid::new_v4().to_string().to_uppercase()),
    );
    profile.insert(
        "PayloadDisplayName".into(),
        Value::String("swg agent".into()),
    );
    profile.insert("PayloadOrganization".into(), Value::String(tenant.into()));
    profile.insert(
        "PayloadContent".into(),
        Value::Array(vec![Value::Dictionary(payload)]),
    );

    let mut body = Vec::new();
    Value::Dictionary(profile)
        .to_writer_xml(&mut body)
        .map_err(|error| ApiError::Internal(format!("cannot write the profile plist: {error}")))?;
    Ok(body)
}
