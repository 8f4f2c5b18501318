//! The retry decision and the backoff between attempts: a failure is followed by another attempt
//! when it is retryable and the node's failed attempts so far, this one included, number at most
//! `retries`; the wait before it grows exponentially, is capped, and is shortened by jitter.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The largest share of a delay that jitter may take off (20%).
pub const JITTER_SPAN: f64 = 0.2;

/// Exponential backoff: `initial_ms * factor^(n-1)`, capped at `max_ms`, shortened by jitter.
///
/// Defaults are Temporal's: initial 1 s, factor 2, maximum 100 s. The factor is at least 1, so
/// delays never shrink; an initial delay above `max_ms` means every delay is `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackoffPolicy {
    /// Delay after the first failure.
    pub initial_ms: u64,
    /// Growth factor per further failure (at least 1).
    #[schemars(range(min = 1))]
    pub factor: f64,
    /// Longest delay.
    pub max_ms: u64,
}

/// Why a backoff policy was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BackoffError {
    /// The growth factor is below 1 (delays would shrink as failures grow) or is not a finite
    /// number (no delay can be computed from it).
    #[error("backoff factor must be a finite number of at least 1, not {factor}")]
    InvalidFactor {
        /// The factor refused.
        factor: f64,
    },
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
    /// A policy from values a user gave (flags, a configuration file), refused with
    /// [`BackoffError`] when they break the rule [`BackoffPolicy::validate`] checks.
    pub fn new(initial_ms: u64, factor: f64, max_ms: u64) -> Result<Self, BackoffError> {
        let policy = Self {
            initial_ms,
            factor,
            max_ms,
        };
        policy.validate()?;
        Ok(policy)
    }

    /// Checks the rule of a backoff policy: the factor is a finite number of at least 1, so
    /// delays never shrink as failures grow. The fields are public (descriptors are written as
    /// struct literals and deserialised), so a caller that takes a policy from outside checks it
    /// here before running with it.
    pub fn validate(&self) -> Result<(), BackoffError> {
        if self.factor.is_finite() && self.factor >= 1.0 {
            Ok(())
        } else {
            Err(BackoffError::InvalidFactor {
                factor: self.factor,
            })
        }
    }

    /// The delay before the attempt that follows the `failures`-th failure (1 for the first).
    ///
    /// `jitter` is a random fraction in `[0, 1]` supplied by the caller (0 means no jitter); it
    /// shortens the delay by up to [`JITTER_SPAN`], so jitter never pushes a delay past `max_ms`.
    /// `retry_after_ms`, when the task asked for a specific delay, overrides the policy.
    ///
    /// This answers for every policy, including one that did not pass [`BackoffPolicy::validate`]:
    /// such a factor counts as 1 (every delay is `initial_ms`, capped), so a delay never shrinks
    /// and is never computed from NaN.
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
        let factor = if self.validate().is_ok() {
            self.factor
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

    /// The most attempts a run of the node can still start, given the failed attempts it already
    /// has (they count toward `retries`): `retries + 1 - failures_before`, and never less than 1,
    /// because running a node always starts one attempt, even once earlier failures used up the
    /// budget. A success, a cancellation or a non-retryable failure ends the run sooner.
    ///
    /// Saturates at `u32::MAX`, the last attempt number.
    pub fn attempts_left(&self, failures_before: u32) -> u32 {
        // The first attempt, plus the retries the earlier failures left.
        self.retries
            .saturating_sub(failures_before)
            .saturating_add(1)
    }

    /// The most attempts the node will have had when a run of it ends: its `earlier_attempts`
    /// (in any state), of which `failures_before` failed, plus [`RetryPolicy::attempts_left`].
    pub fn planned_attempts(&self, earlier_attempts: u32, failures_before: u32) -> u32 {
        earlier_attempts.saturating_add(self.attempts_left(failures_before))
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
    fn a_factor_below_one_or_not_finite_is_refused() {
        assert_eq!(
            BackoffPolicy::new(10, 1.0, 100),
            Ok(BackoffPolicy {
                initial_ms: 10,
                factor: 1.0,
                max_ms: 100
            })
        );
        for factor in [0.5, 0.0, -2.0, f64::NAN, f64::INFINITY] {
            let error = BackoffPolicy::new(10, factor, 100).expect_err("refused");
            assert!(matches!(error, BackoffError::InvalidFactor { .. }));
            assert!(
                error
                    .to_string()
                    .starts_with("backoff factor must be a finite number of at least 1"),
                "{error}"
            );
        }
        assert!(
            BackoffPolicy::new(5_000, 2.0, 100).is_ok(),
            "initial above max is capped"
        );
    }

    #[test]
    fn attempts_left_counts_earlier_failures_and_is_at_least_one() {
        let policy = RetryPolicy {
            retries: 2,
            ..RetryPolicy::default()
        };
        assert_eq!(policy.attempts_left(0), 3);
        assert_eq!(policy.attempts_left(2), 1);
        assert_eq!(policy.attempts_left(7), 1);
        assert_eq!(policy.planned_attempts(4, 1), 6);
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
