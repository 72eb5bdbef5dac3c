//! The [`EventBus`] trait every backend implements and its plain types ([`ConnectionEvent`],
//! [`BusStats`]): the contract a service codes against. [`crate::connect`] builds one.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Backend;
use crate::durable::{
    validate_name, ConsumerConfig, ConsumerInfo, DurableSubscription, PublishAck, StreamConfig, StreamInfo,
};
use crate::envelope::{Message, MessageBuilder};
use crate::error::{Error, Result};
use crate::metrics::{Health, Scrape};
use crate::publish::{Payload, PublishOptions};
use crate::subscription::Subscription;

/// A bus client. Object-safe: services hold an `Arc<dyn EventBus>` and switch
/// backends by configuration alone.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Publishes `data` to `subject` as a new event (at-most-once, fan-out).
    async fn publish(&self, subject: &str, data: Bytes) -> Result<()> {
        self.publish_message(self.message(subject).data(data).build()?)
            .await
    }

    /// Publishes a fully built message (headers, attributes, reply subject).
    async fn publish_message(&self, message: Message) -> Result<()>;

    /// Receives every message whose subject matches `pattern`.
    async fn subscribe(&self, pattern: &str) -> Result<Subscription>;

    /// Receives matching messages as one member of `group`: each message goes to one member.
    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription>;

    /// Sends a request and waits up to `timeout` for one reply. Fails at once with
    /// `no_responders` when nothing listens on `subject`.
    async fn request(&self, subject: &str, data: Bytes, timeout: Duration) -> Result<Message> {
        self.request_message(self.message(subject).data(data).build()?, timeout)
            .await
    }

    /// [`EventBus::request`] with a fully built message. Its `reply_to` is replaced by a
    /// fresh inbox; its `correlationid` is set to its `id` unless already set.
    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message>;

    /// Publishes `payload` to `subject` with `options` (attributes, headers; a JSON payload
    /// is marked `application/json`): what every binding's `publish` calls. Without
    /// options a non-JSON payload takes the fast path of [`EventBus::publish`].
    async fn publish_with(&self, subject: &str, payload: Payload, options: PublishOptions) -> Result<()> {
        if options.is_empty() && !payload.json {
            return self.publish(subject, payload.data).await;
        }
        self.publish_message(options.build(self.message(subject), payload)?)
            .await
    }

    /// [`EventBus::request`] with `options`, as [`EventBus::publish_with`]: what every
    /// binding's `request` calls.
    async fn request_with(
        &self,
        subject: &str,
        payload: Payload,
        options: PublishOptions,
        timeout: Duration,
    ) -> Result<Message> {
        self.request_message(options.build(self.message(subject), payload)?, timeout)
            .await
    }

    /// Returns once everything published before the call has reached the bus: on NATS, after
    /// a round trip through the server (so it has processed those messages).
    async fn flush(&self) -> Result<()>;

    /// Closes the bus: subscriptions end after yielding what they hold, pending requests
    /// fail with `closed`, later calls fail with `closed`.
    async fn close(&self) -> Result<()>;

    /// Ends the bus gracefully (nats-py's and nats.js's `drain`): waits until everything
    /// published before has reached the bus ([`EventBus::flush`]), then closes it, so every
    /// subscription ends after yielding what it holds and nothing published is lost.
    async fn drain(&self) -> Result<()> {
        self.flush().await?;
        self.close().await
    }

    /// Declares a durable stream over subject patterns (JetStream on NATS, a log in memory).
    /// Idempotent: a stream of that name that exists already is kept as it is.
    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo>;

    /// What a durable stream holds now.
    async fn stream_info(&self, name: &str) -> Result<StreamInfo>;

    /// Stores `message` in the durable stream whose subjects match it and returns once the
    /// broker has acknowledged it. Publishing the same `id` again inside the stream's
    /// duplicate window stores one copy (`PublishAck::duplicate`). Plain subscribers on
    /// the subject receive it too.
    async fn publish_durable(&self, message: Message) -> Result<PublishAck>;

    /// Opens durable consumer `config.name` on `config.stream` (created at `config.start`
    /// if new, resumed otherwise). Delivery is at-least-once: handlers must be idempotent.
    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription>;

    /// Every durable stream on the bus (on NATS, every JetStream stream of the account,
    /// dead-letter streams included), sorted by name, with what each holds now.
    /// `unsupported` on a backend without durable streams.
    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        Err(no_durable(self.backend(), "list_streams"))
    }

    /// Deletes durable stream `name` with its messages and consumers. A durable
    /// subscription still reading it yields one `backend` error item and waits for the
    /// stream to be declared again (docs/design.md §4). `invalid_argument` when no stream
    /// has that name.
    async fn delete_stream(&self, name: &str) -> Result<()> {
        validate_name("stream", name)?;
        Err(no_durable(self.backend(), "delete_stream"))
    }

    /// The durable consumers of stream `stream`, sorted by name. `invalid_argument` when
    /// no stream has that name.
    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        validate_name("stream", stream)?;
        Err(no_durable(self.backend(), "list_consumers"))
    }

    /// Where durable consumer `name` of stream `stream` stands now. `invalid_argument`
    /// when there is no such stream or consumer.
    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo> {
        validate_name("stream", stream)?;
        validate_name("consumer", name)?;
        Err(no_durable(self.backend(), "consumer_info"))
    }

    /// Deletes durable consumer `name` of stream `stream`: its position and unsettled
    /// deliveries are forgotten. A durable subscription still using it yields one
    /// `backend` error item and creates it again from its configured start
    /// (docs/design.md §4). `invalid_argument` when there is no such stream or consumer.
    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        validate_name("stream", stream)?;
        validate_name("consumer", name)?;
        Err(no_durable(self.backend(), "delete_consumer"))
    }

    /// A message builder to `subject` with this bus's configured `source`.
    fn message(&self, subject: &str) -> MessageBuilder;

    /// Counters of this bus.
    fn stats(&self) -> BusStats;

    /// This bus's metrics as OpenMetrics text, the format Prometheus scrapes
    /// (docs/guide/observability.md lists the series). A scrape reads counters the bus
    /// keeps anyway: metrics cost nothing on the publish path.
    fn metrics(&self) -> String {
        let mut scrape = Scrape::new();
        self.collect_metrics(&mut scrape);
        scrape.encode()
    }

    /// Adds this bus's series to `scrape` (what [`EventBus::metrics`] encodes). A backend
    /// adds its own counters after [`collect_common`]'s; a wrapper adds its own after its
    /// inner bus's.
    fn collect_metrics(&self, scrape: &mut Scrape) {
        collect_common(self, scrape);
    }

    /// Connection state, last error, pending requests and lagging subscriptions now.
    fn health(&self) -> Health {
        let mut health = Health::connected();
        health.subscriptions = self.stats().subscriptions;
        health
    }

    /// `"memory"`, `"nats"` or `"rabbitmq"`.
    fn backend(&self) -> Backend;

    /// Connection changes from now on (disconnected, reconnected, slow consumer, …);
    /// `None` for a backend without a connection.
    fn connection_events(&self) -> Option<tokio::sync::broadcast::Receiver<ConnectionEvent>> {
        None
    }
}

/// Publishes `items` (subject, payload, options) in order, each as
/// [`EventBus::publish_with`], and stops at the first that
/// fails: what a binding's batch publish calls, so a burst crosses the language boundary
/// once. Returns how many were published, and the error that stopped the batch (the
/// item at that index was not published; those after it were not tried).
pub async fn publish_batch<S: AsRef<str>>(
    bus: &dyn EventBus,
    items: impl IntoIterator<Item = (S, Payload, PublishOptions)>,
) -> (usize, Result<()>) {
    let mut published = 0;
    for (subject, payload, options) in items {
        if let Err(e) = bus.publish_with(subject.as_ref(), payload, options).await {
            return (published, Err(e));
        }
        published += 1;
    }
    (published, Ok(()))
}

/// The `unsupported` error of a durable-stream call on a backend without durable streams.
pub(crate) fn no_durable(backend: Backend, call: &str) -> Error {
    Error::Unsupported {
        feature: format!("durable streams ({call})"),
        backend: backend.as_str(),
    }
}

/// Adds the series every bus has to `scrape`: `busbar_info`, the [`BusStats`] counters
/// and the [`Health`] gauges.
pub fn collect_common<B: EventBus + ?Sized>(bus: &B, scrape: &mut Scrape) {
    let s = bus.stats();
    let health = bus.health();
    scrape.info(&bus.backend().to_string(), env!("CARGO_PKG_VERSION"));
    scrape.counter(
        "busbar_published",
        "Messages accepted by publish (requests and replies included).",
        s.published,
    );
    scrape.counter(
        "busbar_delivered",
        "Message copies queued to subscriptions.",
        s.delivered,
    );
    scrape.counter(
        "busbar_missed",
        "Message copies not queued because a subscription in lag mode was full.",
        s.missed,
    );
    scrape.counter(
        "busbar_late_replies",
        "Replies that arrived after their request had timed out (dropped).",
        s.late_replies,
    );
    scrape.counter(
        "busbar_rejected_replies",
        "Messages on a request's inbox without its correlation id (dropped).",
        s.rejected_replies,
    );
    scrape.counter(
        "busbar_undecodable",
        "Messages received that could not be decoded.",
        s.undecodable,
    );
    scrape.counter(
        "busbar_disconnects",
        "Times the connection to the server was lost.",
        s.disconnects,
    );
    scrape.gauge(
        "busbar_subscriptions",
        "Live subscriptions.",
        s.subscriptions as i64,
    );
    health.collect(scrape);
}

/// A change of a bus's connection to its server (the NATS backend reports them;
/// the in-memory bus has no connection).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionEvent {
    /// (Re)connected to a server.
    Connected,
    /// Lost the connection; async-nats reconnects by itself, buffering publishes meanwhile.
    Disconnected,
    /// The server is shutting down gracefully and asks clients to move.
    LameDuckMode,
    /// The connection is draining before it closes.
    Draining,
    /// The connection is closed for good.
    Closed,
    /// The client could not keep up and dropped messages of a subscription.
    SlowConsumer,
    /// The server reported an error (authorization, permissions, …).
    ServerError(String),
    /// The client hit an error of its own.
    ClientError(String),
    /// The circuit breaker of requests to this subject opened: they fail with
    /// `circuit_open` until the cool-down ends (`breaker_failures`, docs/design.md §5).
    CircuitOpen(String),
    /// The cool-down of this subject's breaker ended: one probe request goes through.
    CircuitHalfOpen(String),
    /// The probe succeeded: requests to this subject go through again.
    CircuitClosed(String),
}

impl ConnectionEvent {
    /// The kind as one stable word, the same in every language: `connected`,
    /// `disconnected`, `lame_duck`, `draining`, `closed`, `slow_consumer`, `server_error`,
    /// `client_error`, `circuit_open`, `circuit_half_open`, `circuit_closed`.
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectionEvent::Connected => "connected",
            ConnectionEvent::Disconnected => "disconnected",
            ConnectionEvent::LameDuckMode => "lame_duck",
            ConnectionEvent::Draining => "draining",
            ConnectionEvent::Closed => "closed",
            ConnectionEvent::SlowConsumer => "slow_consumer",
            ConnectionEvent::ServerError(_) => "server_error",
            ConnectionEvent::ClientError(_) => "client_error",
            ConnectionEvent::CircuitOpen(_) => "circuit_open",
            ConnectionEvent::CircuitHalfOpen(_) => "circuit_half_open",
            ConnectionEvent::CircuitClosed(_) => "circuit_closed",
        }
    }

    /// The server's or client's message of an error event, or the subject of a breaker's.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ConnectionEvent::ServerError(e)
            | ConnectionEvent::ClientError(e)
            | ConnectionEvent::CircuitOpen(e)
            | ConnectionEvent::CircuitHalfOpen(e)
            | ConnectionEvent::CircuitClosed(e) => Some(e),
            _ => None,
        }
    }
}

/// The next event of `events` (from [`EventBus::connection_events`]); `None` once the bus
/// is gone. A reader that fell so far behind that events were overwritten is told so by a
/// `ClientError` naming how many it missed, in their place: never silently.
pub async fn next_connection_event(
    events: &mut tokio::sync::broadcast::Receiver<ConnectionEvent>,
) -> Option<ConnectionEvent> {
    use tokio::sync::broadcast::error::RecvError;
    match events.recv().await {
        Ok(event) => Some(event),
        Err(RecvError::Lagged(missed)) => Some(ConnectionEvent::ClientError(format!(
            "{missed} connection events were missed: their reader fell behind"
        ))),
        Err(RecvError::Closed) => None,
    }
}

impl fmt::Display for ConnectionEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionEvent::Connected => f.write_str("connected"),
            ConnectionEvent::Disconnected => f.write_str("disconnected"),
            ConnectionEvent::LameDuckMode => f.write_str("server entered lame duck mode"),
            ConnectionEvent::Draining => f.write_str("draining"),
            ConnectionEvent::Closed => f.write_str("closed"),
            ConnectionEvent::SlowConsumer => f.write_str("slow consumer: messages were dropped"),
            ConnectionEvent::ServerError(e) => write!(f, "server error: {e}"),
            ConnectionEvent::ClientError(e) => write!(f, "client error: {e}"),
            ConnectionEvent::CircuitOpen(s) => write!(f, "circuit open for requests to {s:?}"),
            ConnectionEvent::CircuitHalfOpen(s) => write!(f, "circuit half-open: probing {s:?}"),
            ConnectionEvent::CircuitClosed(s) => write!(f, "circuit closed for requests to {s:?}"),
        }
    }
}

/// Counters of a bus since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BusStats {
    /// Messages accepted by `publish*` (requests and replies included).
    pub published: u64,
    /// Message copies queued to subscriptions.
    pub delivered: u64,
    /// Copies not queued because a subscription in `lag` mode was full.
    pub missed: u64,
    /// Replies that arrived after their request had timed out (dropped).
    pub late_replies: u64,
    /// Messages that arrived on a waiting request's inbox subject without that request's
    /// correlation id (forged, header-less, or from a responder that does not echo it):
    /// dropped, and the request goes on waiting (docs/design.md §5).
    pub rejected_replies: u64,
    /// Messages received that could not be decoded (a malformed header block from a foreign
    /// NATS peer, bad CloudEvents attributes): each one reached its subscription as a
    /// `decode` error item, failed its request, or was dead-lettered from its durable stream;
    /// on RabbitMQ also each entry of the durable journal that busbar would not write (a
    /// buggy or hostile peer's), which every bus skips (docs/design.md §4).
    pub undecodable: u64,
    /// Times the connection to the server was lost (NATS; async-nats reconnects by itself).
    /// Messages in flight at that moment may be lost without reaching any subscription:
    /// each loss is also a [`ConnectionEvent::Disconnected`].
    pub disconnects: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, InMemoryBus, Payload};

    #[tokio::test]
    async fn a_batch_is_published_in_order_and_stops_at_the_first_failure() {
        let bus = InMemoryBus::new(Config::default()).unwrap();
        let mut sub = bus.subscribe("b.>").await.unwrap();
        let items = [("b.1", "one"), ("b.2", "two"), ("b..bad", "x"), ("b.4", "four")]
            .map(|(s, d)| (s, Payload::bytes(d), PublishOptions::new().header("n", s)));
        let (published, result) = publish_batch(&bus, items).await;
        assert_eq!(published, 2);
        assert_eq!(result.unwrap_err().code(), "invalid_subject");
        for (subject, data) in [("b.1", "one"), ("b.2", "two")] {
            let m = futures_util::StreamExt::next(&mut sub).await.unwrap().unwrap();
            assert_eq!(
                (m.subject(), m.data().as_ref(), m.header("n")),
                (subject, data.as_bytes(), Some(subject))
            );
        }
        assert_eq!(bus.stats().published, 2, "nothing after the failure was tried");
        let (published, result) = publish_batch(&bus, Vec::<(String, Payload, PublishOptions)>::new()).await;
        assert_eq!((published, result.is_ok()), (0, true));
    }
}
