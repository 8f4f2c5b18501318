//! Heartbeat rules, one concept per module: what a payload may hold ([`payload`], and
//! [`to_payload`] for typed Rust values checked while they are serialised), how often one
//! attempt's heartbeats are written ([`throttle`]), and when a silent task is stale
//! ([`staleness`]). Every item is also re-exported here, so `stint_domain::heartbeat::NAME` works
//! for each of them, as it did before the rules had modules of their own.

pub mod payload;
pub mod staleness;
pub mod throttle;
mod typed;

pub use payload::{
    HeartbeatPayloadError, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_DEPTH, PayloadInfo, WARN_PAYLOAD_BYTES,
    json_size, push_key_segment, validate_payload,
};
pub use staleness::{is_stale, stale_at_ms, stale_for_ms};
pub use throttle::{MAX_THROTTLE_MS, WriteDecision, next_write, throttle_interval_ms};
pub use typed::{to_payload, to_validated_payload};
