//! Subscriptions. The bus's subjects are records on one topic ([`super`]), so a
//! subscription is a reader of that topic that keeps the records its pattern matches:
//! - **fan-out** (`subscribe`): a consumer that assigns itself every partition at the
//!   topic's end as `subscribe` returns, and commits nothing, so it sees every record
//!   published after `subscribe` returned, and no earlier one;
//! - **queue group** (`queue_subscribe`): a member of the Kafka consumer group
//!   `<kafka_topic>.group.<group>.<pattern>`; Kafka hands each partition to one member,
//!   so each record reaches one member. A group with no member starts at the topic's end
//!   (what it missed while empty is not delivered, as on NATS); offsets are stored once a
//!   record is queued (or counted missed) and committed every 200 ms and when a member
//!   leaves, so a record taken by a member that leaves goes to another (at least once).
//!
//! Every subscription is pumped into busbar's bounded queue: `block` stops reading (the
//! brokers hold the backlog), `lag` counts what a full queue misses and reports it at the
//! gap.

use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message as _;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::connection::{backend, blocking, closed, Inner, KafkaConsumer};
use super::envelope;
use crate::backend::queue::{BeforeDrain, Command, Item, Payload, Pushed, QueueSender, TryQueue};
use crate::error::{quote, Error, Result};
use crate::subject::{matches_valid, validate_pattern, validate_queue_group, validate_subject};
use crate::subscription::Subscription;

/// The Kafka consumer group of queue group `group` on `pattern`.
pub fn group_id(topic: &str, pattern: &str, group: &str) -> String {
    format!("{topic}.group.{group}.{pattern}")
}

/// A drain first waits until what this bus published is on the brokers.
struct Flush(Weak<Inner>);

#[async_trait::async_trait]
impl BeforeDrain for Flush {
    async fn before_drain(&self) -> Result<()> {
        match self.0.upgrade() {
            Some(bus) => bus.flush_producer().await,
            None => Ok(()),
        }
    }
}

pub(super) async fn subscribe(bus: &Arc<Inner>, pattern: &str, group: Option<&str>) -> Result<Subscription> {
    bus.check_open()?;
    validate_pattern(pattern)?;
    if let Some(g) = group {
        validate_queue_group(g)?;
    }
    let what = || format!("subscribing to {}", quote(pattern));
    let group_id = group.map(|g| group_id(&bus.topic, pattern, g));
    let consumer = bus.consumer(group_id.as_deref())?;
    let mut assigned = consumer.context().assigned.subscribe();
    let next = match &group_id {
        None => {
            let marks = bus.mark().await?;
            assign(bus, &consumer, &marks).map_err(|e| backend(what(), e))?;
            marks
        }
        Some(id) => {
            start_group(bus, &consumer, id).await?;
            consumer
                .subscribe(&[&bus.topic])
                .map_err(|e| backend(what(), e))?;
            Vec::new()
        }
    };
    let (queue, command_rx, pending) = crate::backend::pumped::subscription(
        &bus.config,
        &bus.counters,
        pattern,
        group,
        Flush(Arc::downgrade(bus)),
    );
    let pump = Pump {
        consumer,
        bus: Arc::downgrade(bus),
        topic: bus.topic.clone(),
        pattern: pattern.to_owned(),
        grouped: group.is_some(),
        next,
    };
    tokio::spawn(pump.run(queue, command_rx, bus.closing.subscribe()));
    if group.is_some() {
        // The member takes part once the group has handed it its partitions (possibly
        // none, when the group has more members than the topic has partitions).
        let limit = Duration::from_millis(bus.config.connect_timeout_ms);
        if tokio::time::timeout(limit, assigned.changed()).await.is_err() {
            return Err(Error::Backend {
                message: format!(
                    "{}: Kafka's group coordinator gave this member no assignment within connect_timeout_ms ({} ms)",
                    what(),
                    limit.as_millis()
                ),
                source: None,
            });
        }
    }
    Ok(pending.finish())
}

/// Assigns `consumer` every partition of the topic from the offsets `from` (the markers
/// [`Inner::mark`] wrote).
pub(super) fn assign(bus: &Inner, consumer: &KafkaConsumer, from: &[i64]) -> rdkafka::error::KafkaResult<()> {
    let mut tpl = TopicPartitionList::with_capacity(from.len());
    for (p, &offset) in from.iter().enumerate() {
        tpl.add_partition_offset(&bus.topic, p as i32, Offset::Offset(offset))?;
    }
    consumer.assign(&tpl)
}

/// A queue group starts where its first member subscribed: every partition that has no
/// committed offset for the group yet gets this member's markers committed before it
/// joins, so the member that takes a partition (this one or another) reads from there.
/// A partition with a committed offset keeps it (the group keeps its place, also while it
/// has no member).
async fn start_group(bus: &Inner, consumer: &Arc<KafkaConsumer>, id: &str) -> Result<()> {
    let failed = |e| backend(format!("starting Kafka consumer group {}", quote(id)), e);
    let limit = Duration::from_millis(bus.config.connect_timeout_ms);
    let marks = bus.mark().await?;
    let mut all = TopicPartitionList::with_capacity(marks.len());
    all.add_partition_range(&bus.topic, 0, bus.partitions - 1);
    let c = consumer.clone();
    let committed = blocking(move || c.committed_offsets(all, limit))
        .await?
        .map_err(failed)?;
    let mut start = TopicPartitionList::with_capacity(marks.len());
    for (p, &mark) in marks.iter().enumerate() {
        let known = committed
            .find_partition(&bus.topic, p as i32)
            .is_some_and(|e| matches!(e.offset(), Offset::Offset(_)));
        if !known {
            start
                .add_partition_offset(&bus.topic, p as i32, Offset::Offset(mark))
                .map_err(failed)?;
        }
    }
    if start.count() == 0 {
        return Ok(());
    }
    // A synchronous commit waits for the group's coordinator: bounded here, so a hung
    // broker fails the subscribe within connect_timeout_ms (the blocking call ends on
    // librdkafka's own request timeout).
    let c = consumer.clone();
    match tokio::time::timeout(limit, blocking(move || c.commit(&start, CommitMode::Sync))).await {
        Ok(done) => done?.map_err(failed),
        Err(_) => Err(Error::Backend {
            message: format!(
                "starting Kafka consumer group {}: the group's coordinator did not answer within connect_timeout_ms ({} ms)",
                quote(id),
                limit.as_millis()
            ),
            source: None,
        }),
    }
}

struct Pump {
    consumer: Arc<KafkaConsumer>,
    bus: Weak<Inner>,
    topic: String,
    pattern: String,
    grouped: bool,
    /// A fan-out reader's next offset per partition (what it has read up to).
    next: Vec<i64>,
}

impl Pump {
    async fn run(
        mut self,
        queue: QueueSender,
        mut commands: mpsc::Receiver<Command>,
        mut closing: watch::Receiver<bool>,
    ) {
        // Draining (or the bus closing): the offsets to read up to, then end.
        let mut until: Option<Vec<i64>> = None;
        let mut waiting: Option<(Item, i32, i64)> = None;
        loop {
            if until.as_ref().is_some_and(|t| self.reached(t)) {
                break;
            }
            tokio::select! {
                biased;
                command = commands.recv(), if until.is_none() => match command {
                    Some(Command::Drain(done)) => {
                        let ends = self.ends().await;
                        let _ = done.send(());
                        match ends {
                            Some(ends) => until = Some(ends),
                            None => break,
                        }
                    }
                    Some(Command::Unsubscribe) | None => break,
                },
                _ = closed(&mut closing), if until.is_none() => match self.ends().await {
                    Some(ends) => until = Some(ends),
                    None => break,
                },
                room = queue.room(waiting.as_ref().map_or(0, |(item, _, _)| item.bytes())), if waiting.is_some() => {
                    let (item, partition, offset) = waiting.take().expect("a waiting message");
                    if !room {
                        break;
                    }
                    match queue.try_queue(item) {
                        TryQueue::Queued => {
                            if !self.settle(&Pushed::Queued, partition, offset) {
                                break;
                            }
                        }
                        TryQueue::Full(item) => waiting = Some((item, partition, offset)),
                        TryQueue::Closed => break,
                    }
                }
                received = self.consumer.recv(), if waiting.is_none() => {
                    let m = match received {
                        Ok(m) => m,
                        Err(e) => {
                            // librdkafka retries by itself (errors are reported through the
                            // bus's connection events); pause briefly so a dead broker is
                            // not spun on.
                            tracing::debug!("kafka: reading {}: {e}", quote(&self.pattern));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let (partition, offset) = (m.partition(), m.offset());
                    // Draining: a partition read up to its drain marker delivers no more
                    // (its other partitions may still be behind theirs).
                    let past = until
                        .as_ref()
                        .and_then(|t| t.get(partition as usize))
                        .is_some_and(|&end| offset >= end);
                    if let Some(next) = self.next.get_mut(partition as usize) {
                        *next = (*next).max(offset + 1);
                    }
                    if past {
                        continue;
                    }
                    let Some(bus) = self.bus.upgrade() else { break };
                    bus.link.alive();
                    let pushed = route(&bus, &self.pattern, &m).map(|payload| queue.try_push(payload));
                    drop(bus);
                    match pushed {
                        None => self.store(partition, offset),
                        Some(Pushed::Full(item)) => waiting = Some((item, partition, offset)),
                        Some(Pushed::Closed) => break,
                        Some(pushed) => {
                            if !self.settle(&pushed, partition, offset) {
                                break;
                            }
                        }
                    }
                }
            }
        }
        if let Some(bus) = self.bus.upgrade() {
            bus.counters.subscriptions.fetch_sub(1, Relaxed);
        }
        // Dropping the consumer closes it off the runtime (a group member leaves its
        // group, committing what it stored).
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }

    /// Counts what happened to the record at `offset` of `partition` and (for a group
    /// member) stores its offset for the next commit; false when the bus is gone.
    fn settle(&self, pushed: &Pushed, partition: i32, offset: i64) -> bool {
        let Some(bus) = self.bus.upgrade() else {
            return false;
        };
        bus.counters.record(pushed);
        self.store(partition, offset);
        true
    }

    /// A group member stores the offset of a record it is done with, for the next commit.
    fn store(&self, partition: i32, offset: i64) {
        if self.grouped {
            // Fails only when the partition was revoked meanwhile: then its next owner
            // reads the record again (at least once).
            let _ = self.consumer.store_offset(&self.topic, partition, offset);
        }
    }

    /// Whether a fan-out reader has read every partition up to `ends` (a group member:
    /// always; the rest of its partitions is the other members').
    fn reached(&self, ends: &[i64]) -> bool {
        self.grouped || self.next.iter().zip(ends).all(|(next, end)| next >= end)
    }

    /// Where a drain ends: past a marker written to every partition now (a group member:
    /// where it is). `None` when the brokers do not answer: the drain ends at once.
    async fn ends(&self) -> Option<Vec<i64>> {
        if self.grouped {
            return Some(Vec::new());
        }
        let bus = self.bus.upgrade()?;
        match bus.write_marks().await {
            Ok(marks) => Some(marks.into_iter().map(|m| m + 1).collect()),
            Err(e) => {
                tracing::warn!("kafka: draining {}: {e}; ending at once", quote(&self.pattern));
                None
            }
        }
    }
}

/// What a record means for a subscription on `pattern`: `None` when it is not for it (or
/// is a marker, or names no valid subject: then counted `undecodable`), else the message
/// or why it cannot be read.
fn route<M: rdkafka::message::Message>(bus: &Inner, pattern: &str, m: &M) -> Option<Payload> {
    if envelope::is_marker(m) {
        return None;
    }
    let subject = match envelope::subject(m.headers(), m.key()) {
        Some(s) if validate_subject(s).is_ok() => s,
        other => {
            bus.counters.undecodable.fetch_add(1, Relaxed);
            tracing::warn!(
                "kafka: record at offset {} of partition {} names no busbar subject ({}): skipped",
                m.offset(),
                m.partition(),
                other.map_or_else(|| "none".to_owned(), quote)
            );
            return None;
        }
    };
    if !matches_valid(pattern, subject) {
        return None;
    }
    Some(Payload::received(bus.receive(subject, m)))
}
