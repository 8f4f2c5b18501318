//! Group commit: one writer task applies every write of a store, and the writes that arrive
//! while a transaction is being committed go together into the next one.
//!
//! SQLite takes one writer at a time, and with `synchronous=FULL` each COMMIT waits for its own
//! fsync: concurrent callers each paying for a transaction of their own spend most of their time
//! queued behind the others' fsyncs. Here a caller hands its write to the writer and waits. The
//! writer takes whatever is waiting (up to [`MAX_BATCH`]), runs each write inside its own
//! savepoint of one `BEGIN IMMEDIATE` transaction, commits once, and only then answers each
//! caller. So:
//! - a lone write is not delayed: an idle writer starts a transaction for it at once;
//! - a write that fails is rolled back to its savepoint and answered with its error, and its
//!   neighbours commit without it;
//! - no caller is answered `Ok` before the COMMIT that holds its write returned: what a crash can
//!   leave behind is what it could before, each write wholly done or not at all;
//! - a caller that stopped waiting before its write began (its future was dropped) has it
//!   skipped, as dropping an uncommitted transaction would have rolled it back;
//! - memory stays bounded under overload: at most [`QUEUE_DEPTH`] writes wait for the writer,
//!   and callers beyond that wait to hand theirs over. Nothing is dropped.

use std::fmt;

use sqlx::sqlite::SqlitePool;
use sqlx::{Connection, SqliteConnection};
use stint_ports::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::error::map;

/// The most writes one transaction carries.
pub(crate) const MAX_BATCH: usize = 64;

/// The most writes that wait for the writer at once.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// A boxed future that borrows the writer's connection.
pub(crate) type WriteFuture<'c, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'c>>;

/// Hands writes to the store's writer task. Cloning shares the writer.
#[derive(Clone)]
pub(crate) struct Writer {
    pending: mpsc::Sender<Box<dyn Pending>>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("waiting", &(QUEUE_DEPTH - self.pending.capacity()))
            .finish()
    }
}

impl Writer {
    /// Starts the writer task of `pool` (on the current tokio runtime). It ends once every
    /// clone of the returned handle is dropped.
    pub(crate) fn start(pool: SqlitePool) -> Self {
        let (pending, waiting) = mpsc::channel(QUEUE_DEPTH);
        tokio::spawn(write_batches(pool, waiting));
        Self { pending }
    }

    /// Applies `write` in one of the writer's transactions, and answers once that transaction
    /// committed (or with the error that kept it from committing). `write` runs inside a
    /// savepoint: an `Err` rolls back what it did, and only that.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Write { write, reply });
        self.pending.send(pending).await.map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("the store's writer stopped (its runtime is shutting down)")
}

/// One write waiting for the writer, its caller's type erased.
trait Pending: Send {
    /// Whether its caller stopped waiting.
    fn abandoned(&self) -> bool;
    /// Runs the write on `conn` and returns how to answer its caller once the transaction's
    /// fate is known, and whether the write itself succeeded.
    fn apply(self: Box<Self>, conn: &mut SqliteConnection) -> WriteFuture<'_, Answer>;
    /// Answers the caller with `error` without running the write.
    fn refuse(self: Box<Self>, error: StoreError);
}

/// Answers a caller with the result of the COMMIT that held its write.
type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

struct Write<T, F> {
    write: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Pending for Write<T, F>
where
    T: Send + 'static,
    F: for<'c> FnOnce(&'c mut SqliteConnection) -> WriteFuture<'c, T> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn apply(self: Box<Self>, conn: &mut SqliteConnection) -> WriteFuture<'_, Answer> {
        let Write { write, reply } = *self;
        Box::pin(async move {
            let result = write(conn).await;
            let failed = result.as_ref().err().cloned();
            let answer: Answer = Box::new(move |commit| {
                // The caller may have gone meanwhile: nobody to answer then.
                let _ = reply.send(commit.and(result));
            });
            match failed {
                // The writer rolls the write back to its savepoint; the answer is its own error
                // whatever the COMMIT does.
                Some(error) => {
                    answer(Err(error.clone()));
                    Err(error)
                }
                None => Ok(answer),
            }
        })
    }
}

/// The writer task: takes what is waiting, applies it in one transaction, answers, repeats.
async fn write_batches(pool: SqlitePool, mut waiting: mpsc::Receiver<Box<dyn Pending>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        batch.retain(|pending| !pending.abandoned());
        if batch.is_empty() {
            continue;
        }
        let mut conn = match pool.acquire().await {
            Ok(conn) => conn,
            Err(error) => {
                refuse(batch.drain(..), &map(error));
                continue;
            }
        };
        let mut tx = match conn.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx,
            Err(error) => {
                refuse(batch.drain(..), &map(error));
                continue;
            }
        };
        let (answers, committed) = match apply_each(&mut tx, batch.drain(..)).await {
            Ok(answers) => {
                let committed = tx.commit().await.map_err(map);
                (answers, committed)
            }
            // Dropping the transaction rolls the whole batch back.
            Err((answers, error)) => (answers, Err(error)),
        };
        if let Err(error) = &committed {
            tracing::warn!(%error, writes = answers.len(), "a group commit failed");
        }
        for answer in answers {
            answer(committed.clone());
        }
    }
}

/// Applies each write of `batch` inside its own savepoint of `tx`. The answers of the writes
/// that succeeded, for after the COMMIT; those that failed are rolled back to their savepoint
/// and answered already. When a savepoint itself cannot be taken, released or rolled back, the
/// transaction's state is unknown: the writes not yet run are refused, and `Err` has the answers
/// of those that ran, for the caller to roll the whole transaction back and answer them with the
/// error (so that no write is answered `Err` and committed, or committed half).
async fn apply_each(
    tx: &mut SqliteConnection,
    mut batch: impl Iterator<Item = Box<dyn Pending>>,
) -> Result<Vec<Answer>, (Vec<Answer>, StoreError)> {
    let mut answers = Vec::with_capacity(MAX_BATCH);
    while let Some(pending) = batch.next() {
        let mut savepoint = match tx.begin().await {
            Ok(savepoint) => savepoint,
            Err(error) => {
                let error = map(error);
                pending.refuse(error.clone());
                refuse(batch, &error);
                return Err((answers, error));
            }
        };
        let broken = match pending.apply(&mut savepoint).await {
            Ok(answer) => match savepoint.commit().await {
                Ok(()) => {
                    answers.push(answer);
                    None
                }
                Err(error) => {
                    let error = map(error);
                    answer(Err(error.clone()));
                    Some(error)
                }
            },
            // Answered with its own error already.
            Err(_) => savepoint.rollback().await.err().map(map),
        };
        if let Some(error) = broken {
            tracing::warn!(%error, "a savepoint failed; the whole batch is rolled back");
            refuse(batch, &error);
            return Err((answers, error));
        }
    }
    Ok(answers)
}

/// Answers every write of `batch` with `error`, without running it.
fn refuse(batch: impl Iterator<Item = Box<dyn Pending>>, error: &StoreError) {
    for pending in batch {
        pending.refuse(error.clone());
    }
}
