//! Durable streams: `Bus.declareStream`, `streamInfo`, `listStreams`, `deleteStream`,
//! `listConsumers`, `consumerInfo`, `deleteConsumer`, `publishDurable`,
//! `durableSubscribe`, the `DurableSubscription` it resolves with (batches for
//! `for await`, as `Subscription`), and the settling methods of a durable `Message`
//! (`ack`, `nak`, `term`, `inProgress`). Validation, backoff, dead letters and errors
//! are the core's; this file converts milliseconds, counts and start positions.

use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use busbar::{Batches, StartAt};
use futures_util::future::{select, Either};
use napi::bindgen_prelude::*;
use napi::sys;
use tokio::sync::{Mutex, Notify};

use crate::args::{
    backoff_is_object, batch_size, count, describe, millis, options_arg, payload, string_arg, strings_arg,
    type_error, typed,
};
use crate::bus::Bus;
use crate::error::to_js;
use crate::message::{Message, PublishOptions, Received};
use crate::runtime::{run, settle};

/// Most messages handed to JavaScript in one batch. Smaller than a plain subscription's:
/// the `ackWaitMs` clock of a durable message runs from when it is fetched, so the batch
/// waiting in `for await` is kept as short as the core's pull-ahead on NATS.
const MAX_BATCH: u32 = 64;

/// Largest integer a JavaScript number holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Limits of `declareStream()`; unset ones take the core's defaults.
#[napi(object, object_to_js = false)]
pub(crate) struct StreamOptions {
    /// Oldest message kept, in milliseconds (default: the bus's `retentionDays`, 0 = forever).
    pub max_age_ms: Option<f64>,
    /// Most bytes kept, oldest discarded first (default: no limit).
    pub max_bytes: Option<f64>,
    /// Most messages kept, oldest discarded first (default: no limit).
    pub max_messages: Option<f64>,
    /// A second publish with the same `id` inside this window, in milliseconds, is stored
    /// once (default: core's, docs/design.md §4).
    pub duplicate_window_ms: Option<f64>,
}

/// What a durable stream holds now.
#[napi(object, object_from_js = false)]
pub(crate) struct StreamInfo {
    /// Name of the stream.
    pub name: String,
    /// Subject patterns whose messages it stores.
    pub subjects: Vec<String>,
    /// Messages stored.
    pub messages: f64,
    /// Bytes stored.
    pub bytes: f64,
    /// Sequence of the oldest stored message (0 when empty).
    pub first_sequence: f64,
    /// Sequence of the newest stored message (0 when nothing was ever stored).
    pub last_sequence: f64,
}

impl From<busbar::StreamInfo> for StreamInfo {
    fn from(info: busbar::StreamInfo) -> Self {
        StreamInfo {
            name: info.name,
            subjects: info.subjects,
            messages: info.messages as f64,
            bytes: info.bytes as f64,
            first_sequence: info.first_sequence as f64,
            last_sequence: info.last_sequence as f64,
        }
    }
}

/// Where a durable consumer stands now (`consumerInfo()`, `listConsumers()`).
#[napi(object, object_from_js = false)]
pub(crate) struct ConsumerInfo {
    /// Stream it reads.
    pub stream: String,
    /// Durable name of the consumer.
    pub name: String,
    /// The subject pattern it is limited to; absent for all of the stream.
    pub filter: Option<String>,
    /// Stored messages matching its filter not delivered to it yet.
    pub pending: f64,
    /// Messages delivered to it and not yet settled.
    pub ack_pending: f64,
    /// Stream sequence of the last message delivered to it (0 before the first).
    pub delivered_sequence: f64,
}

impl From<busbar::ConsumerInfo> for ConsumerInfo {
    fn from(info: busbar::ConsumerInfo) -> Self {
        ConsumerInfo {
            stream: info.stream,
            name: info.name,
            filter: info.filter,
            pending: info.pending as f64,
            ack_pending: info.ack_pending as f64,
            delivered_sequence: info.delivered_sequence as f64,
        }
    }
}

/// The broker's acknowledgement of `publishDurable()`.
#[napi(object, object_from_js = false)]
pub(crate) struct PublishAck {
    /// Stream that stored the message.
    pub stream: String,
    /// Its sequence in that stream (of the first copy, for a duplicate).
    pub sequence: f64,
    /// Whether a message with the same `id` was already stored inside the dedupe window.
    pub duplicate: bool,
}

/// Delays of redeliveries after `nak()` without a delay: `baseMs * factor^(attempt-1)`,
/// at most `capMs`; a part left out keeps core's default (docs/design.md §4).
#[napi(object, object_to_js = false)]
pub(crate) struct BackoffOptions {
    /// Delay after the first attempt, in milliseconds.
    pub base_ms: Option<f64>,
    /// Growth per attempt (1 for a constant delay).
    pub factor: Option<f64>,
    /// Longest delay, in milliseconds.
    pub cap_ms: Option<f64>,
}

/// Settings of `durableSubscribe()`; unset ones take the core's defaults.
#[napi(object, object_to_js = false)]
pub(crate) struct ConsumerOptions {
    /// Only messages whose subject matches this pattern (default: the whole stream).
    pub filter: Option<String>,
    /// Where a new consumer starts: `'beginning'` (default), `'new'`, a stream sequence,
    /// or a `Date`. A consumer that exists already resumes where it was.
    #[napi(ts_type = "'beginning' | 'new' | number | Date")]
    pub start: Option<Start>,
    /// Time a delivery may stay unsettled before it is redelivered, in milliseconds
    /// (default: core's, docs/design.md §4).
    pub ack_wait_ms: Option<f64>,
    /// Delivery attempts before the message is dead-lettered (default: core's).
    pub max_deliver: Option<f64>,
    /// Backoff of `nak()` without a delay.
    pub backoff: Option<BackoffOptions>,
    /// Dead letters go to `<dlqPrefix>.<subject>`, stored in the stream
    /// `DLQ_<DLQPREFIX>` (default: core's prefix).
    pub dlq_prefix: Option<String>,
    /// Most messages per second handed to this subscription (default: no limit).
    pub rate_limit: Option<f64>,
    /// Most delivered but unsettled messages (default: core's).
    pub max_ack_pending: Option<f64>,
}

/// The `start` of `ConsumerOptions`: a position, or a sequence number not yet range-checked.
pub(crate) enum Start {
    At(StartAt),
    Sequence(f64),
}

impl TypeName for Start {
    fn type_name() -> &'static str {
        "'beginning' | 'new' | number | Date"
    }

    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl FromNapiValue for Start {
    unsafe fn from_napi_value(env: sys::napi_env, value: sys::napi_value) -> Result<Self> {
        let bad = |got: String| {
            Error::new(
                Status::InvalidArg,
                format!("start must be 'beginning', 'new', a sequence number or a Date, not {got}"),
            )
        };
        // SAFETY (each conversion): `value` is a live handle of the type just checked.
        let unknown = unsafe { Unknown::from_raw_unchecked(env, value) };
        match unknown.get_type()? {
            ValueType::String => match unsafe { String::from_napi_value(env, value) }?.as_str() {
                "beginning" => Ok(Start::At(StartAt::Beginning)),
                "new" => Ok(Start::At(StartAt::New)),
                other => Err(bad(format!("{other:?}"))),
            },
            // A number is the right type; its range is checked where the other numeric
            // options are, so `-1` is `invalid_argument` like them, not a `TypeError`.
            ValueType::Number => Ok(Start::Sequence(unsafe { f64::from_napi_value(env, value) }?)),
            ValueType::Object if unknown.is_date()? => {
                let mut ms = 0.0;
                check_status!(unsafe { sys::napi_get_date_value(env, value, &mut ms) })?;
                let offset = Duration::try_from_secs_f64(ms.abs() / 1000.0)
                    .map_err(|_| bad("an invalid Date".into()))?;
                let time = if ms >= 0.0 {
                    UNIX_EPOCH.checked_add(offset)
                } else {
                    UNIX_EPOCH.checked_sub(offset)
                };
                time.map(|t| Start::At(StartAt::Time(t)))
                    .ok_or_else(|| bad("a Date out of range".into()))
            }
            other => Err(bad(describe(other).into())),
        }
    }
}

/// An optional count option up to `max`; out of range is the core's `invalid_argument`.
impl StreamOptions {
    /// Core's stream options: milliseconds and counts checked, unset ones left unset.
    fn into_core(self) -> busbar::Result<busbar::StreamOptions> {
        use busbar::bounds::MAX_COUNT;
        let mut o = busbar::StreamOptions::new();
        o.max_age = millis("options.maxAgeMs", self.max_age_ms)?;
        o.max_bytes = count("options.maxBytes", self.max_bytes, MAX_COUNT)?;
        o.max_messages = count("options.maxMessages", self.max_messages, MAX_COUNT)?;
        o.duplicate_window = millis("options.duplicateWindowMs", self.duplicate_window_ms)?;
        Ok(o)
    }
}

impl ConsumerOptions {
    /// Core's consumer options: milliseconds, counts and the start checked, unset ones
    /// left unset (each backoff part on its own).
    fn into_core(self) -> busbar::Result<busbar::ConsumerOptions> {
        let mut o = busbar::ConsumerOptions::new();
        o.filter = self.filter;
        o.start = match self.start {
            Some(Start::At(start)) => Some(start),
            Some(Start::Sequence(n)) => Some(StartAt::Sequence(busbar::bounds::whole(
                "options.start",
                n,
                MAX_SAFE_INTEGER as u64,
            )?)),
            None => None,
        };
        o.ack_wait = millis("options.ackWaitMs", self.ack_wait_ms)?;
        o.max_deliver = count("options.maxDeliver", self.max_deliver, u32::MAX.into())?.map(|n| n as u32);
        if let Some(b) = self.backoff {
            o.backoff_base = millis("options.backoff.baseMs", b.base_ms)?;
            o.backoff_factor = b.factor;
            o.backoff_cap = millis("options.backoff.capMs", b.cap_ms)?;
        }
        o.dlq_prefix = self.dlq_prefix;
        o.rate_limit = self.rate_limit;
        o.max_ack_pending =
            count("options.maxAckPending", self.max_ack_pending, u32::MAX.into())?.map(|n| n as usize);
        Ok(o)
    }
}

#[napi]
impl Bus {
    /// Declares a durable stream storing the messages published to `subjects` (patterns).
    /// Idempotent: a stream of that name that exists already is kept as it is.
    #[napi(
        catch_unwind,
        ts_args_type = "name: string, subjects: string[], options?: StreamOptions",
        ts_return_type = "Promise<StreamInfo>"
    )]
    pub fn declare_stream<'env>(
        &self,
        env: &'env Env,
        name: Unknown,
        subjects: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let name = string_arg(env, "name", name)?;
        let subjects = strings_arg(env, "subjects", subjects)?;
        let config = match options_arg::<StreamOptions>(env, options)? {
            Some(options) => options.into_core(),
            None => Ok(busbar::StreamOptions::new()),
        }
        .map(|o| o.config(name, subjects));
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.declare_stream(config?).await },
            |_, info| Ok(StreamInfo::from(info)),
        )
    }

    /// What the durable stream `name` holds now; rejects with `invalid_argument` when there
    /// is no such stream.
    #[napi(
        catch_unwind,
        ts_args_type = "name: string",
        ts_return_type = "Promise<StreamInfo>"
    )]
    pub fn stream_info<'env>(&self, env: &'env Env, name: Unknown) -> Result<Unknown<'env>> {
        let name = string_arg(env, "name", name)?;
        let bus = self.inner.clone();
        run(env, async move { bus.stream_info(&name).await }, |_, info| {
            Ok(StreamInfo::from(info))
        })
    }

    /// Every durable stream, sorted by name, with what each holds now.
    #[napi(catch_unwind, ts_return_type = "Promise<Array<StreamInfo>>")]
    pub fn list_streams<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let bus = self.inner.clone();
        run(env, async move { bus.list_streams().await }, |_, infos| {
            Ok(infos.into_iter().map(StreamInfo::from).collect::<Vec<_>>())
        })
    }

    /// Deletes the durable stream `name` with its messages and consumers; rejects with
    /// `invalid_argument` when there is no such stream.
    #[napi(catch_unwind, ts_args_type = "name: string", ts_return_type = "Promise<void>")]
    pub fn delete_stream<'env>(&self, env: &'env Env, name: Unknown) -> Result<Unknown<'env>> {
        let name = string_arg(env, "name", name)?;
        let bus = self.inner.clone();
        run(env, async move { bus.delete_stream(&name).await }, |_, ()| Ok(()))
    }

    /// The durable consumers of `stream`, sorted by name.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string",
        ts_return_type = "Promise<Array<ConsumerInfo>>"
    )]
    pub fn list_consumers<'env>(&self, env: &'env Env, stream: Unknown) -> Result<Unknown<'env>> {
        let stream = string_arg(env, "stream", stream)?;
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.list_consumers(&stream).await },
            |_, infos| Ok(infos.into_iter().map(ConsumerInfo::from).collect::<Vec<_>>()),
        )
    }

    /// Where durable consumer `name` of `stream` stands now; rejects with
    /// `invalid_argument` when there is no such stream or consumer.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, name: string",
        ts_return_type = "Promise<ConsumerInfo>"
    )]
    pub fn consumer_info<'env>(
        &self,
        env: &'env Env,
        stream: Unknown,
        name: Unknown,
    ) -> Result<Unknown<'env>> {
        let (stream, name) = (string_arg(env, "stream", stream)?, string_arg(env, "name", name)?);
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.consumer_info(&stream, &name).await },
            |_, info| Ok(ConsumerInfo::from(info)),
        )
    }

    /// Deletes durable consumer `name` of `stream`; rejects with `invalid_argument` when
    /// there is no such stream or consumer.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, name: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn delete_consumer<'env>(
        &self,
        env: &'env Env,
        stream: Unknown,
        name: Unknown,
    ) -> Result<Unknown<'env>> {
        let (stream, name) = (string_arg(env, "stream", stream)?, string_arg(env, "name", name)?);
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.delete_consumer(&stream, &name).await },
            |_, ()| Ok(()),
        )
    }

    /// Stores a message in the durable stream whose subjects match `subject`, resolving
    /// once the broker has it. Publishing the same `options.id` again inside the stream's
    /// duplicate window stores it once (`duplicate: true`). Rejects with `invalid_argument`
    /// when no stream captures `subject`.
    #[napi(
        catch_unwind,
        ts_args_type = "subject: string, data?: Payload, options?: PublishOptions",
        ts_return_type = "Promise<PublishAck>"
    )]
    pub fn publish_durable<'env>(
        &self,
        env: &'env Env,
        subject: Unknown,
        data: Option<Unknown>,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let subject = string_arg(env, "subject", subject)?;
        let payload = payload(env, data)?;
        let options = PublishOptions::from_js(env, options)?;
        let bus = self.inner.clone();
        let message = options.build(bus.message(&subject), payload);
        run(
            env,
            async move { bus.publish_durable(message?).await },
            |_, ack| {
                Ok(PublishAck {
                    stream: ack.stream,
                    sequence: ack.sequence as f64,
                    duplicate: ack.duplicate,
                })
            },
        )
    }

    /// Opens the durable consumer `name` on `stream` (created at `options.start` when new)
    /// and resolves with its subscription: iterate it with `for await` and settle each
    /// message with `ack()`, `nak()` or `term()`. Rejects with `invalid_argument` when the
    /// stream does not exist.
    #[napi(
        catch_unwind,
        ts_args_type = "stream: string, name: string, options?: ConsumerOptions",
        ts_return_type = "Promise<DurableSubscription>"
    )]
    pub fn durable_subscribe<'env>(
        &self,
        env: &'env Env,
        stream: Unknown,
        name: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let config = consumer_config(env, stream, name, options)?;
        let bus = self.inner.clone();
        run(
            env,
            async move { bus.durable_subscribe(config?).await },
            |_, sub| Ok(DurableSubscription::new(sub)),
        )
    }

    /// `durableSubscribe` as `principal` with `options.roles` under the policy: a `filter`
    /// overlapping a subject no role may read rejects with `forbidden`; each message is
    /// masked for the principal, one it may not see is withheld (acked, counted in
    /// `policyStats()`).
    #[napi(
        catch_unwind,
        ts_args_type = "principal: string, stream: string, name: string, options?: ConsumerOptions & { roles?: Array<string> }",
        ts_return_type = "Promise<DurableSubscription>"
    )]
    pub fn durable_subscribe_as<'env>(
        &self,
        env: &'env Env,
        principal: Unknown,
        stream: Unknown,
        name: Unknown,
        options: Option<Unknown>,
    ) -> Result<Unknown<'env>> {
        let principal = string_arg(env, "principal", principal)?;
        // The roles key only; the consumer's options are read below from the same object.
        let roles: Option<Roles> = options_arg(env, options)?;
        let roles = roles.and_then(|r| r.roles).unwrap_or_default();
        let config = consumer_config(env, stream, name, options)?;
        let who = busbar::policy::Principal::new(&principal, roles);
        let policy = self.policy("durableSubscribeAs()");
        run(
            env,
            async move { policy?.durable_subscribe_as(&who, config?).await },
            |_, sub| Ok(DurableSubscription::new(sub)),
        )
    }
}

/// The `roles` of `durableSubscribeAs`'s options.
#[napi(object)]
pub(crate) struct Roles {
    /// Roles of the principal (granted classes by the policy).
    pub roles: Option<Vec<String>>,
}

/// Core's `ConsumerConfig` from a durable subscribe's arguments: a wrong type throws, a
/// bad value is core's error (rejected with the call's Promise).
fn consumer_config(
    env: &Env,
    stream: Unknown,
    name: Unknown,
    options: Option<Unknown>,
) -> Result<busbar::Result<busbar::ConsumerConfig>> {
    let stream = string_arg(env, "stream", stream)?;
    let name = string_arg(env, "name", name)?;
    backoff_is_object(env, options.as_ref())?;
    Ok(match options_arg::<ConsumerOptions>(env, options)? {
        Some(options) => options.into_core(),
        None => Ok(busbar::ConsumerOptions::new()),
    }
    .map(|o| o.config(stream, name)))
}

/// The messages of a durable consumer, from `bus.durableSubscribe()`. Iterate it with
/// `for await (const msg of sub)` and settle each message; leaving the loop early
/// unsubscribes. What was delivered but not settled is redelivered after `ackWaitMs`.
#[napi]
pub struct DurableSubscription {
    feed: Arc<Feed>,
    handle: busbar::DurableHandle,
    stream: String,
    name: String,
}

/// Counters of a durable subscription.
#[napi(object, object_from_js = false)]
pub struct DurableSubscriptionStats {
    /// Messages handed out.
    pub delivered: f64,
    /// Stored messages that could not be decoded (dead-lettered).
    pub undecodable: f64,
    /// Messages handed out and not yet settled (acked, nacked, terminated) nor collected.
    pub unsettled: f64,
}

/// The core subscription, and the signal that ends a wait for it.
struct Feed {
    sub: Mutex<Option<Batches<busbar::DurableSubscription>>>,
    closed: AtomicBool,
    wake: Notify,
}

impl DurableSubscription {
    fn new(sub: busbar::DurableSubscription) -> Self {
        let stream = sub.config().stream.clone();
        let name = sub.config().name.clone();
        DurableSubscription {
            handle: sub.handle(),
            feed: Arc::new(Feed {
                sub: Mutex::new(Some(Batches::new(sub))),
                closed: AtomicBool::new(false),
                wake: Notify::new(),
            }),
            stream,
            name,
        }
    }
}

#[napi]
impl DurableSubscription {
    /// The stream this subscription reads.
    #[napi(getter, catch_unwind)]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The durable name of its consumer.
    #[napi(getter, catch_unwind)]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The next messages: at least one, at most `max` (default 64), waiting only for the
    /// first. Resolves with `null` once the subscription has ended.
    #[napi(
        catch_unwind,
        ts_args_type = "max?: number",
        ts_return_type = "Promise<DurableMessage[] | null>"
    )]
    pub fn next_batch<'env>(&self, env: &'env Env, max: Option<Unknown>) -> Result<Unknown<'env>> {
        let max = batch_size(env, max, MAX_BATCH)?;
        let feed = self.feed.clone();
        run(
            env,
            async move {
                let mut guard = feed.sub.lock().await;
                // Registered before the flag is read, so an unsubscribe in between wakes it.
                let closed = feed.wake.notified();
                if feed.closed.load(Acquire) {
                    return Ok(None);
                }
                let Some(sub) = guard.as_mut() else {
                    return Ok(None);
                };
                let batch = match select(Box::pin(sub.next_batch(max)), Box::pin(closed)).await {
                    Either::Left((batch, _)) => batch.transpose(),
                    Either::Right(_) => Ok(None),
                };
                batch
            },
            |_, batch| Ok(batch.map(|b| b.into_iter().map(Message::from).collect::<Vec<_>>())),
        )
    }

    /// Stops the deliveries: iteration ends, and what was delivered but not settled is
    /// redelivered (to another subscription of the consumer) after `ackWaitMs`.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn unsubscribe<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let feed = self.feed.clone();
        let handle = self.handle.clone();
        feed.closed.store(true, Release);
        feed.wake.notify_waiters();
        run(
            env,
            async move {
                handle.unsubscribe().await?;
                feed.sub.lock().await.take();
                Ok(())
            },
            |_, ()| Ok(()),
        )
    }

    /// Stops the deliveries (iteration ends after what is already fetched), then resolves
    /// once every message handed out is settled, at most `ackWaitMs`: a graceful shutdown.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn drain<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        let handle = self.handle.clone();
        run(env, async move { handle.drain().await }, |_, ()| Ok(()))
    }

    /// Counters of this subscription.
    #[napi(catch_unwind)]
    pub fn stats(&self) -> DurableSubscriptionStats {
        let s = self.handle.stats();
        DurableSubscriptionStats {
            delivered: s.delivered as f64,
            undecodable: s.undecodable as f64,
            unsettled: s.unsettled as f64,
        }
    }
}

impl Message {
    /// The durable delivery behind this message, or the `invalid_argument` error saying it
    /// has none.
    fn durable(&self) -> busbar::Result<Arc<busbar::DurableMessage>> {
        match &self.inner {
            Received::Durable(d) => Ok(d.clone()),
            Received::Plain(m) => Err(busbar::Error::InvalidArgument(format!(
                "message {} was not delivered by a durable subscription: there is nothing to settle",
                m.id()
            ))),
        }
    }

    /// A Promise of `settle_with`'s future on the durable delivery, or rejected when there
    /// is none.
    fn settle_with<'env, F, Fut>(&self, env: &'env Env, settle_with: F) -> Result<Unknown<'env>>
    where
        F: FnOnce(Arc<busbar::DurableMessage>) -> Fut,
        Fut: std::future::Future<Output = busbar::Result<()>> + Send + 'static,
    {
        match self.durable() {
            Ok(d) => run(env, settle_with(d), |_, ()| Ok(())),
            Err(e) => settle::<()>(env, Err(to_js(env, &e))),
        }
    }
}

#[napi]
impl Message {
    /// Delivery attempt of a durable message, from 1 (`null` for other messages).
    #[napi(getter, catch_unwind)]
    pub fn attempt(&self) -> Option<u32> {
        self.durable().ok().map(|d| d.attempt())
    }

    /// Sequence of a durable message in its stream (`null` for other messages).
    #[napi(getter, catch_unwind)]
    pub fn sequence(&self) -> Option<f64> {
        self.durable().ok().map(|d| d.sequence() as f64)
    }

    /// Stream of a durable message (`null` for other messages).
    #[napi(getter, catch_unwind)]
    pub fn stream(&self) -> Option<String> {
        self.durable().ok().map(|d| d.stream().to_owned())
    }

    /// Processed: the durable message is not delivered again. Settling a message twice (or
    /// a message that is not durable) rejects with `invalid_argument`.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn ack<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        self.settle_with(env, |d| async move { d.ack().await })
    }

    /// Not processed now: redelivered after `delayMs`, or after the consumer's backoff
    /// when no delay is given; on the last allowed attempt it is dead-lettered instead.
    #[napi(
        catch_unwind,
        ts_args_type = "delayMs?: number",
        ts_return_type = "Promise<void>"
    )]
    pub fn nak<'env>(&self, env: &'env Env, delay_ms: Option<Unknown>) -> Result<Unknown<'env>> {
        let delay = match delay_ms {
            None => None,
            Some(d) => match d.get_type()? {
                ValueType::Undefined | ValueType::Null => None,
                ValueType::Number => Some(typed::<f64>(env, "delayMs", d)?),
                other => {
                    let got = describe(other);
                    return Err(type_error(env, format!("delayMs must be a number, not {got}")));
                }
            },
        };
        let delay = millis("delayMs", delay);
        self.settle_with(env, move |d| async move { d.nak(delay?).await })
    }

    /// Cannot ever be processed: the message goes to the dead-letter subject
    /// (`<dlqPrefix>.<subject>`) at once, its header `busbar-dlq-reason` giving `reason`.
    #[napi(
        catch_unwind,
        ts_args_type = "reason: string",
        ts_return_type = "Promise<void>"
    )]
    pub fn term<'env>(&self, env: &'env Env, reason: Unknown) -> Result<Unknown<'env>> {
        let reason = string_arg(env, "reason", reason)?;
        self.settle_with(env, move |d| async move { d.term(&reason).await })
    }

    /// Still working: restarts the `ackWaitMs` clock of this delivery.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn in_progress<'env>(&self, env: &'env Env) -> Result<Unknown<'env>> {
        self.settle_with(env, |d| async move { d.in_progress().await })
    }
}
