//! `cargo xtask soak`: the README's test command, run again and again on one tree, stopping at
//! the first red run. It answers "does the suite pass N times in a row?" with the count, each
//! run's time and, for a red run, the names of the tests that failed (not in CI: it is N runs).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::project;

/// Runs `cargo test --workspace --all-features` (PostgreSQL required) `runs` times in a row.
pub(crate) fn run(root: &Path, runs: u32) -> Result<()> {
    let sh = project::shell_at(root)?;
    sh.cmd("cargo")
        .args(["test", "--workspace", "--all-features", "--no-run"])
        .quiet()
        .run()
        .context("soak: building the tests failed")?;
    let mut took = Vec::new();
    for run in 1..=runs {
        let started = Instant::now();
        let output = sh
            .cmd("cargo")
            .args(["test", "--workspace", "--all-features"])
            .env("STINT_REQUIRE_POSTGRES", "1")
            .ignore_status()
            .quiet()
            .output()
            .context("soak: cargo test did not run")?;
        took.push(started.elapsed());
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            let failed = failed_tests(&text);
            bail!(
                "soak: run {run} of {runs} failed after {} in a row ({}); failed: {}",
                run - 1,
                summary(&took),
                if failed.is_empty() {
                    "see the output of cargo test".to_owned()
                } else {
                    failed.join(", ")
                }
            );
        }
        println!(
            "soak: run {run} of {runs} passed in {:.0} s",
            took[took.len() - 1].as_secs_f64()
        );
    }
    println!(
        "soak: {runs} of {runs} runs passed in a row ({})",
        summary(&took)
    );
    Ok(())
}

/// The names libtest lists under `failures:` (the second such list names each failed test).
fn failed_tests(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut listing = false;
    for line in text.lines() {
        if line == "failures:" {
            listing = true;
        } else if listing && line.starts_with("    ") {
            let name = line.trim();
            if !name.is_empty() && !name.contains(' ') && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        } else if line.starts_with("test result:") {
            listing = false;
        }
    }
    names
}

/// `median 121 s, slowest 140 s`.
fn summary(took: &[Duration]) -> String {
    let mut secs: Vec<f64> = took.iter().map(Duration::as_secs_f64).collect();
    secs.sort_by(f64::total_cmp);
    let median = secs.get(secs.len() / 2).copied().unwrap_or_default();
    let slowest = secs.last().copied().unwrap_or_default();
    format!("median {median:.0} s, slowest {slowest:.0} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failed_tests_are_named_once() {
        let text = "running 3 tests\ntest a ... ok\n\nfailures:\n\n---- storm stdout ----\n\
                    thread panicked\n\nfailures:\n    crash::storm\n    ux::limits\n\n\
                    test result: FAILED. 1 passed; 2 failed\n";
        assert_eq!(failed_tests(text), ["crash::storm", "ux::limits"]);
    }

    #[test]
    fn the_summary_gives_median_and_slowest() {
        let took = [130, 120, 150].map(Duration::from_secs);
        assert_eq!(summary(&took), "median 130 s, slowest 150 s");
    }
}
