//! Durable streams on NATS: JetStream streams, acked publishes and durable pull consumers.
//! What to do with a delivery (backoff, dead letters, rate limit) is decided once in
//! [`crate::durable`]; this file only maps it onto JetStream.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, consumer::PullConsumer, context, AckKind, ErrorCode};
use futures_util::StreamExt;

use super::connection::{backend, header_block, send_durable, Inner};
use crate::bus::ConnectionEvent;
use crate::durable::{
    lost_consumer, no_stream, no_such_consumer, no_such_stream, validate_name, ConsumerConfig, ConsumerInfo,
    Delivery, DurablePublish, PublishAck, Settle, StartAt, StreamConfig, StreamInfo,
};
use crate::envelope::codec::{check_size, Dedupe};
use crate::envelope::Message;
use crate::error::{Error, Result};

/// Most messages a consumer pulls ahead of its handler. Kept small: a pulled message's
/// `ack_wait` clock is already running.
const PULL_BATCH: usize = 64;
/// Pause before a consumer that lost its server asks again.
const RETRY_PULL: Duration = Duration::from_millis(250);

fn stream_info(info: &jetstream::stream::Info) -> StreamInfo {
    StreamInfo {
        name: info.config.name.clone(),
        subjects: info.config.subjects.clone(),
        messages: info.state.messages,
        bytes: info.state.bytes,
        first_sequence: if info.state.messages == 0 {
            0
        } else {
            info.state.first_sequence
        },
        last_sequence: info.state.last_sequence,
    }
}

fn consumer_info(info: &jetstream::consumer::Info) -> ConsumerInfo {
    let filter = &info.config.filter_subject;
    ConsumerInfo {
        stream: info.stream_name.clone(),
        name: info.name.clone(),
        filter: (!filter.is_empty()).then(|| filter.clone()),
        pending: info.num_pending,
        ack_pending: info.num_ack_pending as u64,
        delivered_sequence: info.delivered.stream_sequence,
    }
}

fn limit(value: Option<u64>) -> i64 {
    value.map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// JetStream's answers to a stream declaration whose settings this server will never
/// accept: `invalid_argument`, not `backend` (docs/design.md §4).
const REFUSED_SETTINGS: [ErrorCode; 6] = [
    ErrorCode::STREAM_INVALID_CONFIG,
    ErrorCode::STREAM_LIMITS,
    ErrorCode::STORAGE_RESOURCES_EXCEEDED,
    ErrorCode::MEMORY_RESOURCES_EXCEEDED,
    ErrorCode::INSUFFICIENT_RESOURCES,
    ErrorCode::ACCOUNT_RESOURCES_EXCEEDED,
];

impl Inner {
    pub(super) async fn declare_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.check_open()?;
        let config = config.checked(self.config.retention_days)?;
        let js_config = jetstream::stream::Config {
            name: config.name.clone(),
            subjects: config.subjects.clone(),
            max_age: config.max_age.unwrap_or_default(),
            max_bytes: limit(config.max_bytes),
            max_messages: limit(config.max_messages),
            duplicate_window: config.duplicate_window,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let mut stream = self.js.get_or_create_stream(js_config).await.map_err(|e| {
            use context::CreateStreamErrorKind as K;
            match e.kind() {
                K::JetStream(js) if js.error_code() == ErrorCode::STREAM_SUBJECT_OVERLAP => {
                    Error::InvalidArgument(format!(
                        "stream {:?}: its subjects overlap those of another stream ({js})",
                        config.name
                    ))
                }
                // A setting this server refuses, or limits larger than it can reserve
                // (core checks what every backend shares): retrying cannot help.
                K::JetStream(js) if REFUSED_SETTINGS.contains(&js.error_code()) => {
                    Error::InvalidArgument(format!("stream {:?}: the server refuses it: {js}", config.name))
                }
                _ => backend(format!("declaring stream {:?}", config.name), e),
            }
        })?;
        let info = stream
            .info()
            .await
            .map_err(|e| backend(format!("reading stream {:?}", config.name), e))?;
        Ok(stream_info(info))
    }

    async fn stream(&self, name: &str) -> Result<jetstream::stream::Stream> {
        self.check_open()?;
        crate::durable::validate_name("stream", name)?;
        self.js.get_stream(name).await.map_err(|e| match e.kind() {
            context::GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                no_such_stream(name)
            }
            _ => backend(format!("looking up stream {name:?}"), e),
        })
    }

    /// Every stream of the account, sorted by name.
    pub(super) async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.check_open()?;
        let mut infos = Vec::new();
        let mut streams = self.js.streams();
        while let Some(info) = streams.next().await {
            let info = info.map_err(|e| backend("listing streams".into(), e))?;
            infos.push(stream_info(&info));
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    pub(super) async fn delete_stream(&self, name: &str) -> Result<()> {
        // Looked up first: a missing stream is `invalid_argument`, as on the in-memory bus.
        self.stream(name).await?;
        self.js.delete_stream(name).await.map_err(|e| match e.kind() {
            context::GetStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND => {
                no_such_stream(name)
            }
            _ => backend(format!("deleting stream {name:?}"), e),
        })?;
        Ok(())
    }

    /// The consumers of stream `name`, sorted by name.
    pub(super) async fn list_consumers(&self, name: &str) -> Result<Vec<ConsumerInfo>> {
        let stream = self.stream(name).await?;
        let mut infos = Vec::new();
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            let info = info.map_err(|e| backend(format!("listing the consumers of {name:?}"), e))?;
            infos.push(consumer_info(&info));
        }
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(infos)
    }

    pub(super) async fn consumer_info(&self, name: &str, consumer: &str) -> Result<ConsumerInfo> {
        validate_name("consumer", consumer)?;
        let stream = self.stream(name).await?;
        let info = stream.consumer_info(consumer).await.map_err(|e| {
            use context::ConsumerInfoErrorKind as K;
            match e.kind() {
                K::NotFound => no_such_consumer(name, consumer),
                K::StreamNotFound => no_such_stream(name),
                _ => backend(format!("reading consumer {consumer:?} of {name:?}"), e),
            }
        })?;
        Ok(consumer_info(&info))
    }

    pub(super) async fn delete_consumer(&self, name: &str, consumer: &str) -> Result<()> {
        validate_name("consumer", consumer)?;
        let stream = self.stream(name).await?;
        stream
            .delete_consumer(consumer)
            .await
            .map_err(|e| match e.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(js)
                    if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND =>
                {
                    no_such_consumer(name, consumer)
                }
                _ => backend(format!("deleting consumer {consumer:?} of {name:?}"), e),
            })?;
        Ok(())
    }

    pub(super) async fn stream_info(&self, name: &str) -> Result<StreamInfo> {
        let mut stream = self.stream(name).await?;
        let info = stream
            .info()
            .await
            .map_err(|e| backend(format!("reading stream {name:?}"), e))?;
        Ok(stream_info(info))
    }

    /// Sends `msg` to JetStream (its `Nats-Msg-Id` header is its id, for dedupe) and waits
    /// for the stream's acknowledgement.
    pub(super) async fn publish_durable(&self, msg: &Message) -> Result<PublishAck> {
        self.check_open()?;
        check_size(msg, self.max_payload)?;
        let headers = header_block(msg, Dedupe::With)?;
        let subject = msg.subject().to_owned();
        let failed = |e: context::PublishError| match e.kind() {
            context::PublishErrorKind::StreamNotFound => no_stream(msg.subject()),
            context::PublishErrorKind::MaxPayloadExceeded => self.too_large(msg),
            _ => backend(format!("durable publish to {:?}", msg.subject()), e),
        };
        let publish = async {
            send_durable(&self.js, subject, headers, msg.data().clone())
                .await
                .map_err(failed)?
                .await
                .map_err(failed)
        };
        let ack = self
            .bounded(|| format!("durable publish to {:?}", msg.subject()), publish)
            .await??;
        self.counters
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PublishAck {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    /// The durable pull consumer `config.name`, created at `config.start` if it is new.
    pub(super) async fn consumer(&self, config: &ConsumerConfig) -> Result<PullConsumer> {
        let stream = self.stream(&config.stream).await?;
        let deliver_policy = match config.start {
            StartAt::Beginning => jetstream::consumer::DeliverPolicy::All,
            StartAt::New => jetstream::consumer::DeliverPolicy::New,
            StartAt::Sequence(seq) => jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seq.max(1),
            },
            StartAt::Time(t) => jetstream::consumer::DeliverPolicy::ByStartTime { start_time: t.into() },
        };
        let js_config = pull::Config {
            durable_name: Some(config.name.clone()),
            filter_subject: config.filter.clone().unwrap_or_default(),
            deliver_policy,
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: config.ack_wait,
            // busbar counts attempts itself and dead-letters past max_deliver.
            max_deliver: -1,
            max_ack_pending: i64::try_from(config.max_ack_pending).unwrap_or(i64::MAX),
            ..Default::default()
        };
        stream
            .get_or_create_consumer(&config.name, js_config)
            .await
            .map_err(|e| {
                backend(
                    format!("opening consumer {:?} on stream {:?}", config.name, config.stream),
                    e,
                )
            })
    }
}

/// Idle heartbeat asked of the server on each pull: two missed in a row end the pull
/// with an error, so a consumer that vanished without a reconnection (deleted by an
/// operator) is noticed within [`crate::durable::LOST_CONSUMER_NOTICE`].
const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Pause between attempts to re-create a lost consumer (its stream must be declared again).
const RETRY_LOST: Duration = Duration::from_millis(500);

/// Where a durable subscription's pulling stands.
enum Pull {
    /// No pull open: open one.
    Idle,
    Open(Box<pull::Stream>),
    /// The stream or consumer is gone from the server: re-create it when the stream is back.
    Lost,
}

/// The deliveries of `consumer`, pulled in small batches. A lost server or heartbeat
/// only pauses them: the pull is asked again until the bus closes. A consumer (or its
/// stream) gone from the server, e.g. after a restart on an empty store, yields one
/// `backend` error item, then is re-created from `config` as soon as its stream exists
/// again, and deliveries go on.
pub(super) fn deliveries(
    inner: Arc<Inner>,
    consumer: PullConsumer,
    config: ConsumerConfig,
) -> impl futures_core::Stream<Item = Result<Delivery>> + Send {
    let events = inner.events.subscribe();
    let state = (inner, consumer, config, events, Pull::Idle);
    futures_util::stream::unfold(
        state,
        |(inner, mut consumer, config, mut events, mut pull)| async move {
            loop {
                if inner.check_open().is_err() {
                    return None;
                }
                let messages = match &mut pull {
                    Pull::Lost => {
                        match inner.consumer(&config).await {
                            Ok(fresh) => {
                                consumer = fresh;
                                pull = Pull::Idle;
                            }
                            Err(_) => tokio::time::sleep(RETRY_LOST).await,
                        }
                        continue;
                    }
                    Pull::Idle => {
                        match consumer
                            .stream()
                            .max_messages_per_batch(PULL_BATCH)
                            .heartbeat(PULL_HEARTBEAT)
                            .messages()
                            .await
                        {
                            Ok(messages) => pull = Pull::Open(Box::new(messages)),
                            Err(_) => pull = check(&consumer, RETRY_PULL).await,
                        }
                        if let Pull::Lost = pull {
                            let lost = lost_consumer(&config);
                            return Some((Err(lost), (inner, consumer, config, events, pull)));
                        }
                        continue;
                    }
                    Pull::Open(messages) => messages,
                };
                let next = tokio::select! {
                    next = messages.next() => next,
                    event = events.recv() => {
                        // Back from a reconnection: the server may have lost its store.
                        if matches!(event, Ok(ConnectionEvent::Connected)) {
                            if let Pull::Lost = check(&consumer, Duration::ZERO).await {
                                pull = Pull::Lost;
                                let lost = lost_consumer(&config);
                                return Some((Err(lost), (inner, consumer, config, events, pull)));
                            }
                        }
                        continue;
                    }
                };
                match next {
                    Some(Ok(m)) => {
                        let Ok(info) = m.info() else { continue };
                        let (attempt, sequence) = (
                            u32::try_from(info.delivered).unwrap_or(u32::MAX),
                            info.stream_sequence,
                        );
                        let (raw, acker) = m.split();
                        let (subject, payload) = (raw.subject.clone(), raw.payload.clone());
                        let delivery = match inner.receive(raw) {
                            Ok(message) => Ok(Delivery {
                                message,
                                attempt,
                                sequence,
                                settle: Box::new(JsSettle(acker)),
                                undecodable: None,
                            }),
                            // Undecodable (a foreign publisher's malformed header block or bad
                            // `ce-` headers): redelivering cannot help, so it is dead-lettered as
                            // its subject and payload (see `Delivery::undecodable`).
                            Err(e) => match Message::builder(subject.as_str())
                                .data(payload)
                                .source("nats")
                                .build()
                            {
                                Ok(message) => Ok(Delivery {
                                    message,
                                    attempt,
                                    sequence,
                                    settle: Box::new(JsSettle(acker)),
                                    undecodable: Some(e.to_string()),
                                }),
                                Err(_) => {
                                    // Not even a subject busbar can carry: stop redelivery here;
                                    // it stays in the stream.
                                    let _ = acker.ack_with(AckKind::Term).await;
                                    Err(Error::Decode(format!("stream sequence {sequence}: {e}")))
                                }
                            },
                        };
                        return Some((delivery, (inner, consumer, config, events, pull)));
                    }
                    Some(Err(_)) | None => {
                        pull = check(&consumer, RETRY_PULL).await;
                        if let Pull::Lost = pull {
                            let lost = lost_consumer(&config);
                            return Some((Err(lost), (inner, consumer, config, events, pull)));
                        }
                    }
                }
            }
        },
    )
}

/// After a failed pull: [`Pull::Lost`] when the server says the consumer or its stream
/// does not exist, else [`Pull::Idle`] after `pause` (the server may just be away).
async fn check(consumer: &PullConsumer, pause: Duration) -> Pull {
    use jetstream::context::ConsumerInfoErrorKind as Kind;
    match consumer.get_info().await {
        Err(e) if matches!(e.kind(), Kind::NotFound | Kind::StreamNotFound) => Pull::Lost,
        _ => {
            tokio::time::sleep(pause).await;
            Pull::Idle
        }
    }
}

struct JsSettle(jetstream::message::Acker);

fn ack_failed(e: async_nats::Error) -> Error {
    Error::Backend {
        message: format!("acknowledging a JetStream message: {e}"),
        source: Some(e),
    }
}

#[async_trait::async_trait]
impl Settle for JsSettle {
    async fn ack(&self) -> Result<()> {
        self.0.ack().await.map_err(ack_failed)
    }

    async fn nak(&self, delay: Duration) -> Result<()> {
        self.0
            .ack_with(AckKind::Nak(Some(delay)))
            .await
            .map_err(ack_failed)
    }

    async fn in_progress(&self) -> Result<()> {
        self.0.ack_with(AckKind::Progress).await.map_err(ack_failed)
    }
}

/// Dead letters are published through the bus that received the message.
pub(super) struct Publisher(pub(super) std::sync::Weak<Inner>);

#[async_trait::async_trait]
impl DurablePublish for Publisher {
    async fn publish_durable(&self, message: Message) -> Result<PublishAck> {
        let inner = self.0.upgrade().ok_or(Error::Closed("bus"))?;
        inner.publish_durable(&message).await
    }
}
