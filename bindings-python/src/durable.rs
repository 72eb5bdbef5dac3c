//! Durable streams (core's `durable` module) for Python: what `Bus.declare_stream`,
//! `stream_info`, `publish_durable` and `durable_subscribe` take and return, and
//! `DurableMessage`'s ack/nak/term. Conversion only: every check, the backoff and the
//! dead-lettering are core's.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use busbar::{ConsumerOptions, EventBus, StartAt, StreamOptions};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDateTime, PyDict, PyInt, PyString, PyTuple};
use pyo3::PyClassInitializer;

use crate::args::{self, count, duration, given, number, seconds, type_error, PublishKw};
use crate::message::{Held, Message};
use crate::runtime::{self, Ready};
use crate::subscription::{Delivered, Inbox};

/// What a durable stream holds now (`Bus.declare_stream`, `Bus.stream_info`).
#[pyclass(frozen, module = "busbar", name = "StreamInfo")]
pub struct StreamInfo {
    /// Name of the stream.
    #[pyo3(get)]
    name: String,
    /// Subject patterns whose messages it stores.
    #[pyo3(get)]
    subjects: Vec<String>,
    /// Messages stored.
    #[pyo3(get)]
    messages: u64,
    /// Bytes stored.
    #[pyo3(get)]
    bytes: u64,
    /// Sequence of the oldest stored message (0 when empty).
    #[pyo3(get)]
    first_sequence: u64,
    /// Sequence of the newest stored message (0 when nothing was ever stored).
    #[pyo3(get)]
    last_sequence: u64,
}

impl From<busbar::StreamInfo> for StreamInfo {
    fn from(i: busbar::StreamInfo) -> Self {
        StreamInfo {
            name: i.name,
            subjects: i.subjects,
            messages: i.messages,
            bytes: i.bytes,
            first_sequence: i.first_sequence,
            last_sequence: i.last_sequence,
        }
    }
}

#[pymethods]
impl StreamInfo {
    fn __repr__(&self) -> String {
        format!(
            "<busbar.StreamInfo name={:?} messages={} bytes={} first_sequence={} last_sequence={}>",
            self.name, self.messages, self.bytes, self.first_sequence, self.last_sequence
        )
    }
}

/// Where a durable consumer stands now (`Bus.consumer_info`, `Bus.list_consumers`).
#[pyclass(frozen, module = "busbar", name = "ConsumerInfo")]
pub struct ConsumerInfo {
    /// Stream it reads.
    #[pyo3(get)]
    stream: String,
    /// Durable name of the consumer.
    #[pyo3(get)]
    name: String,
    /// The subject pattern it is limited to; None for all of the stream.
    #[pyo3(get)]
    filter: Option<String>,
    /// Stored messages matching its filter not delivered to it yet.
    #[pyo3(get)]
    pending: u64,
    /// Messages delivered to it and not yet settled.
    #[pyo3(get)]
    ack_pending: u64,
    /// Stream sequence of the last message delivered to it (0 before the first).
    #[pyo3(get)]
    delivered_sequence: u64,
}

impl From<busbar::ConsumerInfo> for ConsumerInfo {
    fn from(i: busbar::ConsumerInfo) -> Self {
        ConsumerInfo {
            stream: i.stream,
            name: i.name,
            filter: i.filter,
            pending: i.pending,
            ack_pending: i.ack_pending,
            delivered_sequence: i.delivered_sequence,
        }
    }
}

#[pymethods]
impl ConsumerInfo {
    fn __repr__(&self) -> String {
        format!(
            "<busbar.ConsumerInfo stream={:?} name={:?} filter={:?} pending={} ack_pending={} delivered_sequence={}>",
            self.stream, self.name, self.filter, self.pending, self.ack_pending, self.delivered_sequence
        )
    }
}

/// The broker's acknowledgement of `Bus.publish_durable`.
#[pyclass(frozen, module = "busbar", name = "PublishAck")]
pub struct PublishAck {
    /// Stream that stored the message.
    #[pyo3(get)]
    stream: String,
    /// Its sequence in that stream (of the first copy, for a duplicate).
    #[pyo3(get)]
    sequence: u64,
    /// Whether a message with the same id was already stored inside the dedupe window.
    #[pyo3(get)]
    duplicate: bool,
}

#[pymethods]
impl PublishAck {
    fn __repr__(&self) -> String {
        format!(
            "<busbar.PublishAck stream={:?} sequence={} duplicate={}>",
            self.stream,
            self.sequence,
            if self.duplicate { "True" } else { "False" }
        )
    }
}

/// `subjects`: one pattern, or a list or tuple of them.
fn subjects(value: &Bound<'_, PyAny>) -> PyResult<Vec<String>> {
    args::texts(value, "declare_stream(): subjects")
}

/// `start`: `None`, `"beginning"`, `"new"`, a sequence number or a datetime.
fn start(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<StartAt>> {
    const WHAT: &str = "durable_subscribe(): start";
    let Some(v) = given(value) else {
        return Ok(None);
    };
    if let Ok(s) = v.cast::<PyString>() {
        return match s.to_str()? {
            "beginning" => Ok(Some(StartAt::Beginning)),
            "new" => Ok(Some(StartAt::New)),
            other => Err(PyValueError::new_err(format!(
                "{WHAT} must be \"beginning\", \"new\", a sequence number or a datetime, not {other:?}"
            ))),
        };
    }
    if v.is_instance_of::<PyInt>() && !v.is_instance_of::<PyBool>() {
        return Ok(count::<u64>(Some(v), WHAT)?.map(StartAt::Sequence));
    }
    if v.is_instance_of::<PyDateTime>() {
        let since_epoch: f64 = v.call_method0("timestamp")?.extract()?;
        let at = Duration::try_from_secs_f64(since_epoch)
            .ok()
            .and_then(|d| UNIX_EPOCH.checked_add(d))
            .ok_or_else(|| PyValueError::new_err(format!("{WHAT} must not be before 1970, got {v}")))?;
        return Ok(Some(StartAt::Time(at)));
    }
    Err(type_error(
        WHAT,
        "None, \"beginning\", \"new\", an int sequence or a datetime",
        v,
    ))
}

/// `backoff`: a tuple `(base seconds, factor, cap seconds)`.
fn backoff(value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<(Duration, f64, Duration)>> {
    const WHAT: &str = "durable_subscribe(): backoff";
    let Some(v) = given(value) else {
        return Ok(None);
    };
    let parts = v.cast::<PyTuple>().ok().filter(|t| t.len() == 3);
    let Some(parts) = parts else {
        return Err(type_error(WHAT, "a tuple (base seconds, factor, cap seconds)", v));
    };
    let base = seconds(number(&parts.get_item(0)?, WHAT)?, WHAT)?;
    let factor = number(&parts.get_item(1)?, WHAT)?;
    let cap = seconds(number(&parts.get_item(2)?, WHAT)?, WHAT)?;
    Ok(Some((base, factor, cap)))
}

/// The stream limits `declare_stream` takes as keywords.
pub(crate) struct StreamLimits<'a, 'py> {
    pub(crate) max_age: Option<&'a Bound<'py, PyAny>>,
    pub(crate) max_bytes: Option<&'a Bound<'py, PyAny>>,
    pub(crate) max_messages: Option<&'a Bound<'py, PyAny>>,
    pub(crate) duplicate_window: Option<&'a Bound<'py, PyAny>>,
}

/// `await bus.declare_stream(name, subjects, **limits)` → `StreamInfo`.
pub(crate) fn declare_stream<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    name: &Bound<'py, PyAny>,
    subjects_: &Bound<'py, PyAny>,
    l: StreamLimits<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut limits = StreamOptions::new();
    limits.max_age = duration(l.max_age, "declare_stream(): max_age")?;
    limits.max_bytes = count(l.max_bytes, "declare_stream(): max_bytes")?;
    limits.max_messages = count(l.max_messages, "declare_stream(): max_messages")?;
    limits.duplicate_window = duration(l.duplicate_window, "declare_stream(): duplicate_window")?;
    let config = limits.config(args::text(name, "declare_stream(): name")?, subjects(subjects_)?);
    let bus = bus.clone();
    runtime::run(py, async move {
        bus.declare_stream(config).await.map(StreamInfo::from)
    })
}

/// `await bus.stream_info(name)` → `StreamInfo`.
pub(crate) fn stream_info<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    name: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let name = args::text(name, "stream_info(): name")?.to_owned();
    let bus = bus.clone();
    runtime::run(
        py,
        async move { bus.stream_info(&name).await.map(StreamInfo::from) },
    )
}

/// `await bus.list_streams()` → `list[StreamInfo]`, sorted by name.
pub(crate) fn list_streams<'py>(py: Python<'py>, bus: &Arc<dyn EventBus>) -> PyResult<Bound<'py, PyAny>> {
    let bus = bus.clone();
    runtime::run(py, async move {
        let infos = bus.list_streams().await?;
        Ok(infos.into_iter().map(StreamInfo::from).collect::<Vec<_>>())
    })
}

/// `await bus.delete_stream(name)` → `None`.
pub(crate) fn delete_stream<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    name: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let name = args::text(name, "delete_stream(): name")?.to_owned();
    let bus = bus.clone();
    runtime::run(py, async move { bus.delete_stream(&name).await })
}

/// `await bus.list_consumers(stream)` → `list[ConsumerInfo]`, sorted by name.
pub(crate) fn list_consumers<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    stream: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let stream = args::text(stream, "list_consumers(): stream")?.to_owned();
    let bus = bus.clone();
    runtime::run(py, async move {
        let infos = bus.list_consumers(&stream).await?;
        Ok(infos.into_iter().map(ConsumerInfo::from).collect::<Vec<_>>())
    })
}

/// The (stream, name) text arguments of the consumer calls.
fn consumer_args(
    stream: &Bound<'_, PyAny>,
    name: &Bound<'_, PyAny>,
    call: &str,
) -> PyResult<(String, String)> {
    Ok((
        args::text(stream, &format!("{call}(): stream"))?.to_owned(),
        args::text(name, &format!("{call}(): name"))?.to_owned(),
    ))
}

/// `await bus.consumer_info(stream, name)` → `ConsumerInfo`.
pub(crate) fn consumer_info<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    stream: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (stream, name) = consumer_args(stream, name, "consumer_info")?;
    let bus = bus.clone();
    runtime::run(py, async move {
        bus.consumer_info(&stream, &name).await.map(ConsumerInfo::from)
    })
}

/// `await bus.delete_consumer(stream, name)` → `None`.
pub(crate) fn delete_consumer<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    stream: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (stream, name) = consumer_args(stream, name, "delete_consumer")?;
    let bus = bus.clone();
    runtime::run(py, async move { bus.delete_consumer(&stream, &name).await })
}

/// `await bus.publish_durable(subject, data, **publish keywords)` → `PublishAck`; the
/// message is built exactly as `publish` builds it (`id` for deduplication).
pub(crate) fn publish_durable<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    subject: &Bound<'py, PyAny>,
    data: Option<&Bound<'py, PyAny>>,
    kw: PublishKw<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let subject = args::text(subject, "publish_durable(): subject")?;
    let options = kw.options("publish_durable()")?;
    let msg = options.build(bus.message(subject), args::payload(data)?);
    let bus = bus.clone();
    runtime::run(py, async move {
        let ack = bus.publish_durable(msg?).await?;
        Ok(PublishAck {
            stream: ack.stream,
            sequence: ack.sequence,
            duplicate: ack.duplicate,
        })
    })
}

/// The consumer settings `durable_subscribe` takes as keywords.
pub(crate) struct ConsumerKw<'a, 'py> {
    pub(crate) filter: Option<&'a Bound<'py, PyAny>>,
    pub(crate) start: Option<&'a Bound<'py, PyAny>>,
    pub(crate) ack_wait: Option<&'a Bound<'py, PyAny>>,
    pub(crate) max_deliver: Option<&'a Bound<'py, PyAny>>,
    pub(crate) backoff: Option<&'a Bound<'py, PyAny>>,
    pub(crate) dlq_prefix: Option<&'a Bound<'py, PyAny>>,
    pub(crate) rate_limit: Option<&'a Bound<'py, PyAny>>,
    pub(crate) max_ack_pending: Option<&'a Bound<'py, PyAny>>,
}

/// `await bus.durable_subscribe(stream, name, **options)` → `DurableSubscription`.
pub(crate) fn durable_subscribe<'py>(
    py: Python<'py>,
    bus: &Arc<dyn EventBus>,
    stream: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
    o: ConsumerKw<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let config = consumer_config(stream, name, o, "durable_subscribe()")?;
    let bus = bus.clone();
    runtime::run(py, async move {
        bus.durable_subscribe(config).await.map(DurableSubscription::new)
    })
}

/// `await bus.durable_subscribe_as(principal, stream, name, roles=..., **options)`: the
/// same consumer through the policy layer, each message masked for the principal.
pub(crate) fn durable_subscribe_as<'py>(
    py: Python<'py>,
    policy: Arc<busbar::policy::PolicyBus>,
    who: busbar::policy::Principal,
    stream: &Bound<'py, PyAny>,
    name: &Bound<'py, PyAny>,
    o: ConsumerKw<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let config = consumer_config(stream, name, o, "durable_subscribe_as()")?;
    runtime::run(py, async move {
        policy
            .durable_subscribe_as(&who, config)
            .await
            .map(DurableSubscription::new)
    })
}

/// Core's `ConsumerConfig` from a durable subscribe's arguments; errors name `call`.
fn consumer_config(
    stream: &Bound<'_, PyAny>,
    name: &Bound<'_, PyAny>,
    o: ConsumerKw<'_, '_>,
    call: &str,
) -> PyResult<busbar::ConsumerConfig> {
    let mut c = ConsumerOptions::new();
    c.filter = given(o.filter)
        .map(|f| Ok::<_, PyErr>(args::text(f, &format!("{call}: filter"))?.to_owned()))
        .transpose()?;
    c.start = start(o.start)?;
    c.ack_wait = duration(o.ack_wait, &format!("{call}: ack_wait"))?;
    c.max_deliver = count(o.max_deliver, &format!("{call}: max_deliver"))?;
    if let Some((base, factor, cap)) = backoff(o.backoff)? {
        (c.backoff_base, c.backoff_factor, c.backoff_cap) = (Some(base), Some(factor), Some(cap));
    }
    c.dlq_prefix = given(o.dlq_prefix)
        .map(|p| Ok::<_, PyErr>(args::text(p, &format!("{call}: dlq_prefix"))?.to_owned()))
        .transpose()?;
    c.rate_limit = given(o.rate_limit)
        .map(|r| number(r, &format!("{call}: rate_limit")))
        .transpose()?;
    c.max_ack_pending = count(o.max_ack_pending, &format!("{call}: max_ack_pending"))?;
    Ok(c.config(
        args::text(stream, &format!("{call}: stream"))?,
        args::text(name, &format!("{call}: name"))?,
    ))
}

type Deliveries = Inbox<busbar::DurableSubscription, busbar::DurableMessage>;

/// The messages of a durable consumer: `async for msg in sub` yields `DurableMessage`s.
/// `async with` (or `unsubscribe()`) stops the deliveries; what was delivered but not settled
/// is redelivered after `ack_wait`.
#[pyclass(frozen, module = "busbar", name = "DurableSubscription")]
pub struct DurableSubscription {
    inbox: Arc<Deliveries>,
    handle: busbar::DurableHandle,
    stream: String,
    name: String,
}

impl DurableSubscription {
    fn new(sub: busbar::DurableSubscription) -> Self {
        DurableSubscription {
            stream: sub.config().stream.clone(),
            name: sub.config().name.clone(),
            handle: sub.handle(),
            inbox: Inbox::new(sub),
        }
    }
}

#[pymethods]
impl DurableSubscription {
    /// The stream this consumer reads.
    #[getter]
    fn stream(&self) -> &str {
        &self.stream
    }

    /// The durable name of the consumer.
    #[getter]
    fn name(&self) -> &str {
        &self.name
    }

    fn __aiter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// The next delivery; `StopAsyncIteration` once closed or the bus is closed.
    fn __anext__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.inbox.next(py)
    }

    /// Stops the deliveries at once; iteration ends. Unsettled messages are redelivered
    /// after `ack_wait`.
    fn unsubscribe<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let inbox = self.inbox.clone();
        let handle = self.handle.clone();
        runtime::run(py, async move {
            handle.unsubscribe().await?;
            inbox.close().await;
            Ok(())
        })
    }

    /// Stops the deliveries (iteration ends after what is already queued here), then
    /// waits until every message handed out is settled, at most `ack_wait`. Await it from
    /// another task than the one settling the messages.
    fn drain<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let handle = self.handle.clone();
        runtime::run(py, async move { handle.drain().await })
    }

    /// Counters: delivered, undecodable, unsettled.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.handle.stats();
        let dict = PyDict::new(py);
        dict.set_item("delivered", s.delivered)?;
        dict.set_item("undecodable", s.undecodable)?;
        dict.set_item("unsettled", s.unsettled)?;
        Ok(dict)
    }

    fn __aenter__<'py>(slf: Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Ready::value(slf.py(), slf.into_any())
    }

    #[pyo3(signature = (*_exc))]
    fn __aexit__<'py>(&self, py: Python<'py>, _exc: &Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        self.unsubscribe(py)
    }

    fn __repr__(&self) -> String {
        format!(
            "<busbar.DurableSubscription stream={:?} name={:?}>",
            self.stream, self.name
        )
    }
}

impl Delivered for busbar::DurableMessage {
    fn into_python(self, py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
        let durable = Arc::new(self);
        let init = PyClassInitializer::from(Message {
            inner: Held::Durable(durable.clone()),
        })
        .add_subclass(DurableMessage { durable });
        Ok(Bound::new(py, init)?.into_any())
    }
}

/// A message from a durable stream: a `Message` plus its delivery. Settle it with one of
/// `ack()`, `nak()` or `term()`; settling twice raises `InvalidArgument`.
#[pyclass(frozen, extends = Message, module = "busbar", name = "DurableMessage")]
pub struct DurableMessage {
    durable: Arc<busbar::DurableMessage>,
}

#[pymethods]
impl DurableMessage {
    /// Which delivery attempt this is, from 1.
    #[getter]
    fn attempt(&self) -> u32 {
        self.durable.attempt()
    }

    /// The message's sequence in its stream.
    #[getter]
    fn sequence(&self) -> u64 {
        self.durable.sequence()
    }

    /// The stream the message comes from.
    #[getter]
    fn stream(&self) -> &str {
        self.durable.stream()
    }

    /// Processed: the message is not delivered again. Awaitable.
    fn ack<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.durable.clone();
        runtime::run(py, async move { m.ack().await })
    }

    /// Not processed now: redelivered after `delay` seconds, or after the consumer's
    /// backoff when `None`; dead-lettered instead on the last allowed attempt. Awaitable.
    #[pyo3(signature = (delay = None))]
    fn nak<'py>(&self, py: Python<'py>, delay: Option<&Bound<'py, PyAny>>) -> PyResult<Bound<'py, PyAny>> {
        let delay = duration(delay, "nak(): delay")?;
        let m = self.durable.clone();
        runtime::run(py, async move { m.nak(delay).await })
    }

    /// Cannot ever be processed: dead-lettered at once with `reason`. Awaitable.
    fn term<'py>(&self, py: Python<'py>, reason: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let reason = args::text(reason, "term(): reason")?.to_owned();
        let m = self.durable.clone();
        runtime::run(py, async move { m.term(&reason).await })
    }

    /// Still working: restarts the `ack_wait` clock of this delivery. Awaitable.
    fn in_progress<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let m = self.durable.clone();
        runtime::run(py, async move { m.in_progress().await })
    }

    fn __repr__(&self) -> String {
        format!(
            "<busbar.DurableMessage stream={:?} sequence={} attempt={} subject={:?} id={:?}>",
            self.durable.stream(),
            self.durable.sequence(),
            self.durable.attempt(),
            self.durable.subject(),
            self.durable.id()
        )
    }
}
