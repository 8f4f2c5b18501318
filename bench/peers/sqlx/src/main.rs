//! apalis-sqlite and apalis-postgres 1.0, awa 0.6 and underway 0.2 on the queue workload of
//! issue 18: N no-op jobs enqueued one call each, then one worker at each concurrency until the
//! peer's own store says all are done; and idle pickup latency. Each run gets a fresh store (a
//! SQLite file in a temporary folder, or a PostgreSQL database created and dropped around it),
//! at the peer's own defaults. Prints JSON lines; `cargo xtask bench --peers` runs it.

#[path = "../../common.rs"]
mod common;

mod apalis_peers;
mod awa_peer;
mod pg;
mod underway_peer;

use anyhow::{Result, bail};
use common::{Args, emit, error_line};

/// The peers of this binary, as `--peer` names them.
const PEERS: [&str; 4] = ["apalis-sqlite", "apalis-postgres", "awa", "underway"];

/// One throughput run of `peer`.
async fn throughput(args: &Args, peer: &str, concurrency: usize) -> Result<()> {
    match peer {
        "apalis-sqlite" => apalis_peers::sqlite_throughput(args.jobs, concurrency).await,
        "apalis-postgres" => apalis_peers::pg_throughput(args, concurrency).await,
        "awa" => awa_peer::throughput(args, concurrency).await,
        "underway" => underway_peer::throughput(args, concurrency).await,
        other => bail!("unknown peer {other}"),
    }
}

/// The idle-pickup measurement of `peer`.
async fn pickup(args: &Args, peer: &str) -> Result<()> {
    match peer {
        "apalis-sqlite" => apalis_peers::sqlite_pickup(args.pickups).await,
        "apalis-postgres" => apalis_peers::pg_pickup(args).await,
        "awa" => awa_peer::pickup(args).await,
        "underway" => underway_peer::pickup(args).await,
        other => bail!("unknown peer {other}"),
    }
}

fn backend(peer: &str) -> &'static str {
    if peer == "apalis-sqlite" {
        "SQLite"
    } else {
        "PostgreSQL"
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse()?;
    let peers: Vec<&str> = if args.peer == "all" {
        PEERS.to_vec()
    } else if let Some(peer) = PEERS.iter().find(|p| **p == args.peer) {
        vec![*peer]
    } else {
        bail!("unknown peer {}; this binary runs {PEERS:?}", args.peer);
    };
    for peer in peers {
        for &concurrency in &args.concurrency {
            common::progress(&format!(
                "{peer}: {} jobs at concurrency {concurrency}",
                args.jobs
            ));
            if let Err(error) = throughput(&args, peer, concurrency).await {
                emit(&error_line(
                    peer,
                    backend(peer),
                    &format!("concurrency {concurrency}"),
                    &error,
                ));
            }
        }
        if args.pickups > 0 {
            common::progress(&format!("{peer}: idle pickup"));
            if let Err(error) = pickup(&args, peer).await {
                emit(&error_line(peer, backend(peer), "pickup", &error));
            }
        }
    }
    Ok(())
}
