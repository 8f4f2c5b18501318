//! The queue's commands: `submit`, `tasks`, `queues`, `cancel`, `retry`, `prune`, `queue`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgGroup, Args, Subcommand};
use stint_domain::TaskState;

use super::{RunOptions, parse_duration};

pub(super) const SUBMIT_LONG_ABOUT: &str = "\
Store a task in a durable queue and print its id; a worker claims it and runs it as `stint run` \
would, in the folder it was submitted from.

Each task is one node: without --node-id it gets a node of its own (`task-` and a random part), \
so submitting the same command twice stores two tasks. Without --run-id the run id is derived \
from the current folder and COMMAND as `stint run` derives it, so the tasks of one command share \
a run (`stint attempts RUN` lists them together).

With --unique-key, a task that has not ended and holds the same key is kept instead: its id is \
printed, a note on stderr says so, and nothing is stored (exit 0).

--batch FILE (or - for stdin) reads JSON lines, one task per line, and stores them all in one \
transaction: an object with `command` (an array of strings) and any of `queue`, `run_id`, \
`node_id`, `priority`, `delay` or `at`, `unique_key`, and the run options by their flag names \
(`retries`, `timeout`, `heartbeat_timeout`, `backoff_initial`, `backoff_factor`, `backoff_max`, \
`output_schema`, `output`, `label`, `output_table`, `lease`, `grace`; durations as strings like \
\"30s\"). Flags given on the command line are the defaults of every line. One bad line refuses the \
whole batch, naming its line number (exit 2); one id is printed per line (-q: only the count).

The spec stored with each task (see `stint schema command-spec`) holds the output schema itself, \
read now, so a worker on another machine needs no file.";

pub(super) const SUBMIT_AFTER_LONG_HELP: &str = "\
Examples:
  stint submit -- ./fetch.sh https://example.com
  stint submit --queue nightly --retries 3 --timeout 5m --at 2030-01-01T02:00:00Z -- make report
  printf '%s\\n' '{\"command\":[\"sh\",\"-c\",\"echo 1\"],\"retries\":2}' | stint submit --batch -";

/// `stint submit`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("when").args(["delay", "at"])))]
pub struct SubmitArgs {
    /// The queue.
    #[arg(long, value_name = "NAME", default_value = stint_ports::DEFAULT_QUEUE)]
    pub queue: String,
    /// The run of the task's node. Default: derived from the current folder and the command,
    /// as `stint run` does.
    #[arg(long, value_name = "ID", conflicts_with = "batch")]
    pub run_id: Option<String>,
    /// The task's node. Default: a new node (`task-` and a random part) for every task.
    #[arg(long, value_name = "ID", conflicts_with = "batch")]
    pub node_id: Option<String>,
    /// Higher is claimed first.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        allow_negative_numbers = true
    )]
    pub priority: i32,
    /// Not run before this long from now (e.g. 30s, 5m, 2h).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub delay: Option<Duration>,
    /// Not run before this time (RFC 3339, e.g. 2030-01-01T02:00:00Z or ...+02:00).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<u64>,
    /// At most one task that has not ended holds this key: while one does, its id is printed
    /// and nothing is stored.
    #[arg(long, value_name = "KEY", conflicts_with = "batch")]
    pub unique_key: Option<String>,
    /// Read tasks as JSON lines from FILE (- for stdin), all stored in one transaction.
    #[arg(long, value_name = "FILE", conflicts_with = "command")]
    pub batch: Option<PathBuf>,
    /// Print the stored task record as JSON (see `stint schema task`) instead of its id.
    #[arg(long, conflicts_with = "batch")]
    pub json: bool,
    /// Retries, timeouts, output and lease: the same options as `stint run`.
    #[command(flatten)]
    pub options: RunOptions,
    /// The command and its arguments.
    #[arg(required_unless_present = "batch", last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `stint tasks`.
#[derive(Debug, Args)]
pub struct TasksArgs {
    /// Only this queue.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// Only tasks in this state (`scheduled`: ready, but due later).
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<ListedState>,
    /// At most this many tasks, oldest first.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub limit: u32,
    /// One JSON array of task records (see `stint schema task`).
    #[arg(long)]
    pub json: bool,
}

/// A state as `stint tasks` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ListedState {
    /// Ready and due.
    Ready,
    /// Ready, due later.
    Scheduled,
    /// Claimed by a worker.
    Running,
    /// Its node finished.
    Finished,
    /// Its node failed for good.
    Failed,
    /// Cancelled.
    Cancelled,
}

impl ListedState {
    /// The stored state this listed state is part of.
    pub fn stored(self) -> TaskState {
        match self {
            Self::Ready | Self::Scheduled => TaskState::Ready,
            Self::Running => TaskState::Running,
            Self::Finished => TaskState::Finished,
            Self::Failed => TaskState::Failed,
            Self::Cancelled => TaskState::Cancelled,
        }
    }
}

/// `stint queues`.
#[derive(Debug, Args)]
pub struct QueuesArgs {
    /// One JSON array of queue counts (see `stint schema queue-stats`).
    #[arg(long)]
    pub json: bool,
}

/// `stint cancel`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("target").required(true).args(["task", "run"])))]
pub struct CancelArgs {
    /// The task's id.
    #[arg(value_name = "TASK")]
    pub task: Option<u64>,
    /// Every task of this run instead.
    #[arg(long, value_name = "RUN")]
    pub run: Option<String>,
}

/// `stint retry`.
#[derive(Debug, Args)]
pub struct RetryArgs {
    /// The task's id.
    #[arg(value_name = "TASK")]
    pub task: u64,
}

/// `stint prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Delete tasks that ended longer ago than this (e.g. 7d, 12h, 0s for every ended task).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    pub ended_before: Duration,
    /// Tasks deleted per transaction (with their nodes' history).
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
}

/// `stint queue`.
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Set a queue's limit on running tasks (across every worker), or lift it with `none`.
    Limit(QueueLimitArgs),
}

/// `stint queue limit`.
#[derive(Debug, Args)]
pub struct QueueLimitArgs {
    /// The queue.
    #[arg(value_name = "QUEUE")]
    pub queue: String,
    /// At most this many of its tasks run at once; `none` lifts the limit.
    #[arg(value_name = "N|none", value_parser = parse_limit)]
    pub limit: Limit,
}

/// A queue's limit as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(pub Option<u32>);

fn parse_limit(text: &str) -> Result<Limit, String> {
    if text == "none" {
        return Ok(Limit(None));
    }
    text.parse::<u32>()
        .map(|n| Limit(Some(n)))
        .map_err(|_| format!("'{text}' is not a number of tasks or `none`"))
}

/// Parses an RFC 3339 time (`Z` or a `±HH:MM` offset) into milliseconds since the epoch.
pub fn parse_time(text: &str) -> Result<u64, String> {
    let refused = || format!("'{text}' is not an RFC 3339 time like 2030-01-01T02:00:00Z");
    let text = text.trim();
    let (base, offset_s) = split_offset(text).ok_or_else(refused)?;
    let utc = humantime::parse_rfc3339(&format!("{base}Z")).map_err(|_| refused())?;
    let ms = utc
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| refused())?
        .as_millis();
    let ms = i128::try_from(ms).map_err(|_| refused())? - i128::from(offset_s) * 1000;
    u64::try_from(ms).map_err(|_| refused())
}

/// `text` without its zone, and the zone's offset east of UTC in seconds.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(base) = text.strip_suffix(['Z', 'z']) {
        return Some((base, 0));
    }
    let at = text.len().checked_sub(6)?;
    let (base, zone) = text.split_at_checked(at)?;
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = zone.get(1..)?.split_once(':')?;
    let hours: i64 = hours.parse().ok()?;
    let minutes: i64 = minutes.parse().ok()?;
    Some((base, sign * (hours * 3600 + minutes * 60)))
}

/// `HOST:PORT`, or a bare port on loopback.
fn parse_metrics_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse()
        .map_err(|_| format!("expected HOST:PORT such as 127.0.0.1:9464, or a port, not {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_with_their_zone() {
        assert_eq!(parse_time("1970-01-01T00:00:01Z"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T01:00:01+01:00"), Ok(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_time("1970-01-01T00:00:00-01:00"), Ok(3_600_000));
        assert!(parse_time("tomorrow").is_err());
        assert!(parse_time("1970-01-01T00:00:01").is_err());
    }

    #[test]
    fn limits_parse() {
        assert_eq!(parse_limit("none"), Ok(Limit(None)));
        assert_eq!(parse_limit("4"), Ok(Limit(Some(4))));
        assert!(parse_limit("-1").is_err());
    }
}

pub(super) const WORKER_LONG_ABOUT: &str = "\
Claim queued tasks and run each as `stint run` would (its run options, environment, heartbeats \
on descriptor 3, checkpoint, output schema, process group, signals), in the folder it was \
submitted from, until stopped.

Tasks are claimed highest priority first, then earliest due, then in submission order, never \
more than --concurrency at once nor more than a queue's limit (`stint queue limit`) across all \
workers. Each claim is a lease the worker renews; a worker that cannot renew it for two thirds \
of --lease stops its commands and exits 3 (STORE_UNAVAILABLE), writing nothing. A failed attempt \
with retries left goes back to the queue, due after its backoff: any worker may run the next \
attempt. Every worker sweeps for expired leases every --lease: a worker killed with SIGKILL has \
its tasks back in the queue within about one lease (and their orphaned process groups on this \
host ended), without a `stint recover`.

SIGINT, SIGTERM or SIGHUP drain the worker: it claims nothing more, lets running tasks finish for \
up to --drain-timeout, then cancels them and puts them back as ready (not counted as a failure). \
A second signal (500 ms or more after the first) cancels and puts them back at once. Exit 0 once \
stopped; 3 when fenced; 2 for bad options.";

/// `stint worker`.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// A queue to take tasks from (repeat for several).
    #[arg(long = "queue", value_name = "NAME", default_value = stint_ports::DEFAULT_QUEUE)]
    pub queues: Vec<String>,
    /// How many tasks run at once (a task whose command ended and whose end is being written no
    /// longer counts).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub concurrency: usize,
    /// How long running tasks may take to finish after SIGINT/SIGTERM before they are cancelled
    /// and put back.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
    pub drain_timeout: Duration,
    /// Exit once no task of the queues is ready, scheduled or running.
    #[arg(long)]
    pub exit_when_empty: bool,
    /// How long a claim lasts without renewal (renewed every quarter of it).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "30s")]
    pub lease: Duration,
    /// How often an idle worker looks for ready tasks.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, default_value = "100ms")]
    pub poll: Duration,
    /// Serve the worker's metrics (the engine's, plus queue depth, claim latency and running
    /// tasks per queue) in the Prometheus text format on http://ADDR/metrics. A bare port
    /// (9464) listens on loopback (127.0.0.1:9464); name another address (0.0.0.0:9464) only
    /// when the port is meant to be reachable from other hosts.
    #[arg(long, value_name = "ADDR", value_parser = parse_metrics_addr)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// OTLP export.
    #[command(flatten)]
    pub telemetry: super::TelemetryArgs,
}
