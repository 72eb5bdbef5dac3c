//! `busbar._busbar`: the native module behind the `busbar` Python package. It only
//! translates: Python values to core types ([`args`], [`config`]), core errors to
//! exceptions ([`error`]), and core futures/streams to asyncio awaitables ([`runtime`]).
//!
//! Files, the same rooms as the C and Node bindings: `lib` (connect, subject rules),
//! `args`, `error`, `runtime`, `config`, `bus`, `subscription`, `message`, `durable`,
//! `service`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bus::Bus;

mod args;
mod bus;
mod config;
mod durable;
mod error;
mod exit;
mod message;
mod runtime;
mod service;
mod subscription;

/// Rust allocations of this module (Python's own are untouched): see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connects with keyword settings (`backend="nats"`, `nats_url=...`, `max_payload=...`):
/// the in-memory bus unless `backend` or `BUSBAR_BACKEND` says otherwise. A server URL
/// as first argument is nats-py's shorthand: `connect("nats://127.0.0.1:4222")` is
/// `connect(backend="nats", nats_url=...)` (`amqp://…` picks RabbitMQ). Awaitable.
#[pyfunction]
#[pyo3(signature = (url = None, **kwargs))]
fn connect<'py>(
    py: Python<'py>,
    url: Option<&Bound<'py, PyAny>>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let url = url.map(|u| args::text(u, "connect(): url")).transpose()?;
    let config = config::from_kwargs(url, kwargs)?;
    runtime::run(
        py,
        async move { busbar::connect_parts(config?).await.map(Bus::new) },
    )
}

/// `subject_matches(pattern, subject)`: whether `subject` matches `pattern`; false when
/// either is invalid.
#[pyfunction]
fn subject_matches(pattern: &Bound<'_, PyAny>, subject: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(busbar::subject_matches(
        args::text(pattern, "subject_matches(): pattern")?,
        args::text(subject, "subject_matches(): subject")?,
    ))
}

/// `validate_subject(subject)`: raises `InvalidSubject` unless one may publish to `subject`.
#[pyfunction]
fn validate_subject(subject: &Bound<'_, PyAny>) -> PyResult<()> {
    busbar::validate_subject(args::text(subject, "validate_subject(): subject")?).map_err(error::to_py)
}

/// `validate_pattern(pattern)`: raises `InvalidSubject` unless `pattern` is a valid pattern.
#[pyfunction]
fn validate_pattern(pattern: &Bound<'_, PyAny>) -> PyResult<()> {
    busbar::validate_pattern(args::text(pattern, "validate_pattern(): pattern")?).map_err(error::to_py)
}

/// `_set_trace_hook(fn)`: `fn()` returns the current trace context as `(traceparent,
/// tracestate)` or `None`; every publish and request without a `traceparent` of its own
/// then carries it (`busbar.otel.instrument()`). `None` removes the hook.
#[pyfunction]
fn _set_trace_hook(hook: Option<Py<PyAny>>) {
    args::set_trace_hook(hook)
}

#[pymodule]
fn _busbar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // busbar's log records (core logs through `tracing`, which hands them to the `log`
    // facade) go to Python's `logging`, under the logger `busbar` (`busbar.backend.queue`, …).
    // Loggers are cached but not their levels, so a level set later takes effect; records
    // below info (of any crate) are dropped in Rust, without taking the GIL. Records go
    // through `exit::Logger`, which stops entering Python once `atexit` has run (see `exit`).
    let logger = pyo3_log::Logger::new(m.py(), pyo3_log::Caching::Loggers)?;
    let logger = exit::Logger(logger.filter(log::LevelFilter::Info));
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    } // else another logger is installed: it keeps them
    let exits = wrap_pyfunction!(exit::interpreter_exits, m)?;
    m.py().import("atexit")?.call_method1("register", (exits,))?;

    m.add("__version__", busbar::VERSION)?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(subject_matches, m)?)?;
    m.add_function(wrap_pyfunction!(validate_subject, m)?)?;
    m.add_function(wrap_pyfunction!(validate_pattern, m)?)?;
    m.add_function(wrap_pyfunction!(_set_trace_hook, m)?)?;
    m.add_class::<bus::Bus>()?;
    m.add_class::<bus::ConnectionEvent>()?;
    m.add_class::<bus::ConnectionEvents>()?;
    m.add_class::<subscription::Subscription>()?;
    m.add_class::<message::Message>()?;
    m.add_class::<durable::DurableSubscription>()?;
    m.add_class::<durable::DurableMessage>()?;
    m.add_class::<durable::StreamInfo>()?;
    m.add_class::<durable::ConsumerInfo>()?;
    m.add_class::<durable::PublishAck>()?;
    m.add_class::<service::Service>()?;
    m.add_class::<service::ServiceJobs>()?;
    m.add_class::<service::ServiceJob>()?;
    m.add_class::<runtime::Ready>()?;
    m.add_class::<runtime::Waiting>()?;
    m.add("CONFIG_KEYS", busbar::config::KEYS.to_vec())?;
    error::register(m)?;
    Ok(())
}
