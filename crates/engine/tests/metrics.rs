//! Metrics reach the globally installed meter provider (its own test binary, since the global
//! provider is process-wide).

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{desc, setup};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, SdkMeterProvider};
use serde_json::{Value, json};
use stint_engine::{CancellationToken, TaskContext, TaskFailure};

#[tokio::test(start_paused = true)]
async fn durations_attempts_and_heartbeats_are_recorded() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_periodic_exporter(exporter.clone())
        .build();
    opentelemetry::global::set_meter_provider(provider.clone());
    let (_store, engine) = setup();
    let mut d = desc();
    d.retry.retries = 1;
    let calls = std::sync::atomic::AtomicU32::new(0);
    let compute = |ctx: TaskContext| {
        let first = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
        async move {
            for i in 0..10 {
                ctx.heartbeat.beat(json!({ "i": i }))?;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            if first {
                Err::<Value, _>(TaskFailure::retryable("once"))
            } else {
                Ok(json!({}))
            }
        }
    };
    engine
        .run_node(&d, compute, &CancellationToken::new())
        .await
        .expect("run");
    provider.force_flush().expect("flush");
    let names: BTreeSet<String> = exporter
        .get_finished_metrics()
        .expect("metrics")
        .iter()
        .flat_map(|rm| {
            rm.scope_metrics()
                .flat_map(|sm| sm.metrics().map(|m| m.name().to_owned()))
                .collect::<Vec<_>>()
        })
        .collect();
    for name in [
        "stint.attempt.duration",
        "stint.node.duration",
        "stint.attempts",
        "stint.heartbeats.written",
        "stint.heartbeats.coalesced",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}
