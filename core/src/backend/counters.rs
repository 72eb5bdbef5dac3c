//! The live counters behind [`BusStats`], kept by every backend.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use super::queue::Pushed;
use super::reply::Answer;
use crate::bus::{BusStats, ConnectionEvent};
use crate::metrics::{ConnectionState, Health, Instruments};

#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) missed: AtomicU64,
    pub(crate) late_replies: AtomicU64,
    pub(crate) rejected_replies: AtomicU64,
    pub(crate) undecodable: AtomicU64,
    pub(crate) subscriptions: AtomicU64,
    /// What the metrics count besides these (per subscription pattern, requests, durable
    /// consumers, connection events); shared with the connection's event callback.
    pub(crate) instruments: Arc<Instruments>,
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

    /// Counts a connection event and remembers an error it carries (for `health()`).
    /// Logs it through `tracing` too, at a level for what it means to an operator.
    pub(crate) fn connection_event(instruments: &Instruments, event: &ConnectionEvent) {
        match event {
            ConnectionEvent::Connected => tracing::info!("connection: {event}"),
            ConnectionEvent::Closed | ConnectionEvent::Draining => tracing::debug!("connection: {event}"),
            ConnectionEvent::SlowConsumer => {
                instruments.slow_consumers.fetch_add(1, Relaxed);
                tracing::warn!("connection: {event}");
            }
            ConnectionEvent::ServerError(e) | ConnectionEvent::ClientError(e) => {
                instruments.set_last_error(e.clone());
                tracing::error!("connection: {event}");
            }
            _ => tracing::warn!("connection: {event}"),
        }
    }

    /// The bus's [`Health`]: closed, else connected or not, with `pending_requests` waiting.
    pub(crate) fn health(&self, closed: bool, connected: bool, pending_requests: u64) -> Health {
        let mut health = Health::connected();
        health.state = match (closed, connected) {
            (true, _) => ConnectionState::Closed,
            (false, true) => ConnectionState::Connected,
            (false, false) => ConnectionState::Disconnected,
        };
        health.pending_requests = pending_requests;
        health.subscriptions = self.subscriptions.load(Relaxed);
        self.instruments.health(&mut health);
        health
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
