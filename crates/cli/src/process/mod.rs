//! Running an external command as one attempt's compute.
//!
//! The command runs in its own session and process group with the protocol of `stint run
//! --help`: its stdout is the output (one JSON value), its stderr passes through live (the last
//! 4 KiB are kept with a failure), its heartbeats arrive on descriptor 3. When the engine cancels
//! the attempt (Ctrl-C, SIGTERM, SIGHUP, SIGQUIT, timeout, heartbeat timeout) the whole group
//! gets SIGTERM and SIGCONT, then SIGKILL after the grace period, and is reaped before the
//! compute returns.

mod group;
pub mod heartbeat_pipe;
mod spawn;
mod streams;

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stint_domain::{ErrorCode, TaskError};
use stint_engine::{TaskContext, TaskFailure};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use group::GroupGuard;
use heartbeat_pipe::Directives;
use spawn::{AttemptEnv, Pipes, Spawned};
use streams::Ended;

/// The largest output accepted on stdout.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// How long the rest of the group may keep running, and the pipes open, after the command
/// exited (or was killed).
const DRAIN: Duration = Duration::from_secs(1);
/// How long a reader gets after the group was killed, when the drain time is already over.
const AFTER_KILL: Duration = Duration::from_millis(100);

/// Where the command's stderr and stint's own notes go (the status display).
pub trait Console: Send + Sync {
    /// Bytes the command wrote on its stderr.
    fn stderr(&self, bytes: &[u8]);
    /// One line of stint's own, printed as `stint: text`.
    fn note(&self, text: &str);
}

/// What to run, and how long a cancelled command gets between SIGTERM and SIGKILL.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// The three readers of one attempt's pipes; each ends on its own.
struct Readers {
    stop: CancellationToken,
    stdout: AbortOnDropHandle<(Result<Vec<u8>, String>, Ended)>,
    stderr: AbortOnDropHandle<(String, Ended)>,
    heartbeats: AbortOnDropHandle<(Directives, Ended)>,
}

/// What the readers kept.
struct Read {
    /// `None` when the stdout reader failed.
    stdout: Option<Result<Vec<u8>, String>>,
    tail: String,
    directives: Directives,
}

/// Runs one attempt of `spec` as the engine's compute.
pub async fn run(
    spec: Arc<CommandSpec>,
    ctx: TaskContext,
    console: Arc<dyn Console>,
) -> Result<Value, TaskFailure> {
    let env = AttemptEnv {
        run_id: ctx.key.node.run_id().to_owned(),
        node_id: ctx.key.node.node_id().to_owned(),
        iteration: ctx.key.node.iteration(),
        attempt: ctx.key.attempt,
        checkpoint: ctx.checkpoint.as_ref().map(Value::to_string),
    };
    let Spawned { mut child, pipes } =
        spawn::spawn(&spec.argv, &env).map_err(|error| cannot_start(&spec.argv, &error))?;
    let mut group = GroupGuard::new(child.id().unwrap_or(0));
    let readers = Readers::start(pipes, &ctx, &console);

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
        return Err(exit_failure(status, &read.tail, read.directives));
    }
    parse_output(
        read.stdout
            .unwrap_or_else(|| Err("the command's stdout could not be read to its end".to_owned())),
    )
}

impl Readers {
    /// Starts reading the pipes of a command just spawned.
    fn start(pipes: Pipes, ctx: &TaskContext, console: &Arc<dyn Console>) -> Self {
        let stop = CancellationToken::new();
        let Pipes {
            stdout,
            stderr,
            heartbeats,
        } = pipes;
        let stdout = {
            let stop = stop.clone();
            let mut output = StdoutBytes::default();
            async move {
                let ended = streams::read_pipe(stdout, stop, |bytes| output.push(bytes)).await;
                (output.finish(), ended)
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
            stdout: stdout.and_then(|(output, end)| match end {
                Ended::Failed(_) => None,
                Ended::Eof | Ended::StillOpen => Some(output),
            }),
            tail,
            directives,
        }
    }
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

/// The command's stdout, kept up to [`MAX_OUTPUT_BYTES`] (the rest is drained, so the command
/// never blocks on a full pipe).
#[derive(Debug, Default)]
struct StdoutBytes {
    bytes: Vec<u8>,
    too_large: bool,
}

impl StdoutBytes {
    fn push(&mut self, bytes: &[u8]) {
        if self.too_large {
            return;
        }
        if self.bytes.len() + bytes.len() > MAX_OUTPUT_BYTES {
            self.too_large = true;
            self.bytes = Vec::new();
        } else {
            self.bytes.extend_from_slice(bytes);
        }
    }

    fn finish(self) -> Result<Vec<u8>, String> {
        if self.too_large {
            return Err(format!(
                "the command's stdout is over {MAX_OUTPUT_BYTES} bytes"
            ));
        }
        Ok(self.bytes)
    }
}

/// The command's stdout as one JSON value, or `INVALID_OUTPUT` (not retryable).
fn parse_output(stdout: Result<Vec<u8>, String>) -> Result<Value, TaskFailure> {
    let invalid = |message: String, head: &str| TaskFailure {
        error: TaskError::new(ErrorCode::InvalidOutput, message)
            .with_details(json!({ "stdout_head": head })),
        retryable: false,
        retry_after: None,
    };
    let bytes = stdout.map_err(|reason| invalid(reason, ""))?;
    let text = String::from_utf8_lossy(&bytes);
    let head: String = text.chars().take(200).collect();
    if text.trim().is_empty() {
        return Err(invalid(
            "the command printed nothing on stdout; its output must be one JSON value (print null for none)".to_owned(),
            "",
        ));
    }
    serde_json::from_str(text.trim()).map_err(|error| {
        invalid(
            format!("the command's stdout is not one JSON value: {error}"),
            &head,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_must_be_one_json_value() {
        assert_eq!(
            parse_output(Ok(b" {\"a\":1}\n".to_vec())).ok(),
            Some(json!({"a": 1}))
        );
        for bad in [&b""[..], b"hello", b"{} {}"] {
            let failure = parse_output(Ok(bad.to_vec())).expect_err("invalid");
            assert_eq!(failure.error.code, ErrorCode::InvalidOutput);
            assert!(!failure.retryable);
        }
    }

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
