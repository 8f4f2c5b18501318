//! The queue's commands end to end, on a real SQLite file: what a user sees on stdout, stderr
//! and in the exit code. The round trip also runs on PostgreSQL (`e2e_postgres`).

mod common;

use std::process::{Child, Output};
use std::time::{Duration, Instant};

use common::{World, assert_exit, text};

/// Polls `done` every 20 ms until it says yes; fails with `never` after 20 s.
fn wait_until(never: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "{never}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for `child`, just asked to stop, and checks that it exits with `code` within 10 s
/// (`what` names the wait in the failure message); returns its output.
fn exits_within_10s(child: Child, code: i32, what: &str) -> Output {
    let asked = Instant::now();
    let output = child.wait_with_output().expect("the process exits");
    assert_eq!(output.status.code(), Some(code), "{}", text(&output.stderr));
    assert!(
        asked.elapsed().as_secs() < 10,
        "{what} took {:?}",
        asked.elapsed()
    );
    output
}

/// Issue 17's done-when: 1,000 commands, two workers with concurrency 4, one SIGKILLed.
#[test]
fn two_workers_one_killed_run_every_task_once() {
    common::workers::two_workers_one_killed_run_every_task_once(&World::sqlite(), 1000);
}

#[test]
fn submit_list_cancel_retry_round_trip() {
    common::queue::submit_list_cancel_retry_round_trip(&World::sqlite());
}

#[test]
fn a_batch_with_a_bad_line_stores_nothing_and_names_the_line() {
    let w = World::sqlite();
    assert_exit(&w.stint(&["migrate"]), 0);
    std::fs::write(
        w.path("tasks.jsonl"),
        "{\"command\":[\"true\"]}\n{\"command\":[\"true\"],\"retries\":\"two\"}\n{\"command\":[\"true\"]}\n",
    )
    .expect("write the batch");
    let output = w.stint(&["submit", "--batch", "tasks.jsonl"]);
    assert_exit(&output, 2);
    let stderr = text(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("stint: INVALID_INPUT: --batch line 2: "),
        "{stderr}"
    );
    assert!(w.tasks(&[]).is_empty(), "nothing stored");
}

#[test]
fn a_batch_from_stdin_prints_one_id_per_line_or_the_count() {
    let w = World::sqlite();
    let lines = "{\"command\":[\"true\"],\"queue\":\"b\",\"timeout\":\"30s\"}\n\n{\"command\":[\"false\"],\"priority\":3}\n";
    let output = w
        .cmd()
        .args(["submit", "--batch", "-"])
        .write_stdin(lines)
        .output()
        .expect("stint runs");
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout), "1\n2\n");
    let tasks = w.tasks(&[]);
    assert_eq!(
        (tasks[0]["queue"].as_str(), tasks[1]["priority"].as_i64()),
        (Some("b"), Some(3))
    );
    assert_eq!(tasks[0]["spec"]["timeout_ms"], 30_000);
    let output = w
        .cmd()
        .args(["-q", "submit", "--batch", "-"])
        .write_stdin(lines)
        .output()
        .expect("stint runs");
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout), "2\n");
}

#[test]
fn a_unique_key_held_by_a_live_task_returns_its_id() {
    let w = World::sqlite();
    let first = w.submit(&["--unique-key", "k", "--", "true"]);
    let output = w.stint(&["submit", "--unique-key", "k", "--", "true"]);
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout).trim(), first);
    assert!(
        text(&output.stderr).contains("holds unique key 'k'"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(w.tasks(&[]).len(), 1);
}

#[test]
fn a_task_due_later_is_listed_scheduled() {
    let w = World::sqlite();
    w.submit(&["--delay", "1h", "--", "true"]);
    w.submit(&["--at", "2999-01-01T00:00:00+02:00", "--", "true"]);
    w.submit(&["--", "true"]);
    let scheduled = w.tasks(&["--state", "scheduled"]);
    assert_eq!(scheduled.len(), 2);
    assert_eq!(scheduled[1]["run_at_ms"], 32_472_136_800_000_u64);
    assert_eq!(w.tasks(&["--state", "ready"]).len(), 1);
    let table = text(&w.stint(&["tasks"]).stdout);
    assert_eq!(table.matches("scheduled").count(), 2, "{table}");
    assert_eq!(w.queues()[0]["scheduled"], 2);
    let output = w.stint(&["submit", "--at", "tomorrow", "--", "true"]);
    assert_exit(&output, 2);
}

#[test]
fn unknown_tasks_and_reading_without_a_database_are_one_line_errors() {
    let w = World::sqlite();
    let output = w.stint(&["tasks"]);
    assert_exit(&output, 1);
    assert!(text(&output.stderr).starts_with("stint: NO_DATABASE: "));
    assert!(
        !w.path("state/stint.db").exists(),
        "reading created nothing"
    );
    w.submit(&["--", "true"]);
    for command in ["cancel", "retry"] {
        let output = w.stint(&[command, "99"]);
        assert_exit(&output, 1);
        assert_eq!(
            text(&output.stderr),
            "stint: UNKNOWN_TASK: no task 99 is queued (never submitted, or pruned)\n"
        );
    }
    let output = w.stint(&["retry", "1"]);
    assert_exit(&output, 2);
    assert!(text(&output.stderr).contains("task 1 is ready: only a failed or cancelled"));
}

#[test]
fn prune_removes_ended_tasks_only() {
    let w = World::sqlite();
    w.submit(&["--run-id", "ran", "--", "true"]);
    let worked = w.stint(&["-q", "worker", "--exit-when-empty"]);
    assert_exit(&worked, 0);
    assert_eq!(w.attempts("ran").len(), 1, "the worker ran it");
    let ended = w.submit(&["--", "true"]);
    w.submit(&["--", "true"]);
    assert_exit(&w.stint(&["cancel", &ended]), 0);
    let output = w.stint(&["prune", "--ended-before", "1h"]);
    assert_exit(&output, 0);
    assert_eq!(
        text(&output.stdout),
        "0\n",
        "ended just now, not an hour ago"
    );
    let output = w.stint(&["prune", "--ended-before", "0s", "--batch", "1"]);
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout), "2\n");
    assert!(text(&output.stderr).contains("pruned 1 ended task(s) so far"));
    let left = w.tasks(&[]);
    assert_eq!((left.len(), left[0]["state"].as_str()), (1, Some("ready")));
    // The finished task's history went with it: its run is no longer recorded.
    assert!(w.attempts_if_any("ran").is_empty());
    assert!(w.events_if_any("ran").is_empty());
}

#[test]
fn a_queue_limit_shows_in_queues() {
    let w = World::sqlite();
    let output = w.stint(&["queue", "limit", "slow", "2"]);
    assert_exit(&output, 0);
    assert_eq!(
        text(&output.stdout),
        "queue slow: at most 2 running task(s)\n"
    );
    assert_eq!(w.queues()[0]["max_running"], 2);
    let table = text(&w.stint(&["queues"]).stdout);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("slow") && l.ends_with('2')),
        "{table}"
    );
    assert_exit(&w.stint(&["queue", "limit", "slow", "none"]), 0);
    assert_eq!(w.queues()[0]["max_running"], serde_json::Value::Null);
}

#[test]
#[allow(
    clippy::print_stderr,
    reason = "the time is for information, never asserted"
)]
fn a_batch_of_ten_thousand_lines_is_one_transaction() {
    let w = World::sqlite();
    let lines: String = (0..10_000)
        .map(|i| format!("{{\"command\":[\"echo\",\"{i}\"],\"retries\":1}}\n"))
        .collect();
    std::fs::write(w.path("big.jsonl"), lines).expect("write the batch");
    let started = Instant::now();
    let output = w.stint(&["-q", "submit", "--batch", "big.jsonl"]);
    eprintln!("10,000 tasks submitted in {:?}", started.elapsed());
    assert_exit(&output, 0);
    assert_eq!(text(&output.stdout), "10000\n");
    assert_eq!(w.tasks(&["--limit", "20000"]).len(), 10_000);
}

#[test]
fn retry_takes_the_nodes_failed_attempts_off_its_budget() {
    let w = World::sqlite();
    assert_exit(&w.run("r", "n", &[], "exit 3"), 1);
    let id = w.submit(&["--run-id", "r", "--node-id", "n", "--", "true"]);
    assert_exit(&w.stint(&["cancel", &id]), 0);
    let output = w.stint(&["retry", &id]);
    assert_exit(&output, 0);
    assert_eq!(
        text(&output.stdout),
        format!(
            "task {id} ready again (1 earlier failed attempt(s) no longer count toward its retries)\n"
        )
    );
    assert_eq!(w.tasks(&[])[0]["retry_base"], 1);
}

/// SIGTERM drains a worker: no new task, the running one gets --drain-timeout, then goes back to
/// the queue as ready, its attempt recorded cancelled (not a failure); the drain shows on stderr.
#[test]
fn sigterm_drains_a_worker_and_puts_its_running_task_back() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;

    let w = World::sqlite();
    let id = w.submit(&["--run-id", "r", "--node-id", "long", "--", "sleep", "30"]);
    let worker = w
        .std_cmd()
        .args(["worker", "--drain-timeout", "300ms", "--poll", "20ms"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stint worker");
    wait_until("the task never started", || {
        !w.tasks(&["--state", "running"]).is_empty()
    });
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = Pid::from_raw(i32::try_from(worker.id()).expect("a pid"));
    kill(pid, Signal::SIGTERM).expect("SIGTERM the worker");
    let output = exits_within_10s(worker, 0, "the drain");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("SIGTERM: draining"), "{stderr}");
    let tasks = w.tasks(&[]);
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["id"].to_string(), id);
    assert_eq!(tasks[0]["state"], "ready", "put back: {tasks:?}");
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["state"], "cancelled", "{attempts:?}");
}

/// `stint cancel --run` reaches a plain `stint run` (no task at all) through its lease renewal:
/// the command is stopped, the attempt recorded cancelled, and `stint run` exits 130.
#[test]
fn cancel_of_a_run_stops_a_plain_stint_run_at_its_next_renewal() {
    let w = World::sqlite();
    let run = w
        .std_cmd()
        .args(["run", "--run-id", "r", "--node-id", "long", "--lease", "2s"])
        .args(["--", "sleep", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn stint run");
    // Until `stint run` began its attempt, the database or the run may not exist yet.
    wait_until("the attempt never began", || {
        let output = w.stint(&["attempts", "r", "--json"]);
        output.status.success() && text(&output.stdout).contains("\"in-progress\"")
    });
    let cancel = w.stint(&["cancel", "--run", "r"]);
    assert!(cancel.status.success(), "{}", text(&cancel.stderr));
    assert!(
        text(&cancel.stdout).contains("cancellation requested"),
        "{}",
        text(&cancel.stdout)
    );
    // A renewal every 0.5 s.
    exits_within_10s(run, 130, "stopping after the request");
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["state"], "cancelled", "{attempts:?}");
}

/// A worker polling every 30 s runs a task a separate `stint submit` stored within seconds: the
/// `data_version` check woke it.
#[test]
fn an_idle_worker_is_woken_by_a_submit_from_another_process() {
    common::wakeups::an_idle_worker_runs_a_task_submitted_by_another_process(&World::sqlite());
}
