//! Node.js bindings of busbar: Promises, async iterators and TypeScript types over the
//! Rust core. Every behaviour lives in `busbar`; this crate translates JavaScript values,
//! errors and the async model (napi's tokio runtime, threadsafe functions) and nothing else.
//!
//! The package's `busbar.js` loads this module through the generated `index.js` and adds
//! the two pieces that are plain JavaScript: the async-iterator protocol over
//! `Subscription.nextBatch()` and the per-message loop of callback subscriptions.
//!
//! Files, the same rooms as the C and Python bindings: `lib` (connect, subject rules),
//! `args`, `error`, `runtime`, `config`, `bus`, `subscription`, `message`, `durable`.
#![deny(clippy::all)]

#[macro_use]
extern crate napi_derive;

mod args;
mod bus;
mod config;
mod durable;
mod error;
mod message;
mod runtime;
mod subscription;

use napi::bindgen_prelude::*;

/// The allocator of the module's Rust side. A publish on NATS allocates many small header
/// pieces that the connection's thread frees; glibc's malloc serialises that (see the
/// core's NATS benchmark), mimalloc does not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub use bus::Bus;
pub use config::ConnectOptions;
pub use durable::DurableSubscription;
pub use message::Message;
pub use subscription::NoticeThrottle;
pub use subscription::Subscription;

/// Connects to the bus that `options` (over the `BUSBAR_*` environment variables) describe;
/// the in-memory bus by default.
#[napi(
    catch_unwind,
    ts_args_type = "options?: ConnectOptions",
    ts_return_type = "Promise<Bus>"
)]
pub fn connect<'env>(env: &'env Env, options: Option<Unknown<'env>>) -> Result<Unknown<'env>> {
    let config = config::from_options(env, options)?;
    runtime::run(env, async move { busbar::connect(config?).await }, |_, bus| {
        Ok(Bus::new(bus))
    })
}

/// Whether `subject` matches `pattern` (`*` one token, `>` one or more trailing tokens);
/// false when either is invalid.
#[napi(catch_unwind, ts_args_type = "pattern: string, subject: string")]
pub fn subject_matches(env: &Env, pattern: Unknown, subject: Unknown) -> Result<bool> {
    let pattern = args::string_arg(env, "pattern", pattern)?;
    let subject = args::string_arg(env, "subject", subject)?;
    Ok(busbar::subject_matches(&pattern, &subject))
}

/// Throws an `Error` with `code` `"invalid_subject"` unless `subject` is a valid subject to
/// publish to.
#[napi(catch_unwind, ts_args_type = "subject: string")]
pub fn validate_subject(env: &Env, subject: Unknown) -> Result<()> {
    let subject = args::string_arg(env, "subject", subject)?;
    busbar::validate_subject(&subject).map_err(|e| error::to_js(env, &e))
}

/// Throws an `Error` with `code` `"invalid_subject"` unless `pattern` is a valid
/// subscription pattern.
#[napi(catch_unwind, ts_args_type = "pattern: string")]
pub fn validate_pattern(env: &Env, pattern: Unknown) -> Result<()> {
    let pattern = args::string_arg(env, "pattern", pattern)?;
    busbar::validate_pattern(&pattern).map_err(|e| error::to_js(env, &e))
}

/// The stable error codes an `Error` from busbar can carry in `code`.
#[napi(catch_unwind)]
pub fn error_codes() -> Vec<&'static str> {
    busbar::Error::CODES.to_vec()
}
