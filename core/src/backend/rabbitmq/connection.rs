//! The connection of a RabbitMQ bus: its channels, exchange, counters and reply inbox,
//! and what every part of the backend does with them (publish, decode, bind a queue).

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

use super::{envelope, subjects};
use crate::backend::counters::Counters;
use crate::backend::reply::Inbox;
use crate::bus::ConnectionEvent;
use crate::config::{redact_url, Config};
use crate::envelope::codec::check_size;
use crate::envelope::{Message, Replier};
use crate::error::{Error, Result};

pub(crate) struct Inner {
    pub(crate) connection: Connection,
    /// Plain publishes and replies (no publisher confirms: at-most-once, as on NATS).
    pub(crate) publisher: Channel,
    /// Requests: publisher confirms with `mandatory`, so an unroutable request comes back
    /// (basic.return) before its confirm and fails with `no_responders`.
    pub(crate) confirmed: Channel,
    pub(crate) config: Config,
    pub(crate) exchange: lapin::types::ShortString,
    pub(crate) source: Arc<str>,
    /// Replies to this bus's requests (and its flush markers) arrive under it.
    pub(crate) inbox: Inbox<lapin::message::Delivery>,
    /// `_INBOX.<token>.`: the reply queue is bound to it plus `*`.
    pub(crate) inbox_prefix: String,
    pub(crate) replier: Arc<dyn Replier>,
    pub(crate) link: Arc<Link>,
    pub(crate) closed: AtomicBool,
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

/// Connects to `config.amqp_url` and declares the topic exchange `config.amqp_exchange`.
pub(crate) async fn connect(config: Config) -> Result<Arc<Inner>> {
    config.check()?;
    let url = redact_url(&config.amqp_url);
    // lapin reconnects by itself, for as long as it takes (as the NATS client does), every
    // 0.1 s at first and at least every 2 s, and replays the topology (exchange, queues,
    // bindings, consumers, prefetch, confirm mode).
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("busbar ({})", config.source).into())
        .configure_backoff(|b| {
            b.with_min_delay(Duration::from_millis(100))
                .with_max_delay(Duration::from_secs(2))
                .without_max_times()
        })
        .enable_auto_recover();
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
    let link = Arc::new(Link::new());
    tokio::spawn(forward_events(connection.events_listener(), link.clone()));
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
    let inbox_prefix = format!("_INBOX.{}.", crate::backend::reply::token());
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
        link,
        closed: AtomicBool::new(false),
        counters: Counters::default(),
    });
    tokio::spawn(watch(Arc::downgrade(&inner)));
    Ok(inner)
}

/// The state of the link to the broker, as the application sees it: one `Disconnected`
/// (and one count in `disconnects`) per loss and one `Connected` per recovery, whoever
/// notices first (lapin's connection events or a consumer of this bus).
pub(crate) struct Link {
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
    pub(crate) disconnects: AtomicU64,
    up: AtomicBool,
}

impl Link {
    fn new() -> Self {
        Link {
            events: broadcast::channel(256).0,
            disconnects: AtomicU64::new(0),
            up: AtomicBool::new(true),
        }
    }

    /// The connection was lost (`why`); lapin is reconnecting.
    pub(crate) fn lost(&self, why: &str) {
        if self.up.swap(false, AcqRel) {
            self.disconnects.fetch_add(1, Relaxed);
            let _ = self.events.send(ConnectionEvent::Disconnected);
            let _ = self.events.send(ConnectionEvent::ClientError(why.to_owned()));
        }
    }

    /// The connection is back, its topology replayed.
    pub(crate) fn regained(&self) {
        if !self.up.swap(true, AcqRel) {
            let _ = self.events.send(ConnectionEvent::Connected);
        }
    }
}

/// Watches the connection's state, which lapin's recovery changes without always
/// emitting an event: a loss and a recovery each reach the application once.
async fn watch(bus: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let Some(bus) = bus.upgrade() else { return };
        if bus.closed.load(Acquire) {
            return;
        }
        let status = bus.connection.status();
        if status.connected() {
            bus.link.regained();
        } else if status.reconnecting() || status.errored() {
            bus.link.lost("the connection to RabbitMQ was lost; reconnecting");
        }
    }
}

async fn forward_events(
    mut listener: impl futures_core::Stream<Item = lapin::Event> + Send + Unpin + 'static,
    link: Arc<Link>,
) {
    while let Some(event) = listener.next().await {
        match event {
            lapin::Event::Error(e) => link.lost(&e.to_string()),
            lapin::Event::Connected => link.regained(),
            other => {
                let _ = link.events.send(ConnectionEvent::from(other));
            }
        }
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

    pub(crate) async fn publish(&self, msg: &Message) -> Result<()> {
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

    /// Declares an auto-deleted queue `name`, exclusive to this
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
