//! The runtime side of the module: the one tokio runtime of the process, and core futures
//! as asyncio awaitables.
//!
//! Awaitables without an asyncio future when none is needed: most calls (a publish on
//! either backend, a subscribe on the in-memory bus) finish at their first poll. [`run`]
//! polls once, with the GIL released; a finished call comes back as a [`Ready`] (awaiting
//! it yields the result at once, no event-loop round trip), and only a call that has to
//! wait becomes an asyncio future, completed by [`spawn`].
//!
//! Completing asyncio futures from runtime threads without taking the GIL there: each
//! event loop gets one [`Wakeup`]: a queue of finished calls and a socket pair whose
//! reading end the loop watches (`loop.add_reader`). A runtime task that finishes pushes
//! its outcome onto the queue and, if the queue was empty, writes one byte; the loop then
//! runs [`LoopReader`] on its own thread, with the GIL it already holds, and completes
//! every queued future in one go. So runtime threads never wait for the GIL (which the
//! loop's thread may hold for a whole switch interval), a burst of completions costs one
//! wake-up of the loop, and nothing touches Python from a runtime thread while the
//! interpreter exits.

use std::any::TypeId;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use pyo3::exceptions::PyStopIteration;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::BoundObject;

use crate::error::to_py;

/// The one tokio runtime of the process, created on first use; every awaitable runs on it.
pub(crate) static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("busbar")
        .build()
        .expect("busbar: cannot start the tokio runtime")
});

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

    /// A coroutine's `send(None)`: ends at once, as `__next__` (the package registers
    /// `Ready` as a `collections.abc.Coroutine`, so `asyncio.create_task` takes it).
    fn send(&self, py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if !value.is_none() {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "can't send a non-None value to a just-started busbar awaitable",
            ));
        }
        self.__next__(py)
    }

    /// A coroutine's `throw`: raises what it is given.
    #[pyo3(signature = (typ, val = None, _tb = None))]
    fn throw(
        &self,
        typ: &Bound<'_, PyAny>,
        val: Option<&Bound<'_, PyAny>>,
        _tb: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        Err(PyErr::from_value(
            val.filter(|v| !v.is_none()).unwrap_or(typ).clone(),
        ))
    }

    /// A coroutine's `close`: nothing to do, the outcome is known.
    fn close(&self) {}

    fn __repr__(&self) -> &'static str {
        match self.outcome {
            Ok(_) => "<busbar.Ready: done>",
            Err(_) => "<busbar.Ready: failed>",
        }
    }
}

/// A call that has to wait: the asyncio future [`spawn`] made, as an awaitable that is
/// also a coroutine (`send`, `throw`, `close` go to the future's own iterator), so
/// `asyncio.create_task(bus.request(...))` takes it, as it takes nats-py's coroutines.
/// Awaiting it awaits the future; `cancel()` cancels it (dropping the core call).
#[pyclass(module = "busbar", name = "Waiting")]
pub struct Waiting {
    future: Py<PyAny>,
    /// The future's `__await__()` iterator, once `send` or `throw` started it.
    iter: Option<Py<PyAny>>,
}

impl Waiting {
    fn iter<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.iter.is_none() {
            let iter = self.future.bind(py).call_method0(intern!(py, "__await__"))?;
            self.iter = Some(iter.unbind());
        }
        Ok(self.iter.as_ref().map(|i| i.bind(py).clone()).expect("set above"))
    }
}

#[pymethods]
impl Waiting {
    fn __await__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.future.bind(py).call_method0(intern!(py, "__await__"))
    }

    /// A coroutine's `send`: the future's iterator's.
    fn send<'py>(&mut self, py: Python<'py>, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        self.iter(py)?.call_method1(intern!(py, "send"), (value,))
    }

    /// A coroutine's `throw` (one argument, or the old three): the future's iterator's.
    #[pyo3(signature = (typ, val = None, tb = None))]
    fn throw<'py>(
        &mut self,
        py: Python<'py>,
        typ: &Bound<'py, PyAny>,
        val: Option<&Bound<'py, PyAny>>,
        tb: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let iter = self.iter(py)?;
        match (val, tb) {
            (None, None) => iter.call_method1(intern!(py, "throw"), (typ,)),
            _ => iter.call_method1(intern!(py, "throw"), (typ, val, tb)),
        }
    }

    /// A coroutine's `close`.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        if let Some(iter) = &self.iter {
            iter.bind(py).call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }

    /// Cancels the call (as cancelling the asyncio future would).
    fn cancel(&self, py: Python<'_>) -> PyResult<bool> {
        self.future
            .bind(py)
            .call_method0(intern!(py, "cancel"))?
            .extract()
    }

    /// Whether the call has finished.
    fn done(&self, py: Python<'_>) -> PyResult<bool> {
        self.future.bind(py).call_method0(intern!(py, "done"))?.extract()
    }

    fn __repr__(&self) -> &'static str {
        "<busbar.Waiting>"
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
/// otherwise a [`Waiting`] over an asyncio future completed from the runtime (cancelling
/// it drops `fut`). Both are coroutines to `asyncio.create_task`.
pub(crate) fn run<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = busbar::Result<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let mut fut: Pending<T> = Box::pin(fut);
    match poll_once(py, &mut fut) {
        // A value that cannot be handed over (or a batch's error, `Published`) is raised
        // where the call is awaited, as it would be after a wait.
        Poll::Ready(Ok(value)) => match to_object(py, value) {
            Ok(value) => Ready::value(py, value),
            Err(e) => Ready::error(py, e),
        },
        Poll::Ready(Err(e)) => Ready::error(py, to_py(e)),
        Poll::Pending => {
            let future = spawn(py, async move { fut.await.map_err(to_py) })?;
            let waiting = Waiting {
                future: future.unbind(),
                iter: None,
            };
            Ok(Bound::new(py, waiting)?.into_any())
        }
    }
}

// -- Completing asyncio futures from runtime threads ----------------------------------

/// Turns a finished call's output into a Python object, on the loop's thread.
type Outcome = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

struct Completion {
    future: Py<PyAny>,
    outcome: Outcome,
}

/// The finished calls of one event loop, and the socket pair that wakes it.
struct Wakeup {
    queue: Mutex<Vec<Completion>>,
    tx: UnixStream,
    rx: UnixStream,
}

impl Wakeup {
    fn new() -> PyResult<Self> {
        let (tx, rx) = UnixStream::pair()?;
        tx.set_nonblocking(true)?;
        rx.set_nonblocking(true)?;
        Ok(Wakeup {
            queue: Mutex::new(Vec::new()),
            tx,
            rx,
        })
    }

    fn queue(&self) -> MutexGuard<'_, Vec<Completion>> {
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// From any thread: queues a completion and wakes the loop if it was not yet woken.
    fn push(&self, completion: Completion) {
        let mut queue = self.queue();
        queue.push(completion);
        let first = queue.len() == 1;
        drop(queue);
        if first {
            // A full socket buffer already holds a wake-up byte, so a failed write loses nothing.
            let _ = (&self.tx).write(&[1]);
        }
    }
}

/// The loop's reader callback: completes every queued future that is still waiting.
#[pyclass(frozen, module = "busbar")]
struct LoopReader(Arc<Wakeup>);

#[pymethods]
impl LoopReader {
    fn __call__(&self, py: Python<'_>) -> PyResult<()> {
        // Read the wake-up bytes before taking the queue, so no push goes unnoticed.
        let mut buf = [0u8; 256];
        while matches!((&self.0.rx).read(&mut buf), Ok(n) if n == buf.len()) {}
        let batch = std::mem::take(&mut *self.0.queue());
        for completion in batch {
            // One future that cannot be completed must not strand the rest of the batch.
            if let Err(err) = complete(py, completion) {
                err.write_unraisable(py, None);
            }
        }
        Ok(())
    }
}

/// Hands a finished call's outcome to its asyncio future, unless that was cancelled.
fn complete(py: Python<'_>, Completion { future, outcome }: Completion) -> PyResult<()> {
    let future = future.bind(py);
    if future.call_method0(intern!(py, "done"))?.is_truthy()? {
        return Ok(()); // cancelled meanwhile; dropping `outcome` releases what it holds
    }
    match outcome(py) {
        Ok(value) => future.call_method1(intern!(py, "set_result"), (value,))?,
        Err(err) => future.call_method1(intern!(py, "set_exception"), (err.into_value(py),))?,
    };
    Ok(())
}

/// The wake-up of each live event loop, found by a weak reference to the loop.
static LOOPS: Mutex<Vec<(Py<PyAny>, Arc<Wakeup>)>> = Mutex::new(Vec::new());

/// The wake-up of `event_loop`, registering its reader on first use.
fn wakeup_for(py: Python<'_>, event_loop: &Bound<'_, PyAny>) -> PyResult<Arc<Wakeup>> {
    let mut loops = LOOPS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut found = None;
    loops.retain(|(weak, wakeup)| match weak.bind(py).call0() {
        Ok(l) if l.is(event_loop) => {
            found = Some(wakeup.clone());
            true
        }
        Ok(l) => !l.is_none(), // forget loops that are gone
        Err(_) => false,
    });
    if let Some(wakeup) = found {
        return Ok(wakeup);
    }
    let wakeup = Arc::new(Wakeup::new()?);
    let reader = LoopReader(wakeup.clone());
    event_loop.call_method1("add_reader", (wakeup.rx.as_raw_fd(), reader))?;
    let weak = py.import("weakref")?.getattr("ref")?.call1((event_loop,))?;
    loops.push((weak.unbind(), wakeup.clone()));
    Ok(wakeup)
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
/// its output. Cancelling that future aborts the task, dropping `fut`. Errors are
/// `PyErr`s made without the GIL (see `error::to_py`).
pub(crate) fn spawn<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    let get_loop = GET_RUNNING_LOOP.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    let event_loop = get_loop.bind(py).call0()?;
    let wakeup = wakeup_for(py, &event_loop)?;
    let future = event_loop.call_method0(intern!(py, "create_future"))?;
    let target = future.clone().unbind();
    let task = RUNTIME.spawn(async move {
        let output = fut.await;
        wakeup.push(Completion {
            future: target,
            outcome: Box::new(move |py| output.and_then(|v| Ok(to_object(py, v)?.unbind()))),
        });
    });
    future.call_method1(
        intern!(py, "add_done_callback"),
        (AbortTask(task.abort_handle()),),
    )?;
    Ok(future)
}
