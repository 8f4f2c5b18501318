//! The command line: every command, flag and help text of `stint` (clap derive).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod queue;
mod ui;

pub use queue::{
    CancelArgs, Limit, ListedState, PruneArgs, QueueCommand, QueueLimitArgs, QueuesArgs, RetryArgs,
    SubmitArgs, TasksArgs, WorkerArgs, parse_time,
};
pub use ui::UiArgs;

/// The SQLite database used when neither `--db` nor `STINT_DB` is given.
pub const DEFAULT_DB: &str = "sqlite://.stint/stint.db";

const ROOT_LONG_ABOUT: &str = "\
Run any command as a durable task, and inspect every attempt.

Each `stint run` is one node of a run: its attempts, heartbeats, output and events are recorded in \
a database (SQLite by default, PostgreSQL with a postgres:// URL), so a crash, a timeout or a \
Ctrl-C never loses what happened, and the next attempt starts from the last checkpoint.";

const ROOT_AFTER_LONG_HELP: &str = "\
Exit codes (stable):
  0    finished (for `run`: the node finished; for other commands: success, including when the
       reader of stdout goes away, as in `stint events RUN --follow | head -1`)
  1    failed: retries exhausted, a non-retryable failure, invalid output; or a reading command
       found nothing recorded: no database file at --db (NO_DATABASE; it is not created), an
       unknown run (UNKNOWN_RUN), node (UNKNOWN_NODE) or task (UNKNOWN_TASK), a node without a
       current output (NO_OUTPUT: its latest attempt did not finish); or stint itself could not go
       on: stdout not writable (STDOUT), a heartbeat the pipe refused (HEARTBEAT_WRITE), RUNTIME,
       INTERNAL
  2    bad usage or bad input to stint: unknown flag or command (USAGE), unreadable
       --output-schema file, invalid id, unknown schema name (INVALID_INPUT), a wrong --db: unknown
       scheme or option (STORE_INVALID_CONFIG), a heartbeat payload `stint heartbeat` refuses,
       `heartbeat` outside a task
  3    store error: database unavailable or unreadable (STORE_UNAVAILABLE), newer or foreign
       schema (STORE_INCOMPATIBLE), conflict (STORE_CONFLICT: e.g. the node already has an attempt
       in progress in another process, or this attempt was declared abandoned meanwhile)
  4    left to recovery: a second Ctrl-C, SIGTERM, SIGHUP or SIGQUIT to `run` while it was
       cancelling killed the command's process group and exited at once, recording nothing more
       (`stint recover` marks the attempt ATTEMPT_ABANDONED once its lease expires)
  130  cancelled (Ctrl-C, SIGTERM, SIGHUP or SIGQUIT to stint, or Ctrl-C while following events)

Every error is one line on stderr: `stint: CODE: message`.

Environment:
  STINT_DB   database URL, as --db
  RUST_LOG   turns on tracing logs on stderr (e.g. RUST_LOG=stint_engine=debug,stint_cli=debug),
             coloured only when stderr is a terminal
  NO_COLOR   no colour in the status line or the logs
  OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL (http/protobuf or grpc),
  OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED
             OTLP export of spans and metrics from `run` and `worker` (see --otlp-endpoint)
  TRACEPARENT, TRACESTATE
             W3C trace context: the parent of `run`'s spans, stored with a task by `submit`;
             a command run by stint gets its attempt span's in the same variables

Examples:
  stint run --run-id nightly --node-id build -- sh -c 'echo {} >&3; make >&2; echo 42'
  stint attempts RUN_ID --json | jq '.[].state'
  stint events RUN_ID --follow";

/// `stint`: run any command as a durable task, and inspect every attempt.
#[derive(Debug, Parser)]
#[command(
    name = "stint",
    version,
    about = "Run any command as a durable task, and inspect every attempt",
    long_about = ROOT_LONG_ABOUT,
    after_long_help = ROOT_AFTER_LONG_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB (without USER: $PGUSER, else the OS
    /// user, as psql). A value without `://` is a SQLite file path. The SQLite file (and its folder) is created by the first `stint run`, `stint submit` or `stint
    /// migrate`; reading commands never create it, and fail with NO_DATABASE when it is missing.
    /// `?synchronous=normal` trades SQLite's last commits on power loss for speed.
    #[arg(
        long,
        global = true,
        env = "STINT_DB",
        hide_env_values = true,
        default_value = DEFAULT_DB,
        value_name = "URL"
    )]
    pub db: String,

    /// No live status line and no progress lines; only errors (and the command's own stderr).
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// The format of the tracing logs `RUST_LOG` turns on: `human` (one readable line each), or
    /// `json` (one JSON object per line, with the trace and span ids of the node and attempt
    /// spans when spans are exported).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, value_name = "FORMAT")]
    pub log_format: LogFormat,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The format of stint's tracing logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per line (tracing-subscriber's JSON format).
    Json,
}

/// Where spans and metrics go: shared by `stint run` and `stint worker`.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Send spans and metrics over OTLP to the collector at URL (e.g. http://127.0.0.1:4318;
    /// with OTEL_EXPORTER_OTLP_PROTOCOL=grpc, http://127.0.0.1:4317). It wins over
    /// OTEL_EXPORTER_OTLP_ENDPOINT; OTEL_SDK_DISABLED=true turns export off. Without either,
    /// nothing is exported and nothing is built for it.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

/// The commands of `stint`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command as a durable task (one node of a run), with retries, timeouts and heartbeats.
    #[command(
        long_about = RUN_LONG_ABOUT,
        after_long_help = RUN_AFTER_LONG_HELP
    )]
    Run(RunArgs),
    /// List runs, most recently updated first.
    Runs(RunsArgs),
    /// List a run's nodes: the state and number of each node's latest attempt (`--json`: one JSON
    /// array of node records, see `stint schema node`).
    Nodes(NodesArgs),
    /// List a run's attempts (`--json`: one JSON array of attempt records, see `stint schema attempt`).
    Attempts(AttemptsArgs),
    /// Print a run's events (`--json`: one JSON object per line, see `stint schema event`).
    Events(EventsArgs),
    /// Print the output of a finished node as JSON (exit 1 if its latest attempt did not finish).
    #[command(long_about = OUTPUT_LONG_ABOUT)]
    Output(OutputArgs),
    /// Print the JSON Schema of an event, record or error; without NAME, list the names.
    Schema(SchemaArgs),
    /// Mark attempts whose lease expired (their process died) failed with ATTEMPT_ABANDONED.
    #[command(
        long_about = "Mark every in-progress attempt whose lease expired failed with \
        ATTEMPT_ABANDONED (retryable, counted toward the node's retries) and print each one. \
        `stint run` does the same when it opens the store. Safe to run from many processes at once: \
        each attempt is marked exactly once.",
        after_long_help = RECOVER_AFTER_LONG_HELP
    )]
    Recover,
    /// Create or upgrade the database (`run` does this on open, reading commands upgrade an existing
    /// one); this does only that.
    Migrate,
    /// From inside a task: send one heartbeat (or a directive) to the stint running it.
    #[command(long_about = HEARTBEAT_LONG_ABOUT)]
    Heartbeat(HeartbeatArgs),
    /// Store a task (a command and its run options) in a durable queue and print its id.
    #[command(
        long_about = queue::SUBMIT_LONG_ABOUT,
        after_long_help = queue::SUBMIT_AFTER_LONG_HELP
    )]
    Submit(SubmitArgs),
    /// List queued tasks, oldest first (`--json`: one JSON array of task records).
    Tasks(TasksArgs),
    /// List each queue's counts: ready, scheduled, running, failed, oldest wait, limit.
    Queues(QueuesArgs),
    /// Cancel a task (or every task of a run): a queued one at once, a running one at its
    /// worker's next lease renewal. With --run, the run's attempts in progress are cancelled
    /// too, whoever runs them (a worker or a plain `stint run`, on any machine), at their next
    /// lease renewal.
    Cancel(CancelArgs),
    /// Queue a failed or cancelled task again, with a fresh retry budget (its attempts and
    /// checkpoint are kept).
    Retry(RetryArgs),
    /// Delete ended tasks (finished, failed, cancelled) and their nodes' history: attempts,
    /// outputs and node rows, and a run's events once it has no node left. A node another task
    /// names, or with an attempt in progress, keeps its history.
    Prune(PruneArgs),
    /// Configure a queue.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Claim queued tasks and run each as `stint run` would, until stopped.
    #[command(long_about = queue::WORKER_LONG_ABOUT)]
    Worker(WorkerArgs),
    /// Serve a web dashboard of runs, attempt timelines and queues (read-only by default).
    #[command(long_about = ui::UI_LONG_ABOUT, after_long_help = ui::UI_AFTER_LONG_HELP)]
    Ui(UiArgs),
}

const RECOVER_AFTER_LONG_HELP: &str = "\
Orphaned processes: a stint killed with SIGKILL (or by a crash) takes its command down with it
(Linux), but not what the command started in turn: that part of its process group keeps running.
`stint run` records where the group lives (`process` in `stint attempts --json`: host, boot id,
group id, the leader's start time), and before marking an attempt abandoned, recovery on the same
host and boot SIGKILLs the group and waits for it to go, printing `stint: ended orphaned process
group PGID of RUN/NODE#ITER attempt N`. So the node never runs beside a survivor of its last
attempt. The group is killed only when it is provably the attempt's: its leader still runs with the
recorded start time, or a live member started no earlier carries the attempt's STINT_RUN_ID,
STINT_NODE_ID, STINT_ITERATION and STINT_ATTEMPT; otherwise (a member that replaced its
environment, no /proc) it is left alone.

Across hosts (PostgreSQL): a group on another host cannot be reached from here, and recovery does
not wait for it: the attempt is marked abandoned all the same, and the node may run again at once.
That host ends the group only if its own `stint recover` or `stint run` recovers the attempt first;
once the attempt is marked elsewhere, nothing ends it. So after a stint died on a worker that stays
up, run `stint recover` on that worker (a cron `stint recover` on every worker does it), or end the
group by hand: `stint attempts RUN --json` names its host and group (`kill -KILL -- -PGID` there).
A reboot ends every group: a place recorded before it is ignored.";

const RUN_LONG_ABOUT: &str = "\
Run COMMAND as one node of a run, recording every attempt.

Without --run-id, the run id is derived from the current folder and COMMAND (a readable part and \
a hash, printed on stderr), so running the same command again in the same folder is the same run. \
Give --run-id to choose the run: one id for the nodes of a pipeline, or a new id to start afresh.

If the node (run id, node id, iteration) already finished, its stored output is printed and \
nothing runs, unless --force. Otherwise (it failed, was cancelled with Ctrl-C, or its process \
died) it resumes: attempts are numbered on from the node's earlier ones, the newest checkpoint is \
handed over in STINT_CHECKPOINT, and earlier failed attempts count toward --retries. Before \
running, attempts of dead processes (expired lease) are marked ATTEMPT_ABANDONED, as `stint \
recover` does, after the process groups they left running on this host are killed.

If another process is running an attempt of the same node right now, stint refuses at once with \
STORE_CONFLICT and exit code 3 (it does not wait): a node never has two attempts in progress.

On success the stored output is printed on stdout (`null` when there is none), so \
`stint run ... | jq` works; the command's own stdout, when it is not the output, goes to stderr.";

const RUN_AFTER_LONG_HELP: &str = "\
What the command sees:
  environment   STINT_RUN_ID, STINT_NODE_ID, STINT_ITERATION, STINT_ATTEMPT (1, 2, ...),
                STINT_CHECKPOINT (the previous attempt's last heartbeat payload as JSON; unset when
                there is none), STINT_HEARTBEAT_FD=3, STINT_OUTPUT (a file for the output)
  stdin         /dev/null
  stdout        the output when it is exactly one JSON value; otherwise shown live on stderr
  stderr        passed through live; its last 4 KiB are kept with a failure
  fd 3          the heartbeat pipe (no other descriptor is inherited)
  session       its own session and process group, without a controlling terminal (a read of
                /dev/tty fails at once); the whole group is signalled on cancel, and whatever is
                left of it is killed once the command exits

The output: the command may write it, one JSON value, to the file STINT_OUTPUT names (created
empty for each attempt, read once the command exited). If it wrote nothing there, its stdout is the
output when that is exactly one JSON value; otherwise its stdout is logs, shown live like its
stderr, and the output is null (as is an empty one). `--output stdout` always takes stdout,
`--output file` only the file. With --output-schema an output is required and checked. An output
taken that is not JSON or not UTF-8 fails the attempt with INVALID_OUTPUT (not retried).

Heartbeat protocol (one line per message on fd 3):
  a JSON value     a heartbeat; the payload becomes the checkpoint of the next attempt:
                     echo '{\"done\":3}' >&\"$STINT_HEARTBEAT_FD\"   (or: stint heartbeat '{\"done\":3}')
  an empty line    a bare liveness ping (keeps the last payload):  echo >&3
  #no-retry        directive: the failure that follows (non-zero exit) is not retried
  #retry-after DUR directive: retry the failure that follows after DUR (e.g. 30s), not the backoff
  An invalid line is reported on stderr with its code (HEARTBEAT_PAYLOAD_*, or INVALID_DIRECTIVE)
  and the task goes on.

Failures:
  non-zero exit     TASK_FAILED, retryable, details {exit_status, signal, stderr_tail}
  --timeout         TASK_TIMEOUT, retryable
  --heartbeat-timeout  TASK_HEARTBEAT_TIMEOUT, retryable (silent for longer than DUR)
  invalid output    INVALID_OUTPUT, not retried
  Retries wait --backoff-initial, doubling (--backoff-factor) up to --backoff-max, with jitter.

Cancellation: Ctrl-C, SIGTERM, SIGHUP (a closed terminal) or SIGQUIT to stint sends SIGTERM and
SIGCONT to the command's process group, then SIGKILL after --grace; the attempt is recorded
`cancelled` and stint exits 130 once that is written. A second one (half a second or more after
the first: two at once, as from a supervisor signalling stint and its group, are one request) does
not wait for that, nor for a store that does not answer: stint SIGKILLs the command's process
group, says the attempt is left to recovery, and exits 4 at once.

Bounds: the recovery before the begin and the begin of each attempt each give up after 60 s
(STORE_UNAVAILABLE, exit 3); every later write is bounded by the lease; every store call is also
bounded by the store's own timeouts (SQLite: busy_timeout_ms, 5 s by default; PostgreSQL:
connect_timeout, acquire_timeout and the session's statement and lock timeouts); and a second
signal ends stint at once whatever it waits for.

Revision: a finished attempt records where the code stood (`vcs` in `stint attempts --json`): the
jj change id of @, else the git commit, with `+dirty` when tracked files changed, or `+unknown`
when `git status` failed or timed out.

Exit codes: 0 finished, 1 failed, 2 bad usage/input, 3 store error or conflict, 4 left to
recovery (a second signal), 130 cancelled.

Examples:
  stint run -- sh examples/count.sh   # Ctrl-C, then the same line again: it resumes
  stint run --run-id nightly --node-id fetch --retries 3 --timeout 5m -- ./fetch.sh
  stint run --heartbeat-timeout 30s --output-schema out.schema.json -- python train.py";

const OUTPUT_LONG_ABOUT: &str = "\
Print the output of a finished node as JSON on stdout.

The output is printed only while it is current: when the node's latest attempt finished. If a later \
attempt (a `run --force`) failed, was cancelled or is still running, the earlier output is kept in \
the database but `output` fails with NO_OUTPUT (exit 1), saying the node's state; --last-finished \
prints the output of the last attempt that finished anyway, with a note on stderr. An unknown run \
is UNKNOWN_RUN, an unknown node UNKNOWN_NODE (exit 1).";

const HEARTBEAT_LONG_ABOUT: &str = "\
Send one heartbeat line to the stint running this task, on the descriptor named by \
STINT_HEARTBEAT_FD. With JSON: a heartbeat whose payload becomes the next attempt's checkpoint. \
Without JSON: a bare liveness ping. --no-retry and --retry-after send the matching directive \
instead. Fails with exit code 2 outside a task (STINT_HEARTBEAT_FD unset) or on invalid JSON.";

/// `stint run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The run this node belongs to. Default: derived from the current folder and the command
    /// line (printed on stderr), so the same command run again here resumes the same run.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// The node's id within the run.
    #[arg(long, value_name = "ID", default_value = "main")]
    pub node_id: String,
    /// The loop iteration of the node.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub iteration: u32,
    /// Retries, timeouts, output and lease: the same options as `stint submit`.
    #[command(flatten)]
    pub options: RunOptions,
    /// Run even if the node already finished (a new attempt; the old output is replaced).
    #[arg(long)]
    pub force: bool,
    /// OTLP export.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// The command and its arguments.
    #[arg(required = true, last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The options of one node's attempts, shared by `stint run` and `stint submit` (stored in a
/// task's spec as [`CommandSpec`](crate::task_spec::CommandSpec)).
#[derive(Debug, Clone, Args)]
pub struct RunOptions {
    /// Extra attempts after the first failure (earlier failed attempts of the node count too).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,
    /// Longest run of one attempt (e.g. 500ms, 30s, 5m); none by default.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// Fail an attempt that sends no heartbeat for this long; none by default.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub heartbeat_timeout: Option<Duration>,
    /// Delay before the first retry.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "1s")]
    pub backoff_initial: Duration,
    /// Growth of the delay per further failure.
    #[arg(long, value_name = "X", default_value_t = 2.0)]
    pub backoff_factor: f64,
    /// Longest delay between attempts.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "100s")]
    pub backoff_max: Duration,
    /// JSON Schema file the output must match.
    #[arg(long, value_name = "FILE")]
    pub output_schema: Option<PathBuf>,
    /// Where the output comes from (the rule is under "The output" in `stint run --help`).
    #[arg(long, value_enum, value_name = "FROM", default_value_t = crate::process::OutputMode::Auto)]
    pub output: crate::process::OutputMode,
    /// A human-readable label for the node.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// The output table name recorded with the node.
    #[arg(long, value_name = "NAME")]
    pub output_table: Option<String>,
    /// How long an attempt stays owned without a lease renewal (renewed every third of it);
    /// after that a dead stint's attempt is marked ATTEMPT_ABANDONED by recovery. A `stint
    /// cancel --run` reaches the attempt at its next renewal.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
    pub lease: Duration,
    /// On cancel or timeout: time between SIGTERM and SIGKILL to the command's process group.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "10s")]
    pub grace: Duration,
}

/// `stint runs`.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// One JSON array of run summaries (see `stint schema run`).
    #[arg(long)]
    pub json: bool,
}

/// `stint attempts`.
#[derive(Debug, Args)]
pub struct AttemptsArgs {
    /// The run.
    pub run_id: String,
    /// Only this node.
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Only this iteration.
    #[arg(long, value_name = "N")]
    pub iteration: Option<u32>,
    /// One JSON array of attempt records: run_id, node_id, iteration, attempt, state
    /// (in-progress, finished, failed, cancelled), error ({code, message, details} or null),
    /// heartbeat (last payload or null), started_at_ms, finished_at_ms, vcs, and more.
    #[arg(long)]
    pub json: bool,
}

/// `stint events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// The run.
    pub run_id: String,
    /// One JSON object per line: type, seq, run_id, node_id, iteration, attempt, timestamp_ms and
    /// the fields of the event's type.
    #[arg(long)]
    pub json: bool,
    /// Keep printing new events as they are written, until Ctrl-C (exit 130) or until the reader
    /// of stdout goes away (exit 0). A run not recorded yet is waited for, with a note on stderr.
    #[arg(long, short)]
    pub follow: bool,
    /// Only events with a sequence number above SEQ.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    pub after: u64,
}

/// `stint nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    /// The run.
    pub run_id: String,
    /// One JSON array of node records: run_id, node_id, iteration, state (of the latest attempt),
    /// last_attempt, updated_at_ms, output_table, label.
    #[arg(long)]
    pub json: bool,
}

/// `stint output`.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// The run.
    pub run_id: String,
    /// The node.
    pub node: String,
    /// The node's iteration.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub iteration: u32,
    /// Print the output of the last attempt that finished even when a later attempt failed, was
    /// cancelled or is running (a note on stderr names both attempts).
    #[arg(long)]
    pub last_finished: bool,
}

/// `stint schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// The schema to print (event, attempt, node, run, error, task-descriptor, task, queue-stats,
    /// command-spec).
    pub name: Option<String>,
}

/// `stint heartbeat`.
#[derive(Debug, Args)]
pub struct HeartbeatArgs {
    /// The payload, one JSON value; none sends a bare ping.
    #[arg(value_name = "JSON", conflicts_with_all = ["no_retry", "retry_after"])]
    pub payload: Option<String>,
    /// Send the `#no-retry` directive: the failure that follows is not retried.
    #[arg(long, conflicts_with = "retry_after")]
    pub no_retry: bool,
    /// Send the `#retry-after DUR` directive: retry the failure that follows after DUR.
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub retry_after: Option<Duration>,
}

/// Parses `500ms`, `30s`, `5m`, `1h 30m` (humantime).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("'{text}' is not a duration like 500ms, 30s or 5m ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert!(parse_duration("soon").is_err());
    }
}
