//! Spawning the command: its own session (and so its own process group, with no controlling
//! terminal: a read of `/dev/tty` fails at once instead of stopping the command with SIGTTIN), a
//! clean environment protocol, stdin null, stdout and stderr on pipes, and the heartbeat pipe's
//! write end as descriptor 3.
//!
//! On Linux the command also gets SIGKILL when stint dies (`PR_SET_PDEATHSIG`): a stint killed
//! with SIGKILL cannot stop its command, whose attempt recovery then marks `ATTEMPT_ABANDONED`;
//! without this the orphan would keep working beside the next attempt. The signal reaches the
//! command itself, not processes it started (they are orphaned and run on). It fires when the
//! *thread* that spawned the command exits: [`spawn`] runs in the task that polls the compute,
//! on the thread of `block_on` or a runtime worker, which live as long as the process. It must
//! never be called from `spawn_blocking`, whose idle threads exit.

use std::io::PipeReader;
use std::os::fd::AsRawFd as _;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// The descriptor the heartbeat pipe is moved to in the child. POSIX `sh` (dash) rejects
/// multi-digit descriptors in `>&N`, so it must be a single digit; 3 is the first free one.
pub(super) const HEARTBEAT_FD: i32 = 3;

/// What the command is told about its attempt.
#[derive(Debug, Clone)]
pub(super) struct AttemptEnv {
    /// `STINT_RUN_ID`.
    pub run_id: String,
    /// `STINT_NODE_ID`.
    pub node_id: String,
    /// `STINT_ITERATION`.
    pub iteration: u32,
    /// `STINT_ATTEMPT`.
    pub attempt: u32,
    /// `STINT_CHECKPOINT`, as JSON; unset when `None`.
    pub checkpoint: Option<String>,
    /// `STINT_OUTPUT`, the file the command may write its output to; unset when `None`.
    pub output_file: Option<PathBuf>,
    /// The folder to run in; stint's own when `None`.
    pub dir: Option<PathBuf>,
    /// More variables, set last.
    pub extra: Vec<(String, String)>,
}

/// A spawned command with the read ends of its pipes.
#[derive(Debug)]
pub(super) struct Spawned {
    /// The command (leader of its own session and process group).
    pub child: Child,
    /// Its pipes.
    pub pipes: Pipes,
}

/// The read ends of a spawned command's pipes.
#[derive(Debug)]
pub(super) struct Pipes {
    /// The read end of the command's stdout.
    pub stdout: PipeReader,
    /// The read end of the command's stderr.
    pub stderr: PipeReader,
    /// The read end of the heartbeat pipe.
    pub heartbeats: PipeReader,
}

/// Spawns `argv` as described in the module documentation.
pub(super) fn spawn(argv: &[String], env: &AttemptEnv) -> std::io::Result<Spawned> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "empty command"))?;
    // Both ends are close-on-exec; only the dup onto descriptor 3 survives exec.
    let (reader, writer) = std::io::pipe()?;
    let (stdout, stdout_writer) = std::io::pipe()?;
    let (stderr, stderr_writer) = std::io::pipe()?;
    let write_fd = writer.as_raw_fd();
    let parent = i32::try_from(std::process::id()).unwrap_or(0);
    let mut command = Command::new(program);
    if let Some(dir) = &env.dir {
        command.current_dir(dir);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout_writer)
        .stderr(stderr_writer)
        .kill_on_drop(true)
        .env("STINT_RUN_ID", &env.run_id)
        .env("STINT_NODE_ID", &env.node_id)
        .env("STINT_ITERATION", env.iteration.to_string())
        .env("STINT_ATTEMPT", env.attempt.to_string())
        .env("STINT_HEARTBEAT_FD", HEARTBEAT_FD.to_string());
    match &env.checkpoint {
        Some(checkpoint) => command.env("STINT_CHECKPOINT", checkpoint),
        None => command.env_remove("STINT_CHECKPOINT"),
    };
    match &env.output_file {
        Some(path) => command.env("STINT_OUTPUT", path),
        None => command.env_remove("STINT_OUTPUT"),
    };
    command.envs(env.extra.iter().map(|(name, value)| (name, value)));
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (setsid, dup2, fcntl, close_range, prctl, getppid) on integers; it allocates
    // nothing and takes no lock.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(move || {
            if unsafe_free::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            die_with_parent(parent)?;
            move_to_heartbeat_fd(write_fd)
        });
    }
    let child = command.spawn()?;
    // The parent's copies of the write ends must go, or the readers never see end-of-file.
    drop(command);
    drop(writer);
    Ok(Spawned {
        child,
        pipes: Pipes {
            stdout,
            stderr,
            heartbeats: reader,
        },
    })
}

/// In the child: asks for SIGKILL when stint dies, and gives up if stint already died between
/// the fork and this call (the request would then never fire).
fn die_with_parent(parent: i32) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        if unsafe_free::kill_on_parent_death() < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if unsafe_free::parent_pid() != parent {
            // No message: allocating after fork is not async-signal-safe.
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
    }
    let _ = parent;
    Ok(())
}

/// In the child: puts the heartbeat pipe on descriptor 3 (inheritable) and marks every
/// descriptor above 3 close-on-exec, so the command inherits only 0, 1, 2 and 3.
fn move_to_heartbeat_fd(write_fd: i32) -> std::io::Result<()> {
    if write_fd == HEARTBEAT_FD {
        // dup2 onto itself keeps close-on-exec set; clear it by hand.
        if unsafe_free::clear_cloexec(HEARTBEAT_FD) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    } else if unsafe_free::dup2(write_fd, HEARTBEAT_FD) < 0 {
        return Err(std::io::Error::last_os_error());
    }
    unsafe_free::cloexec_from(HEARTBEAT_FD + 1);
    Ok(())
}

/// Thin wrappers over the libc calls the pre-exec hook needs (no allocation, no locks).
#[allow(unsafe_code)]
mod unsafe_free {
    /// `setsid()`: a new session and process group led by the caller, with no controlling
    /// terminal.
    pub(super) fn setsid() -> i32 {
        // SAFETY: setsid has no memory-safety preconditions.
        unsafe { libc::setsid() }
    }

    pub(super) fn dup2(from: i32, to: i32) -> i32 {
        // SAFETY: dup2 on plain integers has no memory-safety preconditions.
        unsafe { libc::dup2(from, to) }
    }

    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
    #[cfg(target_os = "linux")]
    pub(super) fn kill_on_parent_death() -> i32 {
        let signal = libc::c_ulong::try_from(libc::SIGKILL).unwrap_or(9);
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number; no pointers are involved.
        unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal, 0, 0, 0) }
    }

    /// `getppid()`.
    #[cfg(target_os = "linux")]
    pub(super) fn parent_pid() -> i32 {
        // SAFETY: getppid has no preconditions and cannot fail.
        unsafe { libc::getppid() }
    }

    pub(super) fn clear_cloexec(fd: i32) -> i32 {
        // SAFETY: fcntl(F_SETFD) on an integer descriptor has no memory-safety preconditions.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }
    }

    /// Marks every descriptor from `first` up close-on-exec (descriptors inherited from whoever
    /// started stint included), keeping the pipe std uses to report a failed exec working.
    pub(super) fn cloexec_from(first: i32) {
        #[cfg(target_os = "linux")]
        {
            const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
            let first = libc::c_uint::try_from(first).unwrap_or(0);
            // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on descriptors.
            let done = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first,
                    libc::c_uint::MAX,
                    CLOSE_RANGE_CLOEXEC,
                )
            };
            if done == 0 {
                return;
            }
        }
        // Older kernels and other systems: one fcntl per possible descriptor (bounded).
        // SAFETY: sysconf has no memory-safety preconditions.
        let max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
        let max = i32::try_from(max).unwrap_or(65_536).clamp(first, 65_536);
        for fd in first..max {
            // SAFETY: fcntl on an integer descriptor; EBADF for closed ones is harmless.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}
