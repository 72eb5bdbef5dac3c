//! busbar logs through `tracing` (connect, disconnect, reconnect, slow consumer, lag,
//! withheld, denied, crypto errors, dead letters, audit failures; never a payload or a
//! protected value). A Rust service reads them with any `tracing` subscriber. Without one,
//! `tracing` hands them to the `log` facade, and [`set_log_sink`] sends them on to one
//! function: what the Node binding's `setLogger` and C's `busbar_set_log_callback` use
//! (Python's binding sends them to the `logging` logger `busbar` through `pyo3-log`).

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, Once};

use crate::error::{Error, Result};

/// A log record's level, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed: a crypto error, an audit record that could not be written.
    Error = 1,
    /// An operator should look: a disconnect, a slow consumer, lag, a denial, a dead letter.
    Warn = 2,
    /// A connection came up, a bus connected.
    Info = 3,
    /// Detail for debugging.
    Debug = 4,
    /// More detail.
    Trace = 5,
}

impl LogLevel {
    /// `"error"`, `"warn"`, `"info"`, `"debug"` or `"trace"`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Parses a level name (as [`LogLevel::as_str`] writes it, any case).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" | "warning" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(Error::InvalidArgument(format!(
                "log level must be error, warn, info, debug or trace, not {}",
                crate::error::quote(name)
            ))),
        }
    }

    fn from_log(level: log::Level) -> Self {
        match level {
            log::Level::Error => LogLevel::Error,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Info => LogLevel::Info,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Trace => LogLevel::Trace,
        }
    }

    fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

/// Receives one record: its level, its target (the busbar module, `busbar::…`) and its
/// message. Called on whichever thread logs (often a runtime worker), so it must not block.
pub type LogSink = Box<dyn Fn(LogLevel, &str, &str) + Send + Sync>;

type SharedSink = Arc<dyn Fn(LogLevel, &str, &str) + Send + Sync>;

/// The sink, cloned out of the lock for each record: a sink may call busbar, which may log.
static SINK: Mutex<Option<SharedSink>> = Mutex::new(None);

struct Forward;

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target().starts_with("busbar")
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let sink = SINK.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(sink) = sink {
            let message = record.args().to_string();
            sink(LogLevel::from_log(record.level()), record.target(), &message);
        }
    }

    fn flush(&self) {}
}

/// Sends busbar's records at `level` and above to `sink` (`None`: to nowhere), replacing
/// the previous sink. Fails with `backend` when the process already has another `log`
/// logger (then busbar's records go there). The previous sink is dropped once no record
/// is being handed to it.
pub fn set_log_sink(sink: Option<LogSink>, level: LogLevel) -> Result<()> {
    static INSTALL: Once = Once::new();
    static OURS: AtomicBool = AtomicBool::new(false);
    INSTALL.call_once(|| OURS.store(log::set_logger(&Forward).is_ok(), Relaxed));
    if !OURS.load(Relaxed) {
        return Err(Error::Backend {
            message: "the process already has a `log` logger; busbar's records go there".into(),
            source: None,
        });
    }
    let on = sink.is_some();
    *SINK.lock().unwrap_or_else(|p| p.into_inner()) = sink.map(SharedSink::from);
    log::set_max_level(if on { level.filter() } else { log::LevelFilter::Off });
    Ok(())
}
