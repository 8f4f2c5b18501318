//! What a queued task runs: the command and its run options, stored in the task's `spec` by
//! `stint submit` and read back by the worker that claims it.
//!
//! `stint run` builds its descriptor through the same [`CommandSpec`], so the rules of the run
//! options (and their error messages) live in one place for both.

use std::path::Path;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use stint_domain::{BackoffError, BackoffPolicy, NodeKey, RetryPolicy, TaskDescriptor};

use crate::args::RunOptions;
use crate::exit::CliError;
use crate::process::OutputMode;

/// The kind of a task's spec; only commands for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SpecKind {
    /// A command line, run as `stint run` runs it.
    Command,
}

/// The retry delays, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackoffSpec {
    /// Delay before the first retry.
    pub initial_ms: u64,
    /// Growth of the delay per further failure (at least 1).
    pub factor: f64,
    /// Longest delay between attempts.
    pub max_ms: u64,
}

/// A command and its run options, in stored units. This is the `spec` of a task `stint submit`
/// enqueues (see `stint schema command-spec`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CommandSpec {
    /// Always `command`.
    pub kind: SpecKind,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// The folder to run it in: the submitter's current directory.
    pub dir: Option<String>,
    /// Extra attempts after the first failure.
    pub retries: u32,
    /// Longest run of one attempt.
    pub timeout_ms: Option<u64>,
    /// Fail an attempt silent for this long.
    pub heartbeat_timeout_ms: Option<u64>,
    /// The delays between attempts.
    pub backoff: BackoffSpec,
    /// The JSON Schema the output must match, read when the task was submitted.
    pub output_schema: Option<Value>,
    /// Where the output comes from.
    pub output: OutputMode,
    /// A human-readable label for the node.
    pub label: Option<String>,
    /// The output table name recorded with the node.
    pub output_table: Option<String>,
    /// How long an attempt stays owned without a lease renewal.
    pub lease_ms: u64,
    /// Time between SIGTERM and SIGKILL on cancel or timeout.
    pub grace_ms: u64,
    /// The submitter's W3C trace context (its `TRACEPARENT`): the worker's spans of the task
    /// continue that trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_context: Option<TraceContext>,
}

/// A W3C trace context, as its two headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TraceContext {
    /// `00-<trace id>-<parent span id>-<flags>`.
    pub traceparent: String,
    /// Vendor entries, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The valid context in `TRACEPARENT` (and `TRACESTATE`), if any.
    pub fn from_env() -> Option<Self> {
        stint_telemetry::TraceParent::from_env().map(|parent| Self {
            traceparent: parent.traceparent,
            tracestate: parent.tracestate,
        })
    }
}

impl CommandSpec {
    /// The spec of `command` run in `dir` with `options`; the `--output-schema` file is read now.
    pub fn from_options(
        options: &RunOptions,
        command: Vec<String>,
        dir: Option<String>,
    ) -> Result<Self, CliError> {
        Ok(Self {
            kind: SpecKind::Command,
            command,
            dir,
            retries: options.retries,
            timeout_ms: options.timeout.map(millis),
            heartbeat_timeout_ms: options.heartbeat_timeout.map(millis),
            backoff: BackoffSpec {
                initial_ms: millis(options.backoff_initial),
                factor: options.backoff_factor,
                max_ms: millis(options.backoff_max),
            },
            output_schema: options
                .output_schema
                .as_deref()
                .map(read_schema)
                .transpose()?,
            output: options.output,
            label: options.label.clone(),
            output_table: options.output_table.clone(),
            lease_ms: millis(options.lease),
            grace_ms: millis(options.grace),
            trace_context: None,
        })
    }

    /// The descriptor of node `key` running this spec; refuses options no attempt could run
    /// with, naming the flag.
    pub fn descriptor(&self, key: NodeKey) -> Result<TaskDescriptor, CliError> {
        let backoff = BackoffPolicy::new(
            self.backoff.initial_ms,
            self.backoff.factor,
            self.backoff.max_ms,
        )
        .map_err(|error| match error {
            BackoffError::InvalidFactor { .. } => {
                CliError::invalid_input("--backoff-factor must be a number of at least 1")
            }
            other => CliError::invalid_input(other.to_string()),
        })?;
        let zero = [
            ("--lease", Some(self.lease_ms)),
            ("--timeout", self.timeout_ms),
            ("--heartbeat-timeout", self.heartbeat_timeout_ms),
        ]
        .into_iter()
        .find(|(_, value)| *value == Some(0));
        if let Some((flag, _)) = zero {
            return Err(CliError::invalid_input(format!(
                "{flag} must be longer than 0"
            )));
        }
        let mut desc = TaskDescriptor::new(key);
        desc.label = self.label.clone();
        desc.output_table = self.output_table.clone();
        desc.output_schema = self.output_schema.clone();
        desc.retry = RetryPolicy {
            retries: self.retries,
            backoff,
        };
        desc.timeout_ms = self.timeout_ms;
        desc.heartbeat_timeout_ms = self.heartbeat_timeout_ms;
        desc.lease_ms = self.lease_ms;
        Ok(desc)
    }

    /// The grace period between SIGTERM and SIGKILL.
    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.grace_ms)
    }
}

/// A duration in whole milliseconds (saturating).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The JSON Schema in `path`; unreadable or not JSON is bad input.
fn read_schema(path: &Path) -> Result<Value, CliError> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        CliError::invalid_input(format!(
            "cannot read --output-schema '{}': {error}",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|error| {
        CliError::invalid_input(format!(
            "--output-schema '{}' is not JSON: {error}",
            path.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn options(flags: &[&str]) -> RunOptions {
        let mut argv = vec!["stint", "run"];
        argv.extend_from_slice(flags);
        argv.extend_from_slice(&["--", "true"]);
        match crate::args::Cli::parse_from(argv).command {
            crate::args::Command::Run(args) => args.options,
            other => panic!("not run: {other:?}"),
        }
    }

    fn key() -> NodeKey {
        NodeKey::new("r".to_owned(), "n".to_owned(), 0).expect("a valid key")
    }

    #[test]
    fn the_spec_holds_the_options_in_stored_units_and_round_trips() {
        let flags = ["--retries", "2", "--timeout", "30s", "--backoff-max", "1m"];
        let spec = CommandSpec::from_options(&options(&flags), vec!["true".to_owned()], None)
            .expect("a spec");
        assert_eq!((spec.retries, spec.timeout_ms), (2, Some(30_000)));
        assert_eq!(spec.backoff.max_ms, 60_000);
        let json = serde_json::to_value(&spec).expect("serialises");
        assert_eq!(json["kind"], "command");
        assert_eq!(json["output"], "auto");
        let back: CommandSpec = serde_json::from_value(json).expect("deserialises");
        assert_eq!(back, spec);
        let desc = spec.descriptor(key()).expect("a descriptor");
        assert_eq!((desc.retry.retries, desc.lease_ms), (2, 30_000));
    }

    #[test]
    fn options_no_attempt_could_run_with_are_refused_naming_the_flag() {
        for (flags, message) in [
            (["--timeout", "0s"], "--timeout must be longer than 0"),
            (["--lease", "0s"], "--lease must be longer than 0"),
            (["--backoff-factor", "0.5"], "--backoff-factor must be"),
        ] {
            let spec = CommandSpec::from_options(&options(&flags), vec!["x".to_owned()], None)
                .expect("a spec");
            let refused = spec.descriptor(key()).expect_err("refused");
            assert!(refused.message.starts_with(message), "{refused}");
        }
    }
}
