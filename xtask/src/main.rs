//! Development automation of stint, run as `cargo xtask <command>`.
//!
//! Modelled on rust-analyzer's xtask: plain Rust driving `cargo` and `git` through `xshell`, no
//! shell scripts beside `.ci/run`. Each command lives in its own module; the tidy checks are
//! ordinary `#[test]`s in `tidy.rs`, so `cargo test` runs them.
// xtask is a command-line tool: printing progress is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench;
mod chaos;
mod ci;
mod codegen;
mod dist;
mod peers;
mod project;
mod release;
mod soak;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Development automation of stint.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run exactly what CI runs: fmt, clippy, the test suite (with the tidy checks), codegen --check.
    Ci,
    /// Write the JSON Schemas into schemas/ and the CLI reference into docs/cli.md.
    Codegen {
        /// Write nothing; fail, naming each file, if a committed copy differs from what would be written.
        #[arg(long)]
        check: bool,
    },
    /// Version bumps and pre-release checks; nothing is published or pushed.
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Run the benchmarks; a full run writes docs/benchmarks.md.
    Bench {
        /// A smoke run in under a minute (debug build, fewer repetitions); writes nothing.
        #[arg(long)]
        quick: bool,
        /// Instead: build the peers of bench/peers (outside the workspace) and measure them and
        /// stint on the same queue workload in one run; writes the "Peers" section of
        /// docs/benchmarks.md.
        #[arg(long, conflicts_with = "quick")]
        peers: bool,
    },
    /// Run the fault-injection and crash suites again and again with random fault timings (not
    /// in CI); a full run writes docs/chaos.md.
    Chaos {
        /// How many rounds of every scenario.
        #[arg(long, default_value_t = 10)]
        iterations: u32,
        /// Print the figures; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run the README's test command again and again, stopping at the first red run (not in
    /// CI): "passes N times in a row" as a count, with each run's time.
    Soak {
        /// How many runs in a row.
        #[arg(long, default_value_t = 20)]
        runs: u32,
    },
    /// Build `stint` in release mode and pack a reproducible tarball with its sha256 in dist/.
    Dist,
}

#[derive(Debug, Subcommand)]
enum ReleaseCommand {
    /// Set one new version in every manifest and add its CHANGELOG.md section.
    Bump {
        /// `major`, `minor`, `patch`, or an explicit version such as `1.2.3`.
        level: String,
    },
    /// Check versions, changelog, a clean tree and `cargo publish --dry-run`; print the tag to create.
    Check {
        /// Pass `--no-verify` to `cargo publish --dry-run` (package without building).
        #[arg(long)]
        no_verify: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with its causes, never a backtrace: these errors are for the person at the terminal.
            eprintln!("xtask: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let root = project::root();
    match cli.command {
        Command::Ci => ci::run(&root),
        Command::Codegen { check } => codegen::run(&root, check),
        Command::Release { command } => match command {
            ReleaseCommand::Bump { level } => release::run_bump(&root, &level),
            ReleaseCommand::Check { no_verify } => release::run_check(&root, no_verify),
        },
        Command::Bench { quick, peers } => bench::run(&root, quick, peers),
        Command::Dist => dist::run(&root),
        Command::Chaos {
            iterations,
            dry_run,
        } => chaos::run(&root, iterations, dry_run),
        Command::Soak { runs } => soak::run(&root, runs),
    }
}
