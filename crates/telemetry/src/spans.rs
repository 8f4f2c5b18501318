//! Spans of node runs and their attempts, made from the engine's [`Observer`] hooks.
//!
//! A node run is one span; each attempt is its child, with the run, node, iteration, attempt
//! and queue as attributes and its final state and error code set when it ends. Heartbeat
//! writes and the heartbeat-timeout decision are events of the attempt span; an attempt that
//! retries an earlier one links to that attempt's span.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanContext, SpanKind, Status, TraceContextExt as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};
use serde_json::Value;
use stint_domain::{AttemptKey, AttemptState, ErrorCode, NodeKey, TaskDescriptor, TaskError};
use stint_engine::{AttemptOutcome, EngineError, NodeOutcome, Observer};
use stint_ports::StoreError;

use crate::context::TraceParent;

/// An open node span.
#[derive(Debug)]
struct NodeSpan {
    span: Span,
    queue: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    nodes: HashMap<NodeKey, NodeSpan>,
    attempts: HashMap<AttemptKey, Span>,
    /// The last ended attempt of each node, which the next one links to.
    previous: HashMap<NodeKey, SpanContext>,
}

/// An [`Observer`] that makes the node and attempt spans. Without a node span (the worker
/// runs single attempts), an attempt's parent is the process's parent.
#[derive(Debug)]
pub struct SpanObserver {
    tracer: SdkTracer,
    parent: Context,
    queue: Option<String>,
    state: Mutex<State>,
}

impl SpanObserver {
    /// Spans made with `tracer`, children of `parent` (`TRACEPARENT`'s context, say), with
    /// `queue` as an attribute when given.
    pub fn new(tracer: SdkTracer, parent: Option<TraceParent>, queue: Option<String>) -> Self {
        Self {
            tracer,
            parent: parent.and_then(|p| p.context()).unwrap_or_default(),
            queue,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the span of a run of node `key`, a child of `parent` (else the process's
    /// parent); `queue` names the queue it was claimed from.
    pub fn start_node(&self, key: &NodeKey, parent: Option<&TraceParent>, queue: Option<&str>) {
        let parent = parent.and_then(TraceParent::context);
        let queue = queue.map(str::to_owned).or_else(|| self.queue.clone());
        let mut attributes = node_attributes(key);
        attributes.extend(queue.clone().map(|q| KeyValue::new("stint.queue", q)));
        let span = SpanBuilder::from_name("stint.node")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent.as_ref().unwrap_or(&self.parent));
        record_ids_in_log_span(span.span_context());
        self.state()
            .nodes
            .insert(key.clone(), NodeSpan { span, queue });
    }

    /// Ends the span of node `key` in `state`, with `error` when it has one.
    pub fn end_node(&self, key: &NodeKey, state: AttemptState, error: Option<&TaskError>) {
        let mut spans = self.state();
        let open: Vec<AttemptKey> = spans
            .attempts
            .keys()
            .filter(|attempt| &attempt.node == key)
            .cloned()
            .collect();
        for attempt in open {
            if let Some(mut span) = spans.attempts.remove(&attempt) {
                span.set_status(Status::error("the attempt's end was not recorded"));
                span.end();
            }
        }
        if let Some(NodeSpan { mut span, .. }) = spans.nodes.remove(key) {
            set_end(&mut span, state, error);
            span.end();
        }
        // Only a failed node is run again (a retry, or a worker's next claim) and links back.
        if state != AttemptState::Failed {
            spans.previous.remove(key);
        }
    }

    /// The context a command of attempt `key` is handed (its attempt span's).
    pub fn traceparent(&self, key: &AttemptKey) -> Option<TraceParent> {
        let spans = self.state();
        TraceParent::of(spans.attempts.get(key)?.span_context())
    }

    fn attempt_event(&self, key: &AttemptKey, name: &'static str, attributes: Vec<KeyValue>) {
        if let Some(span) = self.state().attempts.get_mut(key) {
            span.add_event(name, attributes);
        }
    }
}

impl Observer for SpanObserver {
    fn node_started(&self, desc: &TaskDescriptor) {
        self.start_node(&desc.key, None, None);
    }

    fn node_ended(&self, desc: &TaskDescriptor, outcome: Result<&NodeOutcome, &EngineError>) {
        match outcome {
            Ok(outcome) => self.end_node(&desc.key, outcome.state, outcome.error.as_ref()),
            Err(error) => {
                let error = TaskError::new(error.code(), error.to_string());
                self.end_node(&desc.key, AttemptState::Failed, Some(&error));
            }
        }
    }

    fn attempt_started(&self, key: &AttemptKey, checkpoint: Option<&Value>) {
        let mut spans = self.state();
        let node = spans.nodes.get(&key.node);
        let parent = node.map_or_else(
            || self.parent.clone(),
            |node| Context::new().with_remote_span_context(node.span.span_context().clone()),
        );
        let queue = node
            .and_then(|n| n.queue.clone())
            .or_else(|| self.queue.clone());
        let mut attributes = node_attributes(&key.node);
        attributes.push(KeyValue::new("stint.attempt", i64::from(key.attempt)));
        attributes.push(KeyValue::new("stint.resumed", checkpoint.is_some()));
        attributes.extend(queue.map(|q| KeyValue::new("stint.queue", q)));
        let links = spans
            .previous
            .get(&key.node)
            .map(|previous| {
                let retried = i64::from(key.attempt.saturating_sub(1));
                let attribute = KeyValue::new("stint.retry_of", retried);
                vec![Link::new(previous.clone(), vec![attribute], 0)]
            })
            .unwrap_or_default();
        let span = SpanBuilder::from_name("stint.attempt")
            .with_kind(SpanKind::Internal)
            .with_attributes(attributes)
            .with_links(links)
            .start_with_context(&self.tracer, &parent);
        record_ids_in_log_span(span.span_context());
        spans.attempts.insert(key.clone(), span);
    }

    fn heartbeat(&self, key: &AttemptKey, payload: Option<&Value>) {
        self.attempt_event(
            key,
            "heartbeat",
            vec![KeyValue::new("stint.heartbeat.bare", payload.is_none())],
        );
    }

    fn heartbeat_write_failed(&self, key: &AttemptKey, error: &StoreError) {
        let error = KeyValue::new("error.message", error.to_string());
        self.attempt_event(key, "heartbeat write failed", vec![error]);
    }

    fn lease_renewal_failed(&self, key: &AttemptKey, error: &StoreError) {
        let error = KeyValue::new("error.message", error.to_string());
        self.attempt_event(key, "lease renewal failed", vec![error]);
    }

    fn terminal_write_failed(&self, key: &AttemptKey, error: &StoreError) {
        let error = KeyValue::new("error.message", error.to_string());
        self.attempt_event(key, "terminal write failed", vec![error]);
    }

    fn attempt_ended(&self, outcome: &AttemptOutcome) {
        let mut spans = self.state();
        let Some(mut span) = spans.attempts.remove(&outcome.key) else {
            return;
        };
        if let Some(error) = outcome
            .error
            .as_ref()
            .filter(|e| e.code == ErrorCode::TaskHeartbeatTimeout)
        {
            span.add_event(
                "heartbeat timeout",
                vec![KeyValue::new("error.message", error.message.clone())],
            );
        }
        set_end(&mut span, outcome.state, outcome.error.as_ref());
        let context = span.span_context().clone();
        span.end();
        spans.previous.insert(outcome.key.node.clone(), context);
    }

    fn retry_scheduled(&self, next_attempt: u32, delay: Duration) {
        // The engine does not say which node; a process runs one node at a time with a retry
        // loop (`stint run`), so every open node span is that node.
        let mut spans = self.state();
        for node in spans.nodes.values_mut() {
            node.span.add_event(
                "retry scheduled",
                vec![
                    KeyValue::new("stint.attempt", i64::from(next_attempt)),
                    KeyValue::new(
                        "stint.retry.delay_ms",
                        i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                    ),
                ],
            );
        }
    }
}

/// The run, node and iteration of `key`.
fn node_attributes(key: &NodeKey) -> Vec<KeyValue> {
    vec![
        KeyValue::new("stint.run_id", key.run_id().to_owned()),
        KeyValue::new("stint.node_id", key.node_id().to_owned()),
        KeyValue::new("stint.iteration", i64::from(key.iteration())),
    ]
}

/// The final state, the error code and the status of an ended span.
fn set_end(span: &mut Span, state: AttemptState, error: Option<&TaskError>) {
    span.set_attribute(KeyValue::new("stint.state", state.as_str()));
    if let Some(error) = error {
        span.set_attribute(KeyValue::new("stint.error.code", error.code.to_string()));
    }
    match (state, error) {
        (AttemptState::Failed, Some(error)) => span.set_status(Status::error(error.to_string())),
        (AttemptState::Finished, _) => span.set_status(Status::Ok),
        _ => {}
    }
}

/// Writes the span's ids into the current `tracing` span (the engine's node or attempt span),
/// so that every log line inside it carries them.
fn record_ids_in_log_span(context: &SpanContext) {
    let current = tracing::Span::current();
    current.record("trace_id", tracing::field::display(context.trace_id()));
    current.record("span_id", tracing::field::display(context.span_id()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn observer() -> (SpanObserver, InMemorySpanExporter, SdkTracerProvider) {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let parent = TraceParent {
            traceparent: PARENT.to_owned(),
            tracestate: None,
        };
        let spans = SpanObserver::new(provider.tracer("test"), Some(parent), None);
        (spans, exporter, provider)
    }

    fn ended(key: &AttemptKey, state: AttemptState, error: Option<TaskError>) -> AttemptOutcome {
        AttemptOutcome {
            key: key.clone(),
            state,
            output: None,
            error,
            retry: None,
            started_at_ms: 0,
            finished_at_ms: 1,
            task_ended: false,
        }
    }

    #[test]
    fn a_retry_is_a_second_child_that_links_to_the_first() {
        let (spans, exporter, _provider) = observer();
        let desc = TaskDescriptor::new(NodeKey::new("r", "n", 0).expect("key"));
        spans.node_started(&desc);
        let first = desc.key.attempt(1);
        spans.attempt_started(&first, None);
        let handed = spans
            .traceparent(&first)
            .expect("an open attempt has a context");
        spans.heartbeat(&first, None);
        spans.attempt_ended(&ended(
            &first,
            AttemptState::Failed,
            Some(TaskError::task_failed("x")),
        ));
        assert_eq!(
            spans.traceparent(&first),
            None,
            "an ended attempt hands out nothing"
        );
        let second = desc.key.attempt(2);
        spans.attempt_started(&second, None);
        spans.attempt_ended(&ended(&second, AttemptState::Finished, None));
        spans.end_node(&desc.key, AttemptState::Finished, None);

        let finished = exporter.get_finished_spans().expect("spans");
        let by_name = |name: &str| {
            finished
                .iter()
                .filter(|s| s.name == name)
                .collect::<Vec<_>>()
        };
        let node = by_name("stint.node")[0];
        assert_eq!(node.parent_span_id.to_string(), "00f067aa0ba902b7");
        let attempts = by_name("stint.attempt");
        assert_eq!(attempts.len(), 2);
        assert!(
            attempts
                .iter()
                .all(|a| a.parent_span_id == node.span_context.span_id())
        );
        assert_eq!(
            handed.traceparent,
            format!(
                "00-{}-{}-01",
                attempts[0].span_context.trace_id(),
                attempts[0].span_context.span_id()
            )
        );
        assert_eq!(attempts[0].events.len(), 1, "the heartbeat");
        assert!(attempts[0].links.is_empty());
        assert_eq!(
            attempts[1].links.links[0].span_context.span_id(),
            attempts[0].span_context.span_id()
        );
    }

    #[test]
    fn ending_a_node_ends_an_attempt_whose_end_was_not_recorded() {
        let (spans, exporter, _provider) = observer();
        let key = NodeKey::new("r", "n", 0).expect("key");
        spans.start_node(&key, None, Some("q"));
        spans.attempt_started(&key.attempt(1), None);
        let error = TaskError::task_failed("lost");
        spans.end_node(&key, AttemptState::Failed, Some(&error));
        let finished = exporter.get_finished_spans().expect("spans");
        assert_eq!(finished.len(), 2, "{finished:#?}");
        assert!(
            finished
                .iter()
                .all(|s| matches!(s.status, Status::Error { .. }))
        );
    }
}
