//! Property tests of the pure rules (issue 3): the attempt state machine, a node's attempts, the
//! retry decision and backoff, the heartbeat payload rules, and the coalescing and staleness rules.
//!
//! One test binary, one module per rule; case counts are kept modest so the whole suite runs in a
//! few seconds in debug builds.

mod backoff;
mod machine;
mod node;
mod payload;
mod timing;
