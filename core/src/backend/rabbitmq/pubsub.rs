//! Subscriptions: a queue per subscription (shared by a queue group) bound to the bus's
//! exchange, consumed on a channel of its own and pumped into busbar's bounded queue.

use std::sync::atomic::Ordering::*;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::{mpsc, watch};

use super::connection::{backend, Attachment, Inner, Session};
use super::{request, subjects};
use crate::backend::queue::{BeforeDrain, Command, Item, Payload, Pushed, QueueSender, TryQueue};
use crate::config::Backpressure;
use crate::error::Result;
use crate::subject::validate_queue_group;
use crate::subscription::Subscription;

/// Most unacknowledged messages the broker sends one `block`-mode consumer ahead of its
/// queue: past it the broker holds the backlog.
const PREFETCH: u16 = 256;

/// Most deliveries a `block`-mode pump takes before it acknowledges them (in one frame);
/// well under [`PREFETCH`], so the broker never runs out of credit.
const ACK_BATCH: u32 = 64;

/// Deliveries taken and not yet acknowledged: how many, and the last one's tag.
#[derive(Default)]
struct Acks {
    count: u32,
    last: u64,
}

/// How often a pump whose session still looks connected tries to attach again.
const REATTACH_RETRY: Duration = Duration::from_millis(250);

pub(super) async fn subscribe(bus: &Arc<Inner>, pattern: &str, group: Option<&str>) -> Result<Subscription> {
    bus.check_open()?;
    let key = subjects::binding_key(pattern)?;
    if let Some(g) = group {
        validate_queue_group(g)?;
    }
    let what = || format!("subscribing to {pattern:?}");
    let queue_name = match group {
        Some(g) => subjects::group_queue(&bus.config.amqp_exchange, pattern, g),
        // Named here, not by the broker, so a new session declares the same queue again.
        None => format!(
            "{}.sub.{}",
            bus.config.amqp_exchange,
            crate::backend::reply::token()
        ),
    };
    // In `block` mode a message is acknowledged once queued, and the broker sends at most
    // PREFETCH ahead; in `lag` mode the broker forgets it on sending, and a full queue
    // misses it (counted, reported at the gap).
    let mode = bus.config.backpressure;
    let session = bus.session();
    let mut pump = Pump {
        attachment: bus.attachments.enter(&session),
        channel: None,
        tag: format!("busbar.{}", crate::backend::reply::token()),
        queue_name: queue_name.as_str().into(),
        key,
        grouped: group.is_some(),
        no_ack: mode == Backpressure::Lag,
        bus: Arc::downgrade(bus),
    };
    let seen = bus.generation.subscribe();
    let attached = async { pump.attach(bus, &session).await.map_err(|e| backend(what(), e)) };
    let consumer = bus.bounded(&what, attached).await?;
    let (queue, command_rx, pending) = crate::backend::pumped::subscription(
        &bus.config,
        &bus.counters,
        pattern,
        group,
        Unbind(Arc::downgrade(bus)),
    );
    tokio::spawn(pump.run(consumer, seen, queue, command_rx));
    Ok(pending.finish())
}

/// A drain waits for the pump to stop routing to the subscription (an unbind on the
/// broker) at most `publish_timeout_ms`: a hung broker fails it with `backend`.
struct Unbind(Weak<Inner>);

#[async_trait::async_trait]
impl BeforeDrain for Unbind {
    async fn before_drain(&self) -> Result<()> {
        Ok(())
    }

    async fn wait_drained(&self, finished: tokio::sync::oneshot::Receiver<()>) -> Result<()> {
        let unbound = async {
            let _ = finished.await;
            Ok(())
        };
        match self.0.upgrade() {
            Some(bus) => {
                bus.bounded(|| "draining a subscription".to_owned(), unbound)
                    .await
            }
            None => unbound.await,
        }
    }
}

struct Pump {
    /// This subscription among the bus's consumers: `Connected` waits until it is attached.
    attachment: Attachment,
    /// The channel of the session the consumer is on (`None` before the first attach).
    channel: Option<Channel>,
    tag: String,
    queue_name: lapin::types::ShortString,
    key: String,
    grouped: bool,
    no_ack: bool,
    bus: Weak<Inner>,
}

impl Pump {
    /// Declares and binds the subscription's queue on `session` (again, after a loss: an
    /// exclusive queue went with its connection) and consumes it on a channel of its own.
    async fn attach(&mut self, bus: &Inner, session: &Session) -> lapin::Result<Consumer> {
        let channel = session.connection.create_channel().await?;
        bus.bound_queue(&channel, self.queue_name.as_str(), !self.grouped, &self.key)
            .await?;
        if !self.no_ack {
            channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        }
        let consumer = channel
            .basic_consume(
                self.queue_name.clone(),
                self.tag.as_str().into(),
                BasicConsumeOptions {
                    no_ack: self.no_ack,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        self.channel = Some(channel);
        self.attachment.attached(session);
        Ok(consumer)
    }

    /// After the consumer ended (its connection or channel was lost): attaches again to the
    /// first session that takes it. `None` once the bus is closed or gone.
    async fn reattach(&mut self, seen: &mut watch::Receiver<u64>) -> Option<Consumer> {
        loop {
            let session = Inner::await_session(&self.bus, seen, REATTACH_RETRY).await?;
            let bus = self.bus.upgrade()?;
            if let Ok(consumer) = self.attach(&bus, &session).await {
                return Some(consumer);
            }
        }
    }

    fn channel(&self) -> &Channel {
        self.channel.as_ref().expect("a pump runs once attached")
    }

    async fn run(
        mut self,
        mut consumer: Consumer,
        mut seen: watch::Receiver<u64>,
        queue: QueueSender,
        mut commands: mpsc::Receiver<Command>,
    ) {
        // Draining: no more messages are routed to this subscription; it goes on taking
        // what its queue holds (acking as usual, so the broker sends the rest of a backlog
        // behind the prefetch) and cancels once the broker holds nothing more for it.
        let mut draining = false;
        let mut cancelled = false;
        let mut check = tokio::time::interval(Duration::from_millis(5));
        let mut waiting: Option<(Item, lapin::message::Delivery)> = None;
        let mut acks = Acks::default();
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
                        self.ack(&mut acks).await;
                        self.cancel().await;
                        cancelled = true;
                    }
                }
                // `block`: a message waits for room (cancel-safe: the item stays here, so a
                // command is still heard); the broker holds what comes meanwhile.
                room = queue.room(waiting.as_ref().map_or(0, |(item, _)| item.bytes())), if waiting.is_some() => {
                    let (item, delivery) = waiting.take().expect("a waiting message");
                    if !room {
                        break;
                    }
                    match queue.try_queue(item) {
                        TryQueue::Queued => {
                            if !self.settle(&Pushed::Queued, &delivery, &mut acks).await {
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
                        // What a drain's cancel left has come out: done.
                        None if cancelled => break,
                        // The connection (or channel) was lost: messages in flight are gone
                        // (reported as connection events, as on NATS); go on on a new one.
                        Some(Err(_)) | None => match self.reattach(&mut seen).await {
                            Some(fresh) => {
                                consumer = fresh;
                                acks = Acks::default(); // the old channel's tags are gone
                                continue;
                            }
                            None => break,
                        },
                    };
                    if request::is_flush_marker(&delivery) {
                        if !self.no_ack {
                            self.taken(&delivery, &mut acks).await;
                        }
                        continue;
                    }
                    let Some(bus) = self.bus.upgrade() else { break };
                    let data = std::mem::take(&mut delivery.data);
                    let payload = Payload::received(bus.receive(&delivery, data));
                    drop(bus);
                    match queue.try_push(payload) {
                        Pushed::Full(item) => waiting = Some((item, delivery)),
                        Pushed::Closed => break,
                        pushed => {
                            if !self.settle(&pushed, &delivery, &mut acks).await {
                                break;
                            }
                        }
                    }
                }
                // Nothing else to do now: acknowledge what was taken since the last ack.
                () = std::future::ready(()), if acks.count > 0 => self.ack(&mut acks).await,
            }
        }
        // What was taken is acknowledged; closing the channel cancels the consumer, hands
        // unacknowledged messages of a group back to its other members, and deletes an
        // exclusive queue.
        self.ack(&mut acks).await;
        let _ = self.channel().close(200, "busbar unsubscribed".into()).await;
        if let Some(bus) = self.bus.upgrade() {
            bus.counters.subscriptions.fetch_sub(1, Relaxed);
        }
    }

    /// Counts what happened to a delivery and acknowledges it (in `block` mode); false
    /// when the bus is gone.
    async fn settle(&self, pushed: &Pushed, delivery: &lapin::message::Delivery, acks: &mut Acks) -> bool {
        let Some(bus) = self.bus.upgrade() else {
            return false;
        };
        bus.counters.record(pushed);
        drop(bus);
        if !self.no_ack {
            self.taken(delivery, acks).await;
        }
        true
    }

    /// Notes `delivery` as taken; acknowledges at once every [`ACK_BATCH`] deliveries
    /// (else when the pump has nothing else to do).
    async fn taken(&self, delivery: &lapin::message::Delivery, acks: &mut Acks) {
        acks.last = delivery.delivery_tag;
        acks.count += 1;
        if acks.count >= ACK_BATCH {
            self.ack(acks).await;
        }
    }

    /// Acknowledges every delivery taken so far in one frame (`multiple`): deliveries
    /// come in order and the pump takes them in order, so none of them is still waiting.
    async fn ack(&self, acks: &mut Acks) {
        if acks.count == 0 {
            return;
        }
        let options = BasicAckOptions { multiple: true };
        let _ = self.channel().basic_ack(acks.last, options).await;
        *acks = Acks::default();
    }

    /// Stops routing to this subscription: unbinds its own queue (a group's queue stays
    /// bound for the other members; what it holds is theirs once this member cancels).
    async fn stop_routing(&self) {
        let Some(bus) = self.bus.upgrade() else { return };
        if self.grouped {
            return;
        }
        let _ = self
            .channel()
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
            .channel()
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
            .channel()
            .basic_cancel(self.tag.as_str().into(), BasicCancelOptions::default())
            .await;
    }
}
