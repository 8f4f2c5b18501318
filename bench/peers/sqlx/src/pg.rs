//! A fresh PostgreSQL database per run, and what the server says about durability.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A database created for one run, dropped by [`FreshDb::drop_db`].
#[derive(Debug)]
pub struct FreshDb {
    server: String,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl FreshDb {
    /// Creates `stint_peer_<peer>_<pid>_<n>` on the server at `server` (a URL without a
    /// database).
    pub async fn create(server: &str, peer: &str) -> Result<Self> {
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
        let url = format!("{server}/{name}");
        Ok(Self { server, name, url })
    }

    /// A pool on the new database with sqlx's defaults (what the peers' own examples use).
    pub async fn pool(&self) -> Result<PgPool> {
        Ok(PgPoolOptions::new().connect(&self.url).await?)
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop_db(self) -> Result<()> {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server)).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name).as_str())
            .await?;
        Ok(())
    }
}

/// `synchronous_commit` and `fsync` as a connection of the peer's pool sees them.
pub async fn durability(pool: &PgPool) -> Result<String> {
    let (sync, fsync): (String, String) =
        sqlx::query_as("SELECT current_setting('synchronous_commit'), current_setting('fsync')")
            .fetch_one(pool)
            .await?;
    Ok(format!(
        "synchronous_commit={sync}, fsync={fsync} (read through the peer's pool)"
    ))
}
