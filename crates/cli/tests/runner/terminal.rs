//! stint on a terminal (a pseudo-terminal it has as its controlling terminal, as in a shell):
//! the live status line with the command's stderr under it, and a command reading `/dev/tty`.

use std::fs::File;
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::pty::{Winsize, openpty};

use crate::Collected;
use crate::common::{World, wait_for_file, wait_with_limit};

/// `stint run ... -- sh -c SCRIPT` as the session leader of a new pseudo-terminal, with stderr
/// on it (so stint shows its live line); returns the child and what the terminal shows.
fn run_on_terminal(w: &World, flags: &[&str], script: &str) -> (Child, Collected) {
    let size = Winsize {
        ws_row: 40,
        ws_col: 120,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).expect("openpty");
    let terminal: OwnedFd = pty.slave;
    let mut command = w.std_cmd();
    command
        .args(["run", "--run-id", "r", "--node-id", "n"])
        .args(flags)
        .args(["--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::from(terminal.try_clone().expect("dup")));
    let fd = terminal.as_raw_fd();
    // SAFETY: between fork and exec the hook only calls setsid and ioctl, which are
    // async-signal-safe, on an integer descriptor; it allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
            if libc::setsid() < 0 || libc::ioctl(fd, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().expect("spawn stint");
    drop(command);
    drop(terminal);
    (child, Collected::from_reader(File::from(pty.master)))
}

/// A `\r` progress line shows while the command runs (it was held until a newline).
#[test]
fn progress_lines_show_on_a_terminal() {
    let w = World::sqlite();
    let script = r#"printf 'downloading 42%%\r' >&2; echo > shown
        while [ ! -e go ]; do sleep 0.02; done; echo null"#;
    let (mut child, screen) = run_on_terminal(&w, &[], script);
    wait_for_file(&w.path("shown"));
    let seen = screen.wait_for("downloading 42%", Duration::from_secs(10));
    std::fs::write(w.path("go"), "").expect("go");
    let status = wait_with_limit(&mut child, Duration::from_secs(20));
    assert!(seen, "the progress line never showed: {:?}", screen.text());
    assert_eq!(status.code(), Some(0), "{:?}", screen.text());
}

/// 4 MB of stderr without a newline, under the live line: linear (it took 11 s in a debug build
/// when each chunk rescanned everything held so far; well under a second now).
#[test]
fn a_long_line_on_a_terminal_is_linear() {
    let w = World::sqlite();
    let script = r#"head -c 4000000 /dev/zero | tr '\0' x >&2; echo null"#;
    let started = Instant::now();
    let (mut child, screen) = run_on_terminal(&w, &[], script);
    let status = wait_with_limit(&mut child, Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(status.code(), Some(0));
    let shown = screen.all().bytes().filter(|b| *b == b'x').count();
    assert_eq!(shown, 4_000_000, "every byte is shown");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// A command reading the terminal (an ssh or sudo prompt) fails at once: it has no controlling
/// terminal. It used to be stopped by SIGTTIN, silently, for ever.
#[test]
fn a_command_reading_the_terminal_fails_at_once() {
    let w = World::sqlite();
    let script = r#"if read answer < /dev/tty; then echo read > outcome; else echo failed > outcome; fi
        echo null"#;
    let (mut child, screen) = run_on_terminal(&w, &[], script);
    let limit = Duration::from_secs(10);
    let deadline = Instant::now() + limit;
    while !w.path("outcome").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let outcome = std::fs::read_to_string(w.path("outcome")).unwrap_or_default();
    if outcome.is_empty() {
        let _ = child.kill();
    }
    let status = wait_with_limit(&mut child, Duration::from_secs(20));
    assert_eq!(
        outcome.trim(),
        "failed",
        "stopped on /dev/tty: {:?}",
        screen.text()
    );
    assert_eq!(status.code(), Some(0));
}
