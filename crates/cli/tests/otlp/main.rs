//! OTLP export of the real `stint` binary to receivers started inside the test, over the real
//! wire format (OTLP/HTTP with protobuf bodies, and OTLP/gRPC), on SQLite in a temp folder.

#[path = "../common/mod.rs"]
mod common;
mod receiver;
mod worker;

use std::process::Output;
use std::time::{Duration, Instant};

use common::{World, assert_exit, text};
use opentelemetry_proto::tonic::trace::v1::Span;
use receiver::{Receiver, Silent, attribute, counter_total, hex, histogram_count};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

/// `00-TRACE-PARENT_SPAN-01`.
fn traceparent() -> String {
    format!("00-{TRACE}-{PARENT_SPAN}-01")
}

/// A command that fails its first attempt and finishes its second, heartbeating once and
/// writing the `TRACEPARENT` it saw to `seen-N` for attempt N.
const FAIL_ONCE: &str = r#"echo "$TRACEPARENT" > "seen-$STINT_ATTEMPT"
echo '{"step":1}' >&"$STINT_HEARTBEAT_FD"
sleep 0.1
[ "$STINT_ATTEMPT" -ge 2 ] || exit 7
echo '{"ok":true}'"#;

fn the_only(spans: Vec<Span>, what: &str) -> Span {
    assert_eq!(spans.len(), 1, "one {what} span: {spans:#?}");
    spans.into_iter().next().expect("one span")
}

/// The one node span `collector` was sent, checked to continue the trace of [`traceparent`]
/// as a child of its span (`whose` names that span in the failure messages).
fn the_traced_node(collector: &Receiver, whose: &str) -> Span {
    let node = the_only(collector.spans("stint.node"), "node");
    assert_eq!(hex(&node.trace_id), TRACE, "the trace of {whose}");
    assert_eq!(
        hex(&node.parent_span_id),
        PARENT_SPAN,
        "{whose} is the parent"
    );
    node
}

/// Checks that `span` has each attribute of `expected` (key, value).
fn assert_attributes(span: &Span, expected: &[(&str, &str)]) {
    for (key, value) in expected {
        assert_eq!(
            attribute(&span.attributes, key).as_deref(),
            Some(*value),
            "{key} of {span:#?}"
        );
    }
}

/// What `stint ARGS` (the parts of `args` in turn) did with each variable of `env` set, run to
/// its end and checked to have exited with `code`.
fn stint_with(w: &World, env: &[(&str, &str)], args: &[&[&str]], code: i32) -> Output {
    let mut cmd = w.cmd();
    cmd.envs(env.iter().copied());
    for part in args {
        cmd.args(*part);
    }
    let output = cmd.output().expect("stint runs");
    assert_exit(&output, code);
    output
}

/// [`stint_with`] for `stint run --otlp-endpoint COLLECTOR ARGS`, in a fresh SQLite world.
fn run_exported(collector: &Receiver, env: &[(&str, &str)], args: &[&str], code: i32) -> Output {
    let url = collector.url();
    let w = World::sqlite();
    stint_with(&w, env, &[&["run", "--otlp-endpoint", &url], args], code)
}

fn attempt(spans: &[Span], n: u32) -> Span {
    spans
        .iter()
        .find(|s| attribute(&s.attributes, "stint.attempt") == Some(n.to_string()))
        .cloned()
        .unwrap_or_else(|| panic!("attempt {n} span in {spans:#?}"))
}

#[test]
fn run_sends_node_and_attempt_spans_and_metrics_over_http() {
    let collector = Receiver::http();
    let w = World::sqlite();
    let (url, parent) = (collector.url(), traceparent());
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str()),
        ("OTEL_SERVICE_NAME", "nightly-builds"),
        ("TRACEPARENT", &parent),
    ];
    let node = ["run", "--run-id", "r1", "--node-id", "build"];
    let retried = ["--retries", "1", "--backoff-initial", "50ms"];
    stint_with(
        &w,
        &env,
        &[&node, &retried, &["--", "sh", "-c", FAIL_ONCE]],
        0,
    );

    let node = the_traced_node(&collector, "TRACEPARENT");
    assert_attributes(
        &node,
        &[
            ("stint.run_id", "r1"),
            ("stint.node_id", "build"),
            ("stint.iteration", "0"),
            ("stint.state", "finished"),
        ],
    );
    assert!(node.events.iter().any(|e| e.name == "retry scheduled"));

    let attempts = collector.spans("stint.attempt");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    let (first, second) = (attempt(&attempts, 1), attempt(&attempts, 2));
    for span in [&first, &second] {
        assert_eq!(
            span.parent_span_id, node.span_id,
            "an attempt is a child of its node"
        );
        assert_eq!(span.trace_id, node.trace_id);
        assert!(
            span.events.iter().any(|e| e.name == "heartbeat"),
            "{span:#?}"
        );
    }
    assert_attributes(
        &first,
        &[
            ("stint.state", "failed"),
            ("stint.error.code", "TASK_FAILED"),
        ],
    );
    assert_attributes(&second, &[("stint.state", "finished")]);
    assert!(first.links.is_empty());
    assert_eq!(
        second.links.len(),
        1,
        "the retry links to the attempt it retries"
    );
    assert_eq!(second.links[0].span_id, first.span_id);

    for (n, span) in [(1, &first), (2, &second)] {
        let seen = std::fs::read_to_string(w.path(&format!("seen-{n}"))).expect("seen");
        let expected = format!("00-{TRACE}-{}-01", hex(&span.span_id));
        assert_eq!(
            seen.trim(),
            expected,
            "attempt {n}'s command got its span's context"
        );
    }

    let attempts_total = collector.metrics("stint.attempts");
    assert_eq!(counter_total(&attempts_total, "outcome", "failed"), Some(1));
    assert_eq!(
        counter_total(&attempts_total, "outcome", "finished"),
        Some(1)
    );
    assert_eq!(
        histogram_count(&collector.metrics("stint.attempt.duration")),
        Some(2)
    );
    assert_eq!(
        histogram_count(&collector.metrics("stint.node.duration")),
        Some(1)
    );
    assert!(collector.with(|r| r.service_names.iter().all(|n| n == "nightly-builds")));
}

#[test]
fn run_sends_spans_and_metrics_over_grpc() {
    let collector = Receiver::grpc();
    let env = [("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")];
    let args = ["--run-id", "g1", "--", "sh", "-c", "echo 42"];
    run_exported(&collector, &env, &args, 0);
    let node = the_only(collector.spans("stint.node"), "node");
    assert!(
        node.parent_span_id.is_empty(),
        "no TRACEPARENT: a root span"
    );
    let attempt = the_only(collector.spans("stint.attempt"), "attempt");
    assert_eq!(attempt.parent_span_id, node.span_id);
    let attempts = collector.metrics("stint.attempts");
    assert_eq!(counter_total(&attempts, "outcome", "finished"), Some(1));
    assert!(collector.with(|r| r.service_names.iter().all(|n| n == "stint")));
}

#[test]
fn the_heartbeat_timeout_is_an_event_of_the_attempt_span() {
    let collector = Receiver::http();
    let bounds = ["--heartbeat-timeout", "300ms", "--grace", "100ms"];
    let args = [&["--run-id", "h1"], &bounds[..], &["--", "sleep", "10"]].concat();
    run_exported(&collector, &[], &args, 1);
    let attempt = the_only(collector.spans("stint.attempt"), "attempt");
    assert!(
        attempt.events.iter().any(|e| e.name == "heartbeat timeout"),
        "{attempt:#?}"
    );
    assert_attributes(&attempt, &[("stint.error.code", "TASK_HEARTBEAT_TIMEOUT")]);
}

#[test]
fn a_collector_that_never_answers_costs_at_most_the_flush_bound() {
    let silent = Silent::start();
    let w = World::sqlite();
    let started = Instant::now();
    let baseline = w.run("base", "main", &[], "echo 1");
    let without = started.elapsed();
    assert_exit(&baseline, 0);
    let started = Instant::now();
    let endpoint = format!("http://{}", silent.addr);
    let output = stint_with(
        &w,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)],
        &[&["run", "--run-id", "slow", "--", "sh", "-c", "echo 1"]],
        0,
    );
    let with = started.elapsed();
    assert_eq!(
        text(&output.stdout).trim(),
        "1",
        "the task's output is untouched"
    );
    // The flush bound is 2 s; the exporter's own timeout (10 s) would exceed it by far.
    let bound = Duration::from_secs(2) + Duration::from_secs(3);
    assert!(
        with < without + bound,
        "with a hung collector: {with:?}, without: {without:?}"
    );
    let stderr = text(&output.stderr);
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("warning: telemetry"))
        .count();
    assert_eq!(warnings, 1, "one warning: {stderr}");
}

#[test]
fn sdk_disabled_sends_nothing() {
    let collector = Receiver::http();
    let env = [("OTEL_SDK_DISABLED", "true")];
    let args = ["--run-id", "off", "--", "sh", "-c", "echo 1"];
    run_exported(&collector, &env, &args, 0);
    assert!(collector.with(|r| r.spans.is_empty() && r.metrics.is_empty()));
}

#[test]
fn a_bad_endpoint_is_one_line_and_exit_2() {
    let w = World::sqlite();
    let output = w.stint(&["run", "--otlp-endpoint", "localhost:4318", "--", "true"]);
    assert_exit(&output, 2);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid OTLP endpoint"), "{stderr}");
}

#[test]
fn json_logs_carry_the_trace_and_span_ids() {
    let collector = Receiver::http();
    let w = World::sqlite();
    let (url, parent) = (collector.url(), traceparent());
    let run = ["--log-format", "json", "run", "--otlp-endpoint", &url];
    let output = stint_with(
        &w,
        &[("RUST_LOG", "info"), ("TRACEPARENT", &parent)],
        &[&run, &["--run-id", "j1", "--", "sh", "-c", "echo 1"]],
        0,
    );
    let attempt = the_only(collector.spans("stint.attempt"), "attempt");
    let lines: Vec<serde_json::Value> = text(&output.stderr)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let ended = lines
        .iter()
        .find(|l| l["fields"]["message"] == "attempt ended")
        .unwrap_or_else(|| panic!("an 'attempt ended' JSON line in {lines:#?}"));
    assert_eq!(ended["span"]["trace_id"], TRACE);
    assert_eq!(
        ended["span"]["span_id"].as_str(),
        Some(hex(&attempt.span_id).as_str())
    );
}
