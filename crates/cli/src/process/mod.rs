//! Running an external command as one attempt's compute.
//!
//! The command runs in its own session and process group with the protocol of `stint run
//! --help`: its output comes from the file `$STINT_OUTPUT` names or from its stdout
//! ([`take`]), its stdout when it is not the output and its stderr pass through live (the last
//! 4 KiB of stderr are kept with a failure), its heartbeats arrive on descriptor 3. When the
//! engine cancels the attempt (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT, timeout, heartbeat timeout) the
//! whole group gets SIGTERM and SIGCONT, then SIGKILL after the grace period, and is reaped
//! before the compute returns.

mod capture;
mod group;
pub(crate) mod heartbeat_pipe;
pub(crate) mod orphans;
mod procfs;
mod spawn;
mod streams;
mod take;

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stint_domain::TaskError;
use stint_engine::{TaskContext, TaskFailure};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

pub(crate) use capture::OutputMode;
use capture::{Captured, StdoutCapture};
use group::GroupGuard;
pub(crate) use group::kill_current as kill_current_group;
use heartbeat_pipe::Directives;
use spawn::{AttemptEnv, Pipes, Spawned};
use streams::Ended;
use take::{OutputFile, Rules};

/// How long the rest of the group may keep running, and the pipes open, after the command
/// exited (or was killed).
const DRAIN: Duration = Duration::from_secs(1);
/// How long a reader gets after the group was killed, when the drain time is already over.
const AFTER_KILL: Duration = Duration::from_millis(100);

/// Where the command's stdout and stderr and stint's own notes go (the status display).
pub(crate) trait Console: Send + Sync {
    /// Bytes the command wrote on its stderr.
    fn stderr(&self, bytes: &[u8]);
    /// Bytes the command wrote on its stdout that are not its output, shown like its stderr.
    fn stdout(&self, bytes: &[u8]);
    /// One line of stint's own, printed as `stint: text`.
    fn note(&self, text: &str);
}

/// What to run, how its output is taken, and how long a cancelled command gets between SIGTERM
/// and SIGKILL.
#[derive(Debug, Clone)]
pub(crate) struct CommandSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Where the output comes from.
    pub output: OutputMode,
    /// Whether the command must produce an output (`--output-schema`).
    pub output_required: bool,
    /// The folder to run it in; stint's own when `None` (a worker runs a task where it was
    /// submitted).
    pub dir: Option<PathBuf>,
    /// More variables for the command (its attempt span's `TRACEPARENT`, say).
    pub env: Vec<(String, String)>,
}

/// The three readers of one attempt's pipes; each ends on its own.
struct Readers {
    stop: CancellationToken,
    stdout: AbortOnDropHandle<(Captured, Ended)>,
    stderr: AbortOnDropHandle<(String, Ended)>,
    heartbeats: AbortOnDropHandle<(Directives, Ended)>,
}

/// What the readers kept.
struct Read {
    /// `None` when the stdout reader failed.
    stdout: Option<Captured>,
    tail: String,
    directives: Directives,
}

/// Runs one attempt of `spec` as the engine's compute.
pub(crate) async fn run(
    spec: Arc<CommandSpec>,
    ctx: TaskContext,
    console: Arc<dyn Console>,
) -> Result<Value, TaskFailure> {
    let output_file = match spec.output {
        OutputMode::Stdout => None,
        OutputMode::Auto | OutputMode::File => Some(OutputFile::create().map_err(|error| {
            TaskFailure::retryable(format!("cannot create the $STINT_OUTPUT file: {error}"))
        })?),
    };
    let env = AttemptEnv {
        run_id: ctx.key.node.run_id().to_owned(),
        node_id: ctx.key.node.node_id().to_owned(),
        iteration: ctx.key.node.iteration(),
        attempt: ctx.key.attempt,
        checkpoint: ctx.checkpoint.as_ref().map(Value::to_string),
        output_file: output_file.as_ref().map(|file| file.path().to_owned()),
        dir: spec.dir.clone(),
        extra: spec.env.clone(),
    };
    let Spawned { mut child, pipes } =
        spawn::spawn(&spec.argv, &env).map_err(|error| cannot_start(&spec.argv, &error))?;
    let mut group = GroupGuard::new(child.id().unwrap_or(0));
    let _recording = child.id().map(|pid| record_place(pid, &ctx));
    let readers = Readers::start(pipes, spec.output, &ctx, &console);

    let status = tokio::select! {
        status = child.wait() => status,
        () = ctx.cancel.cancelled() => {
            group.terminate(&mut child, spec.grace).await;
            readers.finish(Instant::now() + DRAIN, console.as_ref()).await;
            // The engine decided the outcome; this value is not recorded.
            return Err(TaskFailure::from(TaskError::aborted()));
        }
    };
    // Whatever the command left behind in its group may finish writing, then it is killed.
    let drained = Instant::now() + DRAIN;
    if !group.wait_empty(drained).await {
        tracing::debug!("killing what is left of the command's process group");
    }
    group.kill(&mut child).await;
    let read = readers
        .finish(drained.max(Instant::now() + AFTER_KILL), console.as_ref())
        .await;

    let status = status
        .map_err(|error| TaskFailure::retryable(format!("cannot wait for the command: {error}")))?;
    if !status.success() {
        if let Some(Captured::Held(held)) = &read.stdout {
            console.stdout(held);
        }
        return Err(exit_failure(status, &read.tail, read.directives));
    }
    let stdout = read.stdout.ok_or_else(|| {
        TaskFailure::retryable("the command's stdout could not be read to its end".to_owned())
    })?;
    let rules = Rules {
        mode: spec.output,
        required: spec.output_required,
    };
    take::take(rules, output_file.as_ref(), stdout, console.as_ref())
}

impl Readers {
    /// Starts reading the pipes of a command just spawned.
    fn start(
        pipes: Pipes,
        mode: OutputMode,
        ctx: &TaskContext,
        console: &Arc<dyn Console>,
    ) -> Self {
        let stop = CancellationToken::new();
        let Pipes {
            stdout,
            stderr,
            heartbeats,
        } = pipes;
        let stdout = {
            let (stop, console) = (stop.clone(), console.clone());
            let mut capture = StdoutCapture::new(mode);
            async move {
                let ended = streams::read_pipe(stdout, stop, |bytes| {
                    capture.feed(bytes, console.as_ref());
                })
                .await;
                (capture.finish(), ended)
            }
        };
        Self {
            stdout: spawn_reader(stdout),
            stderr: spawn_reader(streams::pump_stderr(stderr, stop.clone(), console.clone())),
            heartbeats: spawn_reader(heartbeat_pipe::read(
                heartbeats,
                stop.clone(),
                ctx.heartbeat.clone(),
                console.clone(),
            )),
            stop,
        }
    }

    /// Lets each reader run to its end of file or to `deadline`, whichever comes first, and
    /// keeps what each one read; names the pipes a process the command left behind still holds.
    async fn finish(self, deadline: Instant, console: &dyn Console) -> Read {
        let stop = self.stop.clone();
        let _stopper = AbortOnDropHandle::new(tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            stop.cancel();
        }));
        let stdout = self.stdout.await.ok();
        let (tail, stderr_end) = self.stderr.await.unwrap_or_default();
        let (directives, heartbeat_end) = self.heartbeats.await.unwrap_or_default();
        let held: Vec<&str> = [
            (stdout.as_ref().map(|(_, end)| end), "stdout"),
            (Some(&stderr_end), "stderr"),
            (Some(&heartbeat_end), "the heartbeat descriptor (fd 3)"),
        ]
        .into_iter()
        .filter(|(end, _)| *end == Some(&Ended::StillOpen))
        .map(|(_, name)| name)
        .collect();
        if !held.is_empty() {
            console.note(&format!(
                "a process the command started outside its process group still holds {} open; \
                 stopped waiting for it (what was read is kept)",
                held.join(" and ")
            ));
        }
        if let Some((_, Ended::Failed(error))) = &stdout {
            console.note(&format!("cannot read the command's stdout: {error}"));
        }
        Read {
            stdout: stdout.and_then(|(captured, end)| match end {
                Ended::Failed(_) => None,
                Ended::Eof | Ended::StillOpen => Some(captured),
            }),
            tail,
            directives,
        }
    }
}

/// Records where the command's group lives, so that recovery can end it should stint die; in
/// the background (a slow store never delays the command), ended with the attempt.
fn record_place(pid: u32, ctx: &TaskContext) -> AbortOnDropHandle<()> {
    let place = orphans::place_of(pid);
    let recorder = ctx.process.clone();
    spawn_reader(async move {
        let Some(place) = place else {
            tracing::debug!(
                pid,
                "no process place to record (no /proc, or the command exited)"
            );
            return;
        };
        if let Err(error) = recorder.record(place).await {
            tracing::warn!(%error, "cannot record where the command's process group lives");
        }
    })
}

fn spawn_reader<T: Send + 'static>(
    reader: impl Future<Output = T> + Send + 'static,
) -> AbortOnDropHandle<T> {
    AbortOnDropHandle::new(tokio::spawn(reader))
}

fn cannot_start(argv: &[String], error: &std::io::Error) -> TaskFailure {
    let program = argv.first().map_or("", String::as_str);
    TaskFailure::permanent(format!("cannot start '{program}': {error}"))
        .with_details(json!({ "command": argv, "reason": error.to_string() }))
}

/// A non-zero exit or a death by signal: retryable unless the command said `#no-retry`.
fn exit_failure(status: ExitStatus, tail: &str, directives: Directives) -> TaskFailure {
    let message = match (status.code(), status.signal()) {
        (Some(code), _) => format!("command exited with status {code}"),
        (None, Some(signal)) => format!("command was killed by signal {signal}"),
        (None, None) => "command failed".to_owned(),
    };
    let failure = TaskFailure {
        error: TaskError::task_failed(message).with_details(json!({
            "exit_status": status.code(),
            "signal": status.signal(),
            "stderr_tail": tail,
        })),
        retryable: !directives.no_retry,
        retry_after: None,
    };
    match directives.retry_after {
        Some(delay) => failure.retry_after(delay),
        None => failure,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_shape_the_exit_failure() {
        let status = ExitStatus::from_raw(3 << 8);
        let failure = exit_failure(status, "boom", Directives::default());
        assert!(failure.retryable);
        assert_eq!(failure.error.details["exit_status"], json!(3));
        let failure = exit_failure(
            status,
            "",
            Directives {
                no_retry: true,
                retry_after: None,
            },
        );
        assert!(!failure.retryable);
        let delay = Some(Duration::from_secs(2));
        let failure = exit_failure(
            status,
            "",
            Directives {
                no_retry: false,
                retry_after: delay,
            },
        );
        assert_eq!(failure.retry_after, delay);
    }
}
