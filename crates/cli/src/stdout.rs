//! What stint writes on stdout, and noticing when nobody reads it any more.
//!
//! A reader that goes away (`stint events RUN --follow | head -1`) ends the command quietly with
//! exit 0, as `CliCode::StdoutClosed`; any other failure to write (a full disk) is an error.

use std::io::Write as _;
use std::os::fd::AsFd as _;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::exit::{CliCode, CliError};

/// Writes `text` and a newline to stdout.
pub(crate) fn line(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::BrokenPipe => closed_error(),
            _ => CliError::new(CliCode::Stdout, format!("cannot write to stdout: {error}")),
        })
}

/// Whether stdout's reader went away: the read end of a pipe closed, a socket or a terminal hung
/// up. Asks without writing, so an idle `--follow` notices too.
pub(crate) fn closed() -> bool {
    let stdout = std::io::stdout();
    let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLOUT)];
    match poll(&mut fds, PollTimeout::ZERO) {
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLERR | PollFlags::POLLHUP)),
        Err(_) => false,
    }
}

/// The quiet end of a command whose stdout reader went away.
pub(crate) fn closed_error() -> CliError {
    CliError::new(CliCode::StdoutClosed, "the reader of stdout went away")
}
