//! End-to-end scenarios, each a function of a [`World`], run once per backend.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use super::{
    World, alive, assert_exit, spawn_quiet, stint_lines, text, wait_for_file, wait_with_limit,
};

pub(crate) fn success_prints_the_output(w: &World) {
    let output = w.run(
        "r",
        "n",
        &[],
        r#"echo '{"done":1}' >&"$STINT_HEARTBEAT_FD"; echo "working" >&2; echo '{"ok":true}'"#,
    );
    assert_exit(&output, 0);
    let printed: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(printed, json!({"ok": true}));
    assert!(
        text(&output.stderr).contains("working"),
        "stderr passes through"
    );
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["state"], "finished");
    assert_eq!(attempts[0]["heartbeat"], json!({"done": 1}));
    let stored = w.stint(&["output", "r", "n"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&stored.stdout).expect("JSON"),
        json!({"ok": true})
    );
}

pub(crate) fn fails_twice_then_succeeds_with_the_checkpoint(w: &World) {
    let script = r#"
        echo "{\"attempt\":$STINT_ATTEMPT}" >&3
        if [ "$STINT_ATTEMPT" -lt 3 ]; then echo "attempt $STINT_ATTEMPT fails" >&2; exit 1; fi
        echo "{\"seen\":$STINT_CHECKPOINT}""#;
    let flags = ["--retries", "2", "--backoff-initial", "10ms"];
    let output = w.run("r", "n", &flags, script);
    assert_exit(&output, 0);
    let printed: Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(printed, json!({"seen": {"attempt": 2}}));
    let attempts = w.attempts("r");
    let states: Vec<&str> = attempts
        .iter()
        .map(|a| a["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states, ["failed", "failed", "finished"]);
    let error = &attempts[0]["error"];
    assert_eq!(error["code"], "TASK_FAILED");
    assert_eq!(error["details"]["exit_status"], 1);
    assert!(
        error["details"]["stderr_tail"]
            .as_str()
            .unwrap_or("")
            .contains("attempt 1 fails")
    );
}

pub(crate) fn output_schema_violation_is_not_retried(w: &World) {
    std::fs::write(
        w.path("schema.json"),
        r#"{"type":"object","required":["x"]}"#,
    )
    .expect("write");
    let output = w.run(
        "r",
        "n",
        &[
            "--retries",
            "2",
            "--backoff-initial",
            "10ms",
            "--output-schema",
            "schema.json",
        ],
        r#"echo '{"y":1}'"#,
    );
    assert_eq!(output.status.code(), Some(1));
    let last = stint_lines(&output).pop().unwrap_or_default();
    assert!(last.starts_with("stint: INVALID_OUTPUT: "), "{last}");
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["error"]["code"], "INVALID_OUTPUT");
}

/// Runs `sleep 20` as `r/n` with `flags` that stop it: stint exits 1 well before the sleep ends.
fn run_a_sleep_that_is_stopped(w: &World, flags: &[&str]) {
    let started = Instant::now();
    assert_exit(&w.run("r", "n", flags, "sleep 20"), 1);
    assert!(started.elapsed() < Duration::from_secs(10));
}

pub(crate) fn silent_command_hits_the_heartbeat_timeout(w: &World) {
    run_a_sleep_that_is_stopped(w, &["--heartbeat-timeout", "300ms", "--grace", "1s"]);
    assert_eq!(
        w.attempts("r")[0]["error"]["code"],
        "TASK_HEARTBEAT_TIMEOUT"
    );
    assert!(
        w.events("r")
            .iter()
            .any(|e| e["type"] == "TaskHeartbeatTimeout")
    );
}

pub(crate) fn timeout_stops_a_long_command(w: &World) {
    run_a_sleep_that_is_stopped(w, &["--timeout", "300ms", "--grace", "1s"]);
    assert_eq!(w.attempts("r")[0]["error"]["code"], "TASK_TIMEOUT");
}

/// Ctrl-C (or SIGTERM) to stint: exit 130, attempt `cancelled`, no process of the group left.
pub(crate) fn signal_cancels_the_process_group(w: &World, signal: Signal) {
    let script = "sleep 60 & echo $! > grandchild.pid; wait";
    let mut child = spawn_quiet(w.run_cmd("r", "n", &["--grace", "2s"], script));
    let grandchild: i32 = wait_for_file(&w.path("grandchild.pid"))
        .parse()
        .expect("pid");
    let stint = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    kill(stint, signal).expect("signal stint");
    let status = wait_with_limit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(130));
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(grandchild) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} outlived the attempt"
    );
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["state"], "cancelled");
}

/// A command that ignores SIGTERM is SIGKILLed after `--grace`.
pub(crate) fn sigterm_ignorer_is_killed_after_the_grace(w: &World) {
    let script = "trap '' TERM; echo ready > ready; while :; do sleep 0.05; done";
    let mut child = spawn_quiet(w.run_cmd("r", "n", &["--grace", "300ms"], script));
    wait_for_file(&w.path("ready"));
    kill(
        Pid::from_raw(i32::try_from(child.id()).expect("pid")),
        Signal::SIGINT,
    )
    .expect("signal");
    let status = wait_with_limit(&mut child, Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert_eq!(w.attempts("r")[0]["state"], "cancelled");
}

pub(crate) fn rerun_of_a_finished_node_runs_nothing(w: &World) {
    let script = r#"echo ran >> runs.log; echo '{"v":1}'"#;
    assert_eq!(w.run("r", "n", &[], script).status.code(), Some(0));
    let again = w.run("r", "n", &[], script);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        serde_json::from_slice::<Value>(&again.stdout).expect("JSON"),
        json!({"v": 1})
    );
    assert_eq!(
        std::fs::read_to_string(w.path("runs.log")).expect("log"),
        "ran\n"
    );
    assert_eq!(w.attempts("r").len(), 1);
    let forced = w.run("r", "n", &["--force"], script);
    assert_eq!(forced.status.code(), Some(0));
    assert_eq!(w.attempts("r").len(), 2);
}

/// A second `stint run` of a node with an attempt in progress is refused: exit 3.
pub(crate) fn racing_runner_gets_a_conflict(w: &World) {
    let mut first = spawn_quiet(w.run_cmd("r", "n", &[], "echo up > up; sleep 3; echo 1"));
    wait_for_file(&w.path("up"));
    let second = w.run("r", "n", &[], "echo ran-second > second; echo 2");
    assert_exit(&second, 3);
    let lines = stint_lines(&second);
    assert!(
        lines
            .last()
            .is_some_and(|l| l.starts_with("stint: STORE_CONFLICT: ")),
        "{lines:?}"
    );
    assert!(!w.path("second").exists());
    assert_eq!(
        wait_with_limit(&mut first, Duration::from_secs(20)).code(),
        Some(0)
    );
    assert_eq!(w.attempts("r").len(), 1);
}

pub(crate) fn directives_and_the_heartbeat_command(w: &World) {
    let script = r#""$STINT_BIN" heartbeat '{"k":1}' && "$STINT_BIN" heartbeat --no-retry && echo 'not json' >&3 && exit 4"#;
    let flags = ["--retries", "3", "--backoff-initial", "10ms"];
    let output = w.run("r", "n", &flags, script);
    assert_exit(&output, 1);
    assert!(text(&output.stderr).contains("HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE"));
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1, "#no-retry stops the retries");
    assert_eq!(attempts[0]["heartbeat"], json!({"k": 1}));
    assert_eq!(attempts[0]["retryable"], false);
}

pub(crate) fn json_listings_have_their_fields(w: &World) {
    assert_eq!(
        w.run("r", "n", &[], r#"echo '{"a":1}'"#).status.code(),
        Some(0)
    );
    let attempt = &w.attempts("r")[0];
    for field in [
        "run_id",
        "node_id",
        "iteration",
        "attempt",
        "state",
        "error",
        "heartbeat",
        "started_at_ms",
        "finished_at_ms",
        "vcs",
    ] {
        assert!(
            attempt.get(field).is_some(),
            "attempts --json lacks {field}: {attempt}"
        );
    }
    let events = w.events("r");
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, ["NodeStarted", "NodeFinished"]);
    for event in &events {
        assert!(
            event["seq"].is_u64() && event["timestamp_ms"].is_u64(),
            "{event}"
        );
    }
    let runs = w.stint(&["runs", "--json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).expect("JSON");
    assert_eq!(runs[0]["run_id"], "r");
}
