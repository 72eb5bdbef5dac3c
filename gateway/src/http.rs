//! Publish, request, health: the plain HTTP calls.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use busbar::{Bytes, EventBus};
use serde::Serialize;
use serde_json::Value;

use crate::auth::{percent_decode, Caller};
use crate::error::{ApiError, ApiResult};
use crate::{event, Gateway, MAX_REQUEST_TIMEOUT};

/// Answer of a publish.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Published {
    /// The message's id.
    pub id: String,
    /// Its subject.
    pub subject: String,
}

/// A path segment (or a tuple of them), or a JSON error when one is not UTF-8.
pub fn segment<T>(path: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    path.map(|Path(s)| s).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_subject",
            format!("bad path segment: {e}"),
        )
    })
}

/// The value of `name` in a query string, if present.
pub fn query_value(query: &Option<String>, name: &str) -> Option<String> {
    query
        .as_deref()?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| percent_decode(v))
}

/// Reads a body of at most `max` bytes; more is `payload_too_large`.
pub async fn read_body(body: Body, headers: &HeaderMap, max: usize) -> ApiResult<Bytes> {
    let too_large = |size: String| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("payload of {size} bytes exceeds max_payload of {max} bytes"),
        )
    };
    if let Some(length) = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if length > max as u64 {
            return Err(too_large(length.to_string()));
        }
    }
    axum::body::to_bytes(body, max).await.map_err(|e| {
        let inner = e.into_inner();
        if inner.is::<http_body_util::LengthLimitError>() {
            too_large(format!("more than {max}"))
        } else {
            ApiError::invalid(format!("cannot read the body: {inner}"))
        }
    })
}

/// Publishes the body to `subject` as the caller.
#[utoipa::path(
    post,
    path = "/v1/publish/{subject}",
    tag = "messages",
    params(("subject" = String, Path, description = "Subject to publish to (no wildcards)")),
    request_body(content = String, description = "The data (binary mode: CloudEvents attributes in ce-* headers), or a structured CloudEvent with Content-Type application/cloudevents+json", content_type = "application/octet-stream"),
    responses(
        (status = 202, description = "Published", body = Published),
        (status = 400, description = "Bad subject, attribute or body", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "Forbidden", body = ApiError),
        (status = 413, description = "Body larger than max_payload", body = ApiError),
        (status = 429, description = "Rate limited", body = ApiError),
        (status = 503, description = "Bus unavailable", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub async fn publish(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    subject: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    let subject = segment(subject)?;
    busbar::validate_subject(&subject)?;
    let body = read_body(body, &headers, gw.max_payload).await?;
    let message = event::from_http(gw.bus.message(&subject), &caller.0.name, &headers, body)?;
    let id = message.id().to_owned();
    gw.bus.publish_message(message).await?;
    gw.counters.published.fetch_add(1, Relaxed);
    Ok((StatusCode::ACCEPTED, Json(Published { id, subject })))
}

/// Sends the body as a request to `subject` as the caller and returns the reply, masked
/// for the caller, as a CloudEvents JSON object.
#[utoipa::path(
    post,
    path = "/v1/request/{subject}",
    tag = "messages",
    params(
        ("subject" = String, Path, description = "Subject of the service"),
        ("timeout_ms" = Option<u64>, Query, description = "How long to wait for the reply (default 5000, at most 60000)"),
    ),
    request_body(content = String, description = "As for publish", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The reply as a CloudEvents JSON object", body = Object),
        (status = 400, description = "Bad subject, attribute, timeout or body", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "Forbidden", body = ApiError),
        (status = 413, description = "Body larger than max_payload", body = ApiError),
        (status = 429, description = "Rate limited", body = ApiError),
        (status = 502, description = "The reply could not be read", body = ApiError),
        (status = 503, description = "No responders", body = ApiError),
        (status = 504, description = "Timeout", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub async fn request(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    subject: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let subject = segment(subject)?;
    busbar::validate_subject(&subject)?;
    let timeout = timeout_of(query_value(&query, "timeout_ms").as_deref())?;
    let body = read_body(body, &headers, gw.max_payload).await?;
    let message = event::from_http(gw.bus.message(&subject), &caller.0.name, &headers, body)?;
    gw.counters.requests.fetch_add(1, Relaxed);
    let reply = gw.bus.request_as(&caller.0, message, timeout).await?;
    Ok(Json(event::to_json(&reply)))
}

/// `timeout_ms` as a duration: default 5 s, 1 ms to [`MAX_REQUEST_TIMEOUT`].
pub fn timeout_of(text: Option<&str>) -> ApiResult<Duration> {
    let Some(text) = text else {
        return Ok(Duration::from_secs(5));
    };
    let ms: u64 = text.parse().map_err(|_| {
        ApiError::invalid(format!(
            "timeout_ms {:?} is not a whole number",
            busbar::error::quote(text)
        ))
    })?;
    if ms == 0 || Duration::from_millis(ms) > MAX_REQUEST_TIMEOUT {
        return Err(ApiError::invalid(format!(
            "timeout_ms {ms} is not between 1 and {}",
            MAX_REQUEST_TIMEOUT.as_millis()
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive", body = Object)))]
pub async fn healthz() -> Json<Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Readiness: the bus answers a flush within 2 s.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = Object),
    (status = 503, description = "The bus does not answer", body = ApiError),
))]
pub async fn readyz(State(gw): State<Arc<Gateway>>) -> ApiResult<Json<Value>> {
    match tokio::time::timeout(Duration::from_secs(2), gw.bus.flush()).await {
        Ok(Ok(())) => Ok(Json(
            serde_json::json!({"status": "ready", "backend": gw.bus.backend().to_string()}),
        )),
        Ok(Err(e)) => Err(e.into()),
        Err(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend",
            "the bus did not answer a flush within 2 s",
        )),
    }
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

/// A known path with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
    )
}
