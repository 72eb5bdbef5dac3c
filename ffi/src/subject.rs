//! Subject rules (docs/design.md §2) for C: matching and validation, exactly core's.

use std::ffi::c_char;

use crate::args::str_arg;
use crate::error::busbar_status;

/// Whether `pattern` matches `subject`, exactly as a NATS server decides. False when
/// either is NULL, not UTF-8, or invalid. Both strings are borrowed.
#[no_mangle]
pub extern "C" fn busbar_subject_matches(pattern: *const c_char, subject: *const c_char) -> bool {
    ffi_boundary!(@or false => {
        match (str_arg(pattern, "pattern"), str_arg(subject, "subject")) {
            (Ok(p), Ok(s)) => busbar_core::subject_matches(p, s),
            _ => false,
        }
    })
}

/// `BUSBAR_OK` when `subject` (borrowed) is a valid subject to publish to;
/// `BUSBAR_INVALID_SUBJECT` naming the rule it breaks otherwise (`invalid_argument` for
/// NULL or invalid UTF-8).
#[no_mangle]
pub extern "C" fn busbar_validate_subject(subject: *const c_char) -> busbar_status {
    ffi_boundary! { busbar_core::validate_subject(str_arg(subject, "subject")?) }
}

/// `BUSBAR_OK` when `pattern` (borrowed) is a valid subscription pattern (`*` tokens
/// anywhere, a `>` token last); `BUSBAR_INVALID_SUBJECT` otherwise.
#[no_mangle]
pub extern "C" fn busbar_validate_pattern(pattern: *const c_char) -> busbar_status {
    ffi_boundary! { busbar_core::validate_pattern(str_arg(pattern, "pattern")?) }
}
