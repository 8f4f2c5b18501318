//! apalis-sqlite and apalis-postgres 1.0, awa 0.6 and underway 0.2 on the queue workload of
//! issue 18: N no-op jobs enqueued one call each, then one worker at each concurrency until the
//! peer's own store says all are done; and idle pickup latency. Each run gets a fresh store (a
//! SQLite file in a temporary folder, or a PostgreSQL database created and dropped around it),
//! at the peer's own defaults. Prints JSON lines; `cargo xtask bench --peers` runs it.

#[path = "../../common.rs"]
mod common;
#[path = "../../cpu.rs"]
mod cpu;

mod apalis_peers;
mod awa_peer;
mod pg;
mod underway_peer;

use anyhow::{Result, bail};
use common::{Args, Measurement};

use crate::apalis_peers::Apalis;
use crate::awa_peer::Awa;
use crate::underway_peer::Underway;

/// The peers of this binary, as `--peer` names them.
const PEERS: [&str; 4] = ["apalis-sqlite", "apalis-postgres", "awa", "underway"];

/// One measurement of `peer`.
async fn run(args: &Args, peer: &str, measurement: Measurement) -> Result<()> {
    match peer {
        "apalis-sqlite" => common::run(Apalis::sqlite, measurement).await,
        "apalis-postgres" => pg::run::<Apalis>(&args.pg_url, measurement).await,
        "awa" => pg::run::<Awa>(&args.pg_url, measurement).await,
        "underway" => pg::run::<Underway>(&args.pg_url, measurement).await,
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
        common::measure(&args, peer, backend(peer), |measurement| {
            run(&args, peer, measurement)
        })
        .await;
    }
    Ok(())
}
