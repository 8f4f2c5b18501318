//! The retry decision and the backoff between attempts (SPEC section 2).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The largest share of a delay that jitter may take off (20%).
pub const JITTER_SPAN: f64 = 0.2;

/// Exponential backoff: `initial_ms * factor^(n-1)`, capped at `max_ms`, shortened by jitter.
///
/// Defaults are Temporal's: initial 1 s, factor 2, maximum 100 s.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub initial_ms: u64,
    /// Growth factor per further failure (at least 1).
    pub factor: f64,
    /// Longest delay.
    pub max_ms: u64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            factor: 2.0,
            max_ms: 100_000,
        }
    }
}

impl BackoffPolicy {
    /// The delay before the attempt that follows the `failures`-th failure (1 for the first).
    ///
    /// `jitter` is a random fraction in `[0, 1]` supplied by the caller (0 means no jitter); it
    /// shortens the delay by up to [`JITTER_SPAN`], so jitter never pushes a delay past `max_ms`.
    /// `retry_after_ms`, when the task asked for a specific delay, overrides the policy.
    pub fn delay_ms(&self, failures: u32, jitter: f64, retry_after_ms: Option<u64>) -> u64 {
        if let Some(after) = retry_after_ms {
            return after;
        }
        if self.initial_ms == 0 || self.max_ms == 0 {
            // Said outright: with a huge exponent `0 * inf` would be NaN, and `NaN.min(max)` is
            // `max`, turning a zero delay into the longest one.
            return 0;
        }
        let exponent = failures.saturating_sub(1).min(1_000) as i32;
        let factor = if self.factor.is_finite() {
            self.factor.max(1.0)
        } else {
            1.0
        };
        let raw = self.initial_ms as f64 * factor.powi(exponent);
        let capped = raw.min(self.max_ms as f64);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        // The cast saturates; `capped` is finite and non-negative. `max_ms as f64` may round up
        // (above 2^53 not every integer is an f64), so the result is capped once more in integers.
        let delay = (capped * (1.0 - JITTER_SPAN * jitter)).round() as u64;
        delay.min(self.max_ms)
    }
}

/// How many times a node may be retried, and how long to wait in between.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct RetryPolicy {
    /// Extra attempts allowed after the first failure.
    pub retries: u32,
    /// The delay between attempts.
    pub backoff: BackoffPolicy,
}

impl RetryPolicy {
    /// Whether a failure is followed by another attempt: it is retryable and the number of failed
    /// attempts so far (this one included) is at most `retries`.
    pub fn should_retry(&self, retryable: bool, failed_so_far: u32) -> bool {
        retryable && failed_so_far <= self.retries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_double_from_one_second_to_one_hundred() {
        let policy = BackoffPolicy::default();
        let delays: Vec<u64> = (1..=9).map(|n| policy.delay_ms(n, 0.0, None)).collect();
        assert_eq!(
            delays,
            [
                1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 100_000, 100_000
            ]
        );
    }

    #[test]
    fn retry_after_overrides_and_jitter_shortens() {
        let policy = BackoffPolicy::default();
        assert_eq!(policy.delay_ms(5, 0.5, Some(42)), 42);
        assert_eq!(policy.delay_ms(1, 1.0, None), 800);
    }

    #[test]
    fn delay_never_exceeds_a_maximum_that_f64_cannot_represent() {
        // 2^53 + 3 is not an f64: `as f64` rounds it up to 2^53 + 4.
        let max_ms = (1_u64 << 53) + 3;
        let policy = BackoffPolicy {
            initial_ms: max_ms,
            factor: 2.0,
            max_ms,
        };
        assert_eq!(policy.delay_ms(3, 0.0, None), max_ms);
    }

    #[test]
    fn zero_initial_delay_stays_zero_even_when_the_growth_overflows() {
        let policy = BackoffPolicy {
            initial_ms: 0,
            factor: 1e300,
            max_ms: 100_000,
        };
        assert_eq!(policy.delay_ms(1_000, 0.0, None), 0);
    }

    #[test]
    fn retries_zero_means_one_attempt() {
        let policy = RetryPolicy::default();
        assert!(!policy.should_retry(true, 1));
        let policy = RetryPolicy {
            retries: 2,
            ..RetryPolicy::default()
        };
        assert!(policy.should_retry(true, 2));
        assert!(!policy.should_retry(true, 3));
        assert!(!policy.should_retry(false, 1));
    }
}
