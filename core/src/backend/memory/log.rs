//! The in-memory durable log of [`crate::InMemoryBus`]: streams, dedupe and durable
//! consumers that behave as JetStream's do (same sequence numbers, same redelivery
//! rules), so a program and its tests see one behaviour on both backends.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::durable::{
    count_pending, no_such_consumer, no_such_stream, ConsumerConfig, ConsumerInfo, Delivery, PublishAck,
    Settle, StartAt, StreamConfig, StreamInfo,
};
use crate::envelope::Message;
use crate::error::{Error, Result};
use crate::subject::{matches_routed, patterns_overlap};

/// Every stream of one bus.
#[derive(Default)]
pub(crate) struct Log {
    streams: RwLock<Vec<Arc<LogStream>>>,
    /// Whether any stream exists: plain publishes skip the log entirely when none does.
    active: AtomicBool,
    closed: AtomicBool,
    /// Woken by every declare and by close: a subscription whose stream was deleted
    /// waits on it for the stream to come back.
    declared: Notify,
}

pub(crate) struct LogStream {
    config: StreamConfig,
    state: Mutex<StreamState>,
    /// Woken by every store, ack, nak, delete and by close.
    notify: Notify,
    /// Set when the stream is deleted: its subscriptions stop reading it.
    deleted: AtomicBool,
}

#[derive(Default)]
struct StreamState {
    messages: VecDeque<Stored>,
    /// Sequence of the last message ever stored.
    last_seq: u64,
    bytes: u64,
    dedupe: HashMap<String, (u64, Instant)>,
    dedupe_order: VecDeque<(Instant, String)>,
    consumers: HashMap<String, ConsumerState>,
}

/// The stored message with sequence `seq`, if the limits have kept it.
fn stored(messages: &VecDeque<Stored>, seq: u64) -> Option<&Stored> {
    let first = messages.front()?.seq;
    messages.get(usize::try_from(seq.checked_sub(first)?).ok()?)
}

struct Stored {
    seq: u64,
    message: Message,
    stored_at: SystemTime,
}

struct ConsumerState {
    filter: Option<String>,
    ack_wait: Duration,
    max_ack_pending: usize,
    /// Next sequence not yet delivered.
    cursor: u64,
    /// Stream sequence of the last message delivered (0 before the first).
    delivered: u64,
    /// Delivered and not settled: sequence → (attempts so far, when it may be redelivered).
    pending: BTreeMap<u64, (u32, Instant)>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Log {
    pub(super) fn active(&self) -> bool {
        self.active.load(Acquire)
    }

    fn find(&self, name: &str) -> Option<Arc<LogStream>> {
        let streams = self.streams.read().unwrap_or_else(|p| p.into_inner());
        streams.iter().find(|s| s.config.name == name).cloned()
    }

    /// Creates the stream unless one of that name exists (then its settings stay).
    pub(super) fn declare(&self, config: StreamConfig) -> Result<StreamInfo> {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = streams.iter().find(|s| s.config.name == config.name) {
            return Ok(existing.info());
        }
        for other in streams.iter() {
            for mine in &config.subjects {
                if let Some(theirs) = other.config.subjects.iter().find(|t| patterns_overlap(mine, t)) {
                    return Err(Error::InvalidArgument(format!(
                        "stream {:?}: subjects {mine:?} overlap {theirs:?} of stream {:?}",
                        config.name, other.config.name
                    )));
                }
            }
        }
        let stream = Arc::new(LogStream {
            config,
            state: Mutex::new(StreamState::default()),
            notify: Notify::new(),
            deleted: AtomicBool::new(false),
        });
        let info = stream.info();
        streams.push(stream);
        self.active.store(true, Release);
        drop(streams);
        self.declared.notify_waiters();
        Ok(info)
    }

    /// Every stream, sorted by name.
    pub(super) fn list(&self) -> Vec<StreamInfo> {
        let streams: Vec<Arc<LogStream>> = self.streams.read().unwrap_or_else(|p| p.into_inner()).clone();
        let mut infos: Vec<StreamInfo> = streams.iter().map(|s| s.info()).collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// Removes stream `name`; its subscriptions see it gone.
    pub(super) fn delete(&self, name: &str) -> Result<()> {
        let mut streams = self.streams.write().unwrap_or_else(|p| p.into_inner());
        let at = streams
            .iter()
            .position(|s| s.config.name == name)
            .ok_or_else(|| no_such_stream(name))?;
        let stream = streams.remove(at);
        self.active.store(!streams.is_empty(), Release);
        drop(streams);
        stream.deleted.store(true, Release);
        stream.notify.notify_waiters();
        Ok(())
    }

    /// The consumers of stream `name`, sorted by name.
    pub(super) fn consumers(&self, name: &str) -> Result<Vec<ConsumerInfo>> {
        let stream = self.stream(name)?;
        let mut state = lock(&stream.state);
        state.prune(&stream.config, Instant::now());
        let mut names: Vec<&String> = state.consumers.keys().collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|c| state.consumer_info(&stream.config.name, c))
            .collect())
    }

    /// Where consumer `consumer` of stream `name` stands.
    pub(super) fn consumer_info(&self, name: &str, consumer: &str) -> Result<ConsumerInfo> {
        let stream = self.stream(name)?;
        let mut state = lock(&stream.state);
        state.prune(&stream.config, Instant::now());
        state
            .consumer_info(name, consumer)
            .ok_or_else(|| no_such_consumer(name, consumer))
    }

    /// Forgets consumer `consumer` of stream `name`; a subscription reading it sees it gone.
    pub(super) fn delete_consumer(&self, name: &str, consumer: &str) -> Result<()> {
        let stream = self.stream(name)?;
        let removed = lock(&stream.state).consumers.remove(consumer);
        if removed.is_none() {
            return Err(no_such_consumer(name, consumer));
        }
        stream.notify.notify_waiters();
        Ok(())
    }

    /// Opens consumer `config.name` once its stream exists (at once if it does): how a
    /// subscription whose stream or consumer was deleted goes on. `None` once the bus closes.
    pub(super) async fn reopen(self: &Arc<Self>, config: &ConsumerConfig) -> Option<Arc<LogStream>> {
        loop {
            let declared = self.declared.notified();
            tokio::pin!(declared);
            declared.as_mut().enable();
            if self.is_closed() {
                return None;
            }
            if let Ok(stream) = self.open(config) {
                return Some(stream);
            }
            declared.await;
        }
    }

    pub(super) fn info(&self, name: &str) -> Result<StreamInfo> {
        self.stream(name).map(|s| s.info())
    }

    pub(super) fn stream(&self, name: &str) -> Result<Arc<LogStream>> {
        self.find(name).ok_or_else(|| no_such_stream(name))
    }

    /// Stores `msg` in the stream whose subjects match it; `None` when no stream does.
    pub(super) fn capture(&self, msg: &Message) -> Option<PublishAck> {
        let stream = {
            let streams = self.streams.read().unwrap_or_else(|p| p.into_inner());
            streams
                .iter()
                .find(|s| s.config.subjects.iter().any(|p| matches_routed(p, msg.subject())))
                .cloned()?
        };
        Some(stream.store(msg))
    }

    /// Ends every durable subscription of this bus.
    pub(super) fn close(&self) {
        self.closed.store(true, Release);
        let streams = self.streams.read().unwrap_or_else(|p| p.into_inner());
        for s in streams.iter() {
            s.notify.notify_waiters();
        }
        self.declared.notify_waiters();
    }

    /// Opens consumer `config.name` (creating it at `config.start` if new) and returns its
    /// stream, whose [`LogStream::next`] yields the consumer's deliveries.
    pub(super) fn open(self: &Arc<Self>, config: &ConsumerConfig) -> Result<Arc<LogStream>> {
        let stream = self.stream(&config.stream)?;
        {
            let mut state = lock(&stream.state);
            let cursor = match config.start {
                StartAt::Beginning => state.first_seq(),
                StartAt::Sequence(seq) => seq.max(1),
                StartAt::Time(t) => state
                    .messages
                    .iter()
                    .find(|m| m.stored_at >= t)
                    .map_or(state.last_seq + 1, |m| m.seq),
                StartAt::New => state.last_seq + 1,
            };
            state
                .consumers
                .entry(config.name.clone())
                .or_insert_with(|| ConsumerState {
                    filter: config.filter.clone(),
                    ack_wait: config.ack_wait,
                    max_ack_pending: config.max_ack_pending,
                    cursor,
                    delivered: 0,
                    pending: BTreeMap::new(),
                });
        }
        Ok(stream)
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Acquire)
    }
}

impl StreamState {
    /// What consumer `name` stands at, as JetStream counts it.
    fn consumer_info(&self, stream: &str, name: &str) -> Option<ConsumerInfo> {
        let c = self.consumers.get(name)?;
        let stored = self.messages.iter().map(|m| (m.seq, m.message.subject()));
        let pending = count_pending(stored, c.cursor.max(self.first_seq()), c.filter.as_deref());
        Some(ConsumerInfo {
            stream: stream.to_owned(),
            name: name.to_owned(),
            filter: c.filter.clone(),
            pending,
            ack_pending: c.pending.len() as u64,
            delivered_sequence: c.delivered,
        })
    }

    fn first_seq(&self) -> u64 {
        self.messages.front().map_or(self.last_seq + 1, |m| m.seq)
    }

    /// Drops what the stream's limits no longer allow, oldest first, and expired dedupe ids.
    fn prune(&mut self, config: &StreamConfig, now: Instant) {
        let wall = SystemTime::now();
        while let Some(oldest) = self.messages.front() {
            let too_many = config
                .max_messages
                .is_some_and(|max| self.messages.len() as u64 > max);
            let too_big = config.max_bytes.is_some_and(|max| self.bytes > max);
            let too_old = config
                .max_age
                .is_some_and(|age| wall.duration_since(oldest.stored_at).unwrap_or_default() > age);
            if !(too_many || too_big || too_old) {
                break;
            }
            self.bytes -= oldest.message.data().len() as u64;
            self.messages.pop_front();
        }
        while let Some((at, _)) = self.dedupe_order.front() {
            if now.duration_since(*at) <= config.duplicate_window {
                break;
            }
            if let Some((_, id)) = self.dedupe_order.pop_front() {
                if self
                    .dedupe
                    .get(&id)
                    .is_some_and(|(_, t)| now.duration_since(*t) > config.duplicate_window)
                {
                    self.dedupe.remove(&id);
                }
            }
        }
    }
}

impl LogStream {
    fn info(&self) -> StreamInfo {
        let mut state = lock(&self.state);
        state.prune(&self.config, Instant::now());
        StreamInfo {
            name: self.config.name.clone(),
            subjects: self.config.subjects.clone(),
            messages: state.messages.len() as u64,
            bytes: state.bytes,
            first_sequence: state.messages.front().map_or(0, |m| m.seq),
            last_sequence: state.last_seq,
        }
    }

    fn store(&self, msg: &Message) -> PublishAck {
        let now = Instant::now();
        let mut state = lock(&self.state);
        state.prune(&self.config, now);
        let dedupe_id = msg.dedupe_id();
        if let Some((seq, _)) = state.dedupe.get(&*dedupe_id) {
            return PublishAck {
                stream: self.config.name.clone(),
                sequence: *seq,
                duplicate: true,
            };
        }
        state.last_seq += 1;
        let seq = state.last_seq;
        state.dedupe.insert(dedupe_id.clone().into_owned(), (seq, now));
        state.dedupe_order.push_back((now, dedupe_id.into_owned()));
        state.bytes += msg.data().len() as u64;
        state.messages.push_back(Stored {
            seq,
            message: msg.clone(),
            stored_at: SystemTime::now(),
        });
        state.prune(&self.config, now);
        drop(state);
        self.notify.notify_waiters();
        PublishAck {
            stream: self.config.name.clone(),
            sequence: seq,
            duplicate: false,
        }
    }

    /// The next delivery of consumer `name`: a due redelivery first, else the next stored
    /// message matching its filter while fewer than `max_ack_pending` are unsettled.
    /// Waits for one; `None` when the bus closes or the consumer is gone.
    pub(super) async fn next(self: &Arc<Self>, name: &str, log: &Log) -> Option<Result<Delivery>> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if log.is_closed() || self.deleted.load(Acquire) {
                return None;
            }
            let wake_at = {
                let now = Instant::now();
                let mut guard = lock(&self.state);
                let state = &mut *guard;
                state.prune(&self.config, now);
                let first = state.first_seq();
                let (messages, last_seq) = (&state.messages, state.last_seq);
                let consumer = state.consumers.get_mut(name)?;
                // Unsettled deliveries whose message the limits removed can never be delivered.
                consumer.pending.retain(|seq, _| *seq >= first);
                let due = consumer
                    .pending
                    .iter()
                    .find(|(_, (_, at))| *at <= now)
                    .map(|(seq, _)| *seq);
                if let Some(seq) = due {
                    let message = stored(messages, seq).map(|s| s.message.clone());
                    let entry = consumer.pending.get_mut(&seq).map(|(attempts, at)| {
                        *attempts += 1;
                        *at = now + consumer.ack_wait;
                        *attempts
                    });
                    if let (Some(message), Some(attempt)) = (message, entry) {
                        return Some(Ok(self.delivery(name, message, seq, attempt)));
                    }
                    consumer.pending.remove(&seq);
                    continue;
                }
                if consumer.pending.len() < consumer.max_ack_pending {
                    let start = consumer.cursor.max(first);
                    let found = (start..=last_seq).find_map(|seq| {
                        let stored = stored(messages, seq)?;
                        let wanted = consumer
                            .filter
                            .as_deref()
                            .is_none_or(|f| matches_routed(f, stored.message.subject()));
                        wanted.then(|| stored.message.clone()).map(|m| (seq, m))
                    });
                    match found {
                        Some((seq, message)) => {
                            consumer.cursor = seq + 1;
                            consumer.delivered = seq;
                            consumer.pending.insert(seq, (1, now + consumer.ack_wait));
                            return Some(Ok(self.delivery(name, message, seq, 1)));
                        }
                        None => consumer.cursor = last_seq + 1,
                    }
                }
                consumer.pending.values().map(|(_, at)| *at).min()
            };
            match wake_at {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    fn delivery(self: &Arc<Self>, name: &str, message: Message, seq: u64, attempt: u32) -> Delivery {
        Delivery {
            message,
            attempt,
            sequence: seq,
            settle: Box::new(LogSettle {
                stream: self.clone(),
                consumer: name.to_owned(),
                seq,
            }),
            undecodable: None,
        }
    }

    /// Changes the pending entry of `seq` for consumer `name`; `None` removes it.
    fn settle(&self, name: &str, seq: u64, due: impl FnOnce(Duration) -> Option<Duration>) {
        let mut state = lock(&self.state);
        if let Some(consumer) = state.consumers.get_mut(name) {
            match due(consumer.ack_wait) {
                Some(delay) => {
                    if let Some((_, at)) = consumer.pending.get_mut(&seq) {
                        *at = Instant::now() + delay;
                    }
                }
                None => {
                    consumer.pending.remove(&seq);
                }
            }
        }
        drop(state);
        self.notify.notify_waiters();
    }
}

struct LogSettle {
    stream: Arc<LogStream>,
    consumer: String,
    seq: u64,
}

#[async_trait::async_trait]
impl Settle for LogSettle {
    async fn ack(&self) -> Result<()> {
        self.stream.settle(&self.consumer, self.seq, |_| None);
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<()> {
        self.stream.settle(&self.consumer, self.seq, |_| Some(delay));
        Ok(())
    }

    async fn in_progress(&self) -> Result<()> {
        self.stream.settle(&self.consumer, self.seq, Some);
        Ok(())
    }
}
