//! Metrics reach the globally installed meter provider (its own test binary, since the global
//! provider is process-wide).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{desc_with_retries, setup};
use opentelemetry_sdk::metrics::data::{
    AggregatedMetrics, HistogramDataPoint, MetricData, ScopeMetrics, SumDataPoint,
};
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
    let d = desc_with_retries(1);
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
    let totals = totals(&exporter);
    let total = |name: &str| {
        *totals
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from {totals:?}"))
    };
    // Two attempts (one failed, retried), one node; each histogram holds one value per run.
    assert_eq!(total("stint.attempts"), 2, "{totals:?}");
    assert_eq!(total("stint.attempt.duration"), 2, "{totals:?}");
    assert_eq!(total("stint.node.duration"), 1, "{totals:?}");
    // Each attempt's 10 beats, given without a pause, become one write (its last payload): 2
    // written, and the other 18 coalesced into them.
    assert_eq!(total("stint.heartbeats.written"), 2, "{totals:?}");
    assert_eq!(total("stint.heartbeats.coalesced"), 18, "{totals:?}");
}

/// Each metric's total in the last export: a counter's sum over its attributes, a histogram's
/// number of recorded values.
fn totals(exporter: &InMemoryMetricExporter) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for resource in exporter.get_finished_metrics().expect("metrics") {
        for metric in resource.scope_metrics().flat_map(ScopeMetrics::metrics) {
            let total = match metric.data() {
                AggregatedMetrics::U64(MetricData::Sum(sum)) => {
                    sum.data_points().map(SumDataPoint::value).sum()
                }
                AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                    h.data_points().map(HistogramDataPoint::count).sum()
                }
                AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                    h.data_points().map(HistogramDataPoint::count).sum()
                }
                other => panic!("{}: unexpected data {other:?}", metric.name()),
            };
            // Cumulative temporality: a later export holds everything an earlier one did.
            totals.insert(metric.name().to_owned(), total);
        }
    }
    totals
}
