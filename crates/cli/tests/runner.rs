//! The command runner through the real `stint` binary, real processes, pipes, signals and a
//! pseudo-terminal (SQLite): how the output is taken, each stream read on its own, live stderr
//! on a terminal, signals, the command's own session, what stint says about its warnings, and
//! the revision it records.

mod common;
#[path = "runner/output.rs"]
mod output;
#[path = "runner/signals.rs"]
mod signals;
#[path = "runner/streams.rs"]
mod streams;
#[path = "runner/terminal.rs"]
mod terminal;
#[path = "runner/vcs.rs"]
mod vcs;
#[path = "runner/warnings.rs"]
mod warnings;

use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::World;

/// `stint run --run-id RUN --node-id n FLAGS -- sh -c SCRIPT` in the background, stdout null,
/// stderr collected by a thread.
pub(crate) fn spawn_run(w: &World, run: &str, flags: &[&str], script: &str) -> (Child, Collected) {
    let mut child = w
        .run_cmd(run, "n", flags, script)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn stint");
    let stderr = child.stderr.take().expect("stderr");
    (child, Collected::from_reader(stderr))
}

/// Bytes a thread reads from a pipe or terminal, as they arrive.
#[derive(Debug, Clone, Default)]
pub struct Collected {
    bytes: Arc<Mutex<Vec<u8>>>,
    ended: Arc<AtomicBool>,
}

impl Collected {
    /// Starts collecting everything `reader` yields, on a thread of its own, until its end.
    pub fn from_reader(mut reader: impl std::io::Read + Send + 'static) -> Self {
        let collected = Self::default();
        let Self { bytes, ended } = collected.clone();
        std::thread::spawn(move || {
            let mut chunk = [0_u8; 64 * 1024];
            // A terminal whose last writer closed reads EIO: that is its end too.
            while let Ok(read @ 1..) = reader.read(&mut chunk) {
                bytes
                    .lock()
                    .expect("lock")
                    .extend_from_slice(&chunk[..read]);
            }
            ended.store(true, Ordering::Release);
        });
        collected
    }

    /// What was collected so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().expect("lock")).into_owned()
    }

    /// Waits up to `limit` for `needle` to arrive; whether it did.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.text().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything, once the writers are gone (panics after 10 s).
    pub fn all(&self) -> String {
        wait_until("the end of the collected stream", || {
            self.ended.load(Ordering::Acquire)
        });
        self.text()
    }
}

/// The exit code and stderr of a `spawn_run` that ends within `limit`.
pub fn finish(mut child: Child, stderr: &Collected, limit: Duration) -> (Option<i32>, String) {
    let status = common::wait_with_limit(&mut child, limit);
    (status.code(), stderr.all())
}

/// The pid of a child process of `parent`, when there is one.
pub fn child_of(parent: i32) -> Option<i32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let ppid: i32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
}

/// The state letter of process `pid` (`R`, `S`, `T` stopped, `Z` zombie), when it exists.
pub fn state_of(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Says loudly that `test` was skipped, and why.
#[allow(clippy::print_stderr, reason = "a skipped test must say so loudly")]
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
}

/// Polls `condition` every 10 ms for up to 10 s; panics with `what` when it never holds.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "{what} never happened");
        std::thread::sleep(Duration::from_millis(10));
    }
}
