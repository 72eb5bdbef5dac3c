//! The Kafka backend (rdkafka over librdkafka): the same [`EventBus`] over a
//! Kafka-protocol broker (Apache Kafka, Redpanda, tansu).
//!
//! One topic per bus (`kafka_topic`, default `busbar`, created with `kafka_partitions`
//! partitions when missing): every subject is a record on it, keyed by its subject (so
//! one subject's records keep their order on one partition), the subject also in the
//! `ce_subject` header ([`envelope`]: the CloudEvents Kafka binding). A subscription reads
//! the topic and keeps what its pattern matches, so every NATS wildcard works exactly as
//! on NATS ([`pubsub`]); a queue group is a Kafka consumer group. Requests: `request.rs`.
//! Durable streams are not offered on Kafka yet: those calls fail with `unsupported`.
//! docs/design.md §10 and docs/guide/kafka.md hold the whole mapping and its limits.

mod connection;
pub mod envelope;
pub mod pubsub;
mod request;

use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::bus::{collect_common, no_durable, BusStats, ConnectionEvent, EventBus};
use crate::config::{Backend, Config};
use crate::durable::{ConsumerConfig, DurableSubscription, PublishAck, StreamConfig, StreamInfo};
use crate::envelope::{Message, MessageBuilder, Topic};
use crate::error::Result;
use crate::metrics::{Health, Scrape};
use crate::subject::validate_subject;
use crate::subscription::Subscription;
use connection::Inner;

/// The Kafka backend. Build with [`KafkaBus::connect`] or [`crate::connect`].
pub struct KafkaBus {
    inner: Arc<Inner>,
}

impl KafkaBus {
    /// Connects to `config.kafka_brokers` (within `connect_timeout_ms`) and creates
    /// `config.kafka_topic` when it does not exist.
    pub async fn connect(config: Config) -> Result<Self> {
        Ok(KafkaBus {
            inner: connection::connect(config).await?,
        })
    }

    /// The topic every subject of this bus is a record on.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }
}

#[async_trait::async_trait]
impl EventBus for KafkaBus {
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

    /// Waits until the brokers acknowledged every record this bus published.
    async fn flush(&self) -> Result<()> {
        self.inner.check_open()?;
        self.inner.flush_producer().await
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, AcqRel) {
            return Ok(());
        }
        self.inner.inbox.close_all();
        // What was handed to the producer goes out first (bounded by publish_timeout_ms);
        // then every reader reads up to the topic's end and ends.
        let flushed = self.inner.flush_producer().await;
        let _ = self.inner.closing.send(true);
        self.inner.link.send(ConnectionEvent::Closed);
        self.inner.link.closed.store(true, Relaxed);
        flushed
    }

    async fn declare_stream(&self, _: StreamConfig) -> Result<StreamInfo> {
        Err(no_durable(Backend::Kafka, "declare_stream"))
    }

    async fn stream_info(&self, _: &str) -> Result<StreamInfo> {
        Err(no_durable(Backend::Kafka, "stream_info"))
    }

    async fn publish_durable(&self, _: Message) -> Result<PublishAck> {
        Err(no_durable(Backend::Kafka, "publish_durable"))
    }

    async fn durable_subscribe(&self, _: ConsumerConfig) -> Result<DurableSubscription> {
        Err(no_durable(Backend::Kafka, "durable_subscribe"))
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
        Backend::Kafka
    }

    fn connection_events(&self) -> Option<broadcast::Receiver<ConnectionEvent>> {
        Some(self.inner.link.events.subscribe())
    }
}
