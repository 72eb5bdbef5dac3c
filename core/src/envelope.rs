//! The message envelope (docs/design.md §3): a CloudEvents 1.0 event with busbar's
//! extension attributes, user headers and the payload as [`Bytes`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use bytes::Bytes;

use crate::error::{quote, Error, Result};
use crate::subject::validate_subject;

/// Free user headers: name → value, sorted by name.
pub type Headers = BTreeMap<String, String>;

/// `source` of events whose publisher set none.
pub const DEFAULT_SOURCE: &str = "busbar";
/// `type` of events whose publisher set none.
pub const DEFAULT_TYPE: &str = "busbar.event";

pub(crate) static DEFAULT_SOURCE_ARC: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(DEFAULT_SOURCE));
static DEFAULT_TYPE_ARC: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from(DEFAULT_TYPE));

/// Publishes a reply on behalf of the bus a request came from.
#[async_trait::async_trait]
pub(crate) trait Replier: Send + Sync {
    async fn send_reply(&self, reply: Message) -> Result<()>;
}

/// One event. The attributes every event has are held inline and the rest behind one
/// shared pointer, so making a message allocates nothing beyond its parts and cloning
/// one for each subscriber copies no string and no payload byte.
#[derive(Clone)]
pub struct Message {
    topic: Arc<Topic>,
    data: Bytes,
    id: EventId,
    time: SystemTime,
    /// `None` when every optional attribute is unset and `type` is the default.
    attrs: Option<Arc<Attrs>>,
    replier: Option<Arc<dyn Replier>>,
}

/// Subject and source together: one shared pointer (one reference count to move per
/// copy) for all the messages a bus publishes on a subject.
#[derive(Debug)]
pub(crate) struct Topic {
    subject: Box<str>,
    source: Arc<str>,
}

impl Topic {
    /// `subject` must already be valid.
    pub(crate) fn new(subject: &str, source: Arc<str>) -> Self {
        debug_assert!(crate::subject::validate_dead_letter_subject(subject).is_ok());
        Topic {
            subject: subject.into(),
            source,
        }
    }
}

/// The attributes an event may lack.
#[derive(Clone, Default, PartialEq)]
struct Attrs {
    event_type: Option<Arc<str>>,
    content_type: Option<String>,
    correlation_id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    classification: Option<String>,
    keyid: Option<String>,
    reply_to: Option<String>,
    headers: Headers,
}

static NO_HEADERS: Headers = BTreeMap::new();

/// Everything a builder sets, before it is split into a [`Message`].
#[derive(Clone)]
struct Envelope {
    id: EventId,
    source: Arc<str>,
    event_type: Arc<str>,
    subject: Box<str>,
    time: SystemTime,
    content_type: Option<String>,
    correlation_id: Option<String>,
    traceparent: Option<String>,
    tracestate: Option<String>,
    classification: Option<String>,
    keyid: Option<String>,
    reply_to: Option<String>,
    headers: Headers,
    data: Bytes,
}

impl Envelope {
    /// Trims every attribute and header value as a NATS header block does (leading and
    /// trailing `char::is_whitespace`); allocates only for a value that changes.
    fn trim_values(&mut self) {
        fn shared(s: &mut Arc<str>) {
            if s.trim() != &**s {
                *s = Arc::from(s.trim());
            }
        }
        fn owned(s: &mut String) {
            let end = s.trim_end().len();
            s.truncate(end);
            let start = s.len() - s.trim_start().len();
            s.drain(..start);
        }
        shared(&mut self.source);
        shared(&mut self.event_type);
        if let EventId::Given(id) = &mut self.id {
            shared(id);
        }
        let e = self;
        for value in [
            &mut e.content_type,
            &mut e.correlation_id,
            &mut e.traceparent,
            &mut e.tracestate,
            &mut e.classification,
            &mut e.keyid,
        ]
        .into_iter()
        .flatten()
        {
            owned(value);
        }
        e.headers.values_mut().for_each(owned);
    }
}

/// An event id: generated ids are kept inline, so making one allocates nothing.
#[derive(Clone)]
enum EventId {
    Generated([u8; 36]),
    Given(Arc<str>),
}

thread_local! {
    /// Per thread: the millisecond of the last id and its counter (UUIDv7 monotonic
    /// method 1 of RFC 9562 §6.2), so ids made on one thread sort in creation order.
    static LAST_STAMP: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// 42-bit counter per millisecond, started at a random value below 2^41 so it has room.
const COUNTER_BITS: u32 = 42;

impl EventId {
    /// A UUIDv7 id and the time it carries, from one clock read. Uniqueness across
    /// threads and processes comes from the random counter start and 32 random bits.
    fn generate() -> (Self, SystemTime) {
        let now = SystemTime::now();
        let mut millis = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let counter = LAST_STAMP.with(|last| {
            let (last_ms, last_counter) = last.get();
            let counter = if millis <= last_ms && last_counter + 1 < (1 << COUNTER_BITS) {
                millis = last_ms;
                last_counter + 1
            } else {
                if millis <= last_ms {
                    millis = last_ms + 1; // counter exhausted: borrow the next millisecond
                }
                rand::random::<u64>() >> (64 - COUNTER_BITS + 1)
            };
            last.set((millis, counter));
            counter
        });
        let tail: u32 = rand::random();
        let c = counter;
        let mut bytes = [
            (c >> 38) as u8 & 0x0f, // the builder puts the version in the high nibble
            (c >> 30) as u8,
            (c >> 24) as u8 & 0x3f, // and the variant in the two high bits
            (c >> 16) as u8,
            (c >> 8) as u8,
            c as u8,
            0,
            0,
            0,
            0,
        ];
        bytes[6..].copy_from_slice(&tail.to_be_bytes());
        let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &bytes).into_uuid();
        let mut buf = [0u8; 36];
        uuid.hyphenated().encode_lower(&mut buf);
        (EventId::Generated(buf), now)
    }

    fn as_str(&self) -> &str {
        match self {
            // Only ever filled by `encode_lower`, which writes ASCII.
            EventId::Generated(buf) => std::str::from_utf8(buf).unwrap_or_default(),
            EventId::Given(s) => s,
        }
    }
}

/// Builds a [`Message`]; `build` validates it and fills `id` (UUIDv7) and `time`.
#[derive(Clone)]
pub struct MessageBuilder {
    env: Envelope,
    id_set: bool,
    /// A user header named with busbar's own prefix, refused by `build`.
    reserved: Option<String>,
    /// Made by [`Message::to_builder`]: a copy of a message that exists (a masked or
    /// dead-lettered one), which keeps the trace context it has rather than taking the
    /// current span's (feature `otel`).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    copy: bool,
}

/// Prefix of the headers busbar itself sets (dead letters, flushes); a user header
/// may not start with it.
pub const RESERVED_HEADER_PREFIX: &str = "busbar-";

/// Header of a dead-lettered message: why it was dead-lettered.
pub const DLQ_REASON: &str = "busbar-dlq-reason";
/// Header of a dead-lettered message: how many delivery attempts were made.
pub const DLQ_ATTEMPTS: &str = "busbar-dlq-attempts";
/// Header of a dead-lettered message: the stream it came from.
pub const DLQ_STREAM: &str = "busbar-dlq-stream";
/// Header of a dead-lettered message: its sequence in that stream.
pub const DLQ_SEQUENCE: &str = "busbar-dlq-sequence";
/// Header of a dead-lettered message: the consumer that gave up on it.
pub const DLQ_CONSUMER: &str = "busbar-dlq-consumer";
/// Header of a dead-lettered message: the subject it was published to (the policy
/// layer applies that subject's rules and restrictions to the dead letter too).
pub const DLQ_SUBJECT: &str = "busbar-dlq-subject";

fn is_reserved_name(name: &str) -> bool {
    name.len() >= RESERVED_HEADER_PREFIX.len()
        && name.as_bytes()[..RESERVED_HEADER_PREFIX.len()]
            .eq_ignore_ascii_case(RESERVED_HEADER_PREFIX.as_bytes())
}

/// A fresh event id: a UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    EventId::generate().0.as_str().to_owned()
}

impl Message {
    /// Starts a message to `subject`.
    pub fn builder(subject: impl Into<String>) -> MessageBuilder {
        MessageBuilder {
            env: Envelope {
                id: EventId::Given("".into()),
                source: DEFAULT_SOURCE_ARC.clone(),
                event_type: DEFAULT_TYPE_ARC.clone(),
                subject: subject.into().into_boxed_str(),
                time: SystemTime::UNIX_EPOCH,
                content_type: None,
                correlation_id: None,
                traceparent: None,
                tracestate: None,
                classification: None,
                keyid: None,
                reply_to: None,
                headers: Headers::new(),
                data: Bytes::new(),
            },
            id_set: false,
            reserved: None,
            copy: false,
        }
    }

    /// A new event with only the required attributes: the fast path of `publish`.
    /// `subject` must already be valid (the caller shares one validated copy).
    pub(crate) fn event(topic: Arc<Topic>, data: Bytes) -> Message {
        let (id, time) = EventId::generate();
        // Inside a span, once `otel::instrument()` ran: the span's context (feature `otel`).
        #[cfg(feature = "otel")]
        let attrs = crate::otel_context::current().map(|(traceparent, tracestate)| {
            Arc::new(Attrs {
                traceparent: Some(traceparent),
                tracestate,
                ..Attrs::default()
            })
        });
        #[cfg(not(feature = "otel"))]
        let attrs = None;
        Message {
            topic,
            data,
            id,
            time,
            attrs,
            replier: None,
        }
    }

    /// A builder holding every attribute of this message (a new `id` is *not* generated).
    pub fn to_builder(&self) -> MessageBuilder {
        let attrs = self.attrs.as_deref().cloned().unwrap_or_default();
        MessageBuilder {
            env: Envelope {
                id: self.id.clone(),
                source: self.topic.source.clone(),
                event_type: attrs.event_type.unwrap_or_else(|| DEFAULT_TYPE_ARC.clone()),
                subject: self.topic.subject.clone(),
                time: self.time,
                content_type: attrs.content_type,
                correlation_id: attrs.correlation_id,
                traceparent: attrs.traceparent,
                tracestate: attrs.tracestate,
                classification: attrs.classification,
                keyid: attrs.keyid,
                reply_to: attrs.reply_to,
                headers: attrs.headers,
                data: self.data.clone(),
            },
            id_set: true,
            reserved: None,
            copy: true,
        }
    }

    fn attr(&self, get: impl FnOnce(&Attrs) -> &Option<String>) -> Option<&str> {
        self.attrs.as_deref().and_then(|a| get(a).as_deref())
    }

    /// CloudEvents `id`: unique per event; retries of one event keep it.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }
    /// CloudEvents `source`: who emitted the event.
    pub fn source(&self) -> &str {
        &self.topic.source
    }
    /// CloudEvents `type`: what kind of event this is.
    pub fn event_type(&self) -> &str {
        match self.attrs.as_deref().and_then(|a| a.event_type.as_deref()) {
            Some(t) => t,
            None => DEFAULT_TYPE,
        }
    }
    /// The subject the event was published to.
    pub fn subject(&self) -> &str {
        &self.topic.subject
    }
    /// CloudEvents `time`: when the event was created.
    pub fn time(&self) -> SystemTime {
        self.time
    }
    /// CloudEvents `datacontenttype`, e.g. `application/json`.
    pub fn content_type(&self) -> Option<&str> {
        self.attr(|a| &a.content_type)
    }
    /// `correlationid`: ties a reply to its request.
    pub fn correlation_id(&self) -> Option<&str> {
        self.attr(|a| &a.correlation_id)
    }
    /// W3C `traceparent`.
    pub fn traceparent(&self) -> Option<&str> {
        self.attr(|a| &a.traceparent)
    }
    /// W3C `tracestate`.
    pub fn tracestate(&self) -> Option<&str> {
        self.attr(|a| &a.tracestate)
    }
    /// `classification`: the traits of the message, e.g. `phi,pii`.
    pub fn classification(&self) -> Option<&str> {
        self.attr(|a| &a.classification)
    }
    /// `keyid`: the key that encrypted the protected fields.
    pub fn keyid(&self) -> Option<&str> {
        self.attr(|a| &a.keyid)
    }
    /// Where a reply goes, for requests.
    pub fn reply_to(&self) -> Option<&str> {
        self.attr(|a| &a.reply_to)
    }
    /// The free user headers.
    pub fn headers(&self) -> &Headers {
        self.attrs.as_deref().map_or(&NO_HEADERS, |a| &a.headers)
    }
    /// One user header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name).map(String::as_str)
    }
    /// The payload.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// What a durable stream deduplicates this message by (`Nats-Msg-Id` on NATS): its
    /// `id`, except for a dead letter, which is stored once per (stream, consumer,
    /// sequence) it was dead-lettered from, so two consumers' dead letters of one message
    /// are both kept.
    pub fn dedupe_id(&self) -> std::borrow::Cow<'_, str> {
        match (
            self.header(DLQ_STREAM),
            self.header(DLQ_CONSUMER),
            self.header(DLQ_SEQUENCE),
        ) {
            (Some(stream), Some(consumer), Some(seq)) => {
                format!("{}.dlq.{stream}.{consumer}.{seq}", self.id()).into()
            }
            _ => self.id().into(),
        }
    }

    /// Answers this request with `data`. The reply goes to `reply_to` and echoes the
    /// request's `correlationid`.
    pub async fn respond(&self, data: impl Into<Bytes>) -> Result<()> {
        let reply = self.reply_builder()?.data(data).build()?;
        self.respond_message(reply).await
    }

    /// A builder for the reply to this request: subject and `correlationid` are set.
    pub fn reply_builder(&self) -> Result<MessageBuilder> {
        let reply_to = self.reply_to().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "message {} on {:?} has no reply_to: it is not a request",
                self.id(),
                self.subject()
            ))
        })?;
        let correlation = self.correlation_id().unwrap_or(self.id()).to_owned();
        Ok(Message::builder(reply_to).correlation_id(correlation))
    }

    /// Sends a reply built with [`Message::reply_builder`].
    pub async fn respond_message(&self, reply: Message) -> Result<()> {
        if reply.reply_to().is_some() {
            // A reply is not itself a request; dropping this keeps the request chain finite.
            return Err(Error::InvalidArgument("a reply cannot carry reply_to".into()));
        }
        match &self.replier {
            Some(replier) => replier.send_reply(reply).await,
            None => Err(Error::InvalidArgument(format!(
                "message {} was not received from a bus, so it cannot be answered",
                self.id()
            ))),
        }
    }

    pub(crate) fn with_replier(mut self, replier: Arc<dyn Replier>) -> Self {
        self.replier = Some(replier);
        self
    }

    /// How this message is answered, if it came from a bus (the policy layer wraps it).
    pub(crate) fn replier(&self) -> Option<Arc<dyn Replier>> {
        self.replier.clone()
    }

    /// This message with other user headers (for the policy layer's header rules).
    pub(crate) fn with_headers(&self, headers: Headers) -> Message {
        let mut m = self.clone();
        let mut attrs = m.attrs.as_deref().cloned().unwrap_or_default();
        attrs.headers = headers;
        m.attrs = (attrs != Attrs::default()).then(|| Arc::new(attrs));
        m
    }

    /// This message with another payload and `keyid` (for the policy layer's masking and
    /// encryption); every other attribute, and the way to answer it, stay.
    pub(crate) fn with_payload(&self, data: Bytes, keyid: Option<&str>) -> Message {
        let mut m = self.clone();
        m.data = data;
        if m.keyid() != keyid {
            let mut attrs = m.attrs.as_deref().cloned().unwrap_or_default();
            attrs.keyid = keyid.map(str::to_owned);
            m.attrs = (attrs != Attrs::default()).then(|| Arc::new(attrs));
        }
        m
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("id", &self.id())
            .field("subject", &self.subject())
            .field("source", &self.source())
            .field("type", &self.event_type())
            .field("correlation_id", &self.correlation_id())
            .field("reply_to", &self.reply_to())
            .field("headers", self.headers())
            .field("data_len", &self.data.len())
            .finish_non_exhaustive()
    }
}

impl MessageBuilder {
    /// The payload.
    pub fn data(mut self, data: impl Into<Bytes>) -> Self {
        self.env.data = data.into();
        self
    }
    /// Sets `id` instead of generating one (keep it when retrying, so dedupe works).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.env.id = EventId::Given(Arc::from(id.into()));
        self.id_set = true;
        self
    }
    /// Sets `source`.
    pub fn source(mut self, source: impl Into<Arc<str>>) -> Self {
        self.env.source = source.into();
        self
    }
    /// Sets `type`.
    pub fn event_type(mut self, event_type: impl Into<Arc<str>>) -> Self {
        self.env.event_type = event_type.into();
        self
    }
    /// Sets `time` (default: when `build` runs).
    pub fn time(mut self, time: SystemTime) -> Self {
        self.env.time = time;
        self
    }
    /// Sets `datacontenttype`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.env.content_type = Some(content_type.into());
        self
    }
    /// Sets `correlationid`.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.env.correlation_id = Some(id.into());
        self
    }
    /// Sets W3C `traceparent`.
    pub fn traceparent(mut self, value: impl Into<String>) -> Self {
        self.env.traceparent = Some(value.into());
        self
    }
    /// Sets W3C `tracestate`.
    pub fn tracestate(mut self, value: impl Into<String>) -> Self {
        self.env.tracestate = Some(value.into());
        self
    }
    /// Sets `classification` (comma-separated classes, e.g. `phi,pii`).
    pub fn classification(mut self, value: impl Into<String>) -> Self {
        self.env.classification = Some(value.into());
        self
    }
    /// Sets `keyid`.
    pub fn keyid(mut self, value: impl Into<String>) -> Self {
        self.env.keyid = Some(value.into());
        self
    }
    /// Sets the subject a reply should go to.
    pub fn reply_to(mut self, subject: impl Into<String>) -> Self {
        self.env.reply_to = Some(subject.into());
        self
    }
    /// Removes the reply subject (a copy of a request that is not itself a request).
    pub fn clear_reply_to(mut self) -> Self {
        self.env.reply_to = None;
        self
    }
    /// Changes the subject (e.g. to forward a copy of the message elsewhere).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.env.subject = subject.into().into_boxed_str();
        self
    }
    /// Adds (or replaces) one user header. A name starting with `busbar-` is busbar's
    /// own and makes `build` fail with `invalid_argument`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        if self.reserved.is_none() && is_reserved_name(&name) {
            self.reserved = Some(name.clone());
        }
        self.env.headers.insert(name, value.into());
        self
    }
    /// Adds (or replaces) several user headers (see [`MessageBuilder::header`]).
    pub fn headers<K: Into<String>, V: Into<String>>(
        mut self,
        headers: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in headers {
            self = self.header(k, v);
        }
        self
    }
    /// Sets one of busbar's own `busbar-*` headers (dead letters).
    pub(crate) fn busbar_header(mut self, name: &str, value: impl Into<String>) -> Self {
        debug_assert!(is_reserved_name(name));
        self.env.headers.insert(name.to_owned(), value.into());
        self
    }

    /// Validates the subject, reply subject and headers; fills `id` and `time`. Values of
    /// attributes and headers lose leading and trailing whitespace, as they do when NATS
    /// carries them, so a message reads the same on both backends (docs/design.md §3).
    pub fn build(mut self) -> Result<Message> {
        if let Some(name) = &self.reserved {
            return Err(Error::InvalidArgument(format!(
                "header name {name:?} starts with {RESERVED_HEADER_PREFIX:?}, which busbar reserves for its own headers"
            )));
        }
        if self.env.headers.contains_key(DLQ_REASON) {
            // Only busbar sets `busbar-*` headers: a dead letter, `<prefix>.<subject>`.
            crate::subject::validate_dead_letter_subject(&self.env.subject)?;
        } else {
            validate_subject(&self.env.subject)?;
        }
        #[cfg(feature = "otel")]
        if self.env.traceparent.is_none() && !self.copy {
            // A new message inside a span, once `otel::instrument()` ran: the span's context.
            if let Some((traceparent, tracestate)) = crate::otel_context::current() {
                self.env.traceparent = Some(traceparent);
                self.env.tracestate = tracestate;
            }
        }
        self.env.trim_values();
        if let Some(reply_to) = &self.env.reply_to {
            validate_subject(reply_to)?;
        }
        if self.id_set {
            let id = self.env.id.as_str();
            check_attr("id", id)?;
            if id.is_empty() {
                return Err(Error::InvalidArgument("attribute id must not be empty".into()));
            }
            if self.env.time == SystemTime::UNIX_EPOCH {
                self.env.time = SystemTime::now();
            }
        } else {
            let (id, now) = EventId::generate();
            self.env.id = id;
            if self.env.time == SystemTime::UNIX_EPOCH {
                self.env.time = now;
            }
        }
        if self.env.source.is_empty() {
            return Err(Error::InvalidArgument(
                "attribute source must not be empty".into(),
            ));
        }
        if self.env.event_type.is_empty() {
            return Err(Error::InvalidArgument("attribute type must not be empty".into()));
        }
        let e = &self.env;
        check_attr("source", &e.source)?;
        check_attr("type", &e.event_type)?;
        for (name, value) in [
            ("datacontenttype", &e.content_type),
            ("correlationid", &e.correlation_id),
            ("traceparent", &e.traceparent),
            ("tracestate", &e.tracestate),
            ("classification", &e.classification),
            ("keyid", &e.keyid),
        ] {
            if let Some(v) = value {
                check_attr(name, v)?;
            }
        }
        for (name, value) in &e.headers {
            check_header(name, value)?;
        }
        let e = self.env;
        let event_type = (&*e.event_type != DEFAULT_TYPE).then_some(e.event_type);
        let attrs = Attrs {
            event_type,
            content_type: e.content_type,
            correlation_id: e.correlation_id,
            traceparent: e.traceparent,
            tracestate: e.tracestate,
            classification: e.classification,
            keyid: e.keyid,
            reply_to: e.reply_to,
            headers: e.headers,
        };
        let has_attrs = attrs != Attrs::default();
        Ok(Message {
            topic: Arc::new(Topic {
                subject: e.subject,
                source: e.source,
            }),
            data: e.data,
            id: e.id,
            time: e.time,
            attrs: has_attrs.then(|| Arc::new(attrs)),
            replier: None,
        })
    }
}

/// Header names that carry envelope attributes on the wire and so cannot be user headers.
pub(crate) const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "nats-msg-id",
    "busbar-flush",
    "ce-specversion",
    "ce-id",
    "ce-source",
    "ce-type",
    "ce-subject",
    "ce-time",
    "ce-datacontenttype",
    "ce-correlationid",
    "ce-traceparent",
    "ce-tracestate",
    "ce-classification",
    "ce-keyid",
];

fn check_attr(name: &str, value: &str) -> Result<()> {
    if value.chars().any(|c| c == '\r' || c == '\n' || c == '\0') {
        return Err(Error::InvalidArgument(format!(
            "attribute {name} = {} contains a line break or NUL, which would corrupt the header block",
            quote(value)
        )));
    }
    Ok(())
}

fn check_header(name: &str, value: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidArgument("a header name must not be empty".into()));
    }
    if let Some(bad) = name.chars().find(|c| !c.is_ascii_graphic() || *c == ':') {
        return Err(Error::InvalidArgument(format!(
            "header name {} contains {bad:?}; names are printable ASCII without ':' or spaces",
            quote(name)
        )));
    }
    if RESERVED_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name)) {
        return Err(Error::InvalidArgument(format!(
            "header name {} is reserved for an envelope attribute; set the attribute instead",
            quote(name)
        )));
    }
    check_attr(&format!("header {}", quote(name)), value)
}

/// The NATS wire mapping (CloudEvents binary content mode): pure functions, no I/O.
pub mod codec;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_refuses_bad_headers_and_subjects() {
        let cases: Vec<(MessageBuilder, &str)> = vec![
            (Message::builder("a.*"), "invalid_subject"),
            (Message::builder("a").reply_to("x y"), "invalid_subject"),
            (Message::builder("a").header("ce-id", "1"), "invalid_argument"),
            (
                Message::builder("a").header("Content-Type", "x"),
                "invalid_argument",
            ),
            (Message::builder("a").header("bad name", "x"), "invalid_argument"),
            (Message::builder("a").header("", "x"), "invalid_argument"),
            (
                Message::builder("a").header("busbar-dlq-reason", "x"),
                "invalid_argument",
            ),
            (
                Message::builder("a").headers([("BusBar-Anything", "x")]),
                "invalid_argument",
            ),
            (
                Message::builder("a").header("x", "line\r\nInjected: 1"),
                "invalid_argument",
            ),
            (Message::builder("a").source(""), "invalid_argument"),
            (Message::builder("a").id(""), "invalid_argument"),
            (Message::builder("a").traceparent("a\nb"), "invalid_argument"),
        ];
        for (b, code) in cases {
            let err = b.build().unwrap_err();
            assert_eq!(err.code(), code, "{err}");
        }
    }

    #[test]
    fn ids_are_uuid_v7_unique_and_ordered_per_thread() {
        let ids: Vec<String> = (0..100_000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids, "unique, and sorted in creation order");
        let before = SystemTime::now();
        let (id, time) = EventId::generate();
        let uuid = uuid::Uuid::parse_str(id.as_str()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        assert_eq!(uuid.get_variant(), uuid::Variant::RFC4122);
        let (secs, nanos) = uuid.get_timestamp().unwrap().to_unix();
        let ms = secs * 1000 + nanos as u64 / 1_000_000;
        let time_ms = time.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis() as u64;
        assert_eq!(ms, time_ms, "the id carries the event's time");
        assert!(time >= before);
        // Other threads make other ids.
        let other: Vec<String> = std::thread::spawn(|| (0..1000).map(|_| new_id()).collect())
            .join()
            .unwrap();
        assert!(other.iter().all(|id| sorted.binary_search(id).is_err()));
    }
}
