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
pub mod subscription;
pub mod userdata;

use std::ffi::c_char;
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
pub use subscription::*;
pub use userdata::*;

use crate::args::{out, str_arg};
use crate::config::config_or_env;
use crate::runtime::block_on;

fn connect_with(config: Result<busbar_core::Config>, out_bus: *mut *mut busbar_bus) -> Result<()> {
    let slot = out(out_bus, ptr::null_mut(), "bus")?;
    let bus = block_on(busbar_core::connect(config?))?;
    *slot = Box::into_raw(Box::new(busbar_bus { bus }));
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
