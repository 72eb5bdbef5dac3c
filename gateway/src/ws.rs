//! `GET /v1/ws`: a WebSocket for bidirectional use, with JSON text frames.
//!
//! Client → gateway (every frame may carry an `id` of the client's choosing, echoed in
//! the answer):
//! - `{"op":"subscribe","id":"s1","pattern":"claims.>"}` → `{"op":"subscribed","id":"s1"}`
//! - `{"op":"unsubscribe","id":"s1"}` → `{"op":"unsubscribed","id":"s1"}`
//! - `{"op":"publish","id":"p1","subject":"claims.new","data":{…}}` (or `data_base64`,
//!   plus `headers` and CloudEvents attributes) → `{"op":"published","id":"p1","message_id":…}`
//! - `{"op":"request","id":"r1","subject":"svc.echo","data":…,"timeout_ms":1000}` →
//!   `{"op":"reply","id":"r1","message":{…}}`
//!
//! Gateway → client: `{"op":"message","id":"s1","message":{CloudEvents JSON}}`,
//! `{"op":"lagged","id":"s1","missed":N}` (this client missed N messages of that
//! subscription), and `{"op":"error","id":…,"code":…,"message":…}` for a failed frame
//! (the connection stays open).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use busbar::policy::Principal;
use busbar::{EventBus, SubscriptionHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::sse::{item_json, stream_permit};
use crate::{event, http, Gateway};

/// Most subscriptions one WebSocket holds.
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// Frames queued for one client before its subscriptions wait (and, in `lag` mode,
/// lag: the client is told how many it missed).
const OUTBOX: usize = 256;

/// Opens the WebSocket as the caller.
#[utoipa::path(
    get,
    path = "/v1/ws",
    tag = "messages",
    params(("access_token" = Option<String>, Query, description = "The bearer token, for browsers")),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (frames in gateway/README.md)"),
        (status = 400, description = "Not a WebSocket upgrade", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 503, description = "Too many streams", body = ApiError),
    ),
    security(("bearer" = []))
)]
pub async fn upgrade(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let ws = ws.map_err(|e| ApiError::invalid(format!("not a WebSocket upgrade: {e}")))?;
    let permit = stream_permit(&gw)?;
    let limit = gw.max_payload.saturating_mul(2).saturating_add(64 * 1024);
    Ok(ws
        .max_message_size(limit)
        .on_upgrade(move |socket| session(gw, caller.0, socket, permit)))
}

struct Session {
    gw: Arc<Gateway>,
    principal: Principal,
    out: mpsc::Sender<String>,
    subscriptions: HashMap<String, (SubscriptionHandle, JoinHandle<()>)>,
}

async fn session(gw: Arc<Gateway>, principal: Principal, socket: WebSocket, permit: OwnedSemaphorePermit) {
    let (mut sink, mut source) = socket.split();
    let (out, mut outbox) = mpsc::channel::<String>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(text) = outbox.recv().await {
            if sink.send(Frame::Text(text.into())).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let stopping = gw.stopping();
    tokio::pin!(stopping);
    let mut session = Session {
        gw,
        principal,
        out,
        subscriptions: HashMap::new(),
    };
    loop {
        let frame = tokio::select! {
            _ = &mut stopping => break,
            frame = source.next() => frame,
        };
        match frame {
            Some(Ok(Frame::Text(text))) => session.on_frame(text.as_str()).await,
            Some(Ok(Frame::Binary(_))) => {
                session
                    .reply(error_frame(
                        None,
                        &ApiError::invalid("frames are JSON text, not binary"),
                    ))
                    .await
            }
            Some(Ok(Frame::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => {}
        }
    }
    for (_, (handle, task)) in session.subscriptions.drain() {
        let _ = handle.unsubscribe().await;
        task.abort();
    }
    drop(session);
    let _ = writer.await;
    drop(permit);
}

fn error_frame(id: Option<&Value>, err: &ApiError) -> Value {
    json!({"op": "error", "id": id, "code": err.code, "message": err.message})
}

impl Session {
    async fn reply(&self, frame: Value) {
        let _ = self.out.send(frame.to_string()).await;
    }

    async fn on_frame(&mut self, text: &str) {
        let frame: Map<String, Value> = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let err = ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "decode",
                    format!("a frame must be a JSON object: {e}"),
                );
                return self.reply(error_frame(None, &err)).await;
            }
        };
        let id = frame.get("id").cloned();
        let answer = match frame.get("op").and_then(Value::as_str) {
            Some("subscribe") => self.subscribe(&frame, id.clone()).await,
            Some("unsubscribe") => self.unsubscribe(id.clone()).await,
            Some("publish") => self.publish(&frame, id.clone()).await,
            Some("request") => self.request(frame, id.clone()),
            _ => Err(ApiError::invalid(
                "op must be subscribe, unsubscribe, publish or request",
            )),
        };
        match answer {
            Ok(Some(frame)) => self.reply(frame).await,
            Ok(None) => {}
            Err(err) => self.reply(error_frame(id.as_ref(), &err)).await,
        }
    }

    fn key(id: &Option<Value>) -> ApiResult<String> {
        match id {
            Some(Value::String(s)) if !s.is_empty() && s.len() <= 256 => Ok(s.clone()),
            _ => Err(ApiError::invalid(
                "subscribe and unsubscribe need an id: a string of 1 to 256 bytes",
            )),
        }
    }

    fn text<'a>(frame: &'a Map<String, Value>, name: &str) -> ApiResult<&'a str> {
        frame
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid(format!("{name} must be a string")))
    }

    async fn subscribe(&mut self, frame: &Map<String, Value>, id: Option<Value>) -> ApiResult<Option<Value>> {
        let key = Self::key(&id)?;
        if self.subscriptions.contains_key(&key) {
            return Err(ApiError::invalid(format!("subscription id {key:?} is in use")));
        }
        if self.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(ApiError::invalid(format!(
                "at most {MAX_SUBSCRIPTIONS} subscriptions per WebSocket"
            )));
        }
        let pattern = Self::text(frame, "pattern")?;
        let mut subscription = self.gw.bus.subscribe_as(&self.principal, pattern).await?;
        let handle = subscription.handle();
        let (gw, out, sub) = (self.gw.clone(), self.out.clone(), key.clone());
        let task = tokio::spawn(async move {
            while let Some(item) = subscription.next().await {
                let (kind, data) = item_json(&gw, &item);
                let frame = match kind {
                    "message" => json!({"op": "message", "id": sub, "message": data}),
                    "lagged" => json!({"op": "lagged", "id": sub, "missed": data["missed"]}),
                    _ => json!({"op": "error", "id": sub, "code": data["code"], "message": data["message"]}),
                };
                if out.send(frame.to_string()).await.is_err() {
                    break;
                }
            }
        });
        self.subscriptions.insert(key, (handle, task));
        Ok(Some(json!({"op": "subscribed", "id": id})))
    }

    async fn unsubscribe(&mut self, id: Option<Value>) -> ApiResult<Option<Value>> {
        let key = Self::key(&id)?;
        let (handle, task) = self
            .subscriptions
            .remove(&key)
            .ok_or_else(|| ApiError::not_found(format!("no subscription {key:?}")))?;
        let _ = handle.unsubscribe().await;
        task.abort();
        Ok(Some(json!({"op": "unsubscribed", "id": id})))
    }

    async fn publish(&self, frame: &Map<String, Value>, id: Option<Value>) -> ApiResult<Option<Value>> {
        let subject = Self::text(frame, "subject")?;
        busbar::validate_subject(subject)?;
        let message = event::from_frame(self.gw.bus.message(subject), &self.principal.name, frame)?;
        let message_id = message.id().to_owned();
        self.gw.bus.publish_message(message).await?;
        self.gw.counters.published.fetch_add(1, Relaxed);
        Ok(Some(
            json!({"op": "published", "id": id, "message_id": message_id}),
        ))
    }

    /// Runs the request in its own task, so frames keep flowing while it waits.
    fn request(&self, frame: Map<String, Value>, id: Option<Value>) -> ApiResult<Option<Value>> {
        let subject = Self::text(&frame, "subject")?.to_owned();
        busbar::validate_subject(&subject)?;
        let timeout = match frame.get("timeout_ms") {
            None => http::timeout_of(None)?,
            Some(Value::Number(n)) => http::timeout_of(Some(&n.to_string()))?,
            Some(_) => return Err(ApiError::invalid("timeout_ms must be a number")),
        };
        let message = event::from_frame(self.gw.bus.message(&subject), &self.principal.name, &frame)?;
        let (gw, principal, out) = (self.gw.clone(), self.principal.clone(), self.out.clone());
        gw.counters.requests.fetch_add(1, Relaxed);
        tokio::spawn(async move {
            let frame = match gw.bus.request_as(&principal, message, timeout).await {
                Ok(reply) => json!({"op": "reply", "id": id, "message": event::to_json(&reply)}),
                Err(e) => error_frame(id.as_ref(), &e.into()),
            };
            let _ = out.send(frame.to_string()).await;
        });
        Ok(None)
    }
}
