//! Group commit on a thread of its own: one writer thread applies every write of a store on its
//! own SQLite connection, and the writes that arrive while a transaction is being committed go
//! together into the next one.
//!
//! SQLite takes one writer at a time, and with `synchronous=FULL` each COMMIT waits for its own
//! fsync: concurrent callers each paying for a transaction of their own spend most of their time
//! queued behind the others' fsyncs. Here a caller hands its write (a plain function over the
//! connection) to the writer and waits. The writer takes whatever is waiting (up to
//! [`MAX_BATCH`]), runs the writes one after the other in one `BEGIN IMMEDIATE` transaction,
//! commits once, and only then answers each caller. So:
//! - a lone write is not delayed: an idle writer starts a transaction for it at once;
//! - a write that fails is rolled back and answered with its error, and its neighbours commit
//!   without it: the batch's transaction is rolled back whole and replayed from its start with
//!   each write inside a savepoint of its own (see [`commit_batch`]), so a batch pays for
//!   savepoints only when one of its writes fails;
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

use rusqlite::config::DbConfig;
use rusqlite::{CachedStatement, Connection, OpenFlags};
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
    /// committed (or with the error that kept it from committing). An `Err` from `write` rolls
    /// back what it did, and only that. `write` may run more than once: when a neighbour in its
    /// batch fails, the batch is rolled back and replayed, and only the last run counts. So it
    /// must depend only on the database and what it captured, as each of the store's writes
    /// does (every time in them is the caller's).
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let pending = Box::new(Write {
            write,
            reply,
            outcome: None,
        });
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
    // The query planner stability guarantee: a plan never depends on the values bound, so a
    // cached statement is never prepared again because a value changed. Without it, the claim's
    // READY (its `LIMIT ?`, which SQLite reads when planning) was parsed and planned anew at every
    // claim, as binding a value a plan read expires the statement.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(named)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// One write waiting for the writer, its caller's type erased.
trait Pending: Send {
    /// Whether its caller stopped waiting.
    fn abandoned(&self) -> bool;
    /// Runs the write on `conn`, keeping its result for the answer (a run again, when its batch
    /// is replayed, replaces it). Whether it succeeded.
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the fate of the transaction that held the write is known: the
    /// write's own error if its last run failed (it was rolled back), else `commit` with its
    /// value.
    fn answer(self: Box<Self>, commit: Result<(), StoreError>);
    /// Answers the caller with `error` without running the write.
    fn refuse(self: Box<Self>, error: StoreError);
}

struct Write<T, F> {
    write: F,
    reply: oneshot::Sender<Result<T, StoreError>>,
    /// The result of its last run.
    outcome: Option<Result<T, StoreError>>,
}

impl<T, F> Pending for Write<T, F>
where
    T: Send + 'static,
    F: FnMut(&Connection) -> Result<T, StoreError> + Send + 'static,
{
    fn abandoned(&self) -> bool {
        self.reply.is_closed()
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let outcome = (self.write)(conn);
        let ok = outcome.is_ok();
        self.outcome = Some(outcome);
        ok
    }

    fn answer(self: Box<Self>, commit: Result<(), StoreError>) {
        // The caller may have gone meanwhile: nobody to answer then.
        let _ = self.reply.send(match self.outcome {
            Some(Ok(value)) => commit.map(|()| value),
            Some(Err(error)) => Err(error),
            None => Err(commit.err().unwrap_or_else(not_run)),
        });
    }

    fn refuse(self: Box<Self>, error: StoreError) {
        let _ = self.reply.send(Err(error));
    }
}

/// The answer of a write that was never run in a transaction that committed (which the writer
/// never does; said rather than assumed).
fn not_run() -> StoreError {
    StoreError::unavailable("the store's writer did not apply the write")
}

/// The writer thread: takes what is waiting, applies it in one transaction, answers, repeats,
/// until the store is closed or every sender is dropped.
fn write_batches(conn: Connection, mut waiting: mpsc::Receiver<Message>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = waiting.blocking_recv() {
        let close = gather(first, &mut waiting, &mut batch);
        batch.retain(|pending| !pending.abandoned());
        if !batch.is_empty() {
            commit_batch(&conn, &mut batch);
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
///
/// Each write is first run plainly, one after the other: no savepoint to take and release per
/// write. Should one of them fail, what it changed before failing cannot be told apart from
/// what its neighbours changed, so the whole transaction is rolled back (nothing of it was
/// committed, nobody was answered) and the batch replayed from its start, each write inside a
/// savepoint of its own: the failing write is rolled back to its savepoint and answered with
/// its error, and its neighbours commit without it. A write that ran in the first try is run
/// again in the replay, whose result alone is answered.
fn commit_batch(conn: &Connection, batch: &mut Vec<Box<dyn Pending>>) {
    let committed = match apply_plainly(conn, batch) {
        Ok(committed) => committed,
        Err(failed) => apply_in_savepoints(conn, batch, failed),
    };
    if let Err(error) = &committed {
        tracing::warn!(%error, writes = batch.len(), "a group commit failed");
    }
    for pending in batch.drain(..) {
        pending.answer(committed.clone());
    }
}

/// Runs every write of `batch` in one transaction and commits it. `Ok` holds the transaction's
/// fate (`Err` when it could not begin or commit: it was rolled back, no write holds); `Err` is
/// the position of the first write that failed: the transaction was rolled back, and the
/// writes after it were not run.
fn apply_plainly(
    conn: &Connection,
    batch: &mut [Box<dyn Pending>],
) -> Result<Result<(), StoreError>, usize> {
    if let Err(error) = begin(conn) {
        return Ok(Err(error));
    }
    for (position, pending) in batch.iter_mut().enumerate() {
        if !pending.run(conn) {
            return match rollback(conn) {
                Ok(()) => Err(position),
                Err(error) => Ok(Err(error)),
            };
        }
    }
    Ok(commit(conn))
}

/// The replay of a batch whose write at `failed` failed in [`apply_plainly`]: each write inside
/// a savepoint of its own of one transaction, the writes that fail rolled back to theirs, then
/// one COMMIT. The transaction's fate: `Err` when it could not begin or commit, or when a
/// savepoint itself could not be taken, released or rolled back (its state is then unknown, so
/// it is rolled back whole, and the writes not yet run are not run).
fn apply_in_savepoints(
    conn: &Connection,
    batch: &mut [Box<dyn Pending>],
    failed: usize,
) -> Result<(), StoreError> {
    begin(conn)?;
    for (position, pending) in batch.iter_mut().enumerate() {
        // One not reached in the first try had not begun: skipped if its caller is gone.
        if position > failed && pending.abandoned() {
            continue;
        }
        let savepoint = execute(conn, "SAVEPOINT write").and_then(|()| {
            if pending.run(conn) {
                execute(conn, "RELEASE write")
            } else {
                execute(conn, "ROLLBACK TO write").and_then(|()| execute(conn, "RELEASE write"))
            }
        });
        if let Err(error) = savepoint {
            tracing::warn!(%error, "a savepoint failed; the whole batch is rolled back");
            // Rolled back whichever way: a ROLLBACK that fails is retried before the next BEGIN.
            let _ = rollback(conn);
            return Err(error);
        }
    }
    commit(conn)
}

/// Runs the fixed statement `sql`, which returns no rows.
fn execute(conn: &Connection, sql: &'static str) -> Result<(), StoreError> {
    statement(conn, sql)?.execute([]).map_err(map_rusqlite)?;
    Ok(())
}

/// Begins a transaction that holds the write lock from its start. A transaction left open by
/// an earlier batch whose rollback failed is rolled back first.
fn begin(conn: &Connection) -> Result<(), StoreError> {
    if !conn.is_autocommit() {
        rollback(conn)?;
    }
    execute(conn, "BEGIN IMMEDIATE")
}

/// Commits the open transaction, or rolls it back when the COMMIT fails.
fn commit(conn: &Connection) -> Result<(), StoreError> {
    let committed = execute(conn, "COMMIT");
    if committed.is_err() && !conn.is_autocommit() {
        let _ = rollback(conn);
    }
    committed
}

/// Rolls back the open transaction, if any (SQLite rolls one back itself on some errors).
fn rollback(conn: &Connection) -> Result<(), StoreError> {
    if conn.is_autocommit() {
        return Ok(());
    }
    execute(conn, "ROLLBACK").inspect_err(|error| {
        tracing::warn!(%error, "a transaction could not be rolled back");
    })
}
