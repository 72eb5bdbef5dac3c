//! `busbar.Message`: a received event, and the conversion of Python payloads to bytes.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use busbar::Bytes;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyByteArray, PyBytes, PyDict, PyString};

use crate::awaitable;
use crate::error::to_py;

/// A payload as core takes it, and the `datacontenttype` it implies (JSON for objects).
pub(crate) struct Payload {
    pub(crate) data: Bytes,
    pub(crate) content_type: Option<&'static str>,
}

static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn json_fn<'py>(py: Python<'py>, cell: &PyOnceLock<Py<PyAny>>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    cell.get_or_try_init(py, || Ok::<_, PyErr>(py.import("json")?.getattr(name)?.unbind()))
        .map(|f| f.bind(py).clone())
}

/// `value` as text, or a TypeError naming the argument: `"publish(): subject must be a str, not int"`.
pub(crate) fn text<'a>(value: &'a Bound<'_, PyAny>, what: &str) -> PyResult<&'a str> {
    match value.cast::<PyString>() {
        Ok(s) => s.to_str(),
        Err(_) => Err(PyTypeError::new_err(format!(
            "{what} must be a str, not {}",
            value.get_type().name()?
        ))),
    }
}

/// bytes / bytearray / memoryview as they are, str as UTF-8, anything else as JSON;
/// no data is an empty payload.
pub(crate) fn payload(data: Option<&Bound<'_, PyAny>>) -> PyResult<Payload> {
    let Some(data) = data else {
        return Ok(Payload {
            data: Bytes::new(),
            content_type: None,
        });
    };
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Payload {
            data: Bytes::copy_from_slice(b.as_bytes()),
            content_type: None,
        });
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(Payload {
            data: Bytes::copy_from_slice(s.to_str()?.as_bytes()),
            content_type: None,
        });
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(Payload {
            data: Bytes::from(b.to_vec()),
            content_type: None,
        });
    }
    if let Ok(buf) = pyo3::buffer::PyBuffer::<u8>::get(data) {
        return Ok(Payload {
            data: Bytes::from(buf.to_vec(data.py())?),
            content_type: None,
        });
    }
    let py = data.py();
    // Strict JSON, as json.dumps(allow_nan=False): NaN and infinities have no JSON form.
    let strict = [("allow_nan", false)].into_py_dict(py)?;
    let text = json_fn(py, &JSON_DUMPS, "dumps")?
        .call((data,), Some(&strict))
        .map_err(|e| {
            let kind = data.get_type().name().map(|n| n.to_string()).unwrap_or_default();
            if e.is_instance_of::<PyValueError>(py) {
                to_py(busbar::Error::InvalidArgument(format!(
                    "data is not valid JSON ({kind}): {}",
                    e.value(py)
                )))
            } else {
                PyTypeError::new_err(format!(
                    "data must be bytes, str or a JSON-serialisable object; {kind}: {e}"
                ))
            }
        })?;
    let text = text.cast::<PyString>()?.to_str()?.as_bytes().to_vec();
    Ok(Payload {
        data: Bytes::from(text),
        content_type: Some("application/json"),
    })
}

/// `headers=` as core takes them: `None`, or a dict of str to str (else a TypeError
/// naming the call, e.g. `"publish(): headers must be a dict of str to str, not list"`).
pub(crate) fn headers(
    value: Option<&Bound<'_, PyAny>>,
    what: &str,
) -> PyResult<Option<BTreeMap<String, String>>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let Ok(dict) = value.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a dict of str to str, not {}",
            value.get_type().name()?
        )));
    };
    let mut out = BTreeMap::new();
    for (k, v) in dict.iter() {
        let name = text(&k, &format!("{what} key"))?.to_owned();
        let value = text(&v, &format!("{what}[{name:?}]"))?.to_owned();
        out.insert(name, value);
    }
    Ok(Some(out))
}

/// A core message built from Python arguments: subject, payload and optional headers.
pub(crate) fn build(
    builder: busbar::MessageBuilder,
    payload: Payload,
    headers: Option<BTreeMap<String, String>>,
) -> busbar::Result<busbar::Message> {
    let mut builder = builder.data(payload.data);
    if let Some(ct) = payload.content_type {
        builder = builder.content_type(ct);
    }
    if let Some(h) = headers {
        builder = builder.headers(h);
    }
    builder.build()
}

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
    /// `classification`, e.g. `"phi,pii"`.
    #[getter]
    fn classification(&self) -> Option<&str> {
        self.inner.classification()
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
        let headers = self::headers(headers, "respond(): headers")?;
        let payload = payload(Some(data))?;
        let reply = self
            .inner
            .reply_builder()
            .and_then(|b| build(b, payload, headers))
            .map_err(to_py)?;
        let request = busbar::Message::clone(&self.inner);
        awaitable::run(py, async move { request.respond_message(reply).await })
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
