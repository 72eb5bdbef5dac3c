//! JavaScript arguments into Rust values: strings, payloads, option objects, counts and
//! milliseconds. A wrong JavaScript type is a `TypeError` (code `ERR_INVALID_ARG_TYPE`,
//! as Node's own) thrown at once, naming the argument.

use std::time::Duration;

use busbar::{Bytes, Payload};
use napi::bindgen_prelude::*;
use napi::{sys, JsTypeError, JsValue};

use crate::error::to_js;

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

/// A copy of the bytes of an ArrayBufferView, read in place (no reference to the JS object
/// is kept, so nothing is left to release).
fn copy_buffer(env: &Env, value: sys::napi_value) -> Result<Bytes> {
    let mut data = std::ptr::null_mut();
    let mut len = 0;
    // SAFETY: `value` is a buffer handle of the current call (checked by the caller); the
    // memory napi reports stays valid while this call runs, and is copied before it returns.
    unsafe {
        check_status!(sys::napi_get_buffer_info(env.raw(), value, &mut data, &mut len))?;
        if len == 0 || data.is_null() {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(std::slice::from_raw_parts(
            data.cast::<u8>(),
            len,
        )))
    }
}

/// An options object (`undefined` and `null` mean none). napi's conversion would take a
/// string for `headers` as an empty map, so its type is checked here first.
pub(crate) fn options_arg<T: FromNapiValue + TypeName>(
    env: &Env,
    options: Option<Unknown>,
) -> Result<Option<T>> {
    let Some(options) = options else {
        return Ok(None);
    };
    match options.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        ValueType::Object => {
            // SAFETY: `options` is a live object handle of the current call.
            let object = unsafe { Object::from_napi_value(env.raw(), options.raw()) }?;
            let headers: Unknown = object.get_named_property("headers")?;
            match headers.get_type()? {
                ValueType::Undefined | ValueType::Null => {}
                ValueType::Object if !headers.is_array()? => {}
                other => {
                    let got = if headers.is_array()? {
                        "an array"
                    } else {
                        describe(other)
                    };
                    let message = format!("options.headers must be an object of strings, not {got}");
                    return Err(type_error(env, message));
                }
            }
            typed(env, "options", options).map(Some)
        }
        other => Err(type_error(
            env,
            format!("options must be an object, not {}", describe(other)),
        )),
    }
}

/// Refuses the options in `renamed` (a name without the `Ms` of a duration, say) with a
/// `TypeError` naming the option to use instead (docs/design.md §9), rather than ignoring
/// them silently.
pub(crate) fn refuse_renamed(env: &Env, options: Option<&Unknown>, renamed: &[(&str, &str)]) -> Result<()> {
    let Some(options) = options else {
        return Ok(());
    };
    if options.get_type()? != ValueType::Object {
        return Ok(()); // options_arg says what is wrong
    }
    // SAFETY: `options` is a live object handle of the current call.
    let object = unsafe { Object::from_napi_value(env.raw(), options.raw()) }?;
    for (wrong, right) in renamed {
        let value: Unknown = object.get_named_property(wrong)?;
        if value.get_type()? != ValueType::Undefined {
            return Err(type_error(
                env,
                format!("options.{wrong} is not an option: use options.{right} (durations are milliseconds in options ending in Ms)"),
            ));
        }
    }
    Ok(())
}

/// A payload from JavaScript: a Buffer or other ArrayBufferView (its bytes, copied), a
/// string (UTF-8), `undefined` (empty), or any other value `JSON.stringify` accepts (core
/// sets its content type). Anything else is a `TypeError`.
pub(crate) fn payload(env: &Env, data: Option<Unknown>) -> Result<Payload> {
    let Some(data) = data else {
        return Ok(Payload::default());
    };
    let raw = data.raw();
    // SAFETY (each conversion): `data` is a live handle of the type just checked.
    match data.get_type()? {
        ValueType::Undefined => Ok(Payload::default()),
        ValueType::String => Ok(Payload::bytes(unsafe {
            String::from_napi_value(env.raw(), raw)
        }?)),
        // Node counts every ArrayBufferView (Buffer, Uint8Array, Float32Array, DataView)
        // as a buffer: its bytes are the payload.
        ValueType::Object if data.is_buffer()? => Ok(Payload::bytes(copy_buffer(env, raw)?)),
        ValueType::Null | ValueType::Boolean | ValueType::Number | ValueType::Object => {
            let json: Object = env.get_global()?.get_named_property("JSON")?;
            let stringify: Function<Unknown, Unknown> = json.get_named_property("stringify")?;
            let text = stringify.call(data)?;
            match text.get_type()? {
                ValueType::String => Ok(Payload::json(unsafe {
                    String::from_napi_value(env.raw(), text.raw())
                }?)),
                _ => Err(type_error(env, "data cannot be serialised as JSON".into())),
            }
        }
        other => Err(type_error(
            env,
            format!(
                "data must be a Buffer, typed array, string or JSON-serialisable value, not {}",
                describe(other)
            ),
        )),
    }
}

/// The `max` argument of `nextBatch()`: a count from 1, `default` when absent.
pub(crate) fn batch_size(env: &Env, max: Option<Unknown>, default: u32) -> Result<usize> {
    let max = match max {
        Some(m) if !matches!(m.get_type()?, ValueType::Undefined) => typed::<u32>(env, "max", m)?,
        _ => default,
    };
    Ok(max.max(1) as usize)
}

pub(crate) fn count(name: &str, value: Option<f64>, max: u64) -> busbar::Result<Option<u64>> {
    value.map(|n| busbar::bounds::whole(name, n, max)).transpose()
}

/// An optional duration option in milliseconds; NaN, negative, infinite or over 100
/// years is the core's `invalid_argument` naming the option.
pub(crate) fn millis(name: &str, value: Option<f64>) -> busbar::Result<Option<Duration>> {
    value.map(|ms| busbar::bounds::millis(name, ms)).transpose()
}

/// An array-of-strings argument, or a `TypeError`.
pub(crate) fn strings_arg(env: &Env, name: &str, value: Unknown) -> Result<Vec<String>> {
    if !value.is_array()? {
        let got = describe(value.get_type()?);
        return Err(type_error(
            env,
            format!("{name} must be an array of strings, not {got}"),
        ));
    }
    typed(env, name, value)
}

/// napi's conversion would take a number for `options.backoff` as an empty object, so its
/// type is checked here first.
pub(crate) fn backoff_is_object(env: &Env, options: Option<&Unknown>) -> Result<()> {
    let Some(options) = options else {
        return Ok(());
    };
    if options.get_type()? != ValueType::Object {
        return Ok(()); // options_arg says what is wrong
    }
    // SAFETY: `options` is a live object handle of the current call.
    let object = unsafe { Object::from_napi_value(env.raw(), options.raw()) }?;
    let backoff: Unknown = object.get_named_property("backoff")?;
    match backoff.get_type()? {
        ValueType::Undefined | ValueType::Null | ValueType::Object => Ok(()),
        other => Err(type_error(
            env,
            format!("options.backoff must be an object, not {}", describe(other)),
        )),
    }
}
