//! `busbar_bus`: connect, publish, subscribe, request, flush, close.

use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use busbar_core::policy::{PolicyBus, Principal, SubscribeOptions};
use busbar_core::{
    next_connection_event, Bytes, ConnectionEvent, ConnectionState, EventBus, Headers, Payload,
    PublishOptions, Result,
};
use tokio::task::JoinHandle;

use crate::args::{array_arg, handle, out, str_arg, timeout_arg};
use crate::error::busbar_status;
use crate::message::busbar_message;
use crate::runtime::{block_on, RUNTIME};
use crate::subscription::busbar_subscription;
use crate::userdata::{busbar_userdata_drop, Userdata};

/// A connected bus. Opaque; owned by the caller, free with `busbar_bus_free`. Thread-safe:
/// any number of threads may use one bus at once.
pub struct busbar_bus {
    pub(crate) bus: Arc<dyn EventBus>,
    /// The same bus as its policy layer, when the configuration asked for one.
    policy: Option<Arc<PolicyBus>>,
    /// The task handing connection events to a C callback, if one is registered.
    pub(crate) events: Mutex<Option<JoinHandle<()>>>,
}

impl busbar_bus {
    pub(crate) fn new(connected: busbar_core::Connected) -> Self {
        busbar_bus {
            bus: connected.bus,
            policy: connected.policy,
            events: Mutex::new(None),
        }
    }

    /// The policy layer, or `invalid_argument` naming `call` and how to get one.
    pub(crate) fn policy(&self, call: &str) -> Result<&Arc<PolicyBus>> {
        self.policy.as_ref().ok_or_else(|| {
            busbar_core::Error::InvalidArgument(format!(
                "{call} needs the policy layer: connect with policy, key_ring, encryption, audit_log, principal or roles"
            ))
        })
    }
}

/// Who a policy call acts as (`busbar_bus_subscribe_as`, `busbar_bus_request_as`): a name
/// recorded in the audit log and roles, granted classes by the policy. Borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_principal {
    /// The principal's name.
    pub name: *const c_char,
    /// `roles_len` role names (NULL when 0).
    pub roles: *const *const c_char,
    /// How many roles `roles` holds.
    pub roles_len: usize,
}

/// Filters and group of `busbar_bus_subscribe_as`. Zero-initialise it: a NULL or 0 field
/// filters nothing. Borrowed for the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_subscribe_as_options {
    /// Subscribe as one member of this queue group; NULL: none.
    pub queue_group: *const c_char,
    /// Receive only messages carrying one of these `classes_len` classes (NULL when 0).
    pub classes: *const *const c_char,
    /// How many classes `classes` holds.
    pub classes_len: usize,
    /// Receive only messages whose user headers have all of these `headers_len` values.
    pub headers: *const busbar_header,
    /// How many headers `headers` holds.
    pub headers_len: usize,
}

/// Counters of a bus's policy layer (`busbar_bus_policy_stats`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_policy_stats {
    /// Messages published through it.
    pub published: u64,
    /// Of those, messages whose fields or payload were encrypted.
    pub encrypted: u64,
    /// Messages delivered to policy subscriptions.
    pub delivered: u64,
    /// Of those, deliveries in which a field was masked.
    pub masked: u64,
    /// Classified messages not delivered because they could not be masked.
    pub withheld: u64,
    /// Subscriptions refused with `forbidden`.
    pub denied: u64,
    /// Messages that failed to decrypt.
    pub crypto_errors: u64,
    /// Messages skipped by a class or header filter.
    pub filtered: u64,
    /// Reply-inbox messages a wildcard subscription matched and did not receive.
    pub inbox_skipped: u64,
}

/// What `busbar_bus_verify_audit` found.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_audit_report {
    /// Whether the log is intact.
    pub ok: bool,
    /// Records read.
    pub records: u64,
    /// Problems found (`busbar audit verify` on the command line lists them).
    pub problems: u64,
}

/// The C strings of an array as Rust strings.
fn texts_arg(items: *const *const c_char, len: usize, what: &str) -> Result<Vec<String>> {
    array_arg(items, len, what)?
        .iter()
        .enumerate()
        .map(|(i, p)| Ok(str_arg(*p, &format!("{what}[{i}]"))?.to_owned()))
        .collect()
}

pub(crate) fn principal_arg(principal: *const busbar_principal) -> Result<Principal> {
    let p = handle(principal, "principal")?;
    let roles = texts_arg(p.roles, p.roles_len, "principal.roles")?;
    Ok(Principal::new(str_arg(p.name, "principal.name")?, roles))
}

/// Subscribes to `pattern` as `principal` under the bus's policy, as
/// `busbar_bus_subscribe`: `BUSBAR_FORBIDDEN` where no role may read; with `options`
/// (NULL: none), only messages carrying one of its classes and all of its header values
/// are delivered, each masked for the principal. `invalid_argument` on a bus without a
/// policy layer. Owned: free `*subscription` with `busbar_subscription_free`.
#[no_mangle]
pub extern "C" fn busbar_bus_subscribe_as(
    bus: *const busbar_bus,
    principal: *const busbar_principal,
    pattern: *const c_char,
    options: *const busbar_subscribe_as_options,
    subscription: *mut *mut busbar_subscription,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(subscription, ptr::null_mut(), "subscription")?;
        let this = handle(bus, "bus")?;
        let who = principal_arg(principal)?;
        let pattern = str_arg(pattern, "pattern")?;
        let mut opts = SubscribeOptions::new();
        // SAFETY: NULL or a pointer to one options struct (header contract).
        if let Some(o) = unsafe { options.as_ref() } {
            if !o.queue_group.is_null() {
                opts = opts.queue_group(str_arg(o.queue_group, "options.queue_group")?);
            }
            for class in texts_arg(o.classes, o.classes_len, "options.classes")? {
                opts = opts.class(&class);
            }
            for (name, value) in headers_arg(o.headers, o.headers_len)?.unwrap_or_default() {
                opts = opts.header(&name, &value);
            }
        }
        let policy = this.policy("busbar_bus_subscribe_as")?;
        *slot = busbar_subscription::boxed(block_on(policy.subscribe_with(&who, pattern, opts))?);
        Ok(())
    }
}

/// `busbar_bus_request_with` as `principal` under the bus's policy: the reply is masked
/// for the principal; `BUSBAR_FORBIDDEN` where no role may read the subject.
/// `invalid_argument` on a bus without a policy layer.
/// Owned: free `*reply` with `busbar_message_free`.
#[no_mangle]
pub extern "C" fn busbar_bus_request_as(
    bus: *const busbar_bus,
    principal: *const busbar_principal,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    options: *const busbar_publish_options,
    timeout_ms: u64,
    reply: *mut *mut busbar_message,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(reply, ptr::null_mut(), "reply")?;
        let this = handle(bus, "bus")?;
        let who = principal_arg(principal)?;
        let (_, subject, payload) = publish_args(bus, subject, data, len)?;
        // SAFETY: NULL or a pointer to one options struct (header contract).
        let options = publish_options(unsafe { options.as_ref() })?;
        let timeout = timeout_arg(timeout_ms).unwrap_or(Duration::MAX);
        let policy = this.policy("busbar_bus_request_as")?;
        let request = options.build(policy.message(subject), payload)?;
        *slot = busbar_message::boxed(block_on(policy.request_as(&who, request, timeout))?);
        Ok(())
    }
}

/// Sets `*stats` to the counters of the bus's policy layer; `invalid_argument` on a bus
/// without one.
#[no_mangle]
pub extern "C" fn busbar_bus_policy_stats(
    bus: *const busbar_bus,
    stats: *mut busbar_policy_stats,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(stats, busbar_policy_stats::default(), "stats")?;
        let s = handle(bus, "bus")?.policy("busbar_bus_policy_stats")?.policy_stats();
        *slot = busbar_policy_stats {
            published: s.published,
            encrypted: s.encrypted,
            delivered: s.delivered,
            masked: s.masked,
            withheld: s.withheld,
            denied: s.denied,
            crypto_errors: s.crypto_errors,
            filtered: s.filtered,
            inbox_skipped: s.inbox_skipped,
        };
        Ok(())
    }
}

/// Verifies the bus's audit log (its hash chain and head) and sets `*report`;
/// `invalid_argument` on a bus without an audit log.
#[no_mangle]
pub extern "C" fn busbar_bus_verify_audit(
    bus: *const busbar_bus,
    report: *mut busbar_audit_report,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(report, busbar_audit_report::default(), "report")?;
        let policy = handle(bus, "bus")?.policy("busbar_bus_verify_audit")?;
        let log = policy.audit_log().ok_or_else(|| {
            busbar_core::Error::InvalidArgument("busbar_bus_verify_audit needs an audit log: connect with audit_log".into())
        })?;
        let r = log.verify()?;
        *slot = busbar_audit_report {
            ok: r.is_ok(),
            records: r.records as u64,
            problems: r.problems.len() as u64,
        };
        Ok(())
    }
}

/// What happened to a bus's connection to its server (`busbar_bus_connection_events`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum busbar_connection_event {
    /// (Re)connected to a server.
    BUSBAR_EVENT_CONNECTED = 0,
    /// Lost the connection; the client reconnects by itself. Messages in flight may be lost.
    BUSBAR_EVENT_DISCONNECTED = 1,
    /// The server is shutting down gracefully and asks clients to move.
    BUSBAR_EVENT_LAME_DUCK = 2,
    /// The connection is draining before it closes.
    BUSBAR_EVENT_DRAINING = 3,
    /// The connection is closed for good.
    BUSBAR_EVENT_CLOSED = 4,
    /// The client could not keep up and the server or client dropped messages.
    BUSBAR_EVENT_SLOW_CONSUMER = 5,
    /// The server reported an error (`detail` says which).
    BUSBAR_EVENT_SERVER_ERROR = 6,
    /// The client hit an error of its own (`detail` says which), or events were missed.
    BUSBAR_EVENT_CLIENT_ERROR = 7,
    /// The circuit breaker of requests to a subject opened (`detail` is the subject).
    BUSBAR_EVENT_CIRCUIT_OPEN = 8,
    /// A breaker's cool-down ended: one probe request goes through (`detail`: the subject).
    BUSBAR_EVENT_CIRCUIT_HALF_OPEN = 9,
    /// The probe succeeded: requests to the subject go through again (`detail`: the subject).
    BUSBAR_EVENT_CIRCUIT_CLOSED = 10,
}

impl busbar_connection_event {
    fn of(event: &ConnectionEvent) -> Self {
        use busbar_connection_event::*;
        match event {
            ConnectionEvent::Connected => BUSBAR_EVENT_CONNECTED,
            ConnectionEvent::Disconnected => BUSBAR_EVENT_DISCONNECTED,
            ConnectionEvent::LameDuckMode => BUSBAR_EVENT_LAME_DUCK,
            ConnectionEvent::Draining => BUSBAR_EVENT_DRAINING,
            ConnectionEvent::Closed => BUSBAR_EVENT_CLOSED,
            ConnectionEvent::SlowConsumer => BUSBAR_EVENT_SLOW_CONSUMER,
            ConnectionEvent::ServerError(_) => BUSBAR_EVENT_SERVER_ERROR,
            ConnectionEvent::CircuitOpen(_) => BUSBAR_EVENT_CIRCUIT_OPEN,
            ConnectionEvent::CircuitHalfOpen(_) => BUSBAR_EVENT_CIRCUIT_HALF_OPEN,
            ConnectionEvent::CircuitClosed(_) => BUSBAR_EVENT_CIRCUIT_CLOSED,
            // ClientError, and any kind core adds later.
            _ => BUSBAR_EVENT_CLIENT_ERROR,
        }
    }
}

/// Called with each connection event of a bus (see `busbar_bus_connection_events`).
/// `kind` is also `busbar_connection_event_kind`'s word; `detail` (borrowed, valid only
/// during the call) is the server's or client's message of an error event, else NULL.
/// Runs on a busbar runtime worker thread, one call at a time.
pub type busbar_connection_callback = Option<
    unsafe extern "C" fn(userdata: *mut c_void, event: busbar_connection_event, detail: *const c_char),
>;

/// Calls `callback(userdata, event, detail)` with every change of the bus's connection from
/// now on (disconnected, reconnected, slow consumer, lame duck, server error), on a
/// runtime worker thread, until the bus is freed; then `drop(userdata)` is called once,
/// if `drop` is not NULL. A bus without a connection (the in-memory bus) has no event:
/// `drop` is called at once. `invalid_argument` when a callback is already registered.
#[no_mangle]
pub extern "C" fn busbar_bus_connection_events(
    bus: *const busbar_bus,
    callback: busbar_connection_callback,
    userdata: *mut c_void,
    drop: busbar_userdata_drop,
) -> busbar_status {
    ffi_boundary! {
        let this = handle(bus, "bus")?;
        let call = callback.ok_or_else(|| crate::args::null("callback"))?;
        let userdata = Userdata::new(userdata, drop);
        let mut task = this.events.lock().unwrap_or_else(|p| p.into_inner());
        if task.is_some() {
            return Err(busbar_core::Error::InvalidArgument(
                "the bus already has a connection events callback".into(),
            ));
        }
        let Some(mut events) = this.bus.connection_events() else {
            return Ok(()); // no connection: `userdata` is released here
        };
        *task = Some(RUNTIME.spawn(async move {
            while let Some(event) = next_connection_event(&mut events).await {
                let detail = event.detail().map(|d| CString::new(d.replace('\0', "\\0")).unwrap_or_default());
                let detail_ptr = detail.as_ref().map_or(ptr::null(), |d| d.as_ptr());
                // SAFETY: the C caller's function, with its userdata, as documented.
                unsafe { call(userdata.ptr(), busbar_connection_event::of(&event), detail_ptr) }
            }
        }));
        Ok(())
    }
}

/// The stable word of a connection event (`"disconnected"`, `"lame_duck"`, ...), the one
/// every language uses. Borrowed: a static string, never NULL.
#[no_mangle]
pub extern "C" fn busbar_connection_event_kind(event: busbar_connection_event) -> *const c_char {
    ffi_boundary!(@or c"client_error".as_ptr() => {
        use busbar_connection_event::*;
        let kind: &CStr = match event {
            BUSBAR_EVENT_CONNECTED => c"connected",
            BUSBAR_EVENT_DISCONNECTED => c"disconnected",
            BUSBAR_EVENT_LAME_DUCK => c"lame_duck",
            BUSBAR_EVENT_DRAINING => c"draining",
            BUSBAR_EVENT_CLOSED => c"closed",
            BUSBAR_EVENT_SLOW_CONSUMER => c"slow_consumer",
            BUSBAR_EVENT_SERVER_ERROR => c"server_error",
            BUSBAR_EVENT_CLIENT_ERROR => c"client_error",
            BUSBAR_EVENT_CIRCUIT_OPEN => c"circuit_open",
            BUSBAR_EVENT_CIRCUIT_HALF_OPEN => c"circuit_half_open",
            BUSBAR_EVENT_CIRCUIT_CLOSED => c"circuit_closed",
        };
        kind.as_ptr()
    })
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
pub extern "C" fn busbar_bus_publish(
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

/// Attributes and headers of a message for `busbar_bus_publish_with`. Zero-initialise it
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

/// As `busbar_bus_publish`, with the attributes and headers of `options` (NULL: none).
#[no_mangle]
pub extern "C" fn busbar_bus_publish_with(
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

/// One message of `busbar_bus_publish_batch`: what `busbar_bus_publish_with` takes, borrowed for
/// the call.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct busbar_publish_item {
    /// The subject to publish to.
    pub subject: *const c_char,
    /// `len` bytes of payload (copied; NULL when `len` is 0).
    pub data: *const u8,
    /// How many bytes `data` holds.
    pub len: usize,
    /// Attributes and headers (NULL: none), as for `busbar_bus_publish_with`.
    pub options: *const busbar_publish_options,
}

/// Publishes the `count` messages at `items` in order, in one call (one crossing into
/// the library for a burst), each as `busbar_bus_publish_with` would. Stops at the first
/// message that fails and returns its status; `*published` (when not NULL) is set to how
/// many were published before it, so `items + *published` is the one that failed and
/// those after it were not tried. Every item is checked (NULL, UTF-8) before any is
/// published: a bad argument publishes nothing.
#[no_mangle]
pub extern "C" fn busbar_bus_publish_batch(
    bus: *const busbar_bus,
    items: *const busbar_publish_item,
    count: usize,
    published: *mut usize,
) -> busbar_status {
    ffi_boundary! {
        let published = match published.is_null() {
            true => None,
            false => Some(out(published, 0, "published")?),
        };
        let bus = &handle(bus, "bus")?.bus;
        let items = array_arg(items, count, "items")?;
        let mut batch = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            // Names the item only on error: no text is formatted per message.
            let at = |e: busbar_core::Error| match e {
                busbar_core::Error::InvalidArgument(m) => {
                    busbar_core::Error::InvalidArgument(format!("items[{i}].{m}"))
                }
                other => other,
            };
            let subject = str_arg(item.subject, "subject").map_err(at)?;
            let data = array_arg(item.data, item.len, "data").map_err(at)?;
            // SAFETY: NULL or a pointer to one options struct (header contract).
            let options = publish_options(unsafe { item.options.as_ref() }).map_err(at)?;
            batch.push((subject, Payload::bytes(Bytes::copy_from_slice(data)), options));
        }
        let (done, result) = block_on(busbar_core::publish_batch(bus.as_ref(), batch));
        if let Some(slot) = published {
            *slot = done;
        }
        result
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
pub(crate) fn publish_options(options: Option<&busbar_publish_options>) -> Result<PublishOptions> {
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
pub extern "C" fn busbar_bus_subscribe(
    bus: *const busbar_bus,
    pattern: *const c_char,
    subscription: *mut *mut busbar_subscription,
) -> busbar_status {
    ffi_boundary! { subscribe_with(bus, pattern, None, subscription) }
}

/// As `busbar_bus_subscribe`, as one member of queue group `group` (borrowed): each message
/// goes to one member of the group.
#[no_mangle]
pub extern "C" fn busbar_bus_queue_subscribe(
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
pub extern "C" fn busbar_bus_request(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    timeout_ms: u64,
    reply: *mut *mut busbar_message,
) -> busbar_status {
    ffi_boundary! { request_with(bus, subject, data, len, None, timeout_ms, reply) }
}

/// As `busbar_bus_request`, with the attributes and headers of `options` (borrowed for the
/// call; NULL: none). Its `id`, when set, is the request's id, which the reply echoes as
/// its `correlationid`.
#[no_mangle]
pub extern "C" fn busbar_bus_request_with(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    options: *const busbar_publish_options,
    timeout_ms: u64,
    reply: *mut *mut busbar_message,
) -> busbar_status {
    // SAFETY: NULL or a pointer to one options struct (header contract).
    ffi_boundary! { request_with(bus, subject, data, len, unsafe { options.as_ref() }, timeout_ms, reply) }
}

fn request_with(
    bus: *const busbar_bus,
    subject: *const c_char,
    data: *const u8,
    len: usize,
    options: Option<&busbar_publish_options>,
    timeout_ms: u64,
    reply: *mut *mut busbar_message,
) -> Result<()> {
    let slot = out(reply, ptr::null_mut(), "reply")?;
    let (bus, subject, payload) = publish_args(bus, subject, data, len)?;
    let options = publish_options(options)?;
    let timeout = timeout_arg(timeout_ms).unwrap_or(Duration::MAX);
    *slot = busbar_message::boxed(block_on(bus.request_with(subject, payload, options, timeout))?);
    Ok(())
}

/// Returns once everything published before has reached the bus (on NATS: after a round
/// trip through the server).
#[no_mangle]
pub extern "C" fn busbar_bus_flush(bus: *const busbar_bus) -> busbar_status {
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

/// Ends the bus gracefully (nats-py's and nats.js's `drain`): waits until everything
/// published before has reached the bus, then closes it as `busbar_bus_close`.
#[no_mangle]
pub extern "C" fn busbar_bus_drain(bus: *const busbar_bus) -> busbar_status {
    ffi_boundary! { block_on(handle(bus, "bus")?.bus.drain()) }
}

/// Where a bus stands with its server (see `busbar_bus_health`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum busbar_connection_state {
    /// Connected (the in-memory bus always is, until closed).
    #[default]
    BUSBAR_STATE_CONNECTED = 0,
    /// Not connected now; the client is reconnecting.
    BUSBAR_STATE_DISCONNECTED = 1,
    /// Closed by `busbar_close`.
    BUSBAR_STATE_CLOSED = 2,
}

/// A bus's health now (see `busbar_bus_health`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct busbar_health {
    /// Connection state.
    pub state: busbar_connection_state,
    /// Whether the bus can carry traffic now (connected): what `/readyz` answers.
    pub ready: bool,
    /// Requests (and flushes) waiting for their reply now.
    pub pending_requests: u64,
    /// Live subscriptions.
    pub subscriptions: u64,
    /// Of those, subscriptions that missed messages since they last caught up.
    pub lagging_subscriptions: u64,
    /// Request circuits open or half-open now (0 when the breaker is off); their subjects
    /// are in `busbar_bus_health_json`'s `open_circuit_subjects`.
    pub open_circuits: u64,
}

/// Sets `*health` to the bus's health now; when `last_error` is not NULL, sets
/// `*last_error` to the last error the connection reported, or NULL when there was none.
/// Owned: free `*last_error` with `busbar_string_free`. Works after close too.
#[no_mangle]
pub extern "C" fn busbar_bus_health(
    bus: *const busbar_bus,
    health: *mut busbar_health,
    last_error: *mut *mut c_char,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(health, busbar_health::default(), "health")?;
        let h = handle(bus, "bus")?.bus.health();
        *slot = busbar_health {
            state: match h.state {
                ConnectionState::Connected => busbar_connection_state::BUSBAR_STATE_CONNECTED,
                ConnectionState::Closed => busbar_connection_state::BUSBAR_STATE_CLOSED,
                _ => busbar_connection_state::BUSBAR_STATE_DISCONNECTED,
            },
            ready: h.ready(),
            pending_requests: h.pending_requests,
            subscriptions: h.subscriptions,
            lagging_subscriptions: h.lagging_subscriptions,
            open_circuits: h.open_circuits,
        };
        if !last_error.is_null() {
            // SAFETY: checked non-NULL; the caller passes a writable `char **` (header contract).
            unsafe { *last_error = h.last_error.map_or(ptr::null_mut(), owned_string) };
        }
        Ok(())
    }
}

/// Sets `*text` to the bus's metrics as OpenMetrics text, the format Prometheus scrapes
/// (docs/guide/observability.md lists the series). Owned: free it with
/// `busbar_string_free`. Works after close too.
#[no_mangle]
pub extern "C" fn busbar_bus_metrics(bus: *const busbar_bus, text: *mut *mut c_char) -> busbar_status {
    ffi_boundary! {
        let slot = out(text, ptr::null_mut(), "text")?;
        *slot = owned_string(handle(bus, "bus")?.bus.metrics());
        Ok(())
    }
}

/// Asks every service (or those named `name`; NULL: all) for `verb` (`"PING"`, `"INFO"` or
/// `"STATS"`; NULL: `"PING"`) and sets `*json` to a JSON array of the answers that arrived
/// within `wait_ms` (each the NATS services protocol's JSON): busbar services in any
/// language and any other NATS service alike. Owned: free it with `busbar_string_free`.
#[no_mangle]
pub extern "C" fn busbar_bus_discover(
    bus: *const busbar_bus,
    verb: *const c_char,
    name: *const c_char,
    wait_ms: u64,
    json: *mut *mut c_char,
) -> busbar_status {
    ffi_boundary! {
        let slot = out(json, ptr::null_mut(), "json")?;
        let this = handle(bus, "bus")?;
        let verb = if verb.is_null() { None } else { Some(str_arg(verb, "verb")?) };
        let verb = busbar_core::service::Verb::parse_or_default(verb)?;
        let name = if name.is_null() { None } else { Some(str_arg(name, "name")?) };
        let wait = std::time::Duration::from_millis(wait_ms);
        let found = block_on(busbar_core::service::discover(&*this.bus, verb, name, wait))?;
        *slot = owned_string(serde_json::Value::Array(found).to_string());
        Ok(())
    }
}

/// Sets `*json` to the bus's health as the JSON object `/healthz` answers (`state`,
/// `ready`, `last_error`, `pending_requests`, `subscriptions`, `lagging_subscriptions`,
/// `open_circuits`, `open_circuit_subjects`: the subjects of the first 100 open request
/// circuits). Owned: free it with `busbar_string_free`. Works after close too.
#[no_mangle]
pub extern "C" fn busbar_bus_health_json(bus: *const busbar_bus, json: *mut *mut c_char) -> busbar_status {
    ffi_boundary! {
        let slot = out(json, ptr::null_mut(), "json")?;
        *slot = owned_string(handle(bus, "bus")?.bus.health().to_json());
        Ok(())
    }
}

/// Frees a string busbar handed over as owned (`busbar_bus_metrics`,
/// `busbar_bus_health_json`, `busbar_bus_health`'s last error). `NULL` does nothing.
#[no_mangle]
pub extern "C" fn busbar_string_free(text: *mut c_char) {
    ffi_boundary!(@or () => {
        if !text.is_null() {
            // SAFETY: made by `CString::into_raw` in `owned_string`, freed once (header contract).
            drop(unsafe { CString::from_raw(text) });
        }
    })
}

/// `text` as an owned C string (an interior NUL, which busbar's texts never hold, cuts it).
fn owned_string(text: String) -> *mut c_char {
    let mut bytes = text.into_bytes();
    if let Some(nul) = bytes.iter().position(|&b| b == 0) {
        bytes.truncate(nul);
    }
    CString::new(bytes).map_or(ptr::null_mut(), CString::into_raw)
}

/// Closes the bus: subscriptions end after what they hold, pending requests fail with
/// `closed`, and every later call on the bus returns `BUSBAR_CLOSED`. Closing twice is
/// fine. The handle stays valid until `busbar_bus_free`.
#[no_mangle]
pub extern "C" fn busbar_bus_close(bus: *const busbar_bus) -> busbar_status {
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
            let events = bus.events.into_inner().unwrap_or_else(|p| p.into_inner());
            if let Some(task) = events {
                // Ends the event callback; its userdata is released before this returns.
                task.abort();
                let _ = block_on(task);
            }
        }
    })
}
