//! `stint heartbeat [JSON]`: one line on the heartbeat descriptor of the task it runs in.

use std::io::Write as _;

use stint_domain::ErrorCode;
use stint_domain::heartbeat::validate_payload;

use crate::args::HeartbeatArgs;
use crate::exit::{self, CliCode, CliError};

/// Writes the line `args` describe to the descriptor `STINT_HEARTBEAT_FD` names.
pub(super) fn heartbeat(args: &HeartbeatArgs) -> Result<u8, CliError> {
    let line = line(args)?;
    let fd = std::env::var("STINT_HEARTBEAT_FD").map_err(|_| {
        CliError::usage("STINT_HEARTBEAT_FD is not set: `stint heartbeat` only works inside a command run by `stint run`")
    })?;
    let fd: u32 = fd.trim().parse().map_err(|_| {
        CliError::usage(format!(
            "STINT_HEARTBEAT_FD is '{fd}', not a descriptor number"
        ))
    })?;
    // Opening /dev/fd/N reaches the inherited pipe without taking ownership of a raw descriptor.
    let path = format!("/dev/fd/{fd}");
    let mut pipe = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|error| {
            CliError::usage(format!("cannot open heartbeat descriptor {fd}: {error}"))
        })?;
    pipe.write_all(line.as_bytes())
        .and_then(|()| pipe.flush())
        .map_err(|error| {
            CliError::new(
                CliCode::HeartbeatWrite,
                format!("cannot write heartbeat: {error}"),
            )
        })?;
    Ok(exit::SUCCESS)
}

/// The line to send, checked as the engine would check it.
fn line(args: &HeartbeatArgs) -> Result<String, CliError> {
    if args.no_retry {
        return Ok("#no-retry\n".to_owned());
    }
    if let Some(delay) = args.retry_after {
        return Ok(format!("#retry-after {}ms\n", delay.as_millis()));
    }
    let Some(text) = &args.payload else {
        return Ok("\n".to_owned());
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
        CliError::new(
            ErrorCode::HeartbeatPayloadNotJsonSerializable,
            format!("the heartbeat is not one JSON value: {error}"),
        )
    })?;
    validate_payload(&value).map_err(|error| CliError::new(error.code(), error.to_string()))?;
    // One line: the compact form never contains a newline.
    Ok(format!("{value}\n"))
}
