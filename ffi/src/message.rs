//! `busbar_message`: a received message (or a reply) and its accessors.
//!
//! The handle wraps core's `Message` plus its text fields as C strings, made once on first
//! use, and, for a delivery of a durable subscription, core's `DurableMessage` (settled
//! with `busbar_message_ack`/`_nak`/`_term`, see `durable.rs`). It is opaque, so such
//! fields are added without changing the ABI.

use std::ffi::{c_char, CString};
use std::ptr;
use std::sync::{Arc, OnceLock};

use busbar_core::{Bytes, DurableMessage, Error, Message, Payload, Result};

use crate::args::{array_arg, handle, out, str_arg};
use crate::bus::{busbar_publish_options, publish_options};
use crate::error::busbar_status;
use crate::runtime::block_on;

/// A message. Opaque; read it with the `busbar_message_*` accessors. Received ones are
/// either borrowed (the `message` argument of a callback) or owned (from
/// `busbar_subscription_next`, `busbar_bus_request`, `busbar_message_clone`): free those
/// with `busbar_message_free`. Safe to read from several threads at once.
pub struct busbar_message {
    msg: Message,
    /// The delivery of a durable subscription this message is (shared by its clones, so
    /// settling through any of them settles it once); `None` for a plain message.
    durable: Option<Arc<DurableMessage>>,
    text: OnceLock<Text>,
}

/// The text fields as C strings, so accessors can hand out borrowed `const char *`.
struct Text {
    subject: CString,
    id: CString,
    source: CString,
    event_type: CString,
    content_type: Option<CString>,
    correlation_id: Option<CString>,
    classification: Option<CString>,
    traceparent: Option<CString>,
    tracestate: Option<CString>,
    keyid: Option<CString>,
    reply_to: Option<CString>,
    /// The stream of a durable message.
    stream: Option<CString>,
    /// In core's order (sorted by name).
    headers: Vec<(CString, CString)>,
}

fn c_string(field: &str, value: &str) -> Result<CString> {
    CString::new(value).map_err(|_| {
        Error::Decode(format!(
            "message {field} {value:?} contains a NUL byte, which C strings cannot hold"
        ))
    })
}

impl busbar_message {
    pub(crate) fn new(msg: Message) -> Self {
        busbar_message {
            msg,
            durable: None,
            text: OnceLock::new(),
        }
    }

    pub(crate) fn boxed(msg: Message) -> *mut busbar_message {
        Box::into_raw(Box::new(Self::new(msg)))
    }

    /// A handle on a delivery of a durable subscription.
    pub(crate) fn boxed_durable(durable: DurableMessage) -> *mut busbar_message {
        Box::into_raw(Box::new(busbar_message {
            msg: durable.message().clone(),
            durable: Some(Arc::new(durable)),
            text: OnceLock::new(),
        }))
    }

    /// The durable delivery behind this message, or `invalid_argument` naming `what` the
    /// caller tried (`busbar_message_ack`, ...) for a plain message.
    pub(crate) fn durable(&self, what: &str) -> Result<&DurableMessage> {
        self.durable.as_deref().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{what} needs a message from a durable subscription; message {} on {:?} was not delivered by one",
                self.msg.id(),
                self.msg.subject()
            ))
        })
    }

    fn text(&self) -> Result<&Text> {
        if let Some(text) = self.text.get() {
            return Ok(text);
        }
        let m = &self.msg;
        let optional = |field, v: Option<&str>| v.map(|v| c_string(field, v)).transpose();
        let text = Text {
            subject: c_string("subject", m.subject())?,
            id: c_string("id", m.id())?,
            source: c_string("source", m.source())?,
            event_type: c_string("type", m.event_type())?,
            content_type: optional("content_type", m.content_type())?,
            correlation_id: optional("correlation_id", m.correlation_id())?,
            classification: optional("classification", m.classification())?,
            traceparent: optional("traceparent", m.traceparent())?,
            tracestate: optional("tracestate", m.tracestate())?,
            keyid: optional("keyid", m.keyid())?,
            reply_to: optional("reply_to", m.reply_to())?,
            stream: optional("stream", self.durable.as_deref().map(DurableMessage::stream))?,
            headers: m
                .headers()
                .iter()
                .map(|(k, v)| Ok((c_string("header name", k)?, c_string("header value", v)?)))
                .collect::<Result<_>>()?,
        };
        Ok(self.text.get_or_init(|| text))
    }
}

/// Reads one text field of `message` into `*out`.
fn text_field(
    message: *const busbar_message,
    out_ptr: *mut *const c_char,
    field: impl FnOnce(&Text) -> Option<&CString>,
) -> Result<()> {
    let slot = out(out_ptr, ptr::null(), "out")?;
    let text = handle(message, "message")?.text()?;
    *slot = field(text).map_or(ptr::null(), |s| s.as_ptr());
    Ok(())
}

/// Sets `*out` to the subject the message was published to.
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_subject(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| Some(&t.subject)) }
}

/// Sets `*out` to the message's CloudEvents `id` (unique per event).
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_id(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| Some(&t.id)) }
}

/// Sets `*out` to the message's CloudEvents `source`.
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_source(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| Some(&t.source)) }
}

/// Sets `*out` to the message's CloudEvents `type`.
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_event_type(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| Some(&t.event_type)) }
}

/// Sets `*out` to the message's `correlationid` (a reply echoes its request's), or to
/// NULL when it has none. Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_correlation_id(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.correlation_id.as_ref()) }
}

/// Sets `*out` to the message's CloudEvents `datacontenttype` (`application/json`, ...),
/// or to NULL when it has none. Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_content_type(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.content_type.as_ref()) }
}

/// Sets `*out` to the message's `classification` (`"phi,pii"`), or to NULL when it has
/// none. Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_classification(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.classification.as_ref()) }
}

/// Sets `*out` to the message's W3C `traceparent`, or to NULL when it has none.
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_traceparent(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.traceparent.as_ref()) }
}

/// Sets `*out` to the message's W3C `tracestate`, or to NULL when it has none.
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_tracestate(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.tracestate.as_ref()) }
}

/// Sets `*out` to the `keyid` of the key that sealed the message's protected fields, or
/// to NULL when nothing in it is sealed. Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_keyid(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.keyid.as_ref()) }
}

/// Sets `*time_ms` to the message's CloudEvents `time`, in milliseconds since the Unix
/// epoch (negative before 1970).
#[no_mangle]
pub extern "C" fn busbar_message_time_ms(message: *const busbar_message, time_ms: *mut i64) -> busbar_status {
    ffi_boundary! {
        let slot = out(time_ms, 0, "time_ms")?;
        let time = handle(message, "message")?.msg.time();
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        *slot = match time.duration_since(std::time::UNIX_EPOCH) {
            Ok(after) => ms(after),
            Err(before) => -ms(before.duration()),
        };
        Ok(())
    }
}

/// Sets `*out` to the subject a reply goes to (requests only), or to NULL.
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_reply_to(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.reply_to.as_ref()) }
}

/// Sets `*out` to the stream a durable message comes from, or to NULL for a message
/// that no durable subscription delivered. Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_stream(
    message: *const busbar_message,
    out: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! { text_field(message, out, |t| t.stream.as_ref()) }
}

/// Sets `*data` and `*len` to the payload (`*data` may be NULL when `*len` is 0).
/// Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_data(
    message: *const busbar_message,
    data: *mut *const u8,
    len: *mut usize,
) -> busbar_status {
    ffi_boundary! {
        let data = out(data, ptr::null(), "data")?;
        let len = out(len, 0, "len")?;
        let payload = handle(message, "message")?.msg.data();
        *data = payload.as_ptr();
        *len = payload.len();
        Ok(())
    }
}

/// Sets `*value` to the user header `name`, or to NULL when the message has no such
/// header (names are case-sensitive). Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_header(
    message: *const busbar_message,
    name: *const c_char,
    value: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! {
        let value = out(value, ptr::null(), "value")?;
        let name = str_arg(name, "header name")?;
        let text = handle(message, "message")?.text()?;
        if let Some((_, v)) = text.headers.iter().find(|(k, _)| k.as_bytes() == name.as_bytes()) {
            *value = v.as_ptr();
        }
        Ok(())
    }
}

/// Sets `*count` to the number of user headers.
#[no_mangle]
pub extern "C" fn busbar_message_header_count(
    message: *const busbar_message,
    count: *mut usize,
) -> busbar_status {
    ffi_boundary! {
        let count = out(count, 0, "count")?;
        *count = handle(message, "message")?.msg.headers().len();
        Ok(())
    }
}

/// Sets `*name` and `*value` to the user header at `index` (0 up to the count, sorted by
/// name); `invalid_argument` past the end. Borrowed: valid while `message` lives.
#[no_mangle]
pub extern "C" fn busbar_message_header_at(
    message: *const busbar_message,
    index: usize,
    name: *mut *const c_char,
    value: *mut *const c_char,
) -> busbar_status {
    ffi_boundary! {
        let name = out(name, ptr::null(), "name")?;
        let value = out(value, ptr::null(), "value")?;
        let text = handle(message, "message")?.text()?;
        let (k, v) = text.headers.get(index).ok_or_else(|| {
            Error::InvalidArgument(format!("header index {index} is past the last of {} headers", text.headers.len()))
        })?;
        *name = k.as_ptr();
        *value = v.as_ptr();
        Ok(())
    }
}

/// Answers a request with `len` bytes at `data` (copied; NULL allowed when `len` is 0).
/// The reply goes to the request's `reply_to` and echoes its `correlationid`.
/// `invalid_argument` for a message that is not a request; `closed` after the bus closed.
/// Blocks until the reply is handed to the bus.
#[no_mangle]
pub extern "C" fn busbar_message_respond(
    message: *const busbar_message,
    data: *const u8,
    len: usize,
) -> busbar_status {
    ffi_boundary! {
        let message = handle(message, "message")?;
        let data = Bytes::copy_from_slice(array_arg(data, len, "data")?);
        block_on(message.msg.respond(data))
    }
}

/// As `busbar_message_respond`, with the attributes and headers of `options` (borrowed for
/// the call; NULL: none): the reply still goes to the request's `reply_to` and echoes its
/// `correlationid` unless `options` sets another.
#[no_mangle]
pub extern "C" fn busbar_message_respond_with(
    message: *const busbar_message,
    data: *const u8,
    len: usize,
    options: *const busbar_publish_options,
) -> busbar_status {
    ffi_boundary! {
        let message = handle(message, "message")?;
        let payload = Payload::bytes(Bytes::copy_from_slice(array_arg(data, len, "data")?));
        // SAFETY: NULL or a pointer to one options struct (header contract).
        let reply = publish_options(unsafe { options.as_ref() })?.reply(&message.msg, payload)?;
        block_on(message.msg.respond_message(reply))
    }
}

/// Sets `*copy` to a new handle on the same message (no payload byte is copied), e.g. to
/// keep a message a callback borrowed. The copy of a durable message shares its
/// delivery: settling it through either handle settles it, once.
/// Owned: free with `busbar_message_free`.
#[no_mangle]
pub extern "C" fn busbar_message_clone(
    message: *const busbar_message,
    copy: *mut *mut busbar_message,
) -> busbar_status {
    ffi_boundary! {
        let copy = out(copy, ptr::null_mut(), "copy")?;
        let message = handle(message, "message")?;
        *copy = Box::into_raw(Box::new(busbar_message {
            msg: message.msg.clone(),
            durable: message.durable.clone(),
            text: OnceLock::new(),
        }));
        Ok(())
    }
}

/// Frees a message this library handed over as owned. `NULL` does nothing. Never free a
/// message a callback borrowed.
#[no_mangle]
pub extern "C" fn busbar_message_free(message: *mut busbar_message) {
    ffi_boundary!(@or () => {
        if !message.is_null() {
            // SAFETY: made by `Box::into_raw` in this library and freed once (header contract).
            drop(unsafe { Box::from_raw(message) });
        }
    })
}
