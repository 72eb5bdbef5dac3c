//! The bounded queue behind every subscription, whatever the backend: back-pressure
//! (`block` or `lag`, docs/design.md §4), the lag notice at the exact gap, and counters.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::futures::Notified;
use tokio::sync::{mpsc, oneshot, Notify};

use crate::config::Backpressure;
use crate::envelope::Message;
use crate::error::{Error, Result};
use crate::subscription::{SubscriptionControl, SubscriptionStats};

/// What a queue item carries: a message, why one that arrived could not be read, or a
/// message as it came from NATS, decoded only when the subscriber takes it, so that the
/// task moving messages off the connection does the least work per message.
///
/// Every variant is one pointer. A message is shared: fan-out queues one reference to
/// it per subscription and copies nothing (the subscriber that takes the last reference
/// takes the message itself). And tokio's channel allocates its first block of 32 items
/// when a subscription is created, so the item's size is what an idle subscription holds:
/// 32 × 136 bytes when a message was held inline, 32 × 24 now.
pub(crate) enum Payload {
    Ready(Arc<Message>),
    Unreadable(Box<Error>),
    #[cfg(feature = "nats")]
    Nats(Box<async_nats::Message>),
}

impl Payload {
    /// A message as a backend received it, or why it could not be read.
    #[cfg_attr(not(any(feature = "rabbitmq", feature = "kafka")), allow(dead_code))]
    pub(crate) fn received(msg: Result<Message>) -> Self {
        match msg {
            Ok(msg) => Payload::Ready(Arc::new(msg)),
            Err(e) => Payload::Unreadable(Box::new(e)),
        }
    }

    /// The bytes it holds while it waits in a queue: the payload and the headers (on NATS
    /// the header block as received). The payload is what `subscription_max_bytes` bounds.
    /// The same every time it is asked: what it holds does not change while it is queued.
    fn bytes(&self) -> u64 {
        match self {
            Payload::Ready(m) => {
                let headers: usize = m.headers().iter().map(|(k, v)| k.len() + v.len()).sum();
                (m.data().len() + headers) as u64
            }
            Payload::Unreadable(_) => 0,
            #[cfg(feature = "nats")]
            Payload::Nats(m) => m.length.max(m.payload.len()) as u64,
        }
    }
}

/// Turns a message as it came from NATS into a [`Message`] (or a `decode` error).
#[cfg(feature = "nats")]
pub(crate) type Decoder = Arc<dyn Fn(async_nats::Message) -> Result<Message> + Send + Sync>;

/// A payload and how many messages its subscription missed just before it.
pub(crate) struct Item {
    payload: Payload,
    missed: u64,
}

impl Item {
    /// The bytes it counts against `subscription_max_bytes` (see [`Payload::bytes`]).
    pub(crate) fn bytes(&self) -> u64 {
        self.payload.bytes()
    }
}

/// What happened to a message handed to [`QueueSender::try_push`].
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// Not queued: the buffer was full in `lag` mode; the loss is counted.
    Missed,
    /// The buffer is full in `block` mode: wait with [`QueueSender::push_wait`].
    Full(Item),
    /// The subscriber is gone.
    Closed,
}

/// Keeps a value on cache lines of its own, so that a field written by the publisher's
/// core and one written by the subscriber's core do not bounce one line between them.
#[derive(Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// Shared between the publishing side, the stream and the subscription's control.
/// Grouped by who writes: publishers (every message), the subscriber (every message),
/// both (the bytes held), and rarely (lag, stop, undecodable messages).
#[derive(Default)]
pub(crate) struct QueueState {
    delivered: Padded<AtomicU64>,
    received: Padded<AtomicU64>,
    /// Bytes of the messages in the queue now (see [`held_bytes`]).
    bytes: Padded<AtomicU64>,
    /// Missed messages not yet reported to the subscriber; read on every push and empty
    /// poll, written only when a message is missed or the loss is reported.
    missed_unreported: Padded<AtomicU64>,
    missed_total: AtomicU64,
    undecodable: AtomicU64,
    /// Publishers waiting for bytes to be taken out of the queue.
    byte_waiters: AtomicU64,
    room: Notify,
    lagging: AtomicBool,
    stopped: AtomicBool,
    stop: Notify,
}

impl QueueState {
    /// Ends the stream at once and releases publishers waiting for room.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Release);
        self.stop.notify_waiters();
        self.room.notify_waiters();
    }

    pub(crate) fn stats(&self) -> SubscriptionStats {
        let delivered = self.delivered.load(Relaxed);
        SubscriptionStats {
            delivered,
            missed: self.missed_total.load(Relaxed),
            pending: delivered.saturating_sub(self.received.load(Relaxed)),
            pending_bytes: self.bytes.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            lagging: self.lagging.load(Acquire),
        }
    }

    fn take_unreported(&self) -> u64 {
        match self.missed_unreported.load(Relaxed) {
            0 => 0,
            _ => self.missed_unreported.swap(0, AcqRel),
        }
    }

    /// Counts one missed message (the gap is reported by whoever carries it).
    fn count_missed(&self) {
        self.missed_total.fetch_add(1, Relaxed);
        self.lagging.store(true, Release);
    }

    /// Gives back the bytes of an item taken out of the queue (or never queued).
    fn release(&self, bytes: u64) {
        if bytes == 0 {
            return;
        }
        self.bytes.fetch_sub(bytes, SeqCst);
        if self.byte_waiters.load(SeqCst) > 0 {
            self.room.notify_waiters();
        }
    }
}

/// What [`QueueSender::try_queue`] did with an item.
pub(crate) enum TryQueue {
    Queued,
    /// No room now (by count or by bytes): the item comes back.
    Full(Item),
    Closed,
}

/// The publishing side of one subscription's queue.
pub(crate) struct QueueSender {
    tx: mpsc::Sender<Item>,
    pub(crate) state: Arc<QueueState>,
    mode: Backpressure,
    max_bytes: u64,
}

impl QueueSender {
    /// Takes `bytes` for an item if they fit: always when the queue holds no bytes (so one
    /// message larger than the bound still gets through), else up to `max_bytes`.
    ///
    /// Decided on the bytes really held (compare-and-swap), never by adding and taking back:
    /// a take-back would wake the byte waiters, the caller among them (its `room` is
    /// enabled), so a publisher waiting for bytes would spin on its own wake-up and, on a
    /// single-threaded runtime, never let the subscriber take anything.
    fn reserve_bytes(&self, bytes: u64) -> bool {
        if bytes == 0 {
            return true;
        }
        let held = &self.state.bytes;
        let mut before = held.load(SeqCst);
        loop {
            if before != 0 && before.saturating_add(bytes) > self.max_bytes {
                return false;
            }
            match held.compare_exchange_weak(before, before + bytes, SeqCst, SeqCst) {
                Ok(_) => return true,
                Err(now) => before = now,
            }
        }
    }

    /// Adds `n` (wrapping: `u64::MAX` takes one back) to the queued counters.
    fn queued(&self, n: u64) {
        self.state.delivered.fetch_add(n, Relaxed);
    }

    /// `payload` as an item carrying `missed` messages missed just before it.
    pub(crate) fn item(payload: Payload, missed: u64) -> Item {
        Item { payload, missed }
    }

    /// Queues `item` as it is (its gap included) if there is room now.
    pub(crate) fn try_queue(&self, item: Item) -> TryQueue {
        let bytes = item.bytes();
        if !self.reserve_bytes(bytes) {
            return TryQueue::Full(item);
        }
        // Counted before it can be received, so `stats()` never shows it taken but not queued.
        self.queued(1);
        let refused = match self.tx.try_send(item) {
            Ok(()) => return TryQueue::Queued,
            Err(mpsc::error::TrySendError::Closed(_)) => TryQueue::Closed,
            Err(mpsc::error::TrySendError::Full(item)) => TryQueue::Full(item),
        };
        self.queued(u64::MAX); // -1: not queued after all
        self.state.release(bytes);
        refused
    }

    /// Queues without waiting.
    pub(crate) fn try_push(&self, payload: Payload) -> Pushed {
        let carried = self.state.take_unreported();
        let item = match self.try_queue(Self::item(payload, carried)) {
            TryQueue::Queued => return Pushed::Queued,
            TryQueue::Closed => return Pushed::Closed,
            TryQueue::Full(item) => item,
        };
        match self.mode {
            Backpressure::Block => Pushed::Full(item),
            Backpressure::Lag => {
                self.missed(item.missed + 1);
                Pushed::Missed
            }
        }
    }

    /// Counts one missed message and reports `gap` (it included) at the next item queued
    /// or when the subscriber finds the queue empty.
    pub(crate) fn missed(&self, gap: u64) {
        self.report_gap(gap);
        self.state.count_missed();
    }

    /// Counts one missed message whose gap the caller carries to a later item itself.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))] // used by the NATS pump
    pub(crate) fn missed_carried(&self) {
        self.state.count_missed();
    }

    /// Reports `gap` missed messages (already counted) at the next item queued, or when
    /// the subscriber finds the queue empty.
    pub(crate) fn report_gap(&self, gap: u64) {
        if gap > 0 {
            self.state.missed_unreported.fetch_add(gap, AcqRel);
        }
    }

    /// The back-pressure mode of this queue.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))] // used by the NATS pump
    pub(crate) fn mode(&self) -> Backpressure {
        self.mode
    }

    /// The bounds of this queue: messages and bytes.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))] // used by the NATS pump
    pub(crate) fn bounds(&self) -> (usize, u64) {
        (self.tx.max_capacity(), self.max_bytes)
    }

    /// Whether an item of `bytes` would find no room now (without reserving anything).
    #[cfg_attr(not(feature = "nats"), allow(dead_code))] // used by the NATS pump
    pub(crate) fn is_full(&self, bytes: u64) -> bool {
        if self.tx.capacity() == 0 {
            return true;
        }
        let held = self.state.bytes.load(Relaxed);
        held > 0 && held + bytes > self.max_bytes
    }

    /// Waits until the queue probably has room for an item of `bytes` (it may be taken by
    /// another publisher first): false when the subscription stopped or went away.
    /// Cancel-safe: it holds no item.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))] // used by the NATS pump
    pub(crate) async fn room(&self, bytes: u64) -> bool {
        let state = &self.state;
        let stopped = state.stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if state.stopped.load(Acquire) {
            return false;
        }
        let permit = tokio::select! {
            permit = self.tx.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => return false,
            },
            _ = &mut stopped => return false,
        };
        drop(permit);
        if self.wait_bytes(bytes, stopped.as_mut()).await {
            // Only probing: give the bytes back for the caller's `try_queue`.
            state.release(bytes);
            return true;
        }
        false
    }

    /// Waits until `bytes` fit and takes them; false when the subscription stopped or
    /// went away first.
    async fn wait_bytes(&self, bytes: u64, mut stopped: Pin<&mut Notified<'_>>) -> bool {
        let state = &self.state;
        loop {
            let room = state.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            state.byte_waiters.fetch_add(1, SeqCst);
            let fits = self.reserve_bytes(bytes);
            if fits {
                state.byte_waiters.fetch_sub(1, SeqCst);
                return true;
            }
            let woken = tokio::select! {
                _ = &mut room => true,
                _ = stopped.as_mut() => false,
                _ = self.tx.closed() => false,
            };
            state.byte_waiters.fetch_sub(1, SeqCst);
            if !woken || state.stopped.load(Acquire) {
                return false;
            }
        }
    }

    /// Waits for room: `Queued`, or `Closed` when the subscription stopped or went away.
    pub(crate) async fn push_wait(&self, item: Item) -> Pushed {
        let state = &self.state;
        let stopped = state.stop.notified();
        tokio::pin!(stopped);
        stopped.as_mut().enable();
        if state.stopped.load(Acquire) {
            return Pushed::Closed;
        }
        let permit = tokio::select! {
            permit = self.tx.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => return Pushed::Closed,
            },
            _ = &mut stopped => return Pushed::Closed,
        };
        // A slot is ours; now the bytes (held back while the queue holds too many).
        if !self.wait_bytes(item.bytes(), stopped.as_mut()).await {
            return Pushed::Closed;
        }
        self.queued(1);
        permit.send(item);
        Pushed::Queued
    }
}

/// Called once when the stream is dropped, so the backend stops routing to it.
pub(crate) trait Detach: Send + Sync {
    fn detach(&self);
}

/// What a subscription's control asks of the task pumping a broker's messages into its
/// queue (the NATS and RabbitMQ backends).
#[cfg_attr(
    not(any(feature = "nats", feature = "rabbitmq", feature = "kafka")),
    allow(dead_code)
)]
pub(crate) enum Command {
    /// Stop interest at the broker and deliver what is in flight; answer once stopped.
    Drain(oneshot::Sender<()>),
    Unsubscribe,
}

/// What a backend does before it asks its pump to drain (NATS: a round trip through the
/// server, so what it routed before is in the subscription's buffer).
#[cfg_attr(
    not(any(feature = "nats", feature = "rabbitmq", feature = "kafka")),
    allow(dead_code)
)]
#[async_trait::async_trait]
pub(crate) trait BeforeDrain: Send + Sync {
    async fn before_drain(&self) -> Result<()>;

    /// Waits for the pump to answer a drain; a backend may bound the wait (NATS: by
    /// `publish_timeout_ms`, since the unsubscribe goes through its publish buffer).
    async fn wait_drained(&self, finished: oneshot::Receiver<()>) -> Result<()> {
        let _ = finished.await;
        Ok(())
    }
}

/// Nothing to do before a drain.
#[async_trait::async_trait]
impl BeforeDrain for () {
    async fn before_drain(&self) -> Result<()> {
        Ok(())
    }
}

/// The control of a subscription fed by a pump task: commands go to the pump, stats come
/// from the queue's state; dropping the stream unsubscribes once.
#[cfg_attr(
    not(any(feature = "nats", feature = "rabbitmq", feature = "kafka")),
    allow(dead_code)
)]
pub(crate) struct PumpHandle<B> {
    commands: mpsc::Sender<Command>,
    state: Arc<QueueState>,
    before_drain: B,
    detached: AtomicBool,
}

#[cfg_attr(
    not(any(feature = "nats", feature = "rabbitmq", feature = "kafka")),
    allow(dead_code)
)]
impl<B: BeforeDrain> PumpHandle<B> {
    /// A handle on `state`, and the receiver of its commands for the pump.
    pub(crate) fn new(state: Arc<QueueState>, before_drain: B) -> (Self, mpsc::Receiver<Command>) {
        let (commands, receiver) = mpsc::channel(4);
        let handle = PumpHandle {
            commands,
            state,
            before_drain,
            detached: AtomicBool::new(false),
        };
        (handle, receiver)
    }
}

impl<B: BeforeDrain> Detach for PumpHandle<B> {
    fn detach(&self) {
        if !self.detached.swap(true, AcqRel) {
            // Dropping the stream: the pump unsubscribes (or ends, if the command channel is gone).
            let _ = self.commands.try_send(Command::Unsubscribe);
        }
    }
}

#[async_trait::async_trait]
impl<B: BeforeDrain> SubscriptionControl for PumpHandle<B> {
    async fn unsubscribe(&self) -> Result<()> {
        self.state.stop();
        self.detached.store(true, Release);
        let _ = self.commands.send(Command::Unsubscribe).await;
        Ok(())
    }

    async fn drain(&self) -> Result<()> {
        self.before_drain.before_drain().await?;
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Drain(done)).await.is_ok() {
            self.before_drain.wait_drained(finished).await?;
        }
        Ok(())
    }

    fn stats(&self) -> SubscriptionStats {
        self.state.stats()
    }
}

/// A new queue of at most `capacity` messages and `max_bytes` bytes (see [`held_bytes`];
/// one larger message fits when the queue is empty) for a subscription on `pattern`;
/// `state` is shared with the subscription's control, `detach` runs when the stream is
/// dropped.
pub(crate) fn channel(
    capacity: usize,
    max_bytes: usize,
    mode: Backpressure,
    pattern: &str,
    state: Arc<QueueState>,
    detach: Arc<dyn Detach>,
) -> (QueueSender, QueueStream) {
    let (tx, rx) = mpsc::channel(capacity);
    let sender = QueueSender {
        tx,
        state: state.clone(),
        mode,
        max_bytes: max_bytes as u64,
    };
    let stream = QueueStream {
        rx,
        state,
        stashed: None,
        ended: false,
        pattern: pattern.to_owned(),
        detach,
        #[cfg(feature = "nats")]
        decode: None,
    };
    (sender, stream)
}

/// The receiving side: yields messages, and `Err(Error::Lagged)` right where a gap is.
pub(crate) struct QueueStream {
    rx: mpsc::Receiver<Item>,
    state: Arc<QueueState>,
    /// An item held back while the lag notice before it is yielded.
    /// Boxed: it is rarely there, and every subscription holds the field.
    stashed: Option<Box<Result<Message>>>,
    ended: bool,
    pattern: String,
    detach: Arc<dyn Detach>,
    #[cfg(feature = "nats")]
    decode: Option<Decoder>,
}

impl QueueStream {
    /// Has NATS messages decoded by `decode` as the subscriber takes them.
    #[cfg(feature = "nats")]
    pub(crate) fn decode_with(&mut self, decode: Decoder) {
        self.decode = Some(decode);
    }

    /// The message an item carries; one that cannot be read is counted as undecodable.
    #[cfg_attr(not(feature = "nats"), allow(clippy::infallible_destructuring_match))]
    fn open(&self, payload: Payload) -> Result<Message> {
        let msg = match payload {
            // The last reference takes the message itself; a fan-out's others copy it.
            Payload::Ready(msg) => Ok(Arc::try_unwrap(msg).unwrap_or_else(|m| (*m).clone())),
            Payload::Unreadable(e) => Err(*e),
            #[cfg(feature = "nats")]
            Payload::Nats(raw) => match &self.decode {
                Some(decode) => decode(*raw),
                None => Err(Error::Decode("no decoder for a NATS message".into())),
            },
        };
        if msg.is_err() {
            self.state.undecodable.fetch_add(1, Relaxed);
        }
        msg
    }

    fn lagged(&self, missed: u64) -> Error {
        self.state.lagging.store(false, Release);
        tracing::warn!(pattern = %self.pattern, missed, "subscription missed messages (lag)");
        Error::Lagged {
            pattern: self.pattern.clone(),
            missed,
        }
    }
}

impl Stream for QueueStream {
    type Item = Result<Message>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        if this.state.stopped.load(Acquire) {
            this.ended = true;
            this.rx.close();
            return Poll::Ready(None);
        }
        if let Some(m) = this.stashed.take() {
            return Poll::Ready(Some(*m));
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Item { payload, missed })) => {
                this.state.received.fetch_add(1, Relaxed);
                this.state.release(payload.bytes());
                let msg = this.open(payload);
                if missed > 0 {
                    this.stashed = Some(Box::new(msg));
                    return Poll::Ready(Some(Err(this.lagged(missed))));
                }
                Poll::Ready(Some(msg))
            }
            Poll::Ready(None) => match this.state.take_unreported() {
                0 => {
                    this.ended = true;
                    Poll::Ready(None)
                }
                missed => Poll::Ready(Some(Err(this.lagged(missed)))),
            },
            Poll::Pending => match this.state.take_unreported() {
                0 => Poll::Pending,
                missed => Poll::Ready(Some(Err(this.lagged(missed)))),
            },
        }
    }
}

impl Drop for QueueStream {
    fn drop(&mut self) {
        self.rx.close();
        self.state.room.notify_waiters();
        self.detach.detach();
    }
}

#[cfg(test)]
mod tests {
    /// An idle subscription holds tokio's first block of 32 items: keep the item small.
    #[test]
    fn a_queue_item_stays_small() {
        let item = std::mem::size_of::<super::Item>();
        assert!(item <= 24, "a queue item is {item} bytes");
    }
}
