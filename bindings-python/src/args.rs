//! Python arguments into core values: text, payloads, headers, numbers, durations; each
//! failure a `TypeError` or `ValueError` naming the argument.

use std::time::Duration;

use busbar::{Bytes, Headers, Payload, PublishOptions};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{IntoPyDict, PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyString};

use crate::error::to_py;

static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
pub(crate) static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(crate) fn json_fn<'py>(
    py: Python<'py>,
    cell: &PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
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

/// bytes / bytearray / memoryview as they are, str as UTF-8, anything else serialised as
/// JSON (core sets its content type); no data is an empty payload.
pub(crate) fn payload(data: Option<&Bound<'_, PyAny>>) -> PyResult<Payload> {
    let Some(data) = data else {
        return Ok(Payload::default());
    };
    if let Ok(b) = data.cast::<PyBytes>() {
        return Ok(Payload::bytes(Bytes::copy_from_slice(b.as_bytes())));
    }
    if let Ok(s) = data.cast::<PyString>() {
        return Ok(Payload::bytes(Bytes::copy_from_slice(s.to_str()?.as_bytes())));
    }
    if let Ok(b) = data.cast::<PyByteArray>() {
        return Ok(Payload::bytes(b.to_vec()));
    }
    if let Ok(buf) = pyo3::buffer::PyBuffer::<u8>::get(data) {
        return Ok(Payload::bytes(buf.to_vec(data.py())?));
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
    Ok(Payload::json(
        text.cast::<PyString>()?.to_str()?.as_bytes().to_vec(),
    ))
}

/// `headers=` as core takes them: `None`, or a dict of str to str (else a TypeError
/// naming the call, e.g. `"publish(): headers must be a dict of str to str, not list"`).
pub(crate) fn headers(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Headers>> {
    let Some(value) = value.filter(|v| !v.is_none()) else {
        return Ok(None);
    };
    let Ok(dict) = value.cast::<PyDict>() else {
        return Err(PyTypeError::new_err(format!(
            "{what} must be a dict of str to str, not {}",
            value.get_type().name()?
        )));
    };
    let mut out = Headers::new();
    for (k, v) in dict.iter() {
        let name = text(&k, &format!("{what} key"))?.to_owned();
        let value = text(&v, &format!("{what}[{name:?}]"))?.to_owned();
        out.insert(name, value);
    }
    Ok(Some(out))
}

/// The publish keywords of `publish`, `publish_durable`, `request` and `respond`, each
/// `None` when not given.
#[derive(Default)]
pub(crate) struct PublishKw<'a, 'py> {
    pub(crate) headers: Option<&'a Bound<'py, PyAny>>,
    pub(crate) id: Option<&'a Bound<'py, PyAny>>,
    pub(crate) event_type: Option<&'a Bound<'py, PyAny>>,
    pub(crate) content_type: Option<&'a Bound<'py, PyAny>>,
    pub(crate) correlation_id: Option<&'a Bound<'py, PyAny>>,
    pub(crate) classification: Option<&'a Bound<'py, PyAny>>,
    pub(crate) traceparent: Option<&'a Bound<'py, PyAny>>,
    pub(crate) tracestate: Option<&'a Bound<'py, PyAny>>,
}

impl PublishKw<'_, '_> {
    /// Core's `PublishOptions`; a keyword of the wrong type is a `TypeError` naming `call`.
    pub(crate) fn options(&self, call: &str) -> PyResult<PublishOptions> {
        let opt = |value: Option<&Bound<'_, PyAny>>, name: &str| -> PyResult<Option<String>> {
            given(value)
                .map(|v| Ok(text(v, &format!("{call}: {name}"))?.to_owned()))
                .transpose()
        };
        let mut o = PublishOptions::new();
        o.headers = headers(self.headers, &format!("{call}: headers"))?;
        o.id = opt(self.id, "id")?;
        o.event_type = opt(self.event_type, "event_type")?;
        o.content_type = opt(self.content_type, "content_type")?;
        o.correlation_id = opt(self.correlation_id, "correlation_id")?;
        o.classification = opt(self.classification, "classification")?;
        o.traceparent = opt(self.traceparent, "traceparent")?;
        o.tracestate = opt(self.tracestate, "tracestate")?;
        Ok(o)
    }
}

/// Seconds as a Duration; refuses negative, NaN and infinite values, naming `what`.
pub(crate) fn seconds(value: f64, what: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        PyValueError::new_err(format!(
            "{what} must be a finite number of seconds >= 0, not {value}"
        ))
    })
}

/// `value` unless it is absent or `None`.
pub(crate) fn given<'a, 'py>(value: Option<&'a Bound<'py, PyAny>>) -> Option<&'a Bound<'py, PyAny>> {
    value.filter(|v| !v.is_none())
}

pub(crate) fn type_error(what: &str, expected: &str, value: &Bound<'_, PyAny>) -> PyErr {
    let name = value.get_type().name().map(|n| n.to_string()).unwrap_or_default();
    PyTypeError::new_err(format!("{what} must be {expected}, not {name}"))
}

/// An int or float argument (not a bool), or a TypeError naming it.
pub(crate) fn number(value: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    let numeric = value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyInt>();
    if !numeric || value.is_instance_of::<PyBool>() {
        return Err(type_error(what, "a number", value));
    }
    value.extract()
}

/// An optional duration in seconds (int or float, like `timeout`).
pub(crate) fn duration(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Duration>> {
    given(value).map(|v| seconds(number(v, what)?, what)).transpose()
}

/// An optional non-negative int (not a bool) that fits `T`.
pub(crate) fn count<T: TryFrom<u64>>(value: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<T>> {
    let Some(v) = given(value) else {
        return Ok(None);
    };
    if !v.is_instance_of::<PyInt>() || v.is_instance_of::<PyBool>() {
        return Err(type_error(what, "an int", v));
    }
    let n = v.extract::<u64>().ok().and_then(|n| T::try_from(n).ok());
    n.map(Some)
        .ok_or_else(|| PyValueError::new_err(format!("{what} is out of range: {v}")))
}
