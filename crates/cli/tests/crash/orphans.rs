//! What a SIGKILLed stint leaves behind: the command's own children (its process group outlives
//! it, since `PR_SET_PDEATHSIG` reaches only the command), ended by recovery on the same host
//! before the node can run again; and a second Ctrl-C, which exits at once.
#![allow(
    dead_code,
    reason = "each backend's binary runs the scenarios that apply to it"
)]

use std::fs::File;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use serde_json::Value;

use crate::common::{World, alive, hold_write_lock, text, wait_for_file, wait_with_limit};

/// A command whose child outlives the command's own death: `sleep` in the background, its pid
/// in `orphan.pid`.
const SPAWNS_AN_ORPHAN: &str = "sleep 300 & echo $! > orphan.pid; wait";

/// Who runs recovery after the runner died.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Recoverer {
    /// `stint recover`.
    Recover,
    /// `stint run` of the same node, whose command reports whether the orphan still ran.
    Run,
}

fn spawn_run(w: &World, flags: &[&str], script: &str) -> Child {
    w.std_cmd()
        .args(["run", "--run-id", "k", "--node-id", "n"])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(w.path("first.err")).expect("err file"))
        .spawn()
        .expect("spawn stint")
}

/// The first attempt of k/n, once its runner recorded where its process group lives.
fn placed_attempt(w: &World) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(first) = w.attempts_if_any("k").into_iter().next()
            && !first["process"].is_null()
        {
            return first;
        }
        assert!(
            Instant::now() < deadline,
            "the process place was never recorded"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    u64::try_from(since.expect("clock").as_millis()).expect("ms")
}

/// Waits until `pid` is gone, up to `limit`; whether it went.
fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    !alive(pid)
}

/// SIGKILL to stint leaves the command's background child running; once the lease expired,
/// recovery ends that child's group (saying so) before it marks the attempt abandoned, and a
/// `stint run` of the node starts its next attempt only after the group is gone.
pub(crate) fn recovery_ends_the_orphaned_group(w: &World, recoverer: Recoverer) {
    let mut runner = spawn_run(w, &["--lease", "2s"], SPAWNS_AN_ORPHAN);
    let orphan: i32 = wait_for_file(&w.path("orphan.pid")).parse().expect("pid");
    let first = placed_attempt(w);
    let place = &first["process"];
    let pgid = place["pgid"].as_u64().expect("pgid");
    assert!(
        place["host"].as_str().is_some_and(|h| !h.is_empty()),
        "{place}"
    );
    assert!(place["started"].as_u64().is_some(), "{place}");
    runner.kill().expect("SIGKILL stint");
    runner.wait().expect("reap stint");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        alive(orphan),
        "the orphan must outlive its stint for this test to mean anything"
    );

    let expires = first["lease_expires_at_ms"].as_u64().expect("lease");
    std::thread::sleep(Duration::from_millis(
        expires.saturating_sub(now_ms()) + 100,
    ));
    let output = match recoverer {
        Recoverer::Recover => w.cmd().args(["recover"]).output().expect("stint recover"),
        Recoverer::Run => {
            // A zombie (killed, not yet reaped by init) counts as gone, as in `alive`.
            let script = format!(
                "case $(cut -d' ' -f3 /proc/{orphan}/stat 2>/dev/null) in \
                 ''|Z|X) echo '{{\"orphan\":\"gone\"}}' ;; \
                 *) echo '{{\"orphan\":\"running\"}}' ;; esac"
            );
            w.run("k", "n", &[], &script)
        }
    };
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    let survived = !gone_within(orphan, Duration::from_secs(2));
    if survived {
        let _ = killpg(
            Pid::from_raw(i32::try_from(pgid).expect("pgid")),
            Signal::SIGKILL,
        );
    }
    assert!(
        !survived,
        "recovery left the orphan {orphan} running: {stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "stint: ended orphaned process group {pgid} of k/n#0 attempt 1\n"
        )),
        "{stderr}"
    );
    match recoverer {
        Recoverer::Recover => assert_eq!(stdout, "k\tn\t0\t1\tATTEMPT_ABANDONED\n"),
        Recoverer::Run => assert_eq!(stdout.trim(), r#"{"orphan":"gone"}"#, "{stderr}"),
    }
    let attempts = w.attempts("k");
    assert_eq!(attempts[0]["state"], "failed");
    assert_eq!(attempts[0]["error"]["code"], "ATTEMPT_ABANDONED");
}

/// A second Ctrl-C while stint waits (here for a command that ignores SIGTERM, its store's
/// write lock held by another process): the group is killed, one line says the attempt is left
/// to recovery, and stint exits at once with code 4.
pub(crate) fn second_ctrl_c_exits_at_once(w: &World, db_file: Option<&std::path::Path>) {
    let script = format!("trap '' TERM; {SPAWNS_AN_ORPHAN}");
    let mut runner = spawn_run(w, &["--grace", "60s"], &script);
    let orphan: i32 = wait_for_file(&w.path("orphan.pid")).parse().expect("pid");
    let _ = placed_attempt(w);
    let locker = db_file.map(|db| {
        let db = db.to_owned();
        std::thread::spawn(move || hold_write_lock(&db, Duration::from_secs(4)))
    });
    std::thread::sleep(Duration::from_millis(500));
    let pid = Pid::from_raw(i32::try_from(runner.id()).expect("pid"));
    kill(pid, Signal::SIGINT).expect("first SIGINT");
    // One at once is the same request (see `sigterm_records_cancelled_before_exiting`).
    std::thread::sleep(Duration::from_millis(50));
    kill(pid, Signal::SIGINT).expect("the same SIGINT again");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        runner.try_wait().expect("wait").is_none(),
        "stint exited on the first SIGINT"
    );
    let second = Instant::now();
    kill(pid, Signal::SIGINT).expect("second SIGINT");
    let status = wait_with_limit(&mut runner, Duration::from_secs(10));
    let took = second.elapsed();
    let survived = !gone_within(orphan, Duration::from_secs(1));
    if survived {
        let _ = kill(Pid::from_raw(orphan), Signal::SIGKILL);
    }
    let stderr = std::fs::read_to_string(w.path("first.err")).expect("stderr");
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(
        took < Duration::from_secs(2),
        "took {took:?} to exit: {stderr}"
    );
    assert!(
        !survived,
        "the command's group outlived the second SIGINT: {stderr}"
    );
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("stint: interrupt again: exiting now, killed the command's process group")
            && last.contains("attempt 1 is left to recovery (`stint recover`"),
        "{stderr}"
    );
    if let Some(locker) = locker {
        locker.join().expect("the lock holder");
    }
}
