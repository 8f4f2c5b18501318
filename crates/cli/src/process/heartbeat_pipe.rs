//! The heartbeat pipe: each line the command writes on descriptor 3 is a heartbeat (a JSON
//! value), a bare ping (an empty line) or a directive (a line starting with `#`).
//!
//! An invalid line is reported on stderr with its code and ignored: it never kills the task. Only
//! the first few are reported one by one; the rest are counted in one line at the end.

use std::io::PipeReader;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stint_domain::ErrorCode;
use stint_domain::heartbeat::{MAX_PAYLOAD_BYTES, WARN_PAYLOAD_BYTES, validate_payload};
use stint_engine::Heartbeat;
use tokio_util::sync::CancellationToken;

use super::Console;
use super::streams::{Ended, read_pipe};

/// The longest line kept in memory: the payload limit plus room for whitespace.
const MAX_LINE_BYTES: usize = MAX_PAYLOAD_BYTES as usize + 1024;

/// The code of a heartbeat line that starts with `#` but names no known directive.
pub(crate) const INVALID_DIRECTIVE: &str = "INVALID_DIRECTIVE";

/// What the command asked about the failure that follows; the last directive wins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    /// `#no-retry`: the failure is not retryable.
    pub no_retry: bool,
    /// `#retry-after DUR`: retry after this delay instead of the backoff.
    pub retry_after: Option<Duration>,
}

/// One parsed line of the heartbeat pipe.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Line {
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
pub(crate) fn parse_line(line: &str, directives: Directives) -> Line {
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

/// How many notes about invalid heartbeat lines are shown per attempt; the rest are counted and
/// summed up in one line at the end.
pub(crate) const NOTES_SHOWN: usize = 5;

/// Reads the pipe until every writer closed it or `stop`, feeding `heartbeat`; returns the
/// directives and how reading ended.
pub(crate) async fn read(
    reader: PipeReader,
    stop: CancellationToken,
    heartbeat: Heartbeat,
    console: Arc<dyn Console>,
) -> (Directives, Ended) {
    let mut lines = LineReader {
        heartbeat,
        notes: Notes {
            console: console.as_ref(),
            hidden: 0,
            shown: 0,
        },
        directives: Directives::default(),
        line: Vec::new(),
        skipping: false,
        warned_large: false,
    };
    let ended = read_pipe(reader, stop, |chunk| lines.feed(chunk)).await;
    lines.finish();
    (lines.directives, ended)
}

/// Notes about invalid lines: the first [`NOTES_SHOWN`], then a count.
struct Notes<'a> {
    console: &'a dyn Console,
    shown: usize,
    hidden: usize,
}

impl Notes<'_> {
    fn note(&mut self, text: &str) {
        if self.shown < NOTES_SHOWN {
            self.shown += 1;
            self.console.note(text);
        } else {
            self.hidden += 1;
        }
    }

    fn finish(&self) {
        if self.hidden > 0 {
            let lines = if self.hidden == 1 { "line" } else { "lines" };
            self.console.note(&format!(
                "... and {} more invalid heartbeat {lines}, ignored (only the first {NOTES_SHOWN} are shown)",
                self.hidden
            ));
        }
    }
}

/// Splits the pipe into lines and handles each one.
struct LineReader<'a> {
    heartbeat: Heartbeat,
    notes: Notes<'a>,
    directives: Directives,
    line: Vec<u8>,
    /// Set while the rest of an over-long line is skipped.
    skipping: bool,
    /// Set once a large payload was warned about.
    warned_large: bool,
}

impl LineReader<'_> {
    fn feed(&mut self, chunk: &[u8]) {
        for piece in chunk.split_inclusive(|b| *b == b'\n') {
            let complete = piece.last() == Some(&b'\n');
            let piece = if complete {
                &piece[..piece.len() - 1]
            } else {
                piece
            };
            if !self.skipping {
                self.line.extend_from_slice(piece);
                if self.line.len() > MAX_LINE_BYTES {
                    self.notes.note(&format!(
                        "{}: heartbeat line is over {MAX_PAYLOAD_BYTES} bytes; ignored",
                        ErrorCode::HeartbeatPayloadTooLarge
                    ));
                    self.line.clear();
                    self.skipping = true;
                }
            }
            if complete {
                if !self.skipping {
                    self.handle_line();
                }
                self.line.clear();
                self.skipping = false;
            }
        }
    }

    fn finish(&mut self) {
        if !self.line.is_empty() && !self.skipping {
            self.handle_line();
        }
        self.notes.finish();
    }

    /// Warns once per attempt about a payload over the warning threshold (accepted, but each
    /// write and each next attempt's checkpoint costs that much).
    fn warn_if_large(&mut self, value: &Value) {
        if self.warned_large {
            return;
        }
        if let Ok(info) = validate_payload(value)
            && info.over_warning_threshold
        {
            self.warned_large = true;
            self.notes.console.note(&format!(
                "warning: a heartbeat payload is {} bytes, over {} KiB (the limit is \
                 {MAX_PAYLOAD_BYTES} bytes) (shown once)",
                info.size_bytes,
                WARN_PAYLOAD_BYTES / 1024
            ));
        }
    }

    fn handle_line(&mut self) {
        let Ok(text) = std::str::from_utf8(&self.line) else {
            self.notes.note(&format!(
                "{}: heartbeat line is not UTF-8; ignored",
                ErrorCode::HeartbeatPayloadNotJsonSerializable
            ));
            return;
        };
        match parse_line(text, self.directives) {
            Line::Beat(value) => {
                self.warn_if_large(&value);
                if let Err(error) = self.heartbeat.beat(value) {
                    self.notes
                        .note(&format!("{}: {error}; ignored", error.code()));
                }
            }
            Line::Ping => self.heartbeat.ping(),
            Line::Directive(next) => self.directives = next,
            Line::Invalid(code, reason) => self.notes.note(&format!("{code}: {reason}")),
        }
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
