//! Core futures as asyncio awaitables, without an asyncio future when none is needed.
//!
//! Most calls (a publish on either backend, a subscribe on the in-memory bus) finish at
//! their first poll. [`run`] polls once, with the GIL released; a finished call comes back
//! as a [`Ready`] (awaiting it yields the result at once, no event-loop round trip), and
//! only a call that has to wait becomes an asyncio future, completed by [`spawn`].
//!
//! [`spawn`] is a lean bridge: one runtime task per call, which on completion attaches to
//! Python on its own thread and hands the result to the event loop with
//! `call_soon_threadsafe`. Cancelling the asyncio future aborts the task (dropping the
//! core future). After the interpreter starts exiting, tasks no longer touch Python.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::BoundObject;

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

/// Set by an `atexit` hook: from then on runtime tasks drop their results instead of
/// attaching to an interpreter that is shutting down.
static EXITING: AtomicBool = AtomicBool::new(false);

/// Registered with `atexit` by the module.
#[pyfunction]
pub(crate) fn _mark_exiting() {
    EXITING.store(true, Ordering::Release);
}

/// Runs on the event loop's thread: completes the asyncio future unless it was cancelled.
#[pyclass(module = "busbar")]
struct Complete {
    future: Py<PyAny>,
    outcome: Option<PyResult<Py<PyAny>>>,
}

#[pymethods]
impl Complete {
    fn __call__(&mut self, py: Python<'_>) -> PyResult<()> {
        let future = self.future.bind(py);
        let Some(outcome) = self.outcome.take() else {
            return Ok(());
        };
        if future.call_method0("done")?.is_truthy()? {
            return Ok(()); // cancelled meanwhile
        }
        match outcome {
            Ok(value) => future.call_method1("set_result", (value,))?,
            Err(err) => future.call_method1("set_exception", (err.into_value(py),))?,
        };
        Ok(())
    }
}

/// The asyncio future's done-callback: aborts the runtime task (a no-op once it finished).
#[pyclass(frozen, module = "busbar")]
struct AbortTask(tokio::task::AbortHandle);

#[pymethods]
impl AbortTask {
    fn __call__(&self, _future: &Bound<'_, PyAny>) {
        self.0.abort();
    }
}

static GET_RUNNING_LOOP: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Runs `fut` on the runtime and returns an asyncio future of the running loop that gets
/// its output. Errors are `PyErr`s made without the GIL (see `error::to_py`).
pub(crate) fn spawn<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let get_loop = GET_RUNNING_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    let event_loop = get_loop.bind(py).call0()?;
    let future = event_loop.call_method0("create_future")?;
    let (loop_ref, future_ref) = (event_loop.unbind(), future.clone().unbind());
    let task = RUNTIME.spawn(async move {
        let outcome = fut.await;
        if EXITING.load(Ordering::Acquire) {
            return;
        }
        Python::try_attach(|py| {
            let outcome =
                outcome.and_then(|v| Ok(v.into_pyobject(py).map_err(Into::into)?.into_any().unbind()));
            let complete = Complete {
                future: future_ref,
                outcome: Some(outcome),
            };
            // Fails only when the loop is closed: then nobody waits for the result.
            let _ = loop_ref.call_method1(py, "call_soon_threadsafe", (complete,));
        });
    });
    future.call_method1("add_done_callback", (AbortTask(task.abort_handle()),))?;
    Ok(future)
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
        Poll::Ready(Ok(value)) => {
            let value = value
                .into_pyobject(py)
                .map_err(Into::into)?
                .into_any()
                .into_bound();
            Ready::value(py, value)
        }
        Poll::Ready(Err(e)) => Ready::error(py, to_py(e)),
        Poll::Pending => spawn(py, async move { fut.await.map_err(to_py) }),
    }
}
