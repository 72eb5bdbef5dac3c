//! Turning C arguments into Rust values: every pointer checked for NULL, every string for
//! UTF-8, every length for fitting, each failure an `invalid_argument` naming the argument.

use std::ffi::{c_char, CStr};
use std::time::Duration;

use busbar_core::{Error, Result};

/// A borrowed NUL-terminated UTF-8 string.
pub(crate) fn str_arg<'a>(ptr: *const c_char, what: &str) -> Result<&'a str> {
    if ptr.is_null() {
        return Err(null(what));
    }
    // SAFETY: the caller passes a NUL-terminated string (the header says so) that outlives the call.
    let text = unsafe { CStr::from_ptr(ptr) };
    text.to_str().map_err(|e| {
        Error::InvalidArgument(format!(
            "{what} is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })
}

/// A borrowed array of `len` items (bytes, headers); NULL is accepted for an empty one.
pub(crate) fn array_arg<'a, T>(ptr: *const T, len: usize, what: &str) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::InvalidArgument(format!(
            "{what} is NULL but its length is {len}"
        )));
    }
    if len > isize::MAX as usize / std::mem::size_of::<T>().max(1) {
        return Err(Error::InvalidArgument(format!(
            "{what} length {len} does not fit in memory"
        )));
    }
    // SAFETY: non-NULL, size within isize::MAX; the caller promises `len` initialised items.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A borrowed handle.
pub(crate) fn handle<'a, T>(ptr: *const T, what: &str) -> Result<&'a T> {
    // SAFETY: a non-NULL handle was made by this library and is not freed yet (header contract).
    unsafe { ptr.as_ref() }.ok_or_else(|| null(what))
}

/// An out-parameter, set to its empty value first so that it holds no stale value on error.
pub(crate) fn out<'a, T>(ptr: *mut T, empty: T, what: &str) -> Result<&'a mut T> {
    // SAFETY: the caller passes a pointer to writable storage for one T.
    let slot = unsafe { ptr.as_mut() }.ok_or_else(|| null(what))?;
    *slot = empty;
    Ok(slot)
}

/// `timeout_ms` as a duration; `BUSBAR_WAIT_FOREVER` (UINT64_MAX) as none.
pub(crate) fn timeout_arg(timeout_ms: u64) -> Option<Duration> {
    (timeout_ms != u64::MAX).then(|| Duration::from_millis(timeout_ms))
}

pub(crate) fn null(what: &str) -> Error {
    Error::InvalidArgument(format!("{what} is NULL"))
}
