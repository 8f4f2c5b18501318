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
