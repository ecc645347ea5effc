//! Request body extractors whose rejections use the API's JSON error format.

use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON object body (`Content-Type: application/json`), parsed into `T`.
///
/// Any other JSON value is rejected with 400, because serde would otherwise read an
/// array as a struct, element by element, and accept `["key","device","user"]` as an
/// enrolment. Other rejections are 415 for a missing or non-JSON content type, 413
/// for a body over the limit and 400 for invalid JSON, with axum's message. An
/// object that does not fit `T` gets 422, with a message that names the unknown,
/// missing or duplicate field or the field of the wrong type.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let message = match media_type(&request) {
            Some(media_type) if is_json(&media_type) => None,
            Some(media_type) => Some(format!(
                "a JSON body needs Content-Type: application/json, not {media_type}"
            )),
            None => Some("a JSON body needs Content-Type: application/json".to_owned()),
        };
        if let Some(message) = message {
            return Err(ApiError::Rejected {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message,
            });
        }
        let limit = body_limit(&request);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| bytes_rejection(rejection, limit))?;

        // The body is parsed twice, once to find its JSON type and once into `T`,
        // so that a wrong field gets a message with its path, line and column.
        let axum::Json(value) =
            axum::Json::<serde_json::Value>::from_bytes(&bytes).map_err(json_rejection)?;
        if !value.is_object() {
            return Err(ApiError::BadRequest(format!(
                "the request body must be a JSON object, not {}",
                json_type(&value)
            )));
        }
        let axum::Json(parsed) = axum::Json::<T>::from_bytes(&bytes).map_err(field_rejection)?;
        Ok(Self(parsed))
    }
}

/// The body of a request that takes none: empty, white space or an empty JSON
/// object pass [`NoBody::check`]. Anything else fails it with 422, so that a client
/// that sends values (such as a chosen password) learns that swg ignored them
/// instead of believing they were applied. The handler calls the check after its
/// authorization, so that a read-only token still gets 403 first.
#[derive(Debug)]
pub(crate) struct NoBody {
    has_values: bool,
}

impl NoBody {
    /// Fails when the body held anything but white space or `{}`.
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        if self.has_values {
            Err(ApiError::Rejected {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                message: "this request takes no body (an empty JSON object is accepted); \
                          swg generates the value itself"
                    .to_owned(),
            })
        } else {
            Ok(())
        }
    }
}

impl<S> FromRequest<S> for NoBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = body_limit(&request);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| bytes_rejection(rejection, limit))?;
        let text = String::from_utf8_lossy(&bytes);
        let compact: String = text.split_whitespace().collect();
        Ok(Self {
            has_values: !(compact.is_empty() || compact == "{}"),
        })
    }
}

/// Returns the JSON type of `value` with its article, for messages.
fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    ApiError::Rejected {
        status: rejection.status(),
        message: rejection.body_text(),
    }
}

/// Builds the 422 for a JSON object that does not fit the request type.
///
/// The body parsed as JSON before, so every failure here is a field's. That
/// includes one that serde_json classifies as a syntax error, such as a number
/// where an enum is expected, which axum would reject with 400. The message is
/// serde's, which starts with the field's JSON path, without axum's prefix about
/// a target type.
fn field_rejection(rejection: JsonRejection) -> ApiError {
    let detail = std::error::Error::source(&rejection)
        .map_or_else(|| rejection.body_text(), ToString::to_string);
    ApiError::Rejected {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("invalid request body: {detail}"),
    }
}

/// The body size limit of a route, set by [`prepare_body`] for the extractors'
/// messages.
#[derive(Debug, Clone, Copy)]
struct BodyLimit(usize);

fn body_limit(request: &Request) -> Option<usize> {
    request.extensions().get::<BodyLimit>().map(|limit| limit.0)
}

/// Maps a failure to read the body to an API error. A body of unknown length is
/// found to be over the limit only while it is read, so it gets a message that
/// names the limit like the one for a declared length.
fn bytes_rejection(rejection: BytesRejection, limit: Option<usize>) -> ApiError {
    let status = rejection.status();
    let message = match limit {
        Some(limit) if status == StatusCode::PAYLOAD_TOO_LARGE => {
            format!("the body exceeds the limit of {limit} bytes")
        }
        _ => rejection.body_text(),
    };
    ApiError::Rejected { status, message }
}

/// Returns the request's media type, lowercase and without parameters.
fn media_type(request: &Request) -> Option<String> {
    request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase())
}

/// Returns whether a media type from [`media_type`] is JSON: `application/json`
/// or any `+json` type.
fn is_json(media_type: &str) -> bool {
    media_type == "application/json" || media_type.ends_with("+json")
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
        if let Some(media_type) = media_type(&request).filter(|media_type| is_json(media_type)) {
            return Err(ApiError::Rejected {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message: format!(
                    "the body must be TOML text (any media type but JSON, such as application/toml), not {media_type}"
                ),
            });
        }
        let limit = body_limit(&request);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| bytes_rejection(rejection, limit))?;
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
/// unauthenticated client can make the console hold per request. A larger body
/// that a rejection leaves unread gets a lingering close instead, from
/// [`crate::lingering::linger_after_errors`].
const DRAIN_LIMIT: usize = 64 * 1024;

/// Rejects a body whose `Content-Length` exceeds `limit` with 413 before reading
/// it, and reads small bodies completely before the handler runs.
pub(crate) async fn prepare_body(
    axum::extract::State(limit): axum::extract::State<usize>,
    mut request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;

    request.extensions_mut().insert(BodyLimit(limit));
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
