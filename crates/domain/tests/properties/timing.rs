//! The heartbeat coalescing rule and the watchdog staleness rule, as properties and as a
//! simulation of a writer that follows the rule the way the engine's writer does.

use proptest::prelude::*;
use stint_domain::heartbeat::{
    MAX_THROTTLE_MS, WriteDecision, is_stale, next_write, stale_at_ms, stale_for_ms,
    throttle_interval_ms,
};

fn timeout() -> impl Strategy<Value = Option<u64>> {
    proptest::option::of(prop_oneof![0..3_000_u64, any::<u64>()])
}

/// Throttle intervals as the engine computes them, and any other small ones (0 included).
fn interval() -> impl Strategy<Value = u64> {
    prop_oneof![timeout().prop_map(throttle_interval_ms), 0..10_000_u64]
}

/// Times well away from `u64::MAX`, so that deadlines do not saturate.
fn time() -> impl Strategy<Value = u64> {
    prop_oneof![0..10_000_u64, 0..(1_u64 << 50)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The interval is at most 500 ms, at least 1 ms, and at most 0.8 x the timeout when the
    /// timeout leaves room for a whole millisecond (>= 2 ms).
    #[test]
    fn the_throttle_interval_respects_both_bounds(timeout in timeout()) {
        let interval = throttle_interval_ms(timeout);
        prop_assert!((1..=MAX_THROTTLE_MS).contains(&interval));
        if let Some(timeout) = timeout.filter(|&t| t >= 2) {
            prop_assert!(u128::from(interval) * 5 <= u128::from(timeout) * 4, "{} vs {}", interval, timeout);
        }
        if timeout.is_none_or(|t| t >= 625) {
            prop_assert_eq!(interval, MAX_THROTTLE_MS);
        }
    }

    /// First write: now. Later, with a clock that did not go back: never before
    /// `last + interval`, and at exactly that time when it is still ahead.
    #[test]
    fn next_write_never_schedules_before_the_interval_has_passed(
        interval in interval(),
        last in proptest::option::of(time()),
        now in time(),
    ) {
        let decision = next_write(interval, last, now);
        match last {
            None => prop_assert_eq!(decision, WriteDecision::Now),
            Some(last) if now >= last => {
                let due = last + interval;
                match decision {
                    WriteDecision::Now => prop_assert!(now >= due),
                    WriteDecision::WaitUntil(at) => {
                        prop_assert_eq!(at, due);
                        prop_assert!(at > now);
                    }
                }
            }
            // The clock stepped back: one interval from now.
            Some(_) => {
                let expected = if interval == 0 {
                    WriteDecision::Now
                } else {
                    WriteDecision::WaitUntil(now + interval)
                };
                prop_assert_eq!(decision, expected);
            }
        }
    }

    /// Whatever the clock did, a wait ends after now and at most one interval later.
    #[test]
    fn a_wait_is_never_longer_than_one_interval(
        interval in interval(),
        last in prop_oneof![time(), any::<u64>()],
        now in prop_oneof![time(), any::<u64>()],
    ) {
        if let WriteDecision::WaitUntil(at) = next_write(interval, Some(last), now) {
            prop_assert!(at > now);
            prop_assert!(u128::from(at) <= u128::from(now) + u128::from(interval));
        }
    }

    /// The boundary itself: due exactly one interval after the last write, not a millisecond
    /// before.
    #[test]
    fn a_write_is_due_exactly_one_interval_after_the_last(
        last in time(),
        timeout in timeout(),
        late in 0..3_u64,
        early in 1..3_u64,
    ) {
        let interval = throttle_interval_ms(timeout);
        let due = last + interval;
        prop_assert_eq!(next_write(interval, Some(last), due + late), WriteDecision::Now);
        let early = early.min(interval);
        prop_assert_eq!(
            next_write(interval, Some(last), due - early),
            WriteDecision::WaitUntil(due)
        );
    }

    /// A writer that follows `next_write` over a burst of heartbeat calls: writes are at least one
    /// interval apart, each carries the latest payload, no call waits longer than one interval,
    /// and the last call is always written.
    #[test]
    fn a_writer_following_the_rule_coalesces_and_never_falls_behind(
        gaps in proptest::collection::vec(0..700_u64, 1..60),
        timeout in timeout(),
    ) {
        let interval = throttle_interval_ms(timeout);
        let mut calls = Vec::new();
        let mut now = 0;
        for gap in gaps {
            now += gap;
            calls.push(now);
        }
        let writes = follow_the_rule(interval, &calls);
        prop_assert_eq!(writes.first().map(|&(at, _)| at), calls.first().copied(), "first at once");
        prop_assert_eq!(writes.last().map(|&(_, payload)| payload), Some(calls.len() - 1));
        for pair in writes.windows(2) {
            prop_assert!(pair[1].0 >= pair[0].0 + interval, "writes {:?} too close", pair);
            prop_assert!(pair[1].1 > pair[0].1, "each write carries a newer payload");
        }
        for (index, &received) in calls.iter().enumerate() {
            // The first write at or after the call carries it or a newer payload.
            let write = writes.iter().find(|&&(_, payload)| payload >= index);
            let (written_at, _) = write.copied().expect("every call is covered by a write");
            prop_assert!(written_at - received <= interval, "call {} waited too long", index);
        }
    }

    /// Stale exactly from `stale_at_ms`: not one millisecond before.
    #[test]
    fn staleness_begins_exactly_at_the_deadline(
        started in time(),
        heartbeat in proptest::option::of(time()),
        timeout in prop_oneof![0..5_000_u64, 0..(1_u64 << 40)],
    ) {
        let deadline = stale_at_ms(started, heartbeat, timeout);
        prop_assert!(is_stale(deadline, started, heartbeat, timeout));
        prop_assert!(!is_stale(deadline - 1, started, heartbeat, timeout));
        prop_assert_eq!(stale_for_ms(deadline, started, heartbeat), timeout + 1);
    }

    /// `is_stale` is `now - max(started_at, last_heartbeat) > timeout`, computed here in i128.
    #[test]
    fn staleness_matches_its_formula(
        now in time(),
        started in time(),
        heartbeat in proptest::option::of(time()),
        timeout in prop_oneof![0..5_000_u64, any::<u64>()],
    ) {
        let sign_of_life = i128::from(heartbeat.map_or(started, |hb| hb.max(started)));
        let silent = i128::from(now) - sign_of_life;
        prop_assert_eq!(is_stale(now, started, heartbeat, timeout), silent > i128::from(timeout));
        prop_assert_eq!(i128::from(stale_for_ms(now, started, heartbeat)), silent.max(0));
    }
}

/// Simulates a writer that asks `next_write` at each heartbeat call (at the times in `calls`)
/// and sleeps to the time it is told; returns the writes as (written at, index of the call whose
/// payload was written). A scheduled write carries the latest call before it.
fn follow_the_rule(interval: u64, calls: &[u64]) -> Vec<(u64, usize)> {
    let mut writes: Vec<(u64, usize)> = Vec::new();
    let mut scheduled: Option<u64> = None;
    for (index, &at) in calls.iter().enumerate() {
        // The timer fires before this call if it is due by then.
        if let Some(due) = scheduled.filter(|&due| due <= at) {
            writes.push((due, index - 1));
            scheduled = None;
        }
        if scheduled.is_some() {
            // A later call replaces the pending payload; the timer stays as it was set.
            continue;
        }
        match next_write(interval, writes.last().map(|&(at, _)| at), at) {
            WriteDecision::Now => writes.push((at, index)),
            WriteDecision::WaitUntil(due) => scheduled = Some(due),
        }
    }
    if let Some(due) = scheduled {
        writes.push((due, calls.len() - 1));
    }
    writes
}

/// A deadline past `u64::MAX` saturates: the task is then never stale, which is what a timeout
/// that long means.
#[test]
fn a_deadline_past_the_end_of_time_means_never() {
    let deadline = stale_at_ms(10, None, u64::MAX);
    assert_eq!(deadline, u64::MAX);
    assert!(!is_stale(deadline, 10, None, u64::MAX));
}
