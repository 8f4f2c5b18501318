//! The watchdog's staleness rule: when a silent task has gone silent for too long.

/// The watchdog's reference point: the last heartbeat received, or the start of the attempt.
fn last_sign_of_life(started_at_ms: u64, last_heartbeat_at_ms: Option<u64>) -> u64 {
    last_heartbeat_at_ms.map_or(started_at_ms, |hb| hb.max(started_at_ms))
}

/// Whether the task is stale: `now - max(started_at, last_heartbeat) > timeout`.
pub fn is_stale(
    now_ms: u64,
    started_at_ms: u64,
    last_heartbeat_at_ms: Option<u64>,
    heartbeat_timeout_ms: u64,
) -> bool {
    stale_for_ms(now_ms, started_at_ms, last_heartbeat_at_ms) > heartbeat_timeout_ms
}

/// How long the task has been silent at `now_ms`.
pub fn stale_for_ms(now_ms: u64, started_at_ms: u64, last_heartbeat_at_ms: Option<u64>) -> u64 {
    now_ms.saturating_sub(last_sign_of_life(started_at_ms, last_heartbeat_at_ms))
}

/// The first millisecond at which the task is stale, unless a heartbeat arrives before it.
///
/// Saturates at `u64::MAX`, where [`is_stale`] is false: a timeout reaching past the end of time
/// never expires.
pub fn stale_at_ms(
    started_at_ms: u64,
    last_heartbeat_at_ms: Option<u64>,
    heartbeat_timeout_ms: u64,
) -> u64 {
    last_sign_of_life(started_at_ms, last_heartbeat_at_ms)
        .saturating_add(heartbeat_timeout_ms)
        .saturating_add(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staleness_counts_from_the_later_of_start_and_heartbeat() {
        assert!(!is_stale(1_100, 1_000, None, 100));
        assert!(is_stale(1_101, 1_000, None, 100));
        assert!(!is_stale(1_101, 1_000, Some(1_050), 100));
        assert_eq!(stale_at_ms(1_000, Some(1_050), 100), 1_151);
        assert!(is_stale(stale_at_ms(1_000, None, 100), 1_000, None, 100));
    }
}
