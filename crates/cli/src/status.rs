//! The status of a `stint run` on stderr: a live indicatif line on a terminal (attempt N of M,
//! elapsed, last heartbeat age), plain lines otherwise, nothing but errors with `--quiet`.
//!
//! It is both the engine's [`Observer`] and the runner's [`Console`], so the command's output
//! and stint's notes never tear the live line.

use std::collections::BTreeSet;
use std::io::{IsTerminal as _, Write as _};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use stint_domain::{AttemptKey, AttemptState};
use stint_engine::{AttemptOutcome, Observer};
use stint_ports::StoreError;
use tokio_util::task::AbortOnDropHandle;

use crate::process::Console;

/// How stint reports progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A live status line (stderr is a terminal).
    Live,
    /// One plain line per attempt event.
    Plain,
    /// Only errors.
    Quiet,
}

impl Mode {
    /// The mode for this process: `--quiet` wins, then whether stderr is a terminal.
    pub(crate) fn detect(quiet: bool) -> Self {
        if quiet {
            Self::Quiet
        } else if std::io::stderr().is_terminal() {
            Self::Live
        } else {
            Self::Plain
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    attempt: u32,
    attempt_started: Option<Instant>,
    last_heartbeat: Option<Instant>,
    /// The command's stdout and stderr as whole lines, while the live line is shown.
    lines: LiveLines,
    /// The warnings shown so far.
    warned: BTreeSet<Warning>,
}

/// The status display of one `stint run`.
#[derive(Debug)]
pub(crate) struct Status {
    mode: Mode,
    bar: Option<ProgressBar>,
    node: String,
    max_attempts: u32,
    inner: Mutex<Inner>,
}

impl Status {
    /// A display for `node`, whose attempts are numbered up to about `max_attempts`.
    pub(crate) fn new(mode: Mode, node: String, max_attempts: u32) -> Arc<Self> {
        let bar = (mode == Mode::Live).then(|| {
            let template = if std::env::var_os("NO_COLOR").is_some() {
                "{spinner} {msg}"
            } else {
                "{spinner:.cyan} {msg}"
            };
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style);
            }
            bar
        });
        Arc::new(Self {
            mode,
            bar,
            node,
            max_attempts,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Every update leaves `Inner` consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts redrawing the live line; the redraw stops when the handle is dropped.
    pub(crate) fn start(self: &Arc<Self>) -> Option<AbortOnDropHandle<()>> {
        let bar = self.bar.clone()?;
        bar.enable_steady_tick(Duration::from_millis(120));
        let this = Arc::clone(self);
        Some(AbortOnDropHandle::new(tokio::spawn(async move {
            loop {
                this.refresh();
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })))
    }

    /// Clears the live line and flushes any held-back output of the command.
    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let partial = self.inner().lines.take_partial();
        if !partial.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(&partial);
            let _ = err.flush();
        }
    }

    /// The number of the attempt started last (0 before the first).
    pub(crate) fn current_attempt(&self) -> u32 {
        self.inner().attempt
    }

    /// A progress line (`stint: text`), shown unless quiet.
    pub(crate) fn progress(&self, text: &str) {
        if self.mode != Mode::Quiet {
            self.note(text);
        }
    }

    fn refresh(&self) {
        let Some(bar) = &self.bar else { return };
        let inner = self.inner();
        let elapsed = inner
            .attempt_started
            .map(|s| s.elapsed())
            .unwrap_or_default();
        let heartbeat = match inner.last_heartbeat {
            Some(at) => format!("last heartbeat {} ago", short(at.elapsed())),
            None => "no heartbeat yet".to_owned(),
        };
        let max = self.max_attempts.max(inner.attempt);
        bar.set_message(format!(
            "{} · attempt {} of {max} · {} · {heartbeat}",
            self.node,
            inner.attempt,
            short(elapsed)
        ));
    }

    fn write_stderr(&self, bytes: &[u8]) {
        let write = |bytes: &[u8]| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
            let _ = err.flush();
        };
        match &self.bar {
            Some(bar) => bar.suspend(|| write(bytes)),
            None => write(bytes),
        }
    }
}

/// `1.2s`, `3m04s`: short enough for a status line.
fn short(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs < 60 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

impl Status {
    /// Writes the command's `bytes` from `stream`: as they come without a live line; with one,
    /// as whole lines (see [`LiveLines`]).
    fn command_output(&self, stream: Stream, bytes: &[u8]) {
        if self.bar.is_none() {
            self.write_stderr(bytes);
            return;
        }
        // Taken under the lock and written in the order taken.
        let mut inner = self.inner();
        let ready = inner.lines.push(stream, bytes);
        if !ready.is_empty() {
            self.write_stderr(&ready);
        }
    }
}

impl Console for Status {
    fn stderr(&self, bytes: &[u8]) {
        self.command_output(Stream::Stderr, bytes);
    }

    fn stdout(&self, bytes: &[u8]) {
        self.command_output(Stream::Stdout, bytes);
    }

    fn note(&self, text: &str) {
        let mut inner = self.inner();
        inner.lines.leave_progress_line();
        self.write_stderr(format!("stint: {text}\n").as_bytes());
    }
}

impl Observer for Status {
    fn attempt_started(&self, key: &AttemptKey, checkpoint: Option<&Value>) {
        {
            let mut inner = self.inner();
            inner.attempt = key.attempt;
            inner.attempt_started = Some(Instant::now());
            inner.last_heartbeat = None;
        }
        let from = if checkpoint.is_some() {
            ", from the last checkpoint"
        } else {
            ""
        };
        let max = self.max_attempts.max(key.attempt);
        if self.mode == Mode::Plain {
            self.note(&format!(
                "{} attempt {} of {max} started{from}",
                self.node, key.attempt
            ));
        }
        self.refresh();
    }

    fn heartbeat(&self, _key: &AttemptKey, _payload: Option<&Value>) {
        self.inner().last_heartbeat = Some(Instant::now());
    }

    fn attempt_ended(&self, outcome: &AttemptOutcome) {
        let attempt = outcome.key.attempt;
        let text = match (&outcome.state, &outcome.error) {
            (AttemptState::Finished, _) => format!("attempt {attempt} finished"),
            (state, Some(error)) => format!("attempt {attempt} {state}: {error}"),
            (state, None) => format!("attempt {attempt} {state}"),
        };
        self.progress(&text);
    }

    fn retry_scheduled(&self, next_attempt: u32, delay: Duration) {
        self.progress(&format!(
            "retrying as attempt {next_attempt} in {}",
            short(delay)
        ));
    }

    fn heartbeat_write_failed(&self, _key: &AttemptKey, error: &StoreError) {
        self.warn_once(
            Warning::HeartbeatWrite,
            &format!("a heartbeat could not be written ({error}); it is kept for the next write"),
        );
    }

    fn lease_renewal_failed(&self, _key: &AttemptKey, error: &StoreError) {
        self.warn_once(
            Warning::LeaseRenewal,
            &format!(
                "the attempt's lease could not be renewed ({error}); retrying (the command is \
                 stopped if no renewal succeeds for two thirds of the lease)"
            ),
        );
    }

    fn terminal_write_failed(&self, _key: &AttemptKey, error: &StoreError) {
        self.warn_once(
            Warning::TerminalWrite,
            &format!(
                "the attempt's end could not be written ({error}); retrying while the lease holds"
            ),
        );
    }
}

/// The kinds of store trouble the engine reports while it goes on; each is shown once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Warning {
    HeartbeatWrite,
    LeaseRenewal,
    TerminalWrite,
}

impl Status {
    /// `stint: warning: text`, the first time `kind` happens in this run (even when quiet: it is
    /// trouble, not progress).
    fn warn_once(&self, kind: Warning, text: &str) {
        if self.inner().warned.insert(kind) {
            self.note(&format!("warning: {text} (shown once)"));
        }
    }
}

/// Which of the command's streams bytes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// The longest line held back for the live line; a longer one is written in pieces of this size.
const LIVE_LINE_MAX: usize = 16 * 1024;
/// Moves the cursor one line up (to a progress line written before the status line).
const CURSOR_UP: &[u8] = b"\x1b[1A";

/// The command's output on a terminal that shows the live status line under it.
///
/// Each stream is written up to its last line end, so the status line is redrawn cleanly: `\n`,
/// or `\r` for a progress line (curl, pip, tqdm). A progress line is followed by a newline, so
/// the status line goes under it, and the stream's next write first moves back up onto it, so it
/// is overwritten as on a plain terminal. Only new bytes are scanned, and a line longer than
/// [`LIVE_LINE_MAX`] is written in pieces: the work is linear and what is held is bounded.
#[derive(Debug, Default)]
struct LiveLines {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// The stream whose progress line is the last line written.
    progress: Option<Stream>,
}

impl LiveLines {
    /// Takes `bytes` of `stream`; returns what to write now.
    fn push(&mut self, stream: Stream, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match bytes.iter().rposition(|b| matches!(b, b'\n' | b'\r')) {
            Some(end) => {
                let mut line = std::mem::take(self.partial(stream));
                line.extend_from_slice(&bytes[..=end]);
                self.emit(stream, &line, &mut out);
                self.partial(stream).extend_from_slice(&bytes[end + 1..]);
            }
            None => self.partial(stream).extend_from_slice(bytes),
        }
        while self.partial(stream).len() >= LIVE_LINE_MAX {
            let rest = self.partial(stream).split_off(LIVE_LINE_MAX);
            let mut piece = std::mem::replace(self.partial(stream), rest);
            piece.push(b'\n');
            self.emit(stream, &piece, &mut out);
        }
        out
    }

    /// Appends `line` (ending with `\n` or `\r`) to `out`, on the stream's progress line if the
    /// last line written is that.
    fn emit(&mut self, stream: Stream, line: &[u8], out: &mut Vec<u8>) {
        if self.progress == Some(stream) {
            out.extend_from_slice(CURSOR_UP);
        }
        out.extend_from_slice(line);
        if line.last() == Some(&b'\r') {
            out.push(b'\n');
            self.progress = Some(stream);
        } else {
            self.progress = None;
        }
    }

    fn partial(&mut self, stream: Stream) -> &mut Vec<u8> {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// Something else is written next: a progress line shown so far stays as it is.
    fn leave_progress_line(&mut self) {
        self.progress = None;
    }

    /// What is held back of both streams.
    fn take_partial(&mut self) -> Vec<u8> {
        self.progress = None;
        let mut held = std::mem::take(&mut self.stdout);
        held.append(&mut self.stderr);
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_lines_pass_and_partial_ones_wait() {
        let mut lines = LiveLines::default();
        assert_eq!(lines.push(Stream::Stderr, b"ab"), b"");
        assert_eq!(lines.push(Stream::Stderr, b"c\nde"), b"abc\n");
        assert_eq!(lines.push(Stream::Stdout, b"out\n"), b"out\n");
        assert_eq!(lines.take_partial(), b"de");
    }

    #[test]
    fn progress_lines_are_shown_and_overwritten() {
        let mut lines = LiveLines::default();
        assert_eq!(lines.push(Stream::Stderr, b" 10%\r"), b" 10%\r\n");
        assert_eq!(
            lines.push(Stream::Stderr, b" 20%\r 30%\r"),
            b"\x1b[1A 20%\r 30%\r\n"
        );
        // Another stream's line goes under the progress line, which then stays.
        assert_eq!(lines.push(Stream::Stdout, b"log\n"), b"log\n");
        assert_eq!(lines.push(Stream::Stderr, b"100%\n"), b"100%\n");
    }

    #[test]
    fn a_line_without_end_is_written_in_bounded_pieces() {
        let mut lines = LiveLines::default();
        let mut written = 0;
        for _ in 0..100 {
            written += lines.push(Stream::Stderr, &[b'x'; 1000]).len();
            assert!(lines.stderr.len() < LIVE_LINE_MAX);
        }
        let pieces = 100_000 / LIVE_LINE_MAX;
        assert_eq!(written, pieces * (LIVE_LINE_MAX + 1));
    }
}
