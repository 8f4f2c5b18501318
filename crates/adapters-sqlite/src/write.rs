//! The write port on SQLite: every write of an attempt, each applied by the store's writer in
//! a `BEGIN IMMEDIATE` transaction it may share with other writes (see `writer.rs`).
//!
//! `BEGIN IMMEDIATE` takes the write lock before the first read, so a transaction never has to
//! upgrade a read lock into a write lock: two writers queue on the busy timeout instead of one of
//! them failing with `SQLITE_BUSY` halfway through. Each write runs in a savepoint of its own, so
//! an early return (an `Err`) rolls back what that write did, and only that.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::SqliteConnection;
use stint_domain::{
    AttemptKey, AttemptRecord, AttemptState, Event, EventKind, NodeKey, ProcessPlace,
};
use stint_ports::{
    AttemptEnd, AttemptEnded, AttemptStore, BeginAttempt, BegunAttempt, EndAttempt, HeartbeatWrite,
    OwnedAttempt, Renewal, RenewedLease, StoreError,
};

use crate::SqliteStore;
use crate::error::{map, to_i64, to_json, to_u32};
use crate::query::{SqliteQuery, bind_node};

/// Binds the four columns of an attempt key, in key order.
pub(crate) fn bind_attempt<'a>(query: SqliteQuery<'a>, key: &AttemptKey) -> SqliteQuery<'a> {
    bind_node(query, &key.node).bind(key.attempt)
}

/// Appends `events` inside the caller's transaction, in order.
pub(crate) async fn insert_events(
    conn: &mut SqliteConnection,
    events: &[Event],
) -> Result<(), StoreError> {
    for event in events {
        let body = to_json(event, "event")?;
        sqlx::query(
            "INSERT INTO events (run_id, node_id, iteration, attempt, type, timestamp_ms, body) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(event.run_id.as_str())
        .bind(event.node_id.as_str())
        .bind(event.iteration)
        .bind(event.attempt)
        .bind(event.kind.type_name())
        .bind(to_i64(event.timestamp_ms, "timestamp")?)
        .bind(body)
        .execute(&mut *conn)
        .await
        .map_err(map)?;
    }
    Ok(())
}

/// Allocates the next attempt number, reads the checkpoint and the earlier failures, inserts
/// the attempt, upserts the node and appends `NodeStarted`.
async fn begin_attempt(
    tx: &mut SqliteConnection,
    begin: BeginAttempt,
) -> Result<BegunAttempt, StoreError> {
    let node = &begin.node;
    let summary = bind_node(
        sqlx::query(
            "SELECT COALESCE(MAX(attempt), 0) AS last_attempt, \
                    COALESCE(SUM(state = 'in-progress'), 0) AS in_progress, \
                    COALESCE(SUM(state = 'failed'), 0) AS failed \
             FROM attempts WHERE run_id = ? AND node_id = ? AND iteration = ?",
        ),
        node,
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(map)?;
    let last_attempt = to_u32(
        summary.try_get("last_attempt").map_err(map)?,
        "attempt number",
    )?;
    let in_progress: i64 = summary.try_get("in_progress").map_err(map)?;
    if in_progress > 0 {
        return Err(StoreError::attempt_in_progress(node, last_attempt));
    }
    let failed_before = to_u32(summary.try_get("failed").map_err(map)?, "failure count")?;
    let attempt = last_attempt
        .checked_add(1)
        .ok_or_else(|| StoreError::attempt_numbers_exhausted(node))?;
    let checkpoint = checkpoint_in(tx, node).await?;
    let key = node.attempt(attempt);
    insert_rows(tx, &begin, &key).await?;
    let started = Event::new(&key, begin.started_at_ms, EventKind::NodeStarted);
    insert_events(tx, &[started]).await?;
    tracing::debug!(attempt = %key, failed_before, "attempt begun");
    Ok(BegunAttempt {
        attempt,
        checkpoint,
        failed_before,
    })
}

/// Inserts the attempt row of `key` (`in-progress`) and upserts its node's row.
async fn insert_rows(
    conn: &mut SqliteConnection,
    begin: &BeginAttempt,
    key: &AttemptKey,
) -> Result<(), StoreError> {
    let node = &begin.node;
    let started_at_ms = to_i64(begin.started_at_ms, "start time")?;
    bind_attempt(
        sqlx::query(
            "INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner, \
                 lease_expires_at_ms, started_at_ms, metadata, working_dir) \
             VALUES (?, ?, ?, ?, 'in-progress', ?, ?, ?, ?, ?)",
        ),
        key,
    )
    .bind(begin.owner.as_str())
    .bind(to_i64(
        begin.started_at_ms.saturating_add(begin.lease_ms),
        "lease expiry",
    )?)
    .bind(started_at_ms)
    .bind(to_json(&begin.metadata, "metadata")?)
    .bind(begin.working_dir.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    bind_node(
        sqlx::query(
            "INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms, \
                 output_table, label) \
             VALUES (?, ?, ?, 'in-progress', ?, ?, ?, ?) \
             ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
                 state = excluded.state, last_attempt = excluded.last_attempt, \
                 updated_at_ms = excluded.updated_at_ms, output_table = excluded.output_table, \
                 label = excluded.label",
        ),
        node,
    )
    .bind(key.attempt)
    .bind(started_at_ms)
    .bind(begin.output_table.as_deref())
    .bind(begin.label.as_deref())
    .execute(&mut *conn)
    .await
    .map_err(map)?;
    Ok(())
}

/// The payload of the newest attempt of `node` that recorded one.
async fn checkpoint_in(
    conn: &mut SqliteConnection,
    node: &NodeKey,
) -> Result<Option<Value>, StoreError> {
    let row = bind_node(
        sqlx::query(
            "SELECT heartbeat FROM attempts \
             WHERE run_id = ? AND node_id = ? AND iteration = ? AND heartbeat IS NOT NULL \
             ORDER BY attempt DESC LIMIT 1",
        ),
        node,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(map)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let text: String = row.try_get(0).map_err(map)?;
    // A checkpoint this version cannot read back must not stop the node from running again.
    Ok(serde_json::from_str(&text)
        .inspect_err(|error| {
            tracing::warn!(%node, %error, "the last checkpoint cannot be read back; starting without it");
        })
        .ok())
}

/// The conflict every owner-conditional write returns when it matches no row.
fn not_owned(attempt: &OwnedAttempt) -> StoreError {
    StoreError::not_owned(&attempt.key)
}

/// Runs an owner-conditional update in `tx`; zero rows is a conflict (and the caller's
/// transaction, dropped by the `?`, rolls back).
async fn update_owned(
    tx: &mut SqliteConnection,
    query: SqliteQuery<'_>,
    attempt: &OwnedAttempt,
) -> Result<(), StoreError> {
    let done = bind_attempt(query, &attempt.key)
        .bind(attempt.owner.as_str())
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    if done.rows_affected() == 0 {
        return Err(not_owned(attempt));
    }
    Ok(())
}

/// `$head` followed by the owner-conditional `WHERE` every later write of an attempt carries.
/// A macro rather than `format!`, so the SQL stays a `&'static str` with nothing spliced in.
macro_rules! owned_update {
    ($head:literal) => {
        concat!(
            $head,
            " WHERE run_id = ? AND node_id = ? AND iteration = ? AND attempt = ?",
            " AND state = 'in-progress' AND owner = ?"
        )
    };
}

/// Writes one coalesced heartbeat and its event.
async fn record_heartbeat(
    tx: &mut SqliteConnection,
    attempt: &OwnedAttempt,
    heartbeat: HeartbeatWrite,
) -> Result<(), StoreError> {
    let payload = heartbeat
        .payload
        .as_ref()
        .map(|p| to_json(p, "heartbeat"))
        .transpose()?;
    let received = to_i64(heartbeat.received_at_ms, "heartbeat time")?;
    // A bare ping (NULL payload) keeps the stored checkpoint; the received time never goes back.
    let sql = owned_update!(
        "UPDATE attempts SET heartbeat = COALESCE(?, heartbeat), \
             last_heartbeat_at_ms = MAX(COALESCE(last_heartbeat_at_ms, ?), ?)"
    );
    let query = sqlx::query(sql).bind(payload).bind(received).bind(received);
    update_owned(tx, query, attempt).await?;
    insert_events(tx, &[heartbeat.event]).await
}

/// Extends the owner's lease.
async fn renew_lease(
    tx: &mut SqliteConnection,
    attempt: &OwnedAttempt,
    lease_expires_at_ms: u64,
) -> Result<RenewedLease, StoreError> {
    let sql = concat!(
        owned_update!("UPDATE attempts SET lease_expires_at_ms = ?"),
        " RETURNING cancel_requested"
    );
    let query = sqlx::query_scalar(sql).bind(to_i64(lease_expires_at_ms, "lease expiry")?);
    let cancel_requested: Option<bool> = query
        .bind(attempt.key.node.run_id())
        .bind(attempt.key.node.node_id())
        .bind(attempt.key.node.iteration())
        .bind(attempt.key.attempt)
        .bind(attempt.owner.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
    let cancel_requested = cancel_requested.ok_or_else(|| not_owned(attempt))?;
    Ok(RenewedLease { cancel_requested })
}

/// Flags the in-progress attempts of `run_id` for cancellation.
async fn request_cancel(
    tx: &mut SqliteConnection,
    run_id: &str,
) -> Result<Vec<AttemptKey>, StoreError> {
    let rows = sqlx::query(
        "UPDATE attempts SET cancel_requested = 1 \
         WHERE run_id = ? AND state = 'in-progress' \
         RETURNING node_id, iteration, attempt",
    )
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await
    .map_err(map)?;
    let mut asked = Vec::with_capacity(rows.len());
    for row in rows {
        let node = NodeKey::new(
            run_id,
            row.try_get::<String, _>("node_id").map_err(map)?,
            row.try_get::<u32, _>("iteration").map_err(map)?,
        )
        .map_err(|error| StoreError::incompatible(format!("stored key is invalid: {error}")))?;
        asked.push(node.attempt(row.try_get::<u32, _>("attempt").map_err(map)?));
    }
    asked.sort_by(|a, b| {
        (a.node.node_id(), a.node.iteration(), a.attempt).cmp(&(
            b.node.node_id(),
            b.node.iteration(),
            b.attempt,
        ))
    });
    Ok(asked)
}

/// Records where the attempt's process group lives.
async fn record_process(
    tx: &mut SqliteConnection,
    attempt: &OwnedAttempt,
    place: &ProcessPlace,
) -> Result<(), StoreError> {
    let sql = owned_update!("UPDATE attempts SET process = ?");
    let query = sqlx::query(sql).bind(to_json(place, "process place")?);
    update_owned(tx, query, attempt).await
}

/// Writes the terminal state of attempt and node, the output, `events` and the task's end.
async fn end_attempt(
    tx: &mut SqliteConnection,
    attempt: &OwnedAttempt,
    ending: EndAttempt,
) -> Result<AttemptEnded, StoreError> {
    let (end, finished_at_ms, events) = (ending.end, ending.finished_at_ms, ending.events);
    let finished = to_i64(finished_at_ms, "finish time")?;
    let (state, error, retryable, vcs, output) = match &end {
        AttemptEnd::Finished { output, vcs } => (
            AttemptState::Finished,
            None,
            None,
            vcs.clone(),
            Some(to_json(output, "output")?),
        ),
        AttemptEnd::Failed { error, retryable } => (
            AttemptState::Failed,
            Some(to_json(error, "error")?),
            Some(*retryable),
            None,
            None,
        ),
        AttemptEnd::Cancelled { error } => (
            AttemptState::Cancelled,
            Some(to_json(error, "error")?),
            None,
            None,
            None,
        ),
    };
    let sql = owned_update!(
        "UPDATE attempts SET state = ?, finished_at_ms = ?, error = ?, retryable = ?, vcs = ?"
    );
    let query = sqlx::query(sql)
        .bind(state.as_str())
        .bind(finished)
        .bind(error)
        .bind(retryable)
        .bind(vcs);
    update_owned(tx, query, attempt).await?;
    update_node(tx, &attempt.key, state, finished).await?;
    if let Some(output) = output {
        bind_node(
            sqlx::query(
                "INSERT INTO outputs (run_id, node_id, iteration, attempt, output, written_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
                     attempt = excluded.attempt, output = excluded.output, \
                     written_at_ms = excluded.written_at_ms",
            ),
            &attempt.key.node,
        )
        .bind(attempt.key.attempt)
        .bind(output)
        .bind(finished)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
    }
    insert_events(tx, &events).await?;
    let task_ended = match &ending.task {
        Some(task) => crate::queue::complete_claimed(tx, task).await?,
        None => false,
    };
    tracing::debug!(attempt = %attempt.key, %state, task_ended, "attempt ended");
    Ok(AttemptEnded { task_ended })
}

/// Gives the node of `key` the state of that attempt, if it is still the node's last attempt.
pub(crate) async fn update_node(
    tx: &mut SqliteConnection,
    key: &AttemptKey,
    state: AttemptState,
    updated_at_ms: i64,
) -> Result<(), StoreError> {
    bind_attempt(
        sqlx::query("UPDATE nodes SET state = ?, updated_at_ms = ? WHERE run_id = ? AND node_id = ? AND iteration = ? AND last_attempt = ?")
            .bind(state.as_str())
            .bind(updated_at_ms),
        key,
    )
    .execute(&mut *tx)
    .await
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        self.write(move |tx| Box::pin(begin_attempt(tx, begin)))
            .await
    }

    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        let attempt = attempt.clone();
        self.write(move |tx| {
            Box::pin(async move { record_heartbeat(tx, &attempt, heartbeat).await })
        })
        .await
    }

    async fn record_process(
        &self,
        attempt: &OwnedAttempt,
        place: ProcessPlace,
    ) -> Result<(), StoreError> {
        let attempt = attempt.clone();
        self.write(move |tx| Box::pin(async move { record_process(tx, &attempt, &place).await }))
            .await
    }

    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        renewal: Renewal,
    ) -> Result<RenewedLease, StoreError> {
        // One host shares one clock: the caller's is the store's.
        let (attempt, expires_at_ms) = (attempt.clone(), renewal.expires_at_ms());
        self.write(move |tx| {
            Box::pin(async move { renew_lease(tx, &attempt, expires_at_ms).await })
        })
        .await
    }

    async fn request_cancel(&self, run_id: &str) -> Result<Vec<AttemptKey>, StoreError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| Box::pin(async move { request_cancel(tx, &run_id).await }))
            .await
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: EndAttempt,
    ) -> Result<AttemptEnded, StoreError> {
        let attempt = attempt.clone();
        self.write(move |tx| Box::pin(async move { end_attempt(tx, &attempt, end).await }))
            .await
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        self.write(move |tx| Box::pin(crate::recovery::recover_abandoned(tx, now_ms)))
            .await
    }

    async fn expired_attempts(&self, now_ms: u64) -> Result<Vec<AttemptRecord>, StoreError> {
        crate::query::expired_attempts(self.pool(), now_ms).await
    }
}
