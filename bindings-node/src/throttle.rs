//! `NoticeThrottle`: the core's log throttle (`busbar::throttle`) for `busbar.js`, which
//! turns notices nobody handles into process warnings at most once a second per
//! subscription. Internal to the package.

use std::sync::Mutex;

use busbar::throttle::{Decision, Report, Throttle};

/// What a warning stands for: `notices` notices since the previous warning, carrying
/// `total` (undecodable messages, or messages missed).
#[napi(object)]
pub struct NoticeReport {
    pub notices: f64,
    pub total: f64,
    /// Set when nothing is to be written now: call `flush()` after this many milliseconds.
    pub flush_after_ms: Option<f64>,
}

impl From<Report> for NoticeReport {
    fn from(r: Report) -> Self {
        NoticeReport {
            notices: r.notices as f64,
            total: r.total as f64,
            flush_after_ms: None,
        }
    }
}

/// Internal to the package (`busbar.js`): decides when a notice becomes a warning.
#[napi]
pub struct NoticeThrottle(Mutex<Throttle>);

#[napi]
impl NoticeThrottle {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        NoticeThrottle(Mutex::new(Throttle::new()))
    }

    fn throttle(&self) -> std::sync::MutexGuard<'_, Throttle> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts one notice carrying `amount`: a report to write now (`notices` > 0), or none
    /// (`notices` 0) with `flushAfterMs` when a flush is to be scheduled.
    #[napi(catch_unwind)]
    pub fn hit(&self, amount: f64) -> NoticeReport {
        let amount = if amount.is_finite() && amount > 0.0 {
            amount as u64
        } else {
            0
        };
        match self.throttle().hit(amount) {
            Decision::Record(report) => report.into(),
            Decision::FlushAfter(delay) => NoticeReport {
                notices: 0.0,
                total: 0.0,
                flush_after_ms: Some(delay.as_secs_f64() * 1000.0),
            },
            Decision::Held => NoticeReport {
                notices: 0.0,
                total: 0.0,
                flush_after_ms: None,
            },
        }
    }

    /// The report of what was held back since the previous warning, or `null`.
    #[napi(catch_unwind)]
    pub fn flush(&self) -> Option<NoticeReport> {
        self.throttle().flush().map(Into::into)
    }
}
