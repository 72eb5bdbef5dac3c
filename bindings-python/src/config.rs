//! `connect(**kwargs)` to a core `Config`: the environment (`BUSBAR_*`) first, then each
//! keyword through core's `Config::set_value`, so a keyword means exactly what its
//! variable means. Only the Python side is here: which Python types are accepted, and the
//! `TypeError` for a text option given another type (core's `is_text_key`).

use busbar::ConfigValue;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyString};

use crate::error::to_py;

/// The configuration `connect` builds: defaults, then `BUSBAR_*` variables, then `kwargs`.
pub(crate) fn from_kwargs(kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<busbar::Config> {
    let mut config = busbar::Config::from_env().map_err(to_py)?;
    for (key, value) in kwargs.into_iter().flat_map(|d| d.iter()) {
        let key = key.cast::<PyString>()?.to_str()?.to_owned();
        let type_name = || value.get_type().name().map(|n| n.to_string());
        let text_only = busbar::config::is_text_key(&key);
        let set = if let Ok(s) = value.cast::<PyString>() {
            config.set_value(&key, ConfigValue::Text(s.to_str()?))
        } else if text_only {
            let got = type_name()?;
            return Err(PyTypeError::new_err(format!(
                "connect(): {key} must be a str, not {got}"
            )));
        } else if let Ok(b) = value.cast::<PyBool>() {
            config.set_value(&key, ConfigValue::Bool(b.is_true()))
        } else if value.is_instance_of::<PyInt>() {
            match value.extract::<i128>() {
                Ok(n) => config.set_value(&key, ConfigValue::Int(n)),
                // Past i128: its digits, which the key's parser refuses as out of range.
                Err(_) => config.set_value(&key, ConfigValue::Text(value.str()?.to_str()?)),
            }
        } else {
            let got = type_name()?;
            return Err(PyTypeError::new_err(format!(
                "connect(): {key} must be a str, int or bool, not {got}"
            )));
        };
        set.map_err(to_py)?;
    }
    Ok(config)
}
