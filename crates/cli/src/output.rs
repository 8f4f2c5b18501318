//! What stint writes on stderr about itself: error lines, notes, and the status of a run.

use std::io::Write as _;

use crate::exit::CliError;

/// Writes `stint: CODE: message` on stderr.
pub(crate) fn error_line(error: &CliError) {
    note(&error.to_string());
}

/// Writes `stint: text` on stderr.
pub(crate) fn note(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "stint: {text}");
}

/// The notes a command writes on stderr about its progress, which `-q` silences.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Notes {
    /// Whether `-q` was given: then nothing is written.
    pub(crate) quiet: bool,
}

impl Notes {
    /// Writes `stint: text` on stderr, unless quiet.
    pub(crate) fn note(self, text: &str) {
        if !self.quiet {
            note(text);
        }
    }
}

/// Writes bytes a command wrote (its stderr) on stderr as they come.
pub(crate) fn passthrough(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes);
}
