//! `busbar_bus`: connect, publish, subscribe, request, flush, close.

use std::ffi::c_char;
use std::ptr;
use std::sync::Arc;
use std::time::Duration;

use busbar_core::{Bytes, EventBus, Headers, Payload, PublishOptions, Result};

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
        let (bus, subject, payload) = publish_args(bus, subject, data, len)?;
        let mut options = PublishOptions::new();
        options.headers = headers_arg(headers, headers_len)?;
        block_on(bus.publish_with(subject, payload, options))
    }
}

/// Attributes and headers of a message for `busbar_publish_with`. Zero-initialise it
/// (`busbar_publish_options opts = {0};`): a NULL field keeps the bus's default (a new
/// id, type `busbar.event`, no content type, ...). Every string is borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_publish_options {
    /// CloudEvents `id` (keep it when retrying, so a durable stream stores it once).
    pub id: *const c_char,
    /// CloudEvents `type`.
    pub event_type: *const c_char,
    /// CloudEvents `datacontenttype`.
    pub content_type: *const c_char,
    /// `correlationid`.
    pub correlation_id: *const c_char,
    /// `classification`, e.g. `"phi,pii"`, read by the policy layer.
    pub classification: *const c_char,
    /// W3C `traceparent`.
    pub traceparent: *const c_char,
    /// W3C `tracestate`.
    pub tracestate: *const c_char,
    /// `headers_len` user headers (NULL when 0).
    pub headers: *const busbar_header,
    /// How many headers `headers` holds.
    pub headers_len: usize,
}

/// As `busbar_publish`, with the attributes and headers of `options` (NULL: none).
#[no_mangle]
pub extern "C" fn busbar_publish_with(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    options: *const busbar_publish_options,
) -> busbar_status {
    ffi_boundary! {
        let (bus, subject, payload) = publish_args(bus, subject, data, len)?;
        // SAFETY: NULL or a pointer to one options struct (header contract).
        let options = publish_options(unsafe { options.as_ref() })?;
        block_on(bus.publish_with(subject, payload, options))
    }
}

/// The checked bus, subject and payload (copied) of a publish.
pub(crate) fn publish_args<'a>(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
) -> Result<(&'a Arc<dyn EventBus>, &'a str, Payload)> {
    Ok((
        &handle(bus, "bus")?.bus,
        str_arg(subject, "subject")?,
        Payload::bytes(Bytes::copy_from_slice(array_arg(data, len, "data")?)),
    ))
}

/// The C `headers` (each checked for NULL and UTF-8); `None` when there are none.
pub(crate) fn headers_arg(headers: *const busbar_header, len: usize) -> Result<Option<Headers>> {
    let headers = array_arg(headers, len, "headers")?;
    if headers.is_empty() {
        return Ok(None);
    }
    let mut out = Headers::new();
    for (i, h) in headers.iter().enumerate() {
        out.insert(
            str_arg(h.name, &format!("headers[{i}].name"))?.to_owned(),
            str_arg(h.value, &format!("headers[{i}].value"))?.to_owned(),
        );
    }
    Ok(Some(out))
}

/// Core's options for `options`; every non-NULL string checked for UTF-8.
fn publish_options(options: Option<&busbar_publish_options>) -> Result<PublishOptions> {
    let mut out = PublishOptions::new();
    let Some(o) = options else {
        return Ok(out);
    };
    let text = |ptr: *const c_char, what: &str| -> Result<Option<String>> {
        if ptr.is_null() {
            return Ok(None);
        }
        Ok(Some(str_arg(ptr, what)?.to_owned()))
    };
    out.id = text(o.id, "options.id")?;
    out.event_type = text(o.event_type, "options.event_type")?;
    out.content_type = text(o.content_type, "options.content_type")?;
    out.correlation_id = text(o.correlation_id, "options.correlation_id")?;
    out.classification = text(o.classification, "options.classification")?;
    out.traceparent = text(o.traceparent, "options.traceparent")?;
    out.tracestate = text(o.tracestate, "options.tracestate")?;
    out.headers = headers_arg(o.headers, o.headers_len)?;
    Ok(out)
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
