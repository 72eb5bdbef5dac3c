//! The NATS backend (async-nats): the same [`EventBus`] over a NATS server.
//!
//! Messages travel in CloudEvents binary content mode (see [`crate::envelope::codec`]).
//! Each subscription is pumped by a task from async-nats into busbar's own bounded
//! queue, so back-pressure and lag are reported exactly as on the in-memory bus.
//! Requests use one wildcard inbox subscription per bus, so a late reply is seen,
//! dropped and counted, and the server's no-responders status fails a request at once.

mod connection;
mod jetstream;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::broadcast;

use super::counters::Counters;
use super::reply::Inbox;
use crate::bus::{collect_common, BusStats, ConnectionEvent, EventBus};
use crate::config::{redact_url, split_url_credentials, Backend, Config, UrlAuth};
use crate::durable::{
    dead_letter_stream, ConsumerConfig, ConsumerInfo, DurableSubscription, PublishAck, StreamConfig,
    StreamInfo,
};
use crate::envelope::{Message, MessageBuilder, Topic};
use crate::error::{Error, Result};
use crate::metrics::{Health, Scrape};
use crate::subject::validate_subject;
use crate::subscription::Subscription;
pub use connection::nats_headers;
use connection::{backend, payload_limit, route_replies, Inner, WeakReplier, CLIENT_BUFFER};

/// The NATS backend. Build with [`NatsBus::connect`] or [`crate::connect`].
pub struct NatsBus {
    inner: Arc<Inner>,
}

impl NatsBus {
    /// Connects to `config.nats_url` with the authentication and TLS settings of `config`.
    pub async fn connect(config: Config) -> Result<Self> {
        config.check()?;
        let (events, _) = broadcast::channel(256);
        let disconnects = Arc::new(AtomicU64::new(0));
        let gave_up = Arc::new(AtomicBool::new(false));
        let counters = Counters::default();
        // Credentials inside nats_url go to async-nats as options, never as part of an
        // address it could log (and 0.51 would not send them at all).
        let (url, url_auth) = split_url_credentials(&config.nats_url)?;
        if url_auth.is_some() && (config.nats_user.is_some() || config.nats_token.is_some()) {
            return Err(Error::InvalidArgument(format!(
                "nats_url {} carries credentials and nats_user/nats_token are set too; give them once",
                redact_url(&config.nats_url)
            )));
        }
        let servers = server_list(&url, &config)?;
        let mut attempt = 0;
        let client = loop {
            let options = options(
                &config,
                url_auth.clone(),
                &events,
                &disconnects,
                &gave_up,
                &counters,
            )
            .await?;
            match options.connect(servers.clone()).await {
                Ok(client) => break client,
                Err(e) if attempt < config.connect_retries && !refused(&e) => {
                    attempt += 1;
                    tokio::time::sleep(crate::backoff::delay(
                        attempt,
                        Duration::from_millis(config.reconnect_delay_ms),
                        Duration::from_millis(config.reconnect_max_delay_ms),
                    ))
                    .await;
                }
                Err(e) => {
                    let url = redact_url(&config.nats_url);
                    let rounds = match attempt {
                        0 => String::new(),
                        n => format!(" ({} rounds over the server list)", n + 1),
                    };
                    return Err(backend(format!("connecting to NATS at {url}{rounds}"), e));
                }
            }
        };
        let server_max = client.server_info().max_payload;
        let inbox_prefix = format!("{}.", client.new_inbox());
        let replies = client
            .subscribe(format!("{inbox_prefix}*"))
            .await
            .map_err(|e| backend("subscribing to this bus's reply inbox".into(), e))?;
        let js = async_nats::jetstream::new(client.clone());
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            js,
            client,
            source: Arc::from(config.source.as_str()),
            max_payload: payload_limit(config.max_payload, server_max),
            config,
            inbox: Inbox::new(inbox_prefix),
            replier: Arc::new(WeakReplier(weak.clone())),
            events,
            disconnects,
            gave_up,
            closed: AtomicBool::new(false),
            counters,
        });
        tokio::spawn(route_replies(replies, Arc::downgrade(&inner)));
        Ok(NatsBus { inner })
    }
}

/// The servers of `url` (one NATS URL, or several separated by commas), each checked: a
/// part that is not an address is `invalid_argument` naming it (without credentials).
fn server_list(url: &str, config: &Config) -> Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(|part| {
            let part = part.trim();
            let refused = |why: String| {
                Error::InvalidArgument(format!(
                    "nats_url {}: {} is not a NATS server address{why}",
                    redact_url(&config.nats_url),
                    crate::error::quote(part)
                ))
            };
            if part.is_empty() {
                return Err(refused(" (an empty part of the list)".into()));
            }
            part.parse::<async_nats::ServerAddr>()
                .map_err(|e| refused(format!(": {e}")))
        })
        .collect()
}

/// Whether the server refused this client's credentials: no retry can change that.
fn refused(e: &async_nats::ConnectError) -> bool {
    use async_nats::ConnectErrorKind as K;
    matches!(e.kind(), K::AuthorizationViolation | K::Authentication)
}

/// async-nats' options for `config`: the connection settings of docs/design.md §8, the
/// credentials and TLS, and the event callback feeding `events` and counting `disconnects`.
async fn options(
    config: &Config,
    url_auth: Option<UrlAuth>,
    events: &broadcast::Sender<ConnectionEvent>,
    disconnects: &Arc<AtomicU64>,
    gave_up: &Arc<AtomicBool>,
    counters: &Counters,
) -> Result<async_nats::ConnectOptions> {
    let (base, max) = (
        Duration::from_millis(config.reconnect_delay_ms),
        Duration::from_millis(config.reconnect_max_delay_ms),
    );
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("busbar ({})", config.source))
        .connection_timeout(Duration::from_millis(config.connect_timeout_ms))
        .subscription_capacity(CLIENT_BUFFER)
        .client_capacity(config.publish_buffer)
        .ping_interval(Duration::from_millis(config.ping_interval_ms))
        .max_reconnects(config.max_reconnects as usize)
        // The first attempt goes at once; then the backoff (async-nats counts from 1).
        .reconnect_delay_callback(move |attempts| {
            let retry = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
            if retry == 0 {
                Duration::ZERO
            } else {
                crate::backoff::delay(retry, base, max)
            }
        })
        .event_callback({
            let events = events.clone();
            let disconnects = disconnects.clone();
            let gave_up = gave_up.clone();
            let instruments = counters.instruments.clone();
            move |event| {
                match &event {
                    async_nats::Event::Disconnected => {
                        disconnects.fetch_add(1, Relaxed);
                    }
                    // Before anyone hears of it: from then on every call fails (§8).
                    async_nats::Event::ClientError(async_nats::ClientError::MaxReconnects) => {
                        gave_up.store(true, Release);
                    }
                    _ => {}
                }
                let event = ConnectionEvent::from(event);
                Counters::connection_event(&instruments, &event);
                let events = events.clone();
                async move {
                    let _ = events.send(event);
                }
            }
        });
    match url_auth {
        Some(UrlAuth::UserPassword(user, password)) => options = options.user_and_password(user, password),
        Some(UrlAuth::Token(token)) => options = options.token(token),
        None => {}
    }
    if let (Some(user), Some(password)) = (&config.nats_user, &config.nats_password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.nats_token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.nats_credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| backend(format!("reading NATS credentials file {path:?}"), e))?;
    }
    if let Some(ca) = &config.nats_tls_ca {
        options = options.add_root_certificates(ca.into());
    }
    if let (Some(cert), Some(key)) = (&config.nats_tls_cert, &config.nats_tls_key) {
        options = options.add_client_certificate(cert.into(), key.into());
    }
    if config.nats_require_tls {
        options = options.require_tls(true);
    }
    Ok(options)
}

#[async_trait::async_trait]
impl EventBus for NatsBus {
    async fn publish(&self, subject: &str, data: bytes::Bytes) -> Result<()> {
        validate_subject(subject)?;
        let topic = Arc::new(Topic::new(subject, self.inner.source.clone()));
        let msg = Message::event(topic, data);
        self.inner.publish(&msg).await
    }

    async fn publish_message(&self, message: Message) -> Result<()> {
        self.inner.publish(&message).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.inner.subscribe(pattern, None).await
    }

    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription> {
        self.inner.subscribe(pattern, Some(group)).await
    }

    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message> {
        let instruments = &self.inner.counters.instruments;
        instruments.request(self.inner.request(message, timeout)).await
    }

    async fn flush(&self) -> Result<()> {
        self.inner.round_trip().await
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, AcqRel) {
            return Ok(());
        }
        self.inner.inbox.close_all();
        // What was published before close reaches the server before close returns: async-nats's
        // drain only queues its command, so a process that exits right after close would lose
        // the last publishes (a reply, say). A server that takes nothing within
        // publish_timeout_ms fails close with `backend`, after the drain all the same.
        let flushed = self
            .inner
            .bounded(
                || "flushing what was published before closing".to_owned(),
                self.inner.client.flush(),
            )
            .await
            .and_then(|flush| {
                flush.map_err(|e| backend("flushing to the NATS server before closing".into(), e))
            });
        // Drain: subscriptions receive what is in flight, then the connection closes.
        let drained = self
            .inner
            .bounded(
                || "draining the NATS connection".to_owned(),
                self.inner.client.drain(),
            )
            .await
            .and_then(|drain| drain.map_err(|e| backend("draining the NATS connection".into(), e)));
        flushed.and(drained)
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.declare_stream(config).await
    }

    async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        self.inner.stream_info(name).await
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.inner.list_streams().await
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.inner.delete_stream(name).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.inner.list_consumers(stream).await
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo> {
        self.inner.consumer_info(stream, name).await
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        self.inner.delete_consumer(stream, name).await
    }

    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        self.inner.publish_durable(&message).await
    }

    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription> {
        self.inner.check_open()?;
        config.check()?;
        self.inner
            .declare_stream(dead_letter_stream(&config.dlq_prefix))
            .await?;
        let consumer = self.inner.consumer(&config).await?;
        let deliveries = jetstream::deliveries(self.inner.clone(), consumer, config.clone());
        let publisher = Arc::new(jetstream::Publisher(Arc::downgrade(&self.inner)));
        let instruments = &self.inner.counters.instruments;
        Ok(DurableSubscription::new(
            config,
            Box::pin(deliveries),
            publisher,
            instruments,
        ))
    }

    fn message(&self, subject: &str) -> MessageBuilder {
        Message::builder(subject).source(self.inner.source.clone())
    }

    fn stats(&self) -> BusStats {
        let mut stats = self.inner.counters.snapshot();
        stats.disconnects = self.inner.disconnects.load(Relaxed);
        stats
    }

    fn health(&self) -> Health {
        let inner = &self.inner;
        let connected = inner.client.connection_state() == async_nats::connection::State::Connected;
        inner
            .counters
            .health(inner.closed.load(Acquire), connected, inner.inbox.pending())
    }

    /// The common series, the bus's instruments, and the connection's own counters
    /// (async-nats keeps them: bytes and messages each way, connects).
    fn collect_metrics(&self, scrape: &mut Scrape) {
        collect_common(self, scrape);
        self.inner.counters.instruments.collect(scrape);
        let wire = self.inner.client.statistics();
        let wire_counters = [
            (
                "busbar_wire_sent_bytes",
                "Payload and header bytes sent to the server.",
                &wire.out_bytes,
            ),
            (
                "busbar_wire_received_bytes",
                "Payload and header bytes received from the server.",
                &wire.in_bytes,
            ),
            (
                "busbar_wire_sent_messages",
                "Messages sent to the server.",
                &wire.out_messages,
            ),
            (
                "busbar_wire_received_messages",
                "Messages received from the server.",
                &wire.in_messages,
            ),
        ];
        for (name, help, value) in wire_counters {
            scrape.counter(name, help, value.load(Relaxed));
        }
        let connects = wire.connects.load(Relaxed);
        scrape.counter(
            "busbar_reconnects",
            "Times the connection was established again after a loss.",
            connects.saturating_sub(1),
        );
    }

    fn backend(&self) -> Backend {
        Backend::Nats
    }

    fn connection_events(&self) -> Option<broadcast::Receiver<ConnectionEvent>> {
        Some(self.inner.events.subscribe())
    }
}
