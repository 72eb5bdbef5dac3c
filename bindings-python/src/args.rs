//! Python arguments into core values: text, payloads, headers, numbers, durations; each
//! failure a `TypeError` or `ValueError` naming the argument.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use busbar::{Bytes, Headers, Payload, PublishOptions};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::error::to_py;

pub(crate) static JSON_LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// JSON text that becomes Python values (`json.loads`) when handed to Python, on the
/// event loop's thread: what a call returning JSON answers (`discover`).
pub(crate) struct JsonText(pub(crate) String);

impl<'py> IntoPyObject<'py> for JsonText {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        json_fn(py, &JSON_LOADS, "loads")?.call1((self.0,))
    }
}

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
    let mut text = String::new();
    json_value(&mut text, data, 0)?;
    Ok(Payload::json(text.into_bytes()))
}

/// Deepest nesting of lists and dicts a payload may have (a circular one never ends).
const MAX_JSON_DEPTH: usize = 1000;

/// Appends `value` as the JSON text JavaScript's `JSON.stringify` writes for the same
/// content (core's `json_text`), so a dict and a JS object publish the same bytes: None,
/// bool, int, float, str, dict (keys as `json.dumps` takes them), list and tuple. NaN,
/// the infinities and nesting deeper than [`MAX_JSON_DEPTH`] are `invalid_argument`
/// (`"data is not valid JSON"`); any other type is a TypeError.
fn json_value(out: &mut String, value: &Bound<'_, PyAny>, depth: usize) -> PyResult<()> {
    if depth > MAX_JSON_DEPTH {
        return Err(to_py(busbar::Error::InvalidArgument(format!(
            "data is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels (a circular reference?)"
        ))));
    }
    if value.is_none() {
        out.push_str("null");
    } else if let Ok(b) = value.cast::<PyBool>() {
        out.push_str(if b.is_true() { "true" } else { "false" });
    } else if value.is_instance_of::<PyInt>() {
        json_int(out, value)?;
    } else if let Ok(f) = value.cast::<PyFloat>() {
        busbar::json_text::push_f64(out, f.value()).map_err(to_py)?;
    } else if let Ok(s) = value.cast::<PyString>() {
        json_str(out, s)?;
    } else if let Ok(dict) = value.cast::<PyDict>() {
        out.push('{');
        for (i, (key, item)) in dict.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_key(out, &key)?;
            out.push(':');
            json_value(out, &item, depth + 1)?;
        }
        out.push('}');
    } else if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        out.push('[');
        for (i, item) in value.try_iter()?.enumerate() {
            if i > 0 {
                out.push(',');
            }
            json_value(out, &item?, depth + 1)?;
        }
        out.push(']');
    } else {
        return Err(PyTypeError::new_err(format!(
            "data must be bytes, str or a JSON-serialisable object (dict, list, tuple, str, int, \
             float, bool, None); {} is not",
            value.get_type().name()?
        )));
    }
    Ok(())
}

/// An int (an `IntEnum` too) as its decimal digits, as `json.dumps` writes it.
fn json_int(out: &mut String, value: &Bound<'_, PyAny>) -> PyResult<()> {
    match value.extract::<i64>() {
        Ok(n) => out.push_str(&n.to_string()),
        // Beyond 64 bits: the exact digits of the plain int.
        Err(_) => out.push_str(value.call_method0("__index__")?.str()?.to_str()?),
    }
    Ok(())
}

/// A str as a JSON string; one holding lone surrogates writes them as `\udxxx`.
fn json_str(out: &mut String, s: &Bound<'_, PyString>) -> PyResult<()> {
    match s.to_str() {
        Ok(text) => busbar::json_text::push_str(out, text),
        Err(_) => {
            let encoded = s.call_method1("encode", ("utf-16-le", "surrogatepass"))?;
            let bytes = encoded.cast::<PyBytes>()?.as_bytes();
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_le_bytes([pair[0], pair[1]]))
                .collect();
            busbar::json_text::push_utf16(out, &units);
        }
    }
    Ok(())
}

/// A dict key, as `json.dumps` takes keys: str; int, float, bool and None as their JSON
/// text, quoted.
fn json_key(out: &mut String, key: &Bound<'_, PyAny>) -> PyResult<()> {
    if let Ok(s) = key.cast::<PyString>() {
        return json_str(out, s);
    }
    let valid = key.is_none() || key.is_instance_of::<PyBool>() || key.is_instance_of::<PyInt>();
    if !(valid || key.is_instance_of::<PyFloat>()) {
        return Err(PyTypeError::new_err(format!(
            "data must be a JSON-serialisable object: dict keys must be str, int, float, bool \
             or None, not {}",
            key.get_type().name()?
        )));
    }
    let mut text = String::new();
    json_value(&mut text, key, 0)?;
    busbar::json_text::push_str(out, &text);
    Ok(())
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
        if o.traceparent.is_none() && TRACING.load(Relaxed) {
            if let Some((traceparent, tracestate)) = Python::attach(trace_context)? {
                o.traceparent = Some(traceparent);
                o.tracestate = tracestate;
            }
        }
        Ok(o)
    }
}

/// Whether `busbar.otel.instrument()` set a hook: a publish without one costs one load.
static TRACING: AtomicBool = AtomicBool::new(false);
static TRACE_HOOK: std::sync::Mutex<Option<Py<PyAny>>> = std::sync::Mutex::new(None);

/// Sets (or, with `None`, clears) the function that returns the current OpenTelemetry
/// context as `(traceparent, tracestate)` or `None` (`busbar.otel.instrument()`).
pub(crate) fn set_trace_hook(hook: Option<Py<PyAny>>) {
    TRACING.store(hook.is_some(), Relaxed);
    *TRACE_HOOK.lock().unwrap_or_else(|p| p.into_inner()) = hook;
}

/// The caller's trace context, from the hook: what a publish inside a span carries.
fn trace_context(py: Python<'_>) -> PyResult<Option<(String, Option<String>)>> {
    let hook = TRACE_HOOK
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(|h| h.clone_ref(py));
    match hook {
        Some(hook) => hook.bind(py).call0()?.extract(),
        None => Ok(None),
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

/// One text, or a list or tuple of them (subjects, roles, classes).
pub(crate) fn texts(value: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(vec![s.to_str()?.to_owned()]);
    }
    if !(value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>()) {
        return Err(type_error(what, "a str or a list of str", value));
    }
    value
        .try_iter()?
        .map(|item| Ok(text(&item?, &format!("{what} item"))?.to_owned()))
        .collect()
}

/// The keywords of `publish` an item of `publish_batch` may give in its options dict.
const PUBLISH_KEYWORDS: [&str; 8] = [
    "headers",
    "id",
    "event_type",
    "content_type",
    "correlation_id",
    "classification",
    "traceparent",
    "tracestate",
];

/// The messages of `publish_batch(items)`: each item a `(subject, data)` or
/// `(subject, data, options)` tuple, `options` a dict of `publish`'s keywords; all of them
/// converted before any is published. A wrong type or an unknown option is a `TypeError`
/// naming the item.
pub(crate) fn publish_items(items: &Bound<'_, PyAny>) -> PyResult<Vec<(String, Payload, PublishOptions)>> {
    if items.is_instance_of::<PyString>()
        || items.is_instance_of::<PyBytes>()
        || items.is_instance_of::<PyDict>()
    {
        return Err(type_error(
            "publish_batch(): items",
            "an iterable of tuples",
            items,
        ));
    }
    let mut batch = Vec::new();
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        let what = format!("publish_batch(): items[{i}]");
        let tuple = match item.cast::<PyTuple>() {
            Ok(t) if (2..=3).contains(&t.len()) => t,
            _ => {
                return Err(type_error(
                    &what,
                    "a (subject, data) or (subject, data, options) tuple",
                    &item,
                ))
            }
        };
        let subject = text(&tuple.get_item(0)?, &format!("{what}: subject"))?.to_owned();
        let data = tuple.get_item(1)?;
        let payload = payload(given(Some(&data)))?;
        let mut values: [Option<Bound<'_, PyAny>>; 8] = Default::default();
        if tuple.len() == 3 {
            let options = tuple.get_item(2)?;
            if !options.is_none() {
                let dict = options
                    .cast::<PyDict>()
                    .map_err(|_| type_error(&format!("{what}: options"), "a dict", &options))?;
                for (key, value) in dict.iter() {
                    let key = text(&key, &format!("{what}: an option name"))?;
                    let Some(slot) = PUBLISH_KEYWORDS.iter().position(|k| *k == key) else {
                        return Err(PyTypeError::new_err(format!(
                            "{what}: unexpected option '{key}' (publish's keywords: {})",
                            PUBLISH_KEYWORDS.join(", ")
                        )));
                    };
                    values[slot] = Some(value);
                }
            }
        }
        let [headers, id, event_type, content_type, correlation_id, classification, traceparent, tracestate] =
            &values;
        let options = PublishKw {
            headers: headers.as_ref(),
            id: id.as_ref(),
            event_type: event_type.as_ref(),
            content_type: content_type.as_ref(),
            correlation_id: correlation_id.as_ref(),
            classification: classification.as_ref(),
            traceparent: traceparent.as_ref(),
            tracestate: tracestate.as_ref(),
        }
        .options(&what)?;
        batch.push((subject, payload, options));
    }
    Ok(batch)
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
