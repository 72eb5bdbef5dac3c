//! One jittered exponential backoff, shared by reconnecting, retrying the first connect and
//! retrying requests (docs/design.md §8): attempt `n` (from 1) waits `base × 2^(n-1)`,
//! capped at `max`, less up to a fifth at random, so many clients that lost one server do
//! not all come back in the same instant, and no wait is longer than `max`.

use std::time::Duration;

/// The wait before retry number `attempt` (1 for the first retry).
pub(crate) fn delay(attempt: u32, base: Duration, max: Duration) -> Duration {
    let doubled = base.saturating_mul(1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX));
    let full = doubled.min(max);
    // Subtracting the jitter keeps every value, `Duration::MAX` included, in range.
    full.saturating_sub(full.mul_f64(rand::random_range(0.0..0.2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_less_at_most_a_fifth() {
        let ms = Duration::from_millis;
        for _ in 0..100 {
            let first = delay(1, ms(100), ms(1000));
            assert!(first <= ms(100) && first >= ms(80), "{first:?}");
            let third = delay(3, ms(100), ms(1000));
            assert!(third <= ms(400) && third >= ms(320), "{third:?}");
            let capped = delay(40, ms(100), ms(1000));
            assert!(capped <= ms(1000) && capped >= ms(800), "{capped:?}");
            assert_eq!(delay(u32::MAX, ms(0), ms(1000)), Duration::ZERO);
            assert!(delay(u32::MAX, Duration::MAX, Duration::MAX) <= Duration::MAX);
        }
    }
}
