//! A message from a durable stream ([`DurableMessage`]: ack, nak, term, in progress,
//! dead-lettering past `max_deliver`) and the subscription that yields them
//! ([`DurableSubscription`]); a backend hands over [`Delivery`] items and a [`Settle`] each.

use std::fmt;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;

use super::config::{ConsumerConfig, PublishAck};
use super::control::{Control, DurableHandle, DurableStats};
use crate::bounds;
use crate::envelope::{
    Message, DLQ_ATTEMPTS, DLQ_CONSUMER, DLQ_REASON, DLQ_SEQUENCE, DLQ_STREAM, DLQ_SUBJECT,
};
use crate::error::{Error, Result};
use crate::metrics::{DurableCounts, Instruments};
use crate::rate::{Limiter, Rate};

/// A backend's way of settling one delivery.
#[async_trait::async_trait]
pub(crate) trait Settle: Send + Sync {
    async fn ack(&self) -> Result<()>;
    async fn nak(&self, delay: Duration) -> Result<()>;
    async fn in_progress(&self) -> Result<()>;
}

/// A backend's durable publish, used to store dead letters.
#[async_trait::async_trait]
pub(crate) trait DurablePublish: Send + Sync {
    async fn publish_durable(&self, message: Message) -> Result<PublishAck>;
}

/// One delivery as a backend hands it over.
pub(crate) struct Delivery {
    pub message: Message,
    pub attempt: u32,
    pub sequence: u64,
    pub settle: Box<dyn Settle>,
    /// Why the stored message could not be decoded, when it could not (a foreign
    /// publisher's malformed headers); `message` then holds only its subject and payload.
    /// Redelivering cannot help: it is dead-lettered at once and reported as `decode`.
    pub undecodable: Option<String>,
}

/// What a durable subscription shares with every message it yields.
struct Shared {
    config: ConsumerConfig,
    publisher: Arc<dyn DurablePublish>,
    control: Arc<Control>,
    /// The bus's counters of this stream and consumer (acks, naks, …; for metrics).
    counts: Arc<DurableCounts>,
}

/// A message from a durable stream. Settle it with exactly one of [`ack`](Self::ack),
/// [`nak`](Self::nak) or [`term`](Self::term); an unsettled message is redelivered after
/// `ack_wait`. Derefs to the [`Message`].
pub struct DurableMessage {
    message: Message,
    /// The message as the stream stored it (what a dead letter carries), when `message`
    /// is a policy layer's view of it.
    stored: Option<Message>,
    attempt: u32,
    sequence: u64,
    settle: Box<dyn Settle>,
    settled: AtomicBool,
    /// Counted in its subscription's `unsettled` (handed out, not yet settled nor dropped).
    tracked: AtomicBool,
    shared: Arc<Shared>,
}

impl Drop for DurableMessage {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for DurableMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableMessage")
            .field("message", &self.message)
            .field("attempt", &self.attempt)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl Deref for DurableMessage {
    type Target = Message;
    fn deref(&self) -> &Message {
        &self.message
    }
}

impl DurableMessage {
    /// The message itself.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// Which delivery attempt this is, from 1.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The message's sequence in its stream.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// The stream the message comes from.
    pub fn stream(&self) -> &str {
        &self.shared.config.stream
    }

    /// No longer unsettled in its subscription's counters (settled, or dropped: then it is
    /// redelivered after `ack_wait`).
    fn release(&self) {
        if self.tracked.swap(false, AcqRel) {
            self.shared.control.released();
        }
    }

    /// `result` of a settling call; a success releases the message.
    fn settled_by(&self, result: Result<()>) -> Result<()> {
        if result.is_ok() {
            self.release();
        }
        result
    }

    fn settle_once(&self) -> Result<()> {
        if self.settled.swap(true, AcqRel) {
            return Err(Error::InvalidArgument(format!(
                "message {} (sequence {}) was already acked, nacked or terminated",
                self.message.id(),
                self.sequence
            )));
        }
        Ok(())
    }

    /// Processed: the message is not delivered again.
    pub async fn ack(&self) -> Result<()> {
        self.settle_once()?;
        let result = self.settled_by(self.settle.ack().await);
        if result.is_ok() {
            self.shared.counts.acks.fetch_add(1, Relaxed);
        }
        result
    }

    /// Not processed now: redeliver after `delay`, or after the consumer's backoff for
    /// this attempt when `None`. On the last allowed attempt the message is dead-lettered
    /// instead.
    pub async fn nak(&self, delay: Option<Duration>) -> Result<()> {
        if let Some(delay) = delay {
            bounds::duration("nak delay", delay)?;
        }
        self.settle_once()?;
        if self.attempt >= self.shared.config.max_deliver {
            let reason = format!(
                "nacked on attempt {} of {}",
                self.attempt, self.shared.config.max_deliver
            );
            return self.settled_by(self.dead_letter(&reason).await);
        }
        let delay = delay.unwrap_or_else(|| self.shared.config.backoff.delay(self.attempt));
        let result = self.settled_by(self.settle.nak(delay).await);
        if result.is_ok() {
            self.shared.counts.naks.fetch_add(1, Relaxed);
        }
        result
    }

    /// Cannot ever be processed: the message goes to the dead-letter subject at once
    /// with `reason`, and is not delivered again.
    pub async fn term(&self, reason: &str) -> Result<()> {
        self.settle_once()?;
        let result = self.settled_by(self.dead_letter(&format!("terminated: {reason}")).await);
        if result.is_ok() {
            self.shared.counts.terms.fetch_add(1, Relaxed);
        }
        result
    }

    /// Still working: restarts the `ack_wait` clock of this delivery.
    pub async fn in_progress(&self) -> Result<()> {
        if self.settled.load(Acquire) {
            return Err(Error::InvalidArgument(format!(
                "message {} (sequence {}) is already settled",
                self.message.id(),
                self.sequence
            )));
        }
        self.settle.in_progress().await
    }

    /// Stores the message, as the stream stored it (never a policy layer's decrypted or
    /// masked view), under the dead-letter subject, then acks it on its stream. If
    /// storing fails the message stays unacked, so it is redelivered, not lost.
    async fn dead_letter(&self, reason: &str) -> Result<()> {
        let original = self.stored.as_ref().unwrap_or(&self.message);
        let stored = dead_letter(&self.shared, original, self.attempt, self.sequence, reason).await;
        if let Err(e) = stored {
            self.settled.store(false, Release);
            return Err(e);
        }
        self.settle.ack().await
    }
}

/// Publishes `message` as a dead letter of `shared`'s consumer: its payload, `keyid`, id
/// and attributes as stored, on `<dlq_prefix>.<subject>`, with the `busbar-dlq-*`
/// headers. Its dedupe id is its (stream, consumer, sequence) ([`Message::dedupe_id`]).
async fn dead_letter(
    shared: &Shared,
    message: &Message,
    attempt: u32,
    sequence: u64,
    reason: &str,
) -> Result<()> {
    let config = &shared.config;
    let letter = message
        .to_builder()
        .subject(format!("{}.{}", config.dlq_prefix, message.subject()))
        .clear_reply_to()
        .busbar_header(DLQ_REASON, reason)
        .busbar_header(DLQ_ATTEMPTS, attempt.to_string())
        .busbar_header(DLQ_STREAM, config.stream.as_str())
        .busbar_header(DLQ_SEQUENCE, sequence.to_string())
        .busbar_header(DLQ_CONSUMER, config.name.as_str())
        .busbar_header(
            DLQ_SUBJECT,
            message.header(DLQ_SUBJECT).unwrap_or(message.subject()),
        )
        .build()?;
    shared.publisher.publish_durable(letter).await?;
    shared.counts.dead_letters.fetch_add(1, Relaxed);
    tracing::warn!(
        stream = config.stream.as_str(),
        consumer = config.name.as_str(),
        sequence,
        attempt,
        "durable: message dead-lettered"
    );
    Ok(())
}

type Deliveries = Pin<Box<dyn Stream<Item = Result<Delivery>> + Send>>;

/// The messages of a durable consumer, as a `Stream` of [`DurableMessage`]s. Dropping it
/// stops the deliveries; what was delivered but not acked is redelivered after `ack_wait`.
pub struct DurableSubscription {
    inner: Pin<Box<dyn Stream<Item = Result<DurableMessage>> + Send>>,
    config: Arc<Shared>,
}

impl fmt::Debug for DurableSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableSubscription")
            .field("stream", &self.config.config.stream)
            .field("consumer", &self.config.config.name)
            .finish_non_exhaustive()
    }
}

impl DurableSubscription {
    /// Wraps a backend's deliveries with the shared policy: dead-lettering of messages past
    /// `max_deliver` (they were never settled, e.g. their handler crashed) and the rate limit;
    /// settlements are counted in the bus's `instruments`.
    pub(crate) fn new(
        config: ConsumerConfig,
        deliveries: Deliveries,
        publisher: Arc<dyn DurablePublish>,
        instruments: &Instruments,
    ) -> Self {
        let control = Control::new(config.ack_wait);
        let counts = instruments.durable(&config.stream, &config.name);
        let shared = Arc::new(Shared {
            config,
            publisher,
            control,
            counts,
        });
        // The same token bucket as every other rate limit (one message at a time).
        let limiter = shared.config.rate_limit.map(|rate| {
            let interval = Rate::from_interval(Duration::from_secs_f64(1.0 / rate));
            Arc::new(Limiter::new(
                format!("rate_limit ({rate} messages/s)"),
                interval,
                1,
            ))
        });
        let state = (deliveries, shared.clone());
        let inner = futures_util::stream::unfold(state, move |(mut deliveries, shared)| {
            let limiter = limiter.clone();
            async move {
                loop {
                    let delivery = match deliveries.next().await? {
                        Ok(d) => d,
                        Err(e) => return Some((Err(e), (deliveries, shared))),
                    };
                    if let Some(problem) = delivery.undecodable {
                        let reason = format!("undecodable: {problem}");
                        let stored = dead_letter(
                            &shared,
                            &delivery.message,
                            delivery.attempt,
                            delivery.sequence,
                            &reason,
                        )
                        .await;
                        let item = match stored {
                            // Stored as a dead letter: off the stream. If storing failed the
                            // message stays unacked and comes back after `ack_wait`.
                            Ok(()) => match delivery.settle.ack().await {
                                Ok(()) => Err(Error::Decode(format!(
                                    "stream {:?} sequence {}: {problem} (dead-lettered to {}.{})",
                                    shared.config.stream,
                                    delivery.sequence,
                                    shared.config.dlq_prefix,
                                    delivery.message.subject()
                                ))),
                                Err(e) => Err(e),
                            },
                            Err(e) => Err(Error::Decode(format!(
                                "stream {:?} sequence {}: {problem} (dead-lettering failed, it will be redelivered: {e})",
                                shared.config.stream, delivery.sequence
                            ))),
                        };
                        return Some((item, (deliveries, shared)));
                    }
                    if delivery.attempt > shared.config.max_deliver {
                        let reason = format!(
                            "not acknowledged after {} attempts (ack_wait {:?})",
                            shared.config.max_deliver, shared.config.ack_wait
                        );
                        let stored = dead_letter(
                            &shared,
                            &delivery.message,
                            delivery.attempt - 1,
                            delivery.sequence,
                            &reason,
                        )
                        .await;
                        match stored {
                            Ok(()) => {
                                if let Err(e) = delivery.settle.ack().await {
                                    return Some((Err(e), (deliveries, shared)));
                                }
                            }
                            Err(e) => return Some((Err(e), (deliveries, shared))),
                        }
                        continue;
                    }
                    if delivery.attempt > 1 {
                        shared.counts.redeliveries.fetch_add(1, Relaxed);
                    }
                    if let Some(limiter) = &limiter {
                        limiter.acquire().await;
                    }
                    let message = DurableMessage {
                        message: delivery.message,
                        stored: None,
                        attempt: delivery.attempt,
                        sequence: delivery.sequence,
                        settle: delivery.settle,
                        settled: AtomicBool::new(false),
                        tracked: AtomicBool::new(false),
                        shared: shared.clone(),
                    };
                    return Some((Ok(message), (deliveries, shared)));
                }
            }
        });
        DurableSubscription {
            inner: Box::pin(inner),
            config: shared,
        }
    }

    /// Passes each message through `view` (a policy layer's masking): `Ok(Some)` yields the
    /// message as `view` returns it, `Ok(None)` withholds it (acked, so it is not redelivered
    /// to a reader that may never see it; the caller records why), `Err` is yielded and the
    /// message stays unacked, so it is redelivered and finally dead-lettered. A message
    /// dead-lettered from the view is dead-lettered as the stream stored it.
    pub fn map_messages(
        self,
        view: impl Fn(&Message) -> Result<Option<Message>> + Send + Sync + 'static,
    ) -> DurableSubscription {
        self.map_messages_then(view, || None)
    }

    /// [`DurableSubscription::map_messages`], then, before a message is yielded or acked
    /// as withheld, waits for what `settled` returns (e.g. the audit records of the view
    /// being stored); its error is yielded and the message stays unacked.
    pub(crate) fn map_messages_then(
        self,
        view: impl Fn(&Message) -> Result<Option<Message>> + Send + Sync + 'static,
        settled: impl Fn() -> Option<crate::policy::audit::Settling> + Send + Sync + 'static,
    ) -> DurableSubscription {
        let DurableSubscription { inner, config } = self;
        let view = Arc::new(view);
        let settled = Arc::new(settled);
        let inner = inner.filter_map(move |item| {
            let view = view.clone();
            let settled = settled.clone();
            async move {
                let mut m = match item {
                    Ok(m) => m,
                    Err(e) => return Some(Err(e)),
                };
                let seen = view(&m.message);
                if let Some(wait) = settled() {
                    if let Err(e) = wait.await {
                        return Some(Err(e));
                    }
                }
                match seen {
                    Ok(Some(seen)) => {
                        let stored = std::mem::replace(&mut m.message, seen);
                        m.stored.get_or_insert(stored);
                        Some(Ok(m))
                    }
                    Ok(None) => match m.settle.ack().await {
                        Ok(()) => None,
                        Err(e) => Some(Err(e)),
                    },
                    Err(e) => Some(Err(e)),
                }
            }
        });
        DurableSubscription {
            inner: Box::pin(inner),
            config,
        }
    }

    /// The next message; `None` once the subscription has ended (bus closed).
    pub async fn next(&mut self) -> Option<Result<DurableMessage>> {
        StreamExt::next(self).await
    }

    /// The consumer's settings.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config.config
    }

    /// A handle that can unsubscribe or drain this subscription, or read its counters,
    /// from another task while this one waits in [`DurableSubscription::next`].
    pub fn handle(&self) -> DurableHandle {
        DurableHandle(self.config.control.clone())
    }

    /// Stops the deliveries at once (see [`DurableHandle::unsubscribe`]).
    pub async fn unsubscribe(&self) -> Result<()> {
        self.handle().unsubscribe().await
    }

    /// Stops the deliveries and waits for the messages handed out to be settled (see
    /// [`DurableHandle::drain`]).
    pub async fn drain(&self) -> Result<()> {
        self.handle().drain().await
    }

    /// Counters of this subscription.
    pub fn stats(&self) -> DurableStats {
        self.handle().stats()
    }
}

impl Stream for DurableSubscription {
    type Item = Result<DurableMessage>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let control = self.config.control.clone();
        if control.poll_ended(cx).is_ready() {
            return Poll::Ready(None);
        }
        let item = ready!(self.inner.as_mut().poll_next(cx));
        match &item {
            Some(Ok(m)) => {
                m.tracked.store(true, Release);
                control.yielded(true);
            }
            Some(Err(Error::Decode(_))) => control.yielded(false),
            _ => {}
        }
        Poll::Ready(item)
    }
}
