//! The admin API (callers with the `admin` role): the dead-letter queue with redrive,
//! audit-log verification, counters (streams and consumers are in `streams.rs`); and the
//! admin page's static files.
//!
//! Dead letters are read by one durable consumer per dead-letter stream
//! (`busbar-gateway-dlq`) that holds them unacked until an admin redrives them; the
//! listing shows their attributes and size, never their payload (an admin need not be
//! granted what they hold).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use busbar::durable::{DLQ_ATTEMPTS, DLQ_CONSUMER, DLQ_REASON, DLQ_SEQUENCE, DLQ_STREAM, DLQ_SUBJECT};
use busbar::policy::{AuditAction, AuditEntry};
use busbar::{ConsumerConfig, DurableMessage, EventBus, Message};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{query_value, segment};
use crate::Gateway;

/// Dead-letter stream of busbar's default `dlq` prefix.
pub const DEFAULT_DLQ_STREAM: &str = "DLQ_DLQ";

/// Consumer that holds dead letters for the admin API.
pub const DLQ_CONSUMER_NAME: &str = "busbar-gateway-dlq";

/// The dead letters the admin API holds.
#[derive(Default)]
pub struct AdminState {
    dlq: tokio::sync::Mutex<HashMap<String, Arc<DlqReader>>>,
}

struct DlqReader {
    held: Mutex<BTreeMap<u64, DurableMessage>>,
    task: JoinHandle<()>,
}

impl Drop for DlqReader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AdminState {
    /// Lets go of what is held from stream `stream` (it, or the reader's consumer, was
    /// deleted): the next listing reads it anew.
    pub async fn forget(&self, stream: &str) {
        self.dlq.lock().await.remove(stream);
    }
}

/// Routes of the admin API.
pub fn routes() -> Router<Arc<Gateway>> {
    Router::new()
        .merge(crate::streams::routes())
        .route("/v1/admin/dlq", get(list_dead_letters))
        .route("/v1/admin/dlq/{sequence}/redrive", post(redrive))
        .route("/v1/admin/audit/verify", get(audit_verify))
        .route("/v1/admin/stats", get(stats))
}

async fn dlq_reader(gw: &Arc<Gateway>, stream: &str) -> ApiResult<Arc<DlqReader>> {
    let mut readers = gw.admin.dlq.lock().await;
    if let Some(reader) = readers.get(stream) {
        return Ok(reader.clone());
    }
    // Held until redriven: no redelivery, never dead-lettered itself.
    let config = ConsumerConfig::new(stream, DLQ_CONSUMER_NAME)
        .ack_wait(Duration::from_secs(10 * 365 * 24 * 3600))
        .max_ack_pending(100_000);
    let mut subscription = gw.bus.inner().durable_subscribe(config).await?;
    let reader = Arc::new_cyclic(|weak: &std::sync::Weak<DlqReader>| {
        let weak = weak.clone();
        let task = tokio::spawn(async move {
            while let Some(item) = subscription.next().await {
                let Ok(letter) = item else { continue };
                let Some(reader) = weak.upgrade() else { break };
                reader
                    .held
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(letter.sequence(), letter);
            }
        });
        DlqReader {
            held: Mutex::new(BTreeMap::new()),
            task,
        }
    });
    readers.insert(stream.to_owned(), reader.clone());
    Ok(reader)
}

fn letter_json(sequence: u64, m: &Message) -> Value {
    json!({
        "sequence": sequence,
        "id": m.id(),
        "subject": m.header(DLQ_SUBJECT).unwrap_or(m.subject()),
        "dead_letter_subject": m.subject(),
        "reason": m.header(DLQ_REASON),
        "attempts": m.header(DLQ_ATTEMPTS),
        "stream": m.header(DLQ_STREAM),
        "stream_sequence": m.header(DLQ_SEQUENCE),
        "consumer": m.header(DLQ_CONSUMER),
        "classification": m.classification(),
        "encrypted": m.keyid().is_some(),
        "bytes": m.data().len(),
    })
}

fn dlq_stream(query: &Option<String>) -> ApiResult<String> {
    let stream = query_value(query, "stream").unwrap_or_else(|| DEFAULT_DLQ_STREAM.to_owned());
    if stream.is_empty()
        || stream.len() > 256
        || !stream
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(ApiError::invalid(
            "stream must be 1 to 256 letters, digits, _ or -",
        ));
    }
    Ok(stream)
}

/// The dead letters waiting in a dead-letter stream (default `DLQ_DLQ`), payload left out.
#[utoipa::path(get, path = "/v1/admin/dlq", tag = "admin",
    params(("stream" = Option<String>, Query, description = "Dead-letter stream (default DLQ_DLQ)")),
    responses(
        (status = 200, description = "Dead letters", body = Object),
        (status = 400, description = "Bad stream name", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "Not an admin", body = ApiError),
    ), security(("bearer" = [])))]
pub async fn list_dead_letters(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let stream = dlq_stream(&query)?;
    let reader = dlq_reader(&gw, &stream).await?;
    // Let the reader take what the stream holds now.
    gw.bus.flush().await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let held = reader.held.lock().unwrap_or_else(|p| p.into_inner());
    let letters: Vec<Value> = held
        .iter()
        .map(|(seq, d)| letter_json(*seq, d.message()))
        .collect();
    Ok(Json(json!({"stream": stream, "dead_letters": letters})))
}

/// The dead letter's message as first published: original subject, `busbar-*` headers
/// gone. An encrypted message keeps its id (the ciphertext is bound to it); any other
/// gets a new id, so a stream's duplicate window does not swallow the redrive.
pub fn redriven(letter: &Message) -> busbar::Result<Message> {
    let subject = letter.header(DLQ_SUBJECT).unwrap_or(letter.subject());
    let mut b = Message::builder(subject)
        .source(letter.source())
        .event_type(letter.event_type())
        .time(letter.time())
        .data(letter.data().clone());
    if letter.keyid().is_some() {
        b = b.id(letter.id());
    }
    let attrs = [
        (letter.content_type(), 0),
        (letter.correlation_id(), 1),
        (letter.traceparent(), 2),
        (letter.tracestate(), 3),
        (letter.classification(), 4),
        (letter.keyid(), 5),
    ];
    for (value, which) in attrs {
        if let Some(v) = value {
            b = match which {
                0 => b.content_type(v),
                1 => b.correlation_id(v),
                2 => b.traceparent(v),
                3 => b.tracestate(v),
                4 => b.classification(v),
                _ => b.keyid(v),
            };
        }
    }
    for (name, value) in letter.headers() {
        if !name.starts_with(busbar::envelope::RESERVED_HEADER_PREFIX) {
            b = b.header(name.as_str(), value.as_str());
        }
    }
    b.build()
}

/// Publishes a dead letter back to its original subject (durably when a stream holds
/// that subject), acks it in the dead-letter stream, and records who did it.
#[utoipa::path(post, path = "/v1/admin/dlq/{sequence}/redrive", tag = "admin",
    params(
        ("sequence" = u64, Path, description = "Sequence of the dead letter in its stream"),
        ("stream" = Option<String>, Query, description = "Dead-letter stream (default DLQ_DLQ)"),
    ),
    responses(
        (status = 200, description = "Redriven", body = Object),
        (status = 400, description = "Bad sequence or stream", body = ApiError),
        (status = 401, description = "No or unknown token", body = ApiError),
        (status = 403, description = "Not an admin", body = ApiError),
        (status = 404, description = "No such dead letter waiting", body = ApiError),
    ), security(("bearer" = [])))]
pub async fn redrive(
    State(gw): State<Arc<Gateway>>,
    caller: Caller,
    sequence: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let sequence: u64 = segment(sequence)?
        .parse()
        .map_err(|_| ApiError::invalid("sequence must be a whole number"))?;
    let stream = dlq_stream(&query)?;
    let reader = dlq_reader(&gw, &stream).await?;
    let letter = reader
        .held
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&sequence)
        .ok_or_else(|| ApiError::not_found(format!("no dead letter {sequence} waiting in {stream}")))?;
    let message = match redriven(letter.message()) {
        Ok(m) => m,
        Err(e) => {
            reader
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sequence, letter);
            return Err(e.into());
        }
    };
    let (subject, id) = (message.subject().to_owned(), message.id().to_owned());
    if let Some(log) = gw.bus.audit_log() {
        log.record(AuditEntry {
            action: AuditAction::Publish,
            subject: subject.clone(),
            message_id: Some(id.clone()),
            principal: caller.0.name.clone(),
            classes: Vec::new(),
            fields: Vec::new(),
            detail: Some(format!(
                "redrive of dead letter {sequence} of stream {stream} (id {}) by admin {:?}",
                letter.message().id(),
                caller.0.name
            )),
        })?;
    }
    // The stored form goes back as it is: the policy layer passes sealed content on.
    let durable = gw.bus.publish_durable(message.clone()).await;
    let outcome = match durable {
        Ok(ack) => json!({"stream": ack.stream, "sequence": ack.sequence}),
        // No stream holds the subject: a plain publish reaches its live subscribers. Only
        // then: after another failure (`backend`: no acknowledgement in time, or an answer
        // that was not one) the stream may hold the message already, and a plain publish
        // to its subject would be stored a second time. The letter stays to be redriven.
        Err(busbar::Error::InvalidArgument(_)) => {
            gw.bus.publish_message(message).await?;
            Value::Null
        }
        Err(e) => {
            reader
                .held
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(sequence, letter);
            return Err(e.into());
        }
    };
    letter.ack().await?;
    gw.counters.published.fetch_add(1, Relaxed);
    Ok(Json(
        json!({"redriven": sequence, "subject": subject, "id": id, "stored": outcome}),
    ))
}

/// Verifies the audit log's hash chain and head.
#[utoipa::path(get, path = "/v1/admin/audit/verify", tag = "admin", responses(
    (status = 200, description = "Verification report", body = Object),
    (status = 401, description = "No or unknown token", body = ApiError),
    (status = 403, description = "Not an admin", body = ApiError),
), security(("bearer" = [])))]
pub async fn audit_verify(State(gw): State<Arc<Gateway>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let Some(log) = gw.bus.audit_log() else {
        return Ok(Json(json!({"configured": false})));
    };
    let log = log.clone();
    let report = tokio::task::spawn_blocking(move || log.verify())
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "backend", e.to_string()))??;
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|p| json!({"line": p.line, "seq": p.seq, "kind": format!("{:?}", p.kind).to_lowercase(), "detail": p.detail}))
        .collect();
    Ok(Json(json!({
        "configured": true,
        "ok": report.is_ok(),
        "records": report.records,
        "head_seq": report.head.as_ref().map(|h| h.0),
        "problems": problems,
    })))
}

/// Counters of the bus, its policy layer and the gateway.
#[utoipa::path(get, path = "/v1/admin/stats", tag = "admin", responses(
    (status = 200, description = "Counters", body = Object),
    (status = 401, description = "No or unknown token", body = ApiError),
    (status = 403, description = "Not an admin", body = ApiError),
), security(("bearer" = [])))]
pub async fn stats(State(gw): State<Arc<Gateway>>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let b = gw.bus.stats();
    let p = gw.bus.policy_stats();
    let c = &gw.counters;
    Ok(Json(json!({
        "backend": gw.bus.backend().to_string(),
        "bus": {
            "published": b.published, "delivered": b.delivered, "missed": b.missed,
            "late_replies": b.late_replies, "rejected_replies": b.rejected_replies,
            "undecodable": b.undecodable, "disconnects": b.disconnects, "subscriptions": b.subscriptions,
        },
        "policy": {
            "published": p.published, "encrypted": p.encrypted, "delivered": p.delivered, "masked": p.masked,
            "withheld": p.withheld, "denied": p.denied, "crypto_errors": p.crypto_errors,
            "filtered": p.filtered, "inbox_skipped": p.inbox_skipped,
        },
        "gateway": {
            "published": c.published.load(Relaxed), "requests": c.requests.load(Relaxed),
            "streamed": c.streamed.load(Relaxed), "lag_notices": c.lag_notices.load(Relaxed),
            "missed": c.missed.load(Relaxed),
            "open_streams": gw.max_streams - gw.streams.available_permits(),
        },
    })))
}

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");

/// The admin page.
pub async fn page_index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response()
}

/// The admin page's other files.
pub async fn page_file(file: Result<Path<String>, PathRejection>) -> Response {
    match file.ok().map(|Path(f)| f).as_deref() {
        Some("app.js") => {
            ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], APP_JS).into_response()
        }
        _ => ApiError::not_found("no such file").into_response(),
    }
}
