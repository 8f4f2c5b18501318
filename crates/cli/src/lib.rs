//! The `stint` command: a thin composition root.
//!
//! It parses the command line ([`args`]), opens the store named by `--db`, wires the engine to
//! it, and runs external commands as tasks. It holds no rule of its own: attempt numbering,
//! retries, timeouts, heartbeats and recovery are the engine's and the store's.
//!
//! Invariants, stated as absences: nothing here prints a backtrace or panics on bad input (every
//! failure is one line with a stable code, see [`exit`]), and no process the CLI spawned outlives
//! the attempt that spawned it.

pub mod args;
mod commands;
pub mod exit;
mod output;
mod process;
mod recovery;
mod run_id;
mod signals;
mod status;
mod stdout;
mod store;
pub mod task_spec;
mod telemetry;
mod usage;
mod vcs;

use std::io::Write as _;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

pub use args::Cli;
use exit::CliError;

/// The full clap command of `stint` (the CLI reference in docs is generated from it).
pub fn command() -> clap::Command {
    Cli::command()
}

/// The JSON Schemas `stint schema` prints and `schemas/` holds: the domain's records and the
/// spec of a queued command.
pub fn json_schemas() -> Vec<(&'static str, schemars::Schema)> {
    let mut schemas = stint_domain::json_schemas();
    schemas.push((
        "command-spec",
        schemars::schema_for!(task_spec::CommandSpec),
    ));
    schemas
}

/// Runs `stint` with the process's arguments and returns its exit code.
pub fn main() -> ExitCode {
    main_with_args(std::env::args_os())
}

/// Runs `stint` with `args` (the first is the program name) and returns its exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let argv: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    let cli = match Cli::try_parse_from(&argv) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error, &argv),
    };
    init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            return report(&CliError::new(
                exit::CliCode::Runtime,
                format!("cannot start the async runtime: {error}"),
            ));
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    // Nothing spawned may keep the process alive once the command is done.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => report(&error),
    }
}

/// Prints `error` as its one line and returns its exit code (a closed stdout prints nothing).
pub(crate) fn report(error: &CliError) -> ExitCode {
    if error.code != exit::CliCode::StdoutClosed.into() {
        output::error_line(error);
    }
    error.exit_code()
}

/// Help and version print as clap renders them; every other parse error becomes one line with
/// exit code 2 that keeps all clap says (see [`usage`]).
fn usage_error(error: &clap::Error, argv: &[std::ffi::OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(if error.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            })
        }
        _ => report(&usage::one_line(error, argv)),
    }
}

/// `RUST_LOG` turns on tracing logs on stderr; without it stint logs nothing. Human lines are
/// coloured only on a terminal, and never with `NO_COLOR`. JSON lines carry the current span's
/// fields, among them the node's or attempt's `trace_id` and `span_id` when spans are exported.
fn init_tracing(format: args::LogFormat) {
    use std::io::IsTerminal as _;
    let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") else {
        return;
    };
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        args::LogFormat::Human => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            logs.with_ansi(colour).try_init()
        }
        args::LogFormat::Json => logs
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// Writes `text` and a newline to stdout, ignoring failures (`stint run`'s output; the reading
/// commands use [`stdout::line`], which stops on a closed stdout and reports other failures).
pub(crate) fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}
