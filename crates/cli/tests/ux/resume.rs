//! Without --run-id, running the same command again in the same folder finds its run: an
//! interrupted task resumes from its checkpoint, a finished one is not run twice.

use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{World, text, wait_for_file, wait_with_limit};

/// Resumes from the checkpoint when there is one; otherwise heartbeats and waits to be stopped.
const SCRIPT: &str = r#"
if [ -n "${STINT_CHECKPOINT:-}" ]; then echo "{\"resumed\":$STINT_CHECKPOINT}"; exit 0; fi
echo '{"done":1}' >&3
sleep 1
echo up > up
sleep 30
echo '"never"'"#;

/// The run id `stint run` announced on stderr.
fn announced_run_id(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("stint: run id "))
        .unwrap_or_else(|| panic!("no run id line in: {stderr}"))
        .to_owned()
}

#[test]
fn ctrl_c_then_the_same_command_resumes() {
    let w = World::sqlite();
    let mut first = w
        .std_cmd()
        .args(["run", "--", "sh", "-c", SCRIPT])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stint");
    wait_for_file(&w.path("up"));
    let pid = i32::try_from(first.id()).expect("pid");
    kill(Pid::from_raw(pid), Signal::SIGINT).expect("SIGINT");
    assert_eq!(
        wait_with_limit(&mut first, Duration::from_secs(20)).code(),
        Some(130)
    );
    let first = first.wait_with_output().expect("output");
    let run_id = announced_run_id(&text(&first.stderr));
    assert!(run_id.starts_with("sh-c-if-n-"), "{run_id}");

    let again = w.stint(&["run", "--", "sh", "-c", SCRIPT]);
    let stderr = text(&again.stderr);
    assert_eq!(again.status.code(), Some(0), "{stderr}");
    assert_eq!(text(&again.stdout), "{\"resumed\":{\"done\":1}}\n");
    assert_eq!(announced_run_id(&stderr), run_id, "the same run is found");
    assert!(
        stderr.contains(&format!(
            "stint: {run_id}/main#0 attempt 2 of 2 started, from the last checkpoint\n"
        )),
        "{stderr}"
    );

    // A finished node is not run again: its stored output is printed.
    let third = w.stint(&["run", "--", "sh", "-c", SCRIPT]);
    assert_eq!(third.status.code(), Some(0));
    assert_eq!(text(&third.stdout), "{\"resumed\":{\"done\":1}}\n");
    assert!(text(&third.stderr).contains("already finished"));
}

#[test]
fn another_command_is_another_run() {
    let w = World::sqlite();
    let ids: Vec<String> = ["echo 1", "echo 2", "echo 1"]
        .iter()
        .map(|script| {
            let output = w.stint(&["run", "--", "sh", "-c", script]);
            assert_eq!(output.status.code(), Some(0));
            announced_run_id(&text(&output.stderr))
        })
        .collect();
    assert_ne!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2]);
    assert!(ids[0].starts_with("sh-c-echo-1-"), "{}", ids[0]);
}
