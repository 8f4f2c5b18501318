//! The kill -9 storm: `stint run` SIGKILLed at random instants, each kill followed by `stint
//! recover` once the lease is over and a full check of what the database holds.
//!
//! Several lanes run at once against the same database, each on its own run. A lane runs one
//! node again and again (every new `stint run` resumes from the last checkpoint) until an
//! attempt finishes, then moves to a fresh node.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use rand::Rng as _;
use serde_json::Value;

use crate::common::{World, alive, text};

/// The lease every storm run gets: short, so a killed attempt is recoverable soon, yet long
/// enough that a live runner's renewals answer before it fences itself (two thirds of it) on a
/// loaded machine; a runner that fences anyway is counted as one that lost its lease.
pub(crate) const LEASE: &str = "900ms";
/// How many `stint run`s of the storm, at most.
const ITERATIONS: usize = 100;
/// The storm stops starting iterations after this long, whichever comes first.
const BUDGET: Duration = Duration::from_secs(50);
/// The fewest iterations that make the storm mean something.
const MIN_ITERATIONS: usize = 30;
/// Lanes running at once (the machine may have two cores: the lanes mostly wait for leases).
const LANES: usize = 3;
/// Most kills land uniformly in this window after the command started; it takes about 500 ms,
/// so some runs finish first.
const KILL_WINDOW_MS: u64 = 550;
/// How long a killed stint's command may outlive it (`PR_SET_PDEATHSIG` kills it at once).
const ORPHAN_LIMIT: Duration = Duration::from_secs(2);

/// Heartbeats an increasing counter every ~10 ms, starting after the checkpoint it was given,
/// logging each value before sending it; prints the last one after 30 beats.
///
/// The pid file appears whole or not at all: `echo $$ > file` creates the file before it writes,
/// and a SIGKILL in between would leave it empty for ever, so the pid is written under another
/// name (outside the `pid.` prefix the harness looks for) and renamed.
const SCRIPT: &str = r#"
pid_file="pid.$STINT_RUN_ID.$STINT_NODE_ID.$STINT_ATTEMPT"
echo $$ > "tmp.$pid_file" && mv "tmp.$pid_file" "$pid_file"
i=0
if [ -n "$STINT_CHECKPOINT" ]; then c=${STINT_CHECKPOINT#*:}; i=${c%\}}; fi
end=$((i + 30))
while [ "$i" -lt "$end" ]; do
  i=$((i + 1))
  echo "$STINT_NODE_ID $STINT_ATTEMPT $i" >> "sent.$STINT_RUN_ID.log"
  echo "{\"n\":$i}" >&3
  sleep 0.01
done
echo "{\"n\":$i}"
"#;

/// What the storm saw, printed at its end.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counts {
    /// `stint run`s started.
    pub iterations: usize,
    /// Runs SIGKILLed.
    pub kills: usize,
    /// Killed runs whose attempt recovery marked `ATTEMPT_ABANDONED`.
    pub abandoned: usize,
    /// Killed runs that had not begun an attempt.
    pub killed_before_begin: usize,
    /// Killed runs whose attempt had already finished.
    pub finished_before_kill: usize,
    /// Runs that finished on their own.
    pub finished: usize,
    /// Runs that lost their lease on a stalled machine (exit 3, attempt abandoned).
    pub lost_lease: usize,
    /// Attempts `stint recover` printed.
    pub recovered_by_command: usize,
}

/// How one `stint run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    Killed,
    Exited(Option<i32>),
}

struct Shared {
    /// Set when a lane panics, so the others stop instead of running out the budget.
    failed: AtomicBool,
    claimed: AtomicUsize,
    started: Instant,
    counts: Mutex<Counts>,
    recovered: Mutex<Vec<String>>,
}

/// Runs the storm on `w`'s database and checks it; returns the counts.
pub(crate) fn storm(w: &World, backend: &str) -> Counts {
    let shared = Shared {
        failed: AtomicBool::new(false),
        claimed: AtomicUsize::new(0),
        started: Instant::now(),
        counts: Mutex::new(Counts::default()),
        recovered: Mutex::new(Vec::new()),
    };
    std::thread::scope(|scope| {
        let lanes: Vec<_> = (0..LANES)
            .map(|lane| {
                let shared = &shared;
                scope.spawn(move || Lane::new(w, lane).run(shared))
            })
            .collect();
        for lane in lanes {
            if let Err(panic) = lane.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let counts = *shared.counts.lock().expect("counts");
    let recovered = shared.recovered.into_inner().expect("recovered");
    let unique: HashSet<&String> = recovered.iter().collect();
    assert_eq!(
        unique.len(),
        recovered.len(),
        "an attempt was recovered twice: {recovered:?}"
    );
    let counts = Counts {
        recovered_by_command: recovered.len(),
        ..counts
    };
    print_counts(backend, &counts, shared.started.elapsed());
    assert!(
        counts.iterations >= MIN_ITERATIONS,
        "only {} storm iterations ran within {BUDGET:?}",
        counts.iterations
    );
    assert!(counts.abandoned > 0, "no kill left an attempt to recover");
    counts
}

/// The storm's report, on stderr (`--nocapture` shows it).
#[allow(clippy::print_stderr, reason = "the storm's counts are its report")]
fn print_counts(backend: &str, counts: &Counts, took: Duration) {
    eprintln!(
        "storm [{backend}]: {} iterations in {:.1} s ({LANES} lanes, lease {LEASE}): {} kills \
         ({} abandoned, {} killed before begin, {} finished before the kill), {} finished on \
         their own, {} lost their lease; stint recover marked {}",
        counts.iterations,
        took.as_secs_f64(),
        counts.kills,
        counts.abandoned,
        counts.killed_before_begin,
        counts.finished_before_kill,
        counts.finished,
        counts.lost_lease,
        counts.recovered_by_command,
    );
}

/// One lane: its run, its current node, what it expects the database to hold.
struct Lane<'w> {
    w: &'w World,
    run: String,
    segment: usize,
    /// Attempts (node, attempt) that must be `ATTEMPT_ABANDONED`, and no other.
    abandoned: HashSet<(String, u64)>,
    /// Pid files already dealt with.
    reaped: HashSet<String>,
    /// The run's attempts as last checked.
    attempts: Vec<Value>,
    /// How long the last `stint run` took to start its command.
    startup: Duration,
}

impl<'w> Lane<'w> {
    fn new(w: &'w World, lane: usize) -> Self {
        Self {
            w,
            run: format!("storm-{lane}"),
            segment: 0,
            abandoned: HashSet::new(),
            reaped: HashSet::new(),
            attempts: Vec::new(),
            startup: Duration::from_millis(100),
        }
    }

    /// Where the current `stint run` writes its stderr.
    fn stderr_path(&self) -> std::path::PathBuf {
        self.w.path(&format!("stint.{}.err", self.run))
    }

    fn node(&self) -> String {
        format!("n{}", self.segment)
    }

    fn run(mut self, shared: &Shared) {
        let _stop_others = StopOnPanic(&shared.failed);
        while !shared.failed.load(Ordering::SeqCst)
            && shared.started.elapsed() < BUDGET
            && shared.claimed.fetch_add(1, Ordering::SeqCst) < ITERATIONS
        {
            self.iteration(shared);
        }
    }

    fn iteration(&mut self, shared: &Shared) {
        let node = self.node();
        let before = node_attempts(&self.attempts, &node).len();
        let ending = self.run_and_maybe_kill(&node, before);
        let ended_ms = now_ms();
        self.reap_commands(ending);
        let (recovered, rounds) = settle(self.w, &self.run);
        shared
            .recovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(recovered);

        let attempts = self.w.attempts_if_any(&self.run);
        let mine = node_attempts(&attempts, &node);
        let new = &mine[before..];
        // Another lane's panic must not hide this lane's findings behind a poisoned lock.
        let mut counts = shared
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts.iterations += 1;
        if ending == Ending::Killed {
            counts.kills += 1;
        }
        match (ending, new) {
            (Ending::Killed, []) => counts.killed_before_begin += 1,
            (_, [attempt]) => {
                let number = attempt["attempt"].as_u64().expect("attempt number");
                match (ending, state_of(attempt)) {
                    (Ending::Killed, "ATTEMPT_ABANDONED") => counts.abandoned += 1,
                    (Ending::Exited(Some(3)), "ATTEMPT_ABANDONED") => counts.lost_lease += 1,
                    (Ending::Killed, "finished") => counts.finished_before_kill += 1,
                    (Ending::Exited(Some(0)), "finished") => counts.finished += 1,
                    (ending, state) => panic!(
                        "{}/{node}#{number}: {ending:?} left the attempt {state}: {attempt}; \
                         stint said: {}; ended at {ended_ms} ms, checked at {} ms; \
                         recover rounds: {rounds:?}; a last `stint recover` now: {}",
                        self.run,
                        std::fs::read_to_string(self.stderr_path()).unwrap_or_default(),
                        now_ms(),
                        recover_verbose(self.w),
                    ),
                }
                if state_of(attempt) == "ATTEMPT_ABANDONED" {
                    self.abandoned.insert((node.clone(), number));
                } else {
                    self.segment += 1;
                }
            }
            (ending, new) => panic!(
                "{}/{node}: {ending:?} added {} attempts: {new:?}; stint said: {}",
                self.run,
                new.len(),
                std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
            ),
        }
        drop(counts);
        self.attempts.clone_from(&attempts);
        let events = self.w.events_if_any(&self.run);
        let sent = read_sent(&self.w.path(&format!("sent.{}.log", self.run)));
        check_run(
            self.w,
            &self.run,
            &attempts,
            &events,
            &sent,
            &self.abandoned,
        );
    }

    /// Starts `stint run` of the lane's node and SIGKILLs it at a random instant, unless it
    /// exited first.
    fn run_and_maybe_kill(&mut self, node: &str, before: usize) -> Ending {
        let mut child = self
            .w
            .std_cmd()
            .args(["-q", "run", "--run-id", &self.run, "--node-id", node])
            .args(["--lease", LEASE, "--retries", "0", "--grace", "200ms"])
            .args(["--", "sh", "-c", SCRIPT])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.stderr_path()).expect("stderr file"))
            .spawn()
            .expect("spawn stint");
        let spawned = Instant::now();
        let mut rng = rand::rng();
        // One kill in four lands while stint starts (opening the store, recovering, beginning
        // the attempt, starting the command: as long as that took last time); the others while
        // the command runs, whatever the backend's start-up costs.
        let pid_file = self
            .w
            .path(&format!("pid.{}.{node}.{}", self.run, before + 1));
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut kill_at = None;
        if rng.random_ratio(1, 4) {
            let window = millis(self.startup) * 6 / 5;
            kill_at = Some(spawned + Duration::from_millis(rng.random_range(0..window)));
        }
        let mut started = false;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return Ending::Exited(status.code());
            }
            if !started && pid_file.exists() {
                started = true;
                self.startup = spawned.elapsed();
                kill_at = kill_at.or_else(|| {
                    let delay = rng.random_range(0..KILL_WINDOW_MS);
                    Some(Instant::now() + Duration::from_millis(delay))
                });
            }
            if kill_at.is_some_and(|at| Instant::now() >= at) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("SIGKILL stint");
        let status = child.wait().expect("reap stint");
        match status.code() {
            // It exited on its own just before the signal.
            Some(code) => Ending::Exited(Some(code)),
            None => Ending::Killed,
        }
    }

    /// Every command the lane started is gone soon after its stint (the kernel kills it when
    /// stint dies); whatever it started itself is killed with its group.
    fn reap_commands(&mut self, ending: Ending) {
        let prefix = format!("pid.{}.", self.run);
        let entries = std::fs::read_dir(self.w.dir.path()).expect("read the world dir");
        for entry in entries {
            let name = entry.expect("dir entry").file_name();
            let name = name.to_string_lossy().into_owned();
            if !name.starts_with(&prefix) || self.reaped.contains(&name) {
                continue;
            }
            let pid = read_pid(&self.w.path(&name));
            let deadline = Instant::now() + ORPHAN_LIMIT;
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let survived = alive(pid);
            // The leader's group may hold a `sleep` it started: gone in 10 ms, killed anyway.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            if survived {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            assert!(
                !survived,
                "the command {pid} ({name}) outlived its stint ({ending:?}) by {ORPHAN_LIMIT:?}"
            );
            self.reaped.insert(name);
        }
    }
}

/// Raises the flag when dropped by a panicking lane.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// The pid a command wrote. The script renames the file into place once written, so it is
/// never seen empty or partial: anything else is a broken script, not a race to wait out.
fn read_pid(path: &Path) -> i32 {
    let content = std::fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("{} cannot be read: {error}", path.display()));
    content
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{} holds no pid: {content:?}", path.display()))
}

/// Sleeps until every in-progress attempt of `run` has an expired lease.
fn wait_until_leases_expire(w: &World, run: &str) {
    let latest = w
        .attempts_if_any(run)
        .iter()
        .filter(|a| a["state"] == "in-progress" || a["state"] == "in_progress")
        .filter_map(|a| a["lease_expires_at_ms"].as_u64())
        .max();
    if let Some(expires) = latest {
        let now = now_ms();
        // A little past the expiry: recovery compares with its own clock reading.
        std::thread::sleep(Duration::from_millis(expires.saturating_sub(now) + 30));
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("ms fit")
}

/// `stint recover`; returns the attempts it printed.
pub(crate) fn recover(w: &World) -> Vec<String> {
    let output = w.stint(&["recover"]);
    assert_eq!(
        output.status.code(),
        Some(0),
        "recover failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout).lines().map(str::to_owned).collect()
}

/// `stint recover` with debug logging: its whole stderr and stdout, for a failure's message.
fn recover_verbose(w: &World) -> String {
    let output = w
        .cmd()
        .env("RUST_LOG", "debug")
        .args(["recover"])
        .output()
        .expect("stint recover");
    format!(
        "exit {:?}, stdout {:?}, stderr {:?}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// `stint recover` until no attempt of `run` is left in progress (bounded); returns what it
/// printed. On PostgreSQL a recoverer skips the attempts another one holds locked (`SKIP
/// LOCKED`: another lane's `stint run` recovering on open), so it may return before that other
/// recoverer committed; the attempts are settled once it has.
///
/// Also returns, for each round, when it started (ms since the epoch) and what it printed, so a
/// failure can show what recovery saw.
/// Waits for the run's leases to expire and recovers until nothing is in progress; again, up to
/// three times, when an attempt in progress shows up only afterwards. A kill that lands in a
/// begin's commit after SQLite wrote its WAL frames but before it updated the WAL index leaves
/// a commit that readers see only once SQLite rebuilds the index (when a connection opens the
/// file with no other process holding it, e.g. after the killed run's last process is gone).
fn settle(w: &World, run: &str) -> (Vec<String>, Vec<(u64, usize)>) {
    let (mut printed, mut rounds) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        wait_until_leases_expire(w, run);
        let (lines, more) = recover_until_settled(w, run);
        printed.extend(lines);
        rounds.extend(more);
        std::thread::sleep(Duration::from_millis(100));
        let late = w
            .attempts_if_any(run)
            .iter()
            .any(|a| a["state"] == "in-progress");
        if !late {
            break;
        }
    }
    (printed, rounds)
}

fn recover_until_settled(w: &World, run: &str) -> (Vec<String>, Vec<(u64, usize)>) {
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut printed = Vec::new();
    let mut rounds = Vec::new();
    loop {
        let at = now_ms();
        let lines = recover(w);
        rounds.push((at, lines.len()));
        printed.extend(lines);
        let settled = !w
            .attempts_if_any(run)
            .iter()
            .any(|a| a["state"] == "in-progress");
        if settled || Instant::now() >= deadline {
            return (printed, rounds);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `attempts` of node `node`, in attempt order.
fn node_attempts<'a>(attempts: &'a [Value], node: &str) -> Vec<&'a Value> {
    let mut mine: Vec<&Value> = attempts.iter().filter(|a| a["node_id"] == node).collect();
    mine.sort_by_key(|a| a["attempt"].as_u64());
    mine
}

/// `finished`, `cancelled`, `in-progress`, or the error code of a failed attempt.
fn state_of(attempt: &Value) -> &str {
    match attempt["state"].as_str() {
        Some("failed") => attempt["error"]["code"].as_str().unwrap_or("failed"),
        Some(state) => state,
        None => "?",
    }
}

/// What each (node, attempt) sent, in order.
type Sent = HashMap<(String, u64), Vec<u64>>;

fn read_sent(path: &Path) -> Sent {
    let mut sent = Sent::new();
    let Ok(content) = std::fs::read_to_string(path) else {
        return sent;
    };
    for line in content.lines() {
        let mut fields = line.split_whitespace();
        let (Some(node), Some(attempt), Some(n), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            // A command killed mid-write may leave a partial last line.
            continue;
        };
        let (Ok(attempt), Ok(n)) = (attempt.parse(), n.parse()) else {
            continue;
        };
        sent.entry((node.to_owned(), attempt)).or_default().push(n);
    }
    sent
}

/// Checks everything the database holds about `run` after recovery.
pub(crate) fn check_run(
    w: &World,
    run: &str,
    attempts: &[Value],
    events: &[Value],
    sent: &Sent,
    abandoned: &HashSet<(String, u64)>,
) {
    let mut nodes: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for attempt in attempts {
        assert_eq!(attempt["iteration"], 0, "{attempt}");
        let node = attempt["node_id"].as_str().expect("node id").to_owned();
        nodes.entry(node).or_default().push(attempt);
    }
    let mut last_states: Vec<String> = Vec::new();
    let mut seen_abandoned = HashSet::new();
    for (node, list) in &mut nodes {
        list.sort_by_key(|a| a["attempt"].as_u64());
        let numbers: Vec<u64> = list.iter().filter_map(|a| a["attempt"].as_u64()).collect();
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        assert_eq!(numbers, expected, "{run}/{node}: attempt numbers have gaps");
        let mut checkpoint: Option<u64> = None;
        for attempt in list.iter() {
            let number = attempt["attempt"].as_u64().expect("number");
            let key = (node.clone(), number);
            let state = attempt["state"].as_str().unwrap_or("");
            assert!(
                matches!(state, "finished" | "failed" | "cancelled"),
                "{run}/{node}#{number} is not terminal after recovery: {attempt}"
            );
            check_events(run, node, number, attempt, events);
            if state_of(attempt) == "ATTEMPT_ABANDONED" {
                assert_eq!(attempt["retryable"], true, "{attempt}");
                seen_abandoned.insert(key.clone());
            }
            let sent_here = sent.get(&key).map_or(&[][..], Vec::as_slice);
            // The command started right after the checkpoint it was handed.
            if let Some(first) = sent_here.first() {
                assert_eq!(
                    *first,
                    checkpoint.unwrap_or(0) + 1,
                    "{run}/{node}#{number} was not handed the last checkpoint {checkpoint:?}"
                );
            }
            if let Some(n) = recorded_n(attempt) {
                assert!(
                    sent_here.contains(&n),
                    "{run}/{node}#{number} recorded n={n}, which it never sent"
                );
                assert!(
                    checkpoint.is_none_or(|before| n >= before),
                    "{run}/{node}#{number}: the checkpoint went back from {checkpoint:?} to {n}"
                );
                checkpoint = Some(n);
            }
            if state == "finished" {
                // The last heartbeat is flushed before the terminal state is written.
                assert_eq!(
                    recorded_n(attempt),
                    sent_here.last().copied(),
                    "{run}/{node}#{number} finished without its last heartbeat"
                );
            }
        }
        let last = list.last().expect("a node has an attempt");
        last_states.push(last["state"].as_str().unwrap_or("").to_owned());
    }
    assert_eq!(
        &seen_abandoned, abandoned,
        "{run}: the ATTEMPT_ABANDONED attempts are not the killed ones"
    );
    check_node_states(w, run, &last_states, attempts);
}

/// The `n` of an attempt's recorded heartbeat.
fn recorded_n(attempt: &Value) -> Option<u64> {
    match &attempt["heartbeat"] {
        Value::Null => None,
        heartbeat => Some(
            heartbeat["n"]
                .as_u64()
                .unwrap_or_else(|| panic!("a heartbeat the command never sent: {heartbeat}")),
        ),
    }
}

/// One `NodeStarted` and exactly one terminal event, matching the attempt's state.
fn check_events(run: &str, node: &str, number: u64, attempt: &Value, events: &[Value]) {
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["node_id"] == node && e["attempt"] == number)
        .collect();
    let of = |kind: &str| mine.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(of("NodeStarted"), 1, "{run}/{node}#{number}: {mine:?}");
    let terminal: Vec<&&Value> = mine
        .iter()
        .filter(|e| {
            matches!(
                e["type"].as_str(),
                Some("NodeFinished" | "NodeFailed" | "NodeCancelled")
            )
        })
        .collect();
    assert_eq!(
        terminal.len(),
        1,
        "{run}/{node}#{number}: not one terminal event: {mine:?}"
    );
    let expected = match attempt["state"].as_str() {
        Some("finished") => "NodeFinished",
        Some("failed") => "NodeFailed",
        _ => "NodeCancelled",
    };
    assert_eq!(terminal[0]["type"], expected, "{run}/{node}#{number}");
    if expected == "NodeFailed" {
        assert_eq!(
            terminal[0]["error"]["code"], attempt["error"]["code"],
            "{run}/{node}#{number}"
        );
    }
}

/// The node rows agree with each node's last attempt (`stint runs` counts node rows).
fn check_node_states(w: &World, run: &str, last_states: &[String], attempts: &[Value]) {
    let output = w.stint(&["runs", "--json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let runs: Value = serde_json::from_slice(&output.stdout).expect("runs --json is JSON");
    let summary = runs
        .as_array()
        .and_then(|runs| runs.iter().find(|r| r["run_id"] == run));
    let Some(summary) = summary else {
        // Every run of the lane so far was killed before it began an attempt.
        assert!(last_states.is_empty(), "{run} is not listed: {runs}");
        return;
    };
    let count = |state: &str| last_states.iter().filter(|s| *s == state).count() as u64;
    // On a mismatch, everything needed to tell which node row disagrees with its attempts.
    let context =
        || format!("{summary}; last attempt states {last_states:?}; attempts {attempts:?}");
    assert_eq!(summary["nodes"], last_states.len() as u64, "{}", context());
    assert_eq!(summary["in_progress"], 0, "{}", context());
    assert_eq!(summary["finished"], count("finished"), "{}", context());
    assert_eq!(summary["failed"], count("failed"), "{}", context());
    assert_eq!(summary["cancelled"], count("cancelled"), "{}", context());
}
