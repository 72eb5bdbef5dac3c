//! `busbar.Subscription`: a core subscription as an async iterator of `Message`s, and the
//! [`Inbox`] that `DurableSubscription` shares with it.
//!
//! Crossing into asyncio per message is the cost to avoid, so `__anext__` first takes
//! what is already queued: it moves up to [`BATCH`] ready messages from the core stream
//! into a local buffer in one go and hands them out as [`Ready`] awaitables. Only when
//! nothing is queued does it wait on the runtime through an asyncio future.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as StdMutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use busbar::throttle::{Decision, Throttle};
use busbar::Batches;
use futures_util::Stream;
use pyo3::exceptions::{PyRuntimeError, PyStopAsyncIteration};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use tokio::sync::{Mutex, Notify};

use crate::error::to_py;
use crate::message::Message;
use crate::runtime::{self, Ready, RUNTIME};

/// Most messages moved from the core stream to the local buffer at once.
const BATCH: usize = 256;

/// What a core stream yields, as the Python object `__anext__` returns.
pub(crate) trait Delivered: Send + Sized + 'static {
    fn into_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>>;
}

impl Delivered for busbar::Message {
    fn into_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        Ok(Bound::new(py, Message::from(self))?.into_any())
    }
}

/// What a Python subscription object and its waiting runtime tasks share: a core stream
/// `S` of `T`s and the messages already taken off it.
pub(crate) struct Inbox<S, T> {
    /// Messages taken off the stream, not yet handed to Python. Locked briefly only.
    buffered: StdMutex<VecDeque<busbar::Result<T>>>,
    /// Wakes a waiting task when a message comes back to `buffered` (see [`Claim`]) or
    /// the inbox is closed.
    returned: Notify,
    /// Set by [`Inbox::close`]: iteration ends.
    closed: AtomicBool,
    /// The core stream, read in batches under core's lag rule (`None` once closed); a
    /// waiting `__anext__` holds it while it waits.
    stream: Mutex<Option<Batches<S>>>,
    /// How often an undecodable message is logged (the core's rule).
    throttle: Arc<StdMutex<Throttle>>,
}

impl<S, T> Inbox<S, T>
where
    S: Stream<Item = busbar::Result<T>> + Unpin + Send + 'static,
    T: Delivered,
{
    pub(crate) fn new(stream: S) -> Arc<Self> {
        Arc::new(Inbox {
            buffered: StdMutex::new(VecDeque::new()),
            returned: Notify::new(),
            closed: AtomicBool::new(false),
            stream: Mutex::new(Some(Batches::new(stream))),
            throttle: Arc::default(),
        })
    }

    fn buffered(&self) -> MutexGuard<'_, VecDeque<busbar::Result<T>>> {
        self.buffered
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn pop(&self) -> Option<busbar::Result<T>> {
        self.buffered().pop_front()
    }

    /// The next buffered item that is a message or a notice to raise; a message that
    /// could not be decoded is logged and skipped, so iteration goes on after it.
    fn pop_reportable(&self) -> Option<busbar::Result<T>> {
        loop {
            match self.pop()? {
                Err(e) if e.code() == "decode" => log_undecodable(&self.throttle, &e),
                item => return Some(item),
            }
        }
    }

    /// How many messages are buffered here.
    pub(crate) fn len(&self) -> usize {
        self.buffered().len()
    }

    /// Discards the buffered messages.
    pub(crate) fn clear(&self) {
        self.buffered().clear();
    }

    /// Ends iteration and drops the core stream (once a waiting `__anext__` lets go of it)
    /// and what is buffered.
    pub(crate) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.returned.notify_one();
        self.stream.lock().await.take();
        self.clear();
    }

    /// The next message as an awaitable: at once from the buffer or from what the stream
    /// holds already, else an asyncio future; `StopAsyncIteration` once the stream ended.
    pub(crate) fn next<'py>(self: &Arc<Self>, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        if self.closed.load(Ordering::Acquire) {
            return Ready::error(py, PyStopAsyncIteration::new_err(()));
        }
        // Fast path: a message already buffered, or already queued in the core stream.
        let mut next = self.pop_reportable();
        while next.is_none() {
            let Ok(mut stream) = self.stream.try_lock() else {
                break;
            };
            let (first, ended) = py.detach(|| {
                let Some(stream) = stream.as_mut() else {
                    return (false, true);
                };
                let mut buffered = self.buffered();
                let ended = fill(stream, &mut buffered);
                (!buffered.is_empty(), ended)
            });
            drop(stream);
            next = self.pop_reportable();
            if next.is_none() && ended {
                return Ready::error(py, PyStopAsyncIteration::new_err(()));
            }
            if !first {
                break;
            }
        }
        match next {
            Some(Ok(msg)) => return Ready::value(py, msg.into_python(py)?),
            Some(Err(e)) => return Ready::error(py, to_py(e)),
            None => {}
        }
        let inbox = self.clone();
        runtime::spawn(py, async move {
            match wait_next(&inbox).await {
                Some(Ok(msg)) => Ok(Claim {
                    msg: Some(msg),
                    inbox: inbox.clone(),
                }),
                Some(Err(e)) => Err(to_py(e)),
                None => Err(PyStopAsyncIteration::new_err(())),
            }
        })
    }
}

/// Reports a message that could not be decoded (a foreign producer's) as a warning of the
/// `busbar` logger, as often as the core's [`Throttle`] allows: the first at once, then at
/// most one record a second, counting every message skipped since the previous record. Each
/// is counted in `stats()["undecodable"]` too, and iteration goes on.
fn log_undecodable(throttle: &Arc<StdMutex<Throttle>>, err: &busbar::Error) {
    let decision = lock(throttle).hit(1);
    match decision {
        Decision::Record(report) if report.notices == 1 => log_warning(format!(
            "busbar: skipped 1 message that could not be decoded: {err}"
        )),
        Decision::Record(report) => log_skipped(report.notices, err),
        Decision::FlushAfter(delay) => {
            let throttle = throttle.clone();
            let err = err.to_string();
            RUNTIME.spawn(async move {
                tokio::time::sleep(delay).await;
                let report = lock(&throttle).flush();
                if let Some(report) = report {
                    log_skipped(report.notices, &err);
                }
            });
        }
        Decision::Held => {}
    }
}

fn lock(throttle: &StdMutex<Throttle>) -> MutexGuard<'_, Throttle> {
    throttle.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The record for `skipped` messages (held back since the previous record).
fn log_skipped(skipped: u64, last: &dyn std::fmt::Display) {
    let messages = if skipped == 1 { "message" } else { "messages" };
    log_warning(format!(
        "busbar: skipped {skipped} {messages} that could not be decoded since the previous \
         record (at most one record a second; one of them: {last})"
    ));
}

fn log_warning(text: String) {
    let logged = crate::exit::attach(|py| {
        let logged = py
            .import("logging")
            .and_then(|logging| logging.call_method1("getLogger", ("busbar",)))
            .and_then(|logger| logger.call_method1("warning", ("%s", &text)));
        if let Err(e) = logged {
            e.write_unraisable(py, None);
        }
    });
    if logged.is_none() {
        eprintln!("WARN busbar: {text}"); // the interpreter exits: stderr, not lost
    }
}

/// Moves what `stream` holds right now (up to [`BATCH`]) into `buffered`, each notice in
/// its place between the batches (core's rule); true when the stream has ended.
fn fill<S, T>(stream: &mut Batches<S>, buffered: &mut VecDeque<busbar::Result<T>>) -> bool
where
    S: Stream<Item = busbar::Result<T>> + Unpin,
{
    let _runtime = RUNTIME.enter();
    let mut cx = Context::from_waker(Waker::noop());
    while buffered.len() < BATCH {
        match stream.poll_next_batch(&mut cx, BATCH - buffered.len()) {
            Poll::Ready(Some(Ok(batch))) => buffered.extend(batch.into_iter().map(Ok)),
            Poll::Ready(Some(Err(notice))) => buffered.push_back(Err(notice)),
            Poll::Ready(None) => return true,
            Poll::Pending => break,
        }
    }
    false
}

/// A message taken off the stream for a waiting `__anext__`. If that wait was cancelled
/// before the message reached Python, dropping the claim puts it back at the front of the
/// buffer, so a timed-out wait (`asyncio.wait_for(sub.__anext__(), t)`) loses nothing.
struct Claim<S, T>
where
    S: Stream<Item = busbar::Result<T>> + Unpin + Send + 'static,
    T: Delivered,
{
    msg: Option<T>,
    inbox: Arc<Inbox<S, T>>,
}

impl<S, T> Drop for Claim<S, T>
where
    S: Stream<Item = busbar::Result<T>> + Unpin + Send + 'static,
    T: Delivered,
{
    fn drop(&mut self) {
        if let Some(msg) = self.msg.take() {
            self.inbox.buffered().push_front(Ok(msg));
            self.inbox.returned.notify_one();
        }
    }
}

impl<'py, S, T> IntoPyObject<'py> for Claim<S, T>
where
    S: Stream<Item = busbar::Result<T>> + Unpin + Send + 'static,
    T: Delivered,
{
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(mut self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self.msg.take() {
            Some(msg) => msg.into_python(py),
            None => Err(PyRuntimeError::new_err("busbar: a message was claimed twice")),
        }
    }
}

/// Waits for the next item: from the buffer, or from the stream (then moving what else is
/// ready into the buffer). `None` once the stream has ended or the inbox was closed.
async fn wait_next<S, T>(inbox: &Arc<Inbox<S, T>>) -> Option<busbar::Result<T>>
where
    S: Stream<Item = busbar::Result<T>> + Unpin + Send + 'static,
    T: Delivered,
{
    let mut stream = inbox.stream.lock().await;
    loop {
        if inbox.closed.load(Ordering::Acquire) {
            return None;
        }
        if let Some(item) = inbox.pop_reportable() {
            return Some(item);
        }
        let stream = stream.as_mut()?;
        tokio::select! {
            read = stream.next_batch(BATCH) => {
                let mut buffered = inbox.buffered();
                match read? {
                    Ok(batch) => buffered.extend(batch.into_iter().map(Ok)),
                    Err(notice) => buffered.push_back(Err(notice)),
                }
                fill(stream, &mut buffered);
            }
            _ = inbox.returned.notified() => {}
        }
    }
}

type Messages = Inbox<busbar::Subscription, busbar::Message>;

/// Messages on a pattern: `async for msg in sub`. `async with` unsubscribes at the end.
#[pyclass(frozen, module = "busbar", name = "Subscription")]
pub struct Subscription {
    inbox: Arc<Messages>,
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
            inbox: Inbox::new(sub),
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
        self.inbox.next(py)
    }

    /// Stops delivery at once; buffered messages are discarded and iteration ends.
    fn unsubscribe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        let inbox = self.inbox.clone();
        runtime::run(py, async move {
            handle.unsubscribe().await?;
            inbox.clear();
            Ok(())
        })
    }

    /// Stops new deliveries; iteration yields what is already queued, then ends.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        runtime::run(py, async move { handle.drain().await })
    }

    /// Counters: delivered, missed, pending (queued in core plus buffered here),
    /// pending_bytes, undecodable, lagging.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.handle.stats();
        let buffered = self.inbox.len() as u64;
        let dict = PyDict::new(py);
        dict.set_item("delivered", s.delivered)?;
        dict.set_item("missed", s.missed)?;
        dict.set_item("pending", s.pending + buffered)?;
        dict.set_item("pending_bytes", s.pending_bytes)?;
        dict.set_item("undecodable", s.undecodable)?;
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
