//! `stint events --follow` stops when the reader of its stdout goes away.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::world_with_a_run;
use crate::common::{STINT, text};

/// Waits for `child` (the leader of its own process group) up to `limit`; on time out, kills the
/// whole group, stint included, and panics.
fn wait_or_kill_group(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let group = Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = killpg(group, Signal::SIGKILL);
            let _ = child.wait();
            panic!("the pipeline did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn events_follow_stops_when_the_reader_goes_away() {
    let w = world_with_a_run();
    // `head -1` reads one line and exits; stint, idle in --follow (all events are written long
    // before), must notice that nobody reads any more and exit 0, saying nothing.
    let script = r#"{ "$STINT_BIN" events r --follow; echo "stint exit $?" >&2; } | head -1"#;
    let mut child = Command::new("sh")
        .args(["-c", script])
        .current_dir(w.dir.path())
        .env("STINT_DB", &w.db)
        .env("STINT_BIN", STINT)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn sh");
    let status = wait_or_kill_group(&mut child, Duration::from_secs(5));
    let output = child.wait_with_output().expect("output");
    assert!(status.success());
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("  NodeStarted  "), "{stdout}");
    assert_eq!(text(&output.stderr), "stint exit 0\n");
}

#[test]
fn events_follow_waits_for_a_run_that_is_not_recorded_yet() {
    let w = world_with_a_run();
    let mut follower = w
        .std_cmd()
        .args(["events", "later", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("spawn stint");
    std::thread::sleep(Duration::from_millis(300));
    let run = w.run("later", "n", &[], "echo 2");
    assert_eq!(run.status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(600));
    let pid = Pid::from_raw(i32::try_from(follower.id()).expect("pid"));
    nix::sys::signal::kill(pid, Signal::SIGINT).expect("SIGINT");
    let status = wait_or_kill_group(&mut follower, Duration::from_secs(5));
    let output = follower.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(130));
    assert_eq!(
        text(&output.stderr),
        "stint: no run 'later' is recorded yet; waiting for its events (Ctrl-C stops)\n"
    );
    let stdout = text(&output.stdout);
    // Each line is `SEQ  TIMESTAMP  TYPE  NODE#ITER attempt N  DETAIL`.
    let types: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(types, ["NodeStarted", "NodeFinished"]);
}
