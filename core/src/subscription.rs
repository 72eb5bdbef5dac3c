//! [`Subscription`]: the messages of one subscribe call as a [`Stream`], its
//! [`SubscriptionHandle`] and counters, the [`SubscriptionControl`] a backend implements,
//! and [`serve`], a responder loop over a subscription.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_core::Stream;

use crate::envelope::Message;
use crate::error::{Error, Result};

/// Counters of one subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionStats {
    /// Items queued to this subscription (undecodable messages included).
    pub delivered: u64,
    /// Messages it missed because its buffer was full (`lag` mode; on NATS also `block`,
    /// docs/design.md §4). Each gap is also reported in the stream by a lag notice.
    pub missed: u64,
    /// Messages waiting in its buffer now.
    pub pending: u64,
    /// Bytes (payloads and user headers) waiting in its buffer now.
    pub pending_bytes: u64,
    /// Messages that arrived but could not be decoded (a foreign producer's); each is an
    /// `Err(Error::Decode)` item of the stream, and delivery goes on after it.
    pub undecodable: u64,
    /// Whether it has missed a message since it last caught up.
    pub lagging: bool,
}

/// The backend's side of a subscription: what [`Subscription`] needs besides its stream.
#[async_trait::async_trait]
pub trait SubscriptionControl: Send + Sync {
    /// Stops delivery at once; buffered messages are discarded and the stream ends.
    async fn unsubscribe(&self) -> Result<()>;
    /// Stops new deliveries; the stream yields what it holds, then ends.
    async fn drain(&self) -> Result<()>;
    /// Counters of this subscription.
    fn stats(&self) -> SubscriptionStats;
}

/// The stream a backend hands to [`Subscription::new`].
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<Message>> + Send>>;

/// Messages matching a pattern, as a [`Stream`]. Items are `Ok(message)`, or
/// `Err(Error::Lagged)` as a notice that messages were missed (the stream goes on).
/// Dropping it unsubscribes.
pub struct Subscription {
    stream: MessageStream,
    control: Arc<dyn SubscriptionControl>,
    pattern: String,
    queue_group: Option<String>,
}

impl Subscription {
    /// Assembles a subscription; used by backends.
    pub fn new(
        stream: MessageStream,
        control: Arc<dyn SubscriptionControl>,
        pattern: impl Into<String>,
        queue_group: Option<String>,
    ) -> Self {
        Subscription {
            stream,
            control,
            pattern: pattern.into(),
            queue_group,
        }
    }

    /// The same subscription with its stream passed through `f` (a delivery limit, say).
    pub(crate) fn map_stream(mut self, f: impl FnOnce(MessageStream) -> MessageStream) -> Self {
        self.stream = f(self.stream);
        self
    }

    /// The pattern this subscription matches.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The queue group, for queue subscriptions.
    pub fn queue_group(&self) -> Option<&str> {
        self.queue_group.as_deref()
    }

    /// The next item, or `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<Result<Message>> {
        std::future::poll_fn(|cx| self.stream.as_mut().poll_next(cx)).await
    }

    /// A handle that can unsubscribe or drain this subscription from another task,
    /// while this one waits in [`Subscription::next`].
    pub fn handle(&self) -> SubscriptionHandle {
        SubscriptionHandle(self.control.clone())
    }

    /// Stops delivery at once; buffered messages are discarded.
    pub async fn unsubscribe(&self) -> Result<()> {
        self.control.unsubscribe().await
    }

    /// Stops new deliveries; [`Subscription::next`] yields what is buffered, then `None`.
    pub async fn drain(&self) -> Result<()> {
        self.control.drain().await
    }

    /// Counters of this subscription.
    pub fn stats(&self) -> SubscriptionStats {
        self.control.stats()
    }
}

impl Stream for Subscription {
    type Item = Result<Message>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("pattern", &self.pattern)
            .field("queue_group", &self.queue_group)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Cloneable control of a [`Subscription`] (see [`Subscription::handle`]).
#[derive(Clone)]
pub struct SubscriptionHandle(Arc<dyn SubscriptionControl>);

impl SubscriptionHandle {
    /// See [`Subscription::unsubscribe`].
    pub async fn unsubscribe(&self) -> Result<()> {
        self.0.unsubscribe().await
    }
    /// See [`Subscription::drain`].
    pub async fn drain(&self) -> Result<()> {
        self.0.drain().await
    }
    /// See [`Subscription::stats`].
    pub fn stats(&self) -> SubscriptionStats {
        self.0.stats()
    }
}

/// Answers every request arriving on `subscription` with `handler`'s output, until the
/// subscription ends. Messages without `reply_to` are passed to the handler and the
/// output discarded. Returns how many requests were answered.
///
/// No single message stops the service: lag notices and messages that cannot be read
/// (a foreign producer's, counted in [`SubscriptionStats::undecodable`]) are skipped, and
/// a reply that cannot be sent to one requester (say, an invalid reply subject) is
/// dropped. Only a closed bus ends the loop early, with `closed`. Take
/// [`Subscription::handle`] first to read the subscription's counters while it serves.
pub async fn serve<F, Fut>(mut subscription: Subscription, mut handler: F) -> Result<u64>
where
    F: FnMut(Message) -> Fut + Send,
    Fut: Future<Output = Bytes> + Send,
{
    let mut answered = 0;
    while let Some(item) = subscription.next().await {
        // Notices (lag, undecodable input): counted on the subscription; the stream goes on.
        let Ok(request) = item else { continue };
        let has_reply = request.reply_to().is_some();
        let reply = handler(request.clone()).await;
        if has_reply {
            match request.respond(reply).await {
                Ok(()) => answered += 1,
                Err(e @ Error::Closed(_)) => return Err(e),
                Err(_) => {}
            }
        }
    }
    Ok(answered)
}
