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

/// Checks a payload against every rule: finite numbers, depth, size.
///
/// This runs on every heartbeat call, so the common case is one walk that allocates nothing
/// and measures the size as it goes; only a payload that breaks a rule is walked a second time
/// to name the path of the bad value.
pub fn validate_payload(payload: &Value) -> Result<PayloadInfo, HeartbeatPayloadError> {
    let Some(size_bytes) = measure(payload, 0) else {
        let mut path = String::from("$");
        check_value(payload, 0, &mut path)?;
        // `measure` refuses exactly what `check_value` refuses, so this is not reached; should
        // the two ever disagree, the exact size is still a correct answer.
        return validate_size(json_size(payload));
    };
    validate_size(size_bytes)
}

fn validate_size(size_bytes: u64) -> Result<PayloadInfo, HeartbeatPayloadError> {
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

/// Size of `value` as compact JSON (what `serde_json::to_writer` writes), or `None` when a
/// number is not finite or containers nest deeper than [`MAX_PAYLOAD_DEPTH`].
fn measure(value: &Value, depth: usize) -> Option<u64> {
    match value {
        Value::Null | Value::Bool(true) => Some(4),
        Value::Bool(false) => Some(5),
        Value::String(text) => Some(string_size(text)),
        Value::Number(number) => number_size(number),
        Value::Array(items) => {
            if depth + 1 > MAX_PAYLOAD_DEPTH {
                return None;
            }
            let mut size = 2 + separators(items.len());
            for item in items {
                size += measure(item, depth + 1)?;
            }
            Some(size)
        }
        Value::Object(map) => {
            if depth + 1 > MAX_PAYLOAD_DEPTH {
                return None;
            }
            // Each entry is `key:value`, entries separated by commas.
            let mut size = 2 + separators(map.len()) + map.len() as u64;
            for (key, item) in map {
                size += string_size(key) + measure(item, depth + 1)?;
            }
            Some(size)
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
    let escaped: u64 = bytes
        .iter()
        .map(|&byte| u64::from(needs_escape(byte)))
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

fn check_value(
    value: &Value,
    depth: usize,
    path: &mut String,
) -> Result<(), HeartbeatPayloadError> {
    let children_depth = depth + 1;
    match value {
        Value::Number(n) => {
            if n.as_f64().is_some_and(|f| !f.is_finite()) {
                return Err(HeartbeatPayloadError::NotJson {
                    path: path.clone(),
                    reason: "number is not finite".to_owned(),
                });
            }
            Ok(())
        }
        Value::Array(items) => {
            if children_depth > MAX_PAYLOAD_DEPTH {
                return Err(too_deep(path));
            }
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                check_value(item, children_depth, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            if children_depth > MAX_PAYLOAD_DEPTH {
                return Err(too_deep(path));
            }
            for (key, item) in map {
                let len = path.len();
                push_key_segment(path, key);
                check_value(item, children_depth, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Null | Value::Bool(_) | Value::String(_) => Ok(()),
    }
}

fn too_deep(path: &str) -> HeartbeatPayloadError {
    HeartbeatPayloadError::TooDeep {
        path: path.to_owned(),
        limit: MAX_PAYLOAD_DEPTH,
    }
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
