//! `busbar.Subscription`: a core subscription as an async iterator of `Message`s.
//!
//! Crossing into asyncio per message is the cost to avoid, so `__anext__` first takes
//! what is already queued: it moves up to [`BATCH`] ready messages from the core stream
//! into a local buffer in one go and hands them out as [`Ready`] awaitables. Only when
//! nothing is queued does it wait on the runtime through an asyncio future.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use futures_util::StreamExt;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::{Mutex, Notify};

use crate::awaitable::{self, Ready};
use crate::error::to_py;
use crate::message::Message;
use crate::RUNTIME;

/// Most messages moved from the core stream to the local buffer at once.
const BATCH: usize = 256;

type Item = busbar::Result<busbar::Message>;

/// What the Python object and its waiting runtime tasks share.
struct Shared {
    /// Messages taken off the stream, not yet handed to Python. Locked briefly only.
    buffered: StdMutex<VecDeque<Item>>,
    /// Wakes a waiting task when a message comes back to `buffered` (see [`Claim`]).
    returned: Notify,
    /// The core stream; a waiting `__anext__` holds it while it waits.
    stream: Mutex<busbar::Subscription>,
}

impl Shared {
    fn buffered(&self) -> MutexGuard<'_, VecDeque<Item>> {
        self.buffered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pop(&self) -> Option<Item> {
        self.buffered().pop_front()
    }
}

/// Moves what `stream` holds right now (up to [`BATCH`]) into `buffered`; true when the
/// stream has ended.
fn fill(stream: &mut busbar::Subscription, buffered: &mut VecDeque<Item>) -> bool {
    let _runtime = RUNTIME.enter();
    let mut cx = Context::from_waker(Waker::noop());
    while buffered.len() < BATCH {
        match stream.poll_next_unpin(&mut cx) {
            Poll::Ready(Some(item)) => buffered.push_back(item),
            Poll::Ready(None) => return true,
            Poll::Pending => break,
        }
    }
    false
}

/// Messages on a pattern: `async for msg in sub`. `async with` unsubscribes at the end.
#[pyclass(frozen, module = "busbar", name = "Subscription")]
pub struct Subscription {
    shared: Arc<Shared>,
    handle: busbar::SubscriptionHandle,
    pattern: String,
    queue_group: Option<String>,
}

impl Subscription {
    pub(crate) fn new(sub: busbar::Subscription) -> Self {
        Subscription {
            handle: sub.handle(),
            pattern: sub.pattern().to_owned(),
            queue_group: sub.queue_group().map(str::to_owned),
            shared: Arc::new(Shared {
                buffered: StdMutex::new(VecDeque::new()),
                returned: Notify::new(),
                stream: Mutex::new(sub),
            }),
        }
    }
}

/// A message taken off the stream for a waiting `__anext__`. If that wait was cancelled
/// before the message reached Python, dropping the claim puts it back at the front of the
/// buffer, so a timed-out wait (`asyncio.wait_for(sub.__anext__(), t)`) loses nothing.
struct Claim {
    msg: Option<busbar::Message>,
    shared: Arc<Shared>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            self.shared.buffered().push_front(Ok(msg));
            self.shared.returned.notify_one();
        }
    }
}

impl<'py> IntoPyObject<'py> for Claim {
    type Target = Message;
    type Output = Bound<'py, Message>;
    type Error = PyErr;

    fn into_pyobject(mut self, py: Python<'py>) -> PyResult<Bound<'py, Message>> {
        match self.msg.take() {
            Some(msg) => Bound::new(py, Message::from(msg)),
            None => Err(PyRuntimeError::new_err("busbar: a message was claimed twice")),
        }
    }
}

/// Waits for the next item: from the buffer, or from the stream (then moving what else is
/// ready into the buffer). `None` once the stream has ended.
async fn wait_next(shared: &Arc<Shared>) -> Option<Item> {
    let mut stream = shared.stream.lock().await;
    loop {
        if let Some(item) = shared.pop() {
            return Some(item);
        }
        tokio::select! {
            item = stream.next() => {
                let item = item?;
                let mut buffered = shared.buffered();
                buffered.push_back(item);
                fill(&mut stream, &mut buffered);
            }
            _ = shared.returned.notified() => {}
        }
    }
}

#[pymethods]
impl Subscription {
    /// The pattern this subscription matches.
    #[getter]
    fn pattern(&self) -> &str {
        &self.pattern
    }

    /// The queue group, for queue subscriptions.
    #[getter]
    fn queue_group(&self) -> Option<&str> {
        self.queue_group.as_deref()
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next message; `StopAsyncIteration` once the subscription has ended.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // Fast path: a message already buffered, or already queued in the core stream.
        let mut next = self.shared.pop();
        if next.is_none() {
            if let Ok(mut stream) = self.shared.stream.try_lock() {
                let shared = &self.shared;
                let (first, ended) = py.detach(|| {
                    let mut buffered = shared.buffered();
                    let ended = fill(&mut stream, &mut buffered);
                    (buffered.pop_front(), ended)
                });
                if first.is_none() && ended {
                    return Ready::error(py, PyStopAsyncIteration::new_err(()));
                }
                next = first;
            }
        }
        match next {
            Some(Ok(msg)) => return Ready::value(py, Bound::new(py, Message::from(msg))?.into_any()),
            Some(Err(e)) => return Ready::error(py, to_py(e)),
            None => {}
        }
        let shared = self.shared.clone();
        awaitable::spawn(py, async move {
            match wait_next(&shared).await {
                Some(Ok(msg)) => Ok(Claim {
                    msg: Some(msg),
                    shared: shared.clone(),
                }),
                Some(Err(e)) => Err(to_py(e)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    /// Stops delivery at once; buffered messages are discarded and iteration ends.
    fn unsubscribe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        let shared = self.shared.clone();
        awaitable::run(py, async move {
            handle.unsubscribe().await?;
            shared.buffered().clear();
            Ok(())
        })
    }

    /// Stops new deliveries; iteration yields what is already queued, then ends.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        awaitable::run(py, async move { handle.drain().await })
    }

    /// Counters: delivered, missed, pending (queued in core plus buffered here), lagging.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.handle.stats();
        let buffered = self.shared.buffered().len() as u64;
        let dict = PyDict::new(py);
        dict.set_item("delivered", s.delivered)?;
        dict.set_item("missed", s.missed)?;
        dict.set_item("pending", s.pending + buffered)?;
        dict.set_item("lagging", s.lagging)?;
        Ok(dict)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Ready::value(slf.py(), slf.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(
        &self,
        py: Python<'py>,
        _exc: &Bound<'py, pyo3::types::PyTuple>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.unsubscribe(py)
    }

    fn __repr__(&self) -> String {
        match &self.queue_group {
            Some(g) => format!(
                "<busbar.Subscription pattern={:?} queue_group={g:?}>",
                self.pattern
            ),
            None => format!("<busbar.Subscription pattern={:?}>", self.pattern),
        }
    }
}
