//! The heartbeat coalescing rule: how often the writer of one attempt may write.
//!
//! A compute may heartbeat thousands of times a second; the store sees at most one write per
//! [`throttle_interval_ms`], carrying the latest payload. The rule is a pure function of
//! millisecond times, so the writer asks it with its injected clock's `now_ms` and the same rule
//! is what the property tests drive. A writer that follows it looks like this:
//!
//! ```text
//! interval = throttle_interval_ms(heartbeat_timeout_ms)      // once per attempt
//! last_write = None
//! loop:
//!     wait until a heartbeat is pending (or the attempt closes: then flush and stop)
//!     match next_write(interval, last_write, clock.now_ms()):
//!         Now          => last_write = Some(now); write the latest pending heartbeat
//!         WaitUntil(t) => sleep until the clock reads t (or the attempt closes), then ask again
//! ```
//!
//! The final flush when the attempt closes is not throttled: the writer writes whatever is
//! pending at once, so the next attempt's checkpoint is the latest payload.

/// Longest interval between two heartbeat writes of one attempt.
pub const MAX_THROTTLE_MS: u64 = 500;

/// The longest interval between two heartbeat writes: 500 ms, or 0.8 x the heartbeat timeout
/// when that is shorter, so a persisted heartbeat is never older than the timeout.
pub fn throttle_interval_ms(heartbeat_timeout_ms: Option<u64>) -> u64 {
    match heartbeat_timeout_ms {
        Some(timeout) => (timeout.saturating_mul(4) / 5).clamp(1, MAX_THROTTLE_MS),
        None => MAX_THROTTLE_MS,
    }
}

/// What the heartbeat writer, holding a pending heartbeat, does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDecision {
    /// Write the pending heartbeat now.
    Now,
    /// Wait until the clock reads this time (milliseconds), then ask again: heartbeats that
    /// arrive meanwhile replace the pending one, so the write carries the latest.
    WaitUntil(u64),
}

/// The coalescing rule, for a writer that holds a pending heartbeat: the first write happens at
/// once; a later one waits until `interval_ms` has passed since the previous write started.
///
/// `interval_ms` is [`throttle_interval_ms`] of the attempt, `last_write_at_ms` is when the
/// previous write started (`None` before the first), `now_ms` the writer's clock. Counting from
/// the start of a write means a slow store does not stretch the interval: a write that took
/// longer than the interval is followed by the next one at once.
///
/// A wait is never longer than one interval from `now_ms`: should the clock step back (a
/// wall clock corrected by NTP), the interval is counted from `now_ms` instead of from a previous
/// write that seems to lie in the future, so heartbeats are never held back by the step.
pub fn next_write(interval_ms: u64, last_write_at_ms: Option<u64>, now_ms: u64) -> WriteDecision {
    let Some(last) = last_write_at_ms else {
        return WriteDecision::Now;
    };
    let due = last.min(now_ms).saturating_add(interval_ms);
    if now_ms >= due {
        WriteDecision::Now
    } else {
        WriteDecision::WaitUntil(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_is_the_shorter_of_500ms_and_four_fifths_of_the_timeout() {
        assert_eq!(throttle_interval_ms(None), 500);
        assert_eq!(throttle_interval_ms(Some(10_000)), 500);
        assert_eq!(throttle_interval_ms(Some(100)), 80);
        assert_eq!(throttle_interval_ms(Some(0)), 1);
    }

    #[test]
    fn first_write_is_immediate_then_throttled() {
        assert_eq!(next_write(500, None, 10), WriteDecision::Now);
        assert_eq!(next_write(500, Some(10), 20), WriteDecision::WaitUntil(510));
        assert_eq!(next_write(500, Some(10), 510), WriteDecision::Now);
        assert_eq!(next_write(80, Some(10), 60), WriteDecision::WaitUntil(90));
    }

    #[test]
    fn a_clock_that_steps_back_delays_a_write_by_at_most_one_interval() {
        // The previous write seems to be an hour ahead: wait one interval, not an hour.
        assert_eq!(
            next_write(500, Some(3_600_000), 1_000),
            WriteDecision::WaitUntil(1_500)
        );
    }
}
