//! The admin API's durable streams and consumers (callers with the `admin` role): list,
//! declare, inspect and delete them. Listing and inspecting pass through (names, subject
//! patterns and counts are not protected, docs/design.md §6); a delete runs as the
//! caller's principal through busbar's policy layer, which allows it only to a principal
//! who may read what the stream or consumer holds, and records it in the audit log.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use busbar::{ConsumerInfo, EventBus, StreamConfig, StreamInfo};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::admin::DLQ_CONSUMER_NAME;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{read_body, segment};
use crate::Gateway;

/// Routes of streams and consumers.
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .route("/v1/admin/streams", get(list_streams).post(add_stream))
        .route("/v1/admin/streams/{name}", get(stream_info).delete(delete_stream))
        .route("/v1/admin/streams/{name}/consumers", get(list_consumers))
        .route(
            "/v1/admin/streams/{name}/consumers/{consumer}",
            get(consumer_info).delete(delete_consumer),
        )
}

/// The failures every stream and consumer call can answer with, for the OpenAPI
/// description (the handlers answer with [`ApiError`]).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
enum Failures {
    /// No or unknown token
    #[response(status = 401)]
    Unauthorized(ApiError),
    /// Not an admin; for a delete, also what it removes is restricted from the caller
    #[response(status = 403)]
    Forbidden(ApiError),
    /// The backend has no durable streams (`unsupported`)
    #[response(status = 501)]
    Unsupported(ApiError),
    /// The bus is unavailable (`backend`)
    #[response(status = 503)]
    Unavailable(ApiError),
}

fn info_json(info: &StreamInfo) -> Value {
    json!({
        "name": info.name,
        "subjects": info.subjects,
        "messages": info.messages,
        "bytes": info.bytes,
        "first_sequence": info.first_sequence,
        "last_sequence": info.last_sequence,
    })
}

fn consumer_json(info: &ConsumerInfo) -> Value {
    json!({
        "stream": info.stream,
        "name": info.name,
        "filter": info.filter,
        "pending": info.pending,
        "ack_pending": info.ack_pending,
        "delivered_sequence": info.delivered_sequence,
    })
}

/// Every stream on the bus, with what it holds now.
#[utoipa::path(get, path = "/v1/admin/streams", tag = "admin", responses(
    (status = 200, description = "Streams, sorted by name", body = Object),
    Failures,
), security(("bearer" = [])))]
pub async fn list_streams(State(gw): State<Arc<Gateway>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let streams: Vec<Value> = gw.bus.list_streams().await?.iter().map(info_json).collect();
    Ok(Json(json!({ "streams": streams })))
}

/// A stream to declare.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStream {
    /// Stream name.
    pub name: String,
    /// Subject patterns it stores.
    pub subjects: Vec<String>,
    /// Oldest message kept, in milliseconds.
    #[serde(default)]
    pub max_age_ms: Option<u64>,
    /// Most messages kept.
    #[serde(default)]
    pub max_messages: Option<u64>,
    /// Most bytes kept.
    #[serde(default)]
    pub max_bytes: Option<u64>,
}

/// Declares a stream (idempotent: an existing one is kept as it is).
#[utoipa::path(post, path = "/v1/admin/streams", tag = "admin", request_body = NewStream, responses(
    (status = 201, description = "Declared", body = Object),
    (status = 400, description = "Bad stream settings", body = ApiError),
    Failures,
), security(("bearer" = [])))]
pub async fn add_stream(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    caller.require_admin()?;
    let body = read_body(body, &headers, 64 * 1024).await?;
    let new: NewStream =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("stream: {e}")))?;
    let mut config = StreamConfig::new(new.name, new.subjects);
    if let Some(ms) = new.max_age_ms {
        config = config.max_age(Duration::from_millis(ms));
    }
    if let Some(n) = new.max_messages {
        config = config.max_messages(n);
    }
    if let Some(n) = new.max_bytes {
        config = config.max_bytes(n);
    }
    let info = gw.bus.declare_stream(config).await?;
    Ok((StatusCode::CREATED, Json(info_json(&info))))
}

/// What one stream holds now.
#[utoipa::path(get, path = "/v1/admin/streams/{name}", tag = "admin",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "Stream info", body = Object),
        (status = 400, description = "Unknown or bad name", body = ApiError),
        Failures,
    ), security(("bearer" = [])))]
pub async fn stream_info(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let name = segment(name)?;
    Ok(Json(info_json(&gw.bus.stream_info(&name).await?)))
}

/// Deletes a stream with its messages and consumers, as the caller: allowed when the
/// caller's roles may read every subject the stream holds; recorded in the audit log.
#[utoipa::path(delete, path = "/v1/admin/streams/{name}", tag = "admin",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "Deleted", body = Object),
        (status = 400, description = "Unknown or bad name", body = ApiError),
        Failures,
    ), security(("bearer" = [])))]
pub async fn delete_stream(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let name = segment(name)?;
    gw.bus.delete_stream_as(&caller.0, &name).await?;
    gw.admin.forget(&name).await;
    Ok(Json(json!({ "deleted": { "stream": name } })))
}

/// The consumers of a stream, with where each stands.
#[utoipa::path(get, path = "/v1/admin/streams/{name}/consumers", tag = "admin",
    params(("name" = String, Path, description = "Stream name")),
    responses(
        (status = 200, description = "Consumers, sorted by name", body = Object),
        (status = 400, description = "Unknown or bad name", body = ApiError),
        Failures,
    ), security(("bearer" = [])))]
pub async fn list_consumers(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let name = segment(name)?;
    let consumers: Vec<Value> = gw
        .bus
        .list_consumers(&name)
        .await?
        .iter()
        .map(consumer_json)
        .collect();
    Ok(Json(json!({ "stream": name, "consumers": consumers })))
}

/// Where one consumer stands now.
#[utoipa::path(get, path = "/v1/admin/streams/{name}/consumers/{consumer}", tag = "admin",
    params(
        ("name" = String, Path, description = "Stream name"),
        ("consumer" = String, Path, description = "Consumer name"),
    ),
    responses(
        (status = 200, description = "Consumer info", body = Object),
        (status = 400, description = "Unknown or bad name", body = ApiError),
        Failures,
    ), security(("bearer" = [])))]
pub async fn consumer_info(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    names: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let (stream, name) = segment(names)?;
    Ok(Json(consumer_json(&gw.bus.consumer_info(&stream, &name).await?)))
}

/// Deletes a consumer, as the caller: allowed when the caller's roles may read what it
/// reads; recorded in the audit log. A subscription still using it is told and starts
/// over from its configured start.
#[utoipa::path(delete, path = "/v1/admin/streams/{name}/consumers/{consumer}", tag = "admin",
    params(
        ("name" = String, Path, description = "Stream name"),
        ("consumer" = String, Path, description = "Consumer name"),
    ),
    responses(
        (status = 200, description = "Deleted", body = Object),
        (status = 400, description = "Unknown or bad name", body = ApiError),
        Failures,
    ), security(("bearer" = [])))]
pub async fn delete_consumer(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    names: Result<Path<(String, String)>, PathRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let (stream, name) = segment(names)?;
    gw.bus.delete_consumer_as(&caller.0, &stream, &name).await?;
    if name == DLQ_CONSUMER_NAME {
        gw.admin.forget(&stream).await;
    }
    Ok(Json(json!({ "deleted": { "stream": stream, "consumer": name } })))
}
