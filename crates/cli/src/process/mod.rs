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

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use stint_domain::{ErrorCode, TaskError};
use stint_engine::{TaskContext, TaskFailure};
use tokio::io::AsyncReadExt as _;
use tokio::process::{ChildStderr, ChildStdout};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use group::GroupGuard;
use heartbeat_pipe::Directives;
use spawn::{AttemptEnv, Spawned};

/// How much of the command's stderr is kept with a failure.
pub const STDERR_TAIL_BYTES: usize = 4096;
/// The largest output accepted on stdout.
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;
/// How long the rest of the group may keep the pipes open after the command exited.
const DRAIN: Duration = Duration::from_secs(1);

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
    let Spawned {
        mut child,
        heartbeats,
    } = spawn::spawn(&spec.argv, &env).map_err(|error| cannot_start(&spec.argv, &error))?;
    let mut group = GroupGuard::new(child.id().unwrap_or(0));
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let mut stdout_task = AbortOnDropHandle::new(tokio::spawn(read_stdout(stdout)));
    let mut stderr_task =
        AbortOnDropHandle::new(tokio::spawn(pump_stderr(stderr, console.clone())));
    let mut heartbeat_task = AbortOnDropHandle::new(tokio::spawn(heartbeat_pipe::read(
        heartbeats,
        ctx.heartbeat.clone(),
        console.clone(),
    )));

    let status = tokio::select! {
        status = child.wait() => status,
        () = ctx.cancel.cancelled() => {
            group.terminate(&mut child, spec.grace).await;
            let _ = tokio::time::timeout(DRAIN, &mut stderr_task).await;
            // The engine decided the outcome; this value is not recorded.
            return Err(TaskFailure::from(TaskError::aborted()));
        }
    };
    // Whatever the command left behind in its group may finish writing, then it is killed.
    if !group.wait_empty(Instant::now() + DRAIN).await {
        tracing::debug!("killing what is left of the command's process group");
    }
    group.kill(&mut child).await;
    let (output, tail, directives) = tokio::time::timeout(DRAIN, async {
        (
            (&mut stdout_task).await.ok(),
            (&mut stderr_task).await.ok(),
            (&mut heartbeat_task).await.ok(),
        )
    })
    .await
    .unwrap_or((None, None, None));

    let status = status
        .map_err(|error| TaskFailure::retryable(format!("cannot wait for the command: {error}")))?;
    let tail = tail.unwrap_or_default();
    if status.success() {
        parse_output(output.unwrap_or_else(|| Err("stdout was not read to its end".to_owned())))
    } else {
        Err(exit_failure(status, &tail, directives.unwrap_or_default()))
    }
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

/// Reads stdout to its end, refusing more than [`MAX_OUTPUT_BYTES`] (but still draining it, so
/// the command never blocks on a full pipe).
async fn read_stdout(stdout: Option<ChildStdout>) -> Result<Vec<u8>, String> {
    let Some(mut stdout) = stdout else {
        return Err("stdout was not captured".to_owned());
    };
    let mut output = Vec::new();
    let mut chunk = vec![0_u8; 64 * 1024];
    let mut too_large = false;
    loop {
        match stdout.read(&mut chunk).await {
            Ok(0) => break,
            Ok(read) if !too_large => {
                output.extend_from_slice(&chunk[..read]);
                if output.len() > MAX_OUTPUT_BYTES {
                    too_large = true;
                    output = Vec::new();
                }
            }
            Ok(_) => {}
            Err(error) => return Err(format!("cannot read the command's stdout: {error}")),
        }
    }
    if too_large {
        return Err(format!(
            "the command's stdout is over {MAX_OUTPUT_BYTES} bytes"
        ));
    }
    Ok(output)
}

/// Passes stderr through as it arrives and returns its last [`STDERR_TAIL_BYTES`].
async fn pump_stderr(stderr: Option<ChildStderr>, console: Arc<dyn Console>) -> String {
    let Some(mut stderr) = stderr else {
        return String::new();
    };
    let mut tail: Vec<u8> = Vec::with_capacity(2 * STDERR_TAIL_BYTES);
    let mut chunk = vec![0_u8; 16 * 1024];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => {
                console.stderr(&chunk[..read]);
                tail.extend_from_slice(&chunk[..read]);
                if tail.len() > STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    String::from_utf8_lossy(&tail).into_owned()
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
