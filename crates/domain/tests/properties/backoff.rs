//! The backoff between attempts: refused when its factor breaks the rule, capped, monotone
//! without jitter, shortened by jitter, overridden by a retry-after.

use proptest::prelude::*;
use stint_domain::retry::JITTER_SPAN;
use stint_domain::{BackoffError, BackoffPolicy};

/// Factors of every size, with the edges: exactly 1, barely above 1, huge, infinite.
fn factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        1.0..=10.0_f64,
        Just(1.0),
        Just(1.0 + f64::EPSILON),
        Just(2.0),
        1.0..=1e300_f64,
        Just(f64::INFINITY),
    ]
}

fn milliseconds() -> impl Strategy<Value = u64> {
    prop_oneof![
        0..200_000_u64,
        any::<u64>(),
        Just(u64::MAX),
        Just((1 << 53) + 3)
    ]
}

fn policy() -> impl Strategy<Value = BackoffPolicy> {
    (milliseconds(), factor(), milliseconds()).prop_map(|(initial_ms, factor, max_ms)| {
        BackoffPolicy {
            initial_ms,
            factor,
            max_ms,
        }
    })
}

/// Factors the rule refuses: below 1 (zero and negative included) and not finite.
fn refused_factor() -> impl Strategy<Value = f64> {
    prop_oneof![
        -10.0..1.0_f64,
        Just(1.0 - f64::EPSILON),
        Just(0.0),
        Just(-0.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(f64::MIN),
    ]
}

fn failures() -> impl Strategy<Value = u32> {
    prop_oneof![0..64_u32, any::<u32>(), Just(u32::MAX)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `new` accepts exactly a finite factor of at least 1, and keeps the values it was given.
    #[test]
    fn new_accepts_exactly_a_finite_factor_of_at_least_one(
        initial_ms in milliseconds(),
        factor in prop_oneof![factor(), refused_factor(), any::<f64>()],
        max_ms in milliseconds(),
    ) {
        let valid = factor.is_finite() && factor >= 1.0;
        match BackoffPolicy::new(initial_ms, factor, max_ms) {
            Ok(policy) => {
                prop_assert!(valid, "factor {} accepted", factor);
                prop_assert_eq!(policy, BackoffPolicy { initial_ms, factor, max_ms });
                prop_assert_eq!(policy.validate(), Ok(()));
            }
            Err(BackoffError::InvalidFactor { factor: refused }) => {
                prop_assert!(!valid, "factor {} refused", factor);
                prop_assert_eq!(refused.to_bits(), factor.to_bits());
            }
            Err(other) => prop_assert!(false, "unexpected {}", other),
        }
    }

    /// A policy that skipped validation still gets a delay: its factor counts as 1.
    #[test]
    fn a_refused_factor_delays_like_factor_one(
        initial_ms in milliseconds(),
        factor in refused_factor(),
        max_ms in milliseconds(),
        failures in failures(),
        jitter in 0.0..=1.0_f64,
    ) {
        let unchecked = BackoffPolicy { initial_ms, factor, max_ms };
        prop_assert!(unchecked.validate().is_err());
        let one = BackoffPolicy { factor: 1.0, ..unchecked };
        prop_assert_eq!(
            unchecked.delay_ms(failures, jitter, None),
            one.delay_ms(failures, jitter, None)
        );
    }

    #[test]
    fn the_delay_never_exceeds_the_maximum(
        policy in policy(),
        failures in failures(),
        jitter in prop_oneof![0.0..=1.0_f64, Just(0.0), Just(1.0)],
    ) {
        prop_assert!(policy.delay_ms(failures, jitter, None) <= policy.max_ms);
    }

    /// Jitter outside `[0, 1]` (or NaN) is clamped, never an excuse to pass the maximum.
    #[test]
    fn jitter_out_of_range_is_clamped(
        policy in policy(),
        failures in failures(),
        jitter in prop_oneof![any::<f64>(), Just(f64::NAN), Just(-1.0), Just(7.0)],
    ) {
        let delay = policy.delay_ms(failures, jitter, None);
        prop_assert!(delay <= policy.max_ms);
        prop_assert!(delay <= policy.delay_ms(failures, 0.0, None));
    }

    #[test]
    fn without_jitter_the_delay_never_shrinks_as_failures_grow(
        policy in policy(),
        failures in prop_oneof![0..200_u32, any::<u32>()],
    ) {
        let next = failures.saturating_add(1);
        prop_assert!(policy.delay_ms(failures, 0.0, None) <= policy.delay_ms(next, 0.0, None));
    }

    /// Jitter takes at most `JITTER_SPAN` off the delay, and never adds to it.
    #[test]
    fn jitter_only_shortens_and_by_at_most_its_span(
        policy in policy(),
        failures in failures(),
        jitter in 0.0..=1.0_f64,
    ) {
        let plain = policy.delay_ms(failures, 0.0, None);
        let jittered = policy.delay_ms(failures, jitter, None);
        prop_assert!(jittered <= plain);
        // One millisecond of slack for rounding, and a relative one for f64 above 2^53.
        let floor = plain as f64 * (1.0 - JITTER_SPAN) * (1.0 - 1e-12) - 1.0;
        prop_assert!(jittered as f64 >= floor, "{} < {}", jittered, floor);
    }

    #[test]
    fn retry_after_overrides_the_policy(
        policy in policy(),
        failures in failures(),
        jitter in 0.0..=1.0_f64,
        after in milliseconds(),
    ) {
        prop_assert_eq!(policy.delay_ms(failures, jitter, Some(after)), after);
    }

    /// No initial delay, no delay: however large the growth, `0 x factor^n` stays 0.
    #[test]
    fn a_zero_initial_delay_stays_zero(
        factor in factor(),
        max_ms in milliseconds(),
        failures in failures(),
        jitter in 0.0..=1.0_f64,
    ) {
        let policy = BackoffPolicy { initial_ms: 0, factor, max_ms };
        prop_assert_eq!(policy.delay_ms(failures, jitter, None), 0);
    }

    /// With factor 2 and no jitter the delay is `min(initial * 2^(n-1), max)`, computed here in
    /// integers.
    #[test]
    fn doubling_matches_integer_arithmetic(
        initial_ms in 0..1_000_000_u64,
        max_ms in 0..1_000_000_000_u64,
        failures in 0..40_u32,
    ) {
        let policy = BackoffPolicy { initial_ms, factor: 2.0, max_ms };
        let exponent = failures.saturating_sub(1);
        let expected = u128::from(initial_ms) << exponent;
        let expected = expected.min(u128::from(max_ms));
        prop_assert_eq!(u128::from(policy.delay_ms(failures, 0.0, None)), expected);
    }
}
