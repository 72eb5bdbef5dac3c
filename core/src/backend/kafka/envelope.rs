//! The busbar envelope in Kafka record headers, after the CloudEvents Kafka protocol
//! binding (binary content mode), so a plain Kafka client (and the CloudEvents SDKs) can
//! read every attribute:
//!
//! | busbar | Kafka record |
//! | --- | --- |
//! | `specversion`, `id`, `source`, `type`, `subject`, `time`, extensions | header `ce_<name>` (UTF-8) |
//! | `datacontenttype` | header `content-type` |
//! | the busbar subject | header `ce_subject` and the record key (per-subject order) |
//! | `correlationid` | header `ce_correlationid` |
//! | `reply_to` | header `reply-to` (a busbar subject: `_INBOX.…` on the same topic) |
//! | user headers | headers under their own names |
//! | data | the record value |
//!
//! A record without `ce_subject` (a plain producer's) takes its subject from its key; one
//! with neither, or whose subject is no busbar subject, cannot be routed and is counted
//! `undecodable`. A record with no CloudEvents headers becomes an event with a new `id`,
//! source `kafka`. A header value that is not UTF-8 makes the record undecodable.
//! (docs/design.md §10, docs/guide/kafka.md.)

use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::envelope::{codec, Message};
use crate::error::{quote, Error, Result};

/// The header prefix of CloudEvents attributes (the Kafka binding's).
pub const PREFIX: &str = "ce_";
/// The header carrying a request's reply subject.
pub const REPLY_TO: &str = "reply-to";
/// The header of a record a bus sends itself to mark a point in the topic (a flush);
/// skipped by every busbar reader.
pub(crate) const MARKER: &str = "busbar-marker";

/// The headers `msg` travels with: every attribute as `ce_<name>` (the subject included),
/// `content-type`, `reply-to`, then the user headers. `Nats-Msg-Id` is left out: `ce_id`
/// carries the id.
pub fn headers(msg: &Message) -> OwnedHeaders {
    let mut out = OwnedHeaders::new_with_capacity(12 + msg.headers().len());
    codec::encode_headers_into(msg, |name, value| {
        let key: std::borrow::Cow<'_, str> = match name {
            codec::HeaderName::Attribute("content-type") => "content-type".into(),
            codec::HeaderName::Attribute("Nats-Msg-Id") => return,
            codec::HeaderName::Attribute(attr) => {
                format!("{PREFIX}{}", attr.strip_prefix("ce-").unwrap_or(attr)).into()
            }
            codec::HeaderName::User(user) => user.into(),
        };
        let taken = std::mem::take(&mut out);
        out = taken.insert(Header {
            key: &key,
            value: Some(value.as_bytes()),
        });
    });
    if let Some(reply) = msg.reply_to() {
        out = out.insert(Header {
            key: REPLY_TO,
            value: Some(reply.as_bytes()),
        });
    }
    out
}

/// The text of header `name` of `headers` (the last one of that name), if it is UTF-8.
pub(crate) fn header<'a, H: Headers>(headers: Option<&'a H>, name: &str) -> Option<&'a str> {
    let headers = headers?;
    let mut found = None;
    for h in headers.iter() {
        if h.key == name {
            found = h.value.and_then(|v| std::str::from_utf8(v).ok());
        }
    }
    found
}

/// The busbar subject a record carries: its `ce_subject` header, else its key; `None`
/// when it has neither as UTF-8 text.
pub(crate) fn subject<'a, H: Headers>(headers: Option<&'a H>, key: Option<&'a [u8]>) -> Option<&'a str> {
    header(headers, "ce_subject").or_else(|| key.and_then(|k| std::str::from_utf8(k).ok()))
}

/// Whether `m` is a bus's position marker, which no reader delivers: no key, no value,
/// and the one `busbar-marker` header. A record with that header beside anything else is
/// no marker, so a peer cannot hide a message behind the header.
pub(crate) fn is_marker<M: rdkafka::message::Message>(m: &M) -> bool {
    m.key().is_none_or(<[u8]>::is_empty)
        && m.payload().is_none_or(<[u8]>::is_empty)
        && m.headers()
            .is_some_and(|h| h.count() == 1 && h.get(0).key == MARKER)
}

/// The busbar message a record on `subject` carries, or a `decode` error naming the first
/// thing that cannot be read. Never panics on any input.
pub fn decode<H: Headers>(subject: &str, headers: Option<&H>, data: &[u8]) -> Result<Message> {
    let mut pairs: Vec<(String, String)> = Vec::with_capacity(12);
    pairs.push(("ce-source".into(), "kafka".into()));
    let mut reply = None;
    if let Some(headers) = headers {
        for h in headers.iter() {
            if h.key == MARKER {
                continue;
            }
            let Ok(value) = std::str::from_utf8(h.value.unwrap_or_default()) else {
                return Err(Error::Decode(format!(
                    "record on {}: header {} is not UTF-8",
                    quote(subject),
                    quote(h.key)
                )));
            };
            if h.key == REPLY_TO {
                reply = Some(value.to_owned());
                continue;
            }
            let name = match h.key.strip_prefix(PREFIX) {
                Some(attr) => format!("ce-{attr}"),
                None => h.key.to_owned(),
            };
            pairs.push((name, value.to_owned()));
        }
    }
    codec::decode(
        subject,
        reply.as_deref(),
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        bytes::Bytes::copy_from_slice(data),
    )
    .map_err(|e| match e {
        Error::Decode(_) => e,
        other => Error::Decode(format!("record on {}: {other}", quote(subject))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_round_trips_through_record_headers() {
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
        let h = headers(&msg);
        assert_eq!(header(Some(&h), "ce_id"), Some(msg.id()));
        assert_eq!(header(Some(&h), "ce_specversion"), Some("1.0"));
        assert_eq!(header(Some(&h), "ce_subject"), Some("orders.created"));
        assert_eq!(header(Some(&h), "content-type"), Some("application/json"));
        assert_eq!(header(Some(&h), "Nats-Msg-Id"), None);
        assert_eq!(subject(Some(&h), None), Some("orders.created"));
        let back = decode("orders.created", Some(&h), b"{}").unwrap();
        assert_eq!(back.id(), msg.id());
        assert_eq!(back.source(), "svc");
        assert_eq!(back.event_type(), "com.example.created");
        assert_eq!(back.correlation_id(), Some("c-1"));
        assert_eq!(back.reply_to(), Some("_INBOX.x.y"));
        assert_eq!(back.headers().get("tenant").map(String::as_str), Some("t1"));
        assert_eq!(back.time(), msg.time());
    }

    #[test]
    fn a_plain_record_is_an_event_from_kafka_named_by_its_key() {
        let none: Option<&OwnedHeaders> = None;
        assert_eq!(subject(none, Some(b"a.b")), Some("a.b"));
        assert_eq!(subject(none, Some(&[0xff][..])), None);
        let m = decode("a.b", none, b"hi").unwrap();
        assert_eq!(m.source(), "kafka");
        assert_eq!(&m.data()[..], b"hi");
    }

    #[test]
    fn hostile_headers_are_decode_errors() {
        let bad = OwnedHeaders::new().insert(Header {
            key: "h",
            value: Some(&[0xff, 0xfe][..]),
        });
        assert_eq!(decode("a", Some(&bad), b"").unwrap_err().code(), "decode");
        let bad = OwnedHeaders::new().insert(Header {
            key: "ce_time",
            value: Some("yesterday"),
        });
        assert_eq!(decode("a", Some(&bad), b"").unwrap_err().code(), "decode");
        let bad = OwnedHeaders::new().insert(Header {
            key: "ce_specversion",
            value: Some("0.3"),
        });
        assert_eq!(decode("a", Some(&bad), b"").unwrap_err().code(), "decode");
        let none: Option<&OwnedHeaders> = None;
        assert_eq!(decode("a..b", none, b"").unwrap_err().code(), "decode");
        // A header with no value reads as empty text.
        let empty = OwnedHeaders::new().insert::<str>(Header {
            key: "tenant",
            value: None,
        });
        assert_eq!(decode("a", Some(&empty), b"").unwrap().header("tenant"), Some(""));
    }
}
