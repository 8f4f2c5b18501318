//! What stint says without `RUST_LOG`: each kind of warning once.

use std::time::Duration;

use crate::common::{World, assert_exit, hold_write_lock, stint_lines, wait_for_file};
use crate::{finish, spawn_run};

/// Asserts that exactly one of `lines` holds `warning`; `shown` is the message when not.
fn assert_warned_once<'a>(lines: impl IntoIterator<Item = &'a str>, warning: &str, shown: &str) {
    let times = lines.into_iter().filter(|l| l.contains(warning)).count();
    assert_eq!(times, 1, "{shown}");
}

/// Two heartbeats over 256 KiB: one warning.
#[test]
fn a_large_heartbeat_is_warned_about_once() {
    let w = World::sqlite();
    let script = r#"big=$(head -c 300000 /dev/zero | tr '\0' a)
        echo "{\"blob\":\"$big\"}" >&3; echo "{\"blob\":\"$big\",\"n\":2}" >&3; echo null"#;
    let output = w.run("r", "n", &[], script);
    assert_exit(&output, 0);
    let lines = stint_lines(&output);
    let shown = format!("{lines:#?}");
    assert_warned_once(
        lines.iter().map(String::as_str),
        "warning: a heartbeat payload is ",
        &shown,
    );
}

/// Heartbeats every 50 ms until `go` exists, then `null`.
const BEATING: &str = r#"echo up > up; i=0
    while [ ! -e go ]; do i=$((i + 1)); echo "{\"n\":$i}" >&3; sleep 0.05; done; echo null"#;

/// Runs [`BEATING`] as run `r` with `flags`, on the world's database with a 100 ms busy timeout;
/// once it beats, holds that database's write lock from another process for `hold`, then calls
/// `after`. Returns stint's exit code and stderr.
fn beating_through_a_held_lock(
    w: &World,
    flags: &[&str],
    hold: Duration,
    after: impl FnOnce(),
) -> (Option<i32>, String) {
    let db = format!("{}?busy_timeout_ms=100", w.db);
    let flags: Vec<&str> = ["--db", db.as_str()].iter().chain(flags).copied().collect();
    let (child, stderr) = spawn_run(w, "r", &flags, BEATING);
    wait_for_file(&w.path("up"));
    hold_write_lock(&w.path("state/stint.db"), hold);
    after();
    finish(child, &stderr, Duration::from_secs(30))
}

/// SQLite locked by another process for 1.5 s: heartbeat writes fail again and again (the
/// writer tries every 500 ms); one warning, and the run still finishes.
#[test]
fn heartbeat_write_failures_are_shown_once() {
    let w = World::sqlite();
    let go = || std::fs::write(w.path("go"), "").expect("go");
    let (code, all) = beating_through_a_held_lock(&w, &[], Duration::from_millis(1500), go);
    assert_eq!(code, Some(0), "{all}");
    assert_warned_once(
        all.lines(),
        "warning: a heartbeat could not be written",
        &all,
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
    let flags = ["--lease", "1500ms", "--grace", "200ms"];
    let (code, all) = beating_through_a_held_lock(&w, &flags, Duration::from_secs(3), || ());
    assert_eq!(code, Some(3), "fenced: {all}");
    assert_warned_once(
        all.lines(),
        "warning: the attempt's lease could not be renewed",
        &all,
    );
}
