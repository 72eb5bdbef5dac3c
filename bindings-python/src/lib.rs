//! `busbar._busbar`: the native module behind the `busbar` Python package. It only
//! translates: Python values to core types ([`config`], [`message`]), core errors to
//! exceptions ([`error`]), and core futures/streams to asyncio awaitables ([`awaitable`]).

use std::sync::LazyLock;

use pyo3::prelude::*;

mod awaitable;
mod bridge;
mod bus;
mod config;
mod durable;
mod error;
mod message;
mod subscription;

/// Rust allocations of this module (Python's own are untouched): see Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The one tokio runtime of the process, created on first use; every awaitable runs on it.
pub(crate) static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("busbar")
        .build()
        .expect("busbar: cannot start the tokio runtime")
});

/// `subject_matches(pattern, subject)`: whether `subject` matches `pattern`; false when
/// either is invalid.
#[pyfunction]
fn subject_matches(pattern: &Bound<'_, PyAny>, subject: &Bound<'_, PyAny>) -> PyResult<bool> {
    Ok(busbar::subject_matches(
        message::text(pattern, "subject_matches(): pattern")?,
        message::text(subject, "subject_matches(): subject")?,
    ))
}

/// `validate_subject(subject)`: raises `InvalidSubject` unless one may publish to `subject`.
#[pyfunction]
fn validate_subject(subject: &Bound<'_, PyAny>) -> PyResult<()> {
    busbar::validate_subject(message::text(subject, "validate_subject(): subject")?).map_err(error::to_py)
}

/// `validate_pattern(pattern)`: raises `InvalidSubject` unless `pattern` is a valid pattern.
#[pyfunction]
fn validate_pattern(pattern: &Bound<'_, PyAny>) -> PyResult<()> {
    busbar::validate_pattern(message::text(pattern, "validate_pattern(): pattern")?).map_err(error::to_py)
}

#[pymodule]
fn _busbar(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(bus::connect, m)?)?;
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
    m.add_class::<awaitable::Ready>()?;
    m.add("CONFIG_KEYS", busbar::config::KEYS.to_vec())?;
    error::register(m)?;
    Ok(())
}
