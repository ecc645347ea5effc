//! Request body extractors whose rejections use the API's JSON error format.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON body (`Content-Type: application/json`), parsed into `T`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::Rejected {
        status: rejection.status(),
        message: rejection.body_text(),
    }
}

/// A UTF-8 text body, such as a policy file.
///
/// Any content type but JSON is accepted, because curl's `--data-binary` sends a form
/// type by default. A JSON type means the client sent something other than the TOML
/// text, so it is rejected with 415.
#[derive(Debug)]
pub(crate) struct TextBody(pub(crate) String);

impl<S> FromRequest<S> for TextBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let media_type = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|value| value.trim().to_ascii_lowercase());
        if let Some(media_type) = media_type {
            if media_type == "application/json" || media_type.ends_with("+json") {
                return Err(ApiError::Rejected {
                    status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    message: format!(
                        "the body must be TOML text (application/toml or text/plain), not {media_type}"
                    ),
                });
            }
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| ApiError::Rejected {
                    status: rejection.status(),
                    message: rejection.body_text(),
                })?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::BadRequest("the body is not valid UTF-8".to_owned()))?;
        Ok(Self(text))
    }
}

/// Bodies up to this size are read completely before the handler runs.
///
/// Responding before the client has sent its whole body makes HTTP/2 end the
/// stream with RST_STREAM, which some clients (curl 7.88) report as a failed
/// transfer instead of showing the response. Reading small bodies first avoids that
/// for every early rejection (401, 403, 415) while bounding what an
/// unauthenticated client can make the console hold per request.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Rejects a body whose `Content-Length` exceeds `limit` with 413 before reading
/// it, and reads small bodies completely before the handler runs.
pub(crate) async fn prepare_body(
    axum::extract::State(limit): axum::extract::State<usize>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;

    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    let Some(declared) = declared else {
        // Chunked or HTTP/2 bodies of unknown length: the extractors enforce the
        // limit while reading.
        return next.run(request).await;
    };
    if declared > limit as u64 {
        return ApiError::Rejected {
            status: axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("the body has {declared} bytes; the limit is {limit}"),
        }
        .into_response();
    }
    if declared == 0 || declared > DRAIN_LIMIT as u64 {
        return next.run(request).await;
    }

    let (parts, body) = request.into_parts();
    let collected = http_body_util::Limited::new(body, DRAIN_LIMIT)
        .collect()
        .await;
    match collected {
        Ok(collected) => {
            let body = axum::body::Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(error) => {
            tracing::debug!(%error, "failed to read a request body");
            ApiError::BadRequest("failed to read the request body".to_owned()).into_response()
        }
    }
}
