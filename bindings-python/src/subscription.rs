//! `busbar.Subscription`: a core subscription as an async iterator of `Message`s.
//!
//! Crossing into asyncio per message is the cost to avoid, so `__anext__` first takes
//! what is already queued: it moves up to [`BATCH`] ready messages from the core stream
//! into a local buffer in one go and hands them out as [`Ready`] awaitables. Only when
//! nothing is queued does it wait on the runtime through an asyncio future.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use futures_util::StreamExt;
use pyo3::exceptions::PyStopAsyncIteration;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::Mutex;

use crate::awaitable::{self, Ready};
use crate::error::to_py;
use crate::message::Message;
use crate::RUNTIME;

/// Most messages moved from the core stream to the local buffer at once.
const BATCH: usize = 256;

struct State {
    sub: busbar::Subscription,
    buffered: VecDeque<busbar::Result<busbar::Message>>,
}

impl State {
    /// Moves what the stream holds right now into the buffer; true when it has ended.
    fn fill(&mut self) -> bool {
        let _runtime = RUNTIME.enter();
        let mut cx = Context::from_waker(Waker::noop());
        while self.buffered.len() < BATCH {
            match self.sub.poll_next_unpin(&mut cx) {
                Poll::Ready(Some(item)) => self.buffered.push_back(item),
                Poll::Ready(None) => return true,
                Poll::Pending => break,
            }
        }
        false
    }
}

/// Messages on a pattern: `async for msg in sub`. `async with` unsubscribes at the end.
#[pyclass(frozen, module = "busbar", name = "Subscription")]
pub struct Subscription {
    state: Arc<Mutex<State>>,
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
            state: Arc::new(Mutex::new(State {
                sub,
                buffered: VecDeque::new(),
            })),
        }
    }
}

/// One stream item for Python: a `Message`, or the error it carries (e.g. `Lagged`).
fn item_to_py(item: busbar::Result<busbar::Message>) -> PyResult<Message> {
    item.map(Message::from).map_err(to_py)
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
        if let Ok(mut state) = self.state.try_lock() {
            let mut ended = false;
            if state.buffered.is_empty() {
                ended = py.detach(|| state.fill());
            }
            match state.buffered.pop_front() {
                Some(Ok(msg)) => {
                    return Ready::value(py, Bound::new(py, Message::from(msg))?.into_any());
                }
                Some(Err(e)) => return Ready::error(py, to_py(e)),
                None if ended => return Ready::error(py, PyStopAsyncIteration::new_err(())),
                None => {}
            }
        }
        let state = self.state.clone();
        awaitable::spawn(py, async move {
            let mut state = state.lock().await;
            if let Some(item) = state.buffered.pop_front() {
                return item_to_py(item);
            }
            match state.sub.next().await {
                Some(item) => {
                    state.fill();
                    item_to_py(item)
                }
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }

    /// Stops delivery at once; buffered messages are discarded and iteration ends.
    fn unsubscribe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        let state = self.state.clone();
        awaitable::run(py, async move {
            handle.unsubscribe().await?;
            if let Ok(mut state) = state.try_lock() {
                state.buffered.clear();
            }
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
        let buffered = self.state.try_lock().map_or(0, |s| s.buffered.len() as u64);
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
