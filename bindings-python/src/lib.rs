//! `busbar._busbar`: the native module behind the `busbar` Python package. It only
//! translates: Python values to core types ([`args`], [`config`]), core errors to
//! exceptions ([`error`]), and core futures/streams to asyncio awaitables ([`runtime`]).
//!
//! Files, the same rooms as the C and Node bindings: `lib` (connect, subject rules),
//! `args`, `error`, `runtime`, `config`, `bus`, `subscription`, `message`, `durable`.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::bus::Bus;

mod args;
mod bus;
mod config;
mod durable;
mod error;
mod message;
mod runtime;
mod subscription;

/// Rust allocations of this module (Python's own are untouched): see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Connects with keyword settings (`backend="nats"`, `nats_url=...`, `max_payload=...`):
/// the in-memory bus unless `backend` or `BUSBAR_BACKEND` says otherwise. Awaitable.
#[pyfunction]
#[pyo3(signature = (**kwargs))]
fn connect<'py>(py: Python<'py>, kwargs: Option<&Bound<'py, PyDict>>) -> PyResult<Bound<'py, PyAny>> {
    let config = config::from_kwargs(kwargs)?;
    runtime::run(py, async move { busbar::connect(config).await.map(Bus::new) })
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

#[pymodule]
fn _busbar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", busbar::VERSION)?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_function(wrap_pyfunction!(subject_matches, m)?)?;
    m.add_function(wrap_pyfunction!(validate_subject, m)?)?;
    m.add_function(wrap_pyfunction!(validate_pattern, m)?)?;
    m.add_class::<bus::Bus>()?;
    m.add_class::<subscription::Subscription>()?;
    m.add_class::<message::Message>()?;
    m.add_class::<durable::DurableSubscription>()?;
    m.add_class::<durable::DurableMessage>()?;
    m.add_class::<durable::StreamInfo>()?;
    m.add_class::<durable::PublishAck>()?;
    m.add_class::<runtime::Ready>()?;
    m.add("CONFIG_KEYS", busbar::config::KEYS.to_vec())?;
    error::register(m)?;
    Ok(())
}
