//! The queue's write port on PostgreSQL: many workers on many machines claiming from one table.
//!
//! - claims lock their tasks with `FOR UPDATE SKIP LOCKED` in the statement that takes them, so
//!   racing claimers pass each other instead of queueing; a queue with a limit has its row in
//!   `queues` locked first, so counting its running tasks and claiming up to the limit is one
//!   step for every claimer of that queue;
//! - unique keys are a partial unique index written with `ON CONFLICT DO NOTHING`, which waits
//!   for a racing inserter's commit, so two submitters never both store a key;
//! - a worker's claim may begin the attempts of the tasks it takes in its own transaction
//!   (`claim_and_begin`), so a task's claim and its attempt's begin share one commit;
//! - leases are set and judged by the database's clock unless the store follows the caller's
//!   ([`LeaseClock`](crate::LeaseClock)); due times are always the caller's.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgExecutor, PgPool};
use sqlx::types::Json;
use stint_domain::{TaskId, TaskState};
use stint_ports::{
    BeginFor, CancelOutcome, CancelTarget, Claim, ClaimedAndBegun, ClaimedTask, Completion,
    Enqueued, NewTask, Renewal, RenewedClaims, StoreError, TaskQueue, sort_claimed,
};

use crate::PostgresStore;
use crate::combiner::WRITE_BATCH;
use crate::enqueue::enqueue_once;
use crate::error::{OpError, to_i64, to_u64};
use crate::notify;
use crate::ops::BeginAnswer;
use crate::query::node_attempts;
use crate::queue_history::{task_columns, task_record, task_state};
use crate::write::{PgQuery, begin_op, begun};

/// Now on the database's clock, in milliseconds since the epoch, as SQL (as the attempt writes
/// compute it).
macro_rules! db_now_ms {
    () => {
        "(extract(epoch from clock_timestamp()) * 1000)::bigint"
    };
}

fn task_id(value: i64) -> Result<TaskId, OpError> {
    Ok(TaskId(to_u64("tasks.id", value)?))
}

/// Claims tasks (`stint_claim`, migration 0005, which holds the rules: queue limits, order,
/// skipping locked tasks): `$1` queues, `$2` most tasks, `$3` now, `$4` owner, `$5` the lease's
/// start when not the database's clock, `$6` lease.
///
/// Each claimed task comes with its node's attempts (iteration 0), read in the same statement:
/// the last one's state, retryable flag and error, and how many failed.
const CLAIM: &str = concat!(
    "SELECT ",
    task_columns!(),
    ", n.node_last_state, n.node_last_retryable, n.node_last_error, n.node_failed \
     FROM stint_claim($1, $2, $3, $4, $5, $6) AS t \
     CROSS JOIN LATERAL ( \
       SELECT l.state AS node_last_state, l.retryable AS node_last_retryable, \
              l.error::text AS node_last_error, \
              (SELECT COUNT(*) FROM attempts f \
                WHERE f.run_id = t.run_id AND f.node_id = t.node_id AND f.iteration = 0 \
                  AND f.state = 'failed') AS node_failed \
       FROM (SELECT 1) AS one \
       LEFT JOIN LATERAL (SELECT a.state, a.retryable, a.error FROM attempts a \
                           WHERE a.run_id = t.run_id AND a.node_id = t.node_id \
                             AND a.iteration = 0 \
                           ORDER BY a.attempt DESC LIMIT 1) AS l ON true) AS n"
);

async fn claim_once<'c>(
    executor: impl PgExecutor<'c>,
    claim: &Claim,
    lease_now: Option<i64>,
) -> Result<Vec<ClaimedTask>, OpError> {
    let rows = sqlx::query(CLAIM)
        .bind(&claim.queues)
        .bind(i64::from(claim.max))
        .bind(to_i64(claim.now_ms))
        .bind(&claim.owner)
        .bind(lease_now)
        .bind(to_i64(claim.lease_ms))
        .fetch_all(executor)
        .await?;
    let mut claimed = rows
        .iter()
        .map(|row| {
            Ok(ClaimedTask {
                task: task_record(row)?,
                attempts: Some(node_attempts(row)?),
            })
        })
        .collect::<Result<Vec<_>, OpError>>()?;
    sort_claimed(&mut claimed);
    Ok(claimed)
}

/// A claim and, in its transaction, the begins `begin` makes of the tasks it took, applied as
/// one `stint_write_batch` (in lock order, as the combiner applies them).
async fn claim_and_begin_once(
    store: &PostgresStore,
    pool: &PgPool,
    claim: &Claim,
    lease_now: Option<i64>,
    begin: &dyn BeginFor,
) -> Result<Vec<ClaimedAndBegun>, OpError> {
    let mut tx = pool.begin().await?;
    let claimed = claim_once(&mut *tx, claim, lease_now).await?;
    let mut begins = Vec::new();
    for (index, task) in claimed.iter().enumerate() {
        if let Some(begin) = begin.begin_for(task) {
            let (op, lock_key) = begin_op(store, &begin)?;
            begins.push((lock_key, index, op, begin.node));
        }
    }
    let mut done: Vec<ClaimedAndBegun> =
        claimed.into_iter().map(ClaimedAndBegun::unbegun).collect();
    if !begins.is_empty() {
        begins.sort_by_key(|(lock_key, index, ..)| (*lock_key, *index));
        let ops: Vec<&Value> = begins.iter().map(|(_, _, op, _)| op).collect();
        let Json(answers) = sqlx::query_scalar::<_, Json<Vec<BeginAnswer>>>(WRITE_BATCH)
            .bind(Json(ops))
            .fetch_one(&mut *tx)
            .await?;
        if answers.len() != begins.len() {
            return Err(OpError::Store(StoreError::incompatible(format!(
                "a batch of {} begins was answered {} times",
                begins.len(),
                answers.len()
            ))));
        }
        for ((_, index, _, node), answer) in begins.iter().zip(&answers) {
            let answered = match begun(node, answer) {
                Ok(begun) => Ok(begun),
                Err(OpError::Store(refused)) => Err(refused),
                Err(error @ OpError::Sql(_)) => return Err(error),
            };
            done[*index].begun = Some(answered);
        }
    }
    tx.commit().await?;
    Ok(done)
}

async fn renew_once(
    pool: &PgPool,
    owner: &str,
    lease_now: Option<i64>,
    lease_ms: u64,
) -> Result<RenewedClaims, OpError> {
    let rows = sqlx::query(concat!(
        "UPDATE tasks SET lease_expires_at_ms = COALESCE($2::bigint, ",
        db_now_ms!(),
        ") + $3 WHERE state = 'running' AND owner = $1 RETURNING id, cancel_requested"
    ))
    .bind(owner)
    .bind(lease_now)
    .bind(to_i64(lease_ms))
    .fetch_all(pool)
    .await?;
    let mut renewed = Vec::with_capacity(rows.len());
    for row in rows {
        renewed.push((
            task_id(row.try_get("id")?)?,
            row.try_get("cancel_requested")?,
        ));
    }
    Ok(RenewedClaims::from_rows(renewed))
}

/// Ends a task if its claim is still the completion's owner's (`stint_complete_task`): `$1`
/// task, `$2` owner, `$3` state, `$4` due time when it goes back to the queue, `$5` error, `$6`
/// now, `$7` the channel that wakes workers. Answers whether it did.
const COMPLETE_TASK: &str = "SELECT stint_complete_task($1, $2, $3, $4, $5, $6, $7)";

/// A task's end as bound parameters: those of [`COMPLETE_TASK`], also taken by the attempt's
/// terminal write (all NULL there when the attempt has no task).
///
/// As a combined write's fields (see `stint_write_batch`), each is named after its parameter.
#[derive(serde::Serialize)]
pub(crate) struct TaskEndColumns<'a> {
    task: Option<i64>,
    #[serde(rename = "task_owner")]
    owner: Option<&'a str>,
    #[serde(rename = "task_state")]
    state: Option<&'static str>,
    #[serde(rename = "task_run_at_ms")]
    run_at_ms: Option<i64>,
    #[serde(rename = "task_error", skip_serializing_if = "Option::is_none")]
    error: Option<&'a serde_json::Value>,
    #[serde(rename = "task_now_ms")]
    now_ms: Option<i64>,
    channel: &'a str,
}

impl<'a> TaskEndColumns<'a> {
    pub(crate) fn of(completion: Option<&'a Completion>, channel: &'a str) -> Self {
        let parts = completion.map(Completion::parts);
        Self {
            task: parts.map(|(task, ..)| to_i64(task.0)),
            owner: parts.map(|(_, owner, ..)| owner),
            state: parts.map(|(_, _, end, _)| end.state().as_str()),
            run_at_ms: parts.and_then(|(_, _, end, _)| end.run_at_ms().map(to_i64)),
            error: parts.and_then(|(_, _, end, _)| end.error()),
            now_ms: parts.map(|(.., now_ms)| to_i64(now_ms)),
            channel,
        }
    }

    /// Binds the task's end as the next seven parameters of `query`.
    pub(crate) fn bind<'q>(&'q self, query: PgQuery<'q>) -> PgQuery<'q> {
        query
            .bind(self.task)
            .bind(self.owner)
            .bind(self.state)
            .bind(self.run_at_ms)
            .bind(self.error)
            .bind(self.now_ms)
            .bind(self.channel)
    }
}

async fn complete_once(
    pool: &PgPool,
    channel: &str,
    completion: &Completion,
) -> Result<(), OpError> {
    let columns = TaskEndColumns::of(Some(completion), channel);
    let ended: bool = columns
        .bind(sqlx::query(COMPLETE_TASK))
        .fetch_one(pool)
        .await?
        .try_get(0)?;
    if ended {
        Ok(())
    } else {
        Err(OpError::Store(StoreError::task_not_owned(completion.task)))
    }
}

/// One statement: a concurrent sweeper waits on the rows this one updates, then finds them no
/// longer running, so each task is taken back once. The queues of the tasks back in the queue
/// are notified (once each), so that any listening worker takes them.
async fn sweep_once(
    pool: &PgPool,
    channel: &str,
    now_ms: u64,
    lease_now: Option<i64>,
) -> Result<Vec<TaskId>, OpError> {
    let ids: Vec<i64> = sqlx::query_scalar(concat!(
        "WITH swept AS (UPDATE tasks SET \
             state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'ready' END, \
             ended_at_ms = CASE WHEN cancel_requested THEN $1 END, \
             owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = $1 \
           WHERE state = 'running' AND lease_expires_at_ms < COALESCE($2::bigint, ",
        db_now_ms!(),
        ") RETURNING id, queue, state), \
         woken AS (SELECT pg_notify($3, q) FROM (SELECT DISTINCT CASE \
             WHEN octet_length(queue) < 7900 THEN queue ELSE '' END AS q \
             FROM swept WHERE state = 'ready') AS queues) \
         SELECT id FROM swept WHERE (SELECT count(*) FROM woken) >= 0"
    ))
    .bind(to_i64(now_ms))
    .bind(lease_now)
    .bind(channel)
    .fetch_all(pool)
    .await?;
    let mut swept = ids
        .into_iter()
        .map(task_id)
        .collect::<Result<Vec<_>, _>>()?;
    swept.sort_unstable();
    Ok(swept)
}

async fn cancel_once(
    pool: &PgPool,
    target: &CancelTarget,
    now_ms: u64,
) -> Result<Vec<CancelOutcome>, OpError> {
    let (id, run_id) = match target {
        CancelTarget::Task(id) => (Some(to_i64(id.0)), None),
        CancelTarget::Run(run_id) => (None, Some(run_id.as_str())),
    };
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT id, state FROM tasks WHERE id = $1 OR run_id = $2 ORDER BY id FOR UPDATE",
    )
    .bind(id)
    .bind(run_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut outcomes = Vec::with_capacity(rows.len());
    for row in &rows {
        outcomes.push(CancelOutcome::of(
            task_id(row.try_get("id")?)?,
            task_state(row)?,
        ));
    }
    sqlx::query(
        "UPDATE tasks SET \
             state = CASE state WHEN 'ready' THEN 'cancelled' ELSE state END, \
             ended_at_ms = CASE state WHEN 'ready' THEN $3 ELSE ended_at_ms END, \
             cancel_requested = cancel_requested OR state = 'running', updated_at_ms = $3 \
         WHERE (id = $1 OR run_id = $2) AND state IN ('ready', 'running')",
    )
    .bind(id)
    .bind(run_id)
    .bind(to_i64(now_ms))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(outcomes)
}

async fn retry_once(
    pool: &PgPool,
    channel: &str,
    task: TaskId,
    retry_base: u32,
    now_ms: u64,
) -> Result<(), OpError> {
    let id = to_i64(task.0);
    let mut tx = pool.begin().await?;
    let row = sqlx::query("SELECT state, unique_key, queue FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(row) = row else {
        return Err(OpError::Store(StoreError::task_not_retryable(task, None)));
    };
    let state = task_state(&row)?;
    if !matches!(state, TaskState::Failed | TaskState::Cancelled) {
        return Err(OpError::Store(StoreError::task_not_retryable(
            task,
            Some(state),
        )));
    }
    if let Some(key) = row.try_get::<Option<String>, _>("unique_key")? {
        let holder: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM tasks WHERE unique_key = $1 AND state IN ('ready', 'running')",
        )
        .bind(&key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(holder) = holder {
            let error = StoreError::unique_key_held(task, &key, task_id(holder)?);
            return Err(OpError::Store(error));
        }
    }
    // A submitter racing for the key after the check makes this a unique violation: a conflict.
    sqlx::query(
        "UPDATE tasks SET state = 'ready', retry_base = $2, cancel_requested = FALSE, \
             run_at_ms = $3, ended_at_ms = NULL, updated_at_ms = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(i64::from(retry_base))
    .bind(to_i64(now_ms))
    .execute(&mut *tx)
    .await?;
    let queue: String = row.try_get("queue")?;
    notify::queues(&mut tx, channel, &[queue.as_str()]).await?;
    tx.commit().await?;
    Ok(())
}

#[async_trait]
impl TaskQueue for PostgresStore {
    async fn enqueue(&self, tasks: Vec<NewTask>, now_ms: u64) -> Result<Vec<Enqueued>, StoreError> {
        let tasks = &tasks;
        self.retrying("enqueueing tasks", |pool| {
            enqueue_once(pool, &self.channel, tasks, now_ms)
        })
        .await
    }

    async fn claim(&self, claim: Claim) -> Result<Vec<ClaimedTask>, StoreError> {
        let (claim, lease_now) = (&claim, self.lease_now(claim.now_ms));
        self.retrying("claiming tasks", |pool| claim_once(pool, claim, lease_now))
            .await
    }

    async fn claim_and_begin(
        &self,
        claim: Claim,
        begin: Arc<dyn BeginFor>,
    ) -> Result<Vec<ClaimedAndBegun>, StoreError> {
        let (claim, lease_now, begin) = (&claim, self.lease_now(claim.now_ms), &*begin);
        self.retrying("claiming and beginning tasks", |pool| {
            claim_and_begin_once(self, pool, claim, lease_now, begin)
        })
        .await
    }

    async fn renew_claims(
        &self,
        owner: &str,
        renewal: Renewal,
    ) -> Result<RenewedClaims, StoreError> {
        let lease_now = self.lease_now(renewal.now_ms);
        self.retrying("renewing claims", |pool| {
            renew_once(pool, owner, lease_now, renewal.lease_ms)
        })
        .await
    }

    async fn complete(&self, completion: Completion) -> Result<(), StoreError> {
        self.retrying("completing a task", |pool| {
            complete_once(pool, &self.channel, &completion)
        })
        .await
    }

    async fn sweep_expired(&self, now_ms: u64) -> Result<Vec<TaskId>, StoreError> {
        let lease_now = self.lease_now(now_ms);
        self.retrying("sweeping expired claims", |pool| {
            sweep_once(pool, &self.channel, now_ms, lease_now)
        })
        .await
    }

    async fn cancel(
        &self,
        target: CancelTarget,
        now_ms: u64,
    ) -> Result<Vec<CancelOutcome>, StoreError> {
        let target = &target;
        self.retrying("cancelling tasks", |pool| cancel_once(pool, target, now_ms))
            .await
    }

    async fn retry(&self, task: TaskId, retry_base: u32, now_ms: u64) -> Result<(), StoreError> {
        self.retrying("retrying a task", |pool| {
            retry_once(pool, &self.channel, task, retry_base, now_ms)
        })
        .await
    }

    async fn set_queue_limit(
        &self,
        queue: &str,
        max_running: Option<u32>,
    ) -> Result<(), StoreError> {
        self.retrying("setting a queue limit", |pool| async move {
            sqlx::query(
                "INSERT INTO queues (name, max_running) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET max_running = excluded.max_running",
            )
            .bind(queue)
            .bind(max_running.map(i64::from))
            .execute(pool)
            .await?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, ended_before_ms: u64, batch: u32) -> Result<u64, StoreError> {
        self.retrying("pruning tasks", |pool| {
            crate::prune::prune_once(pool, ended_before_ms, batch)
        })
        .await
    }
}
