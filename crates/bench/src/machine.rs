//! The document around the table: the machine (generically: CPU model, cores, memory, OS; never
//! a host name or a path), the date and how each row is measured.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::Settings;

fn first_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|line| line.starts_with(key))
        .and_then(|line| line.split_once([':', '=']))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
}

/// `CPU, N cores, M GiB, OS, Linux x.y`, from what `/proc` and `/etc/os-release` say.
pub(crate) fn describe() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = first_value(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = first_value(&meminfo, "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown memory".to_owned(),
            |kib| format!("{:.0} GiB RAM", kib / 1024.0 / 1024.0),
        );
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let os =
        first_value(&os_release, "PRETTY_NAME").unwrap_or_else(|| std::env::consts::OS.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| format!(", Linux {}", k.trim()))
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {memory}, {os}{kernel}")
}

/// The 5-minute load average, as `/proc/loadavg` gives it.
pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Today's date (UTC) as `YYYY-MM-DD`.
pub(crate) fn today() -> String {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

const METHOD: &str = "\
## How each row is measured

1. **Lifecycle.** One attempt of a trivial compute through `Engine::run_attempt` (begin, one
   `heartbeat.beat(..)`, finish with a small output, no output schema), each attempt on a fresh
   node. The engine flushes the heartbeat before it ends the attempt, so it issues three
   transactions: begin, heartbeat, end. The **same-SQL floor** issues exactly those statements
   and transactions directly through sqlx (texts copied from the adapters, and checked against
   the statements the adapter issues before each measurement), in the same process, on the
   store's own SQLite pool or on a PostgreSQL pool of the same size on the same schema, binding
   values prepared once. It measures stint's own Rust overhead on top of that SQL, not the
   database's limit. Stint and floor alternate window by window (each window 1 s; a fresh SQLite
   file per window). The ratio is of the medians; `paired` is the range of the per-repetition
   ratios, and the verdict is read from it: met when every pair reaches the target,
   inconclusive when the range crosses it. Two latency rows follow: one attempt of a compute
   that returns at once, timed around `run_attempt` (which returns once its end is committed),
   one after another on a fresh SQLite FULL file; and `stint run -- true` as a whole process
   (the `stint` binary beside `stint-bench`, built by `cargo xtask bench`), a node per run on
   one file, timed from spawn to exit, after one run that creates and migrates the file.
2. **Heartbeat call.** Each `beat` of a 1 KiB JSON object timed alone (the payload is cloned
   outside the timed region), in an attempt whose store sleeps 10 ms in every
   `record_heartbeat`; a 12 ms heartbeat timeout makes the throttle 9 ms, so a write is in
   flight for the whole loop. A call that waited on the store would take >= 10 ms.
3. **Watchdog.** Concurrent attempts with a 50 ms heartbeat timeout whose computes never beat
   (they wait for cancellation). Delay = recorded `TaskHeartbeatTimeout` timestamp minus
   (`started_at` + 50 ms), both as stored (whole ms): when the engine's watchdog found the
   attempt silent (the first attempt to wake, or to end, finds every attempt whose deadline
   passed); the stale rule itself counts *more than* 50 ms, so 1 ms is the floor. And, finer,
   the wall time (µs) at which the compute saw its cancellation minus the same deadline: when
   the attempt's own task acted on it, after the runtime ran the attempts queued before it
   (all 1,000 deadlines fall within a few ms, and each attempt's ending takes CPU).
4. **Memory.** A fresh child process starts the attempts through the engine on the memory
   store, each compute awaiting one shared token, and reads `VmRSS` before and once all are
   running; growth / count. A second child begins as many attempts in the memory store alone:
   the store's rows, which any backend must keep somewhere. The target (issue 18) applies to the
   engine's part: the growth minus the store's rows.
5. **Heartbeat throughput.** Coalescing on: one attempt beating `{\"step\": i}` as fast as it
   can for 1 s through the engine (default 500 ms throttle); heartbeats accepted per second and
   store writes per second actually issued. No call waits on the store, so this figure does not
   depend on the backend: it is measured once, on SQLite FULL (the slowest writes). Coalescing off: `record_heartbeat` through the
   store port in a loop on one attempt (every heartbeat is a write, on the memory store at most
   100,000 per window).
6. **Queue (issue 17), the peers' workload.** Each on a fresh store at its default durability:
   a SQLite file (`synchronous=FULL`) or a PostgreSQL schema (`synchronous_commit` on, pool of
   8). *Submit*: N no-op tasks, one `enqueue` call each (each task its own run). *Process*: then
   one `Worker` (`Handlers` with a no-op kind, `exit_when_empty`, default options otherwise) at
   concurrency 1 or 8; tasks/s = N / wall time of `Worker::run`, and the run fails unless all N
   ended finished. *Batch submit*: N tasks in one `enqueue` call. Full run: N = 2,000 and
   10,000, 3 repetitions (`--quick`: 200 and 1,000). Peers' figures, measured on this machine on
   2026-11-30 (issue 17): at concurrency 8, effectum 2,775 tasks/s on SQLite and
   apalis-postgres 3,155/s on PostgreSQL. *Idle pickup*: a running, idle worker; the time from
   just before one task's `enqueue` until the worker reports it ended finished
   (`WorkerObserver::ended`, called once the task's finished state is committed). Woken: the
   submitter calls `Worker::wake` after its `enqueue`, as one in the same process does; polled:
   the worker finds it at its next poll. Between pickups the worker idles one poll interval and a
   varying part of another. 30 pickups after one untimed (`--quick`: 10); nearest-rank p50 and
   p95. Peers: effectum 4.4 ms; apalis 7.8-10.8 ms (10 ms poll); awa 35-43 ms.
";

/// The whole `docs/benchmarks.md`.
pub(crate) fn document(settings: &Settings, table: &str) -> String {
    let mode = if settings.quick {
        "a `--quick` smoke run (3 repetitions, 0.2 s windows, smaller counts): not figures to quote"
    } else {
        "a full run"
    };
    format!(
        "# Benchmarks\n\n\
         Written by `cargo xtask bench` (`cargo run --release -p stint-bench -- --out \
         docs/benchmarks.md`), {mode}, on {date} (UTC).\n\n\
         Machine: {machine}. A shared machine running other work at the same time (5-minute \
         load average {load} when the table was written): figures are medians over {reps} \
         repetitions, with the spread (min..max) across them.\n\n\
         {table}\n{METHOD}",
        date = today(),
        machine = describe(),
        reps = settings.reps,
        load = load_average(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_gregorian() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
    }
}
