//! The queue's write port on PostgreSQL: many workers on many machines claiming from one table.
//!
//! - claims lock their tasks with `FOR UPDATE SKIP LOCKED` in the statement that takes them, so
//!   racing claimers pass each other instead of queueing; a queue with a limit has its row in
//!   `queues` locked first, so counting its running tasks and claiming up to the limit is one
//!   step for every claimer of that queue;
//! - unique keys are a partial unique index written with `ON CONFLICT DO NOTHING`, which waits
//!   for a racing inserter's commit, so two submitters never both store a key;
//! - leases are set and judged by the database's clock unless the store follows the caller's
//!   ([`LeaseClock`](crate::LeaseClock)); due times are always the caller's.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgExecutor, PgPool};
use stint_domain::{TaskId, TaskState};
use stint_ports::{
    CancelOutcome, CancelTarget, Claim, ClaimedTask, Completion, Enqueued, NewTask, Renewal,
    RenewedClaims, StoreError, TaskQueue, sort_claimed,
};

use crate::PostgresStore;
use crate::enqueue::enqueue_once;
use crate::error::{OpError, to_i64, to_u64};
use crate::notify;
use crate::queue_history::{task_columns, task_record, task_state};

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

/// How many tasks each of `claim.queues` may give: its limit minus its running tasks for a queue
/// with a limit (whose row stays locked to commit), `claim.max` for the others.
async fn free_slots(
    conn: &mut PgConnection,
    claim: &Claim,
) -> Result<(Vec<String>, Vec<i64>), OpError> {
    let mut names = claim.queues.clone();
    names.sort_unstable();
    names.dedup();
    let locked = sqlx::query(
        "SELECT name FROM queues \
         WHERE name = ANY($1) AND max_running IS NOT NULL ORDER BY name FOR UPDATE",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let mut slots = vec![i64::from(claim.max); names.len()];
    if locked.is_empty() {
        return Ok((names, slots));
    }
    // A new statement after the locks: it sees the claims the previous holder committed.
    let limits = sqlx::query(
        "SELECT q.name, q.max_running, (SELECT COUNT(*) FROM tasks t \
                 WHERE t.queue = q.name AND t.state = 'running') AS running \
         FROM queues q WHERE q.name = ANY($1) AND q.max_running IS NOT NULL",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    for limit in &limits {
        let name: String = limit.try_get("name")?;
        let max: i64 = limit.try_get("max_running")?;
        let running: i64 = limit.try_get("running")?;
        if let Ok(index) = names.binary_search(&name) {
            slots[index] = (max - running).clamp(0, i64::from(claim.max));
        }
    }
    Ok((names, slots))
}

/// Takes, for each queue of `$1` with its slots in `$2`, its first ready tasks due by `$3`
/// (skipping those another transaction holds), then the first `$4` of them all.
const CLAIM: &str = concat!(
    "WITH picked AS ( \
       SELECT t.id AS pick_id FROM unnest($1::text[], $2::bigint[]) AS q(name, slots) \
       CROSS JOIN LATERAL ( \
         SELECT id, priority, run_at_ms FROM tasks \
         WHERE state = 'ready' AND queue = q.name AND run_at_ms <= $3 \
         ORDER BY priority DESC, run_at_ms, id LIMIT q.slots FOR UPDATE SKIP LOCKED) t \
       ORDER BY t.priority DESC, t.run_at_ms, t.id LIMIT $4) \
     UPDATE tasks SET state = 'running', owner = $5, \
         lease_expires_at_ms = COALESCE($6::bigint, ",
    db_now_ms!(),
    ") + $7, claims = claims + 1, updated_at_ms = $3 \
     FROM picked WHERE tasks.id = picked.pick_id RETURNING ",
    task_columns!()
);

async fn claim_once(
    pool: &PgPool,
    claim: &Claim,
    lease_now: Option<i64>,
) -> Result<Vec<ClaimedTask>, OpError> {
    let mut tx = pool.begin().await?;
    let (names, slots) = free_slots(&mut tx, claim).await?;
    let rows = sqlx::query(CLAIM)
        .bind(&names)
        .bind(&slots)
        .bind(to_i64(claim.now_ms))
        .bind(i64::from(claim.max))
        .bind(&claim.owner)
        .bind(lease_now)
        .bind(to_i64(claim.lease_ms))
        .fetch_all(&mut *tx)
        .await?;
    let mut claimed = rows
        .iter()
        .map(|row| task_record(row).map(|task| ClaimedTask { task }))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().await?;
    sort_claimed(&mut claimed);
    Ok(claimed)
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

async fn complete_once(
    pool: &PgPool,
    channel: &str,
    completion: &Completion,
) -> Result<(), OpError> {
    if complete_in(pool, channel, completion).await? {
        Ok(())
    } else {
        Err(OpError::Store(StoreError::task_not_owned(completion.task)))
    }
}

/// Ends `completion`'s task if its claim is still the completion's owner's; whether it did.
pub(crate) async fn complete_in<'e>(
    conn: impl PgExecutor<'e>,
    channel: &str,
    completion: &Completion,
) -> Result<bool, OpError> {
    let (task, owner, end, now_ms) = completion.parts();
    // A task whose cancellation was asked for does not go back to the queue: it ends cancelled.
    // A task back in the queue and due at once wakes the listening workers (on commit).
    let state = end.state();
    let row = sqlx::query(
        "WITH done AS (UPDATE tasks SET \
             state = CASE WHEN $1 = 'ready' AND cancel_requested THEN 'cancelled' ELSE $1 END, \
             ended_at_ms = CASE WHEN $1 <> 'ready' OR cancel_requested THEN $4 END, \
             run_at_ms = COALESCE($2, run_at_ms), last_error = COALESCE($3, last_error), \
             owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = $4 \
           WHERE id = $5 AND state = 'running' AND owner = $6 \
           RETURNING queue, state, run_at_ms), \
         woken AS (SELECT pg_notify($7, CASE WHEN octet_length(queue) < 7900 THEN queue \
             ELSE '' END) FROM done WHERE state = 'ready' AND run_at_ms <= $4) \
         SELECT (SELECT count(*) FROM done) AS ended, (SELECT count(*) FROM woken) AS woken",
    )
    .bind(state.as_str())
    .bind(end.run_at_ms().map(to_i64))
    .bind(end.error())
    .bind(to_i64(now_ms))
    .bind(to_i64(task.0))
    .bind(owner)
    .bind(channel)
    .fetch_one(conn)
    .await?;
    let ended: i64 = row.try_get("ended")?;
    Ok(ended > 0)
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
        self.retrying("pruning tasks", |pool| async move {
            let done = sqlx::query(
                "DELETE FROM tasks WHERE id IN (SELECT id FROM tasks \
                     WHERE state IN ('finished', 'failed', 'cancelled') AND ended_at_ms < $1 \
                     ORDER BY ended_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED)",
            )
            .bind(to_i64(ended_before_ms))
            .bind(i64::from(batch))
            .execute(pool)
            .await?;
            Ok(done.rows_affected())
        })
        .await
    }
}
