//! apalis 1.0 on SQLite (`apalis-sqlite`) and on PostgreSQL (`apalis-postgres`).

use std::sync::Arc;

use anyhow::{Context, Result};
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use sqlx09::postgres::{PgPool, PgPoolOptions};
use sqlx09::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::task::JoinHandle;

use crate::common::{About, Peer, Progress};
use crate::pg::{self, PgPeer};

/// How the result lines name apalis on SQLite and its setup.
static SQLITE: About = About {
    name: "apalis-sqlite 1.0",
    backend: "SQLite",
    throughput: DEFAULTS,
    pickup: PICKUP_DEFAULTS,
};
/// How the result lines name apalis on PostgreSQL and its setup.
static POSTGRES: About = About {
    name: "apalis-postgres 1.0",
    backend: "PostgreSQL",
    throughput: DEFAULTS,
    pickup: PICKUP_DEFAULTS,
};
/// The poll interval of the pickup rows, the 10 ms that issue 17 measured apalis with.
const PICKUP_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// The pickup rows write each completion at once (`batch_size(1)`): at the default batch of 10
/// an idle job's completion waited for the 30 s heartbeat here (p50 29.9 s over 3 pickups).
fn pickup_config<C: Default + Configure>() -> C {
    C::default().one()
}

/// `batch_size(1)` on either backend's `Config`.
trait Configure {
    fn one(self) -> Self;
}

impl Configure for apalis_sqlite::Config {
    fn one(self) -> Self {
        self.batch_size(1).queue(std::any::type_name::<u32>())
    }
}

impl Configure for apalis_postgres::Config {
    fn one(self) -> Self {
        self.batch_size(1).queue(std::any::type_name::<u32>())
    }
}
const DEFAULTS: &str = "Storage::new defaults (polling, batch 10), `.concurrency(C)`";
const PICKUP_DEFAULTS: &str = "batch_size(1) and poll_with_interval(10 ms): at the defaults (batch 10) an idle job's completion waited for the 30 s heartbeat (p50 29.9 s over 3 pickups); concurrency 1";

async fn noop(_job: u32, progress: Data<Arc<Progress>>) -> Result<(), BoxDynError> {
    progress.hit();
    Ok(())
}

/// `journal_mode` and `synchronous` of every connection of the pool: `SqliteStorage::setup`
/// sets `synchronous` on whichever one connection ran it, and the setting is per connection.
async fn sqlite_durability(pool: &SqlitePool) -> Result<String> {
    let mut conns = Vec::new();
    for _ in 0..pool.size() {
        conns.push(pool.acquire().await?);
    }
    let mut seen: Vec<(String, i64)> = Vec::new();
    for conn in &mut conns {
        let journal: String = sqlx09::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut **conn)
            .await?;
        let sync: i64 = sqlx09::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut **conn)
            .await?;
        seen.push((journal, sync));
    }
    let mut parts: Vec<String> = Vec::new();
    let mut distinct = seen.clone();
    distinct.sort();
    distinct.dedup();
    for (journal, sync) in distinct {
        let count = seen
            .iter()
            .filter(|s| s.0 == journal && s.1 == sync)
            .count();
        let name = match sync {
            0 => "OFF",
            1 => "NORMAL",
            2 => "FULL",
            3 => "EXTRA",
            _ => "?",
        };
        parts.push(format!(
            "journal_mode={journal}, synchronous={name} on {count} of {} pool connections",
            seen.len()
        ));
    }
    Ok(parts.join("; "))
}

/// A worker spawned on a backend; aborting the task stops it.
type Running = JoinHandle<Result<(), WorkerError>>;

/// Spawns a worker on `backend` at `concurrency`, its handler bumping `progress`.
macro_rules! spawn_worker {
    ($backend:expr, $progress:expr, $concurrency:expr) => {{
        let worker = WorkerBuilder::new("peers-bench")
            .backend($backend)
            .data($progress.clone())
            .concurrency($concurrency)
            .build(noop);
        tokio::spawn(async move { worker.run().await })
    }};
}

/// Either backend's storage of `u32` jobs, with its pool.
enum Store {
    /// On a fresh file in a temporary folder (removed when the store is dropped).
    Sqlite {
        storage: SqliteStorage<u32>,
        pool: SqlitePool,
        _dir: tempfile::TempDir,
    },
    /// On a database of its own.
    Postgres {
        storage: PostgresStorage<u32>,
        pool: PgPool,
    },
}

/// apalis on a store set up by the backend's own `setup`, and the counter its handler bumps.
pub struct Apalis {
    store: Store,
    progress: Arc<Progress>,
}

impl Apalis {
    /// apalis on a fresh SQLite file, its handler bumping `progress`.
    pub async fn sqlite(progress: Arc<Progress>) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("apalis.db"))
            .create_if_missing(true);
        let pool = SqlitePoolOptions::new().connect_with(options).await?;
        SqliteStorage::setup(&pool).await?;
        let storage = SqliteStorage::new(&pool);
        let store = Store::Sqlite {
            storage,
            pool,
            _dir: dir,
        };
        Ok(Self { store, progress })
    }
}

/// apalis-postgres.
impl PgPeer for Apalis {
    const DB: &'static str = "apalis";

    async fn open(url: &str, progress: Arc<Progress>) -> Result<Self> {
        let pool = PgPoolOptions::new().connect(url).await?;
        PostgresStorage::setup(&pool).await?;
        let storage = PostgresStorage::new(&pool);
        let store = Store::Postgres { storage, pool };
        Ok(Self { store, progress })
    }
}

impl Peer for Apalis {
    type Worker = Running;

    fn about(&self) -> &'static About {
        match self.store {
            Store::Sqlite { .. } => &SQLITE,
            Store::Postgres { .. } => &POSTGRES,
        }
    }

    async fn enqueue(&self, i: usize) -> Result<()> {
        let job = i as u32;
        match &self.store {
            Store::Sqlite { storage, .. } => storage.clone().push(job).await.context("push"),
            Store::Postgres { storage, .. } => storage.clone().push(job).await.context("push"),
        }
    }

    async fn start(&self, concurrency: usize) -> Result<Running> {
        let progress = &self.progress;
        Ok(match &self.store {
            Store::Sqlite { storage, .. } => spawn_worker!(storage.clone(), progress, concurrency),
            Store::Postgres { storage, .. } => {
                spawn_worker!(storage.clone(), progress, concurrency)
            }
        })
    }

    /// The worker at `batch_size(1)` and a poll every [`PICKUP_POLL`], concurrency 1.
    async fn start_idle(&self) -> Result<Running> {
        let progress = &self.progress;
        Ok(match &self.store {
            Store::Sqlite { storage, .. } => spawn_worker!(
                storage
                    .clone()
                    .with_config(pickup_config())
                    .poll_with_interval(PICKUP_POLL),
                progress,
                1
            ),
            Store::Postgres { storage, .. } => spawn_worker!(
                storage
                    .clone()
                    .with_config(pickup_config())
                    .poll_with_interval(PICKUP_POLL),
                progress,
                1
            ),
        })
    }

    async fn done(&self, n: usize) -> Result<bool> {
        let done: i64 = match &self.store {
            Store::Sqlite { pool, .. } => {
                sqlx09::query_scalar("SELECT COUNT(*) FROM Jobs WHERE status = 'Done'")
                    .fetch_one(pool)
                    .await?
            }
            Store::Postgres { pool, .. } => {
                sqlx09::query_scalar("SELECT COUNT(*) FROM apalis.jobs WHERE status = 'Done'")
                    .fetch_one(pool)
                    .await?
            }
        };
        Ok(done as usize >= n)
    }

    async fn stop(&self, running: Running) -> Result<()> {
        running.abort();
        Ok(())
    }

    async fn close(self) -> Result<String> {
        match self.store {
            Store::Sqlite { pool, _dir, .. } => {
                let durability = sqlite_durability(&pool).await?;
                pool.close().await;
                Ok(durability)
            }
            Store::Postgres { pool, .. } => {
                let (sync, fsync): (String, String) =
                    sqlx09::query_as(pg::DURABILITY).fetch_one(&pool).await?;
                pool.close().await;
                Ok(pg::durability_line(&sync, &fsync))
            }
        }
    }
}
