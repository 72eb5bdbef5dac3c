//! Leaving Python alone while the interpreter exits.
//!
//! The tokio runtime's threads outlive the interpreter: a NATS connection that breaks at
//! exit (a test's nats-server killed, a bus never closed) logs a record from a runtime
//! thread after `Py_FinalizeEx` has begun. Attaching to CPython 3.11 at that point does
//! not fail cleanly: the thread is torn down inside `PyGILState_Ensure`, or touches freed
//! interpreter state, and the process dies with SIGSEGV. pyo3's own check
//! (`Python::try_attach`) only exists on 3.13+, and has a window between check and use.
//!
//! So every entry into Python from a thread Python did not start goes through [`attach`],
//! and the module registers [`interpreter_exits`] with `atexit` (callbacks run before the
//! interpreter is torn down). That callback closes the door and, with the GIL released,
//! waits for every thread already inside to leave. The two counters are read and written
//! in `SeqCst` order: a thread either sees the door closed, or was counted before it
//! closed and is waited for. After that nothing of busbar enters Python again; a record
//! at warning level or above is written to stderr instead, so it is not lost.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::time::{Duration, Instant};

use pyo3::prelude::*;

/// True once `atexit` has run [`interpreter_exits`].
static EXITING: AtomicBool = AtomicBool::new(false);
/// Threads inside [`attach`] right now.
static INSIDE: AtomicUsize = AtomicUsize::new(0);
/// How long the exit waits for threads inside Python (a `logging` handler that blocks
/// forever must not hang the process's exit).
const EXIT_WAIT: Duration = Duration::from_secs(2);

/// Runs `f` attached to the interpreter, unless the interpreter is exiting (then `None`).
/// Safe from any thread, attached or not.
pub(crate) fn attach<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> Option<R> {
    INSIDE.fetch_add(1, SeqCst);
    let outcome = if EXITING.load(SeqCst) {
        None
    } else {
        Python::try_attach(f)
    };
    INSIDE.fetch_sub(1, SeqCst);
    outcome
}

/// Registered with `atexit` by the module: closes the door, then waits (GIL released, at
/// most [`EXIT_WAIT`]) until no thread is inside Python through [`attach`].
#[pyfunction]
pub(crate) fn interpreter_exits(py: Python<'_>) {
    EXITING.store(true, SeqCst);
    py.detach(|| {
        let start = Instant::now();
        while INSIDE.load(SeqCst) > 0 && start.elapsed() < EXIT_WAIT {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// The `log` logger of the module: pyo3-log's (records to Python's `logging`) behind the
/// door of [`attach`].
pub(crate) struct Logger(pub(crate) pyo3_log::Logger);

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // pyo3-log's check reads its cache without Python.
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if attach(|_| self.0.log(record)).is_none() && record.level() <= log::Level::Warn {
            eprintln!("{} {}: {}", record.level(), record.target(), record.args());
        }
    }

    fn flush(&self) {}
}
