//! API errors and their HTTP responses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// The one message every authentication failure gets, so a client cannot tell a
/// wrong key from an expired token.
pub const UNAUTHORIZED_MESSAGE: &str = "missing or invalid credentials";

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
            other => serde_json::json!({ "error": other.to_string() }),
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
