//! API errors and their HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The one message every authentication failure gets, so a client cannot tell a
/// wrong key from an expired token.
pub const UNAUTHORIZED_MESSAGE: &str = "missing or invalid credentials";

/// Maximum length, in characters, of a value from a request that an error message
/// quotes.
///
/// A longer value is described instead of quoted, so a client cannot make the
/// console send kilobytes of its own input back.
const MAX_QUOTED_CHARS: usize = 64;

/// Maximum length, in characters, of an error message sent to a client.
///
/// Messages that libraries build (serde, URL and policy parsers) quote values from
/// the request, and [`quote_short`] cannot shorten those. So a longer message loses
/// its middle, where such a value sits. Its start and end stay, because they
/// carry the problem and its line and column.
const MAX_MESSAGE_CHARS: usize = 512;

/// Returns `value` quoted for an error message, or `None` when it is longer than
/// [`MAX_QUOTED_CHARS`] and the message should name it without quoting it.
fn quote_short(value: &str) -> Option<String> {
    (value.chars().count() <= MAX_QUOTED_CHARS).then(|| format!("{value:?}"))
}

/// Returns `separator` followed by `value` quoted, to end a phrase such as
/// "unknown format", or an empty string when [`quote_short`] leaves `value` out.
pub(crate) fn quoted_after(separator: &str, value: &str) -> String {
    quote_short(value).map_or_else(String::new, |quoted| format!("{separator}{quoted}"))
}

/// Cuts the middle out of a message longer than [`MAX_MESSAGE_CHARS`].
fn bound_message(message: String) -> String {
    let count = message.chars().count();
    if count <= MAX_MESSAGE_CHARS {
        return message;
    }
    // The start and the end keep this many characters each, so that both and the
    // " ... " between them fit in the maximum.
    let side_chars = (MAX_MESSAGE_CHARS - 5) / 2;
    let head: String = message.chars().take(side_chars).collect();
    let tail: String = message.chars().skip(count - side_chars).collect();
    format!("{head} ... {tail}")
}

/// An API failure; every variant becomes a JSON body `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing, doubled, malformed, unknown, expired or revoked credentials (401).
    #[error("{UNAUTHORIZED_MESSAGE}")]
    Unauthorized,
    /// The credentials are valid but may not do this (403).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The request is malformed or a value is invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// The named thing does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// The body was rejected before it reached the handler: too large (413), wrong
    /// content type (415) or not valid JSON (400, 422).
    #[error("{message}")]
    Rejected {
        /// The response status.
        status: StatusCode,
        /// The problem, for the client.
        message: String,
    },
    /// The new policy does not validate (422); nothing was changed.
    #[error("the policy is invalid")]
    InvalidPolicy(Vec<serde_json::Value>),
    /// A store or a task failed (500); the detail is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Builds the 404 for an `id` from the request that names no `thing` (such as
    /// "admin token"); the message quotes the id only when [`quote_short`] does.
    pub(crate) fn no_such_id(thing: &str, id: &str) -> Self {
        match quote_short(id) {
            Some(quoted) => Self::NotFound(format!("no {thing} with id {quoted}")),
            None => Self::NotFound(format!("no {thing} with that id")),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Rejected { status, .. } => *status,
            Self::InvalidPolicy(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = match self {
            Self::InvalidPolicy(diagnostics) => serde_json::json!({
                "error": "the policy is invalid; nothing was changed",
                "diagnostics": diagnostics,
            }),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "console request failed");
                serde_json::json!({ "error": "internal error; see the server log" })
            }
            other => serde_json::json!({ "error": bound_message(other.to_string()) }),
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<swg_identity::StoreError> for ApiError {
    fn from(error: swg_identity::StoreError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<swg_activity::ActivityError> for ApiError {
    fn from(error: swg_activity::ActivityError) -> Self {
        Self::Internal(error.to_string())
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        Self::Internal(format!("blocking task failed: {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_short_stops_at_limit() {
        let limit = "é".repeat(MAX_QUOTED_CHARS);
        assert_eq!(quote_short(&limit), Some(format!("\"{limit}\"")));
        assert_eq!(quote_short(&format!("{limit}e")), None);
    }

    #[test]
    fn quoted_after_leaves_long_value_out() {
        assert_eq!(quoted_after(": ", "pem2"), ": \"pem2\"");
        assert_eq!(quoted_after(": ", &"x".repeat(MAX_QUOTED_CHARS + 1)), "");
    }

    #[test]
    fn short_message_is_kept() {
        let message = "x".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(bound_message(message.clone()), message);
    }

    #[test]
    fn long_message_keeps_start_and_end() {
        let message = format!("start {} end", "é".repeat(5000));
        let bounded = bound_message(message);
        assert!(bounded.chars().count() <= MAX_MESSAGE_CHARS, "{bounded}");
        assert!(bounded.starts_with("start é"), "{bounded}");
        assert!(bounded.ends_with("é end"), "{bounded}");
        assert!(bounded.contains("é ... é"), "{bounded}");
    }
}
