//! Durable streams (docs/design.md §4): declare a stream, publish with the broker's
//! acknowledgement, subscribe as a named durable consumer, and settle each delivery with
//! `busbar_message_ack`, `_nak`, `_term` or `_in_progress`.
//!
//! Only translation lives here: options structs into core's `StreamOptions` and
//! `ConsumerOptions` (a zero field is unset, so core's default applies), milliseconds into
//! durations, core's `StreamInfo` and `PublishAck` into plain structs. Defaults,
//! validation, backoff, dead-lettering and every error are core's.

use std::ffi::c_char;
use std::ptr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use busbar_core::{
    ConsumerOptions, DurableHandle, DurableSubscription, Error, PublishOptions, Result, StartAt,
    StreamOptions,
};

use crate::args::{array_arg, handle, out, str_arg};
use crate::bus::{busbar_bus, busbar_header, busbar_principal, headers_arg, principal_arg, publish_args};
use crate::error::busbar_status;
use crate::message::busbar_message;
use crate::runtime::{block_on, block_on_for};

/// Size of the name arrays of `busbar_stream_info` and `busbar_publish_ack`: a stream
/// name (at most 64 bytes) and its NUL.
pub const BUSBAR_STREAM_NAME_CAP: usize = 65;

/// `busbar_consumer_options.start`: from the oldest stored message (the default).
pub const BUSBAR_START_BEGINNING: u32 = 0;
/// `busbar_consumer_options.start`: from stream sequence `start_sequence`.
pub const BUSBAR_START_SEQUENCE: u32 = 1;
/// `busbar_consumer_options.start`: from the first message stored at or after
/// `start_time_ms` (milliseconds since the Unix epoch).
pub const BUSBAR_START_TIME: u32 = 2;
/// `busbar_consumer_options.start`: only messages stored after the consumer is created.
pub const BUSBAR_START_NEW: u32 = 3;

/// Limits of a durable stream for `busbar_bus_declare_stream`. Zero-initialise it
/// (`busbar_stream_options opts = {0};`): a field left 0 keeps core's default.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_stream_options {
    /// Oldest message kept, in milliseconds; 0: the bus's `retention_days` (0 = forever).
    pub max_age_ms: u64,
    /// Most bytes kept (oldest discarded first); 0: no limit.
    pub max_bytes: u64,
    /// Most messages kept (oldest discarded first); 0: no limit.
    pub max_messages: u64,
    /// A publish whose id was stored within this window, in milliseconds, is stored once;
    /// 0: core's default (docs/design.md §4; never longer than `max_age_ms`).
    pub duplicate_window_ms: u64,
}

/// What a durable stream holds now (`busbar_bus_declare_stream`, `busbar_bus_stream_info`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_stream_info {
    /// Name of the stream, NUL-terminated.
    pub name: [c_char; BUSBAR_STREAM_NAME_CAP],
    /// Messages stored.
    pub messages: u64,
    /// Bytes stored (payloads on the in-memory bus; the server's count on NATS).
    pub bytes: u64,
    /// Sequence of the oldest stored message (0 when empty).
    pub first_sequence: u64,
    /// Sequence of the newest stored message (0 when nothing was ever stored).
    pub last_sequence: u64,
}

/// Where a durable consumer stands now (`busbar_bus_consumer_info`,
/// `busbar_bus_list_consumers`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_consumer_info {
    /// Stream it reads, NUL-terminated.
    pub stream: [c_char; BUSBAR_STREAM_NAME_CAP],
    /// Durable name of the consumer, NUL-terminated.
    pub name: [c_char; BUSBAR_STREAM_NAME_CAP],
    /// Whether it is limited to a subject pattern (the pattern itself, up to 2,000
    /// bytes, is not copied here).
    pub filtered: bool,
    /// Stored messages matching its filter not delivered to it yet.
    pub pending: u64,
    /// Messages delivered to it and not yet settled.
    pub ack_pending: u64,
    /// Stream sequence of the last message delivered to it (0 before the first).
    pub delivered_sequence: u64,
}

/// The broker's acknowledgement of `busbar_bus_publish_durable`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_publish_ack {
    /// Stream that stored the message, NUL-terminated.
    pub stream: [c_char; BUSBAR_STREAM_NAME_CAP],
    /// Its sequence in that stream (of the first copy, for a duplicate).
    pub sequence: u64,
    /// Whether a message with the same id was already stored inside the dedupe window.
    pub duplicate: bool,
}

/// Settings of a durable consumer for `busbar_bus_durable_subscribe`. Zero-initialise it
/// (`busbar_consumer_options opts = {0};`): a field left 0 or NULL keeps core's default
/// (the table of defaults is in docs/design.md §4).
/// The strings are borrowed for the call only.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_consumer_options {
    /// Only messages whose subject matches this pattern; NULL: the whole stream.
    pub filter: *const c_char,
    /// Where a new consumer starts: `BUSBAR_START_BEGINNING` (0), `_SEQUENCE`, `_TIME` or
    /// `_NEW`. A consumer that exists already resumes where it was.
    pub start: u32,
    /// The first sequence delivered, with `BUSBAR_START_SEQUENCE`.
    pub start_sequence: u64,
    /// Milliseconds since the Unix epoch, with `BUSBAR_START_TIME`.
    pub start_time_ms: u64,
    /// Time a delivery may stay unsettled before it is redelivered, in milliseconds;
    /// 0: core's default (docs/design.md §4).
    pub ack_wait_ms: u64,
    /// Delivery attempts before the message is dead-lettered; 0: core's default.
    pub max_deliver: u32,
    /// Delay before the first redelivery after a nak without a delay, in milliseconds;
    /// 0: core's default.
    pub backoff_base_ms: u64,
    /// Growth of that delay per attempt (at least 1); 0: core's default.
    pub backoff_factor: f64,
    /// Longest backoff delay, in milliseconds; 0: core's default.
    pub backoff_cap_ms: u64,
    /// Dead letters go to `<dlq_prefix>.<subject>`, stored in stream `DLQ_<PREFIX>`;
    /// NULL: core's default prefix.
    pub dlq_prefix: *const c_char,
    /// Most messages per second handed to this subscription (replays); 0: no limit.
    pub rate_limit: f64,
    /// Most delivered-but-unsettled messages; 0: core's default.
    pub max_ack_pending: usize,
}

/// A durable subscription: a named consumer's position in a stream that survives
/// restarts. Opaque; owned by the caller, free with `busbar_durable_subscription_free`.
pub struct busbar_durable_subscription {
    sub: Mutex<DurableSubscription>,
    control: DurableHandle,
}

/// Counters of a durable subscription (`busbar_durable_subscription_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_durable_subscription_counters {
    /// Messages handed out by `busbar_durable_subscription_next`.
    pub delivered: u64,
    /// Stored messages that could not be decoded (dead-lettered, returned as `BUSBAR_DECODE`).
    pub undecodable: u64,
    /// Messages handed out and not yet settled (acked, nacked, terminated) nor freed.
    pub unsettled: u64,
}

impl busbar_durable_subscription {
    fn sub(&self) -> MutexGuard<'_, DurableSubscription> {
        self.sub.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `text` as a NUL-terminated C array (stream names are at most 64 bytes: core checks).
fn name_array(text: &str) -> [c_char; BUSBAR_STREAM_NAME_CAP] {
    let mut name = [0 as c_char; BUSBAR_STREAM_NAME_CAP];
    for (slot, byte) in name.iter_mut().zip(text.bytes().take(BUSBAR_STREAM_NAME_CAP - 1)) {
        *slot = byte as c_char;
    }
    name
}

fn stream_info_of(info: &busbar_core::StreamInfo) -> busbar_stream_info {
    busbar_stream_info {
        name: name_array(&info.name),
        messages: info.messages,
        bytes: info.bytes,
        first_sequence: info.first_sequence,
        last_sequence: info.last_sequence,
    }
}

const EMPTY_INFO: busbar_stream_info = busbar_stream_info {
    name: [0; BUSBAR_STREAM_NAME_CAP],
    messages: 0,
    bytes: 0,
    first_sequence: 0,
    last_sequence: 0,
};

fn consumer_info_of(info: &busbar_core::ConsumerInfo) -> busbar_consumer_info {
    busbar_consumer_info {
        stream: name_array(&info.stream),
        name: name_array(&info.name),
        filtered: info.filter.is_some(),
        pending: info.pending,
        ack_pending: info.ack_pending,
        delivered_sequence: info.delivered_sequence,
    }
}

const EMPTY_CONSUMER: busbar_consumer_info = busbar_consumer_info {
    stream: [0; BUSBAR_STREAM_NAME_CAP],
    name: [0; BUSBAR_STREAM_NAME_CAP],
    filtered: false,
    pending: 0,
    ack_pending: 0,
    delivered_sequence: 0,
};

/// Copies the first `cap` of `items` (converted) into the caller's `array` and sets
/// `*count` to how many there are: a list call's output.
fn list_out<T, C: Copy>(
    items: &[T],
    array: *mut C,
    cap: usize,
    count: *mut usize,
    convert: impl Fn(&T) -> C,
) -> Result<()> {
    let count = crate::args::out(count, 0, "count")?;
    if cap > 0 {
        if array.is_null() {
            return Err(Error::InvalidArgument(format!(
                "the output array is NULL but cap is {cap}"
            )));
        }
        for (i, item) in items.iter().take(cap).enumerate() {
            // SAFETY: non-NULL, and the caller provides `cap` writable items (header contract).
            unsafe { array.add(i).write(convert(item)) };
        }
    }
    *count = items.len();
    Ok(())
}

/// A C millisecond count, 0 meaning unset.
fn millis(ms: u64) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms))
}

/// A C count or rate, 0 meaning unset.
fn given<T: Default + PartialEq>(value: T) -> Option<T> {
    (value != T::default()).then_some(value)
}

/// Core's stream options for `opts`: each 0 field is unset, keeping core's default.
fn stream_options(opts: &busbar_stream_options) -> StreamOptions {
    let mut o = StreamOptions::new();
    o.max_age = millis(opts.max_age_ms);
    o.max_bytes = given(opts.max_bytes);
    o.max_messages = given(opts.max_messages);
    o.duplicate_window = millis(opts.duplicate_window_ms);
    o
}

fn bad_start(start: u32) -> Error {
    Error::InvalidArgument(format!(
        "options.start {start} is none of BUSBAR_START_BEGINNING (0), _SEQUENCE (1), _TIME (2), _NEW (3)"
    ))
}

/// Core's consumer options for `opts`: each 0 or NULL field is unset, keeping core's default.
fn consumer_options(opts: &busbar_consumer_options) -> Result<ConsumerOptions> {
    let text = |ptr: *const c_char, what: &str| -> Result<Option<String>> {
        if ptr.is_null() {
            return Ok(None);
        }
        Ok(Some(str_arg(ptr, what)?.to_owned()))
    };
    let mut o = ConsumerOptions::new();
    o.filter = text(opts.filter, "options.filter")?;
    o.start = Some(match opts.start {
        BUSBAR_START_BEGINNING => StartAt::Beginning,
        BUSBAR_START_SEQUENCE => StartAt::Sequence(opts.start_sequence),
        BUSBAR_START_TIME => StartAt::Time(
            SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_millis(opts.start_time_ms))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "options.start_time_ms {} is past the clock's range",
                        opts.start_time_ms
                    ))
                })?,
        ),
        BUSBAR_START_NEW => StartAt::New,
        other => return Err(bad_start(other)),
    });
    o.ack_wait = millis(opts.ack_wait_ms);
    o.max_deliver = given(opts.max_deliver);
    o.backoff_base = millis(opts.backoff_base_ms);
    o.backoff_factor = given(opts.backoff_factor);
    o.backoff_cap = millis(opts.backoff_cap_ms);
    o.dlq_prefix = text(opts.dlq_prefix, "options.dlq_prefix")?;
    o.rate_limit = given(opts.rate_limit);
    o.max_ack_pending = given(opts.max_ack_pending);
    Ok(o)
}

/// Declares durable stream `name` over the `n_subjects` subject patterns at `subjects`
/// (JetStream on NATS, a log in memory), with the limits in `options` (NULL: all
/// defaults), and sets `*info` to what it holds when `info` is not NULL. Idempotent: a
/// stream of that name that exists already is kept as it is. Everything is borrowed for
/// the call only. `invalid_argument` for a bad name, no subject, or subjects another
/// stream captures.
#[no_mangle]
pub extern "C" fn busbar_bus_declare_stream(
    bus: *const busbar_bus,
    name: *const c_char,
    subjects: *const *const c_char,
    n_subjects: usize,
    options: *const busbar_stream_options,
    info: *mut busbar_stream_info,
) -> busbar_status {
    ffi_boundary! {
        let slot = if info.is_null() { None } else { Some(out(info, EMPTY_INFO, "info")?) };
        let bus = &handle(bus, "bus")?.bus;
        let name = str_arg(name, "name")?;
        let subjects = array_arg(subjects, n_subjects, "subjects")?
            .iter()
            .enumerate()
            .map(|(i, s)| str_arg(*s, &format!("subjects[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        // SAFETY: NULL or a pointer to one options struct (header contract).
        let options = unsafe { options.as_ref() }.copied().unwrap_or_default();
        let declared = block_on(bus.declare_stream(stream_options(&options).config(name, subjects)))?;
        if let Some(slot) = slot {
            *slot = stream_info_of(&declared);
        }
        Ok(())
    }
}

/// Sets `*info` to what durable stream `name` (borrowed) holds now.
/// `invalid_argument` for a stream that was never declared.
#[no_mangle]
pub extern "C" fn busbar_bus_stream_info(
    bus: *const busbar_bus,
    name: *const c_char,
    info: *mut busbar_stream_info,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(info, EMPTY_INFO, "info")?;
        let bus = &handle(bus, "bus")?.bus;
        let name = str_arg(name, "name")?;
        *slot = stream_info_of(&block_on(bus.stream_info(name))?);
        Ok(())
    }
}

/// Writes the durable streams of the bus, sorted by name, into `infos` (up to `cap` of
/// them; NULL allowed when `cap` is 0) and sets `*count` to how many there are, which may
/// be more than `cap`: call again with a larger array to get them all.
/// `unsupported` on a backend without durable streams.
#[no_mangle]
pub extern "C" fn busbar_bus_list_streams(
    bus: *const busbar_bus,
    infos: *mut busbar_stream_info,
    cap: usize,
    count: *mut usize,
) -> busbar_status {
    ffi_boundary! {
        let bus = &handle(bus, "bus")?.bus;
        let streams = block_on(bus.list_streams())?;
        list_out(&streams, infos, cap, count, stream_info_of)
    }
}

/// Deletes durable stream `name` (borrowed) with its messages and consumers. A durable
/// subscription still reading it yields one `BUSBAR_BACKEND` error and waits for the
/// stream to be declared again. `invalid_argument` when there is no such stream.
#[no_mangle]
pub extern "C" fn busbar_bus_delete_stream(bus: *const busbar_bus, name: *const c_char) -> busbar_status {
    ffi_boundary! {
        let bus = &handle(bus, "bus")?.bus;
        let name = str_arg(name, "name")?;
        block_on(bus.delete_stream(name))
    }
}

/// Writes the durable consumers of stream `stream` (borrowed), sorted by name, into
/// `infos` (up to `cap`; NULL allowed when `cap` is 0) and sets `*count` to how many there
/// are, as `busbar_bus_list_streams`. `invalid_argument` when there is no such stream.
#[no_mangle]
pub extern "C" fn busbar_bus_list_consumers(
    bus: *const busbar_bus,
    stream: *const c_char,
    infos: *mut busbar_consumer_info,
    cap: usize,
    count: *mut usize,
) -> busbar_status {
    ffi_boundary! {
        let bus = &handle(bus, "bus")?.bus;
        let stream = str_arg(stream, "stream")?;
        let consumers = block_on(bus.list_consumers(stream))?;
        list_out(&consumers, infos, cap, count, consumer_info_of)
    }
}

/// Sets `*info` to where durable consumer `name` of stream `stream` (both borrowed)
/// stands now. `invalid_argument` when there is no such stream or consumer.
#[no_mangle]
pub extern "C" fn busbar_bus_consumer_info(
    bus: *const busbar_bus,
    stream: *const c_char,
    name: *const c_char,
    info: *mut busbar_consumer_info,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(info, EMPTY_CONSUMER, "info")?;
        let bus = &handle(bus, "bus")?.bus;
        let (stream, name) = (str_arg(stream, "stream")?, str_arg(name, "name")?);
        *slot = consumer_info_of(&block_on(bus.consumer_info(stream, name))?);
        Ok(())
    }
}

/// Deletes durable consumer `name` of stream `stream` (both borrowed). A durable
/// subscription still using it yields one `BUSBAR_BACKEND` error and creates it again from
/// its configured start. `invalid_argument` when there is no such stream or consumer.
#[no_mangle]
pub extern "C" fn busbar_bus_delete_consumer(
    bus: *const busbar_bus,
    stream: *const c_char,
    name: *const c_char,
) -> busbar_status {
    ffi_boundary! {
        let bus = &handle(bus, "bus")?.bus;
        let (stream, name) = (str_arg(stream, "stream")?, str_arg(name, "name")?);
        block_on(bus.delete_consumer(stream, name))
    }
}

/// Stores `len` bytes at `data` (copied; NULL allowed when `len` is 0) under `subject`,
/// with `headers_len` user headers at `headers` (NULL when 0), in the durable stream that
/// captures `subject`, and returns once the broker has acknowledged it, setting `*ack`
/// when `ack` is not NULL. `id` (NULL: a new one) is the message id: publishing the same
/// id again inside the stream's duplicate window stores it once (`ack->duplicate`).
/// Every string is borrowed for the call only. `invalid_argument` when no stream captures
/// `subject`.
#[no_mangle]
pub extern "C" fn busbar_bus_publish_durable(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    headers: *const busbar_header,
    headers_len: usize,
    id: *const c_char,
    ack: *mut busbar_publish_ack,
) -> busbar_status {
    ffi_boundary! {
        let empty = busbar_publish_ack { stream: [0; BUSBAR_STREAM_NAME_CAP], sequence: 0, duplicate: false };
        let slot = if ack.is_null() { None } else { Some(out(ack, empty, "ack")?) };
        let (bus, subject, payload) = publish_args(bus, subject, data, len)?;
        let mut options = PublishOptions::new();
        options.headers = headers_arg(headers, headers_len)?;
        if !id.is_null() {
            options.id = Some(str_arg(id, "id")?.to_owned());
        }
        let stored = block_on(bus.publish_durable(options.build(bus.message(subject), payload)?))?;
        if let Some(slot) = slot {
            *slot = busbar_publish_ack {
                stream: name_array(&stored.stream),
                sequence: stored.sequence,
                duplicate: stored.duplicate,
            };
        }
        Ok(())
    }
}

/// Opens durable consumer `name` on stream `stream` (created at `options->start` when new;
/// resumed where it was otherwise) with `options` (NULL: all defaults) and sets
/// `*subscription`. Several subscriptions with the same name share its messages. Receive
/// with `busbar_durable_subscription_next`. Strings are borrowed for the call only.
/// `invalid_argument` for an unknown stream or a bad setting.
/// Owned: free with `busbar_durable_subscription_free`.
#[no_mangle]
pub extern "C" fn busbar_bus_durable_subscribe(
    bus: *const busbar_bus,
    stream: *const c_char,
    name: *const c_char,
    options: *const busbar_consumer_options,
    subscription: *mut *mut busbar_durable_subscription,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(subscription, ptr::null_mut(), "subscription")?;
        let bus = &handle(bus, "bus")?.bus;
        let config = consumer_config(stream, name, options)?;
        *slot = busbar_durable_subscription::boxed(block_on(bus.durable_subscribe(config))?);
        Ok(())
    }
}

/// `busbar_bus_durable_subscribe` as `principal` under the bus's policy: a
/// `options->filter` overlapping a subject no role may read is `BUSBAR_FORBIDDEN`; each
/// message is masked for the principal, and one it may not see is withheld (acked,
/// counted in `busbar_bus_policy_stats`). `invalid_argument` on a bus without a policy
/// layer. Owned: free with `busbar_durable_subscription_free`.
#[no_mangle]
pub extern "C" fn busbar_bus_durable_subscribe_as(
    bus: *const busbar_bus,
    principal: *const busbar_principal,
    stream: *const c_char,
    name: *const c_char,
    options: *const busbar_consumer_options,
    subscription: *mut *mut busbar_durable_subscription,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(subscription, ptr::null_mut(), "subscription")?;
        let this = handle(bus, "bus")?;
        let who = principal_arg(principal)?;
        let config = consumer_config(stream, name, options)?;
        let policy = this.policy("busbar_bus_durable_subscribe_as")?;
        *slot = busbar_durable_subscription::boxed(block_on(policy.durable_subscribe_as(&who, config))?);
        Ok(())
    }
}

/// Core's `ConsumerConfig` from a durable subscribe's arguments (`options` NULL: defaults).
fn consumer_config(
    stream: *const c_char,
    name: *const c_char,
    options: *const busbar_consumer_options,
) -> Result<busbar_core::ConsumerConfig> {
    let stream = str_arg(stream, "stream")?;
    let name = str_arg(name, "name")?;
    // SAFETY: NULL or a pointer to one options struct (header contract).
    Ok(match unsafe { options.as_ref() } {
        Some(options) => consumer_options(options)?,
        None => ConsumerOptions::new(),
    }
    .config(stream, name))
}

impl busbar_durable_subscription {
    fn boxed(sub: busbar_core::DurableSubscription) -> *mut busbar_durable_subscription {
        let control = sub.handle();
        Box::into_raw(Box::new(busbar_durable_subscription {
            sub: Mutex::new(sub),
            control,
        }))
    }
}

/// Waits up to `timeout_ms` (0: do not wait; `BUSBAR_WAIT_FOREVER`: no limit) for the
/// next delivery and sets `*message`, a message whose `busbar_message_attempt`,
/// `_sequence`, `_stream`, `_ack`, `_nak`, `_term` and `_in_progress` work. Settle it with
/// one of ack, nak or term: an unsettled delivery comes again after `ack_wait`.
/// Owned: free `*message` with `busbar_message_free` (freeing does not settle it).
///
/// Returns `BUSBAR_TIMEOUT` when none came in time and `BUSBAR_CLOSED` once the bus has
/// closed. One thread at a time receives; others wait for it.
#[no_mangle]
pub extern "C" fn busbar_durable_subscription_next(
    subscription: *mut busbar_durable_subscription,
    timeout_ms: u64,
    message: *mut *mut busbar_message,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(message, ptr::null_mut(), "message")?;
        let this = handle(subscription.cast_const(), "subscription")?;
        let mut guard = this.sub();
        let sub = &mut *guard;
        let item = block_on_for(timeout_ms, sub.next()).ok_or_else(|| {
            let config = sub.config();
            Error::Timeout {
                subject: format!("{}/{}", config.stream, config.name),
                timeout: Duration::from_millis(timeout_ms),
            }
        })?;
        let durable = item.ok_or(Error::Closed("durable subscription"))??;
        *slot = busbar_message::boxed_durable(durable);
        Ok(())
    }
}

/// Stops the deliveries at once: `busbar_durable_subscription_next` returns
/// `BUSBAR_CLOSED` (also in a thread waiting in it now); what was delivered but not settled
/// comes again after `ack_wait`. May be called from any thread.
#[no_mangle]
pub extern "C" fn busbar_durable_subscription_unsubscribe(
    subscription: *mut busbar_durable_subscription,
) -> busbar_status {
    ffi_boundary! { block_on(handle(subscription.cast_const(), "subscription")?.control.unsubscribe()) }
}

/// Stops the deliveries as `busbar_durable_subscription_unsubscribe`, then waits until
/// every message already handed out is settled or freed (at most the consumer's
/// `ack_wait`, past which they come again anyway): a graceful shutdown. Call it from
/// another thread than the one settling the messages.
#[no_mangle]
pub extern "C" fn busbar_durable_subscription_drain(
    subscription: *mut busbar_durable_subscription,
) -> busbar_status {
    ffi_boundary! { block_on(handle(subscription.cast_const(), "subscription")?.control.drain()) }
}

/// Sets `*stats` to the subscription's counters. May be called from any thread.
#[no_mangle]
pub extern "C" fn busbar_durable_subscription_stats(
    subscription: *const busbar_durable_subscription,
    stats: *mut busbar_durable_subscription_counters,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(stats, busbar_durable_subscription_counters::default(), "stats")?;
        let s = handle(subscription, "subscription")?.control.stats();
        *slot = busbar_durable_subscription_counters {
            delivered: s.delivered,
            undecodable: s.undecodable,
            unsettled: s.unsettled,
        };
        Ok(())
    }
}

/// Frees the subscription: deliveries stop; what was delivered but not settled comes
/// again (to this consumer's next subscription) after `ack_wait`. Messages taken from it
/// stay valid and can still be settled. `NULL` does nothing. No other thread may be
/// using the handle.
#[no_mangle]
pub extern "C" fn busbar_durable_subscription_free(subscription: *mut busbar_durable_subscription) {
    ffi_boundary!(@or () => {
        if !subscription.is_null() {
            // SAFETY: made by `Box::into_raw` in `busbar_bus_durable_subscribe`, freed once
            // (header contract).
            drop(unsafe { Box::from_raw(subscription) });
        }
    })
}

/// Sets `*attempt` to which delivery of its message this is, from 1.
/// `invalid_argument` for a message no durable subscription delivered.
#[no_mangle]
pub extern "C" fn busbar_message_attempt(message: *const busbar_message, attempt: *mut u32) -> busbar_status {
    ffi_boundary! {
        let slot = out(attempt, 0, "attempt")?;
        *slot = handle(message, "message")?.durable("busbar_message_attempt")?.attempt();
        Ok(())
    }
}

/// Sets `*sequence` to the message's sequence in its stream.
/// `invalid_argument` for a message no durable subscription delivered.
#[no_mangle]
pub extern "C" fn busbar_message_sequence(
    message: *const busbar_message,
    sequence: *mut u64,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(sequence, 0, "sequence")?;
        *slot = handle(message, "message")?.durable("busbar_message_sequence")?.sequence();
        Ok(())
    }
}

/// Settles a durable message as processed: it is not delivered again. Blocks until the
/// broker has it. `invalid_argument` for a message already settled (acked, nacked or
/// terminated) or one no durable subscription delivered.
#[no_mangle]
pub extern "C" fn busbar_message_ack(message: *const busbar_message) -> busbar_status {
    ffi_boundary! { block_on(handle(message, "message")?.durable("busbar_message_ack")?.ack()) }
}

/// Settles a durable message as not processed now: it comes again after `delay_ms`
/// milliseconds, or, when `delay_ms` is negative, after the consumer's backoff for this
/// attempt. On the consumer's last allowed attempt it is dead-lettered instead.
/// `invalid_argument` as for `busbar_message_ack`.
#[no_mangle]
pub extern "C" fn busbar_message_nak(message: *const busbar_message, delay_ms: i64) -> busbar_status {
    ffi_boundary! {
        let durable = handle(message, "message")?.durable("busbar_message_nak")?;
        let delay = u64::try_from(delay_ms).ok().map(Duration::from_millis);
        block_on(durable.nak(delay))
    }
}

/// Settles a durable message as never processable: it goes at once to the dead-letter
/// subject `<dlq_prefix>.<subject>` with header `busbar-dlq-reason` "terminated:
/// <reason>" (`reason` borrowed for the call), and is not delivered again.
/// `invalid_argument` as for `busbar_message_ack`.
#[no_mangle]
pub extern "C" fn busbar_message_term(
    message: *const busbar_message,
    reason: *const c_char,
) -> busbar_status {
    ffi_boundary! {
        let durable = handle(message, "message")?.durable("busbar_message_term")?;
        block_on(durable.term(str_arg(reason, "reason")?))
    }
}

/// Tells the broker the durable message is still being worked on: restarts its
/// `ack_wait` clock. `invalid_argument` for a settled message or one no durable
/// subscription delivered.
#[no_mangle]
pub extern "C" fn busbar_message_in_progress(message: *const busbar_message) -> busbar_status {
    ffi_boundary! { block_on(handle(message, "message")?.durable("busbar_message_in_progress")?.in_progress()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> busbar_consumer_options {
        busbar_consumer_options {
            filter: ptr::null(),
            start: 0,
            start_sequence: 0,
            start_time_ms: 0,
            ack_wait_ms: 0,
            max_deliver: 0,
            backoff_base_ms: 0,
            backoff_factor: 0.0,
            backoff_cap_ms: 0,
            dlq_prefix: ptr::null(),
            rate_limit: 0.0,
            max_ack_pending: 0,
        }
    }

    #[test]
    fn zero_fields_are_unset_options() {
        let mut want = ConsumerOptions::new();
        want.start = Some(StartAt::Beginning);
        assert_eq!(consumer_options(&zeroed()).unwrap(), want);
        assert_eq!(
            stream_options(&busbar_stream_options::default()),
            StreamOptions::new()
        );
    }

    #[test]
    fn every_field_reaches_its_option() {
        let opts = busbar_consumer_options {
            filter: c"a.b".as_ptr(),
            start: BUSBAR_START_TIME,
            start_time_ms: 1_000,
            ack_wait_ms: 1500,
            max_deliver: 3,
            backoff_base_ms: 10,
            backoff_factor: 1.5,
            backoff_cap_ms: 90,
            dlq_prefix: c"dead".as_ptr(),
            rate_limit: 25.0,
            max_ack_pending: 4,
            ..zeroed()
        };
        let ms = Duration::from_millis;
        let o = consumer_options(&opts).unwrap();
        assert_eq!(o.filter.as_deref(), Some("a.b"));
        assert_eq!(o.start, Some(StartAt::Time(SystemTime::UNIX_EPOCH + ms(1_000))));
        assert_eq!((o.ack_wait, o.max_deliver), (Some(ms(1500)), Some(3)));
        assert_eq!(
            (o.backoff_base, o.backoff_factor, o.backoff_cap),
            (Some(ms(10)), Some(1.5), Some(ms(90)))
        );
        assert_eq!(o.dlq_prefix.as_deref(), Some("dead"));
        assert_eq!((o.rate_limit, o.max_ack_pending), (Some(25.0), Some(4)));
        let bad = busbar_consumer_options { start: 9, ..zeroed() };
        assert_eq!(consumer_options(&bad).unwrap_err().code(), "invalid_argument");
        let limits = busbar_stream_options {
            max_age_ms: 60_000,
            max_bytes: 1 << 20,
            max_messages: 10,
            duplicate_window_ms: 5_000,
        };
        let s = stream_options(&limits);
        assert_eq!(
            (s.max_age, s.duplicate_window),
            (Some(ms(60_000)), Some(ms(5_000)))
        );
        assert_eq!((s.max_bytes, s.max_messages), (Some(1 << 20), Some(10)));
    }
}
