//! A `stint worker` polling only every 30 s runs a task another process submitted within
//! seconds: the store's wake-up (PostgreSQL's NOTIFY, SQLite's `data_version`) woke it.

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{World, text};

/// Far longer than the bound below: a task run in time was not found by a poll.
const POLL: &str = "30s";

/// How long a woken worker may take (generous: two shared cores, a build beside the test).
const BOUND: Duration = Duration::from_secs(10);

fn wait_finished(w: &World, count: usize, what: &str) -> Duration {
    let start = Instant::now();
    while w.tasks(&["--state", "finished"]).len() < count {
        assert!(
            start.elapsed() < BOUND,
            "{what}: not finished within {BOUND:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

/// The worker runs a first task (so it is up and idle, its start-up claim done), then a second
/// one submitted by a separate `stint submit` process.
pub(crate) fn an_idle_worker_runs_a_task_submitted_by_another_process(w: &World) {
    w.submit(&["--run-id", "r", "--node-id", "first", "--", "true"]);
    let worker = w
        .std_cmd()
        .args(["worker", "--poll", POLL])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stint worker");
    wait_finished(w, 1, "the first task");
    // The claim that follows a task's end finds nothing; the worker is idle after it.
    std::thread::sleep(Duration::from_millis(500));
    w.submit(&["--run-id", "r", "--node-id", "second", "--", "true"]);
    let took = wait_finished(w, 2, "the task submitted to an idle worker");
    let pid = Pid::from_raw(i32::try_from(worker.id()).expect("a pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM the worker");
    let output = worker.wait_with_output().expect("the worker exits");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(took < BOUND, "took {took:?}");
}
