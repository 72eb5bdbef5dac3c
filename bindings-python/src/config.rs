//! `connect(**kwargs)` to a core `Config`: the environment (`BUSBAR_*`) first, then each
//! keyword through `Config::set`, so a keyword means exactly what its variable means.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString};

use crate::error::to_py;

/// The text form `Config::set` takes, from a str, int or bool keyword value; a text
/// option (`busbar::config::is_text_key`) takes a str only.
fn text_of(key: &str, value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = value.cast::<PyString>() {
        return Ok(s.to_str()?.to_owned());
    }
    if busbar::config::is_text_key(key) {
        return Err(PyTypeError::new_err(format!(
            "connect(): {key} must be a str, not {}",
            value.get_type().name()?
        )));
    }
    if let Ok(b) = value.cast::<PyBool>() {
        return Ok(if b.is_true() { "true" } else { "false" }.to_owned());
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(value.str()?.to_str()?.to_owned());
    }
    Err(PyTypeError::new_err(format!(
        "connect(): {key} must be a str, int or bool, not {}",
        value.get_type().name()?
    )))
}

/// The configuration `connect` builds: defaults, then `BUSBAR_*` variables, then `kwargs`.
pub(crate) fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<busbar::Config> {
    let mut config = busbar::Config::from_env().map_err(to_py)?;
    for (key, value) in kwargs.into_iter().flat_map(|d| d.iter()) {
        let key = key.cast::<PyString>()?.to_str()?.to_owned();
        let text = text_of(&key, &value)?;
        config.set(&key, &text).map_err(to_py)?;
    }
    Ok(config)
}
