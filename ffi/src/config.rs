//! `busbar_config`: settings built with setters, or read from a JSON object.
//!
//! Both start from `Config::from_env()` (defaults overlaid with every `BUSBAR_*`
//! variable); a setter goes through core's `Config::set`, a JSON object through
//! `Config::from_json` (core's one intake rule for typed values), so a key means what
//! the matching variable means, in every language.

use std::ffi::c_char;
use std::ptr;

use busbar_core::{Config, Result};

use crate::args::{handle, out, str_arg};
use crate::error::busbar_status;

/// Settings of a bus. Opaque; owned by the caller, free with `busbar_config_free`.
/// Not thread-safe: set it from one thread, then connect with it from any.
pub struct busbar_config {
    pub(crate) config: Config,
}

/// Sets `*config` to the defaults overlaid with the process's `BUSBAR_*` environment
/// variables (`BUSBAR_BACKEND`, `BUSBAR_NATS_URL`, `BUSBAR_MAX_PAYLOAD`, ...).
/// `invalid_argument` for an unknown `BUSBAR_*` variable or a bad value.
/// Owned: free with `busbar_config_free`.
#[no_mangle]
pub extern "C" fn busbar_config_new(config: *mut *mut busbar_config) -> busbar_status {
    ffi_boundary! {
        let slot = out(config, ptr::null_mut(), "config")?;
        let config = Config::from_env()?;
        *slot = Box::into_raw(Box::new(busbar_config { config }));
        Ok(())
    }
}

/// Sets one key (`backend`, `nats_url`, `max_payload`, `subscription_capacity`,
/// `backpressure`, `source`, `nats_user`, ...) from its text form, e.g.
/// `busbar_config_set(config, "max_payload", "2048")`. `invalid_argument` names a bad key
/// or value; the config keeps its previous value then. Both strings are borrowed.
#[no_mangle]
pub extern "C" fn busbar_config_set(
    config: *mut busbar_config,
    key: *const c_char,
    value: *const c_char,
) -> busbar_status {
    ffi_boundary! {
        let key = str_arg(key, "key")?;
        let value = str_arg(value, "value")?;
        // SAFETY: a live handle from `busbar_config_new`, used from one thread (header contract).
        let config = unsafe { config.as_mut() }.ok_or_else(|| crate::args::null("config"))?;
        config.config.set(key, value)
    }
}

/// Frees a config. `NULL` does nothing. A bus connected with it does not need it.
#[no_mangle]
pub extern "C" fn busbar_config_free(config: *mut busbar_config) {
    ffi_boundary!(@or () => {
        if !config.is_null() {
            // SAFETY: made by `Box::into_raw` in `busbar_config_new`, freed once (header contract).
            drop(unsafe { Box::from_raw(config) });
        }
    })
}

/// The settings of `config`, or of the environment when it is NULL.
pub(crate) fn config_or_env(config: *const busbar_config) -> Result<Config> {
    if config.is_null() {
        return Config::from_env();
    }
    Ok(handle(config, "config")?.config.clone())
}
