//! Shared fixtures of the end-to-end tests: a temp working directory, a database URL, and the
//! real `stint` binary.
#![allow(dead_code, reason = "each test binary uses a different part")]

pub(crate) mod queue;
pub(crate) mod scenarios;
pub(crate) mod wakeups;
pub(crate) mod workers;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `stint` binary under test.
pub(crate) const STINT: &str = env!("CARGO_BIN_EXE_stint");

/// One test's world: a working directory and a database.
#[derive(Debug)]
pub(crate) struct World {
    pub dir: tempfile::TempDir,
    pub db: String,
}

impl World {
    /// A temp directory with a SQLite database file in it.
    pub(crate) fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = format!("sqlite://{}", dir.path().join("state/stint.db").display());
        Self { dir, db }
    }

    /// A temp directory and the database `db`.
    pub(crate) fn with_db(db: String) -> Self {
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            db,
        }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `stint ARGS` in the working directory, against the database.
    pub(crate) fn cmd(&self) -> assert_cmd::Command {
        with_timeout(self.std_cmd())
    }

    /// What `stint ARGS` did, run to its end.
    pub(crate) fn stint(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("stint runs")
    }

    /// The same as a std command (for tests that signal the process).
    pub(crate) fn std_cmd(&self) -> std::process::Command {
        let mut cmd = std::process::Command::new(STINT);
        self.configure(&mut cmd);
        cmd
    }

    fn configure(&self, cmd: &mut std::process::Command) {
        cmd.current_dir(self.dir.path())
            .env("STINT_DB", &self.db)
            .env("STINT_BIN", STINT)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .env_remove("STINT_HEARTBEAT_FD")
            .env_remove("STINT_CHECKPOINT");
    }

    /// `stint run --run-id RUN --node-id NODE FLAGS -- sh -c SCRIPT`, run to its end.
    pub(crate) fn run(&self, run: &str, node: &str, flags: &[&str], script: &str) -> Output {
        let mut cmd = with_timeout(self.run_cmd(run, node, flags, script));
        cmd.output().expect("stint runs")
    }

    /// The same `stint run` as a std command, for a test to spawn and signal.
    pub(crate) fn run_cmd(
        &self,
        run: &str,
        node: &str,
        flags: &[&str],
        script: &str,
    ) -> std::process::Command {
        let mut cmd = self.std_cmd();
        cmd.args(["run", "--run-id", run, "--node-id", node])
            .args(flags)
            .args(["--", "sh", "-c", script]);
        cmd
    }

    /// `stint attempts RUN --json`.
    pub(crate) fn attempts(&self, run: &str) -> Vec<Value> {
        self.read_attempts(run, false)
    }

    /// As [`World::attempts`], but a run not recorded yet (`UNKNOWN_RUN`) has no attempts: for
    /// polling a run that is starting, or whose runners were all killed before they began one.
    pub(crate) fn attempts_if_any(&self, run: &str) -> Vec<Value> {
        self.read_attempts(run, true)
    }

    /// `stint events RUN --json`, one value per line.
    pub(crate) fn events(&self, run: &str) -> Vec<Value> {
        self.read_events(run, false)
    }

    /// As [`World::events`], but a run not recorded yet (`UNKNOWN_RUN`) has no events.
    pub(crate) fn events_if_any(&self, run: &str) -> Vec<Value> {
        self.read_events(run, true)
    }

    fn read_attempts(&self, run: &str, unknown_is_empty: bool) -> Vec<Value> {
        let Some(stdout) = self.listing(&["attempts", run, "--json"], unknown_is_empty) else {
            return Vec::new();
        };
        match serde_json::from_str(&stdout).expect("attempts --json is JSON") {
            Value::Array(items) => items,
            other => panic!("attempts --json is not an array: {other}"),
        }
    }

    fn read_events(&self, run: &str, unknown_is_empty: bool) -> Vec<Value> {
        let Some(stdout) = self.listing(&["events", run, "--json"], unknown_is_empty) else {
            return Vec::new();
        };
        stdout
            .lines()
            .map(|line| serde_json::from_str(line).expect("each events line is JSON"))
            .collect()
    }

    /// The stdout of `stint ARGS`, which must succeed; `None` when the run is not recorded
    /// (`UNKNOWN_RUN`) and `unknown_is_empty`.
    fn listing(&self, args: &[&str], unknown_is_empty: bool) -> Option<String> {
        let output = self.cmd().args(args).output().expect("stint runs");
        if unknown_is_empty
            && output.status.code() == Some(1)
            && text(&output.stderr).contains(": UNKNOWN_RUN: ")
        {
            return None;
        }
        assert!(
            output.status.success(),
            "{} failed: {}",
            args[0],
            text(&output.stderr)
        );
        Some(text(&output.stdout))
    }
}

/// `cmd` spawned in the background with its stdout and stderr discarded.
pub(crate) fn spawn_quiet(mut cmd: std::process::Command) -> std::process::Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn stint")
}

/// `cmd` with the tests' limit of 60 s.
fn with_timeout(cmd: std::process::Command) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::from_std(cmd);
    cmd.timeout(Duration::from_secs(60));
    cmd
}

/// Asserts that `output` exited with `code`, showing its stderr when it did not.
pub(crate) fn assert_exit(output: &Output, code: i32) {
    assert_eq!(output.status.code(), Some(code), "{}", text(&output.stderr));
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The stderr lines stint wrote about itself (`stint: ...`).
pub(crate) fn stint_lines(output: &Output) -> Vec<String> {
    text(&output.stderr)
        .lines()
        .filter(|l| l.starts_with("stint: "))
        .map(str::to_owned)
        .collect()
}

/// Waits until `path` exists and holds a line; panics after 10 s.
pub(crate) fn wait_for_file(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(content) = std::fs::read_to_string(path)
            && content.ends_with('\n')
        {
            return content.trim().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether process `pid` is alive (a zombie counts as gone).
pub(crate) fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Waits for `child` up to `limit`; kills it and panics when it does not exit.
pub(crate) fn wait_with_limit(
    child: &mut std::process::Child,
    limit: Duration,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("stint did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `(name, body)` of a `harness = false` PostgreSQL test (`test_support::Test`): the scenario
/// `module::scenario` on a fresh schema, named as the scenario and then `suffix`, if any.
#[macro_export]
macro_rules! postgres_test {
    ($module:ident :: $scenario:ident $(, $suffix:literal)?) => {
        (
            concat!(stringify!($scenario) $(, $suffix)?),
            (|| $crate::common::on_postgres($module::$scenario)) as fn(),
        )
    };
}

/// The `(name, body)` of a `harness = false` test written as the function `test` of the test
/// file itself, named as the function.
#[macro_export]
macro_rules! named_test {
    ($test:ident) => {
        (stringify!($test), $test as fn())
    };
}

/// One `#[test]` per signal that must cancel a run like Ctrl-C:
/// [`scenarios::signal_cancels_the_process_group`] in a fresh SQLite world.
#[macro_export]
macro_rules! cancelled_by_signal {
    ($($(#[$doc:meta])* $test:ident: $signal:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            #[test]
            fn $test() {
                $crate::common::scenarios::signal_cancels_the_process_group(
                    &$crate::common::World::sqlite(),
                    ::nix::sys::signal::Signal::$signal,
                );
            }
        )*
    };
}

/// Runs `scenario` in a world on a fresh schema of the test PostgreSQL server, dropped after.
pub(crate) fn on_postgres(scenario: impl FnOnce(&World)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (store, guard) = runtime.block_on(stint_adapters_postgres::test_support::fresh_schema());
    runtime.block_on(store.close());
    let world = World::with_db(guard.url());
    scenario(&world);
    runtime.block_on(guard.drop_schema());
}

/// Holds the write lock of the SQLite database at `db` from this (second) process for `hold`:
/// a writer meets it as a lock held past its busy timeout.
pub(crate) fn hold_write_lock(db: &Path, hold: Duration) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        use sqlx::Connection as _;
        let url = format!("sqlite://{}", db.display());
        let mut conn = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("connect");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        tokio::time::sleep(hold).await;
        sqlx::query("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("release");
    });
}
