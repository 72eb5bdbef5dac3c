//! Durable stream and consumer settings as a binding receives them: every field optional,
//! and an unset one keeps core's default (the `DEFAULT_*` constants of `config.rs` and
//! [`Backoff::default`]), applied here and nowhere else. A binding fills these from its
//! language's keywords, option objects or zeroed C structs and calls
//! [`StreamOptions::config`] or [`ConsumerOptions::config`].

use std::time::Duration;

use super::config::{Backoff, ConsumerConfig, StartAt, StreamConfig};

/// Limits of a durable stream; `None` keeps the default of [`StreamConfig::new`].
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct StreamOptions {
    /// Oldest message kept (default: the bus's `retention_days`, 0 = forever).
    pub max_age: Option<Duration>,
    /// Most bytes kept (default: no limit).
    pub max_bytes: Option<u64>,
    /// Most messages kept (default: no limit).
    pub max_messages: Option<u64>,
    /// Dedupe window (default [`super::DEFAULT_DUPLICATE_WINDOW`]).
    pub duplicate_window: Option<Duration>,
}

impl StreamOptions {
    /// No limit set: every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The stream `name` over `subjects` with these limits over the defaults.
    pub fn config<S: Into<String>>(
        self,
        name: impl Into<String>,
        subjects: impl IntoIterator<Item = S>,
    ) -> StreamConfig {
        let mut config = StreamConfig::new(name, subjects);
        config.max_age = self.max_age;
        config.max_bytes = self.max_bytes;
        config.max_messages = self.max_messages;
        if let Some(window) = self.duplicate_window {
            config.duplicate_window = window;
        }
        config
    }
}

/// Settings of a durable consumer; `None` keeps the default of [`ConsumerConfig::new`].
/// The three backoff parts are separate, so one given alone keeps the other two.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct ConsumerOptions {
    /// Only messages whose subject matches this pattern (default: the whole stream).
    pub filter: Option<String>,
    /// Where a new consumer starts (default [`StartAt::Beginning`]).
    pub start: Option<StartAt>,
    /// Time a delivery may stay unsettled (default [`super::DEFAULT_ACK_WAIT`]).
    pub ack_wait: Option<Duration>,
    /// Attempts before dead-lettering (default [`super::DEFAULT_MAX_DELIVER`]).
    pub max_deliver: Option<u32>,
    /// First backoff delay (default: [`Backoff::default`]'s).
    pub backoff_base: Option<Duration>,
    /// Growth of the backoff per attempt (default: [`Backoff::default`]'s).
    pub backoff_factor: Option<f64>,
    /// Longest backoff delay (default: [`Backoff::default`]'s).
    pub backoff_cap: Option<Duration>,
    /// Prefix of dead-letter subjects (default [`super::DEFAULT_DLQ_PREFIX`]).
    pub dlq_prefix: Option<String>,
    /// Most messages a second (default: no limit).
    pub rate_limit: Option<f64>,
    /// Most delivered-but-unsettled messages (default [`super::DEFAULT_MAX_ACK_PENDING`]).
    pub max_ack_pending: Option<usize>,
}

impl ConsumerOptions {
    /// No setting: every default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The consumer `name` on `stream` with these settings over the defaults. Values are
    /// checked when the consumer is opened (`durable_subscribe`), as for any config.
    pub fn config(self, stream: impl Into<String>, name: impl Into<String>) -> ConsumerConfig {
        let mut config = ConsumerConfig::new(stream, name);
        if let Some(filter) = self.filter {
            config = config.filter(filter);
        }
        if let Some(start) = self.start {
            config = config.start(start);
        }
        if let Some(wait) = self.ack_wait {
            config = config.ack_wait(wait);
        }
        if let Some(n) = self.max_deliver {
            config = config.max_deliver(n);
        }
        let default = Backoff::default();
        if self.backoff_base.is_some() || self.backoff_factor.is_some() || self.backoff_cap.is_some() {
            config = config.backoff(
                self.backoff_base.unwrap_or(default.base),
                self.backoff_factor.unwrap_or(default.factor),
                self.backoff_cap.unwrap_or(default.cap),
            );
        }
        if let Some(prefix) = self.dlq_prefix {
            config = config.dlq_prefix(prefix);
        }
        if let Some(rate) = self.rate_limit {
            config = config.rate_limit(rate);
        }
        if let Some(n) = self.max_ack_pending {
            config = config.max_ack_pending(n);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::{
        DEFAULT_ACK_WAIT, DEFAULT_DLQ_PREFIX, DEFAULT_DUPLICATE_WINDOW, DEFAULT_MAX_DELIVER,
    };

    #[test]
    fn unset_options_keep_cores_defaults() {
        assert_eq!(
            StreamOptions::new().config("S", ["a.>"]),
            StreamConfig::new("S", ["a.>"])
        );
        let consumer = ConsumerOptions::new().config("S", "c");
        assert_eq!(consumer, ConsumerConfig::new("S", "c"));
        assert_eq!(consumer.ack_wait, DEFAULT_ACK_WAIT);
        assert_eq!(consumer.max_deliver, DEFAULT_MAX_DELIVER);
        assert_eq!(consumer.dlq_prefix, DEFAULT_DLQ_PREFIX);
        assert_eq!(consumer.backoff, Backoff::default());
        assert_eq!(
            StreamOptions::new().config("S", ["a"]).duplicate_window,
            DEFAULT_DUPLICATE_WINDOW
        );
    }

    #[test]
    fn every_option_reaches_the_config() {
        let ms = Duration::from_millis;
        let opts = ConsumerOptions {
            filter: Some("a.b".into()),
            start: Some(StartAt::Sequence(7)),
            ack_wait: Some(ms(1500)),
            max_deliver: Some(3),
            backoff_base: Some(ms(10)),
            backoff_factor: Some(1.5),
            backoff_cap: Some(ms(90)),
            dlq_prefix: Some("dead".into()),
            rate_limit: Some(25.0),
            max_ack_pending: Some(4),
        };
        let want = ConsumerConfig::new("S", "c")
            .filter("a.b")
            .start(StartAt::Sequence(7))
            .ack_wait(ms(1500))
            .max_deliver(3)
            .backoff(ms(10), 1.5, ms(90))
            .dlq_prefix("dead")
            .rate_limit(25.0)
            .max_ack_pending(4);
        assert_eq!(opts.config("S", "c"), want);
        let limits = StreamOptions {
            max_age: Some(ms(60_000)),
            max_bytes: Some(1 << 20),
            max_messages: Some(10),
            duplicate_window: Some(ms(5_000)),
        };
        let want = StreamConfig::new("S", ["a.>"])
            .max_age(ms(60_000))
            .max_bytes(1 << 20)
            .max_messages(10)
            .duplicate_window(ms(5_000));
        assert_eq!(limits.config("S", ["a.>"]), want);
    }

    #[test]
    fn one_backoff_part_keeps_the_other_defaults() {
        let default = Backoff::default();
        let config = ConsumerOptions {
            backoff_cap: Some(Duration::from_secs(5)),
            ..ConsumerOptions::new()
        }
        .config("S", "c");
        assert_eq!(config.backoff.base, default.base);
        assert_eq!(config.backoff.factor, default.factor);
        assert_eq!(config.backoff.cap, Duration::from_secs(5));
    }

    #[tokio::test]
    async fn bad_values_are_refused_when_the_consumer_opens() {
        use crate::{Config, EventBus, InMemoryBus};
        let bus = InMemoryBus::new(Config::default()).unwrap();
        bus.declare_stream(StreamOptions::new().config("OPTS", ["opts.>"]))
            .await
            .unwrap();
        let bad = ConsumerOptions {
            backoff_factor: Some(0.5),
            ..ConsumerOptions::new()
        };
        let err = bus.durable_subscribe(bad.config("OPTS", "c")).await.unwrap_err();
        assert_eq!(err.code(), "invalid_argument");
    }
}
