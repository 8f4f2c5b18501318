//! Group commit on PostgreSQL: the attempt writes (begin, heartbeat, end) that callers make at
//! the same time go to the server together, as one statement in one transaction.
//!
//! With `synchronous_commit` on, every commit waits for its WAL flush, and under load a flush
//! takes longer than the writes it makes durable (on the benchmark machine, 1.46 ms per flush
//! against about 0.25 ms to execute a begin or an end). A task's writes in transactions of their
//! own each wait for a flush; here the writes waiting when a batch starts share one. So:
//! - a lone write is not delayed: an idle combiner sends it at once, alone;
//! - the writes that arrive while batches are in flight form the next one (at most
//!   [`MAX_BATCH`]); at most [`IN_FLIGHT`] batches run at once, each on a pooled connection;
//! - no caller is answered before the COMMIT of its batch returned, so what a crash can leave
//!   behind is what it could before: each write wholly done or not at all;
//! - a write that is refused (not the owner's, an attempt in progress) is an answer, not an
//!   error, and does not touch its neighbours; a batch that fails with an error from the server
//!   wrote nothing, and each of its writes is then applied alone, so only the write at fault
//!   fails; a batch that fails any other way (the connection) answers each write with that error,
//!   as a write of its own would have been answered;
//! - a caller that stopped waiting before its batch was sent has its write skipped, as dropping
//!   a transaction not yet committed would have rolled it back;
//! - memory stays bounded under overload: at most [`QUEUE_DEPTH`] writes wait, and callers beyond
//!   that wait (asynchronously) to hand theirs over;
//! - the writes of a batch are sent in the order of their runs' event-lock keys, so two batches
//!   (of this process or another) take those locks in one order and cannot deadlock on them.
//!
//! The batch is one call of the database function `stint_write_batch` (migration 0005), which
//! applies each write with the function a write of its own calls. The combiner's task lives on
//! the runtime that opened the store; once that runtime is gone, writes are applied alone.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;
use sqlx::postgres::PgPool;
use sqlx::types::Json;
use stint_ports::StoreError;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::error::{OpError, map_sqlx};

/// The most writes one batch carries.
pub(crate) const MAX_BATCH: usize = 64;

/// The most batches in flight at once: while one waits for its flush, the next executes.
pub(crate) const IN_FLIGHT: usize = 2;

/// The most writes that wait for the combiner at once.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// Applies a batch of writes (`$1`, a JSON array) and answers their results (a JSON array).
///
/// Public for the benchmark's same-SQL floor only, which issues it as it is.
#[doc(hidden)]
pub const WRITE_BATCH: &str = "SELECT stint_write_batch($1)";

/// How a combined write ended.
pub(crate) enum Combined {
    /// Committed with its batch: the function's answer for it.
    Done(Value),
    /// Not applied: its batch failed with this error, or the combiner stopped.
    Failed(OpError),
}

/// One write waiting for its batch.
struct Pending {
    /// The write, as `stint_write_batch` reads it.
    op: Value,
    /// Its run's event-lock key, which orders the batch.
    lock_key: i64,
    reply: oneshot::Sender<Combined>,
}

/// Hands writes to the store's combiner. Cloning shares it.
#[derive(Clone)]
pub(crate) struct Combiner {
    pending: mpsc::Sender<Pending>,
}

impl fmt::Debug for Combiner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Combiner")
            .field("waiting", &(QUEUE_DEPTH - self.pending.capacity()))
            .finish()
    }
}

impl Combiner {
    /// Starts the combiner of `pool` on the current runtime.
    pub(crate) fn start(pool: PgPool, endpoint: Arc<str>) -> Self {
        let (pending, waiting) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(combine(pool, endpoint, waiting));
        Self { pending }
    }

    /// Applies `op` in the next batch and answers once that batch committed (or failed).
    pub(crate) async fn write(&self, pool: &PgPool, op: Value, lock_key: i64) -> Combined {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            op,
            lock_key,
            reply,
        };
        if let Err(mpsc::error::SendError(pending)) = self.pending.send(pending).await {
            // The combiner's runtime is gone: the write goes alone.
            alone(pool, vec![pending]).await;
        }
        answer.await.unwrap_or_else(|_| Combined::Failed(stopped()))
    }
}

fn stopped() -> OpError {
    OpError::Store(StoreError::unavailable(
        "the store's write combiner stopped (the store was closed)",
    ))
}

/// The combiner's loop: takes what is waiting, up to [`MAX_BATCH`], whenever fewer than
/// [`IN_FLIGHT`] batches are in flight; ends when every handle to the store is gone.
async fn combine(pool: PgPool, endpoint: Arc<str>, mut waiting: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match waiting.try_recv() {
                Ok(pending) => batch.push(pending),
                Err(_) => break,
            }
        }
        let (pool, endpoint) = (pool.clone(), endpoint.clone());
        tokio::spawn(async move {
            apply(&pool, &endpoint, batch).await;
            drop(slot);
        });
    }
}

/// Applies `batch` in one statement and answers each write.
async fn apply(pool: &PgPool, endpoint: &str, mut batch: Vec<Pending>) {
    batch.retain(|pending| !pending.reply.is_closed());
    batch.sort_by_key(|pending| pending.lock_key);
    match batch.len() {
        0 => {}
        1 => alone(pool, batch).await,
        n => match send(pool, &batch).await {
            Ok(answers) => answer_all(batch, answers),
            // The server refused the batch, so none of it was written: each write goes alone,
            // and only the one at fault fails.
            Err(sqlx::Error::Database(_)) => alone(pool, batch).await,
            Err(error) => {
                let error = map_sqlx(endpoint, &format!("applying {n} combined writes"), error);
                for pending in batch {
                    let _ = pending
                        .reply
                        .send(Combined::Failed(OpError::Store(error.clone())));
                }
            }
        },
    }
}

/// Applies each write of `batch` in a statement of its own, one after the other.
async fn alone(pool: &PgPool, batch: Vec<Pending>) {
    for pending in batch {
        let answered = match send(pool, std::slice::from_ref(&pending)).await {
            Ok(answers) => match answers_for(1, answers) {
                Ok(mut answers) => Combined::Done(answers.remove(0)),
                Err(error) => Combined::Failed(OpError::Store(error)),
            },
            Err(error) => Combined::Failed(OpError::Sql(error)),
        };
        let _ = pending.reply.send(answered);
    }
}

/// Sends `batch` as one `stint_write_batch` call.
async fn send(pool: &PgPool, batch: &[Pending]) -> Result<Vec<Value>, sqlx::Error> {
    let ops: Vec<&Value> = batch.iter().map(|pending| &pending.op).collect();
    let Json(answers) = sqlx::query_scalar::<_, Json<Vec<Value>>>(WRITE_BATCH)
        .bind(Json(ops))
        .fetch_one(pool)
        .await?;
    Ok(answers)
}

/// `answers` if there are `n` of them, one per write.
fn answers_for(n: usize, answers: Vec<Value>) -> Result<Vec<Value>, StoreError> {
    if answers.len() == n {
        Ok(answers)
    } else {
        Err(StoreError::incompatible(format!(
            "a batch of {n} writes was answered {} times",
            answers.len()
        )))
    }
}

fn answer_all(batch: Vec<Pending>, answers: Vec<Value>) {
    match answers_for(batch.len(), answers) {
        Ok(answers) => {
            for (pending, answer) in batch.into_iter().zip(answers) {
                let _ = pending.reply.send(Combined::Done(answer));
            }
        }
        Err(error) => {
            for pending in batch {
                let _ = pending
                    .reply
                    .send(Combined::Failed(OpError::Store(error.clone())));
            }
        }
    }
}
