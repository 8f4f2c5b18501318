//! The command's stdout as it arrives: held back while it may be the output, shown live (like
//! stderr) once it cannot be.
//!
//! In `auto` mode stdout is the output only when it is exactly one JSON value, which is known
//! for sure only at its end. So it is held while it can still be one ([`Shape`] follows its
//! structure byte by byte, in linear time), and passed through as soon as it cannot: logs that
//! do not start like JSON, or go on after a first complete value, are shown as they come.

use super::Console;

/// The largest output accepted, from stdout or from `$STINT_OUTPUT`.
pub(super) const MAX_OUTPUT_BYTES: usize = 64 * 1024 * 1024;

/// Where a command's output comes from (`stint run --output`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// The file STINT_OUTPUT names if the command wrote it, else stdout if it is exactly one
    /// JSON value, else null (stdout is then shown live).
    Auto,
    /// Only the file STINT_OUTPUT names; stdout is always shown live.
    File,
    /// Only stdout, which must be one JSON value (empty: null); STINT_OUTPUT is not set.
    Stdout,
}

/// What became of the command's stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Captured {
    /// All of it was shown live: it is not the output.
    Shown,
    /// All of it was held back (nothing shown): it may be the output.
    Held(Vec<u8>),
    /// It was held back and grew over [`MAX_OUTPUT_BYTES`] (the rest was drained unseen).
    TooLarge,
}

/// The command's stdout, fed chunk by chunk.
#[derive(Debug)]
pub(super) struct StdoutCapture {
    mode: OutputMode,
    shape: Shape,
    held: Vec<u8>,
    shown: bool,
    too_large: bool,
}

impl StdoutCapture {
    /// A capture for `mode`.
    pub(super) fn new(mode: OutputMode) -> Self {
        Self {
            mode,
            shape: Shape::Blank,
            held: Vec::new(),
            shown: mode == OutputMode::File,
            too_large: false,
        }
    }

    /// Takes the next bytes of stdout, showing on `console` what cannot be the output.
    pub(super) fn feed(&mut self, bytes: &[u8], console: &dyn Console) {
        if self.shown {
            console.stdout(bytes);
            return;
        }
        if self.too_large {
            return;
        }
        if self.mode == OutputMode::Auto {
            self.shape.feed(bytes);
            if self.shape == Shape::NotOne {
                self.shown = true;
                console.stdout(&std::mem::take(&mut self.held));
                console.stdout(bytes);
                return;
            }
        }
        if self.held.len() + bytes.len() > MAX_OUTPUT_BYTES {
            self.too_large = true;
            self.held = Vec::new();
            return;
        }
        self.held.extend_from_slice(bytes);
    }

    /// What became of stdout.
    pub(super) fn finish(self) -> Captured {
        if self.shown {
            Captured::Shown
        } else if self.too_large {
            Captured::TooLarge
        } else {
            Captured::Held(self.held)
        }
    }
}

/// How far a byte stream is from being exactly one JSON value, followed byte by byte. It only
/// rules out what cannot be one value; the final parse decides the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Only whitespace so far.
    Blank,
    /// Inside a number or literal (`12`, `true`) at the top level.
    Scalar,
    /// Inside an array, object or string.
    Nested {
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// One complete value, then only whitespace.
    Done,
    /// Cannot be one JSON value.
    NotOne,
}

impl Shape {
    fn feed(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if *self == Self::NotOne {
                return;
            }
            *self = self.next(byte);
        }
    }

    fn next(self, byte: u8) -> Self {
        let space = matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
        match self {
            Self::Blank | Self::Done if space => self,
            Self::Blank => match byte {
                b'{' | b'[' => Self::nested(1, false),
                b'"' => Self::nested(0, true),
                b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => Self::Scalar,
                _ => Self::NotOne,
            },
            Self::Scalar if space => Self::Done,
            Self::Scalar if byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'+' | b'-') => {
                self
            }
            Self::Nested {
                depth,
                in_string: true,
                escaped,
            } => match byte {
                _ if escaped => Self::nested(depth, true),
                b'\\' => Self::Nested {
                    depth,
                    in_string: true,
                    escaped: true,
                },
                b'"' if depth == 0 => Self::Done,
                b'"' => Self::nested(depth, false),
                _ => self,
            },
            Self::Nested { depth, .. } => match byte {
                b'"' => Self::nested(depth, true),
                b'{' | b'[' => Self::nested(depth.saturating_add(1), false),
                b'}' | b']' if depth <= 1 => Self::Done,
                b'}' | b']' => Self::nested(depth - 1, false),
                _ => self,
            },
            Self::Scalar | Self::Done | Self::NotOne => Self::NotOne,
        }
    }

    fn nested(depth: u32, in_string: bool) -> Self {
        Self::Nested {
            depth,
            in_string,
            escaped: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Screen(Mutex<Vec<u8>>);

    impl Console for Screen {
        fn stderr(&self, _bytes: &[u8]) {}
        fn stdout(&self, bytes: &[u8]) {
            self.0.lock().expect("lock").extend_from_slice(bytes);
        }
        fn note(&self, _text: &str) {}
    }

    fn capture(mode: OutputMode, chunks: &[&str]) -> (Captured, String) {
        let screen = Screen::default();
        let mut capture = StdoutCapture::new(mode);
        for chunk in chunks {
            capture.feed(chunk.as_bytes(), &screen);
        }
        let shown = String::from_utf8(screen.0.into_inner().expect("lock")).expect("UTF-8");
        (capture.finish(), shown)
    }

    #[test]
    fn one_json_value_is_held_back() {
        for value in [
            "{\"a\": [1, {\"b\": \"}]\\\"\"}]}\n",
            " 42 ",
            "\"x\\\"}\"",
            "[[]]",
            "null",
            "",
            "{\"unfinished\": ",
        ] {
            let (captured, shown) = capture(OutputMode::Auto, &[value]);
            assert_eq!(
                captured,
                Captured::Held(value.as_bytes().to_vec()),
                "{value}"
            );
            assert_eq!(shown, "");
        }
        let (captured, _) = capture(OutputMode::Auto, &["{\"a\":", "1}", "\n"]);
        assert_eq!(captured, Captured::Held(b"{\"a\":1}\n".to_vec()));
    }

    #[test]
    fn anything_else_is_shown_from_where_it_became_clear() {
        for logs in [
            "building\n",
            "[INFO] started\n",
            "{\"a\":1}\n{\"b\":2}\n",
            "42 is the answer",
            "true story",
        ] {
            let (captured, shown) = capture(OutputMode::Auto, &[logs]);
            assert_eq!(captured, Captured::Shown, "{logs}");
            assert_eq!(shown, logs);
        }
        let (captured, shown) = capture(OutputMode::Auto, &["[1/3] ", "step\n", "more\n"]);
        assert_eq!(captured, Captured::Shown);
        assert_eq!(shown, "[1/3] step\nmore\n");
    }

    #[test]
    fn file_mode_shows_all_and_stdout_mode_holds_all() {
        assert_eq!(
            capture(OutputMode::File, &["{}"]),
            (Captured::Shown, "{}".to_owned())
        );
        assert_eq!(
            capture(OutputMode::Stdout, &["logs ", "{}"]),
            (Captured::Held(b"logs {}".to_vec()), String::new())
        );
    }
}
