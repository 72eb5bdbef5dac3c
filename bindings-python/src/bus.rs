//! `busbar.Bus`: the EventBus calls as awaitables.

use std::sync::Arc;

use busbar::EventBus;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::args::{self, seconds, PublishKw};
use crate::durable;
use crate::message::Message;
use crate::runtime::{self, Ready};
use crate::subscription::Subscription;

/// A connected bus. Use it as `async with await busbar.connect() as bus:` to close it.
#[pyclass(frozen, module = "busbar", name = "Bus")]
pub struct Bus {
    bus: Arc<dyn EventBus>,
}

impl Bus {
    pub(crate) fn new(bus: Arc<dyn EventBus>) -> Self {
        Bus { bus }
    }
}

#[pymethods]
impl Bus {
    /// Publishes `data` (bytes, str, or a JSON-serialisable object) to `subject`, with
    /// optional attributes and headers (core's `PublishOptions`).
    #[pyo3(signature = (subject, data = None, *, headers = None, id = None, event_type = None, content_type = None, correlation_id = None, classification = None, traceparent = None, tracestate = None))]
    #[allow(clippy::too_many_arguments)]
    fn publish<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
        event_type: Option<&Bound<'py, PyAny>>,
        content_type: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        classification: Option<&Bound<'py, PyAny>>,
        traceparent: Option<&Bound<'py, PyAny>>,
        tracestate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let subject = args::text(subject, "publish(): subject")?.to_owned();
        let options = PublishKw {
            headers,
            id,
            event_type,
            content_type,
            correlation_id,
            classification,
            traceparent,
            tracestate,
        }
        .options("publish()")?;
        let payload = args::payload(data)?;
        let bus = self.bus.clone();
        runtime::run(
            py,
            async move { bus.publish_with(&subject, payload, options).await },
        )
    }

    /// Receives every message whose subject matches `pattern`. Awaitable.
    fn subscribe<'py>(&self, py: Python<'py>, pattern: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let pattern = args::text(pattern, "subscribe(): pattern")?.to_owned();
        let bus = self.bus.clone();
        runtime::run(
            py,
            async move { bus.subscribe(&pattern).await.map(Subscription::new) },
        )
    }

    /// Receives matching messages as one member of `group`. Awaitable.
    fn queue_subscribe<'py>(
        &self,
        py: Python<'py>,
        pattern: &Bound<'py, PyAny>,
        group: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let pattern = args::text(pattern, "queue_subscribe(): pattern")?.to_owned();
        let group = args::text(group, "queue_subscribe(): group")?.to_owned();
        let bus = self.bus.clone();
        runtime::run(py, async move {
            bus.queue_subscribe(&pattern, &group).await.map(Subscription::new)
        })
    }

    /// Sends a request and returns the reply `Message`; raises `NoResponders` at once when
    /// nothing listens, `Timeout` after `timeout` seconds (`None`: core's default). `id` is
    /// the request's id, which the reply echoes as its `correlation_id`. Awaitable.
    #[pyo3(signature = (subject, data = None, *, timeout = None, headers = None, id = None))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        timeout: Option<f64>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let timeout = timeout.map_or(Ok(busbar::publish::DEFAULT_REQUEST_TIMEOUT), |t| {
            seconds(t, "request(): timeout")
        })?;
        let options = PublishKw {
            headers,
            id,
            ..PublishKw::default()
        }
        .options("request()")?;
        let payload = args::payload(data)?;
        let subject = args::text(subject, "request(): subject")?.to_owned();
        let bus = self.bus.clone();
        runtime::run(py, async move {
            bus.request_with(&subject, payload, options, timeout)
                .await
                .map(Message::from)
        })
    }

    /// Declares a durable stream over subject patterns (idempotent); returns its
    /// `StreamInfo`. Durations in seconds. Awaitable.
    #[pyo3(signature = (name, subjects, *, max_age = None, max_bytes = None, max_messages = None, duplicate_window = None))]
    #[allow(clippy::too_many_arguments)]
    fn declare_stream<'py>(
        &self,
        py: Python<'py>,
        name: &Bound<'py, PyAny>,
        subjects: &Bound<'py, PyAny>,
        max_age: Option<&Bound<'py, PyAny>>,
        max_bytes: Option<&Bound<'py, PyAny>>,
        max_messages: Option<&Bound<'py, PyAny>>,
        duplicate_window: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let limits = durable::StreamLimits {
            max_age,
            max_bytes,
            max_messages,
            duplicate_window,
        };
        durable::declare_stream(py, &self.bus, name, subjects, limits)
    }

    /// What a durable stream holds now, as a `StreamInfo`. Awaitable.
    fn stream_info<'py>(&self, py: Python<'py>, name: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        durable::stream_info(py, &self.bus, name)
    }

    /// Stores a message in the durable stream that captures `subject` and returns the
    /// `PublishAck`; a repeated `id` inside the dedupe window is stored once. Takes the
    /// keywords of `publish`. Awaitable.
    #[pyo3(signature = (subject, data = None, *, headers = None, id = None, event_type = None, content_type = None, correlation_id = None, classification = None, traceparent = None, tracestate = None))]
    #[allow(clippy::too_many_arguments)]
    fn publish_durable<'py>(
        &self,
        py: Python<'py>,
        subject: &Bound<'py, PyAny>,
        data: Option<&Bound<'py, PyAny>>,
        headers: Option<&Bound<'py, PyAny>>,
        id: Option<&Bound<'py, PyAny>>,
        event_type: Option<&Bound<'py, PyAny>>,
        content_type: Option<&Bound<'py, PyAny>>,
        correlation_id: Option<&Bound<'py, PyAny>>,
        classification: Option<&Bound<'py, PyAny>>,
        traceparent: Option<&Bound<'py, PyAny>>,
        tracestate: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let kw = PublishKw {
            headers,
            id,
            event_type,
            content_type,
            correlation_id,
            classification,
            traceparent,
            tracestate,
        };
        durable::publish_durable(py, &self.bus, subject, data, kw)
    }

    /// Opens durable consumer `name` on `stream`: a `DurableSubscription`. Awaitable.
    #[pyo3(signature = (stream, name, *, filter = None, start = None, ack_wait = None, max_deliver = None, backoff = None, dlq_prefix = None, rate_limit = None, max_ack_pending = None))]
    #[allow(clippy::too_many_arguments)]
    fn durable_subscribe<'py>(
        &self,
        py: Python<'py>,
        stream: &Bound<'py, PyAny>,
        name: &Bound<'py, PyAny>,
        filter: Option<&Bound<'py, PyAny>>,
        start: Option<&Bound<'py, PyAny>>,
        ack_wait: Option<&Bound<'py, PyAny>>,
        max_deliver: Option<&Bound<'py, PyAny>>,
        backoff: Option<&Bound<'py, PyAny>>,
        dlq_prefix: Option<&Bound<'py, PyAny>>,
        rate_limit: Option<&Bound<'py, PyAny>>,
        max_ack_pending: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = durable::ConsumerKw {
            filter,
            start,
            ack_wait,
            max_deliver,
            backoff,
            dlq_prefix,
            rate_limit,
            max_ack_pending,
        };
        durable::durable_subscribe(py, &self.bus, stream, name, options)
    }

    /// Returns once everything published before has reached the bus (on NATS: the server).
    fn flush<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bus = self.bus.clone();
        runtime::run(py, async move { bus.flush().await })
    }

    /// Closes the bus: subscriptions end after what they hold; later calls raise `Closed`.
    fn close<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let bus = self.bus.clone();
        runtime::run(py, async move { bus.close().await })
    }

    /// `"memory"`, `"nats"` or `"rabbitmq"`.
    #[getter]
    fn backend(&self) -> String {
        self.bus.backend().to_string()
    }

    /// Counters of this bus: published, delivered, missed, late_replies, rejected_replies,
    /// undecodable, disconnects, subscriptions.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.bus.stats();
        let dict = PyDict::new(py);
        dict.set_item("published", s.published)?;
        dict.set_item("delivered", s.delivered)?;
        dict.set_item("missed", s.missed)?;
        dict.set_item("late_replies", s.late_replies)?;
        dict.set_item("rejected_replies", s.rejected_replies)?;
        dict.set_item("undecodable", s.undecodable)?;
        dict.set_item("disconnects", s.disconnects)?;
        dict.set_item("subscriptions", s.subscriptions)?;
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
        self.close(py)
    }

    fn __repr__(&self) -> String {
        format!("<busbar.Bus backend={}>", self.bus.backend())
    }
}
