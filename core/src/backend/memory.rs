//! The embedded in-memory bus: the default backend. No server, deterministic, fast.
//!
//! Each subscription owns a bounded queue; a publish walks the [`SubjectIndex`] once
//! and pushes a cheap clone of the message (two reference counts, no copy) into the
//! queue of every matching subscription and of one member per queue group.

mod log;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use smallvec::SmallVec;

use super::counters::Counters;
use super::queue::{self, Detach, Item, Payload, Pushed, QueueSender, QueueState};
use super::reply::{self, Inbox};
use crate::bus::{collect_common, BusStats, EventBus};
use crate::config::{Backend, Config};
use crate::durable::{
    dead_letter_stream, lost_consumer, no_stream, validate_name, ConsumerConfig, ConsumerInfo,
    DurablePublish, DurableSubscription, PublishAck, StreamConfig, StreamInfo,
};
use crate::envelope::codec::check_size;
use crate::envelope::{Message, MessageBuilder, Replier, Topic};
use crate::error::{Error, Result};
use crate::metrics::{Health, Scrape};
use crate::subject::{validate_pattern, validate_queue_group, validate_subject, SubjectIndex};
use crate::subscription::{Subscription, SubscriptionControl, SubscriptionStats};
use log::Log;

/// The embedded bus. Construct with [`InMemoryBus::new`] or [`crate::connect`].
pub struct InMemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    source: Arc<str>,
    table: RwLock<Table>,
    groups: Mutex<HashMap<String, Weak<Group>>>,
    inbox: Inbox<Message>,
    replier: Arc<dyn Replier>,
    next_sub: AtomicU64,
    closed: AtomicBool,
    counters: Counters,
    /// Durable streams (an in-memory JetStream).
    log: Arc<Log>,
}

/// The subscriptions, and a cache of where recently used subjects route to.
#[derive(Default)]
struct Table {
    index: SubjectIndex<Entry>,
    /// Subject → its subscriptions, cleared whenever a subscription comes or goes.
    /// A hit skips validation, the trie walk and the copy of the subject.
    routes: HashMap<Arc<str>, Arc<Route>, foldhash::fast::RandomState>,
    /// Bumped by every change of `index`, so a route computed before a change is never cached after it.
    generation: u64,
}

/// Most subjects remembered in [`Table::routes`]; past this the cache starts over.
const ROUTE_CACHE_LIMIT: usize = 8192;

/// Where one subject goes.
struct Route {
    subject: Arc<str>,
    /// Subject and this bus's source, shared by every message published on the subject.
    topic: Arc<Topic>,
    plain: Box<[Arc<Sender>]>,
    /// Members of queue groups, of all groups mixed; one per group receives.
    grouped: Box<[Arc<Sender>]>,
}

impl Table {
    fn compute(&self, subject: Arc<str>, source: &Arc<str>) -> Route {
        let (mut plain, mut grouped) = (Vec::new(), Vec::new());
        self.index.for_each_match(&subject, |e| {
            if e.sender.group.is_some() {
                grouped.push(e.sender.clone());
            } else {
                plain.push(e.sender.clone());
            }
        });
        Route {
            topic: Arc::new(Topic::new(&subject, source.clone())),
            subject,
            plain: plain.into(),
            grouped: grouped.into(),
        }
    }

    /// Caches `route` unless the index changed since it was computed at `computed_at`.
    fn remember(&mut self, route: &Arc<Route>, computed_at: u64) -> bool {
        if self.generation != computed_at {
            return false;
        }
        if self.routes.len() >= ROUTE_CACHE_LIMIT {
            self.routes.clear();
        }
        self.routes.insert(route.subject.clone(), route.clone());
        true
    }

    fn changed(&mut self) {
        self.routes.clear();
        self.generation += 1;
    }
}

/// Subscriptions whose buffer was full, with what they still have to receive.
type Blocked = SmallVec<[(Arc<Sender>, Item); 1]>;

struct Entry {
    id: u64,
    sender: Arc<Sender>,
}

/// The publishing side of one subscription, held by the index.
struct Sender {
    queue: QueueSender,
    group: Option<Arc<Group>>,
}

struct Group {
    next: AtomicU64,
}

impl InMemoryBus {
    /// A new, empty bus with `config`'s limits.
    pub fn new(config: Config) -> Result<Self> {
        config.check()?;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| Inner {
            source: Arc::from(config.source.as_str()),
            config,
            table: RwLock::new(Table::default()),
            groups: Mutex::new(HashMap::new()),
            inbox: Inbox::new(format!("_INBOX.{}.", uuid::Uuid::new_v4().simple())),
            replier: Arc::new(WeakReplier(weak.clone())),
            next_sub: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
            log: Arc::new(Log::default()),
        });
        Ok(InMemoryBus { inner })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Inner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Acquire) {
            return Err(Error::Closed("bus"));
        }
        Ok(())
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Where `subject` goes: from the cache, or validated and looked up in the index.
    fn route_for(&self, subject: &str) -> Result<Arc<Route>> {
        let table = self.table();
        if let Some(route) = table.routes.get(subject) {
            return Ok(route.clone());
        }
        // Built messages were checked already (dead letters against their longer limit).
        crate::subject::validate_dead_letter_subject(subject)?;
        let route = Arc::new(table.compute(Arc::from(subject), &self.source));
        let computed_at = table.generation;
        drop(table);
        // Inbox subjects are used once; caching them would only evict useful routes.
        if !self.inbox.owns(subject) {
            if let Ok(mut table) = self.table.try_write() {
                table.remember(&route, computed_at);
            }
        }
        Ok(route)
    }

    /// The fast path of `publish(subject, data)`: one shared copy of the subject per route.
    async fn publish_data(&self, subject: &str, data: bytes::Bytes) -> Result<()> {
        self.check_open()?;
        validate_subject(subject)?;
        let route = self.route_for(subject)?;
        let msg = Message::event(route.topic.clone(), data);
        check_size(&msg, self.config.max_payload)?;
        if self.log.active() {
            self.log.capture(&msg);
        }
        self.deliver(&route, msg).await;
        Ok(())
    }

    async fn publish(&self, mut msg: Message) -> Result<usize> {
        self.check_open()?;
        check_size(&msg, self.config.max_payload)?;
        let route = self.route_for(msg.subject())?;
        if msg.reply_to().is_some() {
            msg = msg.with_replier(self.replier.clone());
        }
        if self.log.active() {
            self.log.capture(&msg);
        }
        Ok(self.deliver(&route, msg).await)
    }

    /// Stores `msg` in its stream (as JetStream does, plain subscribers get it too).
    async fn publish_durable(&self, msg: Message) -> Result<PublishAck> {
        self.check_open()?;
        check_size(&msg, self.config.max_payload)?;
        let route = self.route_for(msg.subject())?;
        let ack = self.log.capture(&msg).ok_or_else(|| no_stream(msg.subject()))?;
        self.deliver(&route, msg).await;
        Ok(ack)
    }

    /// Queues `msg` to every subscription of `route` and one member per queue group;
    /// returns how many subscriptions it was meant for. In `block` mode it waits for
    /// room in full buffers, after queuing to all the others.
    async fn deliver(&self, route: &Route, msg: Message) -> usize {
        let (count, blocked) = self.queue_now(route, msg);
        if let Some(blocked) = blocked {
            // Boxed, and in a statement of its own: the waiting future is large and rarely
            // needed, and a future built inside an `async fn` takes room in that function's
            // own future, which `EventBus::publish` allocates for every message.
            let waiting = self.wait_for_room(blocked);
            waiting.await;
        }
        count
    }

    /// [`Inner::deliver`] up to its wait: queues `msg` where there is room, and
    /// returns the count and the full `block`-mode buffers still to wait for.
    fn queue_now(&self, route: &Route, msg: Message) -> (usize, Option<Blocked>) {
        self.counters.published.fetch_add(1, Relaxed);
        if self.inbox.owns(msg.subject()) {
            self.answer_waiter(&msg);
        }
        let mut chosen: SmallVec<[&Arc<Sender>; 4]> = SmallVec::new();
        for_one_per_group(&route.grouped, |member| chosen.push(member));
        let count = route.plain.len() + chosen.len();
        if count == 0 {
            return (0, None);
        }
        let mut blocked: Option<Blocked> = None;
        // One message for all: each queue gets a reference to it, the last the original.
        let mut msg = Some(Arc::new(msg));
        for (i, target) in route.plain.iter().chain(chosen).enumerate() {
            let shared = if i + 1 == count { msg.take() } else { msg.clone() };
            let Some(shared) = shared else { break };
            if let Some(item) = self.try_push(target, shared) {
                blocked
                    .get_or_insert_with(Default::default)
                    .push((target.clone(), item));
            }
        }
        (count, blocked)
    }

    /// Hands a reply to the request waiting on its inbox if it carries the request's
    /// correlation id; counts it as rejected or late otherwise.
    fn answer_waiter(&self, msg: &Message) {
        let answer = self
            .inbox
            .answer(msg.subject(), msg.correlation_id(), msg.clone());
        self.counters.record_answer(answer);
    }

    /// Queues without waiting; hands back the item when a `block`-mode buffer is full.
    fn try_push(&self, target: &Sender, msg: Arc<Message>) -> Option<Item> {
        let pushed = target.queue.try_push(Payload::Ready(msg));
        self.counters.record(&pushed);
        match pushed {
            Pushed::Full(item) => Some(item),
            Pushed::Queued | Pushed::Missed | Pushed::Closed => None,
        }
    }

    /// Waits until each full subscription has room (or is unsubscribed), in turn. Boxed
    /// by a plain function (see [`Inner::deliver`]).
    fn wait_for_room(
        &self,
        blocked: Blocked,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            for (target, item) in blocked {
                self.counters.record(&target.queue.push_wait(item).await);
            }
        })
    }

    fn subscribe(self: &Arc<Self>, pattern: &str, group: Option<&str>) -> Result<Subscription> {
        self.check_open()?;
        validate_pattern(pattern)?;
        if let Some(g) = group {
            validate_queue_group(g)?;
        }
        let group_state = group.map(|name| {
            let mut groups = lock(&self.groups);
            groups.retain(|_, g| g.strong_count() > 0);
            match groups.get(name).and_then(Weak::upgrade) {
                Some(g) => g,
                None => {
                    let g = Arc::new(Group {
                        next: AtomicU64::new(0),
                    });
                    groups.insert(name.to_owned(), Arc::downgrade(&g));
                    g
                }
            }
        });
        let id = self.next_sub.fetch_add(1, Relaxed);
        let state = Arc::new(QueueState::default());
        self.counters.instruments.track(pattern, group, &state);
        let handle = Arc::new(SubHandle {
            bus: Arc::downgrade(self),
            id,
            pattern: pattern.to_owned(),
            state: state.clone(),
            removed: AtomicBool::new(false),
        });
        let (queue, stream) = queue::channel(
            self.config.subscription_capacity,
            self.config.subscription_max_bytes,
            self.config.backpressure,
            pattern,
            state,
            handle.clone(),
        );
        let sender = Arc::new(Sender {
            queue,
            group: group_state,
        });
        {
            let mut table = self.table_mut();
            // Checked again under the lock so that `close` cannot miss this subscription.
            self.check_open()?;
            table.index.insert(pattern, Entry { id, sender })?;
            table.changed();
        }
        self.counters.subscriptions.fetch_add(1, Relaxed);
        Ok(Subscription::new(
            Box::pin(stream),
            handle,
            pattern,
            group.map(str::to_owned),
        ))
    }

    async fn request(&self, msg: Message, timeout: Duration) -> Result<Message> {
        self.check_open()?;
        reply::check_timeout(&msg, timeout)?;
        // The timeout bounds the whole call, waiting for room in a full responder included.
        let deadline = reply::deadline(timeout);
        let mut waiting = self.inbox.wait("", reply::expected_correlation(&msg));
        let request = reply::stamp_request(&msg, waiting.subject(), timeout)?;
        let responders = tokio::time::timeout_at(deadline, self.publish(request))
            .await
            .map_err(|_| reply::timed_out(&msg, timeout))??;
        if responders == 0 {
            return Err(Error::NoResponders {
                subject: msg.subject().to_owned(),
            });
        }
        waiting.reply(msg.subject(), deadline, timeout).await
    }

    fn close(&self) {
        if self.closed.swap(true, AcqRel) {
            return;
        }
        let old = std::mem::take(&mut *self.table_mut());
        drop(old);
        self.inbox.close_all();
        self.log.close();
    }
}

/// Calls `push` with one member of each queue group, taking members in turn.
#[async_trait::async_trait]
impl DurablePublish for WeakReplier {
    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        let inner = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        inner.publish_durable(message).await
    }
}

fn for_one_per_group<'a>(grouped: &'a [Arc<Sender>], mut push: impl FnMut(&'a Arc<Sender>)) {
    let mut done: SmallVec<[*const Group; 4]> = SmallVec::new();
    for member in grouped {
        let Some(group) = member.group.as_ref() else {
            continue;
        };
        let key = Arc::as_ptr(group);
        if done.contains(&key) {
            continue;
        }
        done.push(key);
        let in_group = |m: &&Arc<Sender>| m.group.as_ref().is_some_and(|g| Arc::as_ptr(g) == key);
        let size = grouped.iter().filter(in_group).count();
        let turn = group.next.fetch_add(1, Relaxed) as usize % size;
        if let Some(chosen) = grouped.iter().filter(in_group).nth(turn) {
            push(chosen);
        }
    }
}

struct WeakReplier(Weak<Inner>);

#[async_trait::async_trait]
impl Replier for WeakReplier {
    async fn send_reply(&self, reply: Message) -> Result<()> {
        let inner = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        inner.publish(reply).await.map(|_| ())
    }
}

/// Control of one subscription; removing it from the index is idempotent.
struct SubHandle {
    bus: Weak<Inner>,
    id: u64,
    pattern: String,
    state: Arc<QueueState>,
    removed: AtomicBool,
}

impl Detach for SubHandle {
    fn detach(&self) {
        if self.removed.swap(true, AcqRel) {
            return;
        }
        if let Some(bus) = self.bus.upgrade() {
            let mut table = bus.table_mut();
            table.index.remove(&self.pattern, |e| e.id == self.id);
            table.changed();
            bus.counters.subscriptions.fetch_sub(1, Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl SubscriptionControl for SubHandle {
    async fn unsubscribe(&self) -> Result<()> {
        self.state.stop();
        self.detach();
        Ok(())
    }

    async fn drain(&self) -> Result<()> {
        self.detach();
        Ok(())
    }

    fn stats(&self) -> SubscriptionStats {
        self.state.stats()
    }
}

#[async_trait::async_trait]
impl EventBus for InMemoryBus {
    async fn publish(&self, subject: &str, data: bytes::Bytes) -> Result<()> {
        self.inner.publish_data(subject, data).await
    }

    async fn publish_message(&self, message: Message) -> Result<()> {
        self.inner.publish(message).await.map(|_| ())
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        self.inner.subscribe(pattern, None)
    }

    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription> {
        self.inner.subscribe(pattern, Some(group))
    }

    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message> {
        let instruments = &self.inner.counters.instruments;
        instruments.request(self.inner.request(message, timeout)).await
    }

    async fn flush(&self) -> Result<()> {
        // Every publish has reached its queues when it returns.
        self.inner.check_open()
    }

    async fn close(&self) -> Result<()> {
        self.inner.close();
        Ok(())
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.check_open()?;
        self.inner
            .log
            .declare(config.checked(self.inner.config.retention_days)?)
    }

    async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        self.inner.check_open()?;
        self.inner.log.info(name)
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.inner.check_open()?;
        Ok(self.inner.log.list())
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.inner.check_open()?;
        validate_name("stream", name)?;
        self.inner.log.delete(name)
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.inner.check_open()?;
        validate_name("stream", stream)?;
        self.inner.log.consumers(stream)
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo> {
        self.inner.check_open()?;
        validate_name("stream", stream)?;
        validate_name("consumer", name)?;
        self.inner.log.consumer_info(stream, name)
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        self.inner.check_open()?;
        validate_name("stream", stream)?;
        validate_name("consumer", name)?;
        self.inner.log.delete_consumer(stream, name)
    }

    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        self.inner.publish_durable(message).await
    }

    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription> {
        self.inner.check_open()?;
        config.check()?;
        self.declare_stream(dead_letter_stream(&config.dlq_prefix))
            .await?;
        let log = self.inner.log.clone();
        let stream = log.open(&config)?;
        let reading = (log, Some(stream), config.clone());
        // A deleted stream or consumer yields one `backend` item, then the consumer is
        // opened again once its stream exists, as on NATS (docs/design.md §4).
        let deliveries = futures_util::stream::unfold(reading, |(log, stream, config)| async move {
            let stream = match stream {
                Some(stream) => stream,
                None => log.reopen(&config).await?,
            };
            match stream.next(&config.name, &log).await {
                Some(next) => Some((next, (log, Some(stream), config))),
                None if log.is_closed() => None,
                None => Some((Err(lost_consumer(&config)), (log, None, config))),
            }
        });
        let publisher = Arc::new(WeakReplier(Arc::downgrade(&self.inner)));
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
        self.inner.counters.snapshot()
    }

    fn health(&self) -> Health {
        let inner = &self.inner;
        inner
            .counters
            .health(inner.closed.load(Acquire), true, inner.inbox.pending())
    }

    fn collect_metrics(&self, scrape: &mut Scrape) {
        collect_common(self, scrape);
        self.inner.counters.instruments.collect(scrape);
    }

    fn backend(&self) -> Backend {
        Backend::Memory
    }
}

impl Drop for InMemoryBus {
    fn drop(&mut self) {
        self.inner.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> Arc<str> {
        Arc::from("test")
    }

    #[test]
    fn a_route_computed_before_a_change_is_not_cached() {
        let mut table = Table::default();
        let route = Arc::new(table.compute(Arc::from("a.b"), &source()));
        let computed_at = table.generation;
        table.changed(); // a subscription came or went meanwhile
        assert!(!table.remember(&route, computed_at));
        assert!(table.routes.is_empty());
        let fresh = Arc::new(table.compute(Arc::from("a.b"), &source()));
        assert!(table.remember(&fresh, table.generation));
        assert_eq!(table.routes.len(), 1);
    }

    #[test]
    fn the_route_cache_is_bounded() {
        let mut table = Table::default();
        for i in 0..ROUTE_CACHE_LIMIT + 10 {
            let route = Arc::new(table.compute(Arc::from(format!("s.{i}")), &source()));
            table.remember(&route, table.generation);
        }
        assert!(table.routes.len() <= ROUTE_CACHE_LIMIT);
    }
}
