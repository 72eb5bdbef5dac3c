//! The RabbitMQ backend (lapin, AMQP 0-9-1): the same [`EventBus`] over a broker with
//! exchanges, bindings and queues.
//!
//! One topic exchange per bus (`amqp_exchange`, default `busbar`): subjects are routing
//! keys and patterns binding keys ([`subjects`]). Each subscription consumes its own
//! exclusive, auto-deleted queue; a queue group shares one queue among its members, so the
//! broker hands each message to one of them. Every subscription is pumped into busbar's
//! own bounded queue, so `block`/`lag`, the lag notice and the counters are those of the
//! other backends; in `block` mode the pump acknowledges a message only once it is queued,
//! so with the prefetch limit the broker (not the client) holds the backlog and nothing is
//! missed. Envelope mapping: [`envelope`]. Requests: [`request`]. Durable streams are
//! refused with `unsupported` ([`durable`]).

pub mod durable;
pub mod envelope;
mod pubsub;
mod request;
pub mod subjects;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::broadcast;

use crate::bus::{check_size, BusStats, ConnectionEvent, Counters, EventBus, Subscription};
use crate::config::{redact_url, Backend, Config};
use crate::durable::{ConsumerConfig, DurableSubscription, PublishAck, StreamConfig, StreamInfo};
use crate::envelope::{Message, MessageBuilder, Replier, Topic};
use crate::error::{Error, Result};
use crate::reply::Inbox;
use crate::subject::validate_subject;

/// The backend's name in errors.
pub(crate) const NAME: &str = "rabbitmq";

/// The RabbitMQ backend. Build with [`RabbitBus::connect`] or [`crate::connect`].
pub struct RabbitBus {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    connection: Connection,
    /// Plain publishes and replies (no publisher confirms: at-most-once, as on NATS).
    publisher: Channel,
    /// Requests: publisher confirms with `mandatory`, so an unroutable request comes back
    /// (basic.return) before its confirm and fails with `no_responders`.
    confirmed: Channel,
    pub(crate) config: Config,
    exchange: lapin::types::ShortString,
    source: Arc<str>,
    /// Replies to this bus's requests (and its flush markers) arrive under it.
    inbox: Inbox<lapin::message::Delivery>,
    /// `_INBOX.<token>.`: the reply queue is bound to it plus `*`.
    inbox_prefix: String,
    replier: Arc<dyn Replier>,
    events: broadcast::Sender<ConnectionEvent>,
    disconnects: Arc<AtomicU64>,
    closed: AtomicBool,
    pub(crate) counters: Counters,
}

/// `backend` error wrapping a lapin error.
pub(crate) fn backend(message: String, source: lapin::Error) -> Error {
    Error::Backend {
        message: format!("{message}: {source}"),
        source: Some(Box::new(source)),
    }
}

impl From<lapin::Event> for ConnectionEvent {
    fn from(event: lapin::Event) -> Self {
        match event {
            lapin::Event::Connected => ConnectionEvent::Connected,
            lapin::Event::ConnectionBlocked(reason) => {
                ConnectionEvent::ServerError(format!("the broker blocks publishing: {reason}"))
            }
            lapin::Event::ConnectionUnblocked => {
                ConnectionEvent::ServerError("the broker unblocked publishing".into())
            }
            lapin::Event::SendFlow(active) => {
                ConnectionEvent::ServerError(format!("the broker set flow to {active}"))
            }
            lapin::Event::Error(_) => ConnectionEvent::Disconnected,
            _ => ConnectionEvent::ClientError("unknown connection event".into()),
        }
    }
}

impl RabbitBus {
    /// Connects to `config.amqp_url` and declares the topic exchange `config.amqp_exchange`.
    pub async fn connect(config: Config) -> Result<Self> {
        config.check()?;
        let url = redact_url(&config.amqp_url);
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("busbar ({})", config.source).into());
        let connect = Connection::connect(&config.amqp_url, properties);
        let connection = match tokio::time::timeout(Duration::from_secs(5), connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(backend(format!("connecting to RabbitMQ at {url}"), e)),
            Err(_) => {
                return Err(Error::Backend {
                    message: format!("connecting to RabbitMQ at {url}: no answer within 5 s"),
                    source: None,
                })
            }
        };
        let (events, _) = broadcast::channel(256);
        let disconnects = Arc::new(AtomicU64::new(0));
        tokio::spawn(forward_events(
            connection.events_listener(),
            events.clone(),
            disconnects.clone(),
        ));
        let channel = || async {
            connection
                .create_channel()
                .await
                .map_err(|e| backend("opening an AMQP channel".into(), e))
        };
        let publisher = channel().await?;
        let confirmed = channel().await?;
        confirmed
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| backend("enabling publisher confirms".into(), e))?;
        let exchange: lapin::types::ShortString = config.amqp_exchange.as_str().into();
        publisher
            .exchange_declare(
                exchange.clone(),
                ExchangeKind::Topic,
                // Durable, and gone once nothing is bound to it (every connected bus binds
                // its reply queue), so test exchanges clean up after themselves.
                ExchangeDeclareOptions {
                    durable: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| {
                backend(
                    format!(
                        "declaring topic exchange {:?} (it may exist with other settings)",
                        config.amqp_exchange
                    ),
                    e,
                )
            })?;
        let inbox_prefix = format!("_INBOX.{}.", crate::reply::token());
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            source: Arc::from(config.source.as_str()),
            exchange,
            config,
            connection,
            publisher,
            confirmed,
            inbox: Inbox::new(inbox_prefix.clone()),
            inbox_prefix,
            replier: Arc::new(WeakReplier(weak.clone())),
            events,
            disconnects,
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        request::listen(&inner).await?;
        Ok(RabbitBus { inner })
    }
}

async fn forward_events(
    mut listener: impl futures_core::Stream<Item = lapin::Event> + Send + Unpin + 'static,
    events: broadcast::Sender<ConnectionEvent>,
    disconnects: Arc<AtomicU64>,
) {
    while let Some(event) = listener.next().await {
        if let lapin::Event::Error(e) = &event {
            disconnects.fetch_add(1, Relaxed);
            let _ = events.send(ConnectionEvent::ClientError(e.to_string()));
        }
        let _ = events.send(ConnectionEvent::from(event));
    }
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Acquire) {
            return Err(Error::Closed("bus"));
        }
        Ok(())
    }

    /// Runs `step` for at most `publish_timeout_ms`: a hung broker fails the call with
    /// `backend` instead of stalling it.
    pub(crate) async fn bounded<T>(
        &self,
        what: impl FnOnce() -> String,
        step: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let timeout = self.config.publish_timeout();
        match tokio::time::timeout(timeout, step).await {
            Ok(done) => done,
            Err(_) => Err(Error::Backend {
                message: format!(
                    "{}: RabbitMQ did not take it within publish_timeout_ms ({} ms); it may be hung or unreachable",
                    what(),
                    timeout.as_millis()
                ),
                source: None,
            }),
        }
    }

    async fn publish(&self, msg: &Message) -> Result<()> {
        self.check_open()?;
        check_size(msg, self.config.max_payload)?;
        let key = subjects::routing_key(msg.subject())?;
        let props = envelope::properties(msg, false)?;
        let what = || format!("publishing to {:?}", msg.subject());
        self.bounded(what, async {
            let confirm = self
                .publisher
                .basic_publish(
                    self.exchange.clone(),
                    key.into(),
                    BasicPublishOptions::default(),
                    msg.data(),
                    props,
                )
                .await
                .map_err(|e| backend(what(), e))?;
            // Not in confirm mode: resolves at once (awaited so nothing is left registered).
            confirm.await.map_err(|e| backend(what(), e))?;
            Ok(())
        })
        .await?;
        self.counters.published.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Declares an auto-deleted queue `name` (`""`: named by the broker), exclusive to this
    /// connection or shared, and binds it to the bus's exchange under `key`.
    pub(crate) async fn bound_queue(
        &self,
        channel: &Channel,
        name: &str,
        exclusive: bool,
        key: &str,
    ) -> lapin::Result<lapin::types::ShortString> {
        let options = QueueDeclareOptions {
            exclusive,
            auto_delete: true,
            ..Default::default()
        };
        let queue = channel
            .queue_declare(name.into(), options, FieldTable::default())
            .await?;
        let name = queue.name().clone();
        channel
            .queue_bind(
                name.clone(),
                self.exchange.clone(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(name)
    }

    /// Counts and decodes a delivery; a message with a reply subject can be answered.
    pub(crate) fn receive(&self, d: &lapin::message::Delivery, data: Vec<u8>) -> Result<Message> {
        let received = envelope::decode(d.routing_key.as_str(), &d.properties, data);
        match received {
            Ok(msg) if msg.reply_to().is_some() => Ok(msg.with_replier(self.replier.clone())),
            Ok(msg) => Ok(msg),
            Err(e) => {
                self.counters.undecodable.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }
}

struct WeakReplier(Weak<Inner>);

#[async_trait::async_trait]
impl Replier for WeakReplier {
    async fn send_reply(&self, reply: Message) -> Result<()> {
        let inner = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        inner.publish(&reply).await
    }
}

#[async_trait::async_trait]
impl EventBus for RabbitBus {
    async fn publish(&self, subject: &str, data: bytes::Bytes) -> Result<()> {
        validate_subject(subject)?;
        let topic = Arc::new(Topic::new(subject, self.inner.source.clone()));
        self.inner.publish(&Message::event(topic, data)).await
    }

    async fn publish_message(&self, message: Message) -> Result<()> {
        self.inner.publish(&message).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        pubsub::subscribe(&self.inner, pattern, None).await
    }

    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription> {
        pubsub::subscribe(&self.inner, pattern, Some(group)).await
    }

    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message> {
        request::request(&self.inner, message, timeout).await
    }

    async fn flush(&self) -> Result<()> {
        request::round_trip(&self.inner).await
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, AcqRel) {
            return Ok(());
        }
        self.inner.inbox.close_all();
        let _ = self.inner.events.send(ConnectionEvent::Closed);
        self.inner
            .connection
            .close(200, "busbar bus closed".into())
            .await
            .map_err(|e| backend("closing the AMQP connection".into(), e))
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.check_open()?;
        durable::declare_stream(config)
    }

    async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        self.inner.check_open()?;
        durable::stream_info(name)
    }

    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        self.inner.check_open()?;
        durable::publish_durable(&message)
    }

    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription> {
        self.inner.check_open()?;
        durable::durable_subscribe(config)
    }

    fn message(&self, subject: &str) -> MessageBuilder {
        Message::builder(subject).source(self.inner.source.clone())
    }

    fn stats(&self) -> BusStats {
        let mut stats = self.inner.counters.snapshot();
        stats.disconnects = self.inner.disconnects.load(Relaxed);
        stats
    }

    fn backend(&self) -> Backend {
        Backend::RabbitMq
    }

    fn connection_events(&self) -> Option<broadcast::Receiver<ConnectionEvent>> {
        Some(self.inner.events.subscribe())
    }
}
