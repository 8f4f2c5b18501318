//! The write port on SQLite: every write of an attempt, each applied by the store's writer in
//! a `BEGIN IMMEDIATE` transaction it may share with other writes (see `writer.rs`).
//!
//! `BEGIN IMMEDIATE` takes the write lock before the first read, so a transaction never has to
//! upgrade a read lock into a write lock: two writers queue on the busy timeout instead of one of
//! them failing with `SQLITE_BUSY` halfway through. An early return (an `Err`) rolls back what
//! that write did, and only that (the writer replays the batch with the write in a savepoint).

use async_trait::async_trait;
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use stint_domain::{
    AttemptKey, AttemptRecord, AttemptState, Event, EventKind, NodeKey, ProcessPlace,
};
use stint_ports::{
    AttemptEnd, AttemptEnded, AttemptStore, BeginAttempt, BegunAttempt, EndAttempt, HeartbeatWrite,
    OwnedAttempt, Renewal, RenewedLease, StoreError,
};

use crate::SqliteStore;
use crate::error::{map_rusqlite as map, to_i64, to_json, to_u32};
use crate::writer::statement;

/// Appends `events` inside the caller's transaction, in order.
pub(crate) fn insert_events(conn: &Connection, events: &[Event]) -> Result<(), StoreError> {
    let mut insert = statement(
        conn,
        "INSERT INTO events (run_id, node_id, iteration, attempt, type, timestamp_ms, body) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?;
    for event in events {
        let body = to_json(event, "event")?;
        insert
            .execute(params![
                event.run_id,
                event.node_id,
                event.iteration,
                event.attempt,
                event.kind.type_name(),
                to_i64(event.timestamp_ms, "timestamp")?,
                body,
            ])
            .map_err(map)?;
    }
    Ok(())
}

/// Allocates the next attempt number, reads the checkpoint and the earlier failures, inserts
/// the attempt, upserts the node and appends `NodeStarted`.
fn begin_attempt(tx: &Connection, begin: &BeginAttempt) -> Result<BegunAttempt, StoreError> {
    let node = &begin.node;
    let (last_attempt, in_progress, failed): (i64, i64, i64) = statement(
        tx,
        "SELECT COALESCE(MAX(attempt), 0) AS last_attempt, \
                COALESCE(SUM(state = 'in-progress'), 0) AS in_progress, \
                COALESCE(SUM(state = 'failed'), 0) AS failed \
         FROM attempts WHERE run_id = ? AND node_id = ? AND iteration = ?",
    )?
    .query_row(
        params![node.run_id(), node.node_id(), node.iteration()],
        |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
    )
    .map_err(map)?;
    let last_attempt = to_u32(last_attempt, "attempt number")?;
    if in_progress > 0 {
        return Err(StoreError::attempt_in_progress(node, last_attempt));
    }
    let failed_before = to_u32(failed, "failure count")?;
    let attempt = last_attempt
        .checked_add(1)
        .ok_or_else(|| StoreError::attempt_numbers_exhausted(node))?;
    let checkpoint = checkpoint_in(tx, node)?;
    let key = node.attempt(attempt);
    insert_rows(tx, begin, &key)?;
    let started = Event::new(&key, begin.started_at_ms, EventKind::NodeStarted);
    insert_events(tx, &[started])?;
    tracing::debug!(attempt = %key, failed_before, "attempt begun");
    Ok(BegunAttempt {
        attempt,
        checkpoint,
        failed_before,
    })
}

/// Inserts the attempt row of `key` (`in-progress`) and upserts its node's row.
fn insert_rows(
    conn: &Connection,
    begin: &BeginAttempt,
    key: &AttemptKey,
) -> Result<(), StoreError> {
    let node = &begin.node;
    let started_at_ms = to_i64(begin.started_at_ms, "start time")?;
    let lease_expires_at_ms = to_i64(
        begin.started_at_ms.saturating_add(begin.lease_ms),
        "lease expiry",
    )?;
    statement(
        conn,
        "INSERT INTO attempts (run_id, node_id, iteration, attempt, state, owner, \
             lease_expires_at_ms, started_at_ms, metadata, working_dir) \
         VALUES (?, ?, ?, ?, 'in-progress', ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        node.run_id(),
        node.node_id(),
        node.iteration(),
        key.attempt,
        begin.owner,
        lease_expires_at_ms,
        started_at_ms,
        to_json(&begin.metadata, "metadata")?,
        begin.working_dir,
    ])
    .map_err(map)?;
    statement(
        conn,
        "INSERT INTO nodes (run_id, node_id, iteration, state, last_attempt, updated_at_ms, \
             output_table, label) \
         VALUES (?, ?, ?, 'in-progress', ?, ?, ?, ?) \
         ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
             state = excluded.state, last_attempt = excluded.last_attempt, \
             updated_at_ms = excluded.updated_at_ms, output_table = excluded.output_table, \
             label = excluded.label",
    )?
    .execute(params![
        node.run_id(),
        node.node_id(),
        node.iteration(),
        key.attempt,
        started_at_ms,
        begin.output_table,
        begin.label,
    ])
    .map_err(map)?;
    Ok(())
}

/// The payload of the newest attempt of `node` that recorded one.
fn checkpoint_in(conn: &Connection, node: &NodeKey) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = statement(
        conn,
        "SELECT heartbeat FROM attempts \
         WHERE run_id = ? AND node_id = ? AND iteration = ? AND heartbeat IS NOT NULL \
         ORDER BY attempt DESC LIMIT 1",
    )?
    .query_row(
        params![node.run_id(), node.node_id(), node.iteration()],
        |row| row.get(0),
    )
    .optional()
    .map_err(map)?;
    let Some(text) = text else {
        return Ok(None);
    };
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

/// Runs the owner-conditional update `sql` with `values`, then the attempt's key and owner for
/// its `WHERE`; zero rows is a conflict (and the writer rolls the write back).
fn update_owned(
    tx: &Connection,
    sql: &'static str,
    values: &[&dyn ToSql],
    attempt: &OwnedAttempt,
) -> Result<(), StoreError> {
    let node = &attempt.key.node;
    let (run_id, node_id, iteration) = (node.run_id(), node.node_id(), node.iteration());
    let mut bound = values.to_vec();
    bound.extend_from_slice(&[
        &run_id,
        &node_id,
        &iteration,
        &attempt.key.attempt,
        &attempt.owner,
    ]);
    let changed = statement(tx, sql)?.execute(bound.as_slice()).map_err(map)?;
    if changed == 0 {
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
fn record_heartbeat(
    tx: &Connection,
    attempt: &OwnedAttempt,
    heartbeat: &HeartbeatWrite,
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
    update_owned(tx, sql, &[&payload, &received, &received], attempt)?;
    insert_events(tx, std::slice::from_ref(&heartbeat.event))
}

/// Extends the owner's lease.
fn renew_lease(
    tx: &Connection,
    attempt: &OwnedAttempt,
    lease_expires_at_ms: u64,
) -> Result<RenewedLease, StoreError> {
    let sql = concat!(
        owned_update!("UPDATE attempts SET lease_expires_at_ms = ?"),
        " RETURNING cancel_requested"
    );
    let node = &attempt.key.node;
    let cancel_requested: Option<bool> = statement(tx, sql)?
        .query_row(
            params![
                to_i64(lease_expires_at_ms, "lease expiry")?,
                node.run_id(),
                node.node_id(),
                node.iteration(),
                attempt.key.attempt,
                attempt.owner,
            ],
            |row| row.get(0),
        )
        .optional()
        .map_err(map)?;
    let cancel_requested = cancel_requested.ok_or_else(|| not_owned(attempt))?;
    Ok(RenewedLease { cancel_requested })
}

/// Flags the in-progress attempts of `run_id` for cancellation.
fn request_cancel(tx: &Connection, run_id: &str) -> Result<Vec<AttemptKey>, StoreError> {
    let mut update = statement(
        tx,
        "UPDATE attempts SET cancel_requested = 1 \
         WHERE run_id = ? AND state = 'in-progress' \
         RETURNING node_id, iteration, attempt",
    )?;
    let rows = update
        .query_map([run_id], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, u32>(1)?,
                row.get::<_, u32>(2)?,
            ))
        })
        .map_err(map)?;
    let mut asked = Vec::new();
    for row in rows {
        let (node_id, iteration, attempt) = row.map_err(map)?;
        let node = NodeKey::new(run_id, node_id, iteration)
            .map_err(|error| StoreError::incompatible(format!("stored key is invalid: {error}")))?;
        asked.push(node.attempt(attempt));
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
fn record_process(
    tx: &Connection,
    attempt: &OwnedAttempt,
    place: &ProcessPlace,
) -> Result<(), StoreError> {
    let sql = owned_update!("UPDATE attempts SET process = ?");
    update_owned(tx, sql, &[&to_json(place, "process place")?], attempt)
}

/// Writes the terminal state of attempt and node, the output, `events` and the task's end.
fn end_attempt(
    tx: &Connection,
    attempt: &OwnedAttempt,
    ending: &EndAttempt,
) -> Result<AttemptEnded, StoreError> {
    let (end, finished_at_ms, events) = (&ending.end, ending.finished_at_ms, &ending.events);
    let finished = to_i64(finished_at_ms, "finish time")?;
    let (state, error, retryable, vcs, output) = match end {
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
    let values: [&dyn ToSql; 5] = [&state.as_str(), &finished, &error, &retryable, &vcs];
    update_owned(tx, sql, &values, attempt)?;
    update_node(tx, &attempt.key, state, finished)?;
    if let Some(output) = output {
        let node = &attempt.key.node;
        statement(
            tx,
            "INSERT INTO outputs (run_id, node_id, iteration, attempt, output, written_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (run_id, node_id, iteration) DO UPDATE SET \
                 attempt = excluded.attempt, output = excluded.output, \
                 written_at_ms = excluded.written_at_ms",
        )?
        .execute(params![
            node.run_id(),
            node.node_id(),
            node.iteration(),
            attempt.key.attempt,
            output,
            finished,
        ])
        .map_err(map)?;
    }
    insert_events(tx, events)?;
    let task_ended = match &ending.task {
        Some(task) => crate::queue::complete_claimed(tx, task)?,
        None => false,
    };
    tracing::debug!(attempt = %attempt.key, %state, task_ended, "attempt ended");
    Ok(AttemptEnded { task_ended })
}

/// Gives the node of `key` the state of that attempt, if it is still the node's last attempt.
pub(crate) fn update_node(
    tx: &Connection,
    key: &AttemptKey,
    state: AttemptState,
    updated_at_ms: i64,
) -> Result<(), StoreError> {
    statement(
        tx,
        "UPDATE nodes SET state = ?, updated_at_ms = ? \
         WHERE run_id = ? AND node_id = ? AND iteration = ? AND last_attempt = ?",
    )?
    .execute(params![
        state.as_str(),
        updated_at_ms,
        key.node.run_id(),
        key.node.node_id(),
        key.node.iteration(),
        key.attempt,
    ])
    .map_err(map)?;
    Ok(())
}

#[async_trait]
impl AttemptStore for SqliteStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        self.write(move |tx| begin_attempt(tx, &begin)).await
    }

    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        let attempt = attempt.clone();
        self.write(move |tx| record_heartbeat(tx, &attempt, &heartbeat))
            .await
    }

    async fn record_process(
        &self,
        attempt: &OwnedAttempt,
        place: ProcessPlace,
    ) -> Result<(), StoreError> {
        let attempt = attempt.clone();
        self.write(move |tx| record_process(tx, &attempt, &place))
            .await
    }

    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        renewal: Renewal,
    ) -> Result<RenewedLease, StoreError> {
        // One host shares one clock: the caller's is the store's.
        let (attempt, expires_at_ms) = (attempt.clone(), renewal.expires_at_ms());
        self.write(move |tx| renew_lease(tx, &attempt, expires_at_ms))
            .await
    }

    async fn request_cancel(&self, run_id: &str) -> Result<Vec<AttemptKey>, StoreError> {
        let run_id = run_id.to_owned();
        self.write(move |tx| request_cancel(tx, &run_id)).await
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: EndAttempt,
    ) -> Result<AttemptEnded, StoreError> {
        let attempt = attempt.clone();
        self.write(move |tx| end_attempt(tx, &attempt, &end)).await
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        self.write(move |tx| crate::recovery::recover_abandoned(tx, now_ms))
            .await
    }

    async fn expired_attempts(&self, now_ms: u64) -> Result<Vec<AttemptRecord>, StoreError> {
        crate::query::expired_attempts(self.pool(), now_ms).await
    }
}
