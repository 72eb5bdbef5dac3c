//! The [`EventBus`] trait every backend implements and its plain types ([`ConnectionEvent`],
//! [`BusStats`]): the contract a service codes against. [`crate::connect`] builds one.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;

use crate::config::Backend;
use crate::durable::{ConsumerConfig, DurableSubscription, PublishAck, StreamConfig, StreamInfo};
use crate::envelope::{Message, MessageBuilder};
use crate::error::Result;
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

    /// A message builder to `subject` with this bus's configured `source`.
    fn message(&self, subject: &str) -> MessageBuilder;

    /// Counters of this bus.
    fn stats(&self) -> BusStats;

    /// `"memory"`, `"nats"` or `"rabbitmq"`.
    fn backend(&self) -> Backend;

    /// Connection changes from now on (disconnected, reconnected, slow consumer, …);
    /// `None` for a backend without a connection.
    fn connection_events(&self) -> Option<tokio::sync::broadcast::Receiver<ConnectionEvent>> {
        None
    }
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
    /// `decode` error item, failed its request, or was dead-lettered from its durable stream.
    pub undecodable: u64,
    /// Times the connection to the server was lost (NATS; async-nats reconnects by itself).
    /// Messages in flight at that moment may be lost without reaching any subscription:
    /// each loss is also a [`ConnectionEvent::Disconnected`].
    pub disconnects: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
}
