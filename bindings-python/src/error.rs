//! Core errors as Python exceptions: `BusError` and one subclass per stable code
//! (docs/design.md §7), each with a `code` class attribute. Mapping is on the code only.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyType;

create_exception!(
    busbar,
    BusError,
    PyException,
    "Every busbar failure; `.code` is its stable code."
);
create_exception!(
    busbar,
    InvalidSubjectError,
    BusError,
    "code `invalid_subject`: a subject or pattern breaks the rules."
);
create_exception!(
    busbar,
    InvalidArgumentError,
    BusError,
    "code `invalid_argument`: an argument other than a subject is unacceptable."
);
create_exception!(
    busbar,
    PayloadTooLargeError,
    BusError,
    "code `payload_too_large`: the payload exceeds max_payload."
);
create_exception!(
    busbar,
    TimeoutError,
    pyo3::exceptions::PyTimeoutError,
    "code `timeout`: no reply arrived in time."
);
create_exception!(
    busbar,
    NoRespondersError,
    BusError,
    "code `no_responders`: nothing listens on the request's subject."
);
create_exception!(
    busbar,
    ForbiddenError,
    BusError,
    "code `forbidden`: the caller is not allowed to do this."
);
create_exception!(
    busbar,
    ClosedError,
    BusError,
    "code `closed`: the bus or subscription is closed."
);
create_exception!(
    busbar,
    DecodeError,
    BusError,
    "code `decode`: bytes on the wire could not be read as a message."
);
create_exception!(
    busbar,
    CryptoError,
    BusError,
    "code `crypto`: encryption or decryption failed."
);
create_exception!(
    busbar,
    BackendError,
    BusError,
    "code `backend`: the backend (broker connection, runtime) failed."
);
create_exception!(
    busbar,
    UnsupportedError,
    BusError,
    "code `unsupported`: the backend cannot honour this part of the contract."
);
create_exception!(
    busbar,
    CircuitOpenError,
    BusError,
    "code `circuit_open`: the circuit breaker of requests to this subject is open."
);
create_exception!(
    busbar,
    RateLimitedError,
    BusError,
    "code `rate_limited`: a publish rate limit had no room (rate_limit_mode=\"fail\")."
);
create_exception!(
    busbar,
    LaggedError,
    BusError,
    "code `lagged`: a subscription missed messages because its buffer was full."
);

/// Each stable code and its class: the one table `to_py` and `register` read.
macro_rules! by_code {
    ($($code:literal => $class:ident),* $(,)?) => {
        /// The exception for a core error, chosen by its code. Made lazily, so it needs
        /// no GIL (runtime threads build them); `register` checks every code has a class.
        pub(crate) fn to_py(err: busbar::Error) -> PyErr {
            let text = err.report();
            if let busbar::Error::Lagged { missed, .. } = err {
                // `.missed` reads the second argument (see `register`).
                return LaggedError::new_err((text, missed));
            }
            match err.code() {
                $($code => $class::new_err(text),)*
                other => BusError::new_err(format!("[{other}] {text}")),
            }
        }

        fn class_of<'py>(py: Python<'py>, code: &str) -> Option<Bound<'py, PyType>> {
            match code {
                $($code => Some(py.get_type::<$class>()),)*
                _ => None,
            }
        }
    };
}

by_code! {
    "invalid_subject" => InvalidSubjectError,
    "invalid_argument" => InvalidArgumentError,
    "payload_too_large" => PayloadTooLargeError,
    "timeout" => TimeoutError,
    "no_responders" => NoRespondersError,
    "forbidden" => ForbiddenError,
    "closed" => ClosedError,
    "decode" => DecodeError,
    "crypto" => CryptoError,
    "backend" => BackendError,
    "lagged" => LaggedError,
    "unsupported" => UnsupportedError,
    "circuit_open" => CircuitOpenError,
    "rate_limited" => RateLimitedError,
}

/// Adds `BusError` and its subclasses to the module, each with its `code`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<BusError>();
    base.setattr("code", "")?;
    // Set on the instance that stopped `publish_batch` (how many items went before it).
    base.setattr("published", py.None())?;
    m.add("BusError", &base)?;
    for code in busbar::Error::CODES {
        let class = class_of(py, code).ok_or_else(|| {
            pyo3::exceptions::PyRuntimeError::new_err(format!("busbar: no exception class for code {code:?}"))
        })?;
        class.setattr("code", *code)?;
        m.add(class.name()?, class)?;
    }
    // The names of before docs/design.md §9 (every class ends in `Error`), kept as aliases.
    for (old, new) in [
        ("InvalidSubject", py.get_type::<InvalidSubjectError>()),
        ("InvalidArgument", py.get_type::<InvalidArgumentError>()),
        ("PayloadTooLarge", py.get_type::<PayloadTooLargeError>()),
        ("Timeout", py.get_type::<TimeoutError>()),
        ("NoResponders", py.get_type::<NoRespondersError>()),
        ("Forbidden", py.get_type::<ForbiddenError>()),
        ("Closed", py.get_type::<ClosedError>()),
        ("Lagged", py.get_type::<LaggedError>()),
    ] {
        m.add(old, new)?;
    }
    // A timeout is also the builtin TimeoutError (created on it, so its instance layout
    // is OSError's), so `except TimeoutError` and `except asyncio.TimeoutError` catch it.
    let timeout = py.get_type::<TimeoutError>();
    let builtin_timeout = py.get_type::<pyo3::exceptions::PyTimeoutError>();
    timeout.setattr("__bases__", (base.clone(), builtin_timeout))?;
    // Bad values and undecodable data are also ValueErrors, so code written against the
    // standard library (`except ValueError`, e.g. around json.loads) keeps working.
    let value_error = py.get_type::<pyo3::exceptions::PyValueError>();
    for class in [
        py.get_type::<InvalidArgumentError>(),
        py.get_type::<DecodeError>(),
    ] {
        class.setattr("__bases__", (base.clone(), value_error.clone()))?;
    }
    // A lag notice carries how many messages were missed, as `.missed`; its text stays
    // the message alone.
    let lagged = py.get_type::<LaggedError>();
    let missed = py.eval(
        c"property(lambda self: self.args[1] if len(self.args) > 1 else 0, doc='How many messages were missed at this gap.')",
        None,
        None,
    )?;
    lagged.setattr("missed", missed)?;
    let text = py.eval(c"lambda self: str(self.args[0]) if self.args else ''", None, None)?;
    lagged.setattr("__str__", text)?;
    Ok(())
}
