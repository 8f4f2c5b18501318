//! The heartbeat coalescing rule: how often the writer of one attempt may write.

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

/// When the heartbeat writer should write next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteDecision {
    /// Nothing is pending: nothing to write.
    Idle,
    /// Write the pending heartbeat now.
    Now,
    /// Write the pending heartbeat at this time (milliseconds).
    At(u64),
}

/// The coalescing rule: the first heartbeat is written at once; later ones wait until one
/// throttle interval has passed since the previous write started.
pub fn next_write(
    last_written_at_ms: Option<u64>,
    pending: bool,
    now_ms: u64,
    heartbeat_timeout_ms: Option<u64>,
) -> WriteDecision {
    if !pending {
        return WriteDecision::Idle;
    }
    match last_written_at_ms {
        None => WriteDecision::Now,
        Some(last) => {
            let due = last.saturating_add(throttle_interval_ms(heartbeat_timeout_ms));
            if now_ms >= due {
                WriteDecision::Now
            } else {
                WriteDecision::At(due)
            }
        }
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
        assert_eq!(next_write(None, true, 10, None), WriteDecision::Now);
        assert_eq!(next_write(Some(10), true, 20, None), WriteDecision::At(510));
        assert_eq!(next_write(Some(10), true, 510, None), WriteDecision::Now);
        assert_eq!(next_write(Some(10), false, 900, None), WriteDecision::Idle);
    }
}
