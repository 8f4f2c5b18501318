//! Wake-ups on SQLite: [`SqliteWakeups`] reads `PRAGMA data_version` on a connection of its own
//! every few milliseconds and wakes the worker when it changed, that is when any other
//! connection (another process's included) committed a write to the file.
//!
//! The check is cheap (no table is read) but not selective: any commit wakes the worker, the
//! worker's own among them, and a wake-up costs one claim. An empty claim writes nothing, so an
//! idle worker stays idle. A submitter in the worker's own process wakes it through
//! `Worker::wake` instead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnection;
use stint_ports::{StoreError, Wakeups};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::SqliteStore;
use crate::error::map;

/// How often the change check runs by default.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_millis(5);

/// Wakes a worker when the database file changed (see the module documentation). Dropping it
/// stops the check and closes its connection.
#[derive(Debug)]
pub struct SqliteWakeups {
    wake: Arc<Notify>,
    check: JoinHandle<()>,
}

impl Drop for SqliteWakeups {
    fn drop(&mut self) {
        self.check.abort();
    }
}

#[async_trait]
impl Wakeups for SqliteWakeups {
    async fn next(&self) {
        self.wake.notified().await;
    }
}

async fn data_version(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(conn)
        .await
}

impl SqliteStore {
    /// Opens a connection of its own to this store's file and checks `PRAGMA data_version` on
    /// it every `interval`, waking the worker at each change. Must be called inside a tokio
    /// runtime.
    pub async fn wakeups(&self, interval: Duration) -> Result<SqliteWakeups, StoreError> {
        let mut conn = self.pool.connect_options().connect().await.map_err(map)?;
        let mut seen = data_version(&mut conn).await.map_err(map)?;
        let wake = Arc::new(Notify::new());
        let check = tokio::spawn({
            let wake = wake.clone();
            async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    match data_version(&mut conn).await {
                        Ok(version) if version != seen => {
                            seen = version;
                            wake.notify_one();
                        }
                        Ok(_) => {}
                        Err(error) => {
                            // A failed check may have missed a change: wake, and go on.
                            tracing::debug!(%error, "the data_version check failed");
                            wake.notify_one();
                        }
                    }
                }
            }
        });
        Ok(SqliteWakeups { wake, check })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use stint_ports::{Claim, NewTask, TaskQueue};

    use super::*;
    use crate::SqliteOptions;

    #[tokio::test]
    async fn a_commit_elsewhere_wakes_and_an_empty_claim_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.db");
        let store = SqliteStore::open(&path, SqliteOptions::default())
            .await
            .expect("open");
        let other = SqliteStore::open(&path, SqliteOptions::default())
            .await
            .expect("open again");
        let wakeups = store
            .wakeups(Duration::from_millis(2))
            .await
            .expect("wakeups");
        let claim = Claim {
            queues: vec!["default".to_owned()],
            owner: "w".to_owned(),
            max: 4,
            now_ms: 10,
            lease_ms: 1_000,
        };
        assert!(other.claim(claim).await.expect("claim").is_empty());
        let woken = tokio::time::timeout(Duration::from_millis(200), wakeups.next()).await;
        assert!(woken.is_err(), "an empty claim changed the file");
        other
            .enqueue(vec![NewTask::new("r", "n", 0, json!({}))], 10)
            .await
            .expect("enqueue");
        tokio::time::timeout(Duration::from_secs(5), wakeups.next())
            .await
            .expect("a commit from another handle wakes");
    }
}
