//! Real faults against the real `stint` binary on SQLite: a second process holding the write
//! lock past the busy timeout. Each test asserts, from the database, that a result or a
//! checkpoint stint accepted is never lost. (The network partition before PostgreSQL is in
//! `faults_postgres.rs`.)

#[path = "faults/chaos.rs"]
mod chaos;
mod common;

use std::time::Duration;

use chaos::chaos_ms;
use common::{World, hold_write_lock, text, wait_for_file, wait_with_limit};
use serde_json::json;

/// Runs `script` as node `n` of run `r` and, once it created the file `locked-now`, holds the
/// database's write lock for `hold`. Returns stint's exit code and stderr.
fn run_against_a_held_lock(w: &World, script: &str, hold: Duration) -> (Option<i32>, String) {
    // The database exists before the lock is taken.
    let setup = w.run("setup", "n", &[], "echo '{}'");
    assert!(setup.status.success(), "{}", text(&setup.stderr));
    let mut stint = w.run_cmd("r", "n", &["--lease", "60s"], script);
    let mut stint = stint
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stint starts");
    wait_for_file(&w.path("locked-now"));
    hold_write_lock(&w.path("state/stint.db"), hold);
    let status = wait_with_limit(&mut stint, Duration::from_secs(40));
    let mut stderr = String::new();
    std::io::Read::read_to_string(stint.stderr.as_mut().expect("piped"), &mut stderr)
        .expect("stderr");
    (status.code(), stderr)
}

#[test]
fn a_result_that_meets_a_locked_database_is_retried_and_kept() {
    let w = World::sqlite();
    // The command finishes one second into a lock of 7 s (5.5 to 9 s under `cargo xtask
    // chaos`): longer than SQLite's 5 s busy timeout.
    let script = r#"echo now > locked-now; sleep 1; echo '{"result":42}'"#;
    let hold = chaos_ms(2, 5_500..9_000, 7_000);
    let (code, stderr) = run_against_a_held_lock(&w, script, hold);
    assert_eq!(code, Some(0), "{stderr}");
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["state"], "finished");
    let output = w.stint(&["output", "r", "n"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&output.stdout).ok(),
        Some(json!({"result": 42})),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_checkpoint_sent_while_the_database_is_locked_is_kept() {
    let w = World::sqlite();
    // Step 1 is written; step 2 arrives while the lock is held for 6 s (past the busy timeout).
    let script = r#"echo '{"step":1}' >&3; sleep 0.7; echo now > locked-now; sleep 0.3
        echo '{"step":2}' >&3; sleep 0.5; echo '{}'"#;
    let hold = chaos_ms(3, 5_500..9_000, 6_000);
    let (code, stderr) = run_against_a_held_lock(&w, script, hold);
    assert_eq!(code, Some(0), "{stderr}");
    let attempts = w.attempts("r");
    assert_eq!(attempts[0]["heartbeat"], json!({"step": 2}), "{attempts:?}");
}
