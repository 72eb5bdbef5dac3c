//! The async model: Promises for core futures, on napi's own tokio runtime (this module
//! starts no runtime of its own). A future that is already done when first polled (a publish
//! into a buffer with room, a batch of waiting messages) settles its Promise on the spot;
//! one that must wait runs on napi's tokio runtime and settles through napi's threadsafe
//! resolver. Either way a core error becomes the `Error` of [`crate::error::to_js`].

use std::future::Future;
use std::ptr;

use futures_util::FutureExt;
use napi::bindgen_prelude::*;
use napi::{sys, JsError, JsValue};

use crate::error::to_js;

/// Runs `fut`, converting its output with `convert` on the JS thread.
pub(crate) fn run<'env, T, V, F, C>(env: &'env Env, fut: F, convert: C) -> Result<Unknown<'env>>
where
    T: Send + 'static,
    V: ToNapiValue + 'static,
    F: Future<Output = busbar::Result<T>> + Send + 'static,
    C: FnOnce(&Env, T) -> Result<V> + 'static,
{
    let mut fut = Box::pin(fut);
    // Polled once inside the runtime's context, so timers and spawns find it.
    if let Some(done) = within_runtime_if_available(|| fut.as_mut().now_or_never()) {
        let settled = match done {
            Ok(value) => convert(env, value),
            Err(e) => Err(to_js(env, &e)),
        };
        return settle(env, settled);
    }
    let promise =
        env.spawn_future_with_callback(async move { Ok(fut.await) }, move |env, done| match done {
            Ok(value) => convert(env, value),
            Err(e) => Err(to_js(env, &e)),
        })?;
    // SAFETY: the promise handle belongs to this env and this call's scope.
    Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise.raw()) })
}

/// A Promise already resolved with `value` or rejected with the error.
pub(crate) fn settle<'env, V: ToNapiValue>(env: &'env Env, result: Result<V>) -> Result<Unknown<'env>> {
    let raw_env = env.raw();
    let mut deferred = ptr::null_mut();
    let mut promise = ptr::null_mut();
    // SAFETY: plain napi calls on the current env from the JS thread; every handle used
    // was just created in this scope.
    unsafe {
        check_status!(sys::napi_create_promise(raw_env, &mut deferred, &mut promise))?;
        match result.and_then(|v| V::to_napi_value(raw_env, v)) {
            Ok(value) => check_status!(sys::napi_resolve_deferred(raw_env, deferred, value))?,
            Err(e) => {
                let reason = JsError::from(e).into_value(raw_env);
                check_status!(sys::napi_reject_deferred(raw_env, deferred, reason))?
            }
        }
        Ok(Unknown::from_raw_unchecked(raw_env, promise))
    }
}
