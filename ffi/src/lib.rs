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
pub mod subject;
pub mod subscription;
pub mod userdata;

pub use bus::*;
pub use config::*;
pub use durable::*;
pub use error::*;
pub use message::*;
pub use subject::*;
pub use subscription::*;
pub use userdata::*;
