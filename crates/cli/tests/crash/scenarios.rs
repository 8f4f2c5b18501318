//! Crash scenarios, each a function of a [`World`], run once per backend.
#![allow(
    dead_code,
    reason = "each backend's binary runs the scenarios that apply to it"
)]

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{World, alive, assert_exit, text, wait_for_file, wait_with_limit};
/// The lease of the scenarios' runners: long enough that a healthy runner on a loaded 2-core
/// machine never fences itself (renewals have five twelfths of it to answer), short enough that
/// a killed one is recoverable soon.
const LEASE: &str = "2s";

/// The database URL with a short SQLite busy timeout, for a recoverer that must not wait 5 s on
/// a stopped process's write lock.
pub(crate) fn impatient(w: &World) -> String {
    if w.db.starts_with("sqlite:") {
        format!("{}?busy_timeout_ms=300", w.db)
    } else {
        w.db.clone()
    }
}

fn pid_of(child: &Child) -> Pid {
    Pid::from_raw(i32::try_from(child.id()).expect("pid"))
}

/// `stint run` of `run`/`node` in the background, its stderr to `NAME.err` in the world.
fn spawn_run(w: &World, run: &str, node: &str, flags: &[&str], script: &str) -> Child {
    let stderr = File::create(w.path(&format!("{run}.{node}.{}.err", unique()))).expect("err");
    w.std_cmd()
        .args(["run", "--run-id", run, "--node-id", node])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn stint")
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
}

/// The last `stint: ` line of everything written to `*.err` files for `run`/`node`.
fn stint_errors(w: &World, run: &str, node: &str) -> Vec<String> {
    let prefix = format!("{run}.{node}.");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(w.dir.path()).expect("dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.starts_with(&prefix) && name.ends_with(".err") {
            let content = std::fs::read_to_string(w.path(&name)).expect("read err");
            lines.extend(
                content
                    .lines()
                    .filter(|l| l.starts_with("stint: "))
                    .map(str::to_owned),
            );
        }
    }
    lines
}

fn now_ms() -> u64 {
    u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis(),
    )
    .expect("ms")
}

/// Sleeps until the lease of every in-progress attempt of `run` is over.
fn sleep_past_leases(w: &World, run: &str) {
    let latest = w
        .attempts(run)
        .iter()
        .filter(|a| a["state"] == "in-progress")
        .filter_map(|a| a["lease_expires_at_ms"].as_u64())
        .max();
    if let Some(expires) = latest {
        std::thread::sleep(Duration::from_millis(expires.saturating_sub(now_ms()) + 30));
    }
}

fn attempt<'a>(attempts: &'a [Value], node: &str, number: u64) -> &'a Value {
    attempts
        .iter()
        .find(|a| a["node_id"] == node && a["attempt"] == number)
        .unwrap_or_else(|| panic!("no attempt {node}#{number} in {attempts:?}"))
}

fn events_of<'a>(events: &'a [Value], node: &str, number: u64, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["node_id"] == node && e["attempt"] == number && e["type"] == kind)
        .collect()
}

/// Waits until the command wrote `done`, or its runner is gone, or 5 s passed: a runner that
/// fenced itself while briefly resumed may have killed its command already (or be stopped half
/// way through doing so); the checks after it hold either way.
fn wait_for_done_or_exit(done: &std::path::Path, runner: Pid) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done.exists() && alive(runner.as_raw()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGSTOP a runner mid-attempt, let its lease run out, recover, SIGCONT: the resumed process
/// must not overwrite the abandoned attempt.
pub(crate) fn zombie_cannot_finish_an_abandoned_attempt(w: &World, recover_db: &str) {
    // Heartbeats until the test says go, then a marker and the output: the command finishes
    // only once its attempt was declared dead, so the zombie always wakes up holding a result.
    let script = r#"echo up > up; i=0
        while [ ! -e go ]; do i=$((i + 1)); echo "{\"n\":$i}" >&3; sleep 0.02; done
        echo done > done; echo "{\"n\":$i}""#;
    let mut zombie = spawn_run(
        w,
        "z",
        "n",
        &["--lease", "600ms", "--grace", "200ms"],
        script,
    );
    wait_for_file(&w.path("up"));
    let stint = pid_of(&zombie);
    kill(stint, Signal::SIGSTOP).expect("SIGSTOP");
    let mut tries = Vec::new();
    loop {
        sleep_past_leases(w, "z");
        let recovered = w.stint(&["--db", recover_db, "recover"]);
        if attempt(&w.attempts("z"), "n", 1)["error"]["code"] == "ATTEMPT_ABANDONED" {
            assert!(
                text(&recovered.stdout).contains("z\tn\t0\t1\tATTEMPT_ABANDONED"),
                "{}",
                text(&recovered.stdout)
            );
            break;
        }
        // Stopped in the middle of a write, it holds SQLite's write lock (or PostgreSQL's row
        // lock, which recovery skips): let it finish that write (an fsync on a busy disk takes
        // a while), then stop it again.
        tries.push(text(&recovered.stderr).trim().to_owned());
        assert!(
            tries.len() < 15,
            "recovery never marked the stopped attempt: {tries:?}; {:?}",
            w.attempts("z")
        );
        kill(stint, Signal::SIGCONT).expect("SIGCONT");
        std::thread::sleep(Duration::from_millis(60));
        kill(stint, Signal::SIGSTOP).expect("SIGSTOP");
    }
    // Resumed for a moment above, the runner may already have fenced itself (its renewals had
    // failed for two thirds of the lease on its own clock) and killed its command: then there is
    // no zombie command left to finish, which is the point. Otherwise the command finishes now,
    // while its runner is stopped, and the runner wakes up holding a result.
    std::fs::write(w.path("go"), "go\n").expect("go");
    wait_for_done_or_exit(&w.path("done"), stint);
    kill(stint, Signal::SIGCONT).ok();
    let status = wait_with_limit(&mut zombie, Duration::from_secs(15));
    assert_eq!(status.code(), Some(3), "{:?}", stint_errors(w, "z", "n"));
    // Woken long after its lease ran out, the zombie either finds its attempt taken (a
    // conflict) or, its renewals having failed for two thirds of the lease on its own clock, fences
    // itself first; either way it writes nothing.
    let errors = stint_errors(w, "z", "n");
    assert!(
        errors.last().is_some_and(|l| {
            l.starts_with("stint: STORE_CONFLICT: ")
                || (l.starts_with("stint: STORE_UNAVAILABLE: ") && l.contains("left to recovery"))
        }),
        "{errors:?}"
    );
    let attempts = w.attempts("z");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    let abandoned = attempt(&attempts, "n", 1);
    assert_eq!(abandoned["state"], "failed");
    assert_eq!(abandoned["error"]["code"], "ATTEMPT_ABANDONED");
    let events = w.events("z");
    assert!(events_of(&events, "n", 1, "NodeFinished").is_empty());
    assert!(events_of(&events, "n", 1, "NodeCancelled").is_empty());
    assert_eq!(events_of(&events, "n", 1, "NodeFailed").len(), 1);
    let output = w.stint(&["output", "z", "n"]);
    assert_eq!(output.status.code(), Some(1), "no output may be stored");
}

/// Two `stint run`s of one node at once: one runs, the other is refused at once with
/// STORE_CONFLICT (exit 3); never two attempts in progress. Every other round races over an
/// abandoned attempt, so both runners also race to recover it.
pub(crate) fn racing_runners_never_share_a_node(w: &World) {
    let script = r#"echo "$STINT_ATTEMPT" >> "ran.$STINT_NODE_ID"; sleep 1.5; echo 1"#;
    for round in 0..4_u64 {
        let node = format!("race{round}");
        let abandoned_first = round % 2 == 1;
        if abandoned_first {
            let mut dead = spawn_run(
                w,
                "race",
                &node,
                &["--lease", LEASE],
                r#"echo up > "up.$STINT_NODE_ID"; exec sleep 30"#,
            );
            wait_for_file(&w.path(&format!("up.{node}")));
            dead.kill().expect("SIGKILL");
            dead.wait().expect("reap");
            sleep_past_leases(w, "race");
        }
        let flags = ["--lease", LEASE];
        let mut racers = [
            spawn_run(w, "race", &node, &flags, script),
            spawn_run(w, "race", &node, &flags, script),
        ];
        let mut codes: [Option<(i32, Instant)>; 2] = [None, None];
        let deadline = Instant::now() + Duration::from_secs(20);
        while codes.iter().any(Option::is_none) {
            assert!(Instant::now() < deadline, "racers did not exit");
            for (racer, code) in racers.iter_mut().zip(codes.iter_mut()) {
                if code.is_none()
                    && let Some(status) = racer.try_wait().expect("wait")
                {
                    *code = Some((status.code().unwrap_or(-1), Instant::now()));
                }
            }
            let running = w
                .attempts_if_any("race")
                .iter()
                .filter(|a| a["node_id"] == node.as_str() && a["state"] == "in-progress")
                .count();
            assert!(running <= 1, "{running} attempts of {node} in progress");
            std::thread::sleep(Duration::from_millis(30));
        }
        let mut ends: Vec<(i32, Instant)> = codes.into_iter().flatten().collect();
        ends.sort_by_key(|(code, _)| *code);
        let errors = stint_errors(w, "race", &node);
        assert_eq!(
            ends.iter().map(|(code, _)| *code).collect::<Vec<_>>(),
            [0, 3],
            "{errors:?}"
        );
        assert!(ends[1].1 < ends[0].1, "the loser waited for the winner");
        assert!(
            errors
                .iter()
                .any(|l| l.starts_with("stint: STORE_CONFLICT: ")),
            "{errors:?}"
        );
        let first = u64::from(abandoned_first);
        let ran = std::fs::read_to_string(w.path(&format!("ran.{node}"))).expect("ran");
        assert_eq!(ran.trim(), (first + 1).to_string(), "the command ran once");
        let attempts = w.attempts("race");
        let mine: Vec<&Value> = attempts
            .iter()
            .filter(|a| a["node_id"] == node.as_str())
            .collect();
        assert_eq!(mine.len() as u64, first + 1, "{mine:?}");
        assert_eq!(attempt(&attempts, &node, first + 1)["state"], "finished");
        if abandoned_first {
            assert_eq!(
                attempt(&attempts, &node, 1)["error"]["code"],
                "ATTEMPT_ABANDONED"
            );
            let events = w.events("race");
            assert_eq!(events_of(&events, &node, 1, "NodeFailed").len(), 1);
        }
    }
}

/// Several `stint recover` at once over several dead runners: each attempt is marked once.
pub(crate) fn racing_recoverers_mark_each_attempt_once(w: &World) {
    let nodes: Vec<String> = (0..4).map(|i| format!("c{i}")).collect();
    let mut dead: Vec<Child> = nodes
        .iter()
        .map(|node| {
            spawn_run(
                w,
                "rec",
                node,
                &["--lease", LEASE],
                r#"echo up > "up.$STINT_NODE_ID"; exec sleep 30"#,
            )
        })
        .collect();
    for node in &nodes {
        wait_for_file(&w.path(&format!("up.{node}")));
    }
    for child in &mut dead {
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
    }
    sleep_past_leases(w, "rec");
    let recoverers: Vec<Child> = (0..4)
        .map(|_| {
            w.std_cmd()
                .args(["recover"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn recover")
        })
        .collect();
    let mut marked: Vec<String> = Vec::new();
    for recoverer in recoverers {
        let output = recoverer.wait_with_output().expect("recover");
        assert_exit(&output, 0);
        marked.extend(text(&output.stdout).lines().map(str::to_owned));
    }
    marked.sort();
    let expected: Vec<String> = nodes
        .iter()
        .map(|node| format!("rec\t{node}\t0\t1\tATTEMPT_ABANDONED"))
        .collect();
    assert_eq!(marked, expected, "each attempt marked exactly once");
    let events = w.events("rec");
    let attempts = w.attempts("rec");
    for node in &nodes {
        assert_eq!(
            attempt(&attempts, node, 1)["error"]["code"],
            "ATTEMPT_ABANDONED"
        );
        assert_eq!(events_of(&events, node, 1, "NodeFailed").len(), 1);
    }
}

/// SIGTERM (twice) to a runner whose command traps it: the command gets its SIGTERM and
/// finishes its cleanup, the last heartbeat and `cancelled` are written, then stint exits 130.
pub(crate) fn sigterm_records_cancelled_before_exiting(w: &World) {
    let script = r#"echo $$ > leader.pid
        trap 'sleep 0.3; echo cleaned > cleaned; exit 143' TERM
        i=0; while :; do i=$((i + 1)); echo "$i" > sent; echo "{\"n\":$i}" >&3; sleep 0.02; done"#;
    let mut child = spawn_run(w, "t", "n", &["--grace", "3s"], script);
    let leader: i32 = wait_for_file(&w.path("leader.pid")).parse().expect("pid");
    std::thread::sleep(Duration::from_millis(200));
    let stint = pid_of(&child);
    kill(stint, Signal::SIGTERM).expect("SIGTERM");
    std::thread::sleep(Duration::from_millis(50));
    // A second SIGTERM while cancelling must not cut the recording short.
    kill(stint, Signal::SIGTERM).expect("SIGTERM");
    let status = wait_with_limit(&mut child, Duration::from_secs(15));
    assert_eq!(status.code(), Some(130), "{:?}", stint_errors(w, "t", "n"));
    assert!(w.path("cleaned").exists(), "the command's trap did not run");
    assert!(!alive(leader), "the command outlived stint");
    let sent: u64 = std::fs::read_to_string(w.path("sent"))
        .expect("sent")
        .trim()
        .parse()
        .expect("n");
    let attempts = w.attempts("t");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["state"], "cancelled");
    assert_eq!(attempts[0]["error"]["code"], "TASK_ABORTED");
    let recorded = attempts[0]["heartbeat"]["n"]
        .as_u64()
        .expect("a checkpoint");
    assert!(
        recorded + 1 >= sent && recorded <= sent,
        "the last heartbeat was not flushed: recorded {recorded}, sent {sent}"
    );
    let events = w.events("t");
    let cancelled = events_of(&events, "n", 1, "NodeCancelled");
    assert_eq!(cancelled.len(), 1, "{events:?}");
    assert_eq!(cancelled[0]["reason"], "aborted");
}

/// `PR_SET_PDEATHSIG`: a SIGKILLed stint's command is killed by the kernel, so it cannot keep
/// working beside the attempt that recovery will start next.
pub(crate) fn a_sigkilled_stint_takes_its_command_down(w: &World) {
    // Silent on purpose: a heartbeat would die of SIGPIPE once stint is gone anyway.
    let script = "echo $$ > leader.pid; while :; do sleep 0.05; done";
    let mut child = spawn_run(w, "k", "n", &["--lease", LEASE], script);
    let leader: i32 = wait_for_file(&w.path("leader.pid")).parse().expect("pid");
    // Long enough for the runtime's worker threads to have come and gone, if they did.
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(leader), "the command died while stint lived");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(leader) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let survived = alive(leader);
    if survived {
        let _ = nix::sys::signal::killpg(Pid::from_raw(leader), Signal::SIGKILL);
    }
    assert!(
        !survived,
        "the command {leader} outlived its SIGKILLed stint"
    );
    sleep_past_leases(w, "k");
    assert_eq!(crate::storm::recover(w), ["k\tn\t0\t1\tATTEMPT_ABANDONED"]);
}
