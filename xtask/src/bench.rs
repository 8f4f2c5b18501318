//! `cargo xtask bench [--quick]`: runs the benchmarks of `stint-bench` and records the table.
//!
//! A full run builds in release mode and writes the table, with the machine's description, to
//! `docs/benchmarks.md`. `--quick` is a smoke run (fewer repetitions, a debug build so it needs
//! no release build of the whole tree); it prints the table and writes nothing, since its
//! figures are not the ones worth keeping. A full run keeps the "Peers" section that
//! `cargo xtask bench --peers` wrote ([`crate::peers`]); only `--peers` builds and runs the peers.

use std::path::Path;

use anyhow::{Context, Result};

use crate::{peers, project};

/// Where a full run writes its table.
pub(crate) const TABLE: &str = "docs/benchmarks.md";

/// Runs the benchmarks, or with `peers` only the comparison with the peers.
pub(crate) fn run(root: &Path, quick: bool, with_peers: bool) -> Result<()> {
    if with_peers {
        return peers::run(root);
    }
    let sh = project::shell_at(root)?;
    let kept = std::fs::read_to_string(root.join(TABLE))
        .ok()
        .and_then(|document| peers::existing(&document));
    // Benchmark 1 runs the `stint` binary beside `stint-bench`, built in the same profile.
    let profile: &[&str] = if quick { &[] } else { &["--release"] };
    sh.cmd("cargo")
        .args(["build", "-p", "stint-cli"])
        .args(profile)
        .run()
        .context("bench: building stint")?;
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
    if let (false, Some(section)) = (quick, kept) {
        let path = root.join(TABLE);
        let document = std::fs::read_to_string(&path).context("reading the new table")?;
        std::fs::write(&path, peers::splice(&document, &section)).context("keeping the peers")?;
    }
    if !quick {
        println!("bench: table written to {TABLE}");
    }
    Ok(())
}
