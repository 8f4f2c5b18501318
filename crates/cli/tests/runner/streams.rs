//! Each stream read on its own: a process that outlives the command holding a pipe open does
//! not throw away what the others read; garbage on fd 3 is summed up, not printed line by line.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::common::{World, alive, assert_exit, stint_lines, text, wait_for_file};

/// A daemon started with `setsid` (so outside the command's process group) that writes its pid
/// to `daemon.pid` and sleeps; `redirect` says which descriptors it keeps.
fn daemon(redirect: &str) -> String {
    format!("setsid sh -c 'echo $$ > daemon.pid; exec sleep 8' {redirect} &")
}

/// Ends the daemon the test started.
fn stop_daemon(w: &World) {
    let pid: i32 = wait_for_file(&w.path("daemon.pid")).parse().expect("pid");
    assert!(
        alive(pid),
        "the daemon {pid} was expected to outlive the command"
    );
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
}

/// A daemon holding fd 3 (as sccache or a gradle server would): the success stands.
#[test]
fn a_daemon_holding_the_heartbeat_pipe_does_not_fail_the_attempt() {
    let w = World::sqlite();
    let script = format!(
        r#"{} echo '{{"ok":1}}'"#,
        daemon(">/dev/null 2>&1 </dev/null")
    );
    let started = Instant::now();
    let output = w.run("r", "n", &[], &script);
    let took = started.elapsed();
    stop_daemon(&w);
    assert_exit(&output, 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).ok(),
        Some(json!({"ok": 1}))
    );
    assert!(
        took < Duration::from_secs(6),
        "waited for the daemon: {took:?}"
    );
    assert!(
        text(&output.stderr).contains("still holds the heartbeat descriptor (fd 3) open"),
        "{}",
        text(&output.stderr)
    );
}

/// A daemon holding stdout, stderr and fd 3: what the command printed before exiting is kept.
#[test]
fn a_daemon_holding_every_pipe_keeps_what_was_read() {
    let w = World::sqlite();
    let script = format!(r#"echo up >&2; {} echo '{{"ok":2}}'"#, daemon(""));
    let output = w.run("r", "n", &[], &script);
    stop_daemon(&w);
    assert_exit(&output, 0);
    assert_eq!(
        serde_json::from_slice::<Value>(&output.stdout).ok(),
        Some(json!({"ok": 2}))
    );
    assert!(text(&output.stderr).contains("up\n"));
}

/// The directives read before a daemon kept fd 3 open still apply to the failure.
#[test]
fn directives_survive_a_daemon_holding_the_heartbeat_pipe() {
    let w = World::sqlite();
    let script = format!(
        r#"echo '#no-retry' >&3; {} exit 3"#,
        daemon(">/dev/null 2>&1 </dev/null")
    );
    let flags = ["--retries", "2", "--backoff-initial", "10ms"];
    let output = w.run("r", "n", &flags, &script);
    stop_daemon(&w);
    assert_exit(&output, 1);
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1, "#no-retry was lost: {attempts:?}");
    assert_eq!(attempts[0]["error"]["code"], "TASK_FAILED");
}

/// 400 invalid lines: the first five are shown, then one line with the count of the rest.
#[test]
fn garbage_on_the_heartbeat_pipe_is_summed_up() {
    let w = World::sqlite();
    let script = r#"i=0; while [ $i -lt 400 ]; do echo "garbage $i"; i=$((i + 1)); done >&3
        echo '{"beat":1}' >&3; echo null"#;
    let output = w.run("r", "n", &[], script);
    assert_exit(&output, 0);
    let lines = stint_lines(&output);
    let invalid = lines
        .iter()
        .filter(|l| l.contains("HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE"))
        .count();
    assert_eq!(invalid, 5, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("and 395 more invalid heartbeat lines")),
        "{lines:#?}"
    );
    assert!(lines.len() < 12, "{lines:#?}");
    assert_eq!(w.attempts("r")[0]["heartbeat"], json!({"beat": 1}));
}
