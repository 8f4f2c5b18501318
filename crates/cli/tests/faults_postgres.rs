//! A network partition between the real `stint` binary and PostgreSQL: a TCP proxy that stops
//! moving bytes. Asserted from the database and from the command's own log: a node never has two
//! live commands at once, and the partitioned runner writes nothing recovery could contradict.
//!
//! No libtest harness here (`harness = false`): `main` lists the tests, reported ignored with the
//! reason when nothing listens at the server's address, unless `STINT_REQUIRE_POSTGRES=1`.

#[path = "faults/chaos.rs"]
mod chaos;
mod common;
#[path = "faults/proxy.rs"]
mod proxy;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::{Duration, Instant};

use chaos::chaos_ms;
use common::{World, assert_exit, wait_for_file, wait_with_limit};
use proxy::Proxy;
use stint_adapters_postgres::test_support;

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

fn a_partitioned_runner_fences_itself_and_the_node_never_runs_twice_at_once() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (store, guard) = runtime.block_on(test_support::fresh_schema());
    runtime.block_on(store.close());
    let direct = guard.url();
    let (_, upstream) = through(&direct, "127.0.0.1:1".parse().expect("addr"));
    let proxy = Proxy::start(upstream);
    let (proxied, _) = through(&direct, proxy.addr);
    let w = World::with_db(proxied);
    let log = w.path("log");

    let mut partitioned = w.run_cmd("p", "n", &["--lease", "2s"], TICKER);
    let mut partitioned = partitioned
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("stint starts");
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
    assert_exit(&again, 0);
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

fn main() -> std::process::ExitCode {
    test_support::run_tests(vec![named_test!(
        a_partitioned_runner_fences_itself_and_the_node_never_runs_twice_at_once
    )])
}
