//! Bounds of numeric options (docs/design.md §8): every duration, count and size a caller
//! gives, in any language, is checked here and refused with `invalid_argument` naming the
//! option, so no option can reach a conversion that panics (`Duration::from_secs_f64`), a
//! timer that overflows, or a broker field (JetStream counts and durations are signed
//! 64-bit nanoseconds) that the server rejects with an opaque error.

use std::time::Duration;

use crate::error::{Error, Result};

/// Longest duration any option accepts (timeouts, `ack_wait`, backoff, `nak` delays,
/// stream ages and windows): 100 years, well inside JetStream's signed 64-bit
/// nanoseconds (292 years) and every timer busbar uses.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Largest count a durable option (`max_bytes`, `max_messages`, a start sequence)
/// accepts: JetStream's signed 64-bit integers.
pub const MAX_COUNT: u64 = i64::MAX as u64;

/// Largest `subscription_capacity`: 16,777,216 messages per subscription. A buffer is
/// allocated in blocks as it fills, but a capacity near `usize::MAX` overflows the
/// channel's bookkeeping (it panicked at subscribe above 2^61 - 1).
pub const MAX_SUBSCRIPTION_CAPACITY: usize = 1 << 24;

/// Largest `max_ack_pending`: JetStream's limit is a signed 32-bit count in practice
/// (the server caps it per account); 1,000,000 outstanding deliveries is far above any
/// sensible setting.
pub const MAX_ACK_PENDING: usize = 1_000_000;

/// Largest `retention_days`: 36,500 (100 years, see [`MAX_DURATION`]).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Largest header block a message may have, in bytes, counted as NATS sends it
/// (`NATS/1.0\r\n`, a `name: value\r\n` line per attribute and header, `\r\n`): 8 KiB,
/// the common header limit of HTTP servers, and about 25 times the block of a typical
/// event. A NATS server counts it toward its `max_payload`, so this much of the server's
/// limit is kept for it (docs/design.md §4).
pub const MAX_HEADER_BLOCK: usize = 8 * 1024;

/// `d` if it is at most [`MAX_DURATION`], else `invalid_argument` naming `name`.
pub fn duration(name: &str, d: Duration) -> Result<Duration> {
    if d > MAX_DURATION {
        return Err(Error::InvalidArgument(format!(
            "{name} must be at most 100 years ({} s), not {} s",
            MAX_DURATION.as_secs(),
            d.as_secs()
        )));
    }
    Ok(d)
}

/// A duration given in (possibly fractional) seconds: refuses NaN, negative, infinite
/// and over-[`MAX_DURATION`] values with `invalid_argument` naming `name`.
pub fn seconds(name: &str, secs: f64) -> Result<Duration> {
    from_f64(name, secs, 1.0, "seconds")
}

/// A duration given in (possibly fractional) milliseconds, as [`seconds`].
pub fn millis(name: &str, ms: f64) -> Result<Duration> {
    from_f64(name, ms, 1000.0, "milliseconds")
}

fn from_f64(name: &str, value: f64, per_second: f64, unit: &str) -> Result<Duration> {
    let max = MAX_DURATION.as_secs_f64() * per_second;
    if !(value.is_finite() && value >= 0.0 && value <= max) {
        return Err(Error::InvalidArgument(format!(
            "{name} must be a number of {unit} from 0 to {max} (100 years), not {value}"
        )));
    }
    Ok(Duration::from_secs_f64(value / per_second))
}

/// A whole number from 0 to `max` given as a float (JavaScript numbers): refuses NaN,
/// negative, infinite, fractional and too large values with `invalid_argument`.
pub fn whole(name: &str, value: f64, max: u64) -> Result<u64> {
    // Above 2^53 a float is not an exact integer; JavaScript's safe range ends there too.
    const EXACT: f64 = 9_007_199_254_740_991.0;
    let max_f = (max as f64).min(EXACT);
    if !(value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= max_f) {
        return Err(Error::InvalidArgument(format!(
            "{name} must be a whole number from 0 to {max_f}, not {value}"
        )));
    }
    Ok(value as u64)
}

/// `value` if it is at most `max`, else `invalid_argument` naming `name`.
pub fn at_most<T: PartialOrd + std::fmt::Display>(name: &str, value: T, max: T) -> Result<T> {
    if value > max {
        return Err(Error::InvalidArgument(format!(
            "{name} must be at most {max}, not {value}"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_number_gets_through_unchecked() {
        for bad in [
            f64::NAN,
            -1.0,
            -0.5,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            4e12,
        ] {
            let err = millis("options.timeout", bad * 1000.0).unwrap_err();
            assert_eq!(err.code(), "invalid_argument", "{bad}");
            assert!(err.to_string().contains("options.timeout"), "{err}");
            assert_eq!(seconds("timeout", bad).unwrap_err().code(), "invalid_argument");
        }
        assert_eq!(millis("t", 1500.0).unwrap(), Duration::from_millis(1500));
        assert_eq!(seconds("t", 0.0).unwrap(), Duration::ZERO);
        assert_eq!(seconds("t", MAX_DURATION.as_secs_f64()).unwrap(), MAX_DURATION);
        assert!(duration("ack_wait", Duration::MAX).is_err());
        assert!(duration("ack_wait", Duration::from_millis(u64::MAX)).is_err());
        for bad in [f64::NAN, -1.0, 1.5, f64::INFINITY, 1e300, 2f64.powi(63)] {
            assert_eq!(whole("n", bad, MAX_COUNT).unwrap_err().code(), "invalid_argument");
        }
        assert_eq!(whole("n", 42.0, MAX_COUNT).unwrap(), 42);
        assert!(whole("n", 11.0, 10).is_err());
        assert_eq!(at_most("n", 3usize, 3).unwrap(), 3);
        assert!(at_most("n", 4usize, 3).is_err());
    }
}
