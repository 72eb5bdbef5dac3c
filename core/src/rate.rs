//! Rates, and the token bucket behind every rate limit of busbar (docs/design.md §4): the
//! publish limits of a bus and of subject patterns, the delivery limit of a subscription
//! and a durable consumer's `rate_limit`. The bucket is `governor`'s (GCRA), so there is
//! one implementation of "at most N a second, bursts of B".

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};

use crate::error::{Error, Result};
use crate::subject::validate_pattern;

/// Lowest rate accepted: one message in 1,000 seconds.
pub const MIN_RATE: f64 = 0.001;
/// Highest rate accepted: 1,000,000,000 messages a second.
pub const MAX_RATE: f64 = 1e9;

/// A rate of messages per second (fractions allowed), from [`MIN_RATE`] to [`MAX_RATE`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The time one message's token takes to come back.
    interval: Duration,
}

impl Rate {
    /// `per_second` messages a second; outside [`MIN_RATE`]..=[`MAX_RATE`] (NaN and
    /// infinities included) it is `invalid_argument` naming `name`.
    pub fn per_second(name: &str, per_second: f64) -> Result<Rate> {
        if !(MIN_RATE..=MAX_RATE).contains(&per_second) {
            return Err(Error::InvalidArgument(format!(
                "{name} must be a number of messages per second from {MIN_RATE} to {MAX_RATE}, not {per_second}"
            )));
        }
        let interval = Duration::from_secs_f64(1.0 / per_second).max(Duration::from_nanos(1));
        Ok(Rate { interval })
    }

    /// One message per `interval` (at least a nanosecond), unchecked: for a limit whose
    /// own bounds were checked elsewhere (a durable consumer's `rate_limit`).
    pub(crate) fn from_interval(interval: Duration) -> Rate {
        Rate {
            interval: interval.max(Duration::from_nanos(1)),
        }
    }

    /// Messages per second.
    pub fn as_per_second(&self) -> f64 {
        1.0 / self.interval.as_secs_f64()
    }

    /// The time between two messages at this rate.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// A rate from its text (`"50"`, `"0.5"`); empty or `0` means none.
    pub(crate) fn parse_optional(key: &str, value: &str) -> Result<Option<Rate>> {
        let value = value.trim();
        if value.is_empty() || value == "0" {
            return Ok(None);
        }
        Self::parse(key, value).map(Some)
    }

    fn parse(key: &str, value: &str) -> Result<Rate> {
        let n: f64 = value.trim().parse().map_err(|_| {
            Error::InvalidArgument(format!(
                "{key} must be a number of messages per second, not {}",
                crate::error::quote(value)
            ))
        })?;
        Rate::per_second(key, n)
    }

    /// `pattern=rate` items separated by whitespace (a subject holds none), each pattern
    /// valid; the rate is what follows the last `=`.
    pub(crate) fn parse_limits(key: &str, value: &str) -> Result<Vec<(String, Rate)>> {
        value
            .split_whitespace()
            .map(|item| {
                let (pattern, rate) = item.rsplit_once('=').ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "{key} takes pattern=rate items separated by spaces, not {}",
                        crate::error::quote(item)
                    ))
                })?;
                validate_pattern(pattern)?;
                Ok((pattern.to_owned(), Self::parse(key, rate)?))
            })
            .collect()
    }
}

impl fmt::Debug for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} messages/s", self.as_per_second())
    }
}

/// One token bucket: `rate`, with room for `burst` messages at once.
pub(crate) struct Limiter {
    /// What the limit is, for errors: `publish_rate (50 messages/s)`.
    pub(crate) label: String,
    bucket: DefaultDirectRateLimiter,
    clock: DefaultClock,
}

impl Limiter {
    pub(crate) fn new(label: String, rate: Rate, burst: u32) -> Limiter {
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(rate.interval)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Limiter {
            label,
            bucket: DefaultDirectRateLimiter::direct(quota),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one token: `None` when there was one, else how long until one comes.
    pub(crate) fn take(&self) -> Option<Duration> {
        self.bucket
            .check()
            .err()
            .map(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Waits until a token comes, and takes it.
    pub(crate) async fn acquire(&self) {
        while let Some(wait) = self.take() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// One second's worth of `rate`, at least 1: the default burst.
pub(crate) fn one_second(rate: Rate) -> u32 {
    rate.as_per_second().ceil().clamp(1.0, f64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_checked_and_parsed() {
        assert_eq!(
            Rate::per_second("r", 4.0).unwrap().interval(),
            Duration::from_millis(250)
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e10, 0.0001] {
            assert_eq!(Rate::per_second("r", bad).unwrap_err().code(), "invalid_argument");
        }
        assert_eq!(Rate::parse_optional("r", "").unwrap(), None);
        assert_eq!(Rate::parse_optional("r", "0").unwrap(), None);
        assert!(Rate::parse_optional("r", "fast").is_err());
        let limits = Rate::parse_limits("l", " orders.>=50  a=b.*=0.5 ").unwrap();
        assert_eq!(limits[0].0, "orders.>");
        assert_eq!(limits[1].0, "a=b.*");
        assert_eq!(limits[1].1.interval(), Duration::from_secs(2));
        for (bad, code) in [
            ("orders.>", "invalid_argument"),
            ("a..b=5", "invalid_subject"),
            ("a=x", "invalid_argument"),
            ("a.>.b=1", "invalid_subject"),
        ] {
            assert_eq!(Rate::parse_limits("l", bad).unwrap_err().code(), code, "{bad}");
        }
    }

    #[test]
    fn a_bucket_lets_a_burst_through_then_says_how_long_to_wait() {
        // One token per 100 s: nothing refills while the test runs, however slow.
        let limiter = Limiter::new("t".into(), Rate::per_second("r", 0.01).unwrap(), 3);
        for _ in 0..3 {
            assert_eq!(limiter.take(), None);
        }
        let wait = limiter.take().expect("the fourth waits");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(100),
            "{wait:?}"
        );
        assert_eq!(one_second(Rate::per_second("r", 0.5).unwrap()), 1);
        assert_eq!(one_second(Rate::per_second("r", 2.5).unwrap()), 3);
    }
}
