//! `stint submit`: one task, or a batch of JSON lines, stored in one `enqueue` call.

use std::io::Read as _;
use std::path::Path;

use serde::Deserialize;
use stint_domain::{NodeKey, TaskId};
use stint_ports::{Enqueued, NewTask};

use crate::args::{RunOptions, SubmitArgs, parse_duration, parse_time};
use crate::exit::{self, CliError};
use crate::task_spec::{CommandSpec, TraceContext, millis};

/// What one task is, before it becomes a [`NewTask`]: the flags of `submit`, or one batch line
/// over them.
struct TaskFields {
    queue: String,
    run_id: Option<String>,
    node_id: Option<String>,
    priority: i32,
    run_at_ms: u64,
    unique_key: Option<String>,
    command: Vec<String>,
}

/// `stint submit`.
pub(super) async fn submit(db: &str, quiet: bool, args: SubmitArgs) -> Result<u8, CliError> {
    let now = super::queue::now_ms();
    let dir = std::env::current_dir()
        .ok()
        .map(|dir| dir.to_string_lossy().into_owned());
    let run_at_ms = due(now, args.delay.map(millis), args.at);
    if let Some(path) = &args.batch {
        let text = read_batch(path)?;
        let tasks = parse_batch(&text, &args, run_at_ms, dir.as_deref(), now)?;
        let store = crate::store::open_queue(db).await?;
        let enqueued = store.enqueue(tasks, now).await?;
        return print_batch(&enqueued, quiet);
    }
    let fields = TaskFields {
        queue: args.queue.clone(),
        run_id: args.run_id.clone(),
        node_id: args.node_id.clone(),
        priority: args.priority,
        run_at_ms,
        unique_key: args.unique_key.clone(),
        command: args.command.clone(),
    };
    let task = new_task(fields, &args.options, dir.as_deref())?;
    let key = task.unique_key.clone();
    let store = crate::store::open_queue(db).await?;
    let enqueued = store.enqueue(vec![task], now).await?;
    let Some(first) = enqueued.first() else {
        return Err(CliError::internal("enqueue answered nothing for one task"));
    };
    if first.existing {
        crate::output::note(&format!(
            "{} holds unique key '{}' and has not ended; nothing stored",
            first.id,
            key.unwrap_or_default()
        ));
    }
    if args.json {
        let Some(record) = store.get_task(first.id).await? else {
            return Err(super::queue::unknown_task(first.id));
        };
        crate::stdout::line(&super::inspect::to_json(&record)?)?;
    } else {
        crate::stdout::line(&first.id.0.to_string())?;
    }
    Ok(exit::SUCCESS)
}

/// When a task is due: after `delay_ms`, at `at_ms`, or now.
fn due(now: u64, delay_ms: Option<u64>, at_ms: Option<u64>) -> u64 {
    match (delay_ms, at_ms) {
        (Some(delay), _) => now.saturating_add(delay),
        (None, Some(at)) => at,
        (None, None) => now,
    }
}

/// The task `fields` and `options` describe, its spec checked as `stint run` checks its flags.
fn new_task(
    fields: TaskFields,
    options: &RunOptions,
    dir: Option<&str>,
) -> Result<NewTask, CliError> {
    if fields.command.is_empty() {
        return Err(CliError::invalid_input("the command is empty"));
    }
    if fields.queue.is_empty() {
        return Err(CliError::invalid_input("the queue name is empty"));
    }
    let run_id = fields
        .run_id
        .unwrap_or_else(|| crate::run_id::default_run_id(&fields.command));
    let node_id = fields.node_id.unwrap_or_else(new_node_id);
    let key = NodeKey::new(run_id.clone(), node_id.clone(), 0)
        .map_err(|error| CliError::invalid_input(error.to_string()))?;
    let mut spec = CommandSpec::from_options(options, fields.command, dir.map(str::to_owned))?;
    spec.descriptor(key)?;
    spec.trace_context = TraceContext::from_env();
    let spec = serde_json::to_value(&spec)
        .map_err(|error| CliError::internal(format!("cannot write the task's spec: {error}")))?;
    Ok(NewTask {
        queue: fields.queue,
        run_id,
        node_id,
        priority: fields.priority,
        run_at_ms: fields.run_at_ms,
        spec,
        unique_key: fields.unique_key,
    })
}

/// A node of its own for a task submitted without `--node-id`: `task-` and 64 random bits.
fn new_node_id() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("task-{}", &random[..16])
}

fn read_batch(path: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|read| text = read)
    };
    read.map_err(|error| {
        CliError::invalid_input(format!("cannot read --batch '{}': {error}", path.display()))
    })?;
    Ok(text)
}

/// One line of a batch: a task's command, and what it sets over the command line's flags.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchLine {
    command: Vec<String>,
    queue: Option<String>,
    run_id: Option<String>,
    node_id: Option<String>,
    priority: Option<i32>,
    delay: Option<String>,
    at: Option<String>,
    unique_key: Option<String>,
    retries: Option<u32>,
    timeout: Option<String>,
    heartbeat_timeout: Option<String>,
    backoff_initial: Option<String>,
    backoff_factor: Option<f64>,
    backoff_max: Option<String>,
    output_schema: Option<std::path::PathBuf>,
    output: Option<crate::process::OutputMode>,
    label: Option<String>,
    output_table: Option<String>,
    lease: Option<String>,
    grace: Option<String>,
}

/// Every non-blank line of `text` as a task; the first bad line refuses the batch, by number.
fn parse_batch(
    text: &str,
    args: &SubmitArgs,
    run_at_ms: u64,
    dir: Option<&str>,
    now: u64,
) -> Result<Vec<NewTask>, CliError> {
    let mut tasks = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let task = parse_line(line, args, run_at_ms, dir, now).map_err(|error| {
            CliError::new(
                error.code,
                format!("--batch line {}: {}", index + 1, error.message),
            )
        })?;
        tasks.push(task);
    }
    Ok(tasks)
}

fn parse_line(
    line: &str,
    args: &SubmitArgs,
    run_at_ms: u64,
    dir: Option<&str>,
    now: u64,
) -> Result<NewTask, CliError> {
    let line: BatchLine = serde_json::from_str(line)
        .map_err(|error| CliError::invalid_input(format!("not a task: {error}")))?;
    let run_at_ms = match (&line.delay, &line.at) {
        (Some(_), Some(_)) => {
            return Err(CliError::invalid_input("give `delay` or `at`, not both"));
        }
        (Some(delay), None) => due(now, Some(millis(duration("delay", delay)?)), None),
        (None, Some(at)) => {
            parse_time(at).map_err(|e| CliError::invalid_input(format!("at: {e}")))?
        }
        (None, None) => run_at_ms,
    };
    let options = line_options(&line, &args.options)?;
    let fields = TaskFields {
        queue: line.queue.unwrap_or_else(|| args.queue.clone()),
        run_id: line.run_id,
        node_id: line.node_id,
        priority: line.priority.unwrap_or(args.priority),
        run_at_ms,
        unique_key: line.unique_key,
        command: line.command,
    };
    new_task(fields, &options, dir)
}

/// The command line's run options with what `line` sets over them.
fn line_options(line: &BatchLine, defaults: &RunOptions) -> Result<RunOptions, CliError> {
    let mut options = defaults.clone();
    let parse =
        |field, value: &Option<String>| value.as_deref().map(|v| duration(field, v)).transpose();
    if let Some(retries) = line.retries {
        options.retries = retries;
    }
    if let Some(timeout) = parse("timeout", &line.timeout)? {
        options.timeout = Some(timeout);
    }
    if let Some(silence) = parse("heartbeat_timeout", &line.heartbeat_timeout)? {
        options.heartbeat_timeout = Some(silence);
    }
    options.backoff_initial =
        parse("backoff_initial", &line.backoff_initial)?.unwrap_or(options.backoff_initial);
    options.backoff_factor = line.backoff_factor.unwrap_or(options.backoff_factor);
    options.backoff_max = parse("backoff_max", &line.backoff_max)?.unwrap_or(options.backoff_max);
    options.lease = parse("lease", &line.lease)?.unwrap_or(options.lease);
    options.grace = parse("grace", &line.grace)?.unwrap_or(options.grace);
    if line.output_schema.is_some() {
        options.output_schema.clone_from(&line.output_schema);
    }
    options.output = line.output.unwrap_or(options.output);
    if line.label.is_some() {
        options.label.clone_from(&line.label);
    }
    if line.output_table.is_some() {
        options.output_table.clone_from(&line.output_table);
    }
    Ok(options)
}

fn duration(field: &str, text: &str) -> Result<std::time::Duration, CliError> {
    parse_duration(text).map_err(|error| CliError::invalid_input(format!("{field}: {error}")))
}

/// One id per line (or, with `quiet`, the count), and a note for tasks kept by a unique key.
fn print_batch(enqueued: &[Enqueued], quiet: bool) -> Result<u8, CliError> {
    let existing = enqueued.iter().filter(|e| e.existing).count();
    if existing > 0 && !quiet {
        crate::output::note(&format!(
            "{existing} of {} tasks were already queued under their unique key; their ids are \
             printed and nothing was stored for them",
            enqueued.len()
        ));
    }
    if quiet {
        crate::stdout::line(&enqueued.len().to_string())?;
        return Ok(exit::SUCCESS);
    }
    if enqueued.is_empty() {
        return Ok(exit::SUCCESS);
    }
    let ids: Vec<String> = enqueued.iter().map(|e| id_text(e.id)).collect();
    crate::stdout::line(&ids.join("\n"))?;
    Ok(exit::SUCCESS)
}

fn id_text(id: TaskId) -> String {
    id.0.to_string()
}
