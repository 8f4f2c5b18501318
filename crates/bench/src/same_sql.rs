//! The floor is the same SQL: the statements each raw floor issues for one lifecycle, compared
//! with those its adapter issues for one attempt through the engine, as sqlx reports them (its
//! `sqlx::query` events, which carry each statement's text).
//!
//! The floors' statement texts are copied from the adapters by hand. This check runs before
//! every measurement of row 1 (on each backend), and as a test on SQLite, so a statement changed
//! in an adapter and not in its floor stops the benchmark instead of measuring something else.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::{Result, bail};
use rusqlite::trace::{TraceEvent, TraceEventCodes};
use stint_domain::NodeKey;
use stint_engine::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

use crate::backend::{PostgresBench, SqliteBench};
use crate::lifecycle::{FloorValues, engine_lifecycle, engine_on, warm_engine};
use crate::{floor_postgres, floor_sqlite};

/// sqlx's target for the event it emits after each statement.
const TARGET: &str = "sqlx::query";

/// The statements recorded while `recording` is set; one recording at a time.
#[derive(Default)]
struct Recorder {
    recording: AtomicBool,
    statements: Mutex<Vec<String>>,
}

/// Held for a whole check, warm-up included: any statement issued during a recording is
/// recorded, whoever issued it.
static ONE_CHECK_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The layer that feeds the recorder. Only sqlx's statement events are of interest, and only
/// while recording, so outside a recording it costs one flag read per statement.
struct Capture(Arc<Recorder>);

impl<S: Subscriber> Layer<S> for Capture {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        if metadata.target() == TARGET {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, metadata: &Metadata<'_>, _: Context<'_, S>) -> bool {
        metadata.target() == TARGET && self.0.recording.load(Ordering::SeqCst)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        // `db.statement` holds the text when it is longer than the summary, else it is empty
        // and the summary is the whole text.
        let text = if fields.statement.trim().is_empty() {
            fields.summary
        } else {
            fields.statement
        };
        self.0
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(normalise(&text));
    }
}

#[derive(Default)]
struct Fields {
    summary: String,
    statement: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "summary" => value.clone_into(&mut self.summary),
            "db.statement" => value.clone_into(&mut self.statement),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if matches!(field.name(), "summary" | "db.statement") {
            self.record_str(field, &format!("{value:?}"));
        }
    }
}

/// Whitespace runs as one space: the adapters and the floors break their literals differently.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The process's recorder, installed as the global tracing subscriber on first use.
fn recorder() -> Result<Arc<Recorder>> {
    static RECORDER: OnceLock<Option<Arc<Recorder>>> = OnceLock::new();
    let installed = RECORDER.get_or_init(|| {
        let recorder = Arc::new(Recorder::default());
        let subscriber = tracing_subscriber::registry().with(Capture(recorder.clone()));
        tracing::subscriber::set_global_default(subscriber)
            .ok()
            .map(|()| recorder)
    });
    match installed {
        Some(recorder) => Ok(recorder.clone()),
        None => bail!("another tracing subscriber is installed: cannot see sqlx's statements"),
    }
}

/// The statements `work` issued, in order.
async fn statements_of(
    recorder: &Recorder,
    work: impl Future<Output = Result<()>>,
) -> Result<Vec<String>> {
    recorder
        .statements
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    recorder.recording.store(true, Ordering::SeqCst);
    let done = work.await;
    recorder.recording.store(false, Ordering::SeqCst);
    done?;
    let recorded = std::mem::take(
        &mut *recorder
            .statements
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(recorded
        .into_iter()
        .filter(|statement| !is_connection_setup(statement))
        .collect())
}

/// What a pool runs on a connection it opens (SQLite's `PRAGMA`s, a `SET`): not part of a
/// lifecycle, and issued by whichever side happens to need a new connection.
fn is_connection_setup(statement: &str) -> bool {
    statement.starts_with("PRAGMA ") || statement.starts_with("SET ")
}

/// Records one engine lifecycle and one floor lifecycle through sqlx's statement events; fails
/// naming the first difference. The caller holds [`ONE_CHECK_AT_A_TIME`].
async fn compare(
    backend: &str,
    stint: impl Future<Output = Result<()>>,
    floor: impl Future<Output = Result<()>>,
) -> Result<()> {
    let recorder = recorder()?;
    let stint = statements_of(&recorder, stint).await?;
    let floor = statements_of(&recorder, floor).await?;
    differ(backend, &stint, &floor)
}

/// Fails naming the first statement where the adapter's and the floor's lifecycles differ.
fn differ(backend: &str, stint: &[String], floor: &[String]) -> Result<()> {
    if stint.is_empty() {
        bail!("{backend}: no statement was recorded for the engine's lifecycle");
    }
    if stint != floor {
        let position = stint
            .iter()
            .zip(floor)
            .position(|(s, f)| s != f)
            .unwrap_or(stint.len().min(floor.len()));
        bail!(
            "{backend}: the same-SQL floor no longer issues the adapter's statements (statement \
             {}; adapter {} statements, floor {}):\n  adapter: {}\n  floor:   {}",
            position + 1,
            stint.len(),
            floor.len(),
            stint.get(position).map_or("(none)", String::as_str),
            floor.get(position).map_or("(none)", String::as_str),
        );
    }
    Ok(())
}

/// The statements SQLite ran on a traced connection while recording (`Some`).
static SQLITE_TRACE: Mutex<Option<Vec<String>>> = Mutex::new(None);

/// SQLite's statement trace, installed on the store's writer and on the floor's connection.
fn trace_sqlite(event: TraceEvent<'_>) {
    if let TraceEvent::Stmt(_, sql) = event
        && let Some(statements) = SQLITE_TRACE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
    {
        statements.push(normalise(sql));
    }
}

/// The statements SQLite ran on the traced connections while `work` ran, in order, less the
/// transaction control around them (the writer wraps each write in a savepoint of a
/// transaction it may share; the floor runs one transaction of its own per write).
async fn sqlite_statements_of(work: impl Future<Output = Result<()>>) -> Result<Vec<String>> {
    let trace = || SQLITE_TRACE.lock().unwrap_or_else(PoisonError::into_inner);
    *trace() = Some(Vec::new());
    let done = work.await;
    let recorded = trace().take().unwrap_or_default();
    done?;
    Ok(recorded
        .into_iter()
        .filter(|statement| !is_connection_setup(statement) && !is_transaction_control(statement))
        .collect())
}

fn is_transaction_control(statement: &str) -> bool {
    ["BEGIN", "COMMIT", "SAVEPOINT", "RELEASE", "ROLLBACK"]
        .iter()
        .any(|word| statement.starts_with(word))
}

/// The floor's connection for `bench`, traced; the store's writer traced too.
async fn traced_floor(bench: &SqliteBench) -> Result<rusqlite::Connection> {
    bench
        .store
        .with_writer_connection(|conn| {
            conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(trace_sqlite));
        })
        .await?;
    let conn = bench.floor_connection()?;
    conn.trace_v2(TraceEventCodes::SQLITE_TRACE_STMT, Some(trace_sqlite));
    Ok(conn)
}

/// Checks the SQLite floor against the store of `bench` (a fresh database).
pub(crate) async fn check_sqlite(bench: &SqliteBench, values: &FloorValues) -> Result<()> {
    check_sqlite_with(bench, values, |_| Ok(())).await
}

/// [`check_sqlite`], with `more` run on the floor's connection after its lifecycle.
async fn check_sqlite_with(
    bench: &SqliteBench,
    values: &FloorValues,
    more: impl FnOnce(&rusqlite::Connection) -> Result<()>,
) -> Result<()> {
    let _one = ONE_CHECK_AT_A_TIME.lock().await;
    let store: Arc<dyn stint_ports::Store> = Arc::new(bench.store.clone());
    warm_engine(store.clone()).await?;
    let floor_conn = traced_floor(bench).await?;
    floor_sqlite::lifecycle(&floor_conn, &values.lifecycle("samesql-floor", "warm"))?;
    let engine = engine_on(store);
    let cancel = CancellationToken::new();
    let stint = sqlite_statements_of(async {
        engine_lifecycle(&engine, &cancel, NodeKey::new("samesql", "n", 0)?).await
    })
    .await?;
    let lifecycle = values.lifecycle("samesql-floor", "n");
    let floor = sqlite_statements_of(async {
        floor_sqlite::lifecycle(&floor_conn, &lifecycle)?;
        more(&floor_conn)
    })
    .await?;
    differ("SQLite", &stint, &floor)
}

/// Checks the PostgreSQL floor against the store of `bench` (a fresh schema).
pub(crate) async fn check_postgres(bench: &PostgresBench, values: &FloorValues) -> Result<()> {
    let _one = ONE_CHECK_AT_A_TIME.lock().await;
    warm_engine(bench.store.clone()).await?;
    let run = "samesql-floor";
    let key = floor_postgres::run_lock_key(run);
    floor_postgres::lifecycle(&bench.raw, &values.lifecycle(run, "warm"), key).await?;
    let engine = engine_on(bench.store.clone());
    let cancel = CancellationToken::new();
    let stint =
        async { engine_lifecycle(&engine, &cancel, NodeKey::new("samesql", "n", 0)?).await };
    let lifecycle = values.lifecycle(run, "n");
    let floor = floor_postgres::lifecycle(&bench.raw, &lifecycle, key);
    compare("PostgreSQL", stint, floor).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_sqlite_floor_issues_the_adapters_statements() {
        let values = FloorValues::new().expect("floor values");
        let bench = SqliteBench::open("normal").await.expect("a SQLite store");
        check_sqlite(&bench, &values).await.expect("the same SQL");
        bench.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_floor_statement_that_differs_is_caught() {
        let values = FloorValues::new().expect("floor values");
        let bench = SqliteBench::open("normal").await.expect("a SQLite store");
        // The floor's lifecycle with one statement more than the adapter's.
        let extra = |conn: &rusqlite::Connection| Ok(conn.execute_batch("SELECT 1")?);
        let error = check_sqlite_with(&bench, &values, extra)
            .await
            .expect_err("an extra statement is a difference");
        assert!(error.to_string().contains("SELECT 1"), "{error}");
        bench.close().await;
    }
}
