//! `stint run`: one node of a run, its command run as the engine's compute.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::{AttemptKey, AttemptState, NodeKey, RetryPolicy};
use stint_engine::{
    CancellationToken, Engine, EngineError, EngineOptions, NodeOutcome, Ports, TaskContext,
};
use stint_ports::{AttemptFilter, Store};
use stint_telemetry::SpanObserver;
use tokio_util::task::AbortOnDropHandle;

use crate::args::RunArgs;
use crate::exit::{self, CliError};
use crate::process::{self, CommandSpec, Console};
use crate::signals::{self, Request};
use crate::status::{Mode, Status};
use crate::telemetry::{Exporting, exporting_around};
use crate::vcs::JjOrGit;

/// Extra time the engine waits for the command after the grace period: the runner needs a
/// moment after SIGKILL to reap the group before the engine writes the terminal state.
const GRACE_MARGIN: Duration = Duration::from_secs(2);

/// Runs `args` against the store at `db`, exporting spans and metrics when asked to (flushed
/// before it returns, within the telemetry's bound).
pub(super) async fn run(db: &str, quiet: bool, args: RunArgs) -> Result<u8, CliError> {
    let exporting = Exporting::start(&args.telemetry, None)?;
    exporting_around(exporting, async |exporting| {
        run_node(db, quiet, args, exporting).await
    })
    .await
}

/// Runs the node `args` names.
async fn run_node(
    db: &str,
    quiet: bool,
    args: RunArgs,
    exporting: Option<&Exporting>,
) -> Result<u8, CliError> {
    let generated = args.run_id.is_none();
    let run_id = args
        .run_id
        .clone()
        .unwrap_or_else(|| crate::run_id::default_run_id(&args.command));
    let key = NodeKey::new(run_id.clone(), args.node_id.clone(), args.iteration)
        .map_err(|error| CliError::invalid_input(error.to_string()))?;
    let spec =
        crate::task_spec::CommandSpec::from_options(&args.options, args.command.clone(), None)?;
    let desc = spec.descriptor(key.clone())?;
    if generated {
        crate::output::note(&format!("run id {run_id}"));
    }
    let store = crate::store::open(db).await?;
    let engine_ports = Ports::new(store.clone(), Arc::new(JjOrGit));
    let mode = Mode::detect(quiet);
    let note = |text: &str| {
        if mode != Mode::Quiet {
            crate::output::note(text);
        }
    };
    let recovered =
        crate::recovery::recover(&store, &Engine::new(engine_ports.clone()), &note).await?;
    for abandoned in &recovered {
        if mode != Mode::Quiet {
            crate::output::note(&format!("marked {abandoned} failed (ATTEMPT_ABANDONED)"));
        }
    }
    if printed_stored_output(store.as_ref(), &key, args.force, mode).await? {
        return Ok(exit::SUCCESS);
    }
    let max_attempts = planned_attempts(store.as_ref(), &key, &desc.retry).await?;
    let status = Status::new(mode, key.to_string(), max_attempts);
    let options = EngineOptions {
        working_dir: std::env::current_dir().ok(),
        cancel_grace: args.options.grace + GRACE_MARGIN,
        observer: exporting.map_or_else(|| status.clone() as _, |e| e.observer(status.clone())),
        ..EngineOptions::default()
    };
    let engine = Engine::with_options(engine_ports, options);
    let cancel = CancellationToken::new();
    let _signals = watch_signals(cancel.clone(), status.clone(), args.options.grace)?;
    let _ticker = status.start();
    let spec = Arc::new(CommandSpec {
        argv: args.command.clone(),
        grace: args.options.grace,
        output: args.options.output,
        output_required: args.options.output_schema.is_some(),
        dir: None,
        env: Vec::new(),
    });
    let console: Arc<dyn Console> = status.clone();
    let spans = exporting.and_then(|e| e.spans.clone());
    let compute = move |ctx: TaskContext| {
        let spec = for_attempt(&spec, spans.as_deref(), &ctx.key);
        process::run(spec, ctx, console.clone())
    };
    let result = engine.run_node(&desc, compute, &cancel).await;
    status.finish();
    conclude(result, &key, &cancel).map_err(|mut error| {
        if error.code == stint_domain::ErrorCode::StoreConflict.into()
            && status.current_attempt() == 0
        {
            // Racing runners: refused at once rather than waiting (documented in `run --help`).
            error.message.push_str(
                "; another stint is running this node (stint does not wait; if that process died, \
                 recovery marks its attempt ATTEMPT_ABANDONED once its lease expires)",
            );
        }
        error
    })
}

/// The command of one attempt: `spec`, handed the attempt span's trace context when spans are
/// exported.
fn for_attempt(
    spec: &Arc<CommandSpec>,
    spans: Option<&SpanObserver>,
    key: &AttemptKey,
) -> Arc<CommandSpec> {
    match spans {
        Some(spans) => Arc::new(CommandSpec {
            env: crate::telemetry::command_env(Some(spans), key),
            ..(**spec).clone()
        }),
        None => spec.clone(),
    }
}

/// Prints the stored output of `key` when the node already finished (and `force` is not set);
/// whether it did.
async fn printed_stored_output(
    store: &dyn Store,
    key: &NodeKey,
    force: bool,
    mode: Mode,
) -> Result<bool, CliError> {
    if force {
        return Ok(false);
    }
    let Some(output) = finished_output(store, key).await? else {
        return Ok(false);
    };
    if mode != Mode::Quiet {
        crate::output::note(&format!(
            "{key} already finished; printing its stored output (--force runs it again)"
        ));
    }
    crate::print_stdout(&output.to_string());
    Ok(true)
}

/// The stored output of `key` when the node already finished.
async fn finished_output(store: &dyn Store, key: &NodeKey) -> Result<Option<Value>, CliError> {
    match store.get_node(key).await? {
        Some(node) if node.state == AttemptState::Finished => Ok(store.read_output(key).await?),
        _ => Ok(None),
    }
}

/// About how many attempts the node will have had when this run ends: earlier ones, plus what
/// is left of the retry budget (earlier failures count against it).
async fn planned_attempts(
    store: &dyn Store,
    key: &NodeKey,
    policy: &RetryPolicy,
) -> Result<u32, CliError> {
    let (earlier, failed) = earlier_attempts(store, key).await?;
    Ok(policy.planned_attempts(earlier, failed))
}

/// How many attempts node `key` has had, and how many of them failed (the failures count
/// toward its retries: `stint run` resumes with them, `stint retry` takes them off).
pub(super) async fn earlier_attempts(
    store: &dyn Store,
    key: &NodeKey,
) -> Result<(u32, u32), CliError> {
    let filter = AttemptFilter {
        run_id: key.run_id().to_owned(),
        node_id: Some(key.node_id().to_owned()),
        iteration: Some(key.iteration()),
    };
    let earlier = store.list_attempts(&filter).await?;
    let failed = earlier
        .iter()
        .filter(|a| a.state == AttemptState::Failed)
        .count();
    let failed = u32::try_from(failed).unwrap_or(u32::MAX);
    let earlier = u32::try_from(earlier.len()).unwrap_or(u32::MAX);
    Ok((earlier, failed))
}

/// Ctrl-C, SIGTERM, SIGHUP and SIGQUIT cancel the engine's token; the process exits once the
/// attempt's terminal state is written. A second signal does not wait for that (a store that
/// does not answer would hold it up to its own timeouts): see [`leave_to_recovery`].
fn watch_signals(
    cancel: CancellationToken,
    status: Arc<Status>,
    grace: Duration,
) -> Result<AbortOnDropHandle<()>, CliError> {
    signals::watch(move |name, request| match request {
        Request::First => {
            status.progress(&format!(
                "{name}: cancelling (SIGTERM to the command, SIGKILL after {})",
                humantime::format_duration(grace)
            ));
            cancel.cancel();
        }
        Request::Same => status.note(&format!("{name}: already cancelling")),
        Request::Again => leave_to_recovery(name, &status),
    })
}

/// A second signal: the command's group is SIGKILLed, one line says the attempt is left to
/// recovery, and stint exits at once with [`exit::LEFT_TO_RECOVERY`], writing nothing more.
fn leave_to_recovery(name: &str, status: &Status) -> ! {
    let killed = match crate::process::kill_current_group() {
        Some(pgid) => format!(", killed the command's process group {pgid}"),
        None => String::new(),
    };
    let attempt = match status.current_attempt() {
        0 => "the attempt, if it began,".to_owned(),
        n => format!("attempt {n}"),
    };
    status.note(&format!(
        "{name} again: exiting now{killed}; {attempt} is left to recovery (`stint recover` \
         marks it ATTEMPT_ABANDONED once its lease expires)"
    ));
    std::process::exit(i32::from(exit::LEFT_TO_RECOVERY));
}

/// The exit code (and output) of a finished `run_node`.
fn conclude(
    result: Result<NodeOutcome, EngineError>,
    key: &NodeKey,
    cancel: &CancellationToken,
) -> Result<u8, CliError> {
    let outcome = result?;
    let attempt = outcome.attempts.last().map_or(0, |a| a.key.attempt);
    match outcome.state {
        AttemptState::Finished => {
            let output = outcome.output.unwrap_or(Value::Null);
            crate::print_stdout(&output.to_string());
            Ok(exit::SUCCESS)
        }
        AttemptState::Cancelled => Err(CliError::new(
            stint_domain::ErrorCode::TaskAborted,
            format!("{key} cancelled (attempt {attempt})"),
        )),
        _ if cancel.is_cancelled() => Err(CliError::new(
            stint_domain::ErrorCode::TaskAborted,
            format!("{key} cancelled"),
        )),
        _ => {
            let error = outcome
                .error
                .unwrap_or_else(|| stint_domain::TaskError::task_failed("the node failed"));
            let mut failure = CliError::task(&error);
            // The flag that set the limit, so the user knows what to raise.
            let flag = match error.code {
                stint_domain::ErrorCode::TaskTimeout => " (--timeout)",
                stint_domain::ErrorCode::TaskHeartbeatTimeout => " (--heartbeat-timeout)",
                _ => "",
            };
            failure.message = format!("{}{flag} ({key}, attempt {attempt})", failure.message);
            Err(failure)
        }
    }
}
