//! Group commit on a thread of its own: one writer thread applies every write of a store on its
//! own SQLite connection, and the writes that arrive while a transaction is being committed go
//! together into the next one.
//!
//! SQLite takes one writer at a time, and with `synchronous=FULL` each COMMIT waits for its own
//! fsync: concurrent callers each paying for a transaction of their own spend most of their time
//! queued behind the others' fsyncs. Here a caller hands its write (a plain function over the
//! connection) to the writer and waits. The writer takes whatever is waiting (up to
//! [`MAX_BATCH`]), runs each write inside its own savepoint of one `BEGIN IMMEDIATE`
//! transaction, commits once, and only then answers each caller. So:
//! - a lone write is not delayed: an idle writer starts a transaction for it at once;
//! - a write that fails is rolled back to its savepoint and answered with its error, and its
//!   neighbours commit without it;
//! - when a savepoint itself cannot be taken, released or rolled back, the whole batch is rolled
//!   back and every write in it answered with that error;
//! - no caller is answered `Ok` before the COMMIT that holds its write returned: what a crash can
//!   leave behind is what it could before, each write wholly done or not at all;
//! - a caller that stopped waiting before its write began (its future was dropped) has it
//!   skipped, as dropping an uncommitted transaction would have rolled it back; a write that
//!   began is carried through, as a COMMIT already sent would be;
//! - memory stays bounded under overload: at most [`QUEUE_DEPTH`] writes wait for the writer,
//!   and callers beyond that wait (asynchronously) to hand theirs over. Nothing is dropped.
//!
//! Why a thread and `rusqlite` rather than the sqlx pool the reads use: sqlx runs each SQLite
//! connection on a worker thread of its own and sends it every statement over a channel, so
//! each statement of a write (and each SAVEPOINT and RELEASE) was a round trip between two
//! threads. A writer that issues statements one after the other spent most of its time in
//! those hand-overs. On its own thread the writer calls SQLite directly, and a write costs one
//! hand-over to the thread and one answer back, whatever its number of statements.
//!
//! The thread ends, closing its connection, when the store is closed or every handle to it is
//! dropped.

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{CachedStatement, Connection, OpenFlags, Transaction, TransactionBehavior};
use stint_ports::StoreError;
use tokio::sync::{mpsc, oneshot};

use crate::error::{map_rusqlite, name_path};
use crate::options::{SqliteOptions, Synchronous};

/// The most writes one transaction carries.
pub(crate) const MAX_BATCH: usize = 64;

/// The most writes that wait for the writer at once.
pub(crate) const QUEUE_DEPTH: usize = 1024;

/// Statements the writer's connection keeps prepared: more than the writes use, so none is
/// prepared twice.
const STATEMENT_CACHE: usize = 64;

/// The settings the pool's connections get (`connect.rs`), in the order sqlx applies them.
const SETTINGS_FULL: &str =
    "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;";
const SETTINGS_NORMAL: &str =
    "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;";

/// The statement `sql`, prepared once per connection and reused. `sql` is `'static`: statements
/// are fixed text with their values bound, never assembled from values.
pub(crate) fn statement<'c>(
    conn: &'c Connection,
    sql: &'static str,
) -> Result<CachedStatement<'c>, StoreError> {
    conn.prepare_cached(sql).map_err(map_rusqlite)
}

/// Hands writes to the store's writer thread. Cloning shares the writer.
#[derive(Clone)]
pub(crate) struct Writer {
    pending: mpsc::Sender<Message>,
}

impl fmt::Debug for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Writer")
            .field("waiting", &(QUEUE_DEPTH - self.pending.capacity()))
            .finish()
    }
}

/// What the writer thread is handed.
enum Message {
    /// A write to apply.
    Write(Box<dyn Pending>),
    /// Close the connection and stop, then say so.
    Close(oneshot::Sender<()>),
}

impl Writer {
    /// Starts the writer thread of the database at `path` (whose schema is already up to date)
    /// and waits until its connection is open.
    pub(crate) async fn start(path: &Path, options: &SqliteOptions) -> Result<Self, StoreError> {
        let (pending, waiting) = mpsc::channel(QUEUE_DEPTH);
        let (opened, open) = oneshot::channel();
        let (path, options) = (path.to_path_buf(), options.clone());
        std::thread::Builder::new()
            .name("stint-sqlite-writer".to_owned())
            .spawn(move || match connect(&path, &options) {
                Ok(conn) => {
                    let _ = opened.send(Ok(()));
                    write_batches(conn, waiting);
                }
                Err(error) => {
                    let _ = opened.send(Err(error));
                }
            })
            .map_err(|error| {
                StoreError::unavailable(format!("cannot start the store's writer thread: {error}"))
            })?;
        open.await.unwrap_or_else(|_| Err(stopped()))?;
        Ok(Self { pending })
    }

    /// Applies `write` in one of the writer's transactions, and answers once that transaction
    /// committed (or with the error that kept it from committing). `write` runs inside a
    /// savepoint: an `Err` rolls back what it did, and only that.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Write { write, reply });
        self.pending
            .send(Message::Write(pending))
            .await
            .map_err(|_| stopped())?;
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }

    /// Stops the writer once the writes handed to it before are answered, and waits until its
    /// connection is closed. Writes handed over later are refused.
    pub(crate) async fn close(&self) {
        let (done, closed) = oneshot::channel();
        if self.pending.send(Message::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
    }
}

fn stopped() -> StoreError {
    StoreError::unavailable("the store's writer stopped (the store was closed)")
}

/// How often a writer that finds the file locked by another connection tries again.
const BUSY_POLL: Duration = Duration::from_micros(200);

thread_local! {
    /// The store's busy timeout, on its writer's thread (each store has a thread of its own).
    static BUSY_TIMEOUT: Cell<Duration> = const { Cell::new(Duration::ZERO) };
    /// When the current wait for the lock began.
    static BUSY_SINCE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The writer's busy handler: tries again every [`BUSY_POLL`] until the store's busy timeout has
/// passed. SQLite's own handler backs off to 100 ms between tries; the writer of another store on
/// the same file (another process) that commits batch after batch leaves the lock free for only
/// microseconds between its transactions, and a waiter that looks ten times a second can miss
/// every one of them until its timeout (two stores racing on one file did, one run in a few).
fn wait_for_the_lock(count: i32) -> bool {
    let now = Instant::now();
    let since = match BUSY_SINCE.get() {
        Some(since) if count > 0 => since,
        _ => {
            BUSY_SINCE.set(Some(now));
            now
        }
    };
    if now.duration_since(since) >= BUSY_TIMEOUT.get() {
        return false;
    }
    std::thread::sleep(BUSY_POLL);
    true
}

/// Opens the writer's connection with the settings of the pool's connections.
fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, StoreError> {
    // As sqlx opens: read-write without creating (the pool created the file), no mutex (one
    // thread uses it), a private cache, and URIs understood.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_PRIVATE_CACHE;
    let named = |error| name_path(path, map_rusqlite(error));
    let conn = Connection::open_with_flags(path, flags).map_err(named)?;
    BUSY_TIMEOUT.set(options.busy_timeout);
    conn.busy_handler(Some(wait_for_the_lock)).map_err(named)?;
    conn.execute_batch(match options.synchronous {
        Synchronous::Full => SETTINGS_FULL,
        Synchronous::Normal => SETTINGS_NORMAL,
    })
    .map_err(named)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// One write waiting for the writer, its caller's type erased.
trait Pending: Send {
    /// Whether its caller stopped waiting.
    fn abandoned(&self) -> bool;
    /// Runs the write on `conn`. `Ok` holds how to answer its caller once the transaction's fate
    /// is known; `Err` says the write failed, and its caller was answered with its error.
    fn apply(self: Box<Self>, conn: &Connection) -> Result<Answer, StoreError>;
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
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }

    fn apply(self: Box<Self>, conn: &Connection) -> Result<Answer, StoreError> {
        let Write { write, reply } = *self;
        match write(conn) {
            // The caller may have gone meanwhile: nobody to answer then.
            Ok(value) => Ok(Box::new(move |commit: Result<(), StoreError>| {
                let _ = reply.send(commit.map(|()| value));
            })),
            // The writer rolls the write back to its savepoint; the answer is its own error
            // whatever the COMMIT does.
            Err(error) => {
                let _ = reply.send(Err(error.clone()));
                Err(error)
            }
        }
    }
}

/// The writer thread: takes what is waiting, applies it in one transaction, answers, repeats,
/// until the store is closed or every sender is dropped.
fn write_batches(mut conn: Connection, mut waiting: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = waiting.blocking_recv() {
        let close = gather(first, &mut waiting, &mut batch);
        batch.retain(|pending| !pending.abandoned());
        if !batch.is_empty() {
            commit_batch(&mut conn, batch.drain(..));
        }
        if let Some(done) = close {
            // Whoever waits to hand a write over is refused; what was handed over already is.
            waiting.close();
            let mut closers = vec![done];
            while let Some(message) = waiting.blocking_recv() {
                match message {
                    Message::Write(pending) => pending.refuse(stopped()),
                    Message::Close(done) => closers.push(done),
                }
            }
            drop(conn);
            for done in closers {
                let _ = done.send(());
            }
            return;
        }
    }
}

/// Puts `first` and whatever else is waiting already (up to [`MAX_BATCH`] writes) in `batch`,
/// without waiting for more. A request to close ends the batch, and is returned.
fn gather(
    first: Message,
    waiting: &mut mpsc::Receiver<Message>,
    batch: &mut Vec<Box<dyn Pending>>,
) -> Option<oneshot::Sender<()>> {
    let mut next = Some(first);
    while let Some(message) = next {
        match message {
            Message::Write(pending) => batch.push(pending),
            Message::Close(done) => return Some(done),
        }
        next = if batch.len() < MAX_BATCH {
            waiting.try_recv().ok()
        } else {
            None
        };
    }
    None
}

/// Applies `batch` in one `BEGIN IMMEDIATE` transaction, commits, and answers every caller.
fn commit_batch(conn: &mut Connection, batch: impl Iterator<Item = Box<dyn Pending>>) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            refuse(batch, &map_rusqlite(error));
            return;
        }
    };
    let (answers, committed) = match apply_each(&mut tx, batch) {
        // A COMMIT that fails leaves the transaction to be rolled back as `tx` is dropped.
        Ok(answers) => (answers, tx.commit().map_err(map_rusqlite)),
        Err((answers, error)) => {
            // Rolls the whole batch back before anyone is answered.
            drop(tx);
            (answers, Err(error))
        }
    };
    if let Err(error) = &committed {
        tracing::warn!(%error, writes = answers.len(), "a group commit failed");
    }
    for answer in answers {
        answer(committed.clone());
    }
}

/// Applies each write of `batch` inside its own savepoint of `tx`. The answers of the writes
/// that succeeded, for after the COMMIT; those that failed are rolled back to their savepoint
/// and answered already. When a savepoint itself cannot be taken, released or rolled back, the
/// transaction's state is unknown: the writes not yet run are refused, and `Err` has the answers
/// of those that ran, for the caller to roll the whole transaction back and answer them with the
/// error (so that no write is answered `Err` and committed, or committed half).
fn apply_each(
    tx: &mut Transaction<'_>,
    mut batch: impl Iterator<Item = Box<dyn Pending>>,
) -> Result<Vec<Answer>, (Vec<Answer>, StoreError)> {
    let mut answers = Vec::with_capacity(MAX_BATCH);
    while let Some(pending) = batch.next() {
        let savepoint = match tx.savepoint() {
            Ok(savepoint) => savepoint,
            Err(error) => {
                let error = map_rusqlite(error);
                pending.refuse(error.clone());
                refuse(batch, &error);
                return Err((answers, error));
            }
        };
        let broken = match pending.apply(&savepoint) {
            Ok(answer) => match savepoint.commit() {
                Ok(()) => {
                    answers.push(answer);
                    None
                }
                Err(error) => {
                    let error = map_rusqlite(error);
                    answer(Err(error.clone()));
                    Some(error)
                }
            },
            // Answered with its own error already; `finish` rolls back to the savepoint and
            // releases it.
            Err(_) => savepoint.finish().err().map(map_rusqlite),
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
