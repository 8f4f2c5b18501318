//! Real faults against the real `stint` binary: a network partition between stint and
//! PostgreSQL (a TCP proxy that stops moving bytes), and a second process holding SQLite's write
//! lock. Each test asserts, from the database and from the command's own log, that a node never
//! has two live commands at once and that a result stint produced is never lost.

mod common;
#[path = "faults/proxy.rs"]
mod proxy;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use common::{World, text, wait_for_file, wait_with_limit};
use proxy::Proxy;
use serde_json::json;
use stint_adapters_postgres::test_support;

/// A duration in `range` (ms) chosen by `STINT_CHAOS_SEED` (`cargo xtask chaos` sets it, a new
/// seed each iteration), or `default` when it is unset, as in CI.
fn chaos_ms(salt: u64, range: std::ops::Range<u64>, default: u64) -> Duration {
    let Some(seed) = std::env::var("STINT_CHAOS_SEED")
        .ok()
        .and_then(|seed| seed.parse::<u64>().ok())
    else {
        return Duration::from_millis(default);
    };
    // splitmix64: a well-spread value from the seed and the salt.
    let mut x = seed.wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    Duration::from_millis(range.start + x % (range.end - range.start).max(1))
}

/// The command: attempt 1 ticks into `log` every 50 ms until it is killed; a later attempt
/// ticks once and prints its output. Each tick is `ATTEMPT NANOSECONDS`.
const TICKER: &str = r#"
if [ "$STINT_ATTEMPT" = 1 ]; then
  while :; do echo "1 $(date +%s%N)" >> log; sleep 0.05; done
else
  echo "$STINT_ATTEMPT $(date +%s%N)" >> log; echo '{"ok":true}'
fi"#;

/// The ticks of `attempt` in the log, in nanoseconds since the epoch.
fn ticks(log: &Path, attempt: u32) -> Vec<u128> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(number, _)| number.parse() == Ok(attempt))
        .filter_map(|(_, at)| at.parse().ok())
        .collect()
}

/// `url` with its `host:port` replaced by `addr`, and the address it named.
fn through(url: &str, addr: SocketAddr) -> (String, SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, host) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host),
        None => (String::new(), authority),
    };
    let host = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:5432")
    };
    let upstream = host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .expect("the server's address resolves");
    (format!("{scheme}://{user}{addr}{tail}"), upstream)
}

#[test]
fn a_partitioned_runner_fences_itself_and_the_node_never_runs_twice_at_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some((store, guard)) = runtime.block_on(test_support::fresh_schema()) else {
        return;
    };
    runtime.block_on(store.close());
    let direct = guard.url();
    let (_, upstream) = through(&direct, "127.0.0.1:1".parse().expect("addr"));
    let proxy = Proxy::start(upstream);
    let (proxied, _) = through(&direct, proxy.addr);
    let w = World::with_db(proxied);
    let log = w.path("log");

    let mut partitioned = w.std_cmd();
    partitioned
        .args(["run", "--run-id", "p", "--node-id", "n", "--lease", "2s"])
        .args(["--", "sh", "-c", TICKER])
        .stderr(std::process::Stdio::piped());
    let mut partitioned = partitioned.spawn().expect("stint starts");
    wait_for_file(&log);
    // The partition falls anywhere in the lease's cycle of renewals.
    std::thread::sleep(chaos_ms(1, 100..2_000, 800));
    proxy.pause();
    let paused_at = Instant::now();

    // Its renewals hang: within two thirds of the lease after the last one that succeeded it kills its
    // command and exits, writing nothing.
    let status = wait_with_limit(&mut partitioned, Duration::from_secs(20));
    let stopped_after = paused_at.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(partitioned.stderr.as_mut().expect("piped"), &mut stderr)
        .expect("stderr");
    assert_eq!(status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("left to recovery"), "{stderr}");
    assert!(
        stopped_after < Duration::from_secs(2),
        "fenced {stopped_after:?} after the partition, not before the 2 s lease ran out"
    );
    let last_tick_of_first = *ticks(&log, 1).last().expect("attempt 1 ticked");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        ticks(&log, 1).last(),
        Some(&last_tick_of_first),
        "the partitioned command was killed with its runner"
    );

    // Once the lease has run out, a runner on another route recovers the attempt and runs the
    // node again, after the first command stopped.
    std::thread::sleep(Duration::from_millis(2_500).saturating_sub(paused_at.elapsed()));
    let healthy = World::with_db(direct);
    let again = healthy
        .cmd()
        .current_dir(w.dir.path())
        .args(["run", "--run-id", "p", "--node-id", "n", "--lease", "2s"])
        .args(["--", "sh", "-c", TICKER])
        .output()
        .expect("stint runs");
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let first_tick_of_second = ticks(&log, 2)[0];
    assert!(
        first_tick_of_second > last_tick_of_first,
        "attempt 2 started while attempt 1's command still ran"
    );
    let attempts = healthy.attempts("p");
    let states: Vec<(u64, &str, &str)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap_or(0),
                a["state"].as_str().unwrap_or(""),
                a["error"]["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![(1, "failed", "ATTEMPT_ABANDONED"), (2, "finished", "")]
    );
    proxy.resume();
    runtime.block_on(guard.drop_schema());
}

/// Holds SQLite's write lock on `db` from this (second) process for `hold`.
fn hold_write_lock(db: &Path, hold: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        tokio::time::sleep(hold).await;
        sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("release");
    });
}

/// Runs `script` as node `n` of run `r` and, once it created the file `locked-now`, holds the
/// database's write lock for `hold`. Returns stint's exit code and stderr.
fn run_against_a_held_lock(w: &World, script: &str, hold: Duration) -> (Option<i32>, String) {
    // The database exists before the lock is taken.
    let setup = w.run("setup", "n", &[], "echo '{}'");
    assert!(setup.status.success(), "{}", text(&setup.stderr));
    let mut stint = w.std_cmd();
    stint
        .args(["run", "--run-id", "r", "--node-id", "n", "--lease", "60s"])
        .args(["--", "sh", "-c", script])
        .stderr(std::process::Stdio::piped());
    let mut stint = stint.spawn().expect("stint starts");
    wait_for_file(&w.path("locked-now"));
    hold_write_lock(&w.path("state/stint.db"), hold);
    let status = wait_with_limit(&mut stint, Duration::from_secs(40));
    let mut stderr = String::new();
    std::io::Read::read_to_string(stint.stderr.as_mut().expect("piped"), &mut stderr)
        .expect("stderr");
    (status.code(), stderr)
}

#[test]
fn a_result_that_meets_a_locked_database_is_retried_and_kept() {
    let w = World::sqlite();
    // The command finishes one second into a lock of 7 s (5.5 to 9 s under `cargo xtask
    // chaos`): longer than SQLite's 5 s busy timeout.
    let script = r#"echo now > locked-now; sleep 1; echo '{"result":42}'"#;
    let hold = chaos_ms(2, 5_500..9_000, 7_000);
    let (code, stderr) = run_against_a_held_lock(&w, script, hold);
    assert_eq!(code, Some(0), "{stderr}");
    let attempts = w.attempts("r");
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(attempts[0]["state"], "finished");
    let output = w
        .cmd()
        .args(["output", "r", "n"])
        .output()
        .expect("stint runs");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&output.stdout).ok(),
        Some(json!({"result": 42})),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_checkpoint_sent_while_the_database_is_locked_is_kept() {
    let w = World::sqlite();
    // Step 1 is written; step 2 arrives while the lock is held for 6 s (past the busy timeout).
    let script = r#"echo '{"step":1}' >&3; sleep 0.7; echo now > locked-now; sleep 0.3
        echo '{"step":2}' >&3; sleep 0.5; echo '{}'"#;
    let hold = chaos_ms(3, 5_500..9_000, 6_000);
    let (code, stderr) = run_against_a_held_lock(&w, script, hold);
    assert_eq!(code, Some(0), "{stderr}");
    let attempts = w.attempts("r");
    assert_eq!(attempts[0]["heartbeat"], json!({"step": 2}), "{attempts:?}");
}
