//! Node.js bindings of busbar: Promises, async iterators and TypeScript types over the
//! Rust core. Every behaviour lives in `busbar`; this crate translates JavaScript values,
//! errors and the async model (napi's tokio runtime, threadsafe functions) and nothing else.
//!
//! The package's `busbar.js` loads this module through the generated `index.js` and adds
//! the two pieces that are plain JavaScript: the async-iterator protocol over
//! `Subscription.nextBatch()` and the per-message loop of callback subscriptions.
//!
//! Files, the same rooms as the C and Python bindings: `lib` (connect, subject rules),
//! `args`, `error`, `runtime`, `config`, `bus`, `subscription`, `message`, `durable`,
//! `service`.
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
mod service;
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
pub use service::{Service, ServiceJob, ServiceJobs};
pub use subscription::NoticeThrottle;
pub use subscription::Subscription;

/// Connects to the bus that `options` (over the `BUSBAR_*` environment variables) describe;
/// the in-memory bus by default. A server URL first is the shorthand Python's `connect`
/// takes too: `connect('nats://127.0.0.1:4222')` is `connect({ backend: 'nats', natsUrl })`
/// (`amqp://…` picks RabbitMQ), and options may follow it.
#[napi(
    catch_unwind,
    ts_args_type = "urlOrOptions?: string | ConnectOptions, options?: ConnectOptions",
    ts_return_type = "Promise<Bus>"
)]
pub fn connect<'env>(
    env: &'env Env,
    url_or_options: Option<Unknown<'env>>,
    options: Option<Unknown<'env>>,
) -> Result<Unknown<'env>> {
    let (url, options) = match url_or_options {
        Some(first) if first.get_type()? == ValueType::String => {
            (Some(args::string_arg(env, "url", first)?), options)
        }
        first => {
            if options.is_some_and(|o| !matches!(o.get_type(), Ok(ValueType::Undefined))) {
                return Err(args::type_error(
                    env,
                    "connect(options) takes one options object; a second argument follows only a URL".into(),
                ));
            }
            (None, first)
        }
    };
    let config = config::from_options(env, url, options)?;
    runtime::run(
        env,
        async move { busbar::connect_parts(config?).await },
        |_, bus| Ok(Bus::new(bus)),
    )
}

/// One log record of busbar (see `setLogger`).
#[napi(object)]
pub struct LogRecord {
    /// `"error"`, `"warn"`, `"info"`, `"debug"` or `"trace"`.
    pub level: String,
    /// The busbar module that logged it (`"busbar::..."`).
    pub target: String,
    /// What happened. Never a payload or a protected value.
    pub message: String,
}

/// Sends busbar's log records at `level` (default `"info"`) and above to
/// `logger({ level, target, message })`, on the JavaScript thread, replacing any logger set
/// before; `null` stops them. Process-wide; the logger does not keep the process alive.
#[napi(
    catch_unwind,
    ts_args_type = "logger: ((record: LogRecord) => void) | null, level?: 'error' | 'warn' | 'info' | 'debug' | 'trace'"
)]
pub fn set_logger(env: &Env, logger: Option<Function<LogRecord, ()>>, level: Option<String>) -> Result<()> {
    let level =
        busbar::LogLevel::parse(level.as_deref().unwrap_or("info")).map_err(|e| error::to_js(env, &e))?;
    let sink: Option<busbar::LogSink> = match logger {
        None => None,
        Some(logger) => {
            let logger = logger
                .build_threadsafe_function::<LogRecord>()
                .callee_handled::<false>()
                .weak::<true>()
                .build()?;
            Some(Box::new(
                move |level: busbar::LogLevel, target: &str, message: &str| {
                    let record = LogRecord {
                        level: level.as_str().to_owned(),
                        target: target.to_owned(),
                        message: message.to_owned(),
                    };
                    logger.call(
                        record,
                        napi::threadsafe_function::ThreadsafeFunctionCallMode::NonBlocking,
                    );
                },
            ))
        }
    };
    busbar::set_log_sink(sink, level).map_err(|e| error::to_js(env, &e))
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
