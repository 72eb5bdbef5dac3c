//! Ending a durable subscription from anywhere ([`DurableHandle`]: `unsubscribe`, `drain`)
//! and its counters ([`DurableStats`]), the same verbs and counters a plain subscription has
//! (docs/design.md §9).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::*};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::sync::Notify;

use crate::error::Result;

const RUNNING: u8 = 0;
const ENDED: u8 = 1;

/// Counters of one durable subscription.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct DurableStats {
    /// Messages handed to the application.
    pub delivered: u64,
    /// Stored messages that could not be decoded: each was dead-lettered and reported as a
    /// `decode` item.
    pub undecodable: u64,
    /// Messages handed out and not yet settled (acked, nacked or terminated) nor dropped.
    pub unsettled: u64,
}

/// What a durable subscription, its handles and the messages it yielded share.
#[derive(Debug)]
pub(crate) struct Control {
    state: AtomicU8,
    /// Wakes the subscription's reader when it is ended.
    reader: AtomicWaker,
    delivered: AtomicU64,
    undecodable: AtomicU64,
    unsettled: AtomicU64,
    /// Signalled when `unsettled` reaches 0.
    settled: Notify,
    /// How long a drain waits for unsettled messages: past it they are redelivered anyway.
    ack_wait: Duration,
}

impl Control {
    pub(crate) fn new(ack_wait: Duration) -> Arc<Self> {
        Arc::new(Control {
            state: AtomicU8::new(RUNNING),
            reader: AtomicWaker::new(),
            delivered: AtomicU64::new(0),
            undecodable: AtomicU64::new(0),
            unsettled: AtomicU64::new(0),
            settled: Notify::new(),
            ack_wait,
        })
    }

    /// `Ready` once the subscription is ended; registers `cx` to be woken then.
    pub(crate) fn poll_ended(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.state.load(Acquire) != RUNNING {
            return Poll::Ready(());
        }
        self.reader.register(cx.waker());
        if self.state.load(Acquire) != RUNNING {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Counts an item the subscription yields; `true` for a message (now unsettled).
    pub(crate) fn yielded(&self, message: bool) {
        if message {
            self.delivered.fetch_add(1, Relaxed);
            self.unsettled.fetch_add(1, AcqRel);
        } else {
            self.undecodable.fetch_add(1, Relaxed);
        }
    }

    /// A message handed out is settled or dropped.
    pub(crate) fn released(&self) {
        if self.unsettled.fetch_sub(1, AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }

    fn end(&self) {
        self.state.store(ENDED, Release);
        self.reader.wake();
    }

    fn stats(&self) -> DurableStats {
        DurableStats {
            delivered: self.delivered.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            unsettled: self.unsettled.load(Acquire),
        }
    }
}

/// Cloneable control of a [`DurableSubscription`](super::DurableSubscription), usable
/// from another task while one waits for the next message.
#[derive(Debug, Clone)]
pub struct DurableHandle(pub(crate) Arc<Control>);

impl DurableHandle {
    /// Stops the deliveries at once: the subscription's stream ends; what was delivered
    /// but not settled is redelivered after `ack_wait` (to this consumer's next reader).
    pub async fn unsubscribe(&self) -> Result<()> {
        self.0.end();
        Ok(())
    }

    /// Stops the deliveries, then waits until every message already handed out is
    /// settled (or dropped), at most the consumer's `ack_wait`, past which the broker
    /// redelivers them anyway. Messages fetched from the broker but not yet handed out are
    /// not handed out any more: like any unsettled message, they are redelivered after
    /// `ack_wait`, to the consumer's next reader. Nothing is lost.
    pub async fn drain(&self) -> Result<()> {
        self.0.end();
        let _ = tokio::time::timeout(self.0.ack_wait, async {
            loop {
                let settled = self.0.settled.notified();
                if self.0.unsettled.load(Acquire) == 0 {
                    return;
                }
                settled.await;
            }
        })
        .await;
        Ok(())
    }

    /// Counters of the subscription.
    pub fn stats(&self) -> DurableStats {
        self.0.stats()
    }
}
