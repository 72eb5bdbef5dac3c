//! Messages as JSON (the CloudEvents JSON format, plus `headers` for user headers), and
//! the body of a publish as a message: the CloudEvents HTTP binding in binary mode
//! (`ce-*` headers, the body is the data) and in structured mode
//! (`Content-Type: application/cloudevents+json`).

use std::time::SystemTime;

use axum::http::HeaderMap;
use base64::Engine as _;
use busbar::{Bytes, Message, MessageBuilder};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::error::ApiError;

/// Media type of a structured-mode CloudEvent.
pub const STRUCTURED: &str = "application/cloudevents+json";

/// Attributes a client may set, beside `data`; `source` is always the caller's principal.
const ATTRIBUTES: &[&str] = &[
    "id",
    "type",
    "time",
    "datacontenttype",
    "correlationid",
    "traceparent",
    "tracestate",
    "classification",
    "keyid",
];

/// `message` as a CloudEvents JSON object: `data` holds JSON as JSON, other UTF-8 as a
/// string, and anything else goes to `data_base64`.
pub fn to_json(message: &Message) -> Value {
    let mut event = Map::new();
    event.insert("specversion".into(), json!("1.0"));
    event.insert("id".into(), json!(message.id()));
    event.insert("source".into(), json!(message.source()));
    event.insert("type".into(), json!(message.event_type()));
    event.insert("subject".into(), json!(message.subject()));
    event.insert("time".into(), json!(format_time(message.time())));
    let optional = [
        ("datacontenttype", message.content_type()),
        ("correlationid", message.correlation_id()),
        ("traceparent", message.traceparent()),
        ("tracestate", message.tracestate()),
        ("classification", message.classification()),
        ("keyid", message.keyid()),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            event.insert(name.into(), json!(v));
        }
    }
    if !message.headers().is_empty() {
        event.insert("headers".into(), json!(message.headers()));
    }
    let data = message.data();
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        event.insert("data".into(), value);
    } else if let Ok(text) = std::str::from_utf8(data) {
        event.insert("data".into(), json!(text));
    } else {
        event.insert(
            "data_base64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(data)),
        );
    }
    Value::Object(event)
}

fn format_time(t: SystemTime) -> String {
    OffsetDateTime::from(t).format(&Rfc3339).unwrap_or_default()
}

fn parse_time(text: &str) -> Result<SystemTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| {
            ApiError::invalid(format!(
                "time {:?} is not RFC 3339: {e}",
                busbar::error::quote(text)
            ))
        })
}

fn attribute(builder: MessageBuilder, name: &str, value: &str) -> Result<MessageBuilder, ApiError> {
    Ok(match name {
        "id" => builder.id(value),
        "type" => builder.event_type(value),
        "time" => builder.time(parse_time(value)?),
        "datacontenttype" => builder.content_type(value),
        "correlationid" => builder.correlation_id(value),
        "traceparent" => builder.traceparent(value),
        "tracestate" => builder.tracestate(value),
        "classification" => builder.classification(value),
        "keyid" => builder.keyid(value),
        _ => builder.header(name, value),
    })
}

fn is_json_type(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// The message a publish or request body describes, published by `source`.
pub fn from_http(
    builder: MessageBuilder,
    source: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Message, ApiError> {
    let content_type = match headers.get(axum::http::header::CONTENT_TYPE) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::invalid("Content-Type is not ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let structured = content_type
        .as_deref()
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case(STRUCTURED)
        })
        .unwrap_or(false);
    let builder = if structured {
        structured_event(builder, &body)?
    } else {
        binary_event(builder, headers, content_type.as_deref(), body)?
    };
    Ok(builder.source(source).build()?)
}

fn binary_event(
    mut builder: MessageBuilder,
    headers: &HeaderMap,
    content_type: Option<&str>,
    body: Bytes,
) -> Result<MessageBuilder, ApiError> {
    if let Some(t) = content_type {
        if is_json_type(t) && serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_err() {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "decode",
                format!("the body is not the JSON its Content-Type {t:?} says"),
            ));
        }
        builder = builder.content_type(t);
    }
    for (name, value) in headers {
        let name = name.as_str();
        let Some(attr) = name.strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::invalid(format!("header {name} is not visible ASCII")))?;
        match attr {
            "specversion" if value != "1.0" => {
                return Err(ApiError::invalid(format!("ce-specversion {value:?} is not 1.0")))
            }
            "specversion" | "source" | "subject" => {}
            "datacontenttype" => return Err(ApiError::invalid("send the data content type as Content-Type")),
            _ => builder = attribute(builder, attr, value)?,
        }
    }
    Ok(builder.data(body))
}

fn structured_event(mut builder: MessageBuilder, body: &[u8]) -> Result<MessageBuilder, ApiError> {
    let event: Map<String, Value> = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "decode",
            format!("a structured CloudEvent must be a JSON object: {e}"),
        )
    })?;
    match event.get("specversion") {
        Some(Value::String(v)) if v == "1.0" => {}
        None => {}
        Some(other) => return Err(ApiError::invalid(format!("specversion {other} is not \"1.0\""))),
    }
    let mut data = None;
    for (name, value) in &event {
        match name.as_str() {
            "specversion" | "source" | "subject" => {}
            "data" => {
                data = Some(match value {
                    Value::String(s) if !event.contains_key("datacontenttype") => s.clone().into_bytes(),
                    Value::String(s)
                        if !event
                            .get("datacontenttype")
                            .and_then(Value::as_str)
                            .is_some_and(is_json_type) =>
                    {
                        s.clone().into_bytes()
                    }
                    other => serde_json::to_vec(other).map_err(|e| ApiError::invalid(e.to_string()))?,
                })
            }
            "data_base64" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| ApiError::invalid("data_base64 must be a string"))?;
                data = Some(
                    base64::engine::general_purpose::STANDARD
                        .decode(text)
                        .map_err(|e| ApiError::invalid(format!("data_base64: {e}")))?,
                );
            }
            "headers" => {
                let Value::Object(map) = value else {
                    return Err(ApiError::invalid("headers must be an object of strings"));
                };
                for (k, v) in map {
                    let v = v
                        .as_str()
                        .ok_or_else(|| ApiError::invalid("headers must be an object of strings"))?;
                    builder = builder.header(k.as_str(), v);
                }
            }
            attr => {
                let text = value
                    .as_str()
                    .ok_or_else(|| ApiError::invalid(format!("attribute {attr:?} must be a string")))?;
                if !ATTRIBUTES.contains(&attr)
                    && !attr.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                {
                    return Err(ApiError::invalid(format!(
                        "extension attribute {:?} is not lower-case letters and digits",
                        busbar::error::quote(attr)
                    )));
                }
                builder = attribute(builder, attr, text)?;
            }
        }
    }
    if event.contains_key("data") && event.contains_key("data_base64") {
        return Err(ApiError::invalid("data and data_base64 are exclusive"));
    }
    if !event.contains_key("datacontenttype") && matches!(event.get("data"), Some(v) if !v.is_string()) {
        builder = builder.content_type("application/json");
    }
    Ok(builder.data(data.unwrap_or_default()))
}

/// A JSON object describing a message to publish, as a WebSocket frame carries it:
/// `data` (any JSON) or `data_base64`, optional `headers` and attributes.
pub fn from_frame(
    builder: MessageBuilder,
    source: &str,
    frame: &Map<String, Value>,
) -> Result<Message, ApiError> {
    let mut event = Map::new();
    for (k, v) in frame {
        if !matches!(k.as_str(), "op" | "id" | "subject" | "timeout_ms") {
            event.insert(k.clone(), v.clone());
        }
    }
    let body = serde_json::to_vec(&event).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(structured_event(builder, &body)?.source(source).build()?)
}
