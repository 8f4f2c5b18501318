//! `cargo xtask ci`: the checks `.ci/run` runs, in the same order, stopping at the first failure.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::{codegen, project};

/// The test command, identical to the one README.md gives. The tidy checks are `#[test]`s of
/// xtask, a workspace member, so this command runs them too.
pub(crate) const TEST_COMMAND: &str = "cargo test --workspace --all-features";

/// The steps of CI, in order, each a command line run from the workspace root.
pub(crate) const STEPS: &[&str] = &[
    "cargo fmt --all -- --check",
    "cargo clippy --workspace --all-targets --all-features -- -D warnings",
    TEST_COMMAND,
];

/// The last step, run in-process by `cargo xtask ci`.
pub(crate) const CODEGEN_CHECK: &str = "cargo xtask codegen --check";

/// Runs every step of CI, then `codegen --check`.
pub(crate) fn run(root: &Path) -> Result<()> {
    let sh = project::shell_at(root)?;
    for step in STEPS {
        println!("ci: {step}");
        let mut words = step.split_whitespace();
        let program = words.next().context("empty CI step")?;
        let status = sh.cmd(program).args(words).quiet().run();
        if status.is_err() {
            bail!("ci: step failed: {step}");
        }
    }
    println!("ci: {CODEGEN_CHECK}");
    codegen::run(root, true).with_context(|| format!("ci: step failed: {CODEGEN_CHECK}"))?;
    println!("ci: all steps passed");
    Ok(())
}
