//! `busbar_bus`: connect, publish, subscribe, request, flush, close.

use std::ffi::c_char;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use busbar_core::{Bytes, EventBus, MessageBuilder, Result};

use crate::args::{array_arg, handle, out, str_arg, timeout_arg};
use crate::error::busbar_status;
use crate::message::busbar_message;
use crate::runtime::block_on;
use crate::subscription::busbar_subscription;

/// A connected bus. Opaque; owned by the caller, free with `busbar_bus_free`. Thread-safe:
/// any number of threads may use one bus at once.
pub struct busbar_bus {
    pub(crate) bus: Arc<dyn EventBus>,
}

/// One user header of a message to publish: two borrowed NUL-terminated UTF-8 strings.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_header {
    /// Printable ASCII without ':' or spaces, not a reserved attribute name.
    pub name: *const c_char,
    /// Any UTF-8 without line breaks or NUL.
    pub value: *const c_char,
}

/// Counters of a bus since it was created (see `busbar_bus_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_stats {
    /// Messages accepted by publish (requests and replies included).
    pub published: u64,
    /// Message copies queued to subscriptions.
    pub delivered: u64,
    /// Copies not queued because a subscription in `lag` mode was full.
    pub missed: u64,
    /// Replies that arrived after their request had timed out (dropped).
    pub late_replies: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Messages on a waiting request's inbox without its correlation id (dropped).
    pub rejected_replies: u64,
    /// Messages received that could not be decoded (reported as `BUSBAR_DECODE`).
    pub undecodable: u64,
    /// Times the NATS connection was lost (messages in flight then may be lost).
    pub disconnects: u64,
}

/// A `timeout_ms` that means "wait as long as it takes".
pub const BUSBAR_WAIT_FOREVER: u64 = u64::MAX;

/// Publishes `len` bytes at `data` (copied; NULL allowed when `len` is 0) to `subject`,
/// with `headers_len` user headers at `headers` (NULL when 0). Every string is borrowed
/// for the call only. Blocks only while a subscription's buffer is full in `block`
/// back-pressure mode.
#[no_mangle]
pub extern "C" fn busbar_publish(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    headers: *const busbar_header,
    headers_len: usize,
) -> busbar_status {
    ffi_boundary! {
        let PublishArgs { bus, subject, data, headers } = publish_args(bus, subject, data, len, headers, headers_len)?;
        if headers.is_empty() {
            return block_on(bus.publish(subject, data));
        }
        block_on(bus.publish_message(with_headers(bus.message(subject).data(data), headers)?.build()?))
    }
}

/// The checked arguments of a publish: the payload is copied, the headers are checked
/// one by one by [`with_headers`].
pub(crate) struct PublishArgs<'a> {
    pub bus: &'a Arc<dyn EventBus>,
    pub subject: &'a str,
    pub data: Bytes,
    pub headers: &'a [busbar_header],
}

pub(crate) fn publish_args<'a>(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    headers: *const busbar_header,
    headers_len: usize,
) -> Result<PublishArgs<'a>> {
    Ok(PublishArgs {
        bus: &handle(bus, "bus")?.bus,
        subject: str_arg(subject, "subject")?,
        data: Bytes::copy_from_slice(array_arg(data, len, "data")?),
        headers: array_arg(headers, headers_len, "headers")?,
    })
}

/// Adds the C `headers` (each checked for NULL and UTF-8) to a message being built.
pub(crate) fn with_headers(mut message: MessageBuilder, headers: &[busbar_header]) -> Result<MessageBuilder> {
    for (i, h) in headers.iter().enumerate() {
        message = message.header(
            str_arg(h.name, &format!("headers[{i}].name"))?,
            str_arg(h.value, &format!("headers[{i}].value"))?,
        );
    }
    Ok(message)
}

fn subscribe_with(
    bus: *const busbar_bus,
    pattern: *const c_char,
    group: Option<*const c_char>,
    out_sub: *mut *mut busbar_subscription,
) -> Result<()> {
    let slot = out(out_sub, ptr::null_mut(), "subscription")?;
    let bus = &handle(bus, "bus")?.bus;
    let pattern = str_arg(pattern, "pattern")?;
    let sub = match group {
        None => block_on(bus.subscribe(pattern))?,
        Some(group) => block_on(bus.queue_subscribe(pattern, str_arg(group, "group")?))?,
    };
    *slot = busbar_subscription::boxed(sub);
    Ok(())
}

/// Subscribes to every message whose subject matches `pattern` (borrowed) and sets
/// `*subscription`. Receive with `busbar_subscription_next`, or register a callback
/// with `busbar_subscription_set_callback`. Owned: free with `busbar_subscription_free`.
#[no_mangle]
pub extern "C" fn busbar_subscribe(
    bus: *const busbar_bus,
    pattern: *const c_char,
    subscription: *mut *mut busbar_subscription,
) -> busbar_status {
    ffi_boundary! { subscribe_with(bus, pattern, None, subscription) }
}

/// As `busbar_subscribe`, as one member of queue group `group` (borrowed): each message
/// goes to one member of the group.
#[no_mangle]
pub extern "C" fn busbar_queue_subscribe(
    bus: *const busbar_bus,
    pattern: *const c_char,
    group: *const c_char,
    subscription: *mut *mut busbar_subscription,
) -> busbar_status {
    ffi_boundary! { subscribe_with(bus, pattern, Some(group), subscription) }
}

/// Sends `len` bytes at `data` (copied) to `subject` as a request and waits up to
/// `timeout_ms` for one reply, set in `*reply`. `no_responders` at once when nothing
/// subscribes to `subject`; `timeout` when no reply came in time.
/// Owned: free `*reply` with `busbar_message_free`.
#[no_mangle]
pub extern "C" fn busbar_request(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    timeout_ms: u64,
    reply: *mut *mut busbar_message,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(reply, ptr::null_mut(), "reply")?;
        let bus = &handle(bus, "bus")?.bus;
        let subject = str_arg(subject, "subject")?;
        let data = Bytes::copy_from_slice(array_arg(data, len, "data")?);
        let timeout = timeout_arg(timeout_ms).unwrap_or(Duration::MAX);
        *slot = busbar_message::boxed(block_on(bus.request(subject, data, timeout))?);
        Ok(())
    }
}

/// Returns once everything published before has reached the bus (on NATS: after a round
/// trip through the server).
#[no_mangle]
pub extern "C" fn busbar_flush(bus: *const busbar_bus) -> busbar_status {
    ffi_boundary! { block_on(handle(bus, "bus")?.bus.flush()) }
}

/// Sets `*stats` to the bus's counters. Works after close too.
#[no_mangle]
pub extern "C" fn busbar_bus_stats(bus: *const busbar_bus, stats: *mut busbar_stats) -> busbar_status {
    ffi_boundary! {
        let slot = out(stats, busbar_stats::default(), "stats")?;
        let s = handle(bus, "bus")?.bus.stats();
        *slot = busbar_stats {
            published: s.published,
            delivered: s.delivered,
            missed: s.missed,
            late_replies: s.late_replies,
            subscriptions: s.subscriptions,
            rejected_replies: s.rejected_replies,
            undecodable: s.undecodable,
            disconnects: s.disconnects,
        };
        Ok(())
    }
}

/// Closes the bus: subscriptions end after what they hold, pending requests fail with
/// `closed`, and every later call on the bus returns `BUSBAR_CLOSED`. Closing twice is
/// fine. The handle stays valid until `busbar_bus_free`.
#[no_mangle]
pub extern "C" fn busbar_close(bus: *const busbar_bus) -> busbar_status {
    ffi_boundary! { block_on(handle(bus, "bus")?.bus.close()) }
}

/// Closes the bus (unless already closed) and frees the handle. `NULL` does nothing.
/// Subscriptions and messages taken from it stay valid and are freed on their own.
#[no_mangle]
pub extern "C" fn busbar_bus_free(bus: *mut busbar_bus) {
    ffi_boundary!(@or () => {
        if !bus.is_null() {
            // SAFETY: made by `Box::into_raw` in `busbar_connect*`, freed once (header contract).
            let bus = unsafe { Box::from_raw(bus) };
            let _ = block_on(bus.bus.close());
        }
    })
}
