//! The panic boundary around every C entry point (as rustls-ffi's `ffi_panic_boundary!`).

use std::panic::{catch_unwind, AssertUnwindSafe};

use busbar_core::Error;

use crate::error::{busbar_status, clear_last_error, set_last_error, set_last_panic};

/// Runs the body of a C entry point so that no panic unwinds into C.
///
/// - `ffi_boundary! { ... }`: the body evaluates to `Result<(), busbar_core::Error>`; the
///   function returns the matching [`busbar_status`] and records the error message.
/// - `ffi_boundary!(@or fallback => { ... })`: the body evaluates to a value returned as
///   is; after a panic the function returns `fallback`.
macro_rules! ffi_boundary {
    (@or $fallback:expr => $body:block) => {
        $crate::panic::guard_value($fallback, || $body)
    };
    ($($body:tt)*) => {
        $crate::panic::guard_status(|| { $($body)* })
    };
}

/// See [`ffi_boundary!`]: a status-returning body.
pub(crate) fn guard_status(body: impl FnOnce() -> Result<(), Error>) -> busbar_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => {
            clear_last_error();
            busbar_status::BUSBAR_OK
        }
        Ok(Err(err)) => {
            set_last_error(&err);
            busbar_status::from_error(&err)
        }
        Err(payload) => {
            set_last_panic(payload.as_ref());
            busbar_status::BUSBAR_PANIC
        }
    }
}

/// See [`ffi_boundary!`]: a value-returning body that cannot fail.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            set_last_panic(payload.as_ref());
            fallback
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    fn last_error() -> String {
        // SAFETY: busbar_last_error never returns NULL and the text is NUL-terminated.
        unsafe { CStr::from_ptr(crate::error::busbar_last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard_status(|| panic!("boom {}", 42));
        assert_eq!(status, busbar_status::BUSBAR_PANIC);
        assert!(last_error().contains("boom 42"), "{}", last_error());
        assert_eq!(guard_value(7, || -> i32 { panic!("static text") }), 7);
        assert!(last_error().contains("static text"), "{}", last_error());
    }

    #[test]
    fn errors_set_and_successes_clear_the_message() {
        let status = guard_status(|| {
            Err(Error::NoResponders {
                subject: "a.b".into(),
            })
        });
        assert_eq!(status, busbar_status::BUSBAR_NO_RESPONDERS);
        assert!(last_error().contains("a.b"));
        assert_eq!(guard_status(|| Ok(())), busbar_status::BUSBAR_OK);
        assert_eq!(last_error(), "");
    }
}
