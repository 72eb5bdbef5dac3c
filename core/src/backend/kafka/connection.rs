//! The connection of a Kafka bus: its producer, topic, counters and reply inbox, the
//! librdkafka settings every client of the bus shares, and what every part of the backend
//! does with them (publish, decode, create a consumer).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message as _, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use tokio::sync::{broadcast, oneshot, watch, Mutex as AsyncMutex};

use super::envelope;
use crate::backend::counters::Counters;
use crate::backend::reply::Inbox;
use crate::bus::ConnectionEvent;
use crate::config::{Config, Overflow, PartitionBy};
use crate::envelope::codec::check_size;
use crate::envelope::{Message, Replier};
use crate::error::{quote, Error, Result};
use crate::metrics::Instruments;

/// What every librdkafka client of a bus reports to: connection events and their state.
pub(crate) struct Link {
    pub(crate) events: broadcast::Sender<ConnectionEvent>,
    up: AtomicBool,
    /// Set when the bus closes: librdkafka's clients may outlive it a little (a consumer
    /// closing off the runtime), and what they log then is no longer news.
    pub(crate) closed: AtomicBool,
    pub(crate) disconnects: AtomicU64,
    instruments: Arc<Instruments>,
}

impl Link {
    fn new(instruments: Arc<Instruments>) -> Self {
        Link {
            events: broadcast::channel(64).0,
            up: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            disconnects: AtomicU64::new(0),
            instruments,
        }
    }

    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Acquire)
    }

    pub(crate) fn send(&self, event: ConnectionEvent) {
        Counters::connection_event(&self.instruments, &event);
        let _ = self.events.send(event);
    }

    /// Every broker is unreachable (librdkafka's `AllBrokersDown`).
    fn lost(&self, why: &str) {
        if self.up.swap(false, AcqRel) {
            self.disconnects.fetch_add(1, Relaxed);
            tracing::warn!("kafka: every broker is down: {why}");
            self.send(ConnectionEvent::Disconnected);
        }
    }

    /// A broker answered again (a delivery or a fetch succeeded).
    pub(crate) fn alive(&self) {
        if !self.up.load(Relaxed) && !self.up.swap(true, AcqRel) {
            self.send(ConnectionEvent::Connected);
        }
    }

    fn error(&self, error: &KafkaError, reason: &str) {
        if self.closed.load(Relaxed) {
            tracing::debug!("kafka (bus closed): {error}: {reason}");
            return;
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => self.lost(reason),
            // A broker's connection dropped and librdkafka reconnects by itself (the
            // other brokers, if any, still serve): logged, not an event.
            Some(RDKafkaErrorCode::BrokerTransportFailure) => {
                tracing::debug!("kafka: {error}: {reason}")
            }
            _ => {
                tracing::warn!("kafka: {error}: {reason}");
                self.send(ConnectionEvent::ClientError(format!("{error}: {reason}")));
            }
        }
    }
}

/// The context of the bus's producer: librdkafka's errors and its delivery reports. A
/// record handed over and then not delivered (its broker refused it, or
/// `publish_timeout_ms` passed) is never silent: counted in `busbar_connection_events`
/// as a `client_error` naming its subject.
pub(crate) struct ProduceContext {
    link: Arc<Link>,
    /// Markers whose writers wait for their offsets, by delivery-report id.
    markers: std::sync::Mutex<std::collections::HashMap<usize, Reported>>,
    next_marker: AtomicU64,
    /// Publishes whose delivery failed, and how many of them a flush reported already.
    failed: AtomicU64,
    reported: AtomicU64,
}

impl ClientContext for ProduceContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(&self.link, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.link.error(&error, reason);
    }
}

/// A marker's writer, told the offset the broker gave it.
type Reported = oneshot::Sender<std::result::Result<i64, KafkaError>>;

impl ProduceContext {
    /// A delivery-report id (never 0, the id of a plain publish) for a marker whose
    /// writer waits on `tx`.
    fn watch(&self, tx: Reported) -> usize {
        let id = self.next_marker.fetch_add(1, Relaxed) as usize;
        self.markers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tx);
        id
    }
}

impl ProducerContext for ProduceContext {
    /// 0 for a publish (reported only when it fails), a marker's id from `watch` else.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, id: usize) {
        if id != 0 {
            let waiting = self.markers.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            if let Some(tx) = waiting {
                let _ = tx.send(result.as_ref().map(|m| m.offset()).map_err(|(e, _)| e.clone()));
            }
            if result.is_ok() {
                self.link.alive();
            }
            return;
        }
        match result {
            Ok(_) => self.link.alive(),
            Err((e, record)) => {
                self.failed.fetch_add(1, Relaxed);
                let subject = envelope::subject(record.headers(), record.key()).unwrap_or("?");
                tracing::error!("kafka: a publish to {} was not delivered: {e}", quote(subject));
                self.link.send(ConnectionEvent::ClientError(format!(
                    "a publish to {} was not delivered: {e}",
                    quote(subject)
                )));
            }
        }
    }
}

/// The context of every consumer of a bus: errors, and (for a queue group's member) its
/// assignment, which `subscribe` waits for.
pub(crate) struct ConsumeContext {
    link: Arc<Link>,
    /// Bumped on every assignment the group hands this member (empty or not).
    pub(crate) assigned: watch::Sender<u64>,
}

impl ClientContext for ConsumeContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_librdkafka(&self.link, level, fac, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.link.error(&error, reason);
    }
}

impl ConsumerContext for ConsumeContext {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(_) = rebalance {
            self.assigned.send_modify(|n| *n += 1);
        }
    }
}

/// librdkafka's log lines through `tracing`: a broker connection failing is a warning
/// (librdkafka retries; a lasting outage is the `Disconnected` event), and once the bus is
/// closed everything is debug.
fn log_librdkafka(link: &Link, level: RDKafkaLogLevel, fac: &str, message: &str) {
    if link.closed.load(Relaxed) {
        tracing::debug!("librdkafka {fac}: {message}");
        return;
    }
    match level {
        RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
            tracing::error!("librdkafka {fac}: {message}")
        }
        RDKafkaLogLevel::Error | RDKafkaLogLevel::Warning => tracing::warn!("librdkafka {fac}: {message}"),
        _ => tracing::debug!("librdkafka {fac}: {message}"),
    }
}

/// Resolves once `closing` is set (the bus closed) or its sender is gone.
pub(crate) async fn closed(closing: &mut watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await.map(|_| ());
}

/// A consumer of the bus: a tokio stream over librdkafka's.
pub(crate) type KafkaConsumer = rdkafka::consumer::StreamConsumer<ConsumeContext>;

pub(crate) struct Inner {
    pub(crate) producer: ThreadedProducer<ProduceContext>,
    pub(crate) config: Config,
    /// `kafka_topic`: every subject of the bus is a record on it.
    pub(crate) topic: String,
    /// Its partition count, read at connect.
    pub(crate) partitions: i32,
    /// The partition every publish of this bus goes to (`kafka_partition_by =
    /// publisher`: one publisher's records keep their order for every reader), or `None`
    /// (`subject`: the record key, the subject, picks it).
    pub(crate) partition: Option<i32>,
    pub(crate) source: Arc<str>,
    /// Replies to this bus's requests arrive under it (read from the topic by a consumer
    /// started with the first request: `request.rs`).
    pub(crate) inbox: Inbox<rdkafka::message::OwnedMessage>,
    /// Whether the reply reader runs (started by the first request).
    pub(crate) replies: AsyncMutex<bool>,
    pub(crate) replier: Arc<dyn Replier>,
    pub(crate) link: Arc<Link>,
    pub(crate) closed: AtomicBool,
    /// Set at close: every reader reads up to the topic's end and ends.
    pub(crate) closing: watch::Sender<bool>,
    pub(crate) counters: Counters,
}

/// `backend` error wrapping a librdkafka error.
pub(crate) fn backend(message: String, source: KafkaError) -> Error {
    Error::Backend {
        message: format!("{message}: {source}"),
        source: Some(Box::new(source)),
    }
}

/// Runs a blocking librdkafka call off the runtime's workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Backend {
        message: format!("a librdkafka call failed: {e}"),
        source: None,
    })
}

/// The settings every client of a bus shares: brokers, security, client id.
fn client_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.kafka_brokers)
        .set("client.id", format!("busbar ({})", config.source))
        .set("security.protocol", config.kafka_security_protocol.as_str())
        // librdkafka's own logs go through `log_librdkafka` (tracing).
        .set_log_level(RDKafkaLogLevel::Warning)
        .set(
            "socket.connection.setup.timeout.ms",
            config.connect_timeout_ms.max(1000).to_string(),
        );
    if let Some(m) = &config.kafka_sasl_mechanism {
        c.set("sasl.mechanism", m);
    }
    if let Some(u) = &config.kafka_user {
        c.set("sasl.username", u);
    }
    if let Some(p) = &config.kafka_password {
        c.set("sasl.password", p);
    }
    if let Some(ca) = &config.kafka_tls_ca {
        c.set("ssl.ca.location", ca);
    }
    c
}

/// A librdkafka setting refused (one this build cannot do, such as TLS without the
/// `kafka-tls` feature): `invalid_argument` naming it.
fn refused(what: &str, e: KafkaError) -> Error {
    Error::InvalidArgument(format!("{what}: librdkafka refused the configuration: {e}"))
}

/// Connects: checks the brokers answer within `connect_timeout_ms`, creates `kafka_topic`
/// with `kafka_partitions` partitions when it does not exist, and reads its partitions.
pub(crate) async fn connect(config: Config) -> Result<Arc<Inner>> {
    let instruments = Arc::new(Instruments::default());
    let link = Arc::new(Link::new(instruments.clone()));
    let mut pc = client_config(&config);
    pc.set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "1")
        .set("message.timeout.ms", config.publish_timeout_ms.to_string())
        .set("message.max.bytes", message_max_bytes(&config).to_string());
    if config.publish_buffer > 0 {
        pc.set("queue.buffering.max.messages", config.publish_buffer.to_string());
    }
    let producer: ThreadedProducer<ProduceContext> = pc
        .create_with_context(ProduceContext {
            link: link.clone(),
            markers: Default::default(),
            next_marker: AtomicU64::new(1),
            failed: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        })
        .map_err(|e| refused("creating the Kafka producer", e))?;
    let topic = config.kafka_topic.clone();
    let partitions = ensure_topic(&config).await?;
    let source: Arc<str> = config.source.as_str().into();
    let inbox_prefix = format!("_INBOX.{}.", crate::backend::reply::token());
    let partition = match config.kafka_partition_by {
        PartitionBy::Publisher => Some(rand::random_range(0..partitions)),
        PartitionBy::Subject => None,
    };
    Ok(Arc::new_cyclic(|weak| Inner {
        producer,
        topic,
        partitions,
        partition,
        source,
        inbox: Inbox::new(inbox_prefix),
        replies: AsyncMutex::new(false),
        replier: Arc::new(WeakReplier(weak.clone())),
        link,
        closed: AtomicBool::new(false),
        closing: watch::channel(false).0,
        counters: Counters {
            instruments,
            ..Counters::default()
        },
        config,
    }))
}

/// The largest record the producer sends: the payload limit plus the header budget.
fn message_max_bytes(config: &Config) -> usize {
    (config.max_payload + crate::bounds::MAX_HEADER_BLOCK + 1024).clamp(1000, 1_000_000_000)
}

/// The partition count of `kafka_topic`, created first when the brokers do not have it.
async fn ensure_topic(config: &Config) -> Result<i32> {
    let limit = Duration::from_millis(config.connect_timeout_ms);
    let admin: Arc<AdminClient<rdkafka::client::DefaultClientContext>> = Arc::new(
        client_config(config)
            .create()
            .map_err(|e| refused("creating the Kafka admin client", e))?,
    );
    let topic = config.kafka_topic.clone();
    let brokers = config.kafka_brokers.clone();
    // The partition count of the topic, `None` while the brokers do not know it.
    let count = |admin: Arc<AdminClient<rdkafka::client::DefaultClientContext>>| {
        let topic = topic.clone();
        let brokers = brokers.clone();
        // fetch_metadata blocks: off the runtime's workers.
        blocking(move || -> Result<Option<i32>> {
            let md = admin.inner().fetch_metadata(Some(&topic), limit).map_err(|e| {
                match e.rdkafka_error_code() {
                    Some(
                        RDKafkaErrorCode::OperationTimedOut
                        | RDKafkaErrorCode::AllBrokersDown
                        | RDKafkaErrorCode::BrokerTransportFailure,
                    ) => {
                        Error::Backend {
                            message: format!(
                                "connecting to Kafka at {brokers}: no answer within connect_timeout_ms ({} ms): {e}",
                                limit.as_millis()
                            ),
                            source: None,
                        }
                    }
                    _ => backend(format!("reading the metadata of Kafka topic {}", quote(&topic)), e),
                }
            })?;
            Ok(md
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
                .map(|t| t.partitions().len() as i32))
        })
    };
    if let Some(n) = count(admin.clone()).await?? {
        return Ok(n);
    }
    let partitions = config.kafka_partitions as i32;
    let new = NewTopic::new(&topic, partitions, TopicReplication::Fixed(-1));
    let options = AdminOptions::new()
        .operation_timeout(Some(limit))
        .request_timeout(Some(limit));
    let created = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| backend(format!("creating Kafka topic {}", quote(&topic)), e))?;
    for result in created {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Backend {
                    message: format!("creating Kafka topic {}: {code}", quote(&name)),
                    source: None,
                })
            }
        }
    }
    // The new topic's metadata reaches every broker shortly after its creation.
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(n) = count(admin.clone()).await?? {
            return Ok(n);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Backend {
                message: format!(
                    "Kafka topic {} was created but has no partitions after connect_timeout_ms ({} ms)",
                    quote(&topic),
                    limit.as_millis()
                ),
                source: None,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Inner {
    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Acquire) {
            return Err(Error::Closed("bus"));
        }
        Ok(())
    }

    /// Hands `msg` to the producer (a record on the bus's topic, keyed by its subject).
    /// Under `publish_buffer_full = wait` a full producer queue is waited out up to
    /// `publish_timeout_ms`; under `fail` it fails at once. Delivery itself is reported
    /// by the producer's context (never silent).
    pub(crate) async fn publish(&self, msg: &Message) -> Result<()> {
        self.check_open()?;
        check_size(msg, self.config.max_payload)?;
        let subject = msg.subject();
        let what = || format!("publishing to {}", quote(subject));
        let mut record = BaseRecord::with_opaque_to(&self.topic, 0)
            .key(subject)
            .payload(msg.data().as_ref())
            .headers(envelope::headers(msg));
        if let Some(p) = self.partition {
            record = record.partition(p);
        }
        let deadline = tokio::time::Instant::now() + self.config.publish_timeout();
        loop {
            match self.producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if self.config.publish_buffer_full == Overflow::Fail {
                        return Err(Error::Backend {
                            message: format!(
                                "{}: the producer's queue (publish_buffer = {}) is full and publish_buffer_full is fail",
                                what(),
                                self.config.publish_buffer
                            ),
                            source: None,
                        });
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(Error::Backend {
                            message: format!(
                                "{}: the producer's queue (publish_buffer = {}) stayed full for publish_timeout_ms ({} ms); the brokers may be hung or unreachable",
                                what(),
                                self.config.publish_buffer,
                                self.config.publish_timeout_ms
                            ),
                            source: None,
                        });
                    }
                    record = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    self.check_open()?;
                }
                Err((e, _)) => return Err(backend(what(), e)),
            }
        }
        self.counters.published.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Waits until every record handed to the producer so far is acknowledged by the
    /// brokers, for at most `publish_timeout_ms`; fails with `backend` when one of them
    /// (or of those before, since the previous flush) was not delivered.
    pub(crate) async fn flush_producer(self: &Arc<Self>) -> Result<()> {
        let timeout = self.config.publish_timeout();
        let inner = self.clone();
        let flushed = blocking(move || inner.producer.flush(timeout)).await?;
        let context = self.producer.context();
        let failed = context.failed.load(Acquire);
        let lost = failed - context.reported.swap(failed, AcqRel).min(failed);
        match flushed {
            Err(e) => Err(Error::Backend {
                message: format!(
                    "Kafka did not acknowledge every publish within publish_timeout_ms ({} ms): {e}; the brokers may be hung or unreachable",
                    timeout.as_millis()
                ),
                source: Some(Box::new(e)),
            }),
            Ok(()) if lost > 0 => Err(Error::Backend {
                message: format!(
                    "{lost} publish(es) since the previous flush were not delivered (each reported as a client_error connection event naming its subject)"
                ),
                source: None,
            }),
            Ok(()) => Ok(()),
        }
    }

    /// Writes a marker record (header `busbar-marker`, skipped by every busbar reader) to
    /// every partition and waits for the offsets the broker gave them: a reader starting
    /// there sees every record written after this returns, and none written before it,
    /// whatever the broker reports as a partition's end (tansu 0.6 reports the last
    /// batch's first offset + 1). Bounded by `publish_timeout_ms`.
    pub(crate) async fn mark(&self) -> Result<Vec<i64>> {
        self.check_open()?;
        self.write_marks().await
    }

    /// [`Inner::mark`] on a bus closing too: where its readers stop.
    pub(crate) async fn write_marks(&self) -> Result<Vec<i64>> {
        let nonce = crate::backend::reply::token();
        let mut waits = Vec::with_capacity(self.partitions as usize);
        for p in 0..self.partitions {
            let (tx, rx) = oneshot::channel();
            let headers = OwnedHeaders::new().insert(Header {
                key: envelope::MARKER,
                value: Some(nonce.as_str()),
            });
            let id = self.producer.context().watch(tx);
            let record = BaseRecord::<(), [u8], usize>::with_opaque_to(&self.topic, id)
                .partition(p)
                .payload(&[])
                .headers(headers);
            if let Err((e, _)) = self.producer.send(record) {
                self.producer
                    .context()
                    .markers
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                return Err(backend("writing a position marker to Kafka".into(), e));
            }
            waits.push(rx);
        }
        let timeout = self.config.publish_timeout();
        let all = async {
            let mut offsets = Vec::with_capacity(waits.len());
            for rx in waits {
                match rx.await {
                    Ok(Ok(offset)) => offsets.push(offset),
                    Ok(Err(e)) => return Err(backend("writing a position marker to Kafka".into(), e)),
                    Err(_) => return Err(Error::Closed("bus")),
                }
            }
            Ok(offsets)
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(done) => done,
            Err(_) => Err(Error::Backend {
                message: format!(
                    "Kafka did not store a position marker within publish_timeout_ms ({} ms); the brokers may be hung or unreachable",
                    timeout.as_millis()
                ),
                source: None,
            }),
        }
    }

    /// A new consumer of the bus (`group`: a queue group's Kafka consumer group, which
    /// commits what its members took; `None`: a reader that assigns itself partitions and
    /// commits nothing).
    pub(crate) fn consumer(&self, group: Option<&str>) -> Result<Arc<KafkaConsumer>> {
        let mut c = client_config(&self.config);
        let grouped = group.is_some();
        let id = match group {
            Some(g) => g.to_owned(),
            None => format!("{}.reader.{}", self.topic, crate::backend::reply::token()),
        };
        c.set("group.id", id)
            .set("enable.partition.eof", "false")
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", if grouped { "true" } else { "false" })
            .set("auto.commit.interval.ms", "200")
            // Offsets are stored by busbar once a message is queued (or counted missed).
            .set("enable.auto.offset.store", "false")
            // A fetch returns as soon as a record is there, and waits at most 100 ms.
            .set("fetch.wait.max.ms", "100")
            // What librdkafka prefetches per consumer (partitions share it): in `block`
            // mode the rest of a backlog stays on the brokers.
            .set("queued.max.messages.kbytes", "4096")
            .set(
                "fetch.message.max.bytes",
                message_max_bytes(&self.config).to_string(),
            )
            // A member blocked on a full `block`-mode queue stays in its group (the
            // broker holds its partitions' backlog) rather than being evicted after 5 min.
            .set("max.poll.interval.ms", "86400000")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000");
        let context = ConsumeContext {
            link: self.link.clone(),
            assigned: watch::channel(0).0,
        };
        let consumer: KafkaConsumer = c
            .create_with_context(context)
            .map_err(|e| refused("creating a Kafka consumer", e))?;
        Ok(Arc::new(consumer))
    }

    /// The busbar message record `m` carries, on `subject`; counted when it is unreadable.
    pub(crate) fn receive<M: rdkafka::message::Message>(&self, subject: &str, m: &M) -> Result<Message> {
        match envelope::decode(subject, m.headers(), m.payload().unwrap_or_default()) {
            Ok(msg) if msg.reply_to().is_some() => Ok(msg.with_replier(self.replier.clone())),
            Ok(msg) => Ok(msg),
            Err(e) => {
                self.counters.undecodable.fetch_add(1, Relaxed);
                Err(e)
            }
        }
    }
}

struct WeakReplier(std::sync::Weak<Inner>);

#[async_trait::async_trait]
impl Replier for WeakReplier {
    async fn send_reply(&self, reply: Message) -> Result<()> {
        let inner = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        inner.publish(&reply).await
    }
}
