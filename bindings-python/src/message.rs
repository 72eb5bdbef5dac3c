//! `busbar.Message`: a received event, and the conversion of Python payloads to bytes.

use std::ops::Deref;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::args::{self, json_fn, PublishKw, JSON_LOADS};
use crate::error::to_py;
use crate::runtime;

/// What a `Message` reads: a plain message, or the message of a durable delivery (which a
/// `DurableMessage`, the subclass, also holds to settle it).
pub(crate) enum Held {
    Plain(busbar::Message),
    Durable(Arc<busbar::DurableMessage>),
}

impl Deref for Held {
    type Target = busbar::Message;
    fn deref(&self) -> &busbar::Message {
        match self {
            Held::Plain(m) => m,
            Held::Durable(d) => d.message(),
        }
    }
}

/// One event received from a subscription or as a reply. Read-only. `DurableMessage`
/// extends it with the delivery's attempt, sequence and ack/nak/term.
#[pyclass(frozen, subclass, module = "busbar", name = "Message")]
pub struct Message {
    pub(crate) inner: Held,
}

impl From<busbar::Message> for Message {
    fn from(inner: busbar::Message) -> Self {
        Message {
            inner: Held::Plain(inner),
        }
    }
}

#[pymethods]
impl Message {
    /// The subject the event was published to.
    #[getter]
    fn subject(&self) -> &str {
        self.inner.subject()
    }
    /// The payload.
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.data())
    }
    /// The free user headers (a new dict each time).
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        for (k, v) in self.inner.headers() {
            dict.set_item(k, v)?;
        }
        Ok(dict)
    }
    /// CloudEvents `id`.
    #[getter]
    fn id(&self) -> &str {
        self.inner.id()
    }
    /// `correlationid`: on a reply, the id of its request.
    #[getter]
    fn correlation_id(&self) -> Option<&str> {
        self.inner.correlation_id()
    }
    /// Where a reply goes; `None` unless this is a request.
    #[getter]
    fn reply_to(&self) -> Option<&str> {
        self.inner.reply_to()
    }
    /// CloudEvents `source`.
    #[getter]
    fn source(&self) -> &str {
        self.inner.source()
    }
    /// CloudEvents `type`.
    #[getter]
    fn event_type(&self) -> &str {
        self.inner.event_type()
    }
    /// CloudEvents `datacontenttype`.
    #[getter]
    fn content_type(&self) -> Option<&str> {
        self.inner.content_type()
    }
    /// CloudEvents `time`, in seconds since the Unix epoch.
    #[getter]
    fn time(&self) -> f64 {
        self.inner
            .time()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    }
    /// W3C `traceparent`.
    #[getter]
    fn traceparent(&self) -> Option<&str> {
        self.inner.traceparent()
    }
    /// W3C `tracestate`.
    #[getter]
    fn tracestate(&self) -> Option<&str> {
        self.inner.tracestate()
    }
    /// `classification`, e.g. `"phi,pii"`.
    #[getter]
    fn classification(&self) -> Option<&str> {
        self.inner.classification()
    }
    /// `keyid`: the key that sealed protected fields; `None` when nothing is sealed.
    #[getter]
    fn keyid(&self) -> Option<&str> {
        self.inner.keyid()
    }

    /// The payload parsed as JSON.
    fn json<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // Undecodable: busbar's DecodeError (code `decode`, as in every language), which is
        // also a ValueError, as json.JSONDecodeError is.
        json_fn(py, &JSON_LOADS, "loads")?
            .call1((PyBytes::new(py, self.inner.data()),))
            .map_err(|e| {
                to_py(busbar::Error::Decode(format!(
                    "message {} is not JSON: {}",
                    self.inner.id(),
                    e.value(py)
                )))
            })
    }

    /// Answers this request; the reply echoes its correlation id. Awaitable.
    #[pyo3(signature = (data, *, headers = None))]
    fn respond<'py>(
        &self,
        py: Python<'py>,
        data: &Bound<'py, PyAny>,
        headers: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let options = PublishKw {
            headers,
            ..PublishKw::default()
        }
        .options("respond()")?;
        let reply = options
            .reply(&self.inner, args::payload(Some(data))?)
            .map_err(to_py)?;
        let request = busbar::Message::clone(&self.inner);
        runtime::run(py, async move { request.respond_message(reply).await })
    }

    fn __repr__(&self) -> String {
        format!(
            "<busbar.Message subject={:?} id={:?} {} bytes>",
            self.inner.subject(),
            self.inner.id(),
            self.inner.data().len()
        )
    }
}
