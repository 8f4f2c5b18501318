//! Benchmark 1: full attempt lifecycles per second (begin, one heartbeat, end finished) through
//! `Engine::run_attempt`, beside the same-SQL floor: the same SQL statements and transactions
//! issued directly through sqlx, in the same process and run, interleaved repetition by
//! repetition. The ratio is stint's own overhead (engine, port, serde, error mapping) on top of
//! that SQL, not a distance to the database's limit. Before measuring, [`same_sql`] checks that
//! the floor still issues exactly the adapter's statements.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use stint_domain::{AttemptState, NodeKey, TaskDescriptor, TaskMetadata};
use stint_engine::{CancellationToken, Engine, NoVcs, Ports, TaskContext, TaskFailure};
use stint_ports::Store;
use tokio::task::JoinSet;

use crate::Settings;
use crate::backend::{PostgresBench, SqliteBench};
use crate::floor::Lifecycle;
use crate::report::{Row, Verdict};
use crate::same_sql;
use crate::stats::{Spread, rate, ratio};
use crate::{floor_postgres, floor_sqlite};

const MEASURE: &str = "attempt lifecycles/s (begin + 1 heartbeat + finish)";
const TARGET: f64 = 0.9;

/// The engine on `store`, with no VCS and the system clock.
pub(crate) fn engine_on(store: Arc<dyn Store>) -> Engine {
    Engine::new(Ports::new(store, Arc::new(NoVcs)))
}

/// One trivial attempt through the engine: one heartbeat, a small output, no schema.
pub(crate) async fn engine_lifecycle(
    engine: &Engine,
    cancel: &CancellationToken,
    node: NodeKey,
) -> Result<()> {
    let desc = TaskDescriptor::new(node);
    let outcome = engine
        .run_attempt(
            &desc,
            |ctx: TaskContext| async move {
                ctx.heartbeat.beat(json!({"step": 1}))?;
                Ok::<_, TaskFailure>(json!({"ok": true}))
            },
            cancel,
        )
        .await?;
    ensure!(
        outcome.state == AttemptState::Finished,
        "attempt ended {}",
        outcome.state
    );
    Ok(())
}

/// Operations per second of `workers` concurrent loops of `op(worker, i)` for `window`.
async fn per_second<F, Fut>(workers: usize, window: Duration, op: F) -> Result<f64>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let op = op.clone();
        tasks.spawn(async move {
            let mut done = 0_u64;
            while start.elapsed() < window {
                op(worker, done).await?;
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        });
    }
    let mut total = 0_u64;
    while let Some(joined) = tasks.join_next().await {
        total += joined.context("a worker panicked")??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

/// The values every floor lifecycle binds, prepared once: the floor pays only for its SQL.
#[derive(Debug)]
pub(crate) struct FloorValues {
    metadata: String,
    metadata_json: Value,
    working_dir: Option<String>,
    owner: String,
    heartbeat: String,
    heartbeat_json: Value,
    output: String,
    output_json: Value,
    pg_bodies: floor_postgres::Bodies,
}

impl FloorValues {
    pub(crate) fn new() -> Result<Self> {
        // What the engine binds for a default descriptor run from the current directory.
        let metadata_json = serde_json::to_value(TaskMetadata::default())?;
        let heartbeat_json = json!({"step": 1});
        let output_json = json!({"ok": true});
        let pg_bodies = floor_postgres::Bodies::new(heartbeat_json.to_string().len())?;
        Ok(Self {
            metadata: metadata_json.to_string(),
            metadata_json,
            working_dir: std::env::current_dir()
                .ok()
                .map(|dir| dir.display().to_string()),
            owner: uuid::Uuid::new_v4().to_string(),
            heartbeat: heartbeat_json.to_string(),
            heartbeat_json,
            output: output_json.to_string(),
            output_json,
            pg_bodies,
        })
    }

    pub(crate) fn lifecycle<'a>(&'a self, run_id: &'a str, node_id: &'a str) -> Lifecycle<'a> {
        Lifecycle {
            run_id,
            node_id,
            owner: &self.owner,
            now_ms: now_ms(),
            lease_ms: i64::try_from(stint_domain::descriptor::DEFAULT_LEASE_MS).unwrap_or(i64::MAX),
            metadata: &self.metadata,
            metadata_json: &self.metadata_json,
            working_dir: self.working_dir.as_deref(),
            heartbeat: &self.heartbeat,
            heartbeat_json: &self.heartbeat_json,
            output: &self.output,
            output_json: &self.output_json,
            pg_bodies: Some(&self.pg_bodies),
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where one side of one repetition runs.
#[derive(Clone, Copy, Debug)]
enum Side {
    Stint,
    Floor,
}

/// The engine's loop over fresh nodes of `run_id`.
async fn engine_rate(
    store: Arc<dyn Store>,
    workers: usize,
    window: Duration,
    run_id: String,
) -> Result<f64> {
    let engine = Arc::new(engine_on(store));
    let cancel = CancellationToken::new();
    per_second(workers, window, move |worker, i| {
        let (engine, cancel, run_id) = (engine.clone(), cancel.clone(), run_id.clone());
        async move {
            let node = NodeKey::new(run_id, format!("w{worker}-{i}"), 0)?;
            engine_lifecycle(&engine, &cancel, node).await
        }
    })
    .await
}

/// Paired repetitions of both sides; returns (stint rates, floor rates).
async fn paired<S, SF, F, FF>(
    reps: usize,
    mut stint: S,
    mut floor: F,
) -> Result<(Vec<f64>, Vec<f64>)>
where
    S: FnMut(usize) -> SF,
    SF: Future<Output = Result<f64>>,
    F: FnMut(usize) -> FF,
    FF: Future<Output = Result<f64>>,
{
    let (mut s, mut f) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        // Alternate which side goes first, so a drift in the machine's load hits both alike.
        let order = if rep % 2 == 0 {
            [Side::Floor, Side::Stint]
        } else {
            [Side::Stint, Side::Floor]
        };
        for side in order {
            match side {
                Side::Stint => s.push(stint(rep).await?),
                Side::Floor => f.push(floor(rep).await?),
            }
        }
    }
    Ok((s, f))
}

/// One table row from paired rates. The verdict is read from every paired ratio, not only from
/// the ratio of the medians.
fn row(setting: &str, stint: &[f64], floor: &[f64]) -> Row {
    let (Some(s), Some(f)) = (Spread::of(stint), Spread::of(floor)) else {
        return Row::skipped(1, MEASURE, setting, "no repetitions");
    };
    let ratios: Vec<f64> = stint.iter().zip(floor).map(|(s, f)| s / f).collect();
    let r = s.median / f.median;
    let spread = Spread::of(&ratios).map_or(String::new(), |p| {
        format!(" (paired {}..{})", ratio(p.min), ratio(p.max))
    });
    Row {
        bench: 1,
        measure: MEASURE.to_owned(),
        setting: setting.to_owned(),
        stint: s.show(rate),
        floor: f.show(rate),
        ratio: format!("{}{spread}", ratio(r)),
        target: format!(">= {TARGET}"),
        verdict: Verdict::from_paired(&ratios, TARGET),
    }
}

/// SQLite at `synchronous` (`full` or `normal`), one attempt at a time, a fresh file each side
/// and repetition.
async fn sqlite(settings: &Settings, synchronous: &'static str, setting: &str) -> Result<Row> {
    let values = Arc::new(FloorValues::new()?);
    let window = settings.window;
    let bench = SqliteBench::open(synchronous).await?;
    same_sql::check_sqlite(&bench, &values).await?;
    bench.close().await;
    let stint = |rep: usize| async move {
        let bench = SqliteBench::open(synchronous).await?;
        let store: Arc<dyn Store> = Arc::new(bench.store.clone());
        warm_engine(store.clone()).await?;
        let rate = engine_rate(store, 1, window, format!("stint{rep}")).await;
        bench.close().await;
        rate
    };
    let floor = |rep: usize| {
        let values = values.clone();
        async move {
            let bench = SqliteBench::open(synchronous).await?;
            let conn = Arc::new(Mutex::new(bench.floor_connection()?));
            let run = format!("floor{rep}");
            let lc = values.lifecycle(&run, "warm");
            floor_sqlite::lifecycle(&lock(&conn), &lc)?;
            let rate = per_second(1, window, move |worker, i| {
                let (conn, values, run) = (conn.clone(), values.clone(), run.clone());
                async move {
                    let node = format!("w{worker}-{i}");
                    floor_sqlite::lifecycle(&lock(&conn), &values.lifecycle(&run, &node))
                }
            })
            .await;
            bench.close().await;
            rate
        }
    };
    let (s, f) = paired(settings.reps, stint, floor).await?;
    Ok(row(setting, &s, &f))
}

/// A few lifecycles first, so neither side pays for a cold connection or statement cache.
pub(crate) async fn warm_engine(store: Arc<dyn Store>) -> Result<()> {
    let engine = engine_on(store);
    let cancel = CancellationToken::new();
    for i in 0..3 {
        engine_lifecycle(&engine, &cancel, NodeKey::new("warm", format!("n{i}"), 0)?).await?;
    }
    Ok(())
}

/// PostgreSQL with a pool of `connections` and as many concurrent attempts.
async fn postgres(settings: &Settings, connections: u32, setting: &str) -> Result<Row> {
    let bench = match PostgresBench::open(connections).await {
        Ok(bench) => bench,
        Err(why) => return Ok(Row::skipped(1, MEASURE, setting, &why)),
    };
    let result = postgres_on(settings, &bench, connections as usize, setting).await;
    bench.close().await;
    result
}

async fn postgres_on(
    settings: &Settings,
    bench: &PostgresBench,
    workers: usize,
    setting: &str,
) -> Result<Row> {
    let values = Arc::new(FloorValues::new()?);
    let window = settings.window;
    same_sql::check_postgres(bench, &values).await?;
    warm_engine(bench.store.clone()).await?;
    let warm_run = "floorwarm";
    floor_postgres::lifecycle(
        &bench.raw,
        &values.lifecycle(warm_run, "n0"),
        floor_postgres::run_lock_key(warm_run),
    )
    .await?;
    let stint =
        |rep: usize| engine_rate(bench.store.clone(), workers, window, format!("stint{rep}"));
    let floor = |rep: usize| {
        let (pool, values) = (bench.raw.clone(), values.clone());
        let run = format!("floor{rep}");
        let key = floor_postgres::run_lock_key(&run);
        per_second(workers, window, move |worker, i| {
            let (pool, values, run) = (pool.clone(), values.clone(), run.clone());
            async move {
                let node = format!("w{worker}-{i}");
                floor_postgres::lifecycle(&pool, &values.lifecycle(&run, &node), key).await
            }
        })
    };
    let (s, f) = paired(settings.reps, stint, floor).await?;
    Ok(row(setting, &s, &f))
}

/// The four rows of benchmark 1.
pub(crate) async fn run(settings: &Settings) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    crate::progress("1: lifecycle, SQLite FULL");
    rows.push(sqlite(settings, "full", "SQLite synchronous=FULL, 1 at a time").await?);
    crate::progress("1: lifecycle, SQLite NORMAL");
    rows.push(sqlite(settings, "normal", "SQLite synchronous=NORMAL, 1 at a time").await?);
    crate::progress("1: lifecycle, PostgreSQL 1 connection");
    rows.push(postgres(settings, 1, "PostgreSQL, 1 connection, 1 at a time").await?);
    crate::progress("1: lifecycle, PostgreSQL pool of 8");
    rows.push(postgres(settings, 8, "PostgreSQL, pool of 8, 8 concurrent attempts").await?);
    rows.push(crate::single::attempt_latency(settings).await?);
    rows.push(crate::single::whole_process(settings).await?);
    Ok(rows)
}

/// The floor's connection, locked (one floor worker uses it at a time).
fn lock(conn: &Mutex<rusqlite::Connection>) -> MutexGuard<'_, rusqlite::Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}
