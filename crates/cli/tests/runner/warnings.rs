//! What stint says without `RUST_LOG`: each kind of warning once.

use std::time::Duration;

use crate::common::{World, hold_write_lock, stint_lines, text, wait_for_file};
use crate::{finish, spawn_run};

fn count(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// Two heartbeats over 256 KiB: one warning.
#[test]
fn a_large_heartbeat_is_warned_about_once() {
    let w = World::sqlite();
    let script = r#"big=$(head -c 300000 /dev/zero | tr '\0' a)
        echo "{\"blob\":\"$big\"}" >&3; echo "{\"blob\":\"$big\",\"n\":2}" >&3; echo null"#;
    let output = w.run("r", "n", &[], script);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let lines = stint_lines(&output);
    assert_eq!(
        count(&lines, "warning: a heartbeat payload is "),
        1,
        "{lines:#?}"
    );
}

/// Heartbeats every 50 ms until `go` exists, then `null`.
const BEATING: &str = r#"echo up > up; i=0
    while [ ! -e go ]; do i=$((i + 1)); echo "{\"n\":$i}" >&3; sleep 0.05; done; echo null"#;

/// SQLite locked by another process for 1.5 s: heartbeat writes fail again and again (the
/// writer tries every 500 ms); one warning, and the run still finishes.
#[test]
fn heartbeat_write_failures_are_shown_once() {
    let w = World::sqlite();
    let db = format!("{}?busy_timeout_ms=100", w.db);
    let (child, stderr) = spawn_run(&w, "r", &["--db", db.as_str()], BEATING);
    wait_for_file(&w.path("up"));
    hold_write_lock(&w.path("state/stint.db"), Duration::from_millis(1500));
    std::fs::write(w.path("go"), "").expect("go");
    let (code, all) = finish(child, &stderr, Duration::from_secs(30));
    assert_eq!(code, Some(0), "{all}");
    let lines: Vec<String> = all.lines().map(str::to_owned).collect();
    assert_eq!(
        count(&lines, "warning: a heartbeat could not be written"),
        1,
        "{all}"
    );
    assert!(
        w.attempts("r")[0]["heartbeat"]["n"].as_u64() > Some(20),
        "beats went on"
    );
}

/// SQLite locked for 3 s with a 1.5 s lease: renewals fail (retried every 75 ms) until the
/// attempt fences itself after two thirds of the lease; one warning about it, then the fence's error.
#[test]
fn lease_renewal_failures_are_shown_once() {
    let w = World::sqlite();
    let db = format!("{}?busy_timeout_ms=100", w.db);
    let flags = ["--db", db.as_str(), "--lease", "1500ms", "--grace", "200ms"];
    let (child, stderr) = spawn_run(&w, "r", &flags, BEATING);
    wait_for_file(&w.path("up"));
    hold_write_lock(&w.path("state/stint.db"), Duration::from_secs(3));
    let (code, all) = finish(child, &stderr, Duration::from_secs(30));
    assert_eq!(code, Some(3), "fenced: {all}");
    let lines: Vec<String> = all.lines().map(str::to_owned).collect();
    assert_eq!(
        count(&lines, "warning: the attempt's lease could not be renewed"),
        1,
        "{all}"
    );
}
