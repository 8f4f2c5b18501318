//! `cargo xtask chaos`: the fault-injection and crash suites of the `stint` binary, run again and
//! again with fault timings drawn from a new seed each time (`STINT_CHAOS_SEED`), on both
//! backends. Too long for CI; a run's figures go to docs/chaos.md.
//!
//! Each scenario asserts its invariants itself (never two live commands of one node at once,
//! every acknowledged result and heartbeat stored, the true state and code recorded), so a
//! violation is a failed test: the report counts them per scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::project;

/// Where a full run's figures are written.
pub(crate) const REPORT: &str = "docs/chaos.md";

/// The test binaries of crates/cli that inject faults, on SQLite and on PostgreSQL.
const SUITES: [&str; 4] = ["faults", "faults_postgres", "crash", "crash_postgres"];

/// Runs `iterations` rounds; writes the report unless `dry` (then prints it only).
pub(crate) fn run(root: &Path, iterations: u32, dry: bool) -> Result<()> {
    let sh = project::shell_at(root)?;
    let suite_args: Vec<String> = SUITES
        .iter()
        .flat_map(|suite| ["--test".to_owned(), (*suite).to_owned()])
        .collect();
    sh.cmd("cargo")
        .args(["test", "-p", "stint-cli", "--no-run"])
        .args(&suite_args)
        .run()
        .context("chaos: building the suites failed")?;
    let mut scenarios: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for iteration in 0..iterations {
        let seed = u64::from(iteration) + 1;
        println!(
            "chaos: iteration {} of {iterations} (seed {seed})",
            iteration + 1
        );
        let output = sh
            .cmd("cargo")
            .args(["test", "-p", "stint-cli"])
            .args(&suite_args)
            .args(["--", "--test-threads=2"])
            .env("STINT_CHAOS_SEED", seed.to_string())
            .env("STINT_REQUIRE_POSTGRES", "1")
            .ignore_status()
            .quiet()
            .output()
            .context("chaos: cargo test did not run")?;
        let text = String::from_utf8_lossy(&output.stdout);
        for (name, passed) in outcomes(&text) {
            let entry = scenarios.entry(name).or_default();
            entry.0 += 1;
            entry.1 += u32::from(!passed);
        }
    }
    if scenarios.is_empty() {
        bail!("chaos: no scenario ran");
    }
    let report = report(&scenarios, iterations);
    println!("{report}");
    if !dry {
        sh.write_file(REPORT, &report)?;
        println!("chaos: figures written to {REPORT}");
    }
    let violations: u32 = scenarios.values().map(|(_, failed)| failed).sum();
    if violations > 0 {
        bail!("chaos: {violations} violation(s)");
    }
    Ok(())
}

/// `(test name, passed)` for each `test NAME ... ok|FAILED` line of libtest's output.
fn outcomes(text: &str) -> Vec<(String, bool)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("test "))
        .filter_map(|rest| rest.rsplit_once(" ... "))
        .filter_map(|(name, result)| match result.trim() {
            "ok" => Some((name.trim().to_owned(), true)),
            "FAILED" => Some((name.trim().to_owned(), false)),
            _ => None,
        })
        .collect()
}

/// The Markdown table of a run.
fn report(scenarios: &BTreeMap<String, (u32, u32)>, iterations: u32) -> String {
    let violations: u32 = scenarios.values().map(|(_, failed)| failed).sum();
    let mut text = format!(
        "# Chaos run\n\n`cargo xtask chaos --iterations {iterations}`: {} scenarios, {iterations} \
         iterations, {violations} violations.\n\n| scenario | runs | violations |\n|---|---|---|\n",
        scenarios.len()
    );
    for (name, (runs, failed)) in scenarios {
        let _ = writeln!(text, "| `{name}` | {runs} | {failed} |");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_lines_are_read_as_outcomes() {
        // libtest-mimic (the harness-free PostgreSQL binaries) pads the names.
        let text = "running 2 tests\ntest a::b ... ok\ntest c    ... FAILED\ntest d ... ignored\n";
        assert_eq!(
            outcomes(text),
            vec![("a::b".to_owned(), true), ("c".to_owned(), false)]
        );
    }

    #[test]
    fn the_report_counts_runs_and_violations() {
        let scenarios = BTreeMap::from([("x".to_owned(), (3, 1)), ("y".to_owned(), (3, 0))]);
        let text = report(&scenarios, 3);
        assert!(
            text.contains("2 scenarios, 3 iterations, 1 violations"),
            "{text}"
        );
        assert!(text.contains("| `x` | 3 | 1 |"), "{text}");
    }
}
