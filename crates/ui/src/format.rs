//! How values are shown: times, durations, JSON, and ids inside URLs.

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::Value;

use crate::error::UiError;

/// The time now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// The `state` a listing's query string filters on: none when it is absent or empty, else the
/// state it names; `refusal` says which states there are when it names none.
pub(crate) fn state_filter<S: FromStr>(
    text: Option<&str>,
    refusal: &str,
) -> Result<Option<S>, UiError> {
    text.filter(|s| !s.is_empty())
        .map(|text| {
            text.parse::<S>()
                .map_err(|_| UiError::refused(StatusCode::BAD_REQUEST, "INVALID_INPUT", refusal))
        })
        .transpose()
}

/// `ms` since the epoch as an RFC 3339 time in UTC, to the second.
pub(crate) fn time(ms: u64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// A duration for people: `850ms`, `12.3s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{}.{}s", ms / 1_000, (ms % 1_000) / 100),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1_000),
        _ => format!("{}h {:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000),
    }
}

/// `value` as indented JSON.
pub(crate) fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `text` as one URL path segment (or query value): every byte but the unreserved ones is
/// percent-encoded, so an id holding `/`, `?`, `#` or `%` stays one segment.
pub(crate) fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a query value); bytes that are not UTF-8 are replaced.
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|pair| std::str::from_utf8(pair).ok())
            .and_then(|pair| u8::from_str_radix(pair, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(12_345), "12.3s");
        assert_eq!(duration(245_000), "4m 05s");
        assert_eq!(duration(7_380_000), "2h 03m");
    }

    #[test]
    fn an_id_stays_one_segment_and_comes_back_whole() {
        let id = "a/b?c#d%e f<é>";
        let encoded = segment(id);
        assert!(!encoded.contains(['/', '?', '#', ' ', '<']));
        assert_eq!(percent_decode(&encoded), id);
    }
}
