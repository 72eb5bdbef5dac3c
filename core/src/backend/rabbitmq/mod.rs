//! The RabbitMQ backend (lapin, AMQP 0-9-1): the same [`EventBus`] over a broker with
//! exchanges, bindings and queues.
//!
//! One topic exchange per bus (`amqp_exchange`, default `busbar`): subjects are routing
//! keys and patterns binding keys ([`subjects`]). Each subscription consumes its own
//! exclusive, auto-deleted queue; a queue group shares one queue among its members, so the
//! broker hands each message to one of them. Every subscription is pumped into busbar's
//! own bounded queue, so `block`/`lag`, the lag notice and the counters are those of the
//! other backends; in `block` mode the pump acknowledges a message only once it is queued,
//! so with the prefetch limit the broker (not the client) holds the backlog and nothing is
//! missed. Envelope mapping: [`envelope`]. Requests: `request.rs`. Durable streams: a
//! journal on a RabbitMQ stream that every bus applies alike (`durable.rs`).

mod connection;
mod durable;
pub mod envelope;
mod journal;
mod log;
mod pubsub;
mod request;
pub mod subjects;

use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::bus::{collect_common, BusStats, ConnectionEvent, EventBus};
use crate::config::{Backend, Config};
use crate::durable::{
    ConsumerConfig, ConsumerInfo, DurableSubscription, PublishAck, StreamConfig, StreamInfo,
};
use crate::envelope::{Message, MessageBuilder, Topic};
use crate::error::Result;
use crate::metrics::{Health, Scrape};
use crate::subject::validate_subject;
use crate::subscription::Subscription;
use connection::{backend, Inner};

/// The RabbitMQ backend. Build with [`RabbitBus::connect`] or [`crate::connect`].
pub struct RabbitBus {
    inner: Arc<Inner>,
}

impl RabbitBus {
    /// Connects to `config.amqp_url`, declares the topic exchange `config.amqp_exchange`
    /// and starts consuming this bus's reply queue.
    pub async fn connect(config: Config) -> Result<Self> {
        let inner = connection::connect(config).await?;
        request::listen(&inner).await?;
        Ok(RabbitBus { inner })
    }
}

#[async_trait::async_trait]
impl EventBus for RabbitBus {
    async fn publish(&self, subject: &str, data: bytes::Bytes) -> Result<()> {
        validate_subject(subject)?;
        let topic = Arc::new(Topic::new(subject, self.inner.source.clone()));
        self.inner.publish(&Message::event(topic, data)).await
    }

    async fn publish_message(&self, message: Message) -> Result<()> {
        self.inner.publish(&message).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        pubsub::subscribe(&self.inner, pattern, None).await
    }

    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription> {
        pubsub::subscribe(&self.inner, pattern, Some(group)).await
    }

    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message> {
        let instruments = &self.inner.counters.instruments;
        instruments
            .request(request::request(&self.inner, message, timeout))
            .await
    }

    async fn flush(&self) -> Result<()> {
        request::round_trip(&self.inner).await
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, AcqRel) {
            return Ok(());
        }
        self.inner.inbox.close_all();
        self.inner.journal.close();
        let _ = self.inner.link.events.send(ConnectionEvent::Closed);
        // Wakes the tasks waiting for a new session: they see the bus closed and end.
        self.inner.generation.send_modify(|g| *g += 1);
        let session = self.inner.session();
        if !session.connection.status().connected() {
            return Ok(()); // lost, and no new one will be opened
        }
        // Bounded by `publish_timeout_ms`: a hung broker fails close with `backend`, and
        // the bus is closed all the same.
        let closing = session.connection.close(200, "busbar bus closed".into());
        let what = || "closing the AMQP connection".to_owned();
        let closed = async { Ok(closing.await) };
        match self.inner.bounded(what, closed).await? {
            Ok(()) => Ok(()),
            // A channel still opening (a subscribe racing this close) makes lapin fail the
            // close with "invalid channel state" and drop the connection: it is gone all
            // the same, and what the bus held has been ended above.
            Err(e) if !session.connection.status().connected() => {
                tracing::debug!("closing the AMQP connection: {e} (the connection is closed)");
                Ok(())
            }
            Err(e) => Err(backend("closing the AMQP connection".into(), e)),
        }
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        durable::declare_stream(&self.inner, config).await
    }

    async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        durable::stream_info(&self.inner, name).await
    }

    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        durable::publish_durable(&self.inner, &message).await
    }

    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription> {
        durable::durable_subscribe(&self.inner, config).await
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        durable::list_streams(&self.inner).await
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        durable::delete_stream(&self.inner, name).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        durable::list_consumers(&self.inner, stream).await
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo> {
        durable::consumer_info(&self.inner, stream, name).await
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        durable::delete_consumer(&self.inner, stream, name).await
    }

    fn message(&self, subject: &str) -> MessageBuilder {
        Message::builder(subject).source(self.inner.source.clone())
    }

    fn stats(&self) -> BusStats {
        let mut stats = self.inner.counters.snapshot();
        stats.disconnects = self.inner.link.disconnects.load(Relaxed);
        stats
    }

    fn health(&self) -> Health {
        let inner = &self.inner;
        inner.counters.health(
            inner.closed.load(Acquire),
            inner.link.is_up(),
            inner.inbox.pending(),
        )
    }

    fn collect_metrics(&self, scrape: &mut Scrape) {
        collect_common(self, scrape);
        self.inner.counters.instruments.collect(scrape);
    }

    fn backend(&self) -> Backend {
        Backend::RabbitMq
    }

    fn connection_events(&self) -> Option<broadcast::Receiver<ConnectionEvent>> {
        Some(self.inner.link.events.subscribe())
    }
}
