//! How often a binding writes a notice (an undecodable message, a lag notice nobody
//! handles) to its log: the first at once, then at most one record per [`INTERVAL`] per
//! subscription, each counting every notice since the previous record, so a hostile peer
//! cannot flood the log and no notice goes unreported. The bindings only emit what
//! [`Throttle::hit`] and [`Throttle::flush`] return; the exact totals are always in the
//! subscription's stats (`undecodable`, `missed`).

use std::time::{Duration, Instant};

/// The least time between two records of one subscription's throttle.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// What one record reports: the notices since the previous record, this one included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// How many notices the record stands for (1 when none was held back).
    pub notices: u64,
    /// The sum of their amounts (1 per undecodable message; the messages missed per lag
    /// notice).
    pub total: u64,
}

/// What the binding does after [`Throttle::hit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Write one record now.
    Record(Report),
    /// Write nothing now; call [`Throttle::flush`] after this long and write what it
    /// returns (this notice is held back, and no flush was pending).
    FlushAfter(Duration),
    /// Write nothing: the notice is held back and a flush is already pending.
    Held,
}

/// One subscription's record throttle (see the module documentation).
#[derive(Debug, Default)]
pub struct Throttle {
    last: Option<Instant>,
    held: Report,
    flush_pending: bool,
}

impl Throttle {
    /// A throttle that has written no record yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one notice carrying `amount` and says whether to write a record now.
    pub fn hit(&mut self, amount: u64) -> Decision {
        self.hit_at(Instant::now(), amount)
    }

    /// [`Throttle::hit`] at `now`.
    pub fn hit_at(&mut self, now: Instant, amount: u64) -> Decision {
        self.held.notices += 1;
        self.held.total = self.held.total.saturating_add(amount);
        match self.last {
            Some(last) if now.saturating_duration_since(last) < INTERVAL => {
                if self.flush_pending {
                    Decision::Held
                } else {
                    self.flush_pending = true;
                    Decision::FlushAfter(INTERVAL - now.saturating_duration_since(last))
                }
            }
            _ => Decision::Record(self.take(now)),
        }
    }

    /// The record of what was held back since the previous one, if anything (due when a
    /// [`Decision::FlushAfter`] delay has passed).
    pub fn flush(&mut self) -> Option<Report> {
        self.flush_at(Instant::now())
    }

    /// [`Throttle::flush`] at `now`.
    pub fn flush_at(&mut self, now: Instant) -> Option<Report> {
        self.flush_pending = false;
        (self.held.notices > 0).then(|| self.take(now))
    }

    fn take(&mut self, now: Instant) -> Report {
        self.last = Some(now);
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_one_record_per_interval_counting_all() {
        let t0 = Instant::now();
        let mut t = Throttle::new();
        let one = Report { notices: 1, total: 1 };
        assert_eq!(t.hit_at(t0, 1), Decision::Record(one));
        assert_eq!(t.hit_at(t0, 1), Decision::FlushAfter(INTERVAL));
        let later = t0 + Duration::from_millis(400);
        for _ in 0..997 {
            assert_eq!(t.hit_at(later, 1), Decision::Held);
        }
        let due = t0 + INTERVAL;
        assert_eq!(
            t.flush_at(due),
            Some(Report {
                notices: 998,
                total: 998
            })
        );
        assert_eq!(t.flush_at(due), None);
        // Within the interval of that record: held again, with a new flush.
        assert_eq!(
            t.hit_at(due + Duration::from_millis(250), 7),
            Decision::FlushAfter(Duration::from_millis(750))
        );
        assert_eq!(t.flush_at(due + INTERVAL), Some(Report { notices: 1, total: 7 }));
        // A quiet interval later, the next notice is recorded at once.
        assert_eq!(
            t.hit_at(due + 3 * INTERVAL, 2),
            Decision::Record(Report { notices: 1, total: 2 })
        );
    }
}
