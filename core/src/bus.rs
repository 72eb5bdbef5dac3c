//! The [`EventBus`] trait every backend implements, [`Subscription`], and [`connect`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;

use crate::bounds::MAX_HEADER_BLOCK;
use crate::config::{Backend, Config};
use crate::durable::{ConsumerConfig, DurableSubscription, PublishAck, StreamConfig, StreamInfo};
use crate::envelope::{Message, MessageBuilder};
use crate::error::{Error, Result};

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

/// Refuses `msg` when its payload is over `max` (`payload_too_large`, naming both sizes)
/// or its NATS header block is over [`MAX_HEADER_BLOCK`] (`invalid_argument`), the same
/// on both backends (docs/design.md §4). A NATS server counts payload and header block
/// together against its own `max_payload`; the NATS backend keeps [`MAX_HEADER_BLOCK`] of
/// the server's limit for headers, so a payload up to `max` always fits.
pub(crate) fn check_size(msg: &Message, max: usize) -> Result<()> {
    let size = msg.data().len();
    if size > max {
        return Err(Error::PayloadTooLarge { size, max });
    }
    let headers = crate::envelope::codec::header_block_len(msg);
    if headers > MAX_HEADER_BLOCK {
        return Err(Error::InvalidArgument(format!(
            "the header block of message {} is {headers} bytes (attributes and headers as NATS \
             carries them), over the limit of {MAX_HEADER_BLOCK} bytes",
            msg.id()
        )));
    }
    Ok(())
}

/// The live counters behind [`BusStats`], kept by every backend.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) rejected_replies: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
}

impl Counters {
    /// Counts what happened to one message handed to a subscription's queue.
    pub(crate) fn record(&self, pushed: &crate::queue::Pushed) {
        use crate::queue::Pushed;
        match pushed {
            Pushed::Queued => self.delivered.fetch_add(1, Relaxed),
            Pushed::Missed => self.missed.fetch_add(1, Relaxed),
            Pushed::Full(_) | Pushed::Closed => 0,
        };
    }

    /// Counts a message that arrived under the bus's inbox and was not taken as a reply.
    pub(crate) fn record_answer(&self, answer: crate::reply::Answer) {
        use crate::reply::Answer;
        match answer {
            Answer::Taken => 0,
            Answer::Refused => self.rejected_replies.fetch_add(1, Relaxed),
            Answer::Late => self.late_replies.fetch_add(1, Relaxed),
        };
    }

    pub(crate) fn snapshot(&self) -> BusStats {
        BusStats {
            published: self.published.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            missed: self.missed.load(Relaxed),
            late_replies: self.late_replies.load(Relaxed),
            rejected_replies: self.rejected_replies.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            // Kept by the backend's connection (see `NatsBus::stats`).
            disconnects: 0,
            subscriptions: self.subscriptions.load(Relaxed),
        }
    }
}

/// Counters of one subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Items queued to this subscription (undecodable messages included).
    pub delivered: u64,
    /// Messages it missed because its buffer was full (`lag` mode; on NATS also `block`,
    /// docs/design.md §4). Each gap is also reported in the stream by a lag notice.
    pub missed: u64,
    /// Messages waiting in its buffer now.
    pub pending: u64,
    /// Bytes (payloads and user headers) waiting in its buffer now.
    pub pending_bytes: u64,
    /// Messages that arrived but could not be decoded (a foreign producer's); each is an
    /// `Err(Error::Decode)` item of the stream, and delivery goes on after it.
    pub undecodable: u64,
    /// Whether it has missed a message since it last caught up.
    pub lagging: bool,
}

/// The backend's side of a subscription: what [`Subscription`] needs besides its stream.
#[async_trait::async_trait]
pub trait SubscriptionControl: Send + Sync {
    /// Stops delivery at once; buffered messages are discarded and the stream ends.
    async fn unsubscribe(&self) -> Result<()>;
    /// Stops new deliveries; the stream yields what it holds, then ends.
    async fn drain(&self) -> Result<()>;
    /// Counters of this subscription.
    fn stats(&self) -> SubscriptionStats;
}

/// The stream a backend hands to [`Subscription::new`].
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<Message>> + Send>>;

/// Messages matching a pattern, as a [`Stream`]. Items are `Ok(message)`, or
/// `Err(Error::Lagged)` as a notice that messages were missed (the stream goes on).
/// Dropping it unsubscribes.
pub struct Subscription {
    stream: MessageStream,
    control: Arc<dyn SubscriptionControl>,
    pattern: String,
    queue_group: Option<String>,
}

impl Subscription {
    /// Assembles a subscription; used by backends.
    pub fn new(
        stream: MessageStream,
        control: Arc<dyn SubscriptionControl>,
        pattern: impl Into<String>,
        queue_group: Option<String>,
    ) -> Self {
        Subscription {
            stream,
            control,
            pattern: pattern.into(),
            queue_group,
        }
    }

    /// The pattern this subscription matches.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The queue group, for queue subscriptions.
    pub fn queue_group(&self) -> Option<&str> {
        self.queue_group.as_deref()
    }

    /// The next item, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.stream.as_mut().poll_next(cx)).await
    }

    /// A handle that can unsubscribe or drain this subscription from another task,
    /// while this one waits in [`Subscription::next`].
    pub fn handle(&self) -> SubscriptionHandle {
        SubscriptionHandle(self.control.clone())
    }

    /// Stops delivery at once; buffered messages are discarded.
    pub async fn unsubscribe(&self) -> Result<()> {
        self.control.unsubscribe().await
    }

    /// Stops new deliveries; [`Subscription::next`] yields what is buffered, then `None`.
    pub async fn drain(&self) -> Result<()> {
        self.control.drain().await
    }

    /// Counters of this subscription.
    pub fn stats(&self) -> SubscriptionStats {
        self.control.stats()
    }
}

impl Stream for Subscription {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("queue_group", &self.queue_group)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Cloneable control of a [`Subscription`] (see [`Subscription::handle`]).
#[derive(Clone)]
pub struct SubscriptionHandle(Arc<dyn SubscriptionControl>);

impl SubscriptionHandle {
    /// See [`Subscription::unsubscribe`].
    pub async fn unsubscribe(&self) -> Result<()> {
        self.0.unsubscribe().await
    }
    /// See [`Subscription::drain`].
    pub async fn drain(&self) -> Result<()> {
        self.0.drain().await
    }
    /// See [`Subscription::stats`].
    pub fn stats(&self) -> SubscriptionStats {
        self.0.stats()
    }
}

/// Builds the bus that `config` describes.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let bus = busbar::connect(busbar::Config::default()).await?;
/// let mut sub = bus.subscribe("greetings.*").await?;
/// bus.publish("greetings.en", "hello".into()).await?;
/// let msg = sub.next().await.unwrap()?;
/// assert_eq!(&msg.data()[..], b"hello");
/// # Ok::<(), busbar::Error>(()) }).unwrap();
/// ```
pub async fn connect(config: Config) -> Result<Arc<dyn EventBus>> {
    config.check()?;
    if crate::policy::configured(&config) {
        // A policy, key ring, encryption or audit log wraps the backend (docs/design.md §6).
        return Ok(Arc::new(Box::pin(crate::policy::connect(config)).await?));
    }
    match config.backend {
        Backend::Memory => Ok(Arc::new(crate::memory::InMemoryBus::new(config)?)),
        #[cfg(feature = "nats")]
        Backend::Nats => Ok(Arc::new(crate::nats::NatsBus::connect(config).await?)),
        #[cfg(not(feature = "nats"))]
        Backend::Nats => Err(Error::Backend {
            message: format!(
                "backend \"nats\" (nats_url {}) needs busbar built with the \"nats\" feature; use backend \"memory\"",
                config.nats_url
            ),
            source: None,
        }),
        #[cfg(feature = "rabbitmq")]
        Backend::RabbitMq => Ok(Arc::new(
            crate::backend::rabbitmq::RabbitBus::connect(config).await?,
        )),
        #[cfg(not(feature = "rabbitmq"))]
        Backend::RabbitMq => Err(Error::Backend {
            message: "backend \"rabbitmq\" needs busbar built with the \"rabbitmq\" feature".into(),
            source: None,
        }),
    }
}

/// [`connect`] with [`Config::from_env`].
pub async fn connect_from_env() -> Result<Arc<dyn EventBus>> {
    connect(Config::from_env()?).await
}

/// Answers every request arriving on `subscription` with `handler`'s output, until the
/// subscription ends. Messages without `reply_to` are passed to the handler and the
/// output discarded. Returns how many requests were answered.
///
/// No single message stops the service: lag notices and messages that cannot be read
/// (a foreign producer's, counted in [`SubscriptionStats::undecodable`]) are skipped, and
/// a reply that cannot be sent to one requester (say, an invalid reply subject) is
/// dropped. Only a closed bus ends the loop early, with `closed`. Take
/// [`Subscription::handle`] first to read the subscription's counters while it serves.
pub async fn serve<F, Fut>(mut subscription: Subscription, mut handler: F) -> Result<u64>
where
    F: FnMut(Message) -> Fut + Send,
    Fut: Future<Output = Bytes> + Send,
{
    let mut answered = 0;
    while let Some(item) = subscription.next().await {
        // Notices (lag, undecodable input): counted on the subscription; the stream goes on.
        let Ok(request) = item else { continue };
        let has_reply = request.reply_to().is_some();
        let reply = handler(request.clone()).await;
        if has_reply {
            match request.respond(reply).await {
                Ok(()) => answered += 1,
                Err(e @ Error::Closed(_)) => return Err(e),
                Err(_) => {}
            }
        }
    }
    Ok(answered)
}
