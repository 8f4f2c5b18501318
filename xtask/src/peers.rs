//! `cargo xtask bench --peers`: stint and its peers on the same queue workload, in one run on
//! one machine, written as the "Peers" section of `docs/benchmarks.md` (issue 18).
//!
//! The peers live in `bench/peers/`, outside the workspace and outside the normal build: one
//! package per Cargo graph that can hold them (effectum's rusqlite links an older
//! `libsqlite3-sys` than sqlx, so it has a package of its own; the sqlx 0.8 peers share the
//! other), each with its own lock file. This command builds them in release mode, runs every
//! peer as its own process with a time limit, runs stint's rows through `stint-bench
//! --peers-json`, and writes the table. A peer that does not build or run gets a row saying so.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;

use crate::bench::TABLE;

mod section;

/// The heading of the section this command owns in `docs/benchmarks.md`.
pub(crate) const HEADING: &str = "## Peers";

/// How long one peer (all its runs) may take before it is stopped.
const PEER_LIMIT: Duration = Duration::from_secs(20 * 60);

/// Jobs of the workload, concurrencies and timed pickups.
const JOBS: usize = 2_000;
const CONCURRENCY: [usize; 3] = [1, 8, 64];
const PICKUPS: usize = 30;

/// One peer: its `--peer` name, the package under `bench/peers/` whose binary runs it, and
/// its backend.
#[derive(Debug, Clone, Copy)]
struct Peer {
    name: &'static str,
    label: &'static str,
    package: &'static str,
    backend: &'static str,
}

const PEERS: [Peer; 5] = [
    Peer {
        name: "effectum",
        label: "effectum 0.7",
        package: "effectum",
        backend: "SQLite",
    },
    Peer {
        name: "apalis-sqlite",
        label: "apalis-sqlite 1.0",
        package: "sqlx",
        backend: "SQLite",
    },
    Peer {
        name: "apalis-postgres",
        label: "apalis-postgres 1.0",
        package: "sqlx",
        backend: "PostgreSQL",
    },
    Peer {
        name: "awa",
        label: "awa 0.6",
        package: "sqlx",
        backend: "PostgreSQL",
    },
    Peer {
        name: "underway",
        label: "underway 0.2",
        package: "sqlx",
        backend: "PostgreSQL",
    },
];

/// What one system (stint on a backend, or a peer) produced.
#[derive(Debug, Default)]
struct Results {
    /// Jobs/s by concurrency.
    rates: BTreeMap<usize, f64>,
    /// Submit rates (jobs/s) of the throughput runs.
    submits: Vec<f64>,
    /// CPU per job while processing, by concurrency: (this process, the rest of the machine)
    /// in ms.
    cpu: BTreeMap<usize, (f64, f64)>,
    /// (variant, p50, p95) of each pickup measurement.
    pickups: Vec<(String, f64, f64)>,
    /// Observed durability settings (distinct).
    durability: Vec<String>,
    /// Failures, as `what: error`.
    errors: Vec<String>,
}

impl Results {
    fn add(&mut self, line: &Value) {
        let text = |key: &str| line[key].as_str().unwrap_or_default().to_owned();
        let durability = text("durability");
        if !durability.is_empty() && !self.durability.contains(&durability) {
            self.durability.push(durability);
        }
        match line["kind"].as_str() {
            Some("throughput") => {
                if let (Some(c), Some(rate)) =
                    (line["concurrency"].as_u64(), line["jobs_per_s"].as_f64())
                {
                    self.rates.insert(usize::try_from(c).unwrap_or(0), rate);
                }
                let cpu = &line["cpu_ms_per_job"];
                if let (Some(c), Some(process), Some(rest)) = (
                    line["concurrency"].as_u64(),
                    cpu["process"].as_f64(),
                    cpu["rest_of_machine"].as_f64(),
                ) {
                    self.cpu
                        .insert(usize::try_from(c).unwrap_or(0), (process, rest));
                }
                if let Some(submit) = line["submit_jobs_per_s"].as_f64() {
                    self.submits.push(submit);
                }
            }
            Some("pickup") => {
                if let (Some(p50), Some(p95)) = (line["p50_ms"].as_f64(), line["p95_ms"].as_f64()) {
                    self.pickups.push((text("variant"), p50, p95));
                }
            }
            _ => self
                .errors
                .push(format!("{}: {}", text("what"), first_line(&text("error")))),
        }
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    let mut short: String = line.chars().take(200).collect();
    if line.chars().count() > 200 {
        short.push('…');
    }
    short
}

/// The target folder of the peer packages: `<workspace target>/peers`.
fn peers_target(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("peers")
}

/// Builds `bench/peers/<package>` in release mode; `Err` carries why it did not build.
fn build(root: &Path, package: &str) -> Result<PathBuf, String> {
    let manifest = root.join("bench/peers").join(package).join("Cargo.toml");
    let target = peers_target(root);
    eprintln!("peers: building bench/peers/{package} (release)");
    let output = Command::new("cargo")
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cargo did not start: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .find(|l| l.starts_with("error"))
            .unwrap_or("cargo build failed");
        eprint!("{stderr}");
        return Err(first_line(reason));
    }
    Ok(target
        .join("release")
        .join(format!("stint-peers-{package}")))
}

/// Runs `command`, collecting stdout, stopping it after `limit`. Returns stdout and whether it
/// was stopped.
fn run_limited(mut command: Command, limit: Duration) -> Result<(String, bool)> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a benchmark process")?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let start = Instant::now();
    let mut stopped = false;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if start.elapsed() > limit {
            // Only this child, which this command started.
            let _ = child.kill();
            let _ = child.wait();
            stopped = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let text = reader.join().unwrap_or_default();
    Ok((text, stopped))
}

fn parse_into(results: &mut BTreeMap<String, Results>, key: &str, text: &str) {
    for line in text.lines().filter(|l| l.starts_with('{')) {
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            results.entry(key.to_owned()).or_default().add(&value);
        }
    }
}

/// stint's rows, built and run by the workspace's own cargo.
fn run_stint(root: &Path, results: &mut BTreeMap<String, Results>) -> Result<()> {
    let status = Command::new("cargo")
        .args(["build", "--release", "-p", "stint-bench"])
        .current_dir(root)
        .status()
        .context("building stint-bench")?;
    anyhow::ensure!(status.success(), "stint-bench did not build");
    let mut stint = Command::new("cargo");
    stint
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "stint-bench",
            "--",
            "--peers-json",
        ])
        .current_dir(root);
    eprintln!("peers: stint (stint-bench --peers-json)");
    let (text, stopped) = run_limited(stint, 2 * PEER_LIMIT)?;
    for line in text.lines().filter(|l| l.starts_with('{')) {
        if let Ok(value) = serde_json::from_str::<Value>(line) {
            let backend = value["backend"].as_str().unwrap_or("?").to_owned();
            results
                .entry(format!("stint {backend}"))
                .or_default()
                .add(&value);
        }
    }
    if stopped {
        results
            .entry("stint".to_owned())
            .or_default()
            .errors
            .push(format!("stopped after {} s", 2 * PEER_LIMIT.as_secs()));
    }
    Ok(())
}

/// Runs one peer's binary and adds what it printed to `results`.
fn run_peer(peer: &Peer, binary: &Path, results: &mut BTreeMap<String, Results>) -> Result<()> {
    eprintln!("peers: {}", peer.label);
    let mut command = Command::new(binary);
    command.current_dir(std::env::temp_dir()).args([
        "--peer",
        peer.name,
        "--jobs",
        &JOBS.to_string(),
        "--concurrency",
        &CONCURRENCY.map(|c| c.to_string()).join(","),
        "--pickups",
        &if peer.name.starts_with("apalis") {
            0
        } else {
            PICKUPS
        }
        .to_string(),
    ]);
    let (text, stopped) = run_limited(command, PEER_LIMIT)?;
    parse_into(results, peer.label, &text);
    if stopped {
        results
            .entry(peer.label.to_owned())
            .or_default()
            .errors
            .push(format!(
                "stopped after {} s (the rows it finished are shown)",
                PEER_LIMIT.as_secs()
            ));
    }
    Ok(())
}

/// Runs everything and writes the section.
pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    let mut results: BTreeMap<String, Results> = BTreeMap::new();
    let mut binaries: BTreeMap<&str, Result<PathBuf, String>> = BTreeMap::new();
    for peer in PEERS {
        binaries
            .entry(peer.package)
            .or_insert_with(|| build(root, peer.package));
    }
    run_stint(root, &mut results)?;
    for peer in PEERS {
        match binaries.get(peer.package) {
            Some(Ok(binary)) => run_peer(&peer, binary, &mut results)?,
            Some(Err(reason)) => results
                .entry(peer.label.to_owned())
                .or_default()
                .errors
                .push(format!("did not build: {reason}")),
            None => {}
        }
    }
    let section = section::section(&results, started.elapsed());
    let path = root.join(TABLE);
    let document = std::fs::read_to_string(&path).unwrap_or_default();
    std::fs::write(&path, splice(&document, &section))
        .with_context(|| format!("writing {TABLE}"))?;
    print!("{section}");
    println!("peers: section written to {TABLE}");
    Ok(())
}

/// `document` with its Peers section replaced by `section` (or `section` inserted before the
/// "How each row is measured" heading, or appended).
pub(crate) fn splice(document: &str, section: &str) -> String {
    let section = format!("{}\n", section.trim_end());
    if let Some(start) = document.find(&format!("\n{HEADING}\n")) {
        let start = start + 1;
        let rest = &document[start + HEADING.len()..];
        let end = rest
            .find("\n## ")
            .map_or(document.len(), |i| start + HEADING.len() + i + 1);
        return format!("{}{section}\n{}", &document[..start], &document[end..])
            .trim_end()
            .to_owned()
            + "\n";
    }
    match document.find("\n## How each row is measured") {
        Some(at) => format!("{}{section}{}", &document[..=at], &document[at..]),
        None if document.is_empty() => section,
        None => format!("{}\n\n{section}", document.trim_end()),
    }
}

/// The Peers section of `document`, if it has one (kept by a full `cargo xtask bench`).
pub(crate) fn existing(document: &str) -> Option<String> {
    let start = document.find(&format!("\n{HEADING}\n"))? + 1;
    let rest = &document[start + HEADING.len()..];
    let end = rest
        .find("\n## ")
        .map_or(document.len(), |i| start + HEADING.len() + i + 1);
    Some(document[start..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_is_replaced_in_place_or_inserted_before_the_method() {
        let doc = "# B\n\ntable\n\n## How each row is measured\n\n1. x\n";
        let once = splice(doc, "## Peers\n\nfirst\n");
        assert!(once.contains("table\n\n## Peers\n\nfirst\n\n## How each row"));
        let twice = splice(&once, "## Peers\n\nsecond\n");
        assert!(!twice.contains("first"));
        assert!(twice.contains("## Peers\n\nsecond\n\n## How each row is measured"));
        assert_eq!(existing(&twice).as_deref(), Some("## Peers\n\nsecond\n\n"));
        assert_eq!(existing(doc), None);
    }
}
