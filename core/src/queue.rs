//! The bounded queue behind every subscription, whatever the backend: back-pressure
//! (`block` or `lag`, docs/design.md §4), the lag notice at the exact gap, and counters.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_core::Stream;
use tokio::sync::{mpsc, Notify};

use crate::bus::SubscriptionStats;
use crate::config::Backpressure;
use crate::envelope::Message;
use crate::error::{Error, Result};

/// A message (or why one that arrived could not be read) and how many messages its
/// subscription missed just before it.
pub(crate) type Item = (Result<Message>, u64);

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
/// and rarely (lag, stop).
#[derive(Default)]
pub(crate) struct QueueState {
    delivered: Padded<AtomicU64>,
    received: Padded<AtomicU64>,
    /// Missed messages not yet reported to the subscriber; read on every push and empty
    /// poll, written only when a message is missed or the loss is reported.
    missed_unreported: Padded<AtomicU64>,
    missed_total: AtomicU64,
    lagging: AtomicBool,
    stopped: AtomicBool,
    stop: Notify,
}

impl QueueState {
    /// Ends the stream at once and releases publishers waiting for room.
    pub(crate) fn stop(&self) {
        self.stopped.store(true, Release);
        self.stop.notify_waiters();
    }

    pub(crate) fn stats(&self) -> SubscriptionStats {
        let delivered = self.delivered.load(Relaxed);
        SubscriptionStats {
            delivered,
            missed: self.missed_total.load(Relaxed),
            pending: delivered.saturating_sub(self.received.load(Relaxed)),
            lagging: self.lagging.load(Acquire),
        }
    }

    fn take_unreported(&self) -> u64 {
        match self.missed_unreported.load(Relaxed) {
            0 => 0,
            _ => self.missed_unreported.swap(0, AcqRel),
        }
    }
}

/// The publishing side of one subscription's queue.
pub(crate) struct QueueSender {
    tx: mpsc::Sender<Item>,
    pub(crate) state: Arc<QueueState>,
    mode: Backpressure,
}

impl QueueSender {
    /// Queues without waiting.
    pub(crate) fn try_push(&self, msg: Result<Message>) -> Pushed {
        let state = &self.state;
        let carried = state.take_unreported();
        let item = match self.tx.try_send((msg, carried)) {
            Ok(()) => {
                state.delivered.fetch_add(1, Relaxed);
                return Pushed::Queued;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Pushed::Closed,
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        match self.mode {
            Backpressure::Block => Pushed::Full(item),
            Backpressure::Lag => {
                state.missed_unreported.fetch_add(item.1 + 1, AcqRel);
                state.missed_total.fetch_add(1, Relaxed);
                state.lagging.store(true, Release);
                Pushed::Missed
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
        tokio::select! {
            sent = self.tx.send(item) => match sent {
                Ok(()) => {
                    state.delivered.fetch_add(1, Relaxed);
                    Pushed::Queued
                }
                Err(_) => Pushed::Closed,
            },
            _ = stopped => Pushed::Closed,
        }
    }
}

/// Called once when the stream is dropped, so the backend stops routing to it.
pub(crate) trait Detach: Send + Sync {
    fn detach(&self);
}

/// A new queue of `capacity` messages for a subscription on `pattern`; `state` is
/// shared with the subscription's control, `detach` runs when the stream is dropped.
pub(crate) fn channel(
    capacity: usize,
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
    };
    let stream = QueueStream {
        rx,
        state,
        stashed: None,
        ended: false,
        pattern: pattern.to_owned(),
        detach,
    };
    (sender, stream)
}

/// The receiving side: yields messages, and `Err(Error::Lagged)` right where a gap is.
pub(crate) struct QueueStream {
    rx: mpsc::Receiver<Item>,
    state: Arc<QueueState>,
    /// An item held back while the lag notice before it is yielded.
    stashed: Option<Result<Message>>,
    ended: bool,
    pattern: String,
    detach: Arc<dyn Detach>,
}

impl QueueStream {
    fn lagged(&self, missed: u64) -> Error {
        self.state.lagging.store(false, Release);
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
            return Poll::Ready(Some(m));
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some((msg, missed))) => {
                this.state.received.fetch_add(1, Relaxed);
                if missed > 0 {
                    this.stashed = Some(msg);
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
        self.detach.detach();
    }
}
