//! Errors into JavaScript: core errors become `Error` objects whose `code` is the core's
//! stable code; wrong argument types become `TypeError`s.
//!
//! The JS object is built here, on the JS thread, and handed to napi as the value to throw
//! or reject with: napi's own conversion would put its status name (`GenericFailure`) in
//! `code` for a rejected Promise.

use napi::bindgen_prelude::*;
use napi::{JsTypeError, JsValue};

/// The JavaScript `Error` for `err`: its message with the chain of causes, and `code`.
pub(crate) fn to_js(env: &Env, err: &busbar::Error) -> Error {
    build(env, err).unwrap_or_else(|e| e)
}

fn build(env: &Env, err: &busbar::Error) -> Result<Error> {
    let mut message = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    let mut object = env.create_error(Error::new(Status::GenericFailure, message))?;
    object.set_named_property("code", err.code())?;
    if let busbar::Error::Lagged { missed, .. } = err {
        object.set_named_property("missed", *missed as f64)?;
    }
    Ok(Error::from(object.to_unknown()))
}

/// A `TypeError` (code `ERR_INVALID_ARG_TYPE`, as Node's own) saying what was expected.
pub(crate) fn type_error(env: &Env, message: String) -> Error {
    let error = JsTypeError::from(Error::new("ERR_INVALID_ARG_TYPE", message));
    Error::from(error.into_unknown(*env))
}

/// Converts an argument, turning napi's conversion failure into a `TypeError` naming it.
pub(crate) fn typed<T: FromNapiValue + TypeName>(env: &Env, name: &str, value: Unknown) -> Result<T> {
    // SAFETY: `value` is a live handle of the current call on this env.
    unsafe { T::from_napi_value(env.raw(), value.raw()) }
        .map_err(|e| type_error(env, format!("{name} must be {}: {}", T::type_name(), e.reason)))
}

/// A string argument, or a `TypeError` naming the argument and the type it got.
pub(crate) fn string_arg(env: &Env, name: &str, value: Unknown) -> Result<String> {
    match value.get_type()? {
        ValueType::String => {
            let text: String = typed(env, name, value)?;
            // Node turns a lone surrogate into U+FFFD on the way to UTF-8; refuse it
            // instead (as Python does), so a subject is never silently another subject.
            if text.contains('\u{FFFD}') {
                let units: Utf16String = typed(env, name, value)?;
                if String::from_utf16(&units).is_err() {
                    return Err(to_js(
                        env,
                        &busbar::Error::InvalidArgument(format!(
                            "{name} holds a lone surrogate: it is not valid Unicode"
                        )),
                    ));
                }
            }
            Ok(text)
        }
        other => Err(type_error(
            env,
            format!("{name} must be a string, not {}", describe(other)),
        )),
    }
}

/// The JavaScript name of a value type, for messages.
pub(crate) fn describe(t: ValueType) -> &'static str {
    match t {
        ValueType::Undefined => "undefined",
        ValueType::Null => "null",
        ValueType::Boolean => "a boolean",
        ValueType::Number => "a number",
        ValueType::String => "a string",
        ValueType::Symbol => "a symbol",
        ValueType::Object => "an object",
        ValueType::Function => "a function",
        ValueType::External => "an external",
        ValueType::BigInt => "a bigint",
        _ => "an unknown value",
    }
}
