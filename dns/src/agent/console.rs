//! The agent API of the swg console: enrolment, token renewal, settings, activity.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use serde::{Deserialize, Serialize};

use super::https::HttpsClient;
use super::AgentError;

/// The device token and endpoints the console returns at enrolment and renewal.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrolment {
    /// The device token.
    pub token: String,
    /// Expiry in seconds since the Unix epoch.
    pub expires_at: u64,
    /// The endpoints to use.
    pub endpoints: Endpoints,
}

impl std::fmt::Display for Enrolment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "token expires at {}, DoH at {}",
            rfc3339(self.expires_at),
            self.endpoints.doh_url
        )
    }
}

/// Formats seconds since the Unix epoch as an RFC 3339 UTC time, for logs and
/// messages. A value out of range is shown as the plain number.
pub(crate) fn rfc3339(unix_seconds: u64) -> String {
    i64::try_from(unix_seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix_seconds.to_string())
}

/// The swg endpoints an enrolled agent uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    /// The DoH URL.
    pub doh_url: String,
}

/// The tenant settings an agent applies.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Bundle ids whose queries go to the system resolver, never to swg.
    #[serde(default)]
    pub bypassed_applications: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnrollRequest<'a> {
    authentication_key: &'a str,
    device_id: &'a str,
    user_id: &'a str,
}

/// A client of the console's agent API.
pub struct ConsoleClient {
    https: HttpsClient,
}

impl ConsoleClient {
    /// Creates a client over an HTTPS connection to the console.
    pub fn new(https: HttpsClient) -> Self {
        ConsoleClient { https }
    }

    /// Enrols with `POST /api/agent/enroll`.
    pub async fn enroll(
        &self,
        authentication_key: &str,
        user: &str,
        device: &str,
    ) -> Result<Enrolment, AgentError> {
        let body = serde_json::to_vec(&EnrollRequest {
            authentication_key,
            device_id: device,
            user_id: user,
        })
        .map_err(|error| AgentError::Console(error.to_string()))?;
        let body = Bytes::from(body);
        let response = self
            .https
            .send(|| json_request(Method::POST, "/api/agent/enroll", None, body.clone()))
            .await?;
        parse(response)
    }

    /// Renews the token with `POST /api/agent/renew`.
    pub async fn renew(&self, token: &str) -> Result<Enrolment, AgentError> {
        let response = self
            .https
            .send(|| json_request(Method::POST, "/api/agent/renew", Some(token), Bytes::new()))
            .await?;
        parse(response)
    }

    /// Reads the tenant settings with `GET /api/agent/settings`.
    pub async fn settings(&self, token: &str) -> Result<Settings, AgentError> {
        let response = self
            .https
            .send(|| {
                json_request(
                    Method::GET,
                    "/api/agent/settings",
                    Some(token),
                    Bytes::new(),
                )
            })
            .await?;
        parse(response)
    }

    /// Reads the device's block and warn events with `GET /api/agent/activity`, as JSON.
    pub async fn activity(&self, token: &str) -> Result<serde_json::Value, AgentError> {
        let response = self
            .https
            .send(|| {
                json_request(
                    Method::GET,
                    "/api/agent/activity",
                    Some(token),
                    Bytes::new(),
                )
            })
            .await?;
        parse(response)
    }
}

fn json_request(
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, AgentError> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::ACCEPT, "application/json");
    if !body.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    if let Some(token) = token {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    // A token with characters a header cannot carry fails here, not with a panic.
    builder
        .body(Full::new(body))
        .map_err(|error| AgentError::Console(format!("cannot build request: {error}")))
}

fn parse<T: serde::de::DeserializeOwned>(response: http::Response<Bytes>) -> Result<T, AgentError> {
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        return Err(super::unauthorized(response.body()));
    }
    if !status.is_success() {
        let text = String::from_utf8_lossy(response.body())
            .chars()
            .take(200)
            .collect::<String>();
        return Err(AgentError::Console(format!("HTTP {status}: {text}")));
    }
    serde_json::from_slice(response.body())
        .map_err(|error| AgentError::Console(format!("invalid JSON: {error}")))
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn expiry_formats_as_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_796_443_200), "2026-12-05T04:00:00Z");
    }

    #[test]
    fn expiry_out_of_range_stays_a_number() {
        assert_eq!(rfc3339(u64::MAX), u64::MAX.to_string());
    }
}
