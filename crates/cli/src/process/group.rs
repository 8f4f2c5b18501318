//! The command's process group: signalling it, waiting for it to empty, and killing what is left.
//!
//! A zombie counts as gone: once a process of the group has exited, only its parent (or init,
//! for an orphan) can reap it, and waiting for that would make a cancel of `sh -c '...'` take as
//! long as init takes to reap the shell's orphaned children.

use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::Child;
use tokio::time::Instant;

use super::procfs;

/// The longest pause between two checks of an emptying process group (the first ones are
/// shorter, so a group that dies at once is noticed at once).
const POLL: Duration = Duration::from_millis(20);

/// The group of the command running now (0: none), for a second signal's immediate exit, which
/// cannot wait for the future that owns the [`GroupGuard`].
static CURRENT: AtomicI32 = AtomicI32::new(0);

/// SIGKILLs the group of the command running now, if any; returns its id.
pub(crate) fn kill_current() -> Option<i32> {
    let pgid = CURRENT.swap(0, Ordering::SeqCst);
    if pgid <= 0 {
        return None;
    }
    // ESRCH (the group already emptied) is as good as done.
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    Some(pgid)
}

/// A process group that is SIGKILLed when dropped unless it was found empty: whatever happens
/// to the future running the command (the engine dropping it after its grace, a panic), no
/// process of the group outlives it.
#[derive(Debug)]
pub(super) struct GroupGuard {
    pgid: Pid,
    done: bool,
}

impl GroupGuard {
    /// Guards the group whose leader has pid `pid` (spawned as a session leader).
    pub(super) fn new(pid: u32) -> Self {
        let raw = i32::try_from(pid).unwrap_or(i32::MAX);
        if raw > 0 {
            CURRENT.store(raw, Ordering::SeqCst);
        }
        Self {
            pgid: Pid::from_raw(raw),
            done: false,
        }
    }

    /// Sends `signal` to every process of the group; false when the group no longer exists.
    pub(super) fn signal(&self, signal: Signal) -> bool {
        if self.done {
            return false;
        }
        match killpg(self.pgid, signal) {
            Ok(()) => true,
            Err(Errno::ESRCH) => false,
            Err(error) => {
                tracing::warn!(pgid = self.pgid.as_raw(), %error, "cannot signal process group");
                false
            }
        }
    }

    /// Sends `signal`, then SIGCONT: a stopped process acts on SIGTERM only once continued, so
    /// a group stopped by a debugger, `kill -STOP` or a terminal read can still clean up and die.
    fn signal_and_continue(&self, signal: Signal) {
        if self.signal(signal) {
            self.signal(Signal::SIGCONT);
        }
    }

    /// Whether a process of the group is still alive (zombies are gone).
    pub(super) fn alive(&self) -> bool {
        if self.done || !matches!(killpg(self.pgid, None), Ok(()) | Err(Errno::EPERM)) {
            return false;
        }
        // Without /proc, a zombie has to count as alive.
        live_member(self.pgid.as_raw()).unwrap_or(true)
    }

    /// Waits until the group is empty or `deadline` passes; true when it emptied.
    pub(super) async fn wait_empty(&self, deadline: Instant) -> bool {
        let mut pause = Duration::from_millis(2);
        loop {
            if !self.alive() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(POLL);
        }
    }

    /// Cancels the command: SIGTERM (and SIGCONT) to the group, up to `grace` for the leader and
    /// then the rest of the group to exit, SIGKILL to whatever is left, and the leader reaped.
    pub(super) async fn terminate(&mut self, child: &mut Child, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.signal_and_continue(Signal::SIGTERM);
        // The leader first: once it is reaped, the rest of the group is polled.
        let _ = tokio::time::timeout_at(deadline, child.wait()).await;
        self.wait_empty(deadline).await;
        self.kill(child).await;
    }

    /// SIGKILLs whatever is left of the group and reaps the leader.
    pub(super) async fn kill(&mut self, child: &mut Child) {
        self.signal_and_continue(Signal::SIGKILL);
        let _ = child.wait().await;
        // A killed process leaves the group at once; its zombie is reaped by its parent (or
        // init), so there is nothing more to wait for here.
        self.done = true;
        self.forget();
    }

    /// The group is no longer the one running now.
    fn forget(&self) {
        let _ = CURRENT.compare_exchange(self.pgid.as_raw(), 0, Ordering::SeqCst, Ordering::SeqCst);
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.done {
            self.signal_and_continue(Signal::SIGKILL);
        }
        self.forget();
    }
}

/// Whether /proc lists a process of group `pgid` that is not a zombie; `None` without /proc.
pub(super) fn live_member(pgid: i32) -> Option<bool> {
    let found = procfs::pids()?
        .any(|pid| procfs::stat(pid).is_some_and(|stat| stat.pgrp == pgid && stat.live()));
    Some(found)
}
