//! The durable journal of a RabbitMQ bus (see `durable.rs`): reading it into the state
//! [`super::log`] derives, on every connection in turn, and writing entries to it under
//! publisher confirms, each call waiting until this bus has applied its own.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Confirmation};
use tokio::sync::watch;

use super::connection::{backend, Attachment, Inner, Session};
use super::envelope::NONCE;
use super::log::{Entry, Journal, LogStream, Outcome};
use super::{envelope, subjects};
use crate::backend::reply::token;
use crate::envelope::Message;
use crate::error::{Error, Result};

/// Entries the journal reader takes ahead of applying them.
const PREFETCH: u16 = 512;

/// Text of header `name`, if it is text.
fn header<'a>(props: &'a BasicProperties, name: &str) -> Option<&'a str> {
    match props.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        _ => None,
    }
}

/// The stream offset of a delivery from a RabbitMQ stream.
fn offset(d: &AmqpDelivery) -> Option<u64> {
    match d.properties.headers().as_ref()?.inner().get("x-stream-offset")? {
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        _ => None,
    }
}

impl Journal {
    /// Applies one journal delivery. `false` when it was an entry on the journal queue
    /// itself that is not one busbar writes (malformed, of an unknown kind, or naming what
    /// no busbar call accepts: a buggy or hostile peer's): skipped, for the caller to count.
    fn apply(&self, d: &AmqpDelivery) -> bool {
        // Read again after a reconnection (the broker resumes at the start of a chunk):
        // applied already.
        if offset(d).is_some_and(|o| o < self.lock().next_offset) {
            return true;
        }
        let nonce = header(&d.properties, NONCE).map(str::to_owned);
        let mut sound = true;
        let outcome = if d.exchange.as_str().is_empty() {
            let applied = serde_json::from_slice::<Entry>(&d.data)
                .ok()
                .and_then(|entry| self.lock().apply(entry));
            sound = applied.is_some();
            applied
        } else {
            let subject = d.routing_key.as_str();
            let (message, undecodable) = match envelope::decode(subject, &d.properties, d.data.clone()) {
                Ok(m) => (Some(m), None),
                Err(e) => (
                    Message::builder(subject).data(d.data.clone()).build().ok(),
                    Some(e.to_string()),
                ),
            };
            message.map(|m| {
                let mut state = self.lock();
                match state.capturing(m.subject()) {
                    Some(stream) => Outcome::Stored(stream.store(m, undecodable)),
                    None => Outcome::NoStream,
                }
            })
        };
        let mut state = self.lock();
        if let Some(next) = offset(d) {
            state.next_offset = next + 1;
        }
        if let (Some(nonce), Some(outcome)) = (nonce, outcome) {
            if state.waiting.remove(&nonce) {
                state.outcomes.insert(nonce, outcome);
            }
        }
        drop(state);
        self.applied.notify_waiters();
        sound
    }

    /// Starts reading the journal (once per bus): declares it and consumes it from its
    /// first entry.
    /// Bounded by `publish_timeout_ms`, like every call that waits on the broker.
    pub(super) async fn start(&self, bus: &Arc<Inner>) -> Result<()> {
        let what = || format!("reading the durable journal {:?}", self.queue);
        let started = self.reading.get_or_try_init(|| async {
            let seen = bus.generation.subscribe();
            let session = bus.session();
            let consumer = self.attach(bus, &session).await.map_err(|e| backend(what(), e))?;
            let attachment = bus.attachments.enter(&session);
            tokio::spawn(read(consumer, seen, attachment, Arc::downgrade(bus)));
            Ok::<(), Error>(())
        });
        bus.bounded(what, started).await.map(drop)
    }

    /// Declares the journal on `session`, binds it again under every stream's subjects (a
    /// broker restart may have dropped the exchange, auto-deleted while the journal was not
    /// yet back), and consumes it from the next entry to apply.
    pub(super) async fn attach(&self, bus: &Inner, session: &Session) -> lapin::Result<lapin::Consumer> {
        let channel = session.connection.create_channel().await?;
        let mut args = FieldTable::default();
        args.insert("x-queue-type".into(), AMQPValue::LongString("stream".into()));
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(self.queue.as_str().into(), options, args)
            .await?;
        let subjects: Vec<String> = {
            let state = self.lock();
            state
                .streams
                .iter()
                .flat_map(|s| s.config.subjects.clone())
                .collect()
        };
        for key in subjects.iter().filter_map(|s| subjects::binding_key(s).ok()) {
            self.bind(bus, &channel, &key).await?;
        }
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let from = self.lock().next_offset;
        let mut args = FieldTable::default();
        let start = match from {
            0 => AMQPValue::LongString("first".into()),
            n => AMQPValue::LongLongInt(n as i64),
        };
        args.insert("x-stream-offset".into(), start);
        let tag = format!("busbar.journal.{}", token());
        channel
            .basic_consume(
                self.queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                args,
            )
            .await
    }

    /// Binds the journal to the bus's exchange under binding key `key`.
    pub(super) async fn bind(&self, bus: &Inner, channel: &lapin::Channel, key: &str) -> lapin::Result<()> {
        channel
            .queue_bind(
                self.queue.as_str().into(),
                bus.exchange.clone(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
    }

    /// Binds the journal under the binding keys of `subjects`, on a channel of its own (a
    /// refusal closes the channel it came on, never the bus's publishing channel).
    pub(super) async fn bind_all(&self, bus: &Inner, subjects: &[String]) -> Result<()> {
        self.rebind(bus, subjects, true).await
    }

    /// Unbinds the journal from the binding keys of `subjects` (a deleted stream's: the
    /// subjects of streams never overlap, so no other stream captures through them).
    pub(super) async fn unbind_all(&self, bus: &Inner, subjects: &[String]) -> Result<()> {
        self.rebind(bus, subjects, false).await
    }

    /// Bounded by `publish_timeout_ms`.
    async fn rebind(&self, bus: &Inner, subjects: &[String], bind: bool) -> Result<()> {
        let what = || {
            let verb = if bind { "binding" } else { "unbinding" };
            format!("{verb} the durable journal {:?} to its subjects", self.queue)
        };
        bus.bounded(what, self.rebind_unbounded(bus, subjects, bind, &what))
            .await
    }

    async fn rebind_unbounded(
        &self,
        bus: &Inner,
        subjects: &[String],
        bind: bool,
        what: &impl Fn() -> String,
    ) -> Result<()> {
        let channel = bus
            .session()
            .connection
            .create_channel()
            .await
            .map_err(|e| backend(what(), e))?;
        for subject in subjects {
            let key = subjects::binding_key(subject)?;
            let done = if bind {
                self.bind(bus, &channel, &key).await
            } else {
                let (queue, exchange) = (self.queue.as_str().into(), bus.exchange.clone());
                channel
                    .queue_unbind(queue, exchange, key.as_str().into(), FieldTable::default())
                    .await
            };
            done.map_err(|e| backend(what(), e))?;
        }
        let _ = channel.close(200, "bound".into()).await;
        Ok(())
    }

    /// Waits until this bus has applied the entry `nonce` names; its outcome.
    pub(super) async fn outcome(&self, nonce: &str, timeout: Duration) -> Result<Outcome> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let applied = self.applied.notified();
            tokio::pin!(applied);
            applied.as_mut().enable();
            {
                let mut state = self.lock();
                if let Some(outcome) = state.outcomes.remove(nonce) {
                    return Ok(outcome);
                }
                if state.closed {
                    state.waiting.remove(nonce);
                    return Err(Error::Closed("bus"));
                }
            }
            if tokio::time::timeout_at(deadline, applied).await.is_err() {
                self.lock().waiting.remove(nonce);
                return Err(Error::Backend {
                    message: format!(
                        "the durable journal {:?} did not come back within publish_timeout_ms ({} ms); \
                         RabbitMQ may be hung or unreachable",
                        self.queue,
                        timeout.as_millis()
                    ),
                    source: None,
                });
            }
        }
    }

    /// Publishes `data` with `props` (plus the nonce header) under confirms, mandatory, and
    /// waits until this bus has applied it. `exchange` empty: onto the journal itself.
    pub(super) async fn append_raw(
        &self,
        bus: &Inner,
        exchange: &str,
        key: &str,
        data: &[u8],
        props: BasicProperties,
    ) -> Result<Outcome> {
        let nonce = token();
        let mut headers = props.headers().clone().unwrap_or_default();
        headers.insert(
            NONCE.into(),
            AMQPValue::LongString(nonce.as_bytes().to_vec().into()),
        );
        let props = props.with_headers(headers).with_delivery_mode(2);
        self.lock().waiting.insert(nonce.clone());
        let what = || format!("writing to the durable journal {:?}", self.queue);
        let sent = bus
            .bounded(what, async {
                let confirm = bus
                    .session()
                    .confirmed
                    .basic_publish(
                        exchange.into(),
                        key.into(),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        data,
                        props,
                    )
                    .await
                    .map_err(|e| backend(what(), e))?;
                match confirm.await.map_err(|e| backend(what(), e))? {
                    Confirmation::Ack(None) | Confirmation::NotRequested => Ok(true),
                    Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => Ok(false),
                    Confirmation::Nack(None) => Err(Error::Backend {
                        message: format!("{}: the broker refused it (nack)", what()),
                        source: None,
                    }),
                }
            })
            .await;
        match sent {
            Ok(true) => self.outcome(&nonce, bus.config.publish_timeout()).await,
            Ok(false) => {
                // Returned: no queue took it (no stream captures the subject).
                self.lock().waiting.remove(&nonce);
                Ok(Outcome::NoStream)
            }
            Err(e) => {
                self.lock().waiting.remove(&nonce);
                Err(e)
            }
        }
    }

    pub(super) async fn append(&self, bus: &Inner, entry: &Entry) -> Result<Outcome> {
        let data = serde_json::to_vec(entry).map_err(|e| Error::Backend {
            message: format!("encoding a durable journal entry: {e}"),
            source: None,
        })?;
        let props = BasicProperties::default().with_content_type("application/json".into());
        self.append_raw(bus, "", &self.queue, &data, props).await
    }

    /// Waits until this bus has applied everything written to the journal before now.
    pub(super) async fn sync(&self, bus: &Inner) -> Result<()> {
        self.append(bus, &Entry::Sync).await.map(drop)
    }

    /// Runs `f` on stream `name`, reading the journal up to now first if this bus does not
    /// know the stream yet.
    pub(super) async fn with_stream<T>(
        &self,
        bus: &Inner,
        name: &str,
        f: impl Fn(&mut LogStream) -> T,
    ) -> Result<T> {
        if let Some(s) = self.lock().stream(name) {
            return Ok(f(s));
        }
        self.sync(bus).await?;
        let mut state = self.lock();
        let s = state
            .stream(name)
            .ok_or_else(|| Error::InvalidArgument(format!("no stream named {name:?}; declare it first")))?;
        Ok(f(s))
    }
}

/// Reads the journal into the bus's state, resuming on each new connection where it was.
async fn read(
    mut consumer: lapin::Consumer,
    mut seen: watch::Receiver<u64>,
    attachment: Attachment,
    bus: Weak<Inner>,
) {
    loop {
        match consumer.next().await {
            Some(Ok(d)) => {
                let Some(inner) = bus.upgrade() else { return };
                if !inner.journal.apply(&d) {
                    inner.counters.undecodable.fetch_add(1, Relaxed);
                }
                drop(inner);
                let _ = d.ack(BasicAckOptions::default()).await;
            }
            Some(Err(_)) | None => loop {
                let Some(session) = Inner::await_session(&bus, &mut seen, Duration::from_millis(250)).await
                else {
                    if let Some(inner) = bus.upgrade() {
                        inner.journal.close();
                    }
                    return;
                };
                let Some(inner) = bus.upgrade() else { return };
                if let Ok(fresh) = inner.journal.attach(&inner, &session).await {
                    attachment.attached(&session);
                    consumer = fresh;
                    break;
                }
            },
        }
    }
}
