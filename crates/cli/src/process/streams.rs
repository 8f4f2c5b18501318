//! Reading the command's pipes (stdout, stderr, the heartbeat pipe), each on its own.
//!
//! A reader ends at end-of-file, or when it is told to stop: the command exited a while ago and
//! a process it started outside its group (a daemon, `setsid ... &`) still holds the pipe open.
//! Either way what was read is kept, so a detached process can never throw away the result of a
//! command that succeeded; what is already in the pipe when the stop comes is read too.

use std::io::PipeReader;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::Arc;

use nix::errno::Errno;
use tokio::io::AsyncReadExt as _;
use tokio::net::unix::pipe;
use tokio_util::sync::CancellationToken;

use super::Console;

/// How much one read takes.
const CHUNK_BYTES: usize = 64 * 1024;
/// The most read without waiting once a reader is stopped (a writer that never pauses cannot
/// keep it going for ever).
const FINAL_READ_BYTES: usize = 1024 * 1024;
/// How much of the command's stderr is kept with a failure.
pub(super) const STDERR_TAIL_BYTES: usize = 4096;

/// How a reader ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Ended {
    /// Every writer closed the pipe.
    #[default]
    Eof,
    /// Stopped while a writer still held the pipe open.
    StillOpen,
    /// Reading failed.
    Failed(String),
}

/// Feeds everything read from `reader` to `sink` until end-of-file or `stop`.
pub(super) async fn read_pipe(
    reader: PipeReader,
    stop: CancellationToken,
    mut sink: impl FnMut(&[u8]),
) -> Ended {
    let mut receiver = match pipe::Receiver::from_owned_fd(OwnedFd::from(reader)) {
        Ok(receiver) => receiver,
        Err(error) => return Ended::Failed(error.to_string()),
    };
    let mut chunk = vec![0_u8; CHUNK_BYTES];
    loop {
        tokio::select! {
            biased;
            read = receiver.read(&mut chunk) => match read {
                Ok(0) => return Ended::Eof,
                Ok(read) => sink(&chunk[..read]),
                Err(error) => return Ended::Failed(error.to_string()),
            },
            () = stop.cancelled() => break,
        }
    }
    // The descriptor is non-blocking: take what is there, without waiting for more.
    let mut taken = 0;
    while taken < FINAL_READ_BYTES {
        match nix::unistd::read(receiver.as_fd(), &mut chunk) {
            Ok(0) => return Ended::Eof,
            Ok(read) => {
                taken += read;
                sink(&chunk[..read]);
            }
            Err(Errno::EINTR) => {}
            Err(_) => break,
        }
    }
    Ended::StillOpen
}

/// Passes stderr through to `console` as it arrives; returns its last [`STDERR_TAIL_BYTES`]
/// and how reading ended.
pub(super) async fn pump_stderr(
    reader: PipeReader,
    stop: CancellationToken,
    console: Arc<dyn Console>,
) -> (String, Ended) {
    let mut tail: Vec<u8> = Vec::with_capacity(2 * STDERR_TAIL_BYTES);
    let ended = read_pipe(reader, stop, |bytes| {
        console.stderr(bytes);
        let keep = bytes.len().min(STDERR_TAIL_BYTES);
        tail.extend_from_slice(&bytes[bytes.len() - keep..]);
        if tail.len() > STDERR_TAIL_BYTES {
            tail.drain(..tail.len() - STDERR_TAIL_BYTES);
        }
    })
    .await;
    (String::from_utf8_lossy(&tail).into_owned(), ended)
}
