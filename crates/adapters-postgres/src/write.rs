//! The write port on PostgreSQL: begin, heartbeat, lease, end and the recovery sweep.

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Postgres;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgExecutor, PgPool};
use stint_domain::{
    AttemptKey, AttemptRecord, AttemptState, Event, EventKind, NodeKey, ProcessPlace,
};
use stint_ports::{
    AttemptEnd, AttemptEnded, AttemptStore, BeginAttempt, BegunAttempt, EndAttempt, HeartbeatWrite,
    OwnedAttempt, Renewal, RenewedLease, StoreError,
};

use crate::PostgresStore;
use crate::error::{OpError, to_i64, to_u32};
use crate::events::{EventBodies, run_lock_key};
use crate::ops::{
    BeginAnswer, BeginOp, EndAnswer, EndOp, HeartbeatAnswer, HeartbeatOp, OwnedKey, WriteOp,
};
use crate::queue::TaskEndColumns;

/// A query on the pool or in a transaction.
pub(crate) type PgQuery<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// The condition of every owned write: the attempt ($1 to $4), in progress, under the owner
/// token ($5).
macro_rules! owned_where {
    () => {
        " WHERE run_id = $1 AND node_id = $2 AND iteration = $3 AND attempt = $4 \
           AND state = 'in-progress' AND owner = $5"
    };
}

/// Binds `key` as $1 to $4: run, node, iteration and attempt number.
fn bind_key<'q>(query: PgQuery<'q>, key: &'q AttemptKey) -> PgQuery<'q> {
    query
        .bind(key.node.run_id())
        .bind(key.node.node_id())
        .bind(i64::from(key.node.iteration()))
        .bind(i64::from(key.attempt))
}

/// Runs an owned write (its condition [`owned_where!`], the key and owner bound first); one
/// that matched no row is [`not_owned`].
async fn execute_owned<'c>(
    query: PgQuery<'_>,
    executor: impl PgExecutor<'c>,
    attempt: &OwnedAttempt,
) -> Result<(), OpError> {
    if query.execute(executor).await?.rows_affected() == 0 {
        return Err(not_owned(attempt));
    }
    Ok(())
}

/// Attempt keys as four parallel arrays, for `unnest(text[], text[], bigint[], bigint[])`.
#[derive(Default)]
pub(crate) struct KeyArrays {
    run_ids: Vec<String>,
    node_ids: Vec<String>,
    iterations: Vec<i64>,
    numbers: Vec<i64>,
}

impl KeyArrays {
    pub(crate) fn push(&mut self, key: &AttemptKey) {
        self.run_ids.push(key.node.run_id().to_owned());
        self.node_ids.push(key.node.node_id().to_owned());
        self.iterations.push(i64::from(key.node.iteration()));
        self.numbers.push(i64::from(key.attempt));
    }

    /// Binds the four arrays as the next four parameters of `query`.
    pub(crate) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(&self.run_ids)
            .bind(&self.node_ids)
            .bind(&self.iterations)
            .bind(&self.numbers)
    }
}

/// An owned write's query: `sql` with the attempt's key and owner bound as $1 to $5.
fn owned<'q>(sql: &'static str, attempt: &'q OwnedAttempt) -> PgQuery<'q> {
    bind_key(sqlx::query(sql), &attempt.key).bind(&attempt.owner)
}

fn not_owned(attempt: &OwnedAttempt) -> OpError {
    OpError::Store(StoreError::not_owned(&attempt.key))
}

pub(crate) fn json(what: &str, value: &impl serde::Serialize) -> Result<Value, OpError> {
    serde_json::to_value(value).map_err(|error| {
        OpError::Store(StoreError::incompatible(format!(
            "{what} does not serialise: {error}"
        )))
    })
}

async fn begin_once(
    store: &PostgresStore,
    pool: &PgPool,
    begin: &BeginAttempt,
) -> Result<BegunAttempt, OpError> {
    let (op, lock_key) = begin_op(store, begin)?;
    let answer: BeginAnswer = store.combined_value(pool, op, lock_key).await?;
    begun(&begin.node, &answer)
}

/// `begin` as a combined write (a `stint_write_batch` op), and the lock key of its run.
pub(crate) fn begin_op(
    store: &PostgresStore,
    begin: &BeginAttempt,
) -> Result<(Value, i64), OpError> {
    let node = &begin.node;
    // The attempt number is the function's to fill in.
    let started = Event::new(
        &node.attempt(0),
        begin.started_at_ms,
        EventKind::NodeStarted,
    );
    let lock_key = run_lock_key(node.run_id());
    let op = WriteOp::Begin(BeginOp {
        run_id: node.run_id(),
        node_id: node.node_id(),
        iteration: node.iteration(),
        owner: &begin.owner,
        lease_ms: to_i64(begin.lease_ms),
        started_at_ms: to_i64(begin.started_at_ms),
        metadata: &begin.metadata,
        working_dir: begin.working_dir.as_deref(),
        output_table: begin.output_table.as_deref(),
        label: begin.label.as_deref(),
        lease_now: store.lease_now(begin.started_at_ms),
        lock_key,
        started: json("an event", &started)?,
    });
    Ok((json("a write", &op)?, lock_key))
}

/// What a begin of `node` answered: the attempt it began, or why none began.
pub(crate) fn begun(node: &NodeKey, answer: &BeginAnswer) -> Result<BegunAttempt, OpError> {
    let highest = to_u32("attempts.attempt", answer.highest)?;
    if answer.running > 0 {
        return Err(OpError::Store(StoreError::attempt_in_progress(
            node, highest,
        )));
    }
    let attempt = highest
        .checked_add(1)
        .filter(|_| answer.began)
        .ok_or_else(|| OpError::Store(StoreError::attempt_numbers_exhausted(node)))?;
    Ok(BegunAttempt {
        attempt,
        checkpoint: readable_checkpoint(node, answer.checkpoint.clone()),
        failed_before: to_u32("failed attempts", answer.failed)?,
    })
}

/// The checkpoint read as text; one this version cannot read back must not stop the node from
/// running again, so it is skipped with a warning.
fn readable_checkpoint(node: &NodeKey, text: Option<String>) -> Option<Value> {
    serde_json::from_str(&text?)
        .inspect_err(|error| {
            tracing::warn!(%node, %error, "the last checkpoint cannot be read back; starting without it");
        })
        .ok()
}

async fn heartbeat_once(
    store: &PostgresStore,
    pool: &PgPool,
    attempt: &OwnedAttempt,
    heartbeat: &HeartbeatWrite,
) -> Result<(), OpError> {
    let op = WriteOp::Heartbeat(HeartbeatOp {
        key: OwnedKey::of(attempt),
        payload: heartbeat.payload.as_ref(),
        received_at_ms: to_i64(heartbeat.received_at_ms),
        events: EventBodies::of(std::slice::from_ref(&heartbeat.event))?,
    });
    let lock_key = run_lock_key(attempt.key.node.run_id());
    let answer: HeartbeatAnswer = store.combined(pool, &op, lock_key).await?;
    if answer.written {
        Ok(())
    } else {
        Err(not_owned(attempt))
    }
}

/// The columns an [`AttemptEnd`] writes: state, error, retryable, VCS revision and output.
type EndColumns<'a> = (
    AttemptState,
    Option<Value>,
    Option<bool>,
    Option<&'a str>,
    Option<&'a Value>,
);

fn end_columns(end: &AttemptEnd) -> Result<EndColumns<'_>, OpError> {
    Ok(match end {
        AttemptEnd::Finished { output, vcs } => (
            AttemptState::Finished,
            None,
            None,
            vcs.as_deref(),
            Some(output),
        ),
        AttemptEnd::Failed { error, retryable } => (
            AttemptState::Failed,
            Some(json("the error", error)?),
            Some(*retryable),
            None,
            None,
        ),
        AttemptEnd::Cancelled { error } => (
            AttemptState::Cancelled,
            Some(json("the error", error)?),
            None,
            None,
            None,
        ),
    })
}

async fn end_once(
    store: &PostgresStore,
    pool: &PgPool,
    attempt: &OwnedAttempt,
    ending: &EndAttempt,
) -> Result<AttemptEnded, OpError> {
    let (state, error, retryable, vcs, output) = end_columns(&ending.end)?;
    let op = WriteOp::End(EndOp {
        key: OwnedKey::of(attempt),
        state: state.as_str(),
        finished_at_ms: to_i64(ending.finished_at_ms),
        error,
        retryable,
        vcs,
        output,
        task: TaskEndColumns::of(ending.task.as_ref(), &store.channel),
        events: EventBodies::of(&ending.events)?,
    });
    let lock_key = run_lock_key(attempt.key.node.run_id());
    let answer: EndAnswer = store.combined(pool, &op, lock_key).await?;
    if !answer.ended {
        return Err(not_owned(attempt));
    }
    Ok(AttemptEnded {
        task_ended: answer.task_ended,
    })
}

#[async_trait]
impl AttemptStore for PostgresStore {
    async fn begin_attempt(&self, begin: BeginAttempt) -> Result<BegunAttempt, StoreError> {
        let begin = &begin;
        self.retrying("beginning an attempt", |pool| begin_once(self, pool, begin))
            .await
    }

    async fn record_heartbeat(
        &self,
        attempt: &OwnedAttempt,
        heartbeat: HeartbeatWrite,
    ) -> Result<(), StoreError> {
        let heartbeat = &heartbeat;
        self.retrying("recording a heartbeat", |pool| {
            heartbeat_once(self, pool, attempt, heartbeat)
        })
        .await
    }

    async fn record_process(
        &self,
        attempt: &OwnedAttempt,
        place: ProcessPlace,
    ) -> Result<(), StoreError> {
        let place = &serde_json::to_value(&place).map_err(|error| {
            StoreError::incompatible(format!("the process place does not serialise: {error}"))
        })?;
        self.retrying("recording the process place", |pool| async move {
            let sql = concat!("UPDATE attempts SET process = $6", owned_where!());
            execute_owned(owned(sql, attempt).bind(place), pool, attempt).await
        })
        .await
    }

    async fn renew_lease(
        &self,
        attempt: &OwnedAttempt,
        renewal: Renewal,
    ) -> Result<RenewedLease, StoreError> {
        let lease_now = self.lease_now(renewal.now_ms);
        self.retrying("renewing a lease", |pool| async move {
            let sql = concat!(
                "UPDATE attempts SET lease_expires_at_ms = COALESCE($7::bigint, ",
                db_now_ms!(),
                ") + $6",
                owned_where!(),
                " RETURNING cancel_requested"
            );
            let row = owned(sql, attempt)
                .bind(to_i64(renewal.lease_ms))
                .bind(lease_now)
                .fetch_optional(pool)
                .await?;
            let row = row.ok_or_else(|| not_owned(attempt))?;
            Ok(RenewedLease {
                cancel_requested: row.try_get("cancel_requested")?,
            })
        })
        .await
    }

    async fn request_cancel(&self, run_id: &str) -> Result<Vec<AttemptKey>, StoreError> {
        self.retrying("requesting cancellation", |pool| async move {
            let rows = sqlx::query(
                "WITH asked AS (UPDATE attempts SET cancel_requested = true \
                     WHERE run_id = $1 AND state = 'in-progress' \
                     RETURNING node_id, iteration, attempt) \
                 SELECT node_id, iteration, attempt FROM asked \
                 ORDER BY node_id, iteration, attempt",
            )
            .bind(run_id)
            .fetch_all(pool)
            .await?;
            let mut asked = Vec::with_capacity(rows.len());
            for row in rows {
                let iteration = to_u32("iteration", row.try_get("iteration")?)?;
                let node = NodeKey::new(run_id, row.try_get::<String, _>("node_id")?, iteration)
                    .map_err(|error| {
                        OpError::Store(StoreError::incompatible(format!(
                            "stored key is invalid: {error}"
                        )))
                    })?;
                asked.push(node.attempt(to_u32("attempt", row.try_get("attempt")?)?));
            }
            Ok(asked)
        })
        .await
    }

    async fn end_attempt(
        &self,
        attempt: &OwnedAttempt,
        end: EndAttempt,
    ) -> Result<AttemptEnded, StoreError> {
        let ending = &end;
        self.retrying("ending an attempt", |pool| {
            end_once(self, pool, attempt, ending)
        })
        .await
    }

    async fn recover_abandoned(&self, now_ms: u64) -> Result<Vec<AttemptKey>, StoreError> {
        let mut marked = Vec::new();
        loop {
            let batch = self
                .retrying("recovering abandoned attempts", |pool| {
                    crate::recovery::recover_batch(pool, now_ms, self.lease_now(now_ms))
                })
                .await?;
            let done = (batch.len() as i64) < crate::recovery::RECOVERY_BATCH;
            marked.extend(batch);
            if done {
                if !marked.is_empty() {
                    tracing::info!(count = marked.len(), "marked abandoned attempts failed");
                }
                return Ok(marked);
            }
        }
    }

    async fn expired_attempts(&self, now_ms: u64) -> Result<Vec<AttemptRecord>, StoreError> {
        self.retrying("listing expired attempts", |pool| {
            crate::query::expired_attempts(pool, self.lease_now(now_ms))
        })
        .await
    }
}
