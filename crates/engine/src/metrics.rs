//! OpenTelemetry instruments of the engine, created once per [`crate::Engine`] from the global
//! meter `stint` (so whichever meter provider the application installed receives them).

use std::sync::Arc;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use stint_domain::AttemptState;

/// The engine's instruments.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    attempt_duration: Histogram<f64>,
    node_duration: Histogram<f64>,
    attempts: Counter<u64>,
    /// Shared with every attempt's heartbeat handles.
    pub(crate) heartbeats: Arc<HeartbeatCounters>,
}

/// The heartbeat instruments, which each attempt's heartbeat handles carry.
#[derive(Debug, Clone)]
pub(crate) struct HeartbeatCounters {
    pub(crate) written: Counter<u64>,
    pub(crate) coalesced: Counter<u64>,
    pub(crate) dropped: Counter<u64>,
}

impl Metrics {
    /// Instruments from the global meter `stint`.
    pub(crate) fn from_global() -> Self {
        let meter = opentelemetry::global::meter("stint");
        Self {
            attempt_duration: meter
                .f64_histogram("stint.attempt.duration")
                .with_unit("ms")
                .with_description("Duration of one attempt, start to terminal write")
                .build(),
            node_duration: meter
                .f64_histogram("stint.node.duration")
                .with_unit("ms")
                .with_description("Duration of a node, first attempt to final outcome")
                .build(),
            attempts: meter
                .u64_counter("stint.attempts")
                .with_description("Attempts ended, by outcome")
                .build(),
            heartbeats: Arc::new(HeartbeatCounters {
                written: meter
                    .u64_counter("stint.heartbeats.written")
                    .with_description("Heartbeat writes that reached the store")
                    .build(),
                coalesced: meter
                    .u64_counter("stint.heartbeats.coalesced")
                    .with_description("Heartbeats replaced by a later one before being written")
                    .build(),
                dropped: meter
                    .u64_counter("stint.heartbeats.dropped")
                    .with_description(
                        "Heartbeat writes that failed, and heartbeats sent after the end",
                    )
                    .build(),
            }),
        }
    }

    /// Records one ended attempt.
    pub(crate) fn attempt_ended(&self, state: AttemptState, duration_ms: u64) {
        let outcome = [KeyValue::new("outcome", state.as_str())];
        self.attempts.add(1, &outcome);
        self.attempt_duration.record(duration_ms as f64, &outcome);
    }

    /// Records one ended node.
    pub(crate) fn node_ended(&self, state: AttemptState, duration_ms: u64) {
        self.node_duration.record(
            duration_ms as f64,
            &[KeyValue::new("outcome", state.as_str())],
        );
    }
}
