//! The heartbeat pipe: each line the command writes on descriptor 3 is a heartbeat (a JSON
//! value), a bare ping (an empty line) or a directive (a line starting with `#`).
//!
//! An invalid line is reported on stderr with its code and ignored: it never kills the task.

use std::io::PipeReader;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::ErrorCode;
use stint_domain::heartbeat::MAX_PAYLOAD_BYTES;
use stint_engine::Heartbeat;
use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;

use super::Console;

/// The longest line kept in memory: the payload limit plus room for whitespace.
const MAX_LINE_BYTES: usize = MAX_PAYLOAD_BYTES as usize + 1024;

/// The code of a heartbeat line that starts with `#` but names no known directive.
pub const INVALID_DIRECTIVE: &str = "INVALID_DIRECTIVE";

/// What the command asked about the failure that follows; the last directive wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Directives {
    /// `#no-retry`: the failure is not retryable.
    pub no_retry: bool,
    /// `#retry-after DUR`: retry after this delay instead of the backoff.
    pub retry_after: Option<Duration>,
}

/// One parsed line of the heartbeat pipe.
#[derive(Debug, Clone, PartialEq)]
pub enum Line {
    /// A heartbeat with a payload.
    Beat(Value),
    /// A bare ping.
    Ping,
    /// A directive, already applied to a copy of the directives.
    Directive(Directives),
    /// An invalid line: its code and a one-line reason.
    Invalid(&'static str, String),
}

/// Parses one line (without its newline), given the directives so far.
pub fn parse_line(line: &str, directives: Directives) -> Line {
    let line = line.trim();
    if line.is_empty() {
        return Line::Ping;
    }
    if let Some(directive) = line.strip_prefix('#') {
        return parse_directive(directive.trim(), directives);
    }
    match serde_json::from_str::<Value>(line) {
        Ok(value) => Line::Beat(value),
        Err(error) if error.to_string().contains("recursion limit") => Line::Invalid(
            ErrorCode::HeartbeatPayloadTooLarge.as_str(),
            format!("heartbeat line nests too deeply ({error}); ignored"),
        ),
        Err(error) => Line::Invalid(
            ErrorCode::HeartbeatPayloadNotJsonSerializable.as_str(),
            format!("heartbeat line is not a JSON value ({error}); ignored"),
        ),
    }
}

fn parse_directive(text: &str, _before: Directives) -> Line {
    let (name, argument) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    match (name, argument.trim()) {
        ("no-retry", "") => Line::Directive(Directives {
            no_retry: true,
            retry_after: None,
        }),
        ("retry-after", duration) => match crate::args::parse_duration(duration) {
            Ok(delay) => Line::Directive(Directives {
                no_retry: false,
                retry_after: Some(delay),
            }),
            Err(reason) => {
                Line::Invalid(INVALID_DIRECTIVE, format!("'#{text}': {reason}; ignored"))
            }
        },
        _ => Line::Invalid(
            INVALID_DIRECTIVE,
            format!("'#{text}': known directives are #no-retry and #retry-after DUR; ignored"),
        ),
    }
}

/// Reads the pipe until every writer closed it, feeding `heartbeat`; returns the directives.
pub async fn read(
    reader: PipeReader,
    heartbeat: Heartbeat,
    console: Arc<dyn Console>,
) -> Directives {
    let mut directives = Directives::default();
    let mut receiver = match pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
        Ok(receiver) => receiver,
        Err(error) => {
            console.note(&format!(
                "INTERNAL: cannot read the heartbeat pipe: {error}"
            ));
            return directives;
        }
    };
    let mut line: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut chunk = vec![0_u8; 64 * 1024];
    loop {
        let read = match receiver.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        for piece in chunk[..read].split_inclusive(|b| *b == b'\n') {
            let complete = piece.last() == Some(&b'\n');
            let piece = if complete {
                &piece[..piece.len() - 1]
            } else {
                piece
            };
            if !skipping {
                line.extend_from_slice(piece);
                if line.len() > MAX_LINE_BYTES {
                    console.note(&format!(
                        "{}: heartbeat line is over {MAX_PAYLOAD_BYTES} bytes; ignored",
                        ErrorCode::HeartbeatPayloadTooLarge
                    ));
                    line.clear();
                    skipping = true;
                }
            }
            if complete {
                if !skipping {
                    handle(&line, &heartbeat, &mut directives, console.as_ref());
                }
                line.clear();
                skipping = false;
            }
        }
    }
    if !line.is_empty() && !skipping {
        handle(&line, &heartbeat, &mut directives, console.as_ref());
    }
    directives
}

fn handle(raw: &[u8], heartbeat: &Heartbeat, directives: &mut Directives, console: &dyn Console) {
    let Ok(text) = std::str::from_utf8(raw) else {
        console.note(&format!(
            "{}: heartbeat line is not UTF-8; ignored",
            ErrorCode::HeartbeatPayloadNotJsonSerializable
        ));
        return;
    };
    match parse_line(text, *directives) {
        Line::Beat(value) => {
            if let Err(error) = heartbeat.beat(value) {
                console.note(&format!("{}: {error}; ignored", error.code()));
            }
        }
        Line::Ping => heartbeat.ping(),
        Line::Directive(next) => *directives = next,
        Line::Invalid(code, reason) => console.note(&format!("{code}: {reason}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_into_beats_pings_and_directives() {
        let none = Directives::default();
        assert_eq!(
            parse_line("{\"done\":3}", none),
            Line::Beat(serde_json::json!({"done": 3}))
        );
        assert_eq!(parse_line("  ", none), Line::Ping);
        assert_eq!(
            parse_line("#no-retry", none),
            Line::Directive(Directives {
                no_retry: true,
                retry_after: None
            })
        );
        assert_eq!(
            parse_line("#retry-after 30s", none),
            Line::Directive(Directives {
                no_retry: false,
                retry_after: Some(Duration::from_secs(30))
            })
        );
        assert!(matches!(parse_line("#explode", none), Line::Invalid(..)));
        assert!(matches!(
            parse_line("{nope", none),
            Line::Invalid("HEARTBEAT_PAYLOAD_NOT_JSON_SERIALIZABLE", _)
        ));
        assert!(matches!(parse_line("NaN", none), Line::Invalid(..)));
    }
}
