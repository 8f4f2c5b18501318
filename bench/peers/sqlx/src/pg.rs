//! A fresh PostgreSQL database per run, and what the server says about durability.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};

use crate::common::{self, Measurement, Peer, Progress};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// What a connection says about durability: `synchronous_commit` and `fsync`.
pub const DURABILITY: &str =
    "SELECT current_setting('synchronous_commit'), current_setting('fsync')";

/// A database created for one run, dropped by [`FreshDb::drop_db`].
#[derive(Debug)]
struct FreshDb {
    server: String,
    name: String,
}

impl FreshDb {
    /// Creates `stint_peer_<peer>_<pid>_<n>` on the server at `server` (a URL without a
    /// database).
    async fn create(server: &str, peer: &str) -> Result<Self> {
        let name = format!(
            "stint_peer_{}_{}_{}",
            peer.replace('-', "_"),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let server = server.trim_end_matches('/').to_owned();
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .context("connecting to PostgreSQL")?;
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await?;
        Ok(Self { server, name })
    }

    /// Drops the database, closing whatever is still connected to it.
    async fn drop_db(self) -> Result<()> {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server)).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await?;
        Ok(())
    }
}

/// A peer on PostgreSQL: each of its measurements gets a database of its own.
pub trait PgPeer: Peer {
    /// The peer's part of the databases' names.
    const DB: &'static str;

    /// The peer set up on the empty database at `url`, its handlers bumping `progress`.
    async fn open(url: &str, progress: Arc<Progress>) -> Result<Self>;
}

/// Takes `measurement` of `P` on a database created for it on `server` (a URL without a
/// database), then drops the database, whether the measurement succeeded or not.
pub async fn run<P: PgPeer>(server: &str, measurement: Measurement) -> Result<()> {
    let db = FreshDb::create(server, P::DB).await?;
    let url = format!("{}/{}", db.server, db.name);
    let result = common::run(|progress| P::open(&url, progress), measurement).await;
    db.drop_db().await?;
    result
}

/// A pool on the database at `url` with sqlx's defaults (what the peers' own examples use).
pub async fn pool(url: &str) -> Result<PgPool> {
    Ok(PgPoolOptions::new().connect(url).await?)
}

/// How a peer's result line tells the [`DURABILITY`] settings its pool reported.
pub fn durability_line(sync: &str, fsync: &str) -> String {
    format!("synchronous_commit={sync}, fsync={fsync} (read through the peer's pool)")
}

/// Closes the peer's pool, once it has said what its connections see of the [`DURABILITY`]
/// settings.
pub async fn close(pool: &PgPool) -> Result<String> {
    let (sync, fsync): (String, String) = sqlx::query_as(DURABILITY).fetch_one(pool).await?;
    pool.close().await;
    Ok(durability_line(&sync, &fsync))
}
