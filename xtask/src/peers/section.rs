//! The Peers section of `docs/benchmarks.md`: the rows, the durability each system reported,
//! and the same-run ratios.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use super::{HEADING, JOBS, PEERS, PICKUPS, Results};

fn rate(value: f64) -> String {
    if value >= 100.0 {
        let whole = value.round() as u64;
        let digits = whole.to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        format!("{value:.1}")
    }
}

fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn machine() -> String {
    let field = |text: &str, key: &str| {
        text.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once([':', '=']))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
    };
    let cpu = field(&read("/proc/cpuinfo"), "model name").unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let memory = field(&read("/proc/meminfo"), "MemTotal")
        .and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or_else(
            || "unknown memory".into(),
            |kib| format!("{:.0} GiB RAM", kib / 1024.0 / 1024.0),
        );
    let os = field(&read("/etc/os-release"), "PRETTY_NAME").unwrap_or_else(|| "Linux".into());
    format!("{cpu}, {cores} cores, {memory}, {os}")
}

fn today() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "unknown date".into())
}

fn load() -> String {
    read("/proc/loadavg")
        .split_whitespace()
        .nth(1)
        .unwrap_or("unknown")
        .to_owned()
}

/// The systems in table order: stint on each backend, then its peers on that backend.
fn order() -> Vec<(String, &'static str)> {
    let mut rows = Vec::new();
    for backend in ["SQLite", "PostgreSQL"] {
        rows.push((format!("stint {backend}"), backend));
        for peer in PEERS.iter().filter(|p| p.backend == backend) {
            rows.push((peer.label.to_owned(), backend));
        }
    }
    rows
}

fn pickup_cell(results: &Results) -> String {
    results
        .pickups
        .iter()
        .map(|(variant, p50, p95)| {
            let variant = if variant.is_empty() {
                String::new()
            } else {
                format!(" ({variant})")
            };
            format!("{p50:.1} / {p95:.1} ms{variant}")
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The section: the rows, the durability observed, and the same-run ratios.
pub(super) fn section(results: &BTreeMap<String, Results>, took: Duration) -> String {
    let mut out = intro(took);
    rows(&mut out, results);
    ratios(&mut out, results);
    cpu(&mut out, results);
    out.push_str(FOOTER);
    out
}

/// The heading, how and where it was measured, and the rows' table head.
fn intro(took: Duration) -> String {
    format!(
        "{HEADING}\n\n\
         Written by `cargo xtask bench --peers` on {date} (UTC), in {minutes:.0} minutes: stint and \
         each peer measured in the same run, on the same machine, one after the other. \
         Machine: {machine}; a shared machine running other work at the same time (5-minute \
         load average {load} when the section was written), so figures move from run to run: \
         compare within this table, not with the one above. One run per figure.\n\n\
         Workload (issue 18): {JOBS} no-op jobs enqueued one call each (*submit*), then one \
         worker at concurrency 1, 8 and 64 until the system's own store says all {JOBS} are \
         done (a fresh store per run: a SQLite file in a temporary folder, or a fresh \
         PostgreSQL database per peer run, a fresh schema for stint); *idle pickup*: one job \
         enqueued to an idle worker every 100-200 ms, timed until its completion is visible in \
         the store ({PICKUPS} pickups after one untimed; p50 / p95). Every system runs at its \
         own defaults; the durability column is what its connections reported at run time.\n\n\
         | system | backend | submit, jobs/s | conc 1, jobs/s | conc 8, jobs/s | conc 64, jobs/s \
         | idle pickup p50 / p95 | durability (observed at run time) |\n\
         |---|---|---|---|---|---|---|---|\n",
        date = today(),
        minutes = took.as_secs_f64() / 60.0,
        machine = machine(),
        load = load(),
    )
}

/// A system's name as its row shows it: stint's in bold.
fn shown(name: &str) -> String {
    if name.starts_with("stint") {
        "**stint**".to_owned()
    } else {
        name.to_owned()
    }
}

/// One row per system: its rates, pickup and the durability it reported.
fn rows(out: &mut String, results: &BTreeMap<String, Results>) {
    let empty = Results::default();
    for (name, backend) in order() {
        let r = results.get(&name).unwrap_or(&empty);
        let cell = |c: usize| r.rates.get(&c).map_or_else(|| "—".to_owned(), |v| rate(*v));
        let submit = median(&r.submits).map_or_else(|| "—".to_owned(), rate);
        let mut durability = r.durability.join("; ");
        if !r.errors.is_empty() {
            if !durability.is_empty() {
                durability.push_str("; ");
            }
            durability.push_str(&format!("**{}**", r.errors.join("; ")));
        }
        out.push_str(&format!(
            "| {} | {backend} | {submit} | {} | {} | {} | {} | {} |\n",
            shown(&name),
            cell(1),
            cell(8),
            cell(64),
            pickup_cell(r),
            durability.replace('|', "/"),
        ));
    }
}

/// The same-run ratios, stint / peer.
fn ratios(out: &mut String, results: &BTreeMap<String, Results>) {
    let empty = Results::default();
    out.push_str(
        "\nSame-run ratios, stint / peer on the same backend: jobs/s (> 1: stint faster) and idle \
         pickup p50 (< 1: stint faster; stint's polled figure, the default with nothing calling \
         `Worker::wake`, and in brackets woken).\n\n\
         | peer | backend | conc 1 | conc 8 | conc 64 | pickup p50 |\n|---|---|---|---|---|---|\n",
    );
    for peer in PEERS {
        let p = results.get(peer.label).unwrap_or(&empty);
        let s = results
            .get(&format!("stint {}", peer.backend))
            .unwrap_or(&empty);
        let ratio = |c: usize| match (s.rates.get(&c), p.rates.get(&c)) {
            (Some(a), Some(b)) if *b > 0.0 => format!("{:.2}", a / b),
            _ => "—".to_owned(),
        };
        let p50 = |variant: &str| {
            s.pickups
                .iter()
                .find(|(v, _, _)| v.starts_with(variant))
                .map(|(_, p50, _)| *p50)
        };
        let pickup = match (p.pickups.first(), p50("polled"), p50("woken")) {
            (Some((_, peer_p50, _)), Some(polled), woken) if *peer_p50 > 0.0 => {
                let woken = woken.map_or_else(String::new, |w| format!(" ({:.2})", w / peer_p50));
                format!("{:.2}{woken}", polled / peer_p50)
            }
            _ => "—".to_owned(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {pickup} |\n",
            peer.label,
            peer.backend,
            ratio(1),
            ratio(8),
            ratio(64),
        ));
    }
}

/// CPU per job while processing, where it could be read: what bounds the rate on a small machine.
fn cpu(out: &mut String, results: &BTreeMap<String, Results>) {
    out.push_str(
        "\nCPU per job while processing, in ms: the benchmark's own process (the client, and \
         the store itself on SQLite) + the rest of the machine (the PostgreSQL server, and \
         whatever else ran meanwhile), from `/proc`. On a machine with few cores the sum \
         bounds the rate.\n\n\
         | system | backend | conc 1 | conc 8 | conc 64 |\n|---|---|---|---|---|\n",
    );
    let empty = Results::default();
    for (name, backend) in order() {
        let r = results.get(&name).unwrap_or(&empty);
        let cell = |c: usize| {
            r.cpu.get(&c).map_or_else(
                || "—".to_owned(),
                |(process, rest)| format!("{process:.2} + {rest:.2}"),
            )
        };
        out.push_str(&format!(
            "| {} | {backend} | {} | {} | {} |\n",
            shown(&name),
            cell(1),
            cell(8),
            cell(64)
        ));
    }
}

/// Why apalis has no pickup figure, and how the peers are built and timed.
const FOOTER: &str = "\napalis's idle pickup is not measured by this command: in trial runs on this machine \
         (2026-11-30) an idle job's completion became visible in apalis-sqlite's store only \
         after about 30 s at the defaults (p50 29.9 s over 3 pickups; the same on \
         apalis-postgres), and still after more than 30 s with `batch_size(1)` and a 10 ms \
         poll; 30 such pickups per peer would take 15 minutes. Not investigated further.\n\
         \nHow: `bench/peers/` holds the peers, outside the workspace and the normal build \
         (effectum's rusqlite links an older `libsqlite3-sys` than sqlx, so effectum has a \
         package of its own; apalis (on sqlx 0.9), awa and underway (on sqlx 0.8) share the \
         other; each has its own `Cargo.lock`). Each handler bumps a counter; once all handlers ran, the bench asks the \
         peer's own store (effectum `num_active_jobs`, apalis `status = 'Done'`, awa \
         `admin::state_counts`, underway `state = 'succeeded'`) every 1 ms until all are done, \
         so a run ends when its last completion is committed. stint's rows come from \
         `stint-bench --peers-json`, the same code as benchmark 6 above (its worker returns once \
         the queue is empty and every task's finish is committed).\n";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::{Results, cpu, rate};

    #[test]
    fn each_system_shows_its_cpu_per_job_by_concurrency() {
        let mut stint = Results::default();
        stint.add(&json!({
            "kind": "throughput", "concurrency": 8, "jobs_per_s": 1340.0,
            "cpu_ms_per_job": { "process": 0.224, "rest_of_machine": 0.891 },
        }));
        stint.add(
            &json!({ "kind": "throughput", "concurrency": 1, "jobs_per_s": 500.0,
                           "cpu_ms_per_job": null }),
        );
        let results = BTreeMap::from([("stint PostgreSQL".to_owned(), stint)]);
        let mut out = String::new();
        cpu(&mut out, &results);
        assert!(
            out.contains("| **stint** | PostgreSQL | — | 0.22 + 0.89 | — |"),
            "{out}"
        );
    }

    #[test]
    fn rates_have_thousands_separators() {
        assert_eq!(rate(2_775.4), "2,775");
        assert_eq!(rate(612.0), "612");
        assert_eq!(rate(42.25), "42.2");
    }
}
