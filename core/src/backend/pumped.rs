//! A subscription fed by a pump task (the NATS, RabbitMQ and Kafka backends): its bounded
//! queue, tracked in the bus's metrics and counted in `subscriptions`, the receiver of its
//! control's commands for the pump, and the `Subscription` handed to the caller.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::counters::Counters;
use super::queue::{self, BeforeDrain, Command, PumpHandle, QueueSender, QueueState, QueueStream};
use crate::config::Config;
use crate::subscription::Subscription;

/// The caller's side of a new pump-fed subscription, until [`Pending::finish`].
pub(crate) struct Pending<B> {
    pub(crate) stream: QueueStream,
    handle: Arc<PumpHandle<B>>,
    pattern: String,
    group: Option<String>,
}

/// A new subscription on `pattern` (of queue group `group`) with the bus's buffer bounds
/// and back-pressure: the queue and command receiver for its pump, and the rest for the
/// caller. Counted in `counters.subscriptions` (the pump takes it off when it ends).
pub(crate) fn subscription<B: BeforeDrain + 'static>(
    config: &Config,
    counters: &Counters,
    pattern: &str,
    group: Option<&str>,
    before_drain: B,
) -> (QueueSender, mpsc::Receiver<Command>, Pending<B>) {
    let state = Arc::new(QueueState::default());
    counters.instruments.track(pattern, group, &state);
    let (handle, commands) = PumpHandle::new(state.clone(), before_drain);
    let handle = Arc::new(handle);
    let (queue, stream) = queue::channel(
        config.subscription_capacity,
        config.subscription_max_bytes,
        config.backpressure,
        pattern,
        state,
        handle.clone(),
    );
    counters.subscriptions.fetch_add(1, Relaxed);
    let pending = Pending {
        stream,
        handle,
        pattern: pattern.to_owned(),
        group: group.map(str::to_owned),
    };
    (queue, commands, pending)
}

impl<B: BeforeDrain + 'static> Pending<B> {
    /// The subscription to hand out.
    pub(crate) fn finish(self) -> Subscription {
        Subscription::new(Box::pin(self.stream), self.handle, self.pattern, self.group)
    }
}
