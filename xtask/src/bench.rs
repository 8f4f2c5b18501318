//! `cargo xtask bench [--quick]`: runs the benchmarks of `stint-bench` and records the table.
//!
//! A full run builds in release mode and writes the table, with the machine's description, to
//! `docs/benchmarks.md`. `--quick` is a smoke run (fewer repetitions, a debug build so it needs
//! no release build of the whole tree); it prints the table and writes nothing, since its
//! figures are not the ones worth keeping.

use std::path::Path;

use anyhow::{Context, Result};

use crate::project;

/// Where a full run writes its table.
pub(crate) const TABLE: &str = "docs/benchmarks.md";

/// Runs the benchmarks.
pub(crate) fn run(root: &Path, quick: bool) -> Result<()> {
    let sh = project::shell_at(root)?;
    let result = if quick {
        sh.cmd("cargo")
            .args(["run", "-p", "stint-bench", "--", "--quick"])
            .run()
    } else {
        sh.cmd("cargo")
            .args([
                "run",
                "--release",
                "-p",
                "stint-bench",
                "--",
                "--out",
                TABLE,
            ])
            .run()
    };
    result.context("bench: stint-bench failed")?;
    if !quick {
        println!("bench: table written to {TABLE}");
    }
    Ok(())
}
