//! PostgreSQL storage adapter of stint: many workers on many machines, one database.
//!
//! [`PostgresStore`] implements the write port ([`AttemptStore`](stint_ports::AttemptStore)) and
//! the query port ([`HistoryStore`](stint_ports::HistoryStore)), and the queue's ports
//! ([`TaskQueue`](stint_ports::TaskQueue), [`QueueHistory`](stint_ports::QueueHistory)), over a
//! sqlx pool, and [`PostgresWakeups`], the LISTEN/NOTIFY wake-ups of a worker
//! ([`PostgresStore::wakeups`]). Every query is a runtime query with
//! every value bound; the only identifier ever written into SQL text is the validated schema name
//! of `?schema=`. Migrations are embedded and run on [`PostgresStore::connect`].
//!
//! Concurrency, which is what this adapter exists for:
//! - attempt numbers are allocated under the node's row lock (`INSERT ... ON CONFLICT DO UPDATE`
//!   on `nodes` takes it), so racing executors on any machine get 1, 2, 3... without gaps;
//! - every later write is conditional on `state = 'in-progress' AND owner = token`;
//! - the recovery sweep locks expired attempts with `FOR UPDATE SKIP LOCKED`, so concurrent
//!   recoverers mark each one once;
//! - event sequence numbers of one run are allocated under a transaction-scoped advisory lock
//!   keyed by the run, taken just before the insert and held to commit, so within a run seq order
//!   is commit order and a reader tailing `seq > last` never skips an event committed late.
#![deny(missing_docs)]

/// Now on the database's clock, in milliseconds since the epoch, as SQL.
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

mod combiner;
mod enqueue;
mod error;
mod events;
mod listen;
mod notify;
mod ops;
mod options;
mod prune;
mod query;
mod queue;
mod queue_history;
mod recovery;
#[cfg(feature = "test-support")]
pub mod test_support;
mod write;

use std::future::Future;
use std::sync::Arc;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use stint_ports::StoreError;

pub use listen::{PostgresWakeups, WakeupOptions};
pub use options::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_CONNECTIONS, validate_schema,
};

#[doc(hidden)]
pub use crate::combiner::WRITE_BATCH;
use crate::combiner::{Combined, Combiner};
use crate::error::{OpError, map_migrate, map_sqlx};
#[doc(hidden)]
pub use crate::events::run_lock_key;
use crate::options::StoreConfig;

/// Server-side bounds of every pooled session, so that nothing a stint process started can hold
/// the database for long, even when the process is cut off from it (a network partition): a
/// transaction left open by a silent client is ended, and its row locks released, after 30 s;
/// a lock wait gives up after 10 s; a statement after 60 s. (TCP keepalive would notice a dead
/// server sooner, but sqlx 0.9 cannot set it; the engine bounds every call it makes instead.)
const SESSION_BOUNDS: [(&str, &str); 3] = [
    ("idle_in_transaction_session_timeout", "30s"),
    ("lock_timeout", "10s"),
    ("statement_timeout", "60s"),
];

fn with_session_bounds(options: PgConnectOptions) -> PgConnectOptions {
    options.options(SESSION_BOUNDS)
}

/// A stint store in a PostgreSQL database (one schema of it).
///
/// Cloning is cheap and shares the pool.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// `host:port`, for error messages (never the password).
    endpoint: Arc<str>,
    /// Whose clock judges leases.
    lease_clock: LeaseClock,
    /// The channel writes that make tasks ready notify (see [`PostgresStore::wakeups`]).
    channel: Arc<str>,
    /// Where the attempt writes go to share commits.
    combiner: Combiner,
}

/// Whose clock sets and judges lease expiry.
///
/// Machines sharing one database do not share a clock: a machine whose clock runs ahead by more
/// than the lease would declare live attempts abandoned. So by default the database's clock
/// (`clock_timestamp()`) sets every expiry (begin, renewal) and judges it (recovery), and the
/// callers' clocks only stamp events and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaseClock {
    /// The database's clock (the default).
    #[default]
    Database,
    /// The times the caller passes, as the embedded stores use them: for the conformance suite,
    /// whose cases use fixed times.
    Caller,
}

impl PostgresStore {
    /// Opens the store at `url`, creating the schema and running migrations as needed.
    ///
    /// `url` is a libpq-style URL (`postgres://user:password@host:port/database`) with optional
    /// query parameters read by stint: `max_connections` (pool size, default 8), `connect_timeout`
    /// (seconds to establish a connection, default 5), `acquire_timeout` (seconds a query waits for
    /// a pooled connection, default 30) and `schema` (the schema holding the tables, created if
    /// missing; default: the server's search path). Other parameters (`sslmode`, `options`...) go
    /// to sqlx. Without a user in the URL, the user is `PGUSER`, else the OS user, as with libpq.
    ///
    /// Errors: [`StoreError::Unavailable`] when the server cannot be reached, refuses the login
    /// or lacks the database (naming host and port, never the password);
    /// [`StoreError::Incompatible`] when the schema was migrated by a newer stint.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let config = StoreConfig::parse(url)?;
        let endpoint: Arc<str> = config.endpoint.clone().into();
        // A probe first: it reports why the server cannot be reached (refused, unknown user...)
        // at once, where the pool would retry until its timeout and report only that.
        let probe = Self::connect_one(&config).await?;
        if let Err(error) = probe.close().await {
            tracing::debug!(%error, "closing the probe connection failed");
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .connect_lazy_with(with_session_bounds(config.options.clone()));
        if let Err(error) = Self::migrate(&pool, &config).await {
            // Closing drops the migrator's connection, and with it any session-level advisory
            // lock it still held after failing half way.
            pool.close().await;
            return Err(error);
        }
        tracing::debug!(endpoint = %endpoint, schema = ?config.schema, "PostgreSQL store open");
        Ok(Self {
            combiner: Combiner::start(pool.clone(), endpoint.clone()),
            pool,
            endpoint,
            lease_clock: LeaseClock::Database,
            channel: notify::channel(config.schema.as_deref()).into(),
        })
    }

    async fn connect_one(config: &StoreConfig) -> Result<PgConnection, StoreError> {
        let connecting = PgConnection::connect_with(&config.options);
        match tokio::time::timeout(config.connect_timeout, connecting).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(error)) => Err(map_sqlx(&config.endpoint, "connecting", error)),
            Err(_elapsed) => Err(StoreError::unavailable(format!(
                "no answer from PostgreSQL at {} within {} s (connect_timeout)",
                config.endpoint,
                config.connect_timeout.as_secs_f32()
            ))),
        }
    }

    async fn migrate(pool: &PgPool, config: &StoreConfig) -> Result<(), StoreError> {
        let mut migrator = sqlx::migrate!("./migrations");
        if let Some(schema) = &config.schema {
            // Created by the migrator under its advisory lock, so concurrent openers of a new
            // schema do not race on CREATE SCHEMA.
            migrator.create_schema(schema.clone());
        }
        migrator
            .run(pool)
            .await
            .map_err(|error| map_migrate(&config.endpoint, &error))
    }

    /// The same store, its leases judged by `clock`.
    #[must_use]
    pub fn with_lease_clock(mut self, clock: LeaseClock) -> Self {
        self.lease_clock = clock;
        self
    }

    /// The caller's time when leases follow the caller's clock; `None` (the database's clock)
    /// otherwise. Bound as `COALESCE($n, database now)` in every lease statement.
    pub(crate) fn lease_now(&self, caller_now_ms: u64) -> Option<i64> {
        match self.lease_clock {
            LeaseClock::Caller => Some(crate::error::to_i64(caller_now_ms)),
            LeaseClock::Database => None,
        }
    }

    /// Runs `op` on this store's pool as [`error::retrying`] does: again while PostgreSQL aborts
    /// it as transient, and with `what` and the endpoint named in the error it ends in.
    pub(crate) async fn retrying<'a, T, F, Fut>(
        &'a self,
        what: &str,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut(&'a PgPool) -> Fut,
        Fut: Future<Output = Result<T, OpError>>,
    {
        crate::error::retrying(&self.endpoint, what, || op(&self.pool)).await
    }

    /// Applies the attempt write `op` through the combiner (see [`combiner`]): one try, answered
    /// as `T`. `lock_key` is the event-lock key of its run.
    pub(crate) async fn combined<T: serde::de::DeserializeOwned>(
        &self,
        pool: &PgPool,
        op: &impl serde::Serialize,
        lock_key: i64,
    ) -> Result<T, OpError> {
        let op = crate::write::json("a write", op)?;
        self.combined_value(pool, op, lock_key).await
    }

    /// As [`PostgresStore::combined`], for a write already in its JSON form.
    pub(crate) async fn combined_value<T: serde::de::DeserializeOwned>(
        &self,
        pool: &PgPool,
        op: serde_json::Value,
        lock_key: i64,
    ) -> Result<T, OpError> {
        match self.combiner.write(pool, op, lock_key).await {
            Combined::Done(answer) => serde_json::from_value(answer).map_err(|error| {
                OpError::Store(StoreError::incompatible(format!(
                    "a write's answer does not decode: {error}"
                )))
            }),
            Combined::Failed(error) => Err(error),
        }
    }

    /// The value of the server setting `name` in a session of this store's pool (for tests and
    /// diagnostics).
    pub async fn session_setting(&self, name: &str) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT current_setting($1)")
            .bind(name)
            .fetch_one(&self.pool)
            .await
            .map_err(|error| map_sqlx(&self.endpoint, "reading a setting", error))
    }

    /// Closes the pool; later calls fail with [`StoreError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
