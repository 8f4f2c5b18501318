//! `enqueue` on PostgreSQL: a batch is one statement, whatever its size.
//!
//! The batch's ids are drawn from the table's sequence first (ascending, so ids follow input
//! order), then every task is inserted by one `INSERT ... SELECT FROM unnest(...) ON CONFLICT
//! DO NOTHING RETURNING id`: an id missing from the answer is a task whose unique key a live
//! task holds, and the holders are read in one more statement. A key repeated inside the batch
//! is inserted once, for its first task; the later ones answer that task's id, as one insert
//! per task in input order would. All of it, and the NOTIFY that wakes the listening workers,
//! is one transaction.
//!
//! A batch without unique keys cannot conflict: it is one statement (its ids drawn by the insert
//! itself, in input order, and the NOTIFY in the same implicit transaction), one round trip
//! instead of five, which is most of what submitting one task costs.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgConnection, PgPool};
use stint_domain::TaskId;
use stint_ports::{Enqueued, NewTask, StoreError};

use crate::error::{OpError, to_i64, to_u64};
use crate::notify;

/// A batch without unique keys, the NOTIFY of the due queues (`$7`, `$8`) included: the
/// identity column draws the ids as the rows come, in input order, so the ids answered in
/// ascending order are the tasks' in input order.
const INSERT_PLAIN: &str = "WITH stored AS ( \
         INSERT INTO tasks (queue, run_id, node_id, priority, run_at_ms, spec, state, \
             created_at_ms, updated_at_ms) \
         SELECT t.queue, t.run_id, t.node_id, t.priority, t.run_at_ms, t.spec, 'ready', $9, $9 \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::int4[], $5::bigint[], $6::jsonb[]) \
             WITH ORDINALITY AS t(queue, run_id, node_id, priority, run_at_ms, spec, ord) \
         ORDER BY t.ord RETURNING id), \
     notified AS (SELECT pg_notify($7, q) FROM unnest($8::text[]) AS q) \
     SELECT id FROM stored WHERE (SELECT count(*) FROM notified) >= 0 ORDER BY id";

/// How many times the tasks whose key holder ended in between are inserted again.
const TRIES: usize = 3;

fn task_id(value: i64) -> Result<TaskId, OpError> {
    Ok(TaskId(to_u64("tasks.id", value)?))
}

/// `n` fresh task ids, ascending.
async fn allocate_ids(conn: &mut PgConnection, n: usize) -> Result<Vec<i64>, OpError> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('tasks', 'id')) FROM generate_series(1, $1)",
    )
    .bind(i64::try_from(n).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// Inserts the tasks at `positions` (each with its id of `ids`); answers the ids stored.
async fn insert(
    conn: &mut PgConnection,
    tasks: &[NewTask],
    ids: &[i64],
    positions: &[usize],
    now: i64,
) -> Result<HashSet<i64>, OpError> {
    let n = positions.len();
    let mut columns = Columns::with_capacity(n);
    for &position in positions {
        columns.push(&tasks[position], ids[position]);
    }
    let stored = sqlx::query_scalar::<_, i64>(
        "INSERT INTO tasks (id, queue, run_id, node_id, priority, run_at_ms, spec, unique_key, \
             state, created_at_ms, updated_at_ms) OVERRIDING SYSTEM VALUE \
         SELECT t.id, t.queue, t.run_id, t.node_id, t.priority, t.run_at_ms, t.spec, \
             t.unique_key, 'ready', $9, $9 \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int4[], \
             $6::bigint[], $7::jsonb[], $8::text[]) \
             AS t(id, queue, run_id, node_id, priority, run_at_ms, spec, unique_key) \
         ORDER BY t.id ON CONFLICT DO NOTHING RETURNING id",
    )
    .bind(std::mem::take(&mut columns.ids));
    let keys = std::mem::take(&mut columns.keys);
    let stored = columns
        .bind_tasks(stored)
        .bind(keys)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
    Ok(stored.into_iter().collect())
}

/// A query answering one column, as the inserts are.
type Scalar<'q, O> = sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// The tasks of one insert, column by column.
struct Columns<'a> {
    ids: Vec<i64>,
    queues: Vec<&'a str>,
    run_ids: Vec<&'a str>,
    node_ids: Vec<&'a str>,
    priorities: Vec<i32>,
    run_at: Vec<i64>,
    specs: Vec<&'a Value>,
    keys: Vec<Option<&'a str>>,
}

impl<'a> Columns<'a> {
    fn with_capacity(n: usize) -> Self {
        Self {
            ids: Vec::with_capacity(n),
            queues: Vec::with_capacity(n),
            run_ids: Vec::with_capacity(n),
            node_ids: Vec::with_capacity(n),
            priorities: Vec::with_capacity(n),
            run_at: Vec::with_capacity(n),
            specs: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
        }
    }

    /// Binds the columns every insert takes, in order: queue, run, node, priority, due time,
    /// spec.
    fn bind_tasks<'q, O>(self, query: Scalar<'q, O>) -> Scalar<'q, O>
    where
        'a: 'q,
    {
        query
            .bind(self.queues)
            .bind(self.run_ids)
            .bind(self.node_ids)
            .bind(self.priorities)
            .bind(self.run_at)
            .bind(self.specs)
    }

    fn push(&mut self, task: &'a NewTask, id: i64) {
        self.ids.push(id);
        self.queues.push(&task.queue);
        self.run_ids.push(&task.run_id);
        self.node_ids.push(&task.node_id);
        self.priorities.push(task.priority);
        self.run_at.push(to_i64(task.run_at_ms));
        self.specs.push(&task.spec);
        self.keys.push(task.unique_key.as_deref());
    }
}

/// The live holders of `keys`, by key.
async fn holders(conn: &mut PgConnection, keys: &[&str]) -> Result<HashMap<String, i64>, OpError> {
    let rows = sqlx::query(
        "SELECT unique_key, id FROM tasks \
         WHERE unique_key = ANY($1) AND state IN ('ready', 'running')",
    )
    .bind(keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        found.insert(row.try_get("unique_key")?, row.try_get("id")?);
    }
    Ok(found)
}

/// Which task each task of the batch answers for: `None` for the first holder of its key (or
/// a task without one), `Some(first)` for a later task repeating the key of `first`.
fn repeats(tasks: &[NewTask]) -> Vec<Option<usize>> {
    let mut first: HashMap<&str, usize> = HashMap::new();
    tasks
        .iter()
        .enumerate()
        .map(|(position, task)| {
            let key = task.unique_key.as_deref()?;
            match first.get(key) {
                Some(&earlier) => Some(earlier),
                None => {
                    first.insert(key, position);
                    None
                }
            }
        })
        .collect()
}

/// Stores the tasks at `pending`, writing each one's answer into `answers`; the tasks whose
/// key holder ended between the insert and the read are tried again.
async fn store(
    conn: &mut PgConnection,
    tasks: &[NewTask],
    ids: &[i64],
    mut pending: Vec<usize>,
    answers: &mut [Option<Enqueued>],
    now: i64,
) -> Result<(), OpError> {
    for _ in 0..TRIES {
        if pending.is_empty() {
            return Ok(());
        }
        let stored = insert(conn, tasks, ids, &pending, now).await?;
        let mut held = Vec::new();
        for position in pending {
            if stored.contains(&ids[position]) {
                let id = task_id(ids[position])?;
                answers[position] = Some(Enqueued {
                    id,
                    existing: false,
                });
            } else {
                held.push(position);
            }
        }
        let keys: Vec<&str> = held
            .iter()
            .filter_map(|&position| tasks[position].unique_key.as_deref())
            .collect();
        let holders = if keys.is_empty() {
            HashMap::new()
        } else {
            holders(conn, &keys).await?
        };
        pending = Vec::new();
        for position in held {
            let key = tasks[position].unique_key.as_deref().unwrap_or_default();
            match holders.get(key) {
                Some(&id) => {
                    let id = task_id(id)?;
                    answers[position] = Some(Enqueued { id, existing: true });
                }
                // The holder ended in between: the key is free again.
                None => pending.push(position),
            }
        }
    }
    match pending.first() {
        None => Ok(()),
        Some(&position) => Err(OpError::Store(StoreError::conflict(format!(
            "enqueueing: the unique key {:?} kept changing hands",
            tasks[position].unique_key
        )))),
    }
}

/// One try of `enqueue`: the whole batch in one transaction, or nothing.
pub(crate) async fn enqueue_once(
    pool: &PgPool,
    channel: &str,
    tasks: &[NewTask],
    now_ms: u64,
) -> Result<Vec<Enqueued>, OpError> {
    for (position, task) in tasks.iter().enumerate() {
        task.check(position)?;
    }
    if tasks.is_empty() {
        return Ok(Vec::new());
    }
    let now = to_i64(now_ms);
    if tasks.iter().all(|task| task.unique_key.is_none()) {
        return enqueue_plain(pool, channel, tasks, now_ms).await;
    }
    let mut tx = pool.begin().await?;
    let ids = allocate_ids(&mut tx, tasks.len()).await?;
    if ids.len() != tasks.len() {
        return Err(OpError::Store(StoreError::unavailable(format!(
            "enqueueing: {} ids drawn for {} tasks",
            ids.len(),
            tasks.len()
        ))));
    }
    let repeats = repeats(tasks);
    let firsts: Vec<usize> = (0..tasks.len())
        .filter(|&position| repeats[position].is_none())
        .collect();
    let mut answers: Vec<Option<Enqueued>> = vec![None; tasks.len()];
    store(&mut tx, tasks, &ids, firsts, &mut answers, now).await?;
    let mut due = Vec::new();
    let mut out = Vec::with_capacity(tasks.len());
    for (position, task) in tasks.iter().enumerate() {
        let answer = match repeats[position] {
            Some(first) => answers[first].map(|first| Enqueued {
                id: first.id,
                existing: true,
            }),
            None => answers[position],
        };
        let Some(answer) = answer else {
            return Err(OpError::Store(StoreError::unavailable(format!(
                "enqueueing: no answer for task {position}"
            ))));
        };
        if !answer.existing && task.run_at_ms <= now_ms {
            due.push(task.queue.as_str());
        }
        out.push(answer);
    }
    notify::queues(&mut tx, channel, &due).await?;
    tx.commit().await?;
    Ok(out)
}

/// A batch without unique keys, in one statement.
async fn enqueue_plain(
    pool: &PgPool,
    channel: &str,
    tasks: &[NewTask],
    now_ms: u64,
) -> Result<Vec<Enqueued>, OpError> {
    let mut columns = Columns::with_capacity(tasks.len());
    for task in tasks {
        columns.push(task, 0);
    }
    let due: Vec<&str> = tasks
        .iter()
        .filter(|task| task.run_at_ms <= now_ms)
        .map(|task| task.queue.as_str())
        .collect();
    let ids: Vec<i64> = columns
        .bind_tasks(sqlx::query_scalar(INSERT_PLAIN))
        .bind(channel)
        .bind(notify::payloads(&due))
        .bind(to_i64(now_ms))
        .fetch_all(pool)
        .await?;
    if ids.len() != tasks.len() {
        return Err(OpError::Store(StoreError::unavailable(format!(
            "enqueueing: {} tasks stored of {}",
            ids.len(),
            tasks.len()
        ))));
    }
    ids.into_iter()
        .map(|id| {
            Ok(Enqueued {
                id: task_id(id)?,
                existing: false,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_repeated_key_answers_for_its_first_task() {
        let task = |key: Option<&str>| {
            let mut task = NewTask::new("r", "n", 0, json!({}));
            task.unique_key = key.map(str::to_owned);
            task
        };
        let tasks = [
            task(Some("a")),
            task(None),
            task(Some("b")),
            task(Some("a")),
            task(None),
            task(Some("b")),
            task(Some("a")),
        ];
        assert_eq!(
            repeats(&tasks),
            [None, None, None, Some(0), None, Some(2), Some(0)]
        );
    }
}
