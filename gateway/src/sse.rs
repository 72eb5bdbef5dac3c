//! `GET /v1/subscribe/{pattern}`: a subscription as Server-Sent Events, masked for the
//! caller. Events: `message` (a CloudEvents JSON object; `id:` the message id, or the
//! stream sequence on a durable read), `lagged` (`{"code":"lagged","missed":N}`: this
//! client was too slow and missed N messages, as a library subscriber is told), and
//! `error` (`{"code":…,"message":…}`, e.g. `decode`, the stream goes on).
//!
//! With `?stream=NAME` the subscription reads the durable stream from the start (or
//! from `?from_seq=N`, or after the sequence in `Last-Event-ID`), so a reconnecting
//! EventSource resumes where it stopped. Each such read has a durable consumer of its
//! own, deleted when the read ends (the client went away, the gateway shuts down): the
//! position lives in the client's `Last-Event-ID`, so none is left behind on the broker.

use std::convert::Infallible;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use busbar::{ConsumerConfig, Error, Message, StartAt};
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;

use crate::error::{ApiError, ApiResult};
use crate::http::{query_value, segment};
use crate::{auth::Caller, event, Gateway};

/// A permit for one more open stream, or 503 `unavailable`.
pub fn stream_permit(gw: &Gateway) -> ApiResult<OwnedSemaphorePermit> {
    gw.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the gateway holds its maximum of {} streams", gw.max_streams),
        )
    })
}

/// What one item of a subscription becomes for a web client, as JSON: `("message",
/// event)`, `("lagged", notice)` or `("error", error)`; counted on the gateway.
pub fn item_json(gw: &Gateway, item: &Result<Message, Error>) -> (&'static str, serde_json::Value) {
    match item {
        Ok(message) => {
            gw.counters.streamed.fetch_add(1, Relaxed);
            ("message", event::to_json(message))
        }
        Err(Error::Lagged { missed, .. }) => {
            gw.counters.lag_notices.fetch_add(1, Relaxed);
            gw.counters.missed.fetch_add(*missed, Relaxed);
            ("lagged", json!({"code": "lagged", "missed": missed}))
        }
        Err(e) => ("error", json!({"code": e.code(), "message": e.to_string()})),
    }
}

/// The durable consumer of one SSE read, deleted when the read is dropped.
struct OwnConsumer {
    gw: Arc<Gateway>,
    stream: String,
    name: String,
}

impl Drop for OwnConsumer {
    fn drop(&mut self) {
        let (gw, stream, name) = (
            self.gw.clone(),
            std::mem::take(&mut self.stream),
            std::mem::take(&mut self.name),
        );
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            // The gateway's own bookkeeping, below the policy layer (not an admin's delete).
            runtime.spawn(async move {
                let _ = gw.bus.inner().delete_consumer(&stream, &name).await;
            });
        }
    }
}

fn sse_event(kind: &str, id: Option<String>, data: serde_json::Value) -> Result<Event, Infallible> {
    let event = Event::default().event(kind).data(data.to_string());
    Ok(match id {
        Some(id) => event.id(id),
        None => event,
    })
}

/// Subscribes to `pattern` as the caller and streams what arrives as SSE.
#[utoipa::path(
    get,
    path = "/v1/subscribe/{pattern}",
    tag = "messages",
    params(
        ("pattern" = String, Path, description = "Subject pattern (`*`, `>`; percent-encode `>` as %3E)"),
        ("stream" = Option<String>, Query, description = "Read this durable stream (resumable)"),
        ("from_seq" = Option<u64>, Query, description = "Durable read: first sequence"),
        ("access_token" = Option<String>, Query, description = "The bearer token, for browsers' EventSource"),
    ),
    responses(
        (status = 200, description = "text/event-stream of message, lagged and error events", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad pattern", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "The pattern overlaps a restricted subject", body = ApiError),
        (status = 429, description = "Rate limited", body = ApiError),
        (status = 503, description = "Too many streams, or the bus is unavailable", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub async fn subscribe(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    pattern: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let pattern = segment(pattern)?;
    busbar::validate_pattern(&pattern)?;
    let permit = stream_permit(&gw)?;
    let stopping = Box::pin(gw.stopping());
    let events: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        match query_value(&query, "stream") {
            None => {
                let subscription = gw.bus.subscribe_as(&caller.0, &pattern).await?;
                let gw = gw.clone();
                Box::pin(stream::unfold(subscription, move |mut s| {
                    let gw = gw.clone();
                    async move {
                        let item = s.next().await?;
                        let (kind, data) = item_json(&gw, &item);
                        let id = item.ok().map(|m| m.id().to_owned());
                        Some((sse_event(kind, id, data), s))
                    }
                }))
            }
            Some(stream_name) => {
                let start = match (
                    query_value(&query, "from_seq"),
                    headers.get("last-event-id").and_then(|v| v.to_str().ok()),
                ) {
                    (_, Some(last)) => StartAt::Sequence(
                        last.trim()
                            .parse::<u64>()
                            .map_err(|_| ApiError::invalid("Last-Event-ID must be a stream sequence"))?
                            .saturating_add(1),
                    ),
                    (Some(from), None) => StartAt::Sequence(
                        from.parse()
                            .map_err(|_| ApiError::invalid("from_seq must be a whole number"))?,
                    ),
                    (None, None) => StartAt::Beginning,
                };
                let name = format!("gateway-{}", busbar::envelope::new_id());
                let config = ConsumerConfig::new(stream_name.as_str(), name.as_str())
                    .filter(pattern.as_str())
                    .start(start);
                let subscription = gw.bus.durable_subscribe_as(&caller.0, config).await?;
                let own = OwnConsumer {
                    gw: gw.clone(),
                    stream: stream_name,
                    name,
                };
                let gw = gw.clone();
                // Dropping the read (client gone, shutdown) drops `own`: the consumer is deleted.
                Box::pin(stream::unfold((subscription, own), move |(mut s, own)| {
                    let gw = gw.clone();
                    async move {
                        let item = s.next().await?;
                        let event = match item {
                            Ok(delivery) => {
                                let sequence = delivery.sequence();
                                let (kind, data) = item_json(&gw, &Ok(delivery.message().clone()));
                                // Handed to the connection: acked, so a resume starts after it.
                                let _ = delivery.ack().await;
                                sse_event(kind, Some(sequence.to_string()), data)
                            }
                            Err(e) => {
                                let (kind, data) = item_json(&gw, &Err(e));
                                sse_event(kind, None, data)
                            }
                        };
                        Some((event, (s, own)))
                    }
                }))
            }
        };
    // End with the gateway's shutdown; hold the permit as long as the stream lives.
    let events = events.take_until(stopping).map(move |e| {
        let _held = &permit;
        e
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
