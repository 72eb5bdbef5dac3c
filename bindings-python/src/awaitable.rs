//! Core futures as asyncio awaitables, without an asyncio future when none is needed.
//!
//! Most calls (a publish on either backend, a subscribe on the in-memory bus) finish at
//! their first poll. [`run`] polls once, with the GIL released; a finished call comes back
//! as a [`Ready`] (awaiting it yields the result at once, no event-loop round trip), and
//! only a call that has to wait becomes an asyncio future, completed by [`spawn`].

use std::any::TypeId;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::BoundObject;

pub(crate) use crate::bridge::spawn;
use crate::error::to_py;
use crate::RUNTIME;

/// An awaitable whose outcome is already known. Awaiting it returns the value (or raises
/// the error) without suspending. It holds no state that awaiting changes, so it can be
/// awaited more than once, and one shared instance stands for every finished `None`.
#[pyclass(frozen, module = "busbar", name = "Ready")]
pub struct Ready {
    outcome: Result<Py<PyAny>, PyErr>,
}

static DONE: PyOnceLock<Py<Ready>> = PyOnceLock::new();

impl Ready {
    /// An awaitable returning `value`.
    pub(crate) fn value<'py>(py: Python<'py>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        if value.is_none() {
            return Ok(Self::none(py));
        }
        Ok(Bound::new(
            py,
            Ready {
                outcome: Ok(value.unbind()),
            },
        )?
        .into_any())
    }

    /// The shared awaitable returning `None`.
    pub(crate) fn none(py: Python<'_>) -> Bound<'_, PyAny> {
        DONE.get_or_init(py, || {
            Py::new(
                py,
                Ready {
                    outcome: Ok(py.None()),
                },
            )
            .expect("allocating busbar's Ready")
        })
        .bind(py)
        .clone()
        .into_any()
    }

    /// An awaitable raising `err`.
    pub(crate) fn error(py: Python<'_>, err: PyErr) -> PyResult<Bound<'_, PyAny>> {
        Ok(Bound::new(py, Ready { outcome: Err(err) })?.into_any())
    }
}

#[pymethods]
impl Ready {
    fn __await__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Ends the await at once: `StopIteration(value)` gives the awaiting coroutine the value.
    fn __next__(&self, py: Python<'_>) -> PyResult<()> {
        match &self.outcome {
            Ok(v) if v.is_none(py) => Err(PyStopIteration::new_err(())),
            Ok(v) => Err(PyStopIteration::new_err((v.clone_ref(py),))),
            Err(e) => Err(e.clone_ref(py)),
        }
    }

    fn __repr__(&self) -> &'static str {
        match self.outcome {
            Ok(_) => "<busbar.Ready: done>",
            Err(_) => "<busbar.Ready: failed>",
        }
    }
}

/// `value` as a Python object; `()` (what most calls return) is `None`, not pyo3's `()`.
pub(crate) fn to_object<'py, T>(py: Python<'py>, value: T) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObject<'py> + 'static,
{
    if TypeId::of::<T>() == TypeId::of::<()>() {
        return Ok(py.None().into_bound(py));
    }
    Ok(value
        .into_pyobject(py)
        .map_err(Into::into)?
        .into_any()
        .into_bound())
}

/// A boxed core future, so it can be polled here and finished on the runtime.
type Pending<T> = Pin<Box<dyn Future<Output = busbar::Result<T>> + Send>>;

/// Polls `fut` once on the runtime's context with the GIL released.
fn poll_once<T: Send>(py: Python<'_>, fut: &mut Pending<T>) -> Poll<busbar::Result<T>> {
    py.detach(|| {
        let _runtime = RUNTIME.enter();
        fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
    })
}

/// Runs a core call as an awaitable: a [`Ready`] when it finishes at its first poll,
/// otherwise an asyncio future completed from the runtime (cancelling it drops `fut`).
pub(crate) fn run<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = busbar::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let mut fut: Pending<T> = Box::pin(fut);
    match poll_once(py, &mut fut) {
        Poll::Ready(Ok(value)) => Ready::value(py, to_object(py, value)?),
        Poll::Ready(Err(e)) => Ready::error(py, to_py(e)),
        Poll::Pending => spawn(py, async move { fut.await.map_err(to_py) }),
    }
}
