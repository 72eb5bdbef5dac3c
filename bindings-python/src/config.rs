//! `connect(**kwargs)` to a core `Config`: the environment (`BUSBAR_*`) first, then each
//! keyword through core's `Config::set_value`, so a keyword means exactly what its
//! variable means. Only the Python side is here: which Python types are accepted, and the
//! `TypeError` for a text option given another type (core's `is_text_key`).

use busbar::ConfigValue;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString};

/// The configuration `connect` builds: defaults, then `BUSBAR_*` variables, then `url`
/// (core's `Config::set_url`: `nats://…` picks the NATS backend), then `kwargs`. A
/// keyword of the wrong Python type raises `TypeError` now; a value or key the core
/// refuses is returned as its error, for the awaitable to raise, as JavaScript rejects
/// its Promise (docs/design.md §9).
pub(crate) fn from_kwargs(
    url: Option<&str>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<busbar::Result<busbar::Config>> {
    let mut settings = Vec::new();
    for (key, value) in kwargs.into_iter().flat_map(|d| d.iter()) {
        let key = key.cast::<PyString>()?.to_str()?.to_owned();
        let type_name = || value.get_type().name().map(|n| n.to_string());
        let text_only = busbar::config::is_text_key(&key);
        let given = if let Ok(s) = value.cast::<PyString>() {
            Given::Text(s.to_str()?.to_owned())
        } else if text_only {
            let got = type_name()?;
            return Err(PyTypeError::new_err(format!(
                "connect(): {key} must be a str, not {got}"
            )));
        } else if let Ok(b) = value.cast::<PyBool>() {
            Given::Bool(b.is_true())
        } else if value.is_instance_of::<PyInt>() {
            match value.extract::<i128>() {
                Ok(n) => Given::Int(n),
                // Past i128: its digits, which the key's parser refuses as out of range.
                Err(_) => Given::Text(value.str()?.to_str()?.to_owned()),
            }
        } else {
            let got = type_name()?;
            return Err(PyTypeError::new_err(format!(
                "connect(): {key} must be a str, int or bool, not {got}"
            )));
        };
        settings.push((key, given));
    }
    let url = url.map(str::to_owned);
    Ok(busbar::Config::from_env().and_then(|mut config| {
        if let Some(url) = &url {
            config.set_url(url)?;
        }
        for (key, given) in &settings {
            let value = match given {
                Given::Text(s) => ConfigValue::Text(s),
                Given::Bool(b) => ConfigValue::Bool(*b),
                Given::Int(n) => ConfigValue::Int(*n),
            };
            config.set_value(key, value)?;
        }
        Ok(config)
    }))
}

/// One keyword as Python gave it, for core's `Config::set_value`.
enum Given {
    Text(String),
    Bool(bool),
    Int(i128),
}
