//! Subscriptions: a queue per subscription (shared by a queue group) bound to the bus's
//! exchange, consumed on a channel of its own and pumped into busbar's bounded queue.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::{mpsc, oneshot};

use super::connection::{backend, Inner};
use super::{request, subjects};
use crate::backend::queue::{self, Detach, Item, Payload, Pushed, QueueSender, QueueState, TryQueue};
use crate::config::Backpressure;
use crate::error::Result;
use crate::subject::validate_queue_group;
use crate::subscription::{Subscription, SubscriptionControl, SubscriptionStats};

/// Most unacknowledged messages the broker sends one `block`-mode consumer ahead of its
/// queue: past it the broker holds the backlog.
const PREFETCH: u16 = 256;

pub(super) async fn subscribe(bus: &Arc<Inner>, pattern: &str, group: Option<&str>) -> Result<Subscription> {
    bus.check_open()?;
    let key = subjects::binding_key(pattern)?;
    if let Some(g) = group {
        validate_queue_group(g)?;
    }
    let what = || format!("subscribing to {pattern:?}");
    let channel = bus
        .connection
        .create_channel()
        .await
        .map_err(|e| backend(what(), e))?;
    let queue_name = match group {
        Some(g) => subjects::group_queue(&bus.config.amqp_exchange, pattern, g),
        // Named here, not by the broker, so lapin's recovery declares the same queue again.
        None => format!(
            "{}.sub.{}",
            bus.config.amqp_exchange,
            crate::backend::reply::token()
        ),
    };
    let queue_name = bus
        .bound_queue(&channel, &queue_name, group.is_none(), &key)
        .await
        .map_err(|e| backend(what(), e))?;
    let mode = bus.config.backpressure;
    // In `block` mode a message is acknowledged once queued, and the broker sends at most
    // PREFETCH ahead; in `lag` mode the broker forgets it on sending, and a full queue
    // misses it (counted, reported at the gap).
    let no_ack = mode == Backpressure::Lag;
    if !no_ack {
        channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| backend(what(), e))?;
    }
    let tag = format!("busbar.{}", crate::backend::reply::token());
    let consumer = channel
        .basic_consume(
            queue_name.clone(),
            tag.as_str().into(),
            BasicConsumeOptions {
                no_ack,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| backend(what(), e))?;
    let (commands, command_rx) = mpsc::channel(4);
    let state = Arc::new(QueueState::default());
    let handle = Arc::new(SubHandle {
        commands,
        state: state.clone(),
        detached: AtomicBool::new(false),
    });
    let (queue, stream) = queue::channel(
        bus.config.subscription_capacity,
        bus.config.subscription_max_bytes,
        mode,
        pattern,
        state,
        handle.clone(),
    );
    bus.counters.subscriptions.fetch_add(1, Relaxed);
    let pump = Pump {
        channel,
        tag,
        queue_name,
        key,
        grouped: group.is_some(),
        no_ack,
        bus: Arc::downgrade(bus),
    };
    tokio::spawn(pump.run(consumer, queue, command_rx));
    Ok(Subscription::new(
        Box::pin(stream),
        handle,
        pattern,
        group.map(str::to_owned),
    ))
}

enum Command {
    /// Stop new messages, deliver what the queue holds; answer once no more will come.
    Drain(oneshot::Sender<()>),
    Unsubscribe,
}

struct Pump {
    channel: Channel,
    tag: String,
    queue_name: lapin::types::ShortString,
    key: String,
    grouped: bool,
    no_ack: bool,
    bus: Weak<Inner>,
}

impl Pump {
    async fn run(self, mut consumer: Consumer, queue: QueueSender, mut commands: mpsc::Receiver<Command>) {
        // Draining: no more messages are routed to this subscription; it goes on taking
        // what its queue holds (acking as usual, so the broker sends the rest of a backlog
        // behind the prefetch) and cancels once the broker holds nothing more for it.
        let mut draining = false;
        let mut cancelled = false;
        let mut check = tokio::time::interval(Duration::from_millis(5));
        let mut waiting: Option<(Item, lapin::message::Delivery)> = None;
        loop {
            tokio::select! {
                biased;
                command = commands.recv(), if !draining => match command {
                    Some(Command::Drain(done)) => {
                        draining = true;
                        self.stop_routing().await;
                        let _ = done.send(());
                    }
                    Some(Command::Unsubscribe) | None => break,
                },
                _ = check.tick(), if draining && !cancelled => {
                    if self.holds_nothing().await {
                        // What the broker sent before the cancel still comes out, then None.
                        self.cancel().await;
                        cancelled = true;
                    }
                }
                // `block`: a message waits for room (cancel-safe: the item stays here, so a
                // command is still heard); the broker holds what comes meanwhile.
                room = queue.room(waiting.as_ref().map_or(0, |(item, _)| item.bytes)), if waiting.is_some() => {
                    let (item, delivery) = waiting.take().expect("a waiting message");
                    if !room {
                        break;
                    }
                    match queue.try_queue(item) {
                        TryQueue::Queued => {
                            if !self.settle(&Pushed::Queued, delivery).await {
                                break;
                            }
                        }
                        TryQueue::Full(item) => waiting = Some((item, delivery)),
                        TryQueue::Closed => break,
                    }
                }
                next = consumer.next(), if waiting.is_none() => {
                    let mut delivery = match next {
                        Some(Ok(delivery)) => delivery,
                        // The connection was lost: messages in flight are gone (reported as
                        // connection events, as on NATS); go on once lapin has recovered.
                        Some(Err(e)) => match self.channel.wait_for_recovery(e).await {
                            Ok(()) => continue,
                            Err(_) => break,
                        },
                        None => break,
                    };
                    if request::is_flush_marker(&delivery) {
                        if !self.no_ack {
                            let _ = delivery.ack(BasicAckOptions::default()).await;
                        }
                        continue;
                    }
                    let Some(bus) = self.bus.upgrade() else { break };
                    let data = std::mem::take(&mut delivery.data);
                    let payload = Payload::Ready(bus.receive(&delivery, data));
                    drop(bus);
                    match queue.try_push(payload) {
                        Pushed::Full(item) => waiting = Some((item, delivery)),
                        Pushed::Closed => break,
                        pushed => {
                            if !self.settle(&pushed, delivery).await {
                                break;
                            }
                        }
                    }
                }
            }
        }
        // Closing the channel cancels the consumer, hands unacknowledged messages of a group
        // back to its other members, and deletes an exclusive queue.
        let _ = self.channel.close(200, "busbar unsubscribed".into()).await;
        if let Some(bus) = self.bus.upgrade() {
            bus.counters.subscriptions.fetch_sub(1, Relaxed);
        }
    }

    /// Counts what happened to a delivery and acknowledges it (in `block` mode); false
    /// when the bus is gone.
    async fn settle(&self, pushed: &Pushed, delivery: lapin::message::Delivery) -> bool {
        let Some(bus) = self.bus.upgrade() else {
            return false;
        };
        bus.counters.record(pushed);
        drop(bus);
        if !self.no_ack {
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        true
    }

    /// Stops routing to this subscription: unbinds its own queue (a group's queue stays
    /// bound for the other members; what it holds is theirs once this member cancels).
    async fn stop_routing(&self) {
        let Some(bus) = self.bus.upgrade() else { return };
        if self.grouped {
            return;
        }
        let _ = self
            .channel
            .queue_unbind(
                self.queue_name.clone(),
                bus.exchange.clone(),
                self.key.as_str().into(),
                FieldTable::default(),
            )
            .await;
    }

    /// Whether the broker holds no message ready for this subscription (always, for a
    /// group member: the rest of the group's queue is the other members').
    async fn holds_nothing(&self) -> bool {
        if self.grouped {
            return true;
        }
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        match self
            .channel
            .queue_declare(self.queue_name.clone(), passive, FieldTable::default())
            .await
        {
            Ok(q) => q.message_count() == 0,
            // The queue or channel is gone: nothing more can come.
            Err(_) => true,
        }
    }

    /// Cancels the consumer; messages already sent still come out of it, then it ends.
    async fn cancel(&self) {
        let _ = self
            .channel
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }
}

struct SubHandle {
    commands: mpsc::Sender<Command>,
    state: Arc<QueueState>,
    detached: AtomicBool,
}

impl Detach for SubHandle {
    fn detach(&self) {
        if !self.detached.swap(true, AcqRel) {
            let _ = self.commands.try_send(Command::Unsubscribe);
        }
    }
}

#[async_trait::async_trait]
impl SubscriptionControl for SubHandle {
    async fn unsubscribe(&self) -> Result<()> {
        self.state.stop();
        self.detached.store(true, Release);
        let _ = self.commands.send(Command::Unsubscribe).await;
        Ok(())
    }

    async fn drain(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        if self.commands.send(Command::Drain(done)).await.is_ok() {
            let _ = finished.await;
        }
        Ok(())
    }

    fn stats(&self) -> SubscriptionStats {
        self.state.stats()
    }
}
