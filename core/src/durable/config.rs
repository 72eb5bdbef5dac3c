//! The settings of durable streams and consumers ([`StreamConfig`], [`ConsumerConfig`],
//! [`Backoff`], [`StartAt`]), what the broker answers ([`StreamInfo`], [`PublishAck`]),
//! their defaults and the name rules both backends share.

use std::time::{Duration, SystemTime};

use crate::bounds;
use crate::error::{Error, Result};
use crate::subject::validate_pattern;

/// Default window inside which a second publish with the same id is stored once.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Default time a delivered message may stay unacknowledged before it is redelivered.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Default number of delivery attempts before a message is dead-lettered.
pub const DEFAULT_MAX_DELIVER: u32 = 5;
/// Default most delivered-but-unacknowledged messages per consumer.
pub const DEFAULT_MAX_ACK_PENDING: usize = 1024;
/// Default prefix of dead-letter subjects: `dlq.<original subject>`.
pub const DEFAULT_DLQ_PREFIX: &str = "dlq";
/// How soon a durable subscription on NATS yields a `backend` error item once the server
/// no longer has its consumer or stream (a restart on an empty store, an operator's
/// delete): at once after the reconnection, at most this long otherwise (two missed
/// 5-second pull heartbeats). It then re-creates its consumer as soon as the stream is
/// declared again, and deliveries go on (docs/design.md §4).
pub const LOST_CONSUMER_NOTICE: Duration = Duration::from_secs(10);

/// A durable stream: which subjects it stores and how long it keeps them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Name of the stream (letters, digits, `-` and `_`).
    pub name: String,
    /// Subject patterns whose messages the stream stores.
    pub subjects: Vec<String>,
    /// Oldest message kept; `None` takes `retention_days` from the bus's config (0 = forever).
    /// The duplicate window is shortened to it when it is shorter.
    pub max_age: Option<Duration>,
    /// Most bytes kept (oldest discarded first); `None` for no limit.
    pub max_bytes: Option<u64>,
    /// Most messages kept (oldest discarded first); `None` for no limit.
    pub max_messages: Option<u64>,
    /// A publish whose id was stored within this window is stored once.
    pub duplicate_window: Duration,
}

impl StreamConfig {
    /// A stream named `name` over `subjects`, with default limits.
    pub fn new<S: Into<String>>(name: impl Into<String>, subjects: impl IntoIterator<Item = S>) -> Self {
        StreamConfig {
            name: name.into(),
            subjects: subjects.into_iter().map(Into::into).collect(),
            max_age: None,
            max_bytes: None,
            max_messages: None,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
        }
    }

    /// Sets [`StreamConfig::max_age`].
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Sets [`StreamConfig::max_bytes`].
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets [`StreamConfig::max_messages`].
    pub fn max_messages(mut self, messages: u64) -> Self {
        self.max_messages = Some(messages);
        self
    }

    /// Sets [`StreamConfig::duplicate_window`].
    pub fn duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Checks the name and subjects; fills `max_age` from `retention_days`.
    pub(crate) fn checked(mut self, retention_days: u32) -> Result<Self> {
        validate_name("stream", &self.name)?;
        if self.subjects.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "stream {:?} needs at least one subject",
                self.name
            )));
        }
        for (i, subject) in self.subjects.iter().enumerate() {
            validate_pattern(subject)?;
            if self.subjects[..i].contains(subject) {
                return Err(Error::InvalidArgument(format!(
                    "stream {:?} lists subject {subject:?} twice",
                    self.name
                )));
            }
        }
        if self.max_age.is_some_and(|age| age.is_zero()) {
            return Err(Error::InvalidArgument(format!(
                "stream {:?}: max_age must be above zero (leave it unset for no age limit)",
                self.name
            )));
        }
        if self.max_age.is_none() && retention_days > 0 {
            self.max_age = Some(Duration::from_secs(u64::from(retention_days) * 86_400));
        }
        // JetStream refuses a dedupe window longer than the stream keeps messages.
        if let Some(age) = self.max_age {
            self.duplicate_window = self.duplicate_window.min(age);
        }
        if self.duplicate_window.is_zero() {
            return Err(Error::InvalidArgument(format!(
                "stream {:?}: duplicate_window must be above zero",
                self.name
            )));
        }
        let name = |field: &str| format!("stream {:?}: {field}", self.name);
        if let Some(age) = self.max_age {
            bounds::duration(&name("max_age"), age)?;
        }
        bounds::duration(&name("duplicate_window"), self.duplicate_window)?;
        if let Some(bytes) = self.max_bytes {
            bounds::at_most(&name("max_bytes"), bytes, bounds::MAX_COUNT)?;
        }
        if let Some(messages) = self.max_messages {
            bounds::at_most(&name("max_messages"), messages, bounds::MAX_COUNT)?;
        }
        Ok(self)
    }
}

/// What a stream holds now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamInfo {
    /// Name of the stream.
    pub name: String,
    /// Subject patterns whose messages it stores.
    pub subjects: Vec<String>,
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored (payloads on the in-memory bus; the server's count on NATS).
    pub bytes: u64,
    /// Sequence of the oldest stored message (0 when empty).
    pub first_sequence: u64,
    /// Sequence of the newest stored message (0 when nothing was ever stored).
    pub last_sequence: u64,
}

/// Where a durable consumer stands now ([`crate::EventBus::consumer_info`],
/// [`crate::EventBus::list_consumers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// Stream it reads.
    pub stream: String,
    /// Durable name of the consumer.
    pub name: String,
    /// The subject pattern it is limited to; `None` for all of the stream.
    pub filter: Option<String>,
    /// Stored messages matching its filter that it has not been delivered yet.
    pub pending: u64,
    /// Messages delivered to it and not yet settled (acked, terminated or dead-lettered).
    pub ack_pending: u64,
    /// Stream sequence of the last message delivered to it (0 before the first).
    pub delivered_sequence: u64,
}

/// The broker's acknowledgement of a durable publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishAck {
    /// Stream that stored the message.
    pub stream: String,
    /// Its sequence in that stream (of the first copy, for a duplicate).
    pub sequence: u64,
    /// Whether a message with the same id was already stored inside the dedupe window.
    pub duplicate: bool,
}

/// Where a new durable consumer starts. A consumer that exists already resumes where it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartAt {
    /// From the oldest stored message (replay everything).
    #[default]
    Beginning,
    /// From this stream sequence.
    Sequence(u64),
    /// From the first message stored at or after this time.
    Time(SystemTime),
    /// Only messages stored after the consumer is created.
    New,
}

/// Delay before the n-th redelivery of a nacked message: `base * factor^(n-1)`, at most `cap`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay after the first attempt.
    pub base: Duration,
    /// Growth per attempt (1.0 for a constant delay).
    pub factor: f64,
    /// Longest delay.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(64) as i32;
        let secs = self.base.as_secs_f64() * self.factor.powi(exponent);
        if !secs.is_finite() || secs >= self.cap.as_secs_f64() {
            self.cap
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    fn check(&self) -> Result<()> {
        if !(self.factor.is_finite() && self.factor >= 1.0) || self.base > self.cap {
            return Err(Error::InvalidArgument(format!(
                "backoff needs factor >= 1 and base <= cap, got {self:?}"
            )));
        }
        Ok(())
    }
}

/// A durable consumer: a named position in a stream that survives restarts. Several
/// subscriptions with the same name share its messages (each goes to one of them).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ConsumerConfig {
    /// Stream to read.
    pub stream: String,
    /// Durable name of the consumer (letters, digits, `-` and `_`).
    pub name: String,
    /// Only messages whose subject matches this pattern; `None` for all of the stream.
    pub filter: Option<String>,
    /// Where a new consumer starts.
    pub start: StartAt,
    /// Time a delivery may stay unacknowledged before it is redelivered.
    pub ack_wait: Duration,
    /// Delivery attempts before the message is dead-lettered.
    pub max_deliver: u32,
    /// Delays of redeliveries after `nak()` without an explicit delay.
    pub backoff: Backoff,
    /// Dead letters go to `<dlq_prefix>.<original subject>`.
    pub dlq_prefix: String,
    /// Most messages per second handed to this subscription (replays); `None` for no limit.
    pub rate_limit: Option<f64>,
    /// Most delivered-but-unacknowledged messages.
    pub max_ack_pending: usize,
}

impl ConsumerConfig {
    /// Consumer `name` on `stream` with defaults: from the beginning, ack wait 30 s,
    /// 5 attempts, backoff 1 s ×2 up to 60 s, dead letters under `dlq.`.
    pub fn new(stream: impl Into<String>, name: impl Into<String>) -> Self {
        ConsumerConfig {
            stream: stream.into(),
            name: name.into(),
            filter: None,
            start: StartAt::Beginning,
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: DEFAULT_MAX_DELIVER,
            backoff: Backoff::default(),
            dlq_prefix: DEFAULT_DLQ_PREFIX.to_owned(),
            rate_limit: None,
            max_ack_pending: DEFAULT_MAX_ACK_PENDING,
        }
    }

    /// Sets [`ConsumerConfig::filter`].
    pub fn filter(mut self, pattern: impl Into<String>) -> Self {
        self.filter = Some(pattern.into());
        self
    }

    /// Sets [`ConsumerConfig::start`].
    pub fn start(mut self, start: StartAt) -> Self {
        self.start = start;
        self
    }

    /// Sets [`ConsumerConfig::ack_wait`].
    pub fn ack_wait(mut self, wait: Duration) -> Self {
        self.ack_wait = wait;
        self
    }

    /// Sets [`ConsumerConfig::max_deliver`].
    pub fn max_deliver(mut self, attempts: u32) -> Self {
        self.max_deliver = attempts;
        self
    }

    /// Sets [`ConsumerConfig::backoff`].
    pub fn backoff(mut self, base: Duration, factor: f64, cap: Duration) -> Self {
        self.backoff = Backoff { base, factor, cap };
        self
    }

    /// Sets [`ConsumerConfig::dlq_prefix`].
    pub fn dlq_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.dlq_prefix = prefix.into();
        self
    }

    /// Sets [`ConsumerConfig::rate_limit`] in messages per second.
    pub fn rate_limit(mut self, per_second: f64) -> Self {
        self.rate_limit = Some(per_second);
        self
    }

    /// Sets [`ConsumerConfig::max_ack_pending`].
    pub fn max_ack_pending(mut self, messages: usize) -> Self {
        self.max_ack_pending = messages;
        self
    }

    pub(crate) fn check(&self) -> Result<()> {
        validate_name("stream", &self.stream)?;
        validate_name("consumer", &self.name)?;
        if let Some(filter) = &self.filter {
            validate_pattern(filter)?;
        }
        crate::subject::validate_subject(&self.dlq_prefix)?;
        let (bytes, tokens) = (self.dlq_prefix.len(), self.dlq_prefix.split('.').count());
        if bytes > crate::subject::MAX_DLQ_PREFIX_BYTES || tokens > crate::subject::MAX_DLQ_PREFIX_TOKENS {
            return Err(Error::InvalidArgument(format!(
                "consumer {:?}: dlq_prefix has {bytes} bytes and {tokens} tokens, over the limit of {} bytes \
                 and {} tokens (a dead letter's subject is the prefix and the original subject)",
                self.name,
                crate::subject::MAX_DLQ_PREFIX_BYTES,
                crate::subject::MAX_DLQ_PREFIX_TOKENS
            )));
        }
        self.backoff.check()?;
        let bad = |what: String| {
            Err(Error::InvalidArgument(format!(
                "consumer {:?}: {what}",
                self.name
            )))
        };
        if self.max_deliver == 0 {
            return bad("max_deliver must be at least 1".into());
        }
        if self.ack_wait.is_zero() {
            return bad("ack_wait must be above zero".into());
        }
        if self.max_ack_pending == 0 {
            return bad("max_ack_pending must be at least 1".into());
        }
        let name = |field: &str| format!("consumer {:?}: {field}", self.name);
        bounds::duration(&name("ack_wait"), self.ack_wait)?;
        bounds::duration(&name("backoff cap"), self.backoff.cap)?;
        match self.start {
            StartAt::Sequence(seq) => {
                bounds::at_most(&name("start sequence"), seq, bounds::MAX_COUNT)?;
            }
            StartAt::Time(t) => {
                // A time the broker's calendar cannot hold (past year 9999) would not convert.
                let ahead = t.duration_since(SystemTime::now()).unwrap_or_default();
                bounds::duration(&name("start time (from now)"), ahead)?;
            }
            StartAt::Beginning | StartAt::New => {}
        }
        if let Some(rate) = self.rate_limit {
            // Slower than one message per MAX_DURATION has no interval a timer can hold.
            if !(rate.is_finite() && rate > 0.0 && 1.0 / rate <= bounds::MAX_DURATION.as_secs_f64()) {
                return bad(format!(
                    "rate_limit must be a positive number of messages per second, got {rate}"
                ));
            }
        }
        Ok(())
    }
}

/// Stream and consumer names: what JetStream accepts, so a name works on both backends.
/// The one `backend` item a durable subscription yields when its consumer or stream is gone
/// from the broker (a store lost in a restart, an operator's delete), on every backend.
pub(crate) fn lost_consumer(config: &ConsumerConfig) -> Error {
    Error::Backend {
        message: format!(
            "durable consumer {:?} on stream {:?} is gone (its store was lost, or the stream or \
             consumer deleted); it is re-created as soon as the stream is declared again",
            config.name, config.stream
        ),
        source: None,
    }
}

/// A consumer's `pending` as JetStream counts it: the stored messages (sequence, subject),
/// in order, from sequence `start` on that match its `filter`.
pub(crate) fn count_pending<'a>(
    stored: impl Iterator<Item = (u64, &'a str)>,
    start: u64,
    filter: Option<&str>,
) -> u64 {
    stored
        .skip_while(|(seq, _)| *seq < start)
        .filter(|(_, subject)| filter.is_none_or(|f| crate::subject::matches_routed(f, subject)))
        .count() as u64
}

/// The `invalid_argument` of a call naming a stream that does not exist.
pub(crate) fn no_such_stream(name: &str) -> Error {
    Error::InvalidArgument(format!("no stream named {name:?}; declare it first"))
}

/// The `invalid_argument` of a call naming a consumer that does not exist.
pub(crate) fn no_such_consumer(stream: &str, consumer: &str) -> Error {
    Error::InvalidArgument(format!("stream {stream:?} has no consumer named {consumer:?}"))
}

pub(crate) fn validate_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{kind} name {} must be 1 to 64 letters, digits, '-' or '_'",
            crate::error::quote(name)
        )))
    }
}

/// The error of a durable publish that no stream captures, on both backends.
pub(crate) fn no_stream(subject: &str) -> Error {
    Error::InvalidArgument(format!(
        "no durable stream captures subject {subject:?}; declare one with declare_stream"
    ))
}

/// The stream that keeps the dead letters of consumers using `prefix`, declared by
/// every durable subscription so a dead letter is itself stored durably.
pub(crate) fn dead_letter_stream(prefix: &str) -> StreamConfig {
    let name: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    StreamConfig::new(format!("DLQ_{name}"), [format!("{prefix}.>")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_by_factor_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            factor: 2.0,
            cap: Duration::from_millis(500),
        };
        let delays: Vec<_> = (1..=5).map(|n| b.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 500, 500]);
        assert_eq!(b.delay(u32::MAX), b.cap);
    }

    #[test]
    fn names_follow_jetstream_rules() {
        assert!(validate_name("stream", "ORDERS_v2-a").is_ok());
        for bad in ["", "a.b", "a b", "a*", ">", &"x".repeat(65)] {
            let err = validate_name("stream", bad).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{bad:?}");
        }
    }

    #[test]
    fn dead_letter_streams_are_named_after_their_prefix() {
        let s = dead_letter_stream("dead.letters");
        assert_eq!(s.name, "DLQ_DEAD_LETTERS");
        assert_eq!(s.subjects, ["dead.letters.>"]);
    }

    #[test]
    fn stream_settings_are_checked() {
        let ok = StreamConfig::new("S", ["a.*", "b.>"]);
        assert!(ok.clone().checked(0).is_ok());
        for (bad, says) in [
            (
                StreamConfig::new("S", Vec::<String>::new()),
                "at least one subject",
            ),
            (
                StreamConfig::new("S", ["a.b", "a.b"]),
                "lists subject \"a.b\" twice",
            ),
            (ok.clone().max_age(Duration::ZERO), "max_age must be above zero"),
            (ok.clone().duplicate_window(Duration::ZERO), "duplicate_window"),
            (ok.clone().max_bytes(u64::MAX), "max_bytes"),
        ] {
            let err = bad.checked(0).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{err}");
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn consumer_settings_are_checked() {
        let ok = ConsumerConfig::new("S", "c");
        assert!(ok.check().is_ok());
        for bad in [
            ok.clone().max_deliver(0),
            ok.clone().ack_wait(Duration::ZERO),
            ok.clone().rate_limit(0.0),
            ok.clone()
                .backoff(Duration::from_secs(2), 0.5, Duration::from_secs(1)),
            ok.clone().filter("a..b"),
            ok.clone().dlq_prefix("dlq.>"),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
