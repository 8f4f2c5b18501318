//! The worker's telemetry: a node span per claimed task (a child of the submitter's context),
//! claim latency, running tasks per queue, and the queues' depth.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Gauge, Histogram, UpDownCounter};
use stint_domain::{AttemptState, NodeKey, TaskError, TaskId};
use stint_engine::EngineError;
use stint_ports::{ClaimedTask, QueueHistory, TaskEnd};
use stint_worker::WorkerObserver;

use crate::context::TraceParent;
use crate::spans::SpanObserver;

/// The instruments of a worker, from the global meter `stint`.
#[derive(Debug, Clone)]
struct Instruments {
    claim_latency: Histogram<f64>,
    running: UpDownCounter<i64>,
}

impl Instruments {
    fn from_global() -> Self {
        let meter = opentelemetry::global::meter("stint");
        Self {
            claim_latency: meter
                .f64_histogram("stint.worker.claim.latency")
                .with_unit("ms")
                .with_description("Time from a task being due to a worker claiming it")
                .build(),
            running: meter
                .i64_up_down_counter("stint.worker.running")
                .with_description("Tasks this worker is running, by queue")
                .build(),
        }
    }
}

/// A [`WorkerObserver`] that records the worker's metrics and, when spans are exported,
/// opens a node span per claimed task (ended with the task).
#[derive(Debug)]
pub struct WorkerTelemetry {
    instruments: Instruments,
    spans: Option<Arc<SpanObserver>>,
    running: Mutex<HashMap<TaskId, (NodeKey, String)>>,
}

impl WorkerTelemetry {
    /// Metrics, and spans through `spans` when given (the engine must report to the same
    /// observer, so that attempt spans are children of the task's node span).
    pub fn new(spans: Option<Arc<SpanObserver>>) -> Self {
        Self {
            instruments: Instruments::from_global(),
            spans,
            running: Mutex::new(HashMap::new()),
        }
    }

    fn running(&self) -> MutexGuard<'_, HashMap<TaskId, (NodeKey, String)>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Forgets `task`, ending its node span in `state`.
    fn finish(&self, task: TaskId, state: AttemptState, error: Option<&TaskError>) {
        let Some((key, queue)) = self.running().remove(&task) else {
            return;
        };
        self.instruments
            .running
            .add(-1, &[KeyValue::new("queue", queue)]);
        if let Some(spans) = &self.spans {
            spans.end_node(&key, state, error);
        }
    }
}

impl WorkerObserver for WorkerTelemetry {
    fn claimed(&self, task: &ClaimedTask) {
        let task = &task.task;
        let queue = KeyValue::new("queue", task.queue.clone());
        let due_ms = task.run_at_ms.max(task.created_at_ms);
        let latency_ms = now_ms().saturating_sub(due_ms);
        self.instruments
            .claim_latency
            .record(latency_ms as f64, std::slice::from_ref(&queue));
        self.instruments.running.add(1, &[queue]);
        let Ok(key) = NodeKey::new(task.run_id.clone(), task.node_id.clone(), 0) else {
            return;
        };
        if let Some(spans) = &self.spans {
            let parent = TraceParent::from_spec(&task.spec);
            spans.start_node(&key, parent.as_ref(), Some(&task.queue));
        }
        self.running().insert(task.id, (key, task.queue.clone()));
    }

    fn ended(&self, task: TaskId, end: &TaskEnd) {
        let error = |error: &serde_json::Value| serde_json::from_value(error.clone()).ok();
        let (state, error): (AttemptState, Option<TaskError>) = match end {
            TaskEnd::Finished => (AttemptState::Finished, None),
            TaskEnd::Failed { error: e } | TaskEnd::Retry { error: e, .. } => {
                (AttemptState::Failed, error(e))
            }
            TaskEnd::Cancelled { error: e } => (AttemptState::Cancelled, error(e)),
            TaskEnd::Release => (AttemptState::Cancelled, None),
        };
        self.finish(task, state, error.as_ref());
    }

    fn dropped(&self, task: TaskId, error: &EngineError) {
        let error = TaskError::new(error.code(), error.to_string());
        self.finish(task, AttemptState::Failed, Some(&error));
    }
}

/// Records the depth of `queues` (`stint.queue.depth`, by queue and state: ready, scheduled,
/// running) every `every`, until dropped.
#[derive(Debug)]
pub struct QueueDepth(tokio::task::JoinHandle<()>);

impl QueueDepth {
    /// Starts sampling `history` on the current Tokio runtime.
    pub fn start(history: Arc<dyn QueueHistory>, queues: Vec<String>, every: Duration) -> Self {
        let gauge: Gauge<u64> = opentelemetry::global::meter("stint")
            .u64_gauge("stint.queue.depth")
            .with_description("Tasks in a queue, by state (ready, scheduled, running)")
            .build();
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            loop {
                ticks.tick().await;
                // A failed read skips one sample; the worker itself reports store errors.
                let Ok(stats) = history.queue_stats(now_ms()).await else {
                    continue;
                };
                for queue in stats.into_iter().filter(|q| queues.contains(&q.queue)) {
                    for (state, depth) in [
                        ("ready", queue.ready),
                        ("scheduled", queue.scheduled),
                        ("running", queue.running),
                    ] {
                        let attributes = [
                            KeyValue::new("queue", queue.queue.clone()),
                            KeyValue::new("state", state),
                        ];
                        gauge.record(depth, &attributes);
                    }
                }
            }
        }))
    }
}

impl Drop for QueueDepth {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Milliseconds since the Unix epoch (the queue's clock on the embedded stores).
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
