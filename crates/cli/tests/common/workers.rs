//! Two `stint worker`s over one batch, one of them SIGKILLed mid-run: every task ends finished
//! exactly once, no two attempts of a node overlap, and the survivor takes the killed worker's
//! tasks over by itself (no `stint recover`).

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{World, text};

/// The claim and attempt lease: a worker that cannot renew for two thirds of it fences itself,
/// which a loaded two-core machine (a build beside the test) can cause at 2 s; takeover waits
/// about one lease.
const LEASE: &str = "5s";

/// Each task logs its start and end (appends of one short line are atomic) and takes ~20 ms.
const TASK: &str = r#"echo "$STINT_NODE_ID $STINT_ATTEMPT start" >> run.log; sleep 0.02; echo "$STINT_NODE_ID $STINT_ATTEMPT end" >> run.log; echo 1"#;

/// Submits `tasks` commands in one batch, starts two workers with concurrency 4, SIGKILLs the
/// first once a quarter of the tasks finished, and checks what the database and the tasks' own
/// log hold once the second worker has emptied the queue.
pub(crate) fn two_workers_one_killed_run_every_task_once(w: &World, tasks: usize) {
    let batch: String = (0..tasks)
        .map(|i| {
            serde_json::json!({
                "command": ["sh", "-c", TASK],
                "run_id": "batch",
                "node_id": format!("t{i:04}"),
                "lease": LEASE,
            })
            .to_string()
                + "\n"
        })
        .collect();
    std::fs::write(w.path("batch.jsonl"), batch).expect("write the batch");
    let submitted = w.stint(&["-q", "submit", "--batch", "batch.jsonl"]);
    assert_eq!(
        submitted.status.code(),
        Some(0),
        "{}",
        text(&submitted.stderr)
    );
    let mut doomed = start_worker(w, "doomed");
    let survivor = start_worker(w, "survivor");
    wait_for_finished(w, tasks / 4, &mut doomed);
    doomed.kill().expect("SIGKILL the first worker");
    doomed.wait().expect("reap it");
    let code = wait_with_deadline(survivor, Duration::from_secs(180));
    assert_eq!(
        code,
        Some(0),
        "the surviving worker failed: {}",
        std::fs::read_to_string(w.path("survivor.err")).unwrap_or_default()
    );
    check_every_task_once(w, tasks);
}

fn start_worker(w: &World, name: &str) -> Child {
    w.std_cmd()
        .args([
            "worker",
            "--concurrency",
            "4",
            "--lease",
            LEASE,
            "--exit-when-empty",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(w.path(&format!("{name}.err"))).expect("stderr file"))
        .spawn()
        .expect("spawn stint worker")
}

/// Waits until `count` tasks have ended finished (or the worker exited: it must not have).
fn wait_for_finished(w: &World, count: usize, worker: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let finished = w.tasks(&["--state", "finished", "--limit", "100000"]).len();
        if finished >= count {
            return;
        }
        assert!(
            worker.try_wait().expect("poll the worker").is_none(),
            "the worker exited after {finished} tasks: {}",
            std::fs::read_to_string(w.path("doomed.err")).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "only {finished} tasks finished in 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The exit code of `worker` once it exits; kills it after `limit`.
fn wait_with_deadline(mut worker: Child, limit: Duration) -> Option<i32> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = worker.try_wait().expect("poll the worker") {
            return status.code();
        }
        if Instant::now() >= deadline {
            let _ = worker.kill();
            panic!("the surviving worker did not empty the queue within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn check_every_task_once(w: &World, tasks: usize) {
    let listed = w.tasks(&["--limit", "100000"]);
    assert_eq!(listed.len(), tasks);
    let unfinished: Vec<&Value> = listed.iter().filter(|t| t["state"] != "finished").collect();
    assert!(unfinished.is_empty(), "tasks not finished: {unfinished:?}");
    let attempts = w.attempts("batch");
    let mut by_node: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for attempt in &attempts {
        by_node
            .entry(attempt["node_id"].as_str().expect("node id"))
            .or_default()
            .push(attempt);
    }
    assert_eq!(by_node.len(), tasks, "every task ran as its own node");
    let mut taken_over = 0;
    for (node, mine) in &by_node {
        let finished = mine.iter().filter(|a| a["state"] == "finished").count();
        assert_eq!(
            finished, 1,
            "{node}: {finished} finished attempts: {mine:?}"
        );
        for pair in mine.windows(2) {
            let (before, after) = (pair[0], pair[1]);
            assert_eq!(
                before["error"]["code"], "ATTEMPT_ABANDONED",
                "{node}: {mine:?}"
            );
            assert!(
                before["finished_at_ms"].as_u64() <= after["started_at_ms"].as_u64(),
                "{node}: attempts overlap: {mine:?}"
            );
            taken_over += 1;
        }
    }
    // A task the killed worker held was claimed again: abandoned mid-attempt, or claimed and not
    // yet begun when the kill landed (then it has no abandoned attempt, only a second claim).
    let reclaimed = listed
        .iter()
        .filter(|t| t["claims"].as_u64() > Some(1))
        .count();
    assert!(
        reclaimed >= taken_over && reclaimed > 0,
        "the killed worker left no task to take over ({taken_over} abandoned attempts)"
    );
    check_log(&std::fs::read_to_string(w.path("run.log")).expect("the tasks' log"));
}

/// The tasks' own log: an attempt of a node never ends after a later attempt of it started
/// (the two would have run at once). An attempt whose worker was killed logs no end: the kernel
/// kills its command with the worker.
fn check_log(log: &str) {
    let mut running: BTreeMap<&str, &str> = BTreeMap::new();
    let mut superseded: HashSet<(&str, &str)> = HashSet::new();
    let mut ended: HashSet<&str> = HashSet::new();
    for line in log.lines() {
        let words: Vec<&str> = line.split(' ').collect();
        let [node, attempt, what] = words[..] else {
            panic!("a torn log line: {line:?}");
        };
        match what {
            "start" => {
                if let Some(earlier) = running.insert(node, attempt) {
                    superseded.insert((node, earlier));
                }
            }
            "end" => {
                assert!(
                    !superseded.contains(&(node, attempt)),
                    "{node}: attempt {attempt} was still running when a later one started"
                );
                assert_eq!(running.remove(node), Some(attempt), "{node}: {line}");
                ended.insert(node);
            }
            _ => panic!("a torn log line: {line:?}"),
        }
    }
    assert!(running.is_empty(), "attempts that never ended: {running:?}");
    assert!(!ended.is_empty(), "the tasks logged nothing");
}
