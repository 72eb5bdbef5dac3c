//! The busbar envelope in AMQP 0-9-1 message properties, after the CloudEvents AMQP
//! binding (binary content mode), so a plain AMQP client can read every attribute:
//!
//! | busbar | AMQP |
//! | --- | --- |
//! | `specversion`, `id`, `source`, `type`, `subject`, `time`, extensions | header `cloudEvents:<name>` (long string) |
//! | `datacontenttype` | property `content-type` |
//! | dedupe id (`id` unless set) | property `message-id` |
//! | `correlationid` | header `cloudEvents:correlationid` and property `correlation-id` (when ≤ 255 bytes) |
//! | `reply_to` | property `reply-to` (a busbar subject on the same exchange) |
//! | user headers | headers under their own names |
//!
//! Reading accepts `cloudEvents_` as prefix too (the binding's JMS-friendly spelling). A
//! message with no CloudEvents headers (a plain client's) becomes an event with a new `id`
//! (or its `message-id`), source `amqp`, and its `correlation-id` property as correlation.
//! Header values that are not text, numbers or booleans make the message undecodable.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

use crate::envelope::{codec, Message};
use crate::error::{quote, Error, Result};

/// Header naming the journal entry a bus waits for (its nonce): on busbar's own entries,
/// and on a durable publish (where decoding drops it, so no subscriber sees it).
pub(crate) const NONCE: &str = "busbar-journal";

/// The header prefix of CloudEvents attributes.
pub const PREFIX: &str = "cloudEvents:";
const PREFIX_ALT: &str = "cloudEvents_";

fn short(value: &str) -> Option<ShortString> {
    ShortString::try_new(value).ok()
}

/// The AMQP properties `msg` travels with. `persistent` sets delivery mode 2.
pub fn properties(msg: &Message, persistent: bool) -> Result<BasicProperties> {
    let mut headers = FieldTable::default();
    let mut props = BasicProperties::default().with_delivery_mode(if persistent { 2 } else { 1 });
    let mut refused = None;
    codec::encode_headers_into(msg, |name, value| match name {
        codec::HeaderName::Attribute("content-type") => {
            if let Some(v) = short(value) {
                props = std::mem::take(&mut props).with_content_type(v);
            } else {
                refused.get_or_insert_with(|| "content type".to_owned());
            }
        }
        codec::HeaderName::Attribute("Nats-Msg-Id") => {
            if let Some(v) = short(value) {
                props = std::mem::take(&mut props).with_message_id(v);
            }
        }
        codec::HeaderName::Attribute(attr) => {
            let attr = attr.strip_prefix("ce-").unwrap_or(attr);
            headers.insert(
                format!("{PREFIX}{attr}").into(),
                AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
            );
        }
        codec::HeaderName::User(user) => match ShortString::try_new(user) {
            Ok(name) => {
                headers.insert(
                    name,
                    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
                );
            }
            Err(_) => {
                refused.get_or_insert_with(|| format!("header name {}", quote(user)));
            }
        },
    });
    if let Some(what) = refused {
        return Err(Error::InvalidArgument(format!(
            "the {what} of message {} is over 255 bytes, the limit of an AMQP short string",
            msg.id()
        )));
    }
    if let Some(v) = msg.correlation_id().and_then(short) {
        props = props.with_correlation_id(v);
    }
    if let Some(reply) = msg.reply_to() {
        let Some(v) = short(reply) else {
            return Err(Error::InvalidSubject {
                subject: reply.to_owned(),
                reason: "is over 255 bytes as an AMQP reply-to, the RabbitMQ backend's limit",
            });
        };
        props = props.with_reply_to(v);
    }
    Ok(props.with_headers(headers))
}

/// A header value as text; `None` for a table, an array, bytes or void.
fn text(value: &AMQPValue) -> Option<std::result::Result<String, ()>> {
    Some(Ok(match value {
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(s) => s.to_owned(),
            Err(_) => return Some(Err(())),
        },
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        _ => return None,
    }))
}

/// The busbar message an AMQP delivery on `routing_key` carries, or a `decode` error
/// naming the first thing that cannot be read. Never panics on any input.
pub fn decode(routing_key: &str, props: &BasicProperties, data: Vec<u8>) -> Result<Message> {
    let short_subject = || crate::error::quote(routing_key);
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(12);
    pairs.push(("ce-source".into(), "amqp".into()));
    if let Some(ct) = props.content_type() {
        pairs.push(("content-type".into(), ct.as_str().to_owned()));
    }
    if let Some(id) = props.message_id() {
        pairs.push(("nats-msg-id".into(), id.as_str().to_owned()));
    }
    let mut correlation = false;
    if let Some(headers) = props.headers() {
        for (name, value) in headers.inner() {
            let name = name.as_str();
            if name == NONCE {
                continue; // which durable publish it was, for the publishing bus alone
            }
            let value = match text(value) {
                Some(Ok(v)) => v,
                Some(Err(())) => {
                    return Err(Error::Decode(format!(
                        "message on {}: header {} is not UTF-8",
                        short_subject(),
                        quote(name)
                    )))
                }
                None => {
                    return Err(Error::Decode(format!(
                        "message on {}: header {} holds an AMQP {:?}, not text",
                        short_subject(),
                        quote(name),
                        value.get_type()
                    )))
                }
            };
            let attr = name
                .strip_prefix(PREFIX)
                .or_else(|| name.strip_prefix(PREFIX_ALT));
            let name = match attr {
                Some(attr) => {
                    correlation |= attr.eq_ignore_ascii_case("correlationid");
                    format!("ce-{attr}")
                }
                None => name.to_owned(),
            };
            pairs.push((name, value));
        }
    }
    if !correlation {
        if let Some(c) = props.correlation_id() {
            pairs.push(("ce-correlationid".into(), c.as_str().to_owned()));
        }
    }
    let reply = props.reply_to().as_ref().map(|r| r.as_str());
    codec::decode(
        routing_key,
        reply,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        bytes::Bytes::from(data),
    )
    .map_err(|e| match e {
        Error::Decode(_) => e,
        other => Error::Decode(format!("message on {}: {other}", short_subject())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_amqp_properties() {
        let msg = Message::builder("orders.created")
            .source("svc")
            .event_type("com.example.created")
            .content_type("application/json")
            .correlation_id("c-1")
            .reply_to("_INBOX.x.y")
            .header("tenant", "t1")
            .data(&b"{}"[..])
            .build()
            .unwrap();
        let props = properties(&msg, false).unwrap();
        let headers = props.headers().as_ref().unwrap();
        assert!(headers.contains_key("cloudEvents:id"));
        assert!(headers.contains_key("cloudEvents:specversion"));
        assert!(headers.contains_key("tenant"));
        assert_eq!(
            props.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(props.correlation_id().as_ref().unwrap().as_str(), "c-1");
        let back = decode("orders.created", &props, b"{}".to_vec()).unwrap();
        assert_eq!(back.id(), msg.id());
        assert_eq!(back.source(), "svc");
        assert_eq!(back.event_type(), "com.example.created");
        assert_eq!(back.correlation_id(), Some("c-1"));
        assert_eq!(back.reply_to(), Some("_INBOX.x.y"));
        assert_eq!(back.headers().get("tenant").map(String::as_str), Some("t1"));
        assert_eq!(back.time(), msg.time());
    }

    #[test]
    fn a_plain_message_is_an_event_from_amqp() {
        let props = BasicProperties::default().with_correlation_id("r-9".into());
        let m = decode("a.b", &props, b"hi".to_vec()).unwrap();
        assert_eq!(m.source(), "amqp");
        assert_eq!(m.correlation_id(), Some("r-9"));
        assert_eq!(&m.data()[..], b"hi");
    }

    #[test]
    fn hostile_headers_are_decode_errors() {
        let mut table = FieldTable::default();
        table.insert("x".into(), AMQPValue::FieldTable(FieldTable::default()));
        let props = BasicProperties::default().with_headers(table);
        assert_eq!(decode("a", &props, vec![]).unwrap_err().code(), "decode");
        let mut table = FieldTable::default();
        table.insert(
            "cloudEvents:time".into(),
            AMQPValue::LongString(b"yesterday".to_vec().into()),
        );
        let props = BasicProperties::default().with_headers(table);
        assert_eq!(decode("a", &props, vec![]).unwrap_err().code(), "decode");
        let mut table = FieldTable::default();
        table.insert("h".into(), AMQPValue::LongString(vec![0xff, 0xfe].into()));
        let props = BasicProperties::default().with_headers(table);
        assert_eq!(decode("a", &props, vec![]).unwrap_err().code(), "decode");
        let mut table = FieldTable::default();
        table.insert(
            "cloudEvents:specversion".into(),
            AMQPValue::LongString(b"0.3".to_vec().into()),
        );
        let props = BasicProperties::default().with_headers(table);
        assert_eq!(decode("a", &props, vec![]).unwrap_err().code(), "decode");
        // A routing key that is no busbar subject.
        assert_eq!(
            decode("a..b", &BasicProperties::default(), vec![])
                .unwrap_err()
                .code(),
            "decode"
        );
    }
}
