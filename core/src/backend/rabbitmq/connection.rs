//! The connection of a RabbitMQ bus: its channels, exchange, counters and reply inbox,
//! and what every part of the backend does with them (publish, decode, bind a queue).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri, AMQPUserInfo};
use lapin::{Channel, Connection, ConnectionProperties, DefaultConnectionBuilder, ExchangeKind};
use tokio::sync::{broadcast, watch, Notify};

use super::log::Journal;
use super::{envelope, subjects};
use crate::backend::counters::Counters;
use crate::backend::reply::Inbox;
use crate::bus::ConnectionEvent;
use crate::config::{redact_url, split_url_credentials, Config};
use crate::envelope::codec::check_size;
use crate::envelope::{Message, Replier};
use crate::error::{Error, Result};
use crate::metrics::Instruments;

/// One AMQP connection and the channels the bus publishes on. A lost connection is
/// never revived: busbar's own loop ([`supervise`]) opens a new session and swaps it in.
pub(crate) struct Session {
    pub(crate) connection: Connection,
    /// Plain publishes and replies (no publisher confirms: at-most-once, as on NATS).
    pub(crate) publisher: Channel,
    /// Requests: publisher confirms with `mandatory`, so an unroutable request comes back
    /// (basic.return) before its confirm and fails with `no_responders`.
    pub(crate) confirmed: Channel,
    /// Which session this is: 0 the first, one more for each that replaced a lost one.
    pub(crate) generation: u64,
}

pub(crate) struct Inner {
    /// The session in use; replaced after a loss.
    session: RwLock<Arc<Session>>,
    /// Counts sessions: bumped when a new session replaces a lost one, and at close,
    /// waking whoever waits to re-attach to the broker.
    pub(crate) generation: watch::Sender<u64>,
    pub(crate) config: Config,
    pub(crate) exchange: lapin::types::ShortString,
    pub(crate) source: Arc<str>,
    /// Replies to this bus's requests (and its flush markers) arrive under it.
    pub(crate) inbox: Inbox<lapin::message::Delivery>,
    /// `_INBOX.<token>.`: the reply queue is bound to it plus `*`.
    pub(crate) inbox_prefix: String,
    pub(crate) replier: Arc<dyn Replier>,
    pub(crate) link: Arc<Link>,
    /// Durable streams: the exchange's journal as this bus has read it.
    pub(crate) journal: Journal,
    pub(crate) closed: AtomicBool,
    pub(crate) counters: Counters,
    /// What consumes on the session (subscriptions, the reply queue, the journal reader)
    /// and which session each is attached to: `Connected` waits for all of them.
    pub(crate) attachments: Arc<Attachments>,
}

/// The consumers of a bus, each by id with the generation of the session it consumes on.
/// After a loss the bus reports `Connected` only once every one of them is attached to
/// the new session (or after `connect_timeout_ms`, with an error event naming how many
/// are still trying): a request sent on `Connected` finds its responder's queue and this
/// bus's reply queue in place.
#[derive(Default)]
pub(crate) struct Attachments {
    on: Mutex<HashMap<u64, u64>>,
    next: AtomicU64,
    changed: Notify,
}

/// One consumer's entry in [`Attachments`], removed when it is dropped (the consumer's
/// task ended).
pub(crate) struct Attachment {
    id: u64,
    all: Arc<Attachments>,
}

impl Attachments {
    fn on(&self) -> std::sync::MutexGuard<'_, HashMap<u64, u64>> {
        self.on.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new consumer, counted as attached to `session`.
    pub(crate) fn enter(self: &Arc<Self>, session: &Session) -> Attachment {
        let id = self.next.fetch_add(1, Relaxed);
        self.on().insert(id, session.generation);
        Attachment {
            id,
            all: self.clone(),
        }
    }

    /// How many consumers are not yet attached to session `generation` (or a later one).
    fn behind(&self, generation: u64) -> usize {
        self.on().values().filter(|&&g| g < generation).count()
    }

    /// Waits until every consumer is attached to session `generation`, for at most
    /// `limit`; how many are still behind then.
    async fn settle(&self, generation: u64, limit: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let behind = self.behind(generation);
            if behind == 0 || tokio::time::timeout_at(deadline, changed).await.is_err() {
                return self.behind(generation);
            }
        }
    }
}

impl Attachment {
    /// The consumer is attached to `session` now.
    pub(crate) fn attached(&self, session: &Session) {
        if let Some(g) = self.all.on().get_mut(&self.id) {
            *g = (*g).max(session.generation);
        }
        self.all.changed.notify_waiters();
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        self.all.on().remove(&self.id);
        self.all.changed.notify_waiters();
    }
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

/// Opens a connection to `config.amqp_url`, its two publishing channels, and declares
/// the topic exchange `config.amqp_exchange`, all within `connect_timeout_ms`: a broker
/// that accepts the TCP connection and then answers nothing fails it with `backend`.
async fn open_session(config: &Config) -> Result<(Session, Events)> {
    let url = redact_url(&config.amqp_url);
    let limit = Duration::from_millis(config.connect_timeout_ms);
    match tokio::time::timeout(limit, open_session_unbounded(config, &url)).await {
        Ok(opened) => opened,
        Err(_) => Err(Error::Backend {
            message: format!(
                "connecting to RabbitMQ at {url}: no answer within connect_timeout_ms ({} ms)",
                config.connect_timeout_ms
            ),
            source: None,
        }),
    }
}

async fn open_session_unbounded(config: &Config, url: &str) -> Result<(Session, Events)> {
    // No lapin recovery: it sometimes never completed after a broker died mid-publish
    // (lapin 4.12.3); `supervise` opens a new connection instead.
    let properties =
        ConnectionProperties::default().with_connection_name(format!("busbar ({})", config.source).into());
    let (uri, tls) = target(config)?;
    let builder = DefaultConnectionBuilder::new()
        .map_err(|e| backend("starting the AMQP client".into(), e))?
        .with_uri(uri)
        .with_properties(properties)
        .with_tls_config(tls);
    let connection = builder
        .connect()
        .await
        .map_err(|e| backend(format!("connecting to RabbitMQ at {url}"), e))?;
    let events = Box::pin(connection.events_listener());
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
    publisher
        .exchange_declare(
            config.amqp_exchange.as_str().into(),
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
    let session = Session {
        connection,
        publisher,
        confirmed,
        generation: 0,
    };
    Ok((session, events))
}

/// Where and how to connect: `amqp_url` with `amqp_user`/`amqp_password` put in, and the
/// TLS files read. Settings that contradict each other are `invalid_argument`, and so is
/// a file that cannot be read (named, never its contents).
fn target(config: &Config) -> Result<(AMQPUri, OwnedTLSConfig)> {
    let shown = redact_url(&config.amqp_url);
    let mut uri: AMQPUri = config.amqp_url.parse().map_err(|_| {
        Error::InvalidArgument(format!(
            "amqp_url {shown} is not an AMQP URL (amqp://user:password@host:port/vhost, amqps:// for TLS)"
        ))
    })?;
    if let (Some(user), Some(password)) = (&config.amqp_user, &config.amqp_password) {
        if split_url_credentials(&config.amqp_url)?.1.is_some() {
            return Err(Error::InvalidArgument(format!(
                "amqp_url {shown} carries credentials and amqp_user is set too; give them once"
            )));
        }
        uri.authority.userinfo = AMQPUserInfo {
            username: user.clone(),
            password: password.clone(),
        };
    }
    if config.amqp_require_tls && uri.scheme != AMQPScheme::AMQPS {
        return Err(Error::InvalidArgument(format!(
            "amqp_require_tls is set and amqp_url {shown} is not amqps://"
        )));
    }
    let read = |key: &str, path: &str| {
        std::fs::read(path).map_err(|e| Error::InvalidArgument(format!("{key} {path:?} cannot be read: {e}")))
    };
    let mut tls = OwnedTLSConfig::default();
    if let Some(ca) = &config.amqp_tls_ca {
        let pem = String::from_utf8(read("amqp_tls_ca", ca)?)
            .map_err(|_| Error::InvalidArgument(format!("amqp_tls_ca {ca:?} is not a PEM file")))?;
        tls.cert_chain = Some(pem);
    }
    if let (Some(cert), Some(key)) = (&config.amqp_tls_cert, &config.amqp_tls_key) {
        tls.identity = Some(OwnedIdentity::PKCS8 {
            pem: read("amqp_tls_cert", cert)?,
            key: read("amqp_tls_key", key)?,
        });
    }
    Ok((uri, tls))
}

type Events = std::pin::Pin<Box<dyn futures_core::Stream<Item = lapin::Event> + Send>>;

/// First and longest pause between reconnection attempts (as the NATS client's).
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Connects to `config.amqp_url` and declares the topic exchange `config.amqp_exchange`.
pub(crate) async fn connect(config: Config) -> Result<Arc<Inner>> {
    config.check()?;
    let (session, events) = open_session(&config).await?;
    let inbox_prefix = format!("_INBOX.{}.", crate::backend::reply::token());
    let counters = Counters::default();
    let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
        source: Arc::from(config.source.as_str()),
        exchange: config.amqp_exchange.as_str().into(),
        journal: Journal::new(&config.amqp_exchange),
        config,
        session: RwLock::new(Arc::new(session)),
        generation: watch::channel(0).0,
        inbox: Inbox::new(inbox_prefix.clone()),
        inbox_prefix,
        replier: Arc::new(WeakReplier(weak.clone())),
        link: Arc::new(Link::new(counters.instruments.clone())),
        closed: AtomicBool::new(false),
        counters,
        attachments: Arc::default(),
    });
    tokio::spawn(supervise(Arc::downgrade(&inner), events));
    Ok(inner)
}

/// The state of the link to the broker, as the application sees it: one `Disconnected`
/// (and one count in `disconnects`) per loss and one `Connected` per recovery.
pub(crate) struct Link {
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
    pub(crate) disconnects: AtomicU64,
    up: AtomicBool,
    /// The bus's instruments: the last error goes to `health()`.
    instruments: Arc<Instruments>,
}

impl Link {
    fn new(instruments: Arc<Instruments>) -> Self {
        Link {
            events: broadcast::channel(256).0,
            disconnects: AtomicU64::new(0),
            up: AtomicBool::new(true),
            instruments,
        }
    }

    /// Whether the connection is up now.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Acquire)
    }

    /// Counts and logs `event` (metrics, `health()`), then tells the application.
    fn send(&self, event: ConnectionEvent) {
        Counters::connection_event(&self.instruments, &event);
        let _ = self.events.send(event);
    }

    /// The connection was lost (`why`); busbar is reconnecting.
    fn lost(&self, why: &str) {
        if self.up.swap(false, AcqRel) {
            self.disconnects.fetch_add(1, Relaxed);
            self.send(ConnectionEvent::Disconnected);
            self.send(ConnectionEvent::ClientError(why.to_owned()));
        }
    }

    /// A new connection is up.
    fn regained(&self) {
        if !self.up.swap(true, AcqRel) {
            self.send(ConnectionEvent::Connected);
        }
    }
}

/// Watches the session in use and replaces it once lost: a new connection, every 0.1 s
/// at first and at least every 2 s, for as long as it takes (as the NATS client does).
/// Subscriptions and the reply queue attach to the new session by themselves (they wait
/// on `generation`). Ends with the bus.
async fn supervise(bus: Weak<Inner>, mut events: Events) {
    loop {
        let Some(why) = lost(&bus, &mut events).await else {
            return;
        };
        let Some(link) = bus.upgrade().map(|b| b.link.clone()) else {
            return;
        };
        link.lost(&why);
        let mut pause = RECONNECT_MIN;
        loop {
            tokio::time::sleep(pause).await;
            let Some(config) = bus.upgrade().map(|b| b.config.clone()) else {
                return;
            };
            match open_session(&config).await {
                Ok((mut session, fresh)) => {
                    let Some(strong) = bus.upgrade() else { return };
                    if strong.closed.load(Acquire) {
                        let _ = session.connection.close(200, "busbar bus closed".into()).await;
                        return;
                    }
                    let generation = *strong.generation.borrow() + 1;
                    session.generation = generation;
                    *strong.session.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(session);
                    strong.generation.send_modify(|g| *g = (*g).max(generation));
                    let attachments = strong.attachments.clone();
                    drop(strong);
                    // Connected once every consumer is back on the new session.
                    let limit = Duration::from_millis(config.connect_timeout_ms);
                    let behind = attachments.settle(generation, limit).await;
                    if !open(&bus) {
                        return;
                    }
                    link.regained();
                    if behind > 0 {
                        link.send(ConnectionEvent::ClientError(format!(
                            "reconnected to RabbitMQ, but {behind} subscription(s) or reply queue(s) did not \
                             attach again within connect_timeout_ms ({} ms); they keep trying, and what is \
                             published to them meanwhile is not delivered",
                            config.connect_timeout_ms
                        )));
                    }
                    events = fresh;
                    break;
                }
                Err(e) => {
                    link.send(ConnectionEvent::ClientError(e.to_string()));
                    pause = (pause * 2).min(RECONNECT_MAX);
                }
            }
        }
    }
}

/// Waits until the session in use is lost (an error event, or a status that is no
/// longer connected), forwarding the connection's other events; why, or `None` once the
/// bus is closed or gone.
async fn lost(bus: &Weak<Inner>, events: &mut Events) -> Option<String> {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(lapin::Event::Error(e)) => return open(bus).then(|| e.to_string()),
                Some(lapin::Event::Connected) => {}
                Some(other) => {
                    let link = bus.upgrade()?.link.clone();
                    link.send(ConnectionEvent::from(other));
                }
                None => return open(bus).then(|| "the AMQP connection ended".to_owned()),
            },
            _ = tick.tick() => {
                let bus = bus.upgrade()?;
                if bus.closed.load(Acquire) {
                    return None;
                }
                if !bus.session().connection.status().connected() {
                    return Some("the connection to RabbitMQ was lost; reconnecting".to_owned());
                }
            }
        }
    }
}

/// Whether the bus is still there and not closed.
fn open(bus: &Weak<Inner>) -> bool {
    bus.upgrade().is_some_and(|b| !b.closed.load(Acquire))
}

impl Inner {
    /// The session in use.
    pub(crate) fn session(&self) -> Arc<Session> {
        self.session.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits, from generation `seen`, until there may be a session to attach to: a newer
    /// one, or after `retry` (the same one may have refused only a channel). `None` once
    /// the bus is closed or gone.
    pub(crate) async fn await_session(
        bus: &Weak<Inner>,
        seen: &mut watch::Receiver<u64>,
        retry: Duration,
    ) -> Option<Arc<Session>> {
        loop {
            tokio::select! {
                changed = seen.changed() => changed.ok()?,
                _ = tokio::time::sleep(retry) => {}
            }
            let bus = bus.upgrade()?;
            if bus.closed.load(Acquire) {
                return None;
            }
            let session = bus.session();
            if session.connection.status().connected() {
                return Some(session);
            }
        }
    }

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
                .session()
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
