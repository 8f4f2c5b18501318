//! Fresh, isolated schemas on a test server, for this crate's tests and for other crates'
//! (enable the `test-support` feature), and the harness that keeps a skipped PostgreSQL test
//! visible.
//!
//! The server is `STINT_TEST_POSTGRES_URL`, else `postgres://postgres@127.0.0.1:5432/test`.
//!
//! # Skipping, visibly
//!
//! libtest decides `#[ignore]` when the test is compiled, and a test that returns early is
//! reported `ok`: a PostgreSQL test skipped that way is invisible. So every test binary that
//! needs the server is a `harness = false` target whose `main` calls [`run_tests`]: it asks
//! [`availability`] once, before any test runs, and hands the tests to `libtest-mimic`, a harness
//! with the same command line and output as libtest that can mark tests ignored at run time.
//! When nothing listens at the server's address, every test of the binary is reported
//! `ignored` (the summary says `0 passed; 0 failed; N ignored`) and one line says why.
//!
//! Only "nothing listens" (the connection is refused, or the socket file is missing) is a skip.
//! A server that answers but refuses the user, lacks the database or wants a password makes the
//! tests run and fail: that is a broken set-up, not a missing one. So does a host that does not
//! resolve or does not answer. With `STINT_REQUIRE_POSTGRES=1` (CI) nothing is ever skipped:
//! without a server every test fails.
//!
//! To add a test to such a binary, add it to the list its `main` passes to [`run_tests`]: a
//! `#[test]` function there would not run (a tidy check refuses one).
#![allow(clippy::print_stderr, reason = "a skipped test must say so loudly")]

use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use stint_ports::StoreError;

use crate::PostgresStore;

/// The server tried when `STINT_TEST_POSTGRES_URL` is not set.
pub const DEFAULT_TEST_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var("STINT_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_URL.to_owned())
}

fn postgres_required() -> bool {
    std::env::var("STINT_REQUIRE_POSTGRES").is_ok_and(|value| value == "1")
}

/// Whether the PostgreSQL tests of a binary run, decided once before any of them starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Run them: something listens at the server's address (or PostgreSQL is required). Any
    /// failure to use it, a wrong user or database included, fails the tests.
    Run,
    /// Nothing listens at the server's address and PostgreSQL is not required: the tests are
    /// reported ignored, for this reason.
    Skip(String),
}

/// Whether the PostgreSQL tests can run here (see the module documentation).
pub fn availability() -> Availability {
    if postgres_required() {
        return Availability::Run;
    }
    let url = server_url();
    match nothing_listens(&url) {
        Some(what) => Availability::Skip(format!(
            "{what} (server {url}; set STINT_TEST_POSTGRES_URL, or STINT_REQUIRE_POSTGRES=1 to \
             fail instead)"
        )),
        None => Availability::Run,
    }
}

/// `Some(what)` when nothing listens at `url`'s address: every address of its host refuses
/// the connection, or its Unix socket does not exist. `None` in every other case, including a
/// URL that does not parse, a host that does not resolve or does not answer: the tests then run
/// and say what is wrong.
pub fn nothing_listens(url: &str) -> Option<String> {
    let options: PgConnectOptions = url.parse().ok()?;
    let (host, port) = (options.get_host(), options.get_port());
    if let Some(dir) = options.get_socket() {
        let socket = dir.join(format!(".s.PGSQL.{port}"));
        return (!socket.exists()).then(|| format!("no PostgreSQL socket at {}", socket.display()));
    }
    let addresses: Vec<SocketAddr> = (host, port).to_socket_addrs().ok()?.collect();
    let refused = |address: &SocketAddr| {
        TcpStream::connect_timeout(address, Duration::from_secs(3))
            .is_err_and(|error| error.kind() == ErrorKind::ConnectionRefused)
    };
    (!addresses.is_empty() && addresses.iter().all(refused))
        .then(|| format!("nothing listens at {host}:{port}"))
}

/// One test of a `harness = false` PostgreSQL test binary: its name and its body (which panics
/// to fail).
pub type Test = (&'static str, fn());

/// The `main` of a PostgreSQL test binary: runs `tests` with libtest's command line and output,
/// all reported ignored (with one line saying why) when [`availability`] says to skip.
pub fn run_tests(tests: Vec<Test>) -> ExitCode {
    run_tests_with(tests, Vec::new(), None)
}

/// As [`run_tests`], with `standalone` tests that need no server (always run), and at most
/// `threads` tests at once whatever the command line says (1 for tests whose timing must not
/// suffer from one another).
pub fn run_tests_with(tests: Vec<Test>, standalone: Vec<Test>, threads: Option<usize>) -> ExitCode {
    let mut arguments = libtest_mimic::Arguments::from_args();
    if threads.is_some() {
        arguments.test_threads = threads;
    }
    let skip = match availability() {
        Availability::Run => false,
        Availability::Skip(reason) => {
            if !arguments.list {
                eprintln!("stint: {} PostgreSQL tests ignored: {reason}", tests.len());
            }
            true
        }
    };
    let trial = |(name, test): Test, ignored: bool| {
        libtest_mimic::Trial::test(name, move || {
            test();
            Ok(())
        })
        .with_ignored_flag(ignored)
    };
    let trials = tests
        .into_iter()
        .map(|test| trial(test, skip))
        .chain(standalone.into_iter().map(|test| trial(test, false)))
        .collect();
    libtest_mimic::run(&arguments, trials).exit_code()
}

/// Runs `test` on a fresh two-worker runtime, as `#[tokio::test(flavor = "multi_thread")]`
/// would.
pub fn block_on<F: std::future::Future<Output = ()>>(test: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(test);
}

/// `url` with `key=value` added to its query string.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{key}={value}")
}

/// A schema made for one test; [`SchemaGuard::drop_schema`] removes it.
#[derive(Debug)]
pub struct SchemaGuard {
    server_url: String,
    schema: String,
}

impl SchemaGuard {
    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A store URL pointing at the schema (add `max_connections` etc. with [`with_param`]).
    pub fn url(&self) -> String {
        with_param(&self.server_url, "schema", &self.schema)
    }

    /// Another store on the same schema, with its own pool: a second process, as far as the
    /// database can tell.
    pub async fn connect(&self) -> PostgresStore {
        self.connect_with("").await
    }

    /// As [`SchemaGuard::connect`], with extra URL parameters (`max_connections=1`).
    pub async fn connect_with(&self, params: &str) -> PostgresStore {
        let mut url = self.url();
        if !params.is_empty() {
            url = format!("{url}&{params}");
        }
        PostgresStore::connect(&url)
            .await
            .unwrap_or_else(|error| panic!("second store on {}: {error}", self.schema))
    }

    /// Drops the schema and everything in it. Failure is only logged: the schema's name is
    /// unique, so a leftover harms no other test.
    pub async fn drop_schema(self) {
        let dropped = async {
            let options: sqlx::postgres::PgConnectOptions = self.server_url.parse()?;
            let mut conn = PgConnection::connect_with(&options).await?;
            // The name was made by `fresh_schema` and passes `validate_schema`.
            let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema);
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await
        };
        if let Err(error) = dropped.await {
            eprintln!("stint test: could not drop schema {}: {error}", self.schema);
        }
    }
}

/// A store on a new, empty schema of the test server. Panics when the server cannot be used:
/// the caller runs under [`run_tests`], which ignores the test when nothing listens.
pub async fn fresh_schema() -> (PostgresStore, SchemaGuard) {
    fresh_schema_with("").await
}

/// As [`fresh_schema`], with extra URL parameters for the store (`max_connections=8`).
pub async fn fresh_schema_with(params: &str) -> (PostgresStore, SchemaGuard) {
    try_fresh_schema_with(params)
        .await
        .unwrap_or_else(|error| panic!("the PostgreSQL test server failed: {error}"))
}

/// As [`fresh_schema_with`], returning the error (for the benchmark, which reports it).
pub async fn try_fresh_schema_with(
    params: &str,
) -> Result<(PostgresStore, SchemaGuard), StoreError> {
    let server_url = server_url();
    let schema = format!("stint_test_{}", uuid::Uuid::new_v4().simple());
    let guard = SchemaGuard {
        server_url: server_url.clone(),
        schema,
    };
    let mut url = guard.url();
    if !params.is_empty() {
        url = format!("{url}&{params}");
    }
    let store = PostgresStore::connect(&with_param(&url, "connect_timeout", "3")).await?;
    Ok((store, guard))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::nothing_listens;

    #[test]
    fn a_closed_port_is_nothing_listening() {
        // Bind then drop: the port was free a moment ago and nothing listens on it now.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/test");
        let what = nothing_listens(&url).expect("a refused connection is a skip");
        assert!(what.contains(&format!("127.0.0.1:{port}")), "{what}");
    }

    #[test]
    fn a_listener_is_not_a_skip_whatever_it_answers() {
        // It accepts and never speaks PostgreSQL: the tests must run, and fail.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        assert_eq!(
            nothing_listens(&format!(
                "postgres://wrong_user@127.0.0.1:{port}/no_such_db"
            )),
            None
        );
    }

    #[test]
    fn a_bad_url_is_not_a_skip() {
        assert_eq!(nothing_listens("not a url"), None);
    }

    #[test]
    fn a_missing_socket_is_nothing_listening() {
        let dir = tempfile_dir();
        let url = format!("postgres://postgres@localhost/test?host={}", dir.display());
        let what = nothing_listens(&url).expect("no socket file is a skip");
        assert!(what.contains(".s.PGSQL.5432"), "{what}");
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("stint-no-socket-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }
}
