//! Core errors into JavaScript: `Error` objects whose `code` is the core's stable code.
//! (Wrong argument types become `TypeError`s in `args.rs`.)
//!
//! The JS object is built here, on the JS thread, and handed to napi as the value to throw
//! or reject with: napi's own conversion would put its status name (`GenericFailure`) in
//! `code` for a rejected Promise.

use napi::bindgen_prelude::*;
use napi::JsValue;

/// The JavaScript `Error` for `err`: core's report (message and causes), and `code`.
pub(crate) fn to_js(env: &Env, err: &busbar::Error) -> Error {
    build(env, err).unwrap_or_else(|e| e)
}

/// The error that stopped a batch publish, with `published`: how many items went before it.
pub(crate) fn to_js_published(env: &Env, err: &busbar::Error, published: usize) -> Error {
    build_with(env, err, Some(published)).unwrap_or_else(|e| e)
}

fn build(env: &Env, err: &busbar::Error) -> Result<Error> {
    build_with(env, err, None)
}

fn build_with(env: &Env, err: &busbar::Error, published: Option<usize>) -> Result<Error> {
    let mut object = env.create_error(Error::new(Status::GenericFailure, err.report()))?;
    object.set_named_property("code", err.code())?;
    if let busbar::Error::Lagged { missed, .. } = err {
        object.set_named_property("missed", *missed as f64)?;
    }
    if let Some(published) = published {
        object.set_named_property("published", published as f64)?;
    }
    adopt(env, object.to_unknown())?;
    Ok(Error::from(object.to_unknown()))
}

/// Gives `error` the prototype of its class (`BusError`'s subclass for its code), through
/// the function busbar.js defines, so `instanceof` works; without busbar.js (the bare
/// native module) it stays a plain `Error` with `code`.
fn adopt(env: &Env, error: Unknown) -> Result<()> {
    let global = env.get_global()?;
    let hook: Unknown = global.get_named_property(ADOPT)?;
    if hook.get_type()? == ValueType::Function {
        let hook: Function<Unknown, Unknown> = global.get_named_property(ADOPT)?;
        hook.call(error)?;
    }
    Ok(())
}

/// The global function busbar.js defines to adopt an error into its class.
const ADOPT: &str = "__busbarAdoptError";
