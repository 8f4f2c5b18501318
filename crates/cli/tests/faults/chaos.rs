//! Fault timings: fixed in CI, drawn from a seed under `cargo xtask chaos`.

use std::time::Duration;

/// A duration in `range` (ms) chosen by `STINT_CHAOS_SEED` (`cargo xtask chaos` sets it, a new
/// seed each iteration), or `default` when it is unset, as in CI.
pub(crate) fn chaos_ms(salt: u64, range: std::ops::Range<u64>, default: u64) -> Duration {
    let Some(seed) = std::env::var("STINT_CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
    else {
        return Duration::from_millis(default);
    };
    // splitmix64: a well-spread value from the seed and the salt.
    let mut x = seed.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    Duration::from_millis(range.start + x % (range.end - range.start).max(1))
}
