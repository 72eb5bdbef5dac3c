//! The JSON error body of every failed call: `{"code": …, "message": …}`, with the
//! HTTP status that goes with the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

/// Codes of the gateway's own failures, beside the §7 codes of docs/design.md that
/// busbar's errors carry: no or bad token, no such route, too many calls or streams.
pub const GATEWAY_CODES: &[&str] = &[
    "unauthorized",
    "not_found",
    "method_not_allowed",
    "rate_limited",
    "unavailable",
];

/// A failed call: the stable `code` clients match on and a message for a person.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// A §7 code (`invalid_subject`, `forbidden`, `timeout`, …) or one of the gateway's
    /// own (`unauthorized`, `not_found`, `method_not_allowed`, `rate_limited`, `unavailable`).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    #[serde(skip)]
    #[schema(ignore)]
    status: u16,
}

impl ApiError {
    /// An error with an explicit status.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_owned(),
            message: message.into(),
            status: status.as_u16(),
        }
    }

    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 400 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The status of each §7 code: the caller's mistake is 4xx, the bus's state 5xx.
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "invalid_subject" | "invalid_argument" => StatusCode::BAD_REQUEST,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "forbidden" => StatusCode::FORBIDDEN,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "no_responders" | "closed" | "backend" => StatusCode::SERVICE_UNAVAILABLE,
        // An answer or stored message that could not be read or opened.
        "decode" | "crypto" => StatusCode::BAD_GATEWAY,
        // The backend cannot do this at all (a backend without durable streams, docs/design.md §7).
        "unsupported" => StatusCode::NOT_IMPLEMENTED,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<busbar::Error> for ApiError {
    fn from(err: busbar::Error) -> Self {
        let code = err.code();
        ApiError::new(status_of(code), code, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, Json(&self)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", axum::http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Result alias of the handlers.
pub type ApiResult<T> = Result<T, ApiError>;
