//! One status enum for every call, and the thread's last error message.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr, CString};

use busbar_core::Error;

/// The outcome of a call. `BUSBAR_OK` is 0; every other value is one of core's stable
/// error codes (docs/design.md §7), one to one, with a number that never changes or is reused.
/// `busbar_status_code` gives the code as text; `busbar_last_error` the message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum busbar_status {
    /// Success.
    BUSBAR_OK = 0,
    /// `invalid_subject`: a subject or pattern breaks the subject rules.
    BUSBAR_INVALID_SUBJECT = 1,
    /// `invalid_argument`: another argument is unacceptable (NULL pointer, invalid UTF-8,
    /// a length that does not fit, a bad header or config value, ...).
    BUSBAR_INVALID_ARGUMENT = 2,
    /// `payload_too_large`: the payload exceeds `max_payload`.
    BUSBAR_PAYLOAD_TOO_LARGE = 3,
    /// `timeout`: no reply or message arrived in time.
    BUSBAR_TIMEOUT = 4,
    /// `no_responders`: a request found no subscriber on its subject.
    BUSBAR_NO_RESPONDERS = 5,
    /// `forbidden`: the caller is not allowed to do this.
    BUSBAR_FORBIDDEN = 6,
    /// `closed`: the bus or subscription is closed.
    BUSBAR_CLOSED = 7,
    /// `decode`: bytes could not be turned into a message or a C string.
    BUSBAR_DECODE = 8,
    /// `crypto`: encryption or decryption failed.
    BUSBAR_CRYPTO = 9,
    /// `backend`: the backend (broker connection, runtime) failed.
    BUSBAR_BACKEND = 10,
    /// `lagged`: not a failure but a notice: the subscription missed messages because its
    /// buffer was full (`backpressure = "lag"`, or on NATS in either mode). It goes on;
    /// the message says how many.
    BUSBAR_LAGGED = 11,
    /// `unsupported`: the backend cannot honour this part of the contract (the message
    /// names the feature and the backend); refused rather than behaving differently.
    BUSBAR_UNSUPPORTED = 12,
    /// `circuit_open`: the circuit breaker of requests to this subject is open (its last
    /// requests failed); the message says when a probe request goes through.
    BUSBAR_CIRCUIT_OPEN = 13,
    /// `rate_limited`: a publish rate limit had no room (`rate_limit_mode = "fail"`); the
    /// message says when a message fits again.
    BUSBAR_RATE_LIMITED = 14,
    /// `panic`: busbar hit a bug; the call was abandoned without unwinding into C.
    BUSBAR_PANIC = 99,
}

/// Every status with its code text, in one table that `from_error` and
/// `busbar_status_code` both read.
const CODES: &[(busbar_status, &CStr)] = &[
    (busbar_status::BUSBAR_OK, c"ok"),
    (busbar_status::BUSBAR_INVALID_SUBJECT, c"invalid_subject"),
    (busbar_status::BUSBAR_INVALID_ARGUMENT, c"invalid_argument"),
    (busbar_status::BUSBAR_PAYLOAD_TOO_LARGE, c"payload_too_large"),
    (busbar_status::BUSBAR_TIMEOUT, c"timeout"),
    (busbar_status::BUSBAR_NO_RESPONDERS, c"no_responders"),
    (busbar_status::BUSBAR_FORBIDDEN, c"forbidden"),
    (busbar_status::BUSBAR_CLOSED, c"closed"),
    (busbar_status::BUSBAR_DECODE, c"decode"),
    (busbar_status::BUSBAR_CRYPTO, c"crypto"),
    (busbar_status::BUSBAR_BACKEND, c"backend"),
    (busbar_status::BUSBAR_LAGGED, c"lagged"),
    (busbar_status::BUSBAR_UNSUPPORTED, c"unsupported"),
    (busbar_status::BUSBAR_CIRCUIT_OPEN, c"circuit_open"),
    (busbar_status::BUSBAR_RATE_LIMITED, c"rate_limited"),
    (busbar_status::BUSBAR_PANIC, c"panic"),
];

impl busbar_status {
    /// The status of a core error, chosen by its stable code (never by its text).
    pub fn from_error(err: &Error) -> Self {
        let code = err.code();
        CODES
            .iter()
            .find(|(_, c)| c.to_bytes() == code.as_bytes())
            .map(|(s, _)| *s)
            // A code core added without a status here; the unit test below keeps this unreachable.
            .unwrap_or(busbar_status::BUSBAR_BACKEND)
    }
}

thread_local! {
    /// The message of the last failed call on this thread (empty after a success).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn store(text: String) {
    let text = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = text);
}

pub(crate) fn set_last_error(err: &Error) {
    store(err.report());
}

pub(crate) fn set_last_panic(payload: &(dyn Any + Send)) {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("unknown cause");
    store(format!("busbar panicked (a bug, please report it): {what}"));
}

pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            if !last.as_bytes().is_empty() {
                *last = CString::default();
            }
        }
    });
}

/// The message of the last call on this thread that returned a status other than
/// `BUSBAR_OK`, or `""` when the last such call succeeded.
///
/// Borrowed: valid until the next busbar call on this thread that returns a
/// `busbar_status`; copy it to keep it. Never NULL.
#[no_mangle]
pub extern "C" fn busbar_last_error() -> *const c_char {
    ffi_boundary!(@or c"".as_ptr() => {
        LAST_ERROR.with(|last| last.borrow().as_ptr())
    })
}

/// The stable code of `status` as text: `"ok"`, `"invalid_subject"`, ..., `"panic"`
/// (the strings of core's `Error::code`), or `"unknown"` for a number that is no status.
///
/// Borrowed: a static string, never NULL, never to be freed.
#[no_mangle]
pub extern "C" fn busbar_status_code(status: c_int) -> *const c_char {
    ffi_boundary!(@or c"unknown".as_ptr() => {
        CODES
            .iter()
            .find(|(s, _)| *s as c_int == status)
            .map_or(c"unknown".as_ptr(), |(_, c)| c.as_ptr())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_code_has_its_own_status() {
        let mut seen = Vec::new();
        for code in Error::CODES {
            let (status, _) = CODES
                .iter()
                .find(|(_, c)| c.to_bytes() == code.as_bytes())
                .unwrap_or_else(|| panic!("core code {code:?} has no busbar_status"));
            assert!(!seen.contains(status), "{code} shares a status");
            seen.push(*status);
        }
        assert_eq!(CODES.len(), Error::CODES.len() + 2, "only ok and panic are extra");
    }

    #[test]
    fn errors_map_on_their_code() {
        let cases = [
            (
                Error::InvalidArgument("x".into()),
                busbar_status::BUSBAR_INVALID_ARGUMENT,
            ),
            (Error::Closed("bus"), busbar_status::BUSBAR_CLOSED),
            (
                Error::PayloadTooLarge { size: 2, max: 1 },
                busbar_status::BUSBAR_PAYLOAD_TOO_LARGE,
            ),
            (
                Error::Lagged {
                    pattern: "a".into(),
                    missed: 3,
                },
                busbar_status::BUSBAR_LAGGED,
            ),
        ];
        for (err, status) in cases {
            assert_eq!(busbar_status::from_error(&err), status);
            let code = unsafe { std::ffi::CStr::from_ptr(busbar_status_code(status as c_int)) };
            assert_eq!(code.to_str().unwrap(), err.code());
        }
        let unknown = unsafe { std::ffi::CStr::from_ptr(busbar_status_code(12345)) };
        assert_eq!(unknown.to_str().unwrap(), "unknown");
    }
}
