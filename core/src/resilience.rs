//! Resilience by configuration (docs/design.md §4, §5, §8): the circuit breaker of
//! requests, publish and delivery rate limits, and retries of idempotent requests. One
//! layer over any backend, put on by [`crate::connect`] when a setting asks for it, so every
//! language gets the same behaviour from the same keys.

mod breaker;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::broadcast;

use crate::bus::{BusStats, ConnectionEvent, EventBus};
use crate::config::{Backend, Config, Overflow};
use crate::durable::{
    ConsumerConfig, ConsumerInfo, DurableSubscription, PublishAck, StreamConfig, StreamInfo,
};
use crate::envelope::{Message, MessageBuilder};
use crate::error::{Error, Result};
use crate::metrics::{Health, Scrape};
use crate::rate::{self, Limiter, Rate};
use crate::subscription::Subscription;
use breaker::Breakers;

/// Whether `config` asks for this layer.
pub(crate) fn configured(config: &Config) -> bool {
    config.breaker_failures > 0
        || config.publish_rate.is_some()
        || !config.publish_rate_limits.is_empty()
        || config.delivery_rate.is_some()
        || config.request_retries > 0
}

/// `inner` with the breaker, limits and retries of `config`.
pub(crate) fn wrap(inner: Arc<dyn EventBus>, config: &Config) -> Arc<dyn EventBus> {
    let (events, _) = broadcast::channel(256);
    if let Some(mut from) = inner.connection_events() {
        // The backend's own events reach the same receivers as the breaker's.
        let to = events.clone();
        tokio::spawn(async move {
            loop {
                match from.recv().await {
                    Ok(event) => {
                        let _ = to.send(event);
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
    }
    let burst = |limit: Rate| match config.publish_burst {
        0 => rate::one_second(limit),
        n => n,
    };
    let publish_limits = config
        .publish_rate
        .map(|rate| {
            (
                None,
                Limiter::new(format!("publish_rate ({rate})"), rate, burst(rate)),
            )
        })
        .into_iter()
        .chain(config.publish_rate_limits.iter().map(|(pattern, rate)| {
            let label = format!("the publish_rate_limits of {pattern:?} ({rate})");
            (Some(pattern.clone()), Limiter::new(label, *rate, burst(*rate)))
        }))
        .collect();
    Arc::new(ResilientBus {
        breakers: (config.breaker_failures > 0).then(|| {
            Breakers::new(
                config.breaker_failures,
                Duration::from_millis(config.breaker_window_ms),
                Duration::from_millis(config.breaker_cooldown_ms),
                events.clone(),
                config.breaker_patterns.clone(),
            )
        }),
        publish_limits,
        fail_when_limited: config.rate_limit_mode == Overflow::Fail,
        delivery_rate: config.delivery_rate,
        retries: config.request_retries,
        retry_delay: (
            Duration::from_millis(config.retry_delay_ms),
            Duration::from_millis(config.retry_max_delay_ms),
        ),
        events,
        inner,
    })
}

struct ResilientBus {
    inner: Arc<dyn EventBus>,
    breakers: Option<Breakers>,
    /// The bus's limit (no pattern) and each pattern's.
    publish_limits: Vec<(Option<String>, Limiter)>,
    fail_when_limited: bool,
    delivery_rate: Option<Rate>,
    retries: u32,
    retry_delay: (Duration, Duration),
    events: broadcast::Sender<ConnectionEvent>,
}

impl ResilientBus {
    /// Takes a token of every limit that applies to `subject`, waiting for it or failing
    /// with `rate_limited` by `rate_limit_mode`.
    async fn admit_publish(&self, subject: &str) -> Result<()> {
        for (pattern, limiter) in &self.publish_limits {
            if pattern
                .as_deref()
                .is_some_and(|p| !crate::subject::matches(p, subject))
            {
                continue;
            }
            if self.fail_when_limited {
                if let Some(retry_in) = limiter.take() {
                    return Err(Error::RateLimited {
                        subject: subject.to_owned(),
                        limit: limiter.label.clone(),
                        retry_in,
                    });
                }
            } else {
                limiter.acquire().await;
            }
        }
        Ok(())
    }

    /// One attempt of a request, through the breaker of its subject.
    async fn attempt(&self, message: Message, timeout: Duration) -> Result<Message> {
        let Some(breakers) = &self.breakers else {
            return self.inner.request_message(message, timeout).await;
        };
        let pass = breakers.admit(message.subject())?;
        let result = self.inner.request_message(message, timeout).await;
        pass.report(&result);
        result
    }

    fn paced(&self, subscription: Subscription) -> Subscription {
        let Some(rate) = self.delivery_rate else {
            return subscription;
        };
        let label = format!("delivery_rate ({rate})");
        let limiter = Arc::new(Limiter::new(label, rate, 1));
        subscription.map_stream(|stream| {
            Box::pin(stream.then(move |item| {
                let limiter = limiter.clone();
                async move {
                    // Notices pass at once; messages one token each.
                    if item.is_ok() {
                        limiter.acquire().await;
                    }
                    item
                }
            }))
        })
    }
}

/// Whether a failed attempt may be tried again: the responder did not answer in time, was
/// not there, or the connection failed.
fn retryable(err: &Error) -> bool {
    matches!(err.code(), "timeout" | "no_responders" | "backend")
}

#[async_trait::async_trait]
impl EventBus for ResilientBus {
    async fn publish(&self, subject: &str, data: Bytes) -> Result<()> {
        self.admit_publish(subject).await?;
        self.inner.publish(subject, data).await
    }

    async fn publish_message(&self, message: Message) -> Result<()> {
        self.admit_publish(message.subject()).await?;
        self.inner.publish_message(message).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<Subscription> {
        Ok(self.paced(self.inner.subscribe(pattern).await?))
    }

    async fn queue_subscribe(&self, pattern: &str, group: &str) -> Result<Subscription> {
        Ok(self.paced(self.inner.queue_subscribe(pattern, group).await?))
    }

    /// Attempts the request up to `request_retries + 1` times within `timeout`: an
    /// attempt with more to come waits at most half the time left (the last one all of
    /// it), and a jittered backoff separates them.
    async fn request_message(&self, message: Message, timeout: Duration) -> Result<Message> {
        let deadline = tokio::time::Instant::now() + timeout;
        let attempts = self.retries + 1;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let share = if attempt < attempts { left / 2 } else { left }.max(Duration::from_millis(1));
            let result = self.attempt(message.clone(), share).await;
            let err = match result {
                Err(e) if attempt < attempts && retryable(&e) => e,
                Err(Error::Timeout { subject, .. }) => return Err(Error::Timeout { subject, timeout }),
                other => return other,
            };
            let wait = crate::backoff::delay(attempt, self.retry_delay.0, self.retry_delay.1);
            if tokio::time::Instant::now() + wait >= deadline {
                return Err(match err {
                    Error::Timeout { subject, .. } => Error::Timeout { subject, timeout },
                    other => other,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.declare_stream(config).await
    }

    async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        self.inner.stream_info(name).await
    }

    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        self.admit_publish(message.subject()).await?;
        self.inner.publish_durable(message).await
    }

    async fn durable_subscribe(&self, config: ConsumerConfig) -> Result<DurableSubscription> {
        self.inner.durable_subscribe(config).await
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.inner.list_streams().await
    }

    async fn delete_stream(&self, name: &str) -> Result<()> {
        self.inner.delete_stream(name).await
    }

    async fn list_consumers(&self, stream: &str) -> Result<Vec<ConsumerInfo>> {
        self.inner.list_consumers(stream).await
    }

    async fn consumer_info(&self, stream: &str, name: &str) -> Result<ConsumerInfo> {
        self.inner.consumer_info(stream, name).await
    }

    async fn delete_consumer(&self, stream: &str, name: &str) -> Result<()> {
        self.inner.delete_consumer(stream, name).await
    }

    fn message(&self, subject: &str) -> MessageBuilder {
        self.inner.message(subject)
    }

    fn stats(&self) -> BusStats {
        self.inner.stats()
    }

    fn health(&self) -> Health {
        let mut health = self.inner.health();
        if let Some(breakers) = &self.breakers {
            (health.open_circuits, health.open_circuit_subjects) = breakers.open_circuits();
        }
        health
    }

    fn collect_metrics(&self, scrape: &mut Scrape) {
        self.inner.collect_metrics(scrape);
        if let Some(breakers) = &self.breakers {
            scrape.gauge(
                "busbar_open_circuits",
                "Request circuits open or half-open now (present when the breaker is on).",
                i64::try_from(breakers.open_count()).unwrap_or(i64::MAX),
            );
        }
    }

    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn connection_events(&self) -> Option<broadcast::Receiver<ConnectionEvent>> {
        Some(self.events.subscribe())
    }
}
