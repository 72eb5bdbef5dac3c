//! The live counters behind [`BusStats`], kept by every backend.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::queue::Pushed;
use super::reply::Answer;
use crate::bus::BusStats;

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) rejected_replies: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
}

impl Counters {
    /// Counts what happened to one message handed to a subscription's queue.
    pub(crate) fn record(&self, pushed: &Pushed) {
        match pushed {
            Pushed::Queued => self.delivered.fetch_add(1, Relaxed),
            Pushed::Missed => self.missed.fetch_add(1, Relaxed),
            Pushed::Full(_) | Pushed::Closed => 0,
        };
    }

    /// Counts a message that arrived under the bus's inbox and was not taken as a reply.
    pub(crate) fn record_answer(&self, answer: Answer) {
        match answer {
            Answer::Taken => 0,
            Answer::Refused => self.rejected_replies.fetch_add(1, Relaxed),
            Answer::Late => self.late_replies.fetch_add(1, Relaxed),
        };
    }

    pub(crate) fn snapshot(&self) -> BusStats {
        BusStats {
            published: self.published.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            missed: self.missed.load(Relaxed),
            late_replies: self.late_replies.load(Relaxed),
            rejected_replies: self.rejected_replies.load(Relaxed),
            undecodable: self.undecodable.load(Relaxed),
            // Kept by the backend's connection (see `NatsBus::stats`).
            disconnects: 0,
            subscriptions: self.subscriptions.load(Relaxed),
        }
    }
}
