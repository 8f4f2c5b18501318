//! Signals: a stopped command is continued so it can clean up.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::common::{World, alive, wait_for_file};
use crate::{finish, spawn_run, state_of, wait_until};

fn signal(pid: u32, signal: Signal) {
    kill(Pid::from_raw(i32::try_from(pid).expect("pid")), signal).expect("signal stint");
}

/// A command that stopped itself gets SIGCONT after SIGTERM: its trap runs at once, instead of
/// a SIGKILL after the whole grace.
#[test]
fn a_stopped_command_is_continued_to_clean_up() {
    let w = World::sqlite();
    let script = r#"trap 'echo cleaned > cleaned; exit 143' TERM
        echo $$ > leader.pid; kill -STOP $$; sleep 30"#;
    let (child, stderr) = spawn_run(&w, "r", &["--grace", "10s"], script);
    let leader: i32 = wait_for_file(&w.path("leader.pid")).parse().expect("pid");
    wait_until("the command stopping itself", || {
        state_of(leader) == Some('T')
    });
    let pid = child.id();
    let started = Instant::now();
    signal(pid, Signal::SIGINT);
    let (code, all) = finish(child, &stderr, Duration::from_secs(30));
    let took = started.elapsed();
    assert_eq!(code, Some(130), "{all}");
    assert!(w.path("cleaned").exists(), "the trap never ran: {all}");
    assert!(
        took < Duration::from_secs(5),
        "waited for the grace: {took:?}"
    );
    assert!(!alive(leader));
    assert_eq!(w.attempts("r")[0]["state"], "cancelled");
}
