//! What a publish may carry besides subject and payload, in one place for every language:
//! [`PublishOptions`] (CloudEvents attributes, classification, trace context, headers),
//! the rule for a payload a binding serialised as JSON ([`JSON_CONTENT_TYPE`]), and the
//! fast path a publish without options takes.
//!
//! A binding turns its language's arguments into `PublishOptions` and a [`Payload`] and
//! calls [`EventBus::publish_with`](crate::EventBus::publish_with) (or
//! [`request_with`](crate::EventBus::request_with), [`PublishOptions::reply`],
//! [`PublishOptions::build`] for a durable publish); it decides nothing else.

use std::time::Duration;

use bytes::Bytes;

use crate::envelope::{Headers, Message, MessageBuilder};
use crate::error::Result;

/// `datacontenttype` of a payload a binding serialised from a language value as JSON,
/// unless the options name another.
pub const JSON_CONTENT_TYPE: &str = "application/json";

/// How long a request waits for its reply when the caller gives no timeout (Python's
/// `request(timeout=None)`, JavaScript's `request()` without `options.timeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A payload as a binding hands it over: bytes as given, or the JSON text it serialised
/// from a language value (a dict, an object, a number), which is marked
/// [`JSON_CONTENT_TYPE`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Payload {
    /// The bytes published.
    pub data: Bytes,
    /// Whether the binding serialised them as JSON.
    pub json: bool,
}

impl Payload {
    /// Bytes as given (a byte string, a buffer, text as UTF-8).
    pub fn bytes(data: impl Into<Bytes>) -> Self {
        Payload {
            data: data.into(),
            json: false,
        }
    }

    /// JSON text a binding serialised from a language value.
    pub fn json(text: impl Into<Bytes>) -> Self {
        Payload {
            data: text.into(),
            json: true,
        }
    }
}

/// Attributes and headers of a message to publish; every field left `None` keeps the
/// bus's default (a new UUIDv7 `id`, the bus's `source`, type `busbar.event`, no
/// content type unless the payload is JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// CloudEvents `id` (keep it when retrying, so a durable stream stores it once).
    pub id: Option<String>,
    /// CloudEvents `type`.
    pub event_type: Option<String>,
    /// CloudEvents `datacontenttype`; for a JSON payload, replaces `application/json`.
    pub content_type: Option<String>,
    /// `correlationid`.
    pub correlation_id: Option<String>,
    /// `classification` (e.g. `"phi,pii"`), read by the policy layer.
    pub classification: Option<String>,
    /// W3C `traceparent`.
    pub traceparent: Option<String>,
    /// W3C `tracestate`.
    pub tracestate: Option<String>,
    /// User headers (printable ASCII names; `ce-*`, `content-type` and `busbar-*` are
    /// refused by `build`).
    pub headers: Option<Headers>,
}

impl PublishOptions {
    /// No option set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`PublishOptions::id`].
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets [`PublishOptions::event_type`].
    pub fn event_type(mut self, event_type: impl Into<String>) -> Self {
        self.event_type = Some(event_type.into());
        self
    }

    /// Sets [`PublishOptions::content_type`].
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets [`PublishOptions::correlation_id`].
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Sets [`PublishOptions::classification`].
    pub fn classification(mut self, value: impl Into<String>) -> Self {
        self.classification = Some(value.into());
        self
    }

    /// Sets [`PublishOptions::traceparent`].
    pub fn traceparent(mut self, value: impl Into<String>) -> Self {
        self.traceparent = Some(value.into());
        self
    }

    /// Sets [`PublishOptions::tracestate`].
    pub fn tracestate(mut self, value: impl Into<String>) -> Self {
        self.tracestate = Some(value.into());
        self
    }

    /// Adds one user header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers
            .get_or_insert_with(Headers::new)
            .insert(name.into(), value.into());
        self
    }

    /// Whether no option is set: such a publish of a non-JSON payload takes the bus's fast
    /// path (`EventBus::publish`), which builds the event without a builder.
    pub fn is_empty(&self) -> bool {
        *self == PublishOptions::default()
    }

    /// Puts `payload` and these options into `builder`: the payload, `application/json`
    /// for a JSON payload, then each option set (a content type given replaces it).
    pub fn apply(self, builder: MessageBuilder, payload: Payload) -> MessageBuilder {
        let mut b = builder.data(payload.data);
        if payload.json {
            b = b.content_type(JSON_CONTENT_TYPE);
        }
        let PublishOptions {
            id,
            event_type,
            content_type,
            correlation_id,
            classification,
            traceparent,
            tracestate,
            headers,
        } = self;
        if let Some(v) = id {
            b = b.id(v);
        }
        if let Some(v) = event_type {
            b = b.event_type(v);
        }
        if let Some(v) = content_type {
            b = b.content_type(v);
        }
        if let Some(v) = correlation_id {
            b = b.correlation_id(v);
        }
        if let Some(v) = classification {
            b = b.classification(v);
        }
        if let Some(v) = traceparent {
            b = b.traceparent(v);
        }
        if let Some(v) = tracestate {
            b = b.tracestate(v);
        }
        if let Some(h) = headers {
            b = b.headers(h);
        }
        b
    }

    /// The message `builder` (e.g. `bus.message(subject)`) builds with `payload` and these
    /// options: what `publish_with` sends, and what a binding hands `publish_durable`.
    pub fn build(self, builder: MessageBuilder, payload: Payload) -> Result<Message> {
        self.apply(builder, payload).build()
    }

    /// The reply to `request` with `payload` and these options: it goes to the request's
    /// `reply_to` and echoes its correlation id (unless the options set another).
    pub fn reply(self, request: &Message, payload: Payload) -> Result<Message> {
        self.apply(request.reply_builder()?, payload).build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, EventBus, InMemoryBus};

    #[test]
    fn a_json_payload_is_marked_unless_the_options_say_otherwise() {
        let m = PublishOptions::new()
            .apply(Message::builder("a.b"), Payload::json("{}"))
            .build()
            .unwrap();
        assert_eq!(m.content_type(), Some(JSON_CONTENT_TYPE));
        let m = PublishOptions::new()
            .content_type("application/cloudevents+json")
            .apply(Message::builder("a.b"), Payload::json("{}"))
            .build()
            .unwrap();
        assert_eq!(m.content_type(), Some("application/cloudevents+json"));
        let m = PublishOptions::new()
            .apply(Message::builder("a.b"), Payload::bytes("x"))
            .build()
            .unwrap();
        assert_eq!(m.content_type(), None);
    }

    #[test]
    fn every_option_reaches_the_message() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let m = PublishOptions::new()
            .id("e-1")
            .event_type("order.created")
            .content_type("text/plain")
            .correlation_id("c-1")
            .classification("phi")
            .traceparent(tp)
            .tracestate("k=v")
            .header("tenant", "t1")
            .apply(Message::builder("a.b"), Payload::bytes("hi"))
            .build()
            .unwrap();
        assert_eq!(m.id(), "e-1");
        assert_eq!(m.event_type(), "order.created");
        assert_eq!(m.content_type(), Some("text/plain"));
        assert_eq!(m.correlation_id(), Some("c-1"));
        assert_eq!(m.classification(), Some("phi"));
        assert_eq!(m.traceparent(), Some(tp));
        assert_eq!(m.tracestate(), Some("k=v"));
        assert_eq!(m.header("tenant"), Some("t1"));
        assert_eq!(m.data().as_ref(), b"hi");
        assert!(PublishOptions::new().is_empty());
        assert!(!PublishOptions::new().header("a", "b").is_empty());
    }

    #[test]
    fn bad_options_are_the_builders_errors() {
        let err = PublishOptions::new()
            .header("busbar-x", "1")
            .apply(Message::builder("a.b"), Payload::default())
            .build()
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
        let err = PublishOptions::new()
            .id("")
            .apply(Message::builder("a.b"), Payload::default())
            .build()
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
    }

    #[tokio::test]
    async fn publish_with_delivers_options_and_takes_the_fast_path_without() {
        let bus = InMemoryBus::new(Config::default()).unwrap();
        let mut sub = bus.subscribe("p.>").await.unwrap();
        bus.publish_with("p.a", Payload::bytes("plain"), PublishOptions::new())
            .await
            .unwrap();
        bus.publish_with("p.b", Payload::json("[1]"), PublishOptions::new().id("j-1"))
            .await
            .unwrap();
        let plain = sub.next().await.unwrap().unwrap();
        assert_eq!((plain.subject(), plain.content_type()), ("p.a", None));
        let json = sub.next().await.unwrap().unwrap();
        assert_eq!(json.id(), "j-1");
        assert_eq!(json.content_type(), Some(JSON_CONTENT_TYPE));
        let err = bus
            .publish_with("p.*", Payload::default(), PublishOptions::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_subject");
    }

    #[tokio::test]
    async fn a_reply_echoes_the_request_and_takes_options() {
        let bus = InMemoryBus::new(Config::default()).unwrap();
        let mut sub = bus.subscribe("svc").await.unwrap();
        let responder = tokio::spawn(async move {
            let req = sub.next().await.unwrap().unwrap();
            let reply = PublishOptions::new()
                .header("status", "ok")
                .reply(&req, Payload::json("{\"ok\":true}"))
                .unwrap();
            req.respond_message(reply).await.unwrap();
        });
        let reply = bus
            .request_with(
                "svc",
                Payload::bytes("q"),
                PublishOptions::new().id("req-1"),
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        responder.await.unwrap();
        assert_eq!(reply.correlation_id(), Some("req-1"));
        assert_eq!(reply.header("status"), Some("ok"));
        assert_eq!(reply.content_type(), Some(JSON_CONTENT_TYPE));
        let not_a_request = Message::builder("x").build().unwrap();
        let err = PublishOptions::new()
            .reply(&not_a_request, Payload::default())
            .unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
    }
}
