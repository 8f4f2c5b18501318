//! Taking a command's output once it exited successfully: the file `$STINT_OUTPUT` names when
//! the command wrote it, else its stdout when that is exactly one JSON value, else `null`.
//!
//! An output that is taken must be valid: JSON that is not UTF-8 is never stored with U+FFFD in
//! it, and a file that is not one JSON value fails the attempt with `INVALID_OUTPUT` (not
//! retried). When the output is required (`--output-schema`), having none is `INVALID_OUTPUT`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use stint_domain::{ErrorCode, TaskError};
use stint_engine::TaskFailure;

use super::Console;
use super::capture::{Captured, MAX_OUTPUT_BYTES, OutputMode};

/// How much of an invalid output is kept with the failure.
const HEAD_CHARS: usize = 200;

/// The per-attempt file named by `$STINT_OUTPUT`: created empty, read after the command exited,
/// removed when dropped.
#[derive(Debug)]
pub(super) struct OutputFile {
    path: PathBuf,
}

impl OutputFile {
    /// Creates a fresh, empty file readable only by this user in the temporary directory.
    pub(super) fn create() -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let path = std::env::temp_dir().join(format!("stint-output-{}.json", uuid::Uuid::new_v4()));
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(Self { path })
    }

    /// Where the file is.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What the command wrote; `None` when it wrote nothing but whitespace (or removed it).
    fn read(&self) -> Result<Option<Vec<u8>>, String> {
        let metadata = match std::fs::metadata(&self.path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(format!("cannot read $STINT_OUTPUT: {error}")),
        };
        if !metadata.is_file() {
            return Err("$STINT_OUTPUT is no longer a regular file".to_owned());
        }
        let mut bytes = Vec::new();
        std::fs::File::open(&self.path)
            .and_then(|file| {
                let limit = u64::try_from(MAX_OUTPUT_BYTES).unwrap_or(u64::MAX) + 1;
                file.take(limit).read_to_end(&mut bytes)
            })
            .map_err(|error| format!("cannot read $STINT_OUTPUT: {error}"))?;
        if bytes.len() > MAX_OUTPUT_BYTES {
            return Err(format!("$STINT_OUTPUT is over {MAX_OUTPUT_BYTES} bytes"));
        }
        Ok((!bytes.trim_ascii().is_empty()).then_some(bytes))
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How the output is to be taken.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rules {
    /// Where it may come from.
    pub mode: OutputMode,
    /// Whether having none is an error (`--output-schema`).
    pub required: bool,
}

/// The output of a command that exited successfully.
pub(super) fn take(
    rules: Rules,
    file: Option<&OutputFile>,
    stdout: Captured,
    console: &dyn Console,
) -> Result<Value, TaskFailure> {
    if let Some(bytes) = file
        .map(OutputFile::read)
        .transpose()
        .map_err(invalid_file)?
        .flatten()
    {
        if let Captured::Held(held) = &stdout {
            console.stdout(held);
        }
        return parse(&bytes).map_err(|reason| invalid("$STINT_OUTPUT", &reason, &bytes));
    }
    let none = |why: &str| {
        if rules.required {
            Err(invalid(
                "stdout",
                &format!(
                    "the command wrote no output ({why}); --output-schema needs one JSON value, \
                     written to the file $STINT_OUTPUT names or printed alone on stdout"
                ),
                b"",
            ))
        } else {
            Ok(Value::Null)
        }
    };
    let held = match stdout {
        Captured::Held(held) => held,
        Captured::Shown if rules.mode == OutputMode::File => {
            return none("nothing in $STINT_OUTPUT");
        }
        Captured::Shown => {
            return none("nothing in $STINT_OUTPUT, and its stdout is not one JSON value");
        }
        Captured::TooLarge => {
            let reason = format!("the command's stdout is over {MAX_OUTPUT_BYTES} bytes");
            return Err(invalid("stdout", &reason, b""));
        }
    };
    if held.trim_ascii().is_empty() {
        return none("nothing in $STINT_OUTPUT, nothing on stdout");
    }
    match parse(&held) {
        Ok(value) => Ok(value),
        Err(reason) if rules.mode == OutputMode::Stdout || rules.required => {
            Err(invalid("stdout", &reason, &held))
        }
        // Not UTF-8 but one JSON value otherwise: the output, broken; never stored lossily.
        Err(reason) if std::str::from_utf8(&held).is_err() && parses_lossily(&held) => {
            Err(invalid("stdout", &reason, &held))
        }
        Err(reason) => {
            console.stdout(&held);
            if !held.ends_with(b"\n") {
                console.stdout(b"\n");
            }
            console.note(&format!(
                "the command's stdout (above) looks like JSON but {reason}; the output is null"
            ));
            Ok(Value::Null)
        }
    }
}

/// One JSON value in UTF-8 (whitespace around it allowed), or why not.
fn parse(bytes: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(bytes).map_err(|error| {
        format!(
            "is not UTF-8 (invalid byte at offset {})",
            error.valid_up_to()
        )
    })?;
    serde_json::from_str(text).map_err(|error| format!("is not one JSON value: {error}"))
}

fn parses_lossily(bytes: &[u8]) -> bool {
    serde_json::from_str::<Value>(&String::from_utf8_lossy(bytes)).is_ok()
}

fn invalid_file(reason: String) -> TaskFailure {
    invalid("$STINT_OUTPUT", &reason, b"")
}

/// `INVALID_OUTPUT` (never retried: the same command would print the same thing).
fn invalid(source: &str, reason: &str, bytes: &[u8]) -> TaskFailure {
    let message = if reason.starts_with("is ") {
        format!("the command's output ({source}) {reason}")
    } else {
        reason.to_owned()
    };
    let head: String = String::from_utf8_lossy(bytes)
        .chars()
        .take(HEAD_CHARS)
        .collect();
    TaskFailure {
        error: TaskError::new(ErrorCode::InvalidOutput, message)
            .with_details(json!({ "source": source, "head": head })),
        retryable: false,
        retry_after: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Screen;

    impl Console for Screen {
        fn stderr(&self, _bytes: &[u8]) {}
        fn stdout(&self, _bytes: &[u8]) {}
        fn note(&self, _text: &str) {}
    }

    fn take_stdout(mode: OutputMode, required: bool, stdout: Captured) -> Result<Value, String> {
        take(Rules { mode, required }, None, stdout, &Screen)
            .map_err(|failure| failure.error.message)
    }

    fn held(text: &[u8]) -> Captured {
        Captured::Held(text.to_vec())
    }

    #[test]
    fn no_output_is_null_unless_required() {
        for stdout in [held(b" \n"), Captured::Shown] {
            assert_eq!(
                take_stdout(OutputMode::Auto, false, stdout.clone()),
                Ok(Value::Null)
            );
            let error = take_stdout(OutputMode::Auto, true, stdout).expect_err("required");
            assert!(error.starts_with("the command wrote no output"), "{error}");
        }
        assert_eq!(
            take_stdout(OutputMode::Stdout, false, held(b"")),
            Ok(Value::Null)
        );
    }

    #[test]
    fn stdout_that_is_not_json_is_an_error_only_when_taken_for_sure() {
        let value = take_stdout(OutputMode::Auto, false, held(b"{\"a\":1}\n"));
        assert_eq!(value, Ok(json!({"a": 1})));
        assert_eq!(
            take_stdout(OutputMode::Auto, false, held(b"{\"a\":}")),
            Ok(Value::Null)
        );
        for (mode, required) in [(OutputMode::Stdout, false), (OutputMode::Auto, true)] {
            let error = take_stdout(mode, required, held(b"{\"a\":}")).expect_err("invalid");
            assert!(error.contains("is not one JSON value"), "{error}");
        }
        let error = take_stdout(OutputMode::Auto, false, Captured::TooLarge).expect_err("large");
        assert!(error.contains("over"), "{error}");
    }

    #[test]
    fn invalid_utf8_is_never_taken_lossily() {
        let error =
            take_stdout(OutputMode::Auto, false, held(b"{\"a\":\"\xff\"}")).expect_err("not UTF-8");
        assert!(
            error.contains("is not UTF-8 (invalid byte at offset 6)"),
            "{error}"
        );
    }

    #[test]
    fn the_file_wins_and_must_be_json() {
        let file = OutputFile::create().expect("file");
        let rules = Rules {
            mode: OutputMode::Auto,
            required: false,
        };
        let stdout = || held(b"42");
        assert_eq!(
            take(rules, Some(&file), stdout(), &Screen).ok(),
            Some(json!(42))
        );
        std::fs::write(file.path(), "{\"f\": true}").expect("write");
        let value = take(rules, Some(&file), stdout(), &Screen).ok();
        assert_eq!(value, Some(json!({"f": true})));
        std::fs::write(file.path(), "done").expect("write");
        let failure = take(rules, Some(&file), stdout(), &Screen).expect_err("not JSON");
        assert_eq!(failure.error.code, ErrorCode::InvalidOutput);
        assert!(!failure.retryable);
        assert_eq!(failure.error.details["source"], "$STINT_OUTPUT");
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "removed when dropped");
    }
}
