//! Who is asking: the identity the resolver and the proxy attach to a request.

use serde::{Deserialize, Serialize};

/// How an app is treated, from its bundle id and the tenant's lists.
///
/// The numbers are those of the DNS context option's app class field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AppClass {
    /// No bundle id and no class hint (`0`).
    #[default]
    Unknown,
    /// A web browser (`1`): every allowed domain is sent to the proxy.
    Browser,
    /// Any other app (`2`): sent to the proxy only for suspicious domains.
    App,
    /// An app the tenant trusts (`3`): never sent to the proxy.
    TrustedApp,
}

impl AppClass {
    /// Returns the class for the DNS context option's numeric code, if known.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            0 => Some(Self::Unknown),
            1 => Some(Self::Browser),
            2 => Some(Self::App),
            3 => Some(Self::TrustedApp),
            _ => None,
        }
    }

    /// Returns the DNS context option's numeric code of this class.
    pub fn code(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Browser => 1,
            Self::App => 2,
            Self::TrustedApp => 3,
        }
    }
}

/// How the identity of a request was found, as recorded in activity events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// A device token (DoH, explicit proxy).
    Token,
    /// The `__swg_id` identity cookie.
    Cookie,
    /// A correlation hint recorded by the resolver.
    Correlation,
    /// A one-time ticket from the auth host.
    Ticket,
    /// The source address is inside one of the tenant's locations.
    Location,
    /// Nothing identified the request.
    None,
}

/// A tenant's device and user, and the app that asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The tenant id.
    pub tenant: String,
    /// The device id from the agent's enrolment.
    pub device: String,
    /// The user id from the agent's enrolment.
    pub user: String,
    /// The bundle id of the app that asked, when the agent sent one.
    pub app_bundle_id: Option<String>,
    /// The app class the resolver computed.
    pub app_class: AppClass,
    /// How this identity was found.
    pub discovery: Discovery,
}
