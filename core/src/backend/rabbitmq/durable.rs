//! Durable streams on RabbitMQ: a journal, one RabbitMQ stream (`x-queue-type: stream`)
//! per exchange, `<amqp_exchange>.journal`, that every bus using durable calls reads from
//! its first entry and applies in order, so all of them hold the same state.
//!
//! RabbitMQ streams alone cannot carry the contract over AMQP 0-9-1: their offsets have
//! gaps (a stream sequence must not), a publisher is not told the offset it got, consumers
//! have no acks, and retention drops whole segments late. So the journal holds:
//! - every message published to a subject a durable stream captures (bound to the exchange
//!   under the streams' subjects, as JetStream captures plain publishes too): applying it
//!   gives it the next sequence of its stream, or reports a duplicate of an id stored inside
//!   the dedupe window (by the messages' own `time`), so every bus numbers alike;
//! - busbar's own entries (JSON, published to the journal queue itself): a stream's
//!   declaration (the first declaration of a name wins; overlapping subjects are refused),
//!   a consumer's creation (its start resolved when applied), each delivery (`deliver`:
//!   consumer, sequence, attempt, when it may be redelivered) and each settlement, and the
//!   deletion of a stream or a consumer (administration: the lists read this bus's state
//!   after a sync entry; a deleted stream's subjects are then unbound from the journal).
//!
//! Each consumer created has an incarnation number, alike on every bus, carried by its
//! delivery and settlement entries: a consumer deleted and made again under its name is
//! never acted on by its old subscriptions. An entry that busbar would not write (a buggy
//! or hostile peer's) is skipped by every bus and counted as `undecodable`.
//!
//! A subscription delivers a message only once its `deliver` entry, applied, won: two
//! subscriptions (in any processes) of one durable consumer never get one attempt twice.
//! A caller's entry is confirmed by the broker (publisher confirms) and applied by this
//! bus before its call returns, so an acked publish, an ack or a delivery survives a crash
//! of the client or a restart of the broker. Stated limits: the journal is never trimmed
//! (`max_age`, `max_bytes` and `max_messages` bound what is delivered and counted, and a
//! delete what is listed, not the broker's disk: it is freed only when the journal queue
//! itself is deleted), and each bus holds the streams it reads in memory.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use super::connection::Inner;
use super::log::Journal;
use super::log::{millis, Entry, Outcome, Start};
use super::{envelope, subjects};
use crate::durable::{
    dead_letter_stream, lost_consumer, no_stream, no_such_consumer, no_such_stream, validate_name,
    ConsumerConfig, ConsumerInfo, Delivery, DurablePublish, DurableSubscription, PublishAck, Settle, StartAt,
    StreamConfig, StreamInfo,
};
use crate::envelope::codec::check_size;
use crate::envelope::Message;
use crate::error::{Error, Result};
use crate::subject::matches_routed;

pub(crate) async fn declare_stream(bus: &Arc<Inner>, config: StreamConfig) -> Result<StreamInfo> {
    bus.check_open()?;
    let config = config.checked(bus.config.retention_days)?;
    for subject in &config.subjects {
        subjects::binding_key(subject)?; // expressible as an AMQP binding key
    }
    let journal = &bus.journal;
    journal.start(bus).await?;
    let entry = Entry::Declare {
        name: config.name.clone(),
        subjects: config.subjects.clone(),
        max_age_ms: config.max_age.map(|a| a.as_millis() as u64),
        max_bytes: config.max_bytes,
        max_messages: config.max_messages,
        duplicate_window_ms: config.duplicate_window.as_millis() as u64,
    };
    match journal.append(bus, &entry).await? {
        Outcome::Declared(Ok(())) => {}
        Outcome::Declared(Err(why)) => return Err(Error::InvalidArgument(why)),
        _ => return Err(journal_confused(&journal.queue)),
    }
    // The stream as first declared (another declaration may have won): bound under its
    // subjects (again: binding is idempotent), so it captures them from now on.
    let stored = journal
        .with_stream(bus, &config.name, |s| s.config.subjects.clone())
        .await?;
    journal.bind_all(bus, &stored).await?;
    journal
        .with_stream(bus, &config.name, |s| {
            s.prune(SystemTime::now());
            s.info()
        })
        .await
}

fn journal_confused(queue: &str) -> Error {
    Error::Backend {
        message: format!("the durable journal {queue:?} answered an entry with another's outcome"),
        source: None,
    }
}

pub(crate) async fn stream_info(bus: &Arc<Inner>, name: &str) -> Result<StreamInfo> {
    bus.check_open()?;
    let journal = &bus.journal;
    journal.start(bus).await?;
    journal.sync(bus).await?;
    journal
        .with_stream(bus, name, |s| {
            s.prune(SystemTime::now());
            s.info()
        })
        .await
}

/// Every stream of the journal, sorted by name, as this bus holds it once it has applied
/// everything written before the call.
pub(crate) async fn list_streams(bus: &Arc<Inner>) -> Result<Vec<StreamInfo>> {
    let journal = synced(bus).await?;
    let now = SystemTime::now();
    let mut infos: Vec<StreamInfo> = journal
        .lock()
        .streams
        .iter_mut()
        .map(|s| {
            s.prune(now);
            s.info()
        })
        .collect();
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(infos)
}

/// The consumers of stream `name`, sorted by name.
pub(crate) async fn list_consumers(bus: &Arc<Inner>, name: &str) -> Result<Vec<ConsumerInfo>> {
    validate_name("stream", name)?;
    let journal = synced(bus).await?;
    let mut state = journal.lock();
    let s = state.stream(name).ok_or_else(|| no_such_stream(name))?;
    s.prune(SystemTime::now());
    let mut names: Vec<&String> = s.consumers.keys().collect();
    names.sort();
    Ok(names.into_iter().filter_map(|c| s.consumer_info(c)).collect())
}

pub(crate) async fn consumer_info(bus: &Arc<Inner>, stream: &str, name: &str) -> Result<ConsumerInfo> {
    validate_name("stream", stream)?;
    validate_name("consumer", name)?;
    let journal = synced(bus).await?;
    let mut state = journal.lock();
    let s = state.stream(stream).ok_or_else(|| no_such_stream(stream))?;
    s.prune(SystemTime::now());
    s.consumer_info(name)
        .ok_or_else(|| no_such_consumer(stream, name))
}

/// Writes the deletion of stream `name`, which every bus applies, then unbinds the journal
/// from the stream's subjects so it captures them no more. The journal itself is never
/// trimmed: the broker frees the disk only when the journal queue is deleted.
pub(crate) async fn delete_stream(bus: &Arc<Inner>, name: &str) -> Result<()> {
    validate_name("stream", name)?;
    let journal = synced(bus).await?;
    let subjects = journal
        .lock()
        .stream(name)
        .map(|s| s.config.subjects.clone())
        .ok_or_else(|| no_such_stream(name))?;
    let entry = Entry::DeleteStream {
        name: name.to_owned(),
    };
    deleted(bus, &entry).await?;
    unbind_deleted(bus, journal, subjects)
        .await
        .map_err(|e| Error::Backend {
            message: format!(
                "stream {name:?} was deleted, but its subjects are still bound to the journal {:?} \
                 (publishes to them still reach it, stored by no stream): {}",
                journal.queue,
                e.report()
            ),
            source: None,
        })
}

/// Unbinds the journal from a deleted stream's `subjects`, keeping those a stream declared
/// anew meanwhile holds.
async fn unbind_deleted(bus: &Arc<Inner>, journal: &Journal, subjects: Vec<String>) -> Result<()> {
    journal.unbind_all(bus, &subjects).await?;
    // A stream declared again under the same subjects in the meantime was bound by its
    // declarer after its declaration was confirmed, so before this sync returns: bound
    // again if this unbinding undid that.
    journal.sync(bus).await?;
    let kept: Vec<String> = {
        let state = journal.lock();
        let live: Vec<&String> = state.streams.iter().flat_map(|s| &s.config.subjects).collect();
        subjects.into_iter().filter(|s| live.contains(&s)).collect()
    };
    if !kept.is_empty() {
        journal.bind_all(bus, &kept).await?;
    }
    Ok(())
}

/// Writes the deletion of consumer `name` of `stream`; a subscription reading it is told
/// once and opens it again from its configured start.
pub(crate) async fn delete_consumer(bus: &Arc<Inner>, stream: &str, name: &str) -> Result<()> {
    validate_name("stream", stream)?;
    validate_name("consumer", name)?;
    bus.check_open()?;
    bus.journal.start(bus).await?;
    let entry = Entry::DeleteConsumer {
        stream: stream.to_owned(),
        name: name.to_owned(),
    };
    deleted(bus, &entry).await
}

async fn deleted(bus: &Arc<Inner>, entry: &Entry) -> Result<()> {
    match bus.journal.append(bus, entry).await? {
        Outcome::Deleted(done) => done,
        _ => Err(journal_confused(&bus.journal.queue)),
    }
}

/// The journal, read by this bus up to now.
async fn synced(bus: &Arc<Inner>) -> Result<&Journal> {
    bus.check_open()?;
    let journal = &bus.journal;
    journal.start(bus).await?;
    journal.sync(bus).await?;
    Ok(journal)
}

pub(crate) async fn publish_durable(bus: &Arc<Inner>, msg: &Message) -> Result<PublishAck> {
    bus.check_open()?;
    check_size(msg, bus.config.max_payload)?;
    let key = subjects::routing_key(msg.subject())?;
    let journal = &bus.journal;
    journal.start(bus).await?;
    let captured = |journal: &Journal| journal.lock().capturing(msg.subject()).is_some();
    if !captured(journal) {
        journal.sync(bus).await?;
        if !captured(journal) {
            return Err(no_stream(msg.subject()));
        }
    }
    let props = envelope::properties(msg, true)?;
    let exchange = bus.exchange.as_str().to_owned();
    match journal.append_raw(bus, &exchange, key, msg.data(), props).await? {
        Outcome::Stored(ack) => {
            bus.counters
                .published
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(ack)
        }
        // A stream captures it, yet the broker routed it nowhere: the journal's binding is
        // gone (a broker restart can drop the exchange) or not back yet. Bound again; the
        // caller may retry.
        Outcome::NoStream => {
            let subjects = journal
                .lock()
                .capturing(msg.subject())
                .map(|s| s.config.subjects.clone())
                .unwrap_or_default();
            let rebound = match journal.bind_all(bus, &subjects).await {
                Ok(()) => "made again".to_owned(),
                Err(e) => format!("not made again: {e}"),
            };
            Err(Error::Backend {
                message: format!(
                    "publishing durably to {:?}: RabbitMQ routed it to no journal (the binding of \
                     {:?} was missing, {rebound}); nothing was stored, retry",
                    msg.subject(),
                    journal.queue
                ),
                source: None,
            })
        }
        _ => Err(journal_confused(&journal.queue)),
    }
}

pub(crate) async fn durable_subscribe(
    bus: &Arc<Inner>,
    config: ConsumerConfig,
) -> Result<DurableSubscription> {
    bus.check_open()?;
    config.check()?;
    declare_stream(bus, dead_letter_stream(&config.dlq_prefix)).await?;
    let journal = &bus.journal;
    journal.with_stream(bus, &config.stream, |_| ()).await?;
    let start = match config.start {
        StartAt::Beginning => Start::Beginning,
        StartAt::Sequence(seq) => Start::Sequence(seq),
        StartAt::Time(t) => Start::TimeMs(millis(t)),
        StartAt::New => Start::New,
    };
    let id = open_consumer(bus, &config, start)
        .await?
        .ok_or_else(|| no_such_stream(&config.stream))?;
    let reader = Reader {
        bus: bus.clone(),
        stream: config.stream.clone(),
        consumer: config.name.clone(),
        ack_wait: config.ack_wait,
        start,
        config: config.clone(),
        id: Some(id),
    };
    let deliveries = futures_util::stream::unfold(reader, |mut reader| async move {
        let next = reader.next().await?;
        Some((next, reader))
    });
    let publisher = Arc::new(Publisher(Arc::downgrade(bus)));
    let instruments = &bus.counters.instruments;
    Ok(DurableSubscription::new(
        config,
        Box::pin(deliveries),
        publisher,
        instruments,
    ))
}

/// Writes the creation of consumer `config.name` (kept as it is if it exists) and returns
/// the incarnation that exists once applied; `None` when its stream does not.
async fn open_consumer(bus: &Arc<Inner>, config: &ConsumerConfig, start: Start) -> Result<Option<u64>> {
    let entry = Entry::Consumer {
        stream: config.stream.clone(),
        name: config.name.clone(),
        filter: config.filter.clone(),
        start,
        max_ack_pending: config.max_ack_pending,
    };
    match bus.journal.append(bus, &entry).await? {
        Outcome::Opened(id) => Ok(id),
        _ => Err(journal_confused(&bus.journal.queue)),
    }
}

/// One durable subscription's side of the journal.
struct Reader {
    bus: Arc<Inner>,
    stream: String,
    consumer: String,
    ack_wait: Duration,
    start: Start,
    config: ConsumerConfig,
    /// The incarnation of the consumer it reads; `None` once it was told the consumer is
    /// gone, until it opens it again.
    id: Option<u64>,
}

/// What a subscription may deliver now: a due redelivery first, else the next stored
/// message matching its filter while fewer than `max_ack_pending` are unsettled.
enum Pick {
    Deliver(u64, u32, Message, Option<String>),
    /// Nothing now; the earliest redelivery, if any.
    Wait(Option<SystemTime>),
    Gone,
}

impl Reader {
    fn pick(&self, now: SystemTime) -> Pick {
        let mut state = self.bus.journal.lock();
        let Some(stream) = state.stream(&self.stream) else {
            return Pick::Gone;
        };
        stream.prune(now);
        let first = stream.first_seq();
        let last = stream.last_seq;
        let Some(consumer) = stream
            .consumers
            .get(&self.consumer)
            .filter(|c| Some(c.id) == self.id)
        else {
            return Pick::Gone;
        };
        let due = consumer
            .pending
            .iter()
            .find(|(seq, (_, at))| **seq >= first && *at <= now)
            .map(|(seq, (attempts, _))| (*seq, attempts + 1));
        let live = consumer.pending.keys().filter(|seq| **seq >= first).count();
        let next = due.or_else(|| {
            if live >= consumer.max_ack_pending {
                return None;
            }
            (consumer.cursor.max(first)..=last).find_map(|seq| {
                let stored = stream.stored(seq)?;
                let wanted = consumer
                    .filter
                    .as_deref()
                    .is_none_or(|f| matches_routed(f, stored.message.subject()));
                wanted.then_some((seq, 1))
            })
        });
        match next.and_then(|(seq, attempt)| stream.stored(seq).map(|s| (seq, attempt, s))) {
            Some((seq, attempt, s)) => Pick::Deliver(seq, attempt, s.message.clone(), s.undecodable.clone()),
            None => Pick::Wait(
                consumer
                    .pending
                    .iter()
                    .filter(|(seq, _)| **seq >= first)
                    .map(|(_, (_, at))| *at)
                    .min(),
            ),
        }
    }

    /// Waits until its stream exists again (declared anew), then opens the consumer again
    /// from its configured start. `None` once the bus closes.
    async fn reopen(&mut self) -> Option<Result<()>> {
        let journal = &self.bus.journal;
        loop {
            let applied = journal.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            if journal.lock().closed || self.bus.check_open().is_err() {
                return None;
            }
            if journal.lock().stream(&self.stream).is_some() {
                match open_consumer(&self.bus, &self.config, self.start).await {
                    Ok(Some(id)) => {
                        self.id = Some(id);
                        return Some(Ok(()));
                    }
                    Ok(None) => continue, // deleted again meanwhile
                    Err(Error::Closed(_)) => return None,
                    Err(e) => return Some(Err(e)),
                }
            }
            applied.await;
        }
    }

    async fn next(&mut self) -> Option<Result<Delivery>> {
        let bus = self.bus.clone();
        let journal = &bus.journal;
        loop {
            if self.id.is_none() {
                if let Err(e) = self.reopen().await? {
                    return Some(Err(e));
                }
            }
            let applied = journal.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            if journal.lock().closed || self.bus.check_open().is_err() {
                return None;
            }
            let now = SystemTime::now();
            match self.pick(now) {
                // Deleted (its stream or itself): told once, then opened again from its
                // configured start once the stream exists (docs/design.md §4).
                Pick::Gone => {
                    self.id = None;
                    return Some(Err(lost_consumer(&self.config)));
                }
                Pick::Deliver(seq, attempt, message, undecodable) => {
                    let entry = Entry::Deliver {
                        stream: self.stream.clone(),
                        consumer: self.consumer.clone(),
                        seq,
                        attempt,
                        at_ms: millis(now),
                        due_ms: millis(now + self.ack_wait),
                        consumer_id: self.id,
                    };
                    match journal.append(&self.bus, &entry).await {
                        Ok(Outcome::Delivered(true)) => {
                            return Some(Ok(Delivery {
                                message,
                                attempt,
                                sequence: seq,
                                settle: Box::new(JournalSettle {
                                    bus: Arc::downgrade(&self.bus),
                                    stream: self.stream.clone(),
                                    consumer: self.consumer.clone(),
                                    seq,
                                    ack_wait: self.ack_wait,
                                    consumer_id: self.id,
                                }),
                                undecodable,
                            }))
                        }
                        Ok(_) => continue, // another subscription of the consumer won it
                        Err(Error::Closed(_)) => return None,
                        Err(e) => return Some(Err(e)),
                    }
                }
                Pick::Wait(at) => {
                    let sleep = at.map(|at| at.duration_since(now).unwrap_or_default());
                    match sleep {
                        Some(d) => {
                            let _ = tokio::time::timeout(d, applied).await;
                        }
                        None => applied.await,
                    }
                }
            }
        }
    }
}

struct JournalSettle {
    bus: Weak<Inner>,
    stream: String,
    consumer: String,
    seq: u64,
    ack_wait: Duration,
    consumer_id: Option<u64>,
}

impl JournalSettle {
    async fn settle(&self, due: Option<Duration>) -> Result<()> {
        let bus = self.bus.upgrade().ok_or(Error::Closed("bus"))?;
        bus.check_open()?;
        let entry = Entry::Settle {
            stream: self.stream.clone(),
            consumer: self.consumer.clone(),
            seq: self.seq,
            due_ms: due.map(|d| millis(SystemTime::now() + d)),
            consumer_id: self.consumer_id,
        };
        bus.journal.append(&bus, &entry).await.map(drop)
    }
}

#[async_trait::async_trait]
impl Settle for JournalSettle {
    async fn ack(&self) -> Result<()> {
        self.settle(None).await
    }

    async fn nak(&self, delay: Duration) -> Result<()> {
        self.settle(Some(delay)).await
    }

    async fn in_progress(&self) -> Result<()> {
        self.settle(Some(self.ack_wait)).await
    }
}

/// Stores dead letters through the bus's durable publish.
struct Publisher(Weak<Inner>);

#[async_trait::async_trait]
impl DurablePublish for Publisher {
    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        let bus = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        publish_durable(&bus, &message).await
    }
}
