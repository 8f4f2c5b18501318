//! `stint-bench`: what stint costs on top of the SQL it issues (issue 9), its heartbeat,
//! watchdog and memory figures, and the queue's throughput and pickup latency (issue 17). Row 1 compares stint with the same-SQL floor: the adapter's own
//! statements issued directly through sqlx, so the ratio is stint's Rust overhead, not a
//! distance to the database's limit.
//!
//! Prints one Markdown table of six benchmarks to stdout and, with `--out`, writes it with a
//! description of the machine and the date. Figures are medians over repetitions with their
//! spread; nothing here fails on speed.
//!
//! `cargo run --release -p stint-bench -- [--quick] [--out docs/benchmarks.md]`
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a benchmark prints its table, and its progress to stderr"
)]
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "figures are counts and durations far below 2^52"
)]

mod backend;
#[path = "../../../bench/peers/cpu.rs"]
mod cpu;
mod floor;
mod floor_postgres;
mod floor_sqlite;
mod heartbeat;
mod lifecycle;
mod machine;
mod memory;
mod peers;
mod queue;
mod queue_pickup;
mod report;
mod same_sql;
mod single;
mod stats;
mod watchdog;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;

/// Benchmarks of stint: its overhead on top of the same SQL issued directly, and more.
#[derive(Debug, Parser)]
#[command(name = "stint-bench")]
struct Args {
    /// A smoke run: fewer repetitions, shorter windows, smaller counts (under a minute).
    #[arg(long)]
    quick: bool,
    /// Also write the table, with the machine's description and the date, to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Run only this benchmark (1 to 6; 6 is the queue), for profiling one of them.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=6))]
    only: Option<u8>,
    /// Only stint's rows of the peer comparison (`cargo xtask bench --peers`): the queue
    /// workload at concurrency 1, 8 and 64 and idle pickup, on SQLite and PostgreSQL, as JSON
    /// lines on stdout.
    #[arg(long, conflicts_with_all = ["out", "only"])]
    peers_json: bool,
    /// With `--peers-json`: only the throughput rows of this concurrency (no pickup rows), for
    /// profiling one of them.
    #[arg(long, value_name = "N", requires = "peers_json")]
    peers_concurrency: Option<usize>,
    /// With `--peers-json`: only this backend.
    #[arg(long, value_enum, requires = "peers_json")]
    peers_backend: Option<queue::Db>,
    /// Internal: measure memory in this child process and print `<before KiB> <after KiB>`.
    #[arg(long, hide = true, value_enum)]
    memory_probe: Option<memory::Probe>,
    /// Internal: attempts for `--memory-probe`.
    #[arg(long, hide = true, default_value_t = 10_000)]
    probe_count: usize,
}

/// How long and how often to measure.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A `--quick` smoke run (figures not to quote).
    pub quick: bool,
    /// Repetitions of every figure.
    pub reps: usize,
    /// Length of one timed window.
    pub window: Duration,
}

/// A progress line on stderr (stdout carries only the table).
pub fn progress(what: &str) {
    eprintln!("stint-bench: {what}");
}

/// The benchmarks, by number (`--only` takes one of them).
const BENCHMARKS: std::ops::RangeInclusive<u8> = 1..=6;

/// The rows of benchmark `bench`.
async fn benchmark(bench: u8, settings: &Settings) -> Result<Vec<report::Row>> {
    match bench {
        1 => lifecycle::run(settings).await,
        2 => heartbeat::call_cost(settings).await,
        3 => watchdog::run(settings).await,
        4 => memory::run(settings).await,
        5 => heartbeat::throughput(settings).await,
        6 => queue::run(settings).await,
        _ => anyhow::bail!("there is no benchmark {bench}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(kind) = args.memory_probe {
        println!("{}", memory::probe(kind, args.probe_count).await?);
        return Ok(());
    }
    if args.peers_json {
        let only = peers::Only {
            backend: args.peers_backend,
            concurrency: args.peers_concurrency,
        };
        return peers::run(args.quick, only).await;
    }
    let settings = if args.quick {
        Settings {
            quick: true,
            reps: 3,
            window: Duration::from_millis(200),
        }
    } else {
        Settings {
            quick: false,
            reps: 5,
            window: Duration::from_secs(1),
        }
    };
    let started = Instant::now();
    let mut rows = Vec::new();
    for bench in BENCHMARKS {
        if args.only.is_none_or(|only| only == bench) {
            rows.extend(benchmark(bench, &settings).await?);
        }
    }
    let table = report::markdown(&rows);
    progress(&format!("done in {:.0} s", started.elapsed().as_secs_f64()));
    print!("{table}");
    if let Some(path) = args.out {
        let document = machine::document(&settings, &table);
        std::fs::write(&path, document).with_context(|| format!("writing {}", path.display()))?;
        progress(&format!("wrote {}", path.display()));
    }
    Ok(())
}
