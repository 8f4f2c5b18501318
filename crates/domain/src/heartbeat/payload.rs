//! Heartbeat payload rules: a payload is JSON with finite numbers, nested at most
//! [`MAX_PAYLOAD_DEPTH`] deep and at most [`MAX_PAYLOAD_BYTES`] long; the size above which it is
//! worth a warning; and the JSON paths that name a bad value.

use serde_json::Value;

use crate::error::{ErrorCode, TaskError};

/// Largest payload accepted, in bytes of UTF-8 JSON.
pub const MAX_PAYLOAD_BYTES: u64 = 1_000_000;
/// Payloads above this size are accepted with a warning (Temporal's threshold: 256 KiB).
pub const WARN_PAYLOAD_BYTES: u64 = 256 * 1024;
/// Deepest nesting of arrays and objects accepted: 127, the deepest serde_json parses back.
///
/// A payload is stored as JSON text and read back with serde_json, whose parser refuses a
/// document nested 128 deep (its recursion limit). An accepted payload must always be readable
/// again: a checkpoint that cannot be parsed would stop its node from ever running again.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// Why a heartbeat payload was refused.
///
/// Non-exhaustive: a new payload rule brings a new refusal without breaking callers' matches.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeartbeatPayloadError {
    /// A value that JSON cannot carry, at `path` (like `$.items[3].ratio`).
    #[error("heartbeat payload is not JSON-serialisable at {path}: {reason}")]
    NotJson {
        /// JSON path of the first bad value.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The payload is larger than [`MAX_PAYLOAD_BYTES`].
    #[error("heartbeat payload is {size_bytes} bytes, the limit is {limit_bytes}")]
    TooLarge {
        /// Size of the payload as UTF-8 JSON.
        size_bytes: u64,
        /// The limit.
        limit_bytes: u64,
    },
    /// The payload nests deeper than [`MAX_PAYLOAD_DEPTH`].
    #[error("heartbeat payload nests deeper than {limit} levels at {path}")]
    TooDeep {
        /// JSON path where the limit was crossed.
        path: String,
        /// The limit.
        limit: usize,
    },
}

impl HeartbeatPayloadError {
    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotJson { .. } => ErrorCode::HeartbeatPayloadNotJsonSerializable,
            Self::TooLarge { .. } | Self::TooDeep { .. } => ErrorCode::HeartbeatPayloadTooLarge,
        }
    }

    /// The `{code, message, details}` form of this error.
    pub fn to_task_error(&self) -> TaskError {
        let details = match self {
            Self::NotJson { path, reason } => serde_json::json!({ "path": path, "reason": reason }),
            Self::TooLarge {
                size_bytes,
                limit_bytes,
            } => serde_json::json!({ "size_bytes": size_bytes, "limit_bytes": limit_bytes }),
            Self::TooDeep { path, limit } => {
                serde_json::json!({ "path": path, "max_depth": limit })
            }
        };
        TaskError::new(self.code(), self.to_string()).with_details(details)
    }
}

impl From<HeartbeatPayloadError> for TaskError {
    fn from(error: HeartbeatPayloadError) -> Self {
        error.to_task_error()
    }
}

/// What validation learned about an accepted payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadInfo {
    /// Size as UTF-8 JSON.
    pub size_bytes: u64,
    /// Whether the size is above [`WARN_PAYLOAD_BYTES`] (accepted, but worth a warning).
    pub over_warning_threshold: bool,
}

/// Appends one path segment for an object key: `.name`, or `["odd key"]` when not an identifier.
pub fn push_key_segment(path: &mut String, key: &str) {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        path.push('.');
        path.push_str(key);
    } else {
        path.push('[');
        path.push_str(&Value::String(key.to_owned()).to_string());
        path.push(']');
    }
}

/// One step down a JSON path: an array index or an object key.
#[derive(Debug, Clone, Copy)]
pub(super) enum Segment<'k> {
    /// `[3]`
    Index(usize),
    /// `.name`, or `["odd key"]`
    Key(&'k str),
}

impl Segment<'_> {
    /// Appends this segment to `path`.
    pub(super) fn push_to(self, path: &mut String) {
        match self {
            Self::Index(index) => path.push_str(&format!("[{index}]")),
            Self::Key(key) => push_key_segment(path, key),
        }
    }
}

/// Checks a payload against every rule: finite numbers, depth, size.
///
/// This runs on every heartbeat call, so it is one walk that measures the size as it goes and,
/// for a payload that breaks no rule, allocates nothing: the path of a bad value is built only
/// when there is one, as the walk unwinds from it.
pub fn validate_payload(payload: &Value) -> Result<PayloadInfo, HeartbeatPayloadError> {
    let size_bytes = measure(payload, 0).map_err(|violation| violation.into_error())?;
    if size_bytes > MAX_PAYLOAD_BYTES {
        return Err(HeartbeatPayloadError::TooLarge {
            size_bytes,
            limit_bytes: MAX_PAYLOAD_BYTES,
        });
    }
    Ok(PayloadInfo {
        size_bytes,
        over_warning_threshold: size_bytes > WARN_PAYLOAD_BYTES,
    })
}

/// The first value, in document order, that breaks a rule.
#[derive(Debug)]
struct Violation<'v> {
    /// The value is a number that is not finite; otherwise a container whose children would nest
    /// deeper than [`MAX_PAYLOAD_DEPTH`].
    not_finite: bool,
    /// The path from the value up to the root, innermost segment first.
    segments: Vec<Segment<'v>>,
}

impl<'v> Violation<'v> {
    fn here(not_finite: bool) -> Box<Self> {
        Box::new(Self {
            not_finite,
            segments: Vec::new(),
        })
    }

    /// The same violation, seen from the container that holds it under `segment`.
    fn under(mut self: Box<Self>, segment: Segment<'v>) -> Box<Self> {
        self.segments.push(segment);
        self
    }

    fn into_error(self) -> HeartbeatPayloadError {
        let mut path = String::from("$");
        for segment in self.segments.iter().rev() {
            segment.push_to(&mut path);
        }
        if self.not_finite {
            HeartbeatPayloadError::NotJson {
                path,
                reason: "number is not finite".to_owned(),
            }
        } else {
            HeartbeatPayloadError::TooDeep {
                path,
                limit: MAX_PAYLOAD_DEPTH,
            }
        }
    }
}

/// Size of `value` as compact JSON (what `serde_json::to_writer` writes), or the first value that
/// breaks a rule: a number that is not finite, or containers nested deeper than
/// [`MAX_PAYLOAD_DEPTH`] (reported at the container whose children would be too deep).
fn measure(value: &Value, depth: usize) -> Result<u64, Box<Violation<'_>>> {
    match value {
        Value::Null | Value::Bool(true) => Ok(4),
        Value::Bool(false) => Ok(5),
        Value::String(text) => Ok(string_size(text)),
        Value::Number(number) => number_size(number).ok_or_else(|| Violation::here(true)),
        Value::Array(items) => {
            if depth + 1 > MAX_PAYLOAD_DEPTH {
                return Err(Violation::here(false));
            }
            let mut size = 2 + separators(items.len());
            for (index, item) in items.iter().enumerate() {
                size += measure(item, depth + 1)
                    .map_err(|violation| violation.under(Segment::Index(index)))?;
            }
            Ok(size)
        }
        Value::Object(map) => {
            if depth + 1 > MAX_PAYLOAD_DEPTH {
                return Err(Violation::here(false));
            }
            // Each entry is `key:value`, entries separated by commas.
            let mut size = 2 + separators(map.len()) + map.len() as u64;
            for (key, item) in map {
                size += string_size(key)
                    + measure(item, depth + 1)
                        .map_err(|violation| violation.under(Segment::Key(key)))?;
            }
            Ok(size)
        }
    }
}

fn separators(len: usize) -> u64 {
    len.saturating_sub(1) as u64
}

/// Size of a JSON string literal as serde_json escapes it: quotes, two bytes for `"`, `\\` and
/// the five short control escapes, six (`\u00XX`) for any other control character.
fn string_size(text: &str) -> u64 {
    let bytes = text.as_bytes();
    // Almost every byte of a payload needs no escape: count the ones that do in one branch-free
    // pass, and look closer only when there are some.
    // Counted in chunks with a byte-wide counter, which vectorises: summing widened flags one
    // byte at a time did not, and was 40% of a heartbeat call on a 1 KiB payload. A chunk is
    // short enough (64 < 256) that its count fits in a byte.
    let escaped: u64 = bytes
        .chunks(64)
        .map(|chunk| {
            let count = chunk
                .iter()
                .fold(0_u8, |count, &byte| count + u8::from(needs_escape(byte)));
            u64::from(count)
        })
        .sum();
    let mut size = 2 + bytes.len() as u64 + escaped;
    if escaped > 0 {
        let long_escapes: u64 = bytes
            .iter()
            .map(|&byte| {
                u64::from(byte < 0x20 && !matches!(byte, b'\n' | b'\r' | b'\t' | 0x08 | 0x0c))
            })
            .sum();
        size += 4 * long_escapes;
    }
    size
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

fn number_size(number: &serde_json::Number) -> Option<u64> {
    if let Some(unsigned) = number.as_u64() {
        return Some(decimal_digits(unsigned));
    }
    if let Some(signed) = number.as_i64() {
        return Some(1 + decimal_digits(signed.unsigned_abs()));
    }
    if number.as_f64().is_some_and(|float| !float.is_finite()) {
        return None;
    }
    // Floats: exactly what serde_json writes, measured without allocating.
    Some(json_size_of(number))
}

fn decimal_digits(mut value: u64) -> u64 {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// Size of `value` as compact UTF-8 JSON, without building the string.
pub fn json_size(value: &Value) -> u64 {
    json_size_of(value)
}

fn json_size_of<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` into an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_and_paths() {
        assert!(validate_payload(&json!({"a": [1, 2.5, "x"]})).is_ok());
        let big = Value::String("x".repeat(1_000_000));
        assert!(matches!(
            validate_payload(&big),
            Err(HeartbeatPayloadError::TooLarge {
                size_bytes: 1_000_002,
                ..
            })
        ));
    }

    /// `depth` arrays (or objects, each holding the next under `"k"`) around a number.
    fn nested(depth: usize, array: bool) -> Value {
        (0..depth).fold(json!(1), |inner, _| {
            if array {
                json!([inner])
            } else {
                json!({ "k": inner })
            }
        })
    }

    #[test]
    fn the_deepest_accepted_payload_is_read_back_by_serde_json() {
        for array in [true, false] {
            let deepest = nested(MAX_PAYLOAD_DEPTH, array);
            assert!(
                validate_payload(&deepest).is_ok(),
                "depth {MAX_PAYLOAD_DEPTH} accepted"
            );
            let text = serde_json::to_string(&deepest).expect("a Value serialises");
            let read_back: Value = serde_json::from_str(&text).expect("parsed back");
            assert_eq!(read_back, deepest);
        }
    }

    #[test]
    fn one_level_deeper_is_refused_and_is_what_serde_json_cannot_read() {
        for (array, segment) in [(true, "[0]"), (false, ".k")] {
            let too_deep = nested(MAX_PAYLOAD_DEPTH + 1, array);
            // The container whose children would be level 128 is named.
            let path = format!("${}", segment.repeat(MAX_PAYLOAD_DEPTH));
            let error = validate_payload(&too_deep).expect_err("too deep");
            assert_eq!(
                error,
                HeartbeatPayloadError::TooDeep {
                    path: path.clone(),
                    limit: 127
                }
            );
            assert_eq!(
                error.to_string(),
                format!("heartbeat payload nests deeper than 127 levels at {path}")
            );
            // Why the limit is 127: serde_json's parser refuses one level more. Should a new
            // serde_json read deeper, this fails and the limit may be raised.
            let text = serde_json::to_string(&too_deep).expect("a Value serialises");
            assert!(serde_json::from_str::<Value>(&text).is_err());
        }
    }
}
