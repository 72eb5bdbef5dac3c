//! The C ABI of busbar: `libbusbar.so` / `libbusbar.a` and `include/busbar.h`.
//!
//! Every function translates C arguments into core calls and core results into a
//! [`busbar_status`]; no behaviour lives here (docs/design.md §1). The rules every entry point
//! keeps:
//! - its body runs inside [`ffi_boundary!`], so no panic crosses into C;
//! - NULL pointers, invalid UTF-8 and lengths that do not fit are errors, never crashes;
//! - a failure sets the thread's last error message ([`busbar_last_error`]);
//! - blocking calls run on one lazily created tokio runtime shared by every handle.
//!
//! Files, the same rooms as the Python and Node bindings: `lib` (connect, subject rules),
//! `args`, `error`, `runtime`, `config`, `bus`, `subscription`, `message`, `durable`;
//! plus, as rustls-ffi, `panic` (the boundary around every entry point) and `userdata`
//! (the `void *` handed back to callbacks and its drop function), jobs only C has.
//!
//! The handles are opaque: `busbar_config`, `busbar_bus`, `busbar_subscription`,
//! `busbar_durable_subscription` and `busbar_message`. What each function borrows and what the caller owns (and frees with
//! which `_free`) is written on the function.
#![allow(non_camel_case_types)]
// The C entry points check every pointer they dereference; their safety contract is the
// doc comment C callers read in busbar.h, not a Rust `unsafe fn` signature.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[macro_use]
mod panic;

mod args;
pub mod bus;
pub mod config;
pub mod durable;
pub mod error;
pub mod message;
mod runtime;
pub mod service;
pub mod subscription;
pub mod userdata;

use std::ffi::{c_char, c_int, c_void, CString};
use std::ptr;

use busbar_core::Result;

/// The version of the library that is loaded, `"major.minor.patch"`: compare it with the
/// header's `BUSBAR_VERSION` (the version compiled against).
///
/// Borrowed: a static string, never NULL, never to be freed.
#[no_mangle]
pub extern "C" fn busbar_version() -> *const c_char {
    ffi_boundary!(@or c"".as_ptr() => {
        concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
    })
}

pub use bus::*;
pub use config::*;
pub use durable::*;
pub use error::*;
pub use message::*;
pub use service::*;
pub use subscription::*;
pub use userdata::*;

use crate::args::{out, str_arg};
use crate::config::config_or_env;
use crate::runtime::block_on;
use crate::userdata::UserData;

fn connect_with(config: Result<busbar_core::Config>, out_bus: *mut *mut busbar_bus) -> Result<()> {
    let slot = out(out_bus, ptr::null_mut(), "bus")?;
    let connected = block_on(busbar_core::connect_parts(config?))?;
    *slot = Box::into_raw(Box::new(busbar_bus::new(connected)));
    Ok(())
}

/// Connects with `config` (borrowed, only for the call) and sets `*bus`. NULL means the
/// defaults overlaid with the `BUSBAR_*` environment: the in-memory bus unless
/// `BUSBAR_BACKEND` says otherwise. Blocks until connected (NATS).
/// Owned: free `*bus` with `busbar_bus_free`.
#[no_mangle]
pub extern "C" fn busbar_connect(config: *const busbar_config, bus: *mut *mut busbar_bus) -> busbar_status {
    ffi_boundary! { connect_with(config_or_env(config), bus) }
}

/// Connects with the `BUSBAR_*` environment overlaid by `json`, a JSON object of config
/// keys (`{"backend":"nats","nats_url":"nats://127.0.0.1:4222","max_payload":2048}`),
/// and sets `*bus`. Owned: free `*bus` with `busbar_bus_free`.
#[no_mangle]
pub extern "C" fn busbar_connect_json(json: *const c_char, bus: *mut *mut busbar_bus) -> busbar_status {
    ffi_boundary! { connect_with(str_arg(json, "json").and_then(busbar_core::Config::from_json), bus) }
}

/// The level of a log record (see `busbar_set_log_callback`), most severe first.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum busbar_log_level {
    /// No records (as the `max_level` of `busbar_set_log_callback`).
    BUSBAR_LOG_OFF = 0,
    /// Something failed: a crypto error, an audit record that could not be written.
    BUSBAR_LOG_ERROR = 1,
    /// An operator should look: a disconnect, a slow consumer, lag, a denial, a dead letter.
    BUSBAR_LOG_WARN = 2,
    /// A connection came up, a bus connected.
    BUSBAR_LOG_INFO = 3,
    /// Detail for debugging.
    BUSBAR_LOG_DEBUG = 4,
    /// More detail.
    BUSBAR_LOG_TRACE = 5,
}

/// Receives one log record of busbar: its level, its target (the busbar module,
/// `"busbar::..."`) and its message, both borrowed NUL-terminated strings valid only
/// during the call. Runs on whichever thread logs (often a runtime worker thread); it must
/// not block. Records never hold a payload or a protected value.
pub type busbar_log_callback = Option<
    unsafe extern "C" fn(
        userdata: *mut c_void,
        level: busbar_log_level,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// A registered log callback and its userdata, released when replaced.
struct LogCallback {
    call: unsafe extern "C" fn(*mut c_void, busbar_log_level, *const c_char, *const c_char),
    userdata: UserData,
}

/// Sends busbar's log records at `max_level` and above to `callback(userdata, level,
/// target, message)`, replacing any callback set before (whose `drop(userdata)` is then
/// called, if `drop` is not NULL, once no record is being handed to it). A NULL
/// `callback` (or `BUSBAR_LOG_OFF`) stops the records. `max_level` is a
/// `busbar_log_level`. Process-wide. `userdata` is released (by `drop`) when the call
/// fails too.
#[no_mangle]
pub extern "C" fn busbar_set_log_callback(
    callback: busbar_log_callback,
    userdata: *mut c_void,
    drop: busbar_userdata_drop,
    max_level: c_int,
) -> busbar_status {
    ffi_boundary! {
        use busbar_core::LogLevel;
        let level = match max_level {
            0 => None,
            1 => Some(LogLevel::Error),
            2 => Some(LogLevel::Warn),
            3 => Some(LogLevel::Info),
            4 => Some(LogLevel::Debug),
            5 => Some(LogLevel::Trace),
            other => {
                std::mem::drop(UserData::new(userdata, drop));
                return Err(busbar_core::Error::InvalidArgument(format!(
                    "max_level must be a busbar_log_level (0 to 5), not {other}"
                )));
            }
        };
        let userdata = UserData::new(userdata, drop);
        let sink: Option<busbar_core::LogSink> = match (callback, level) {
            (Some(call), Some(_)) => {
                let callback = LogCallback { call, userdata };
                Some(Box::new(move |level: LogLevel, target: &str, message: &str| {
                    let level = match level {
                        LogLevel::Error => busbar_log_level::BUSBAR_LOG_ERROR,
                        LogLevel::Warn => busbar_log_level::BUSBAR_LOG_WARN,
                        LogLevel::Info => busbar_log_level::BUSBAR_LOG_INFO,
                        LogLevel::Debug => busbar_log_level::BUSBAR_LOG_DEBUG,
                        LogLevel::Trace => busbar_log_level::BUSBAR_LOG_TRACE,
                    };
                    let target = CString::new(target.replace('\0', "")).unwrap_or_default();
                    let message = CString::new(message.replace('\0', "")).unwrap_or_default();
                    // SAFETY: the caller's function, called with its userdata and two strings
                    // valid for the call (header contract).
                    unsafe {
                        (callback.call)(callback.userdata.get(), level, target.as_ptr(), message.as_ptr())
                    }
                }))
            }
            _ => None,
        };
        busbar_core::set_log_sink(sink, level.unwrap_or(LogLevel::Error))
    }
}

/// Whether `pattern` matches `subject`, exactly as a NATS server decides. False when
/// either is NULL, not UTF-8, or invalid. Both strings are borrowed.
#[no_mangle]
pub extern "C" fn busbar_subject_matches(pattern: *const c_char, subject: *const c_char) -> bool {
    ffi_boundary!(@or false => {
        match (str_arg(pattern, "pattern"), str_arg(subject, "subject")) {
            (Ok(p), Ok(s)) => busbar_core::subject_matches(p, s),
            _ => false,
        }
    })
}

/// `BUSBAR_OK` when `subject` (borrowed) is a valid subject to publish to;
/// `BUSBAR_INVALID_SUBJECT` naming the rule it breaks otherwise (`invalid_argument` for
/// NULL or invalid UTF-8).
#[no_mangle]
pub extern "C" fn busbar_validate_subject(subject: *const c_char) -> busbar_status {
    ffi_boundary! { busbar_core::validate_subject(str_arg(subject, "subject")?) }
}

/// `BUSBAR_OK` when `pattern` (borrowed) is a valid subscription pattern (`*` tokens
/// anywhere, a `>` token last); `BUSBAR_INVALID_SUBJECT` otherwise.
#[no_mangle]
pub extern "C" fn busbar_validate_pattern(pattern: *const c_char) -> busbar_status {
    ffi_boundary! { busbar_core::validate_pattern(str_arg(pattern, "pattern")?) }
}
