//! What Linux's `/proc` tells about processes and the machine; every read is `None` without it.

use std::path::Path;

/// The fields of `/proc/PID/stat` stint uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stat {
    /// The state letter (`Z` zombie, `X` dead).
    pub state: char,
    /// The process group.
    pub pgrp: i32,
    /// When the process started, in clock ticks since boot (field 22).
    pub started: u64,
}

impl Stat {
    /// Whether the process still runs (a zombie has exited and only awaits its reaper).
    pub(super) fn live(self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// The stat line of process `pid`.
pub(super) fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The pids /proc lists.
pub(super) fn pids() -> Option<impl Iterator<Item = i32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(
        entries
            .flatten()
            .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok()),
    )
}

/// The value of `name` in the environment process `pid` started with (readable for processes of
/// the same user).
pub(super) fn env_var(pid: i32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|&b| b == 0).find_map(|entry| {
        let (key, value) = std::str::from_utf8(entry).ok()?.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

/// This machine's host name.
pub(super) fn host() -> Option<String> {
    read_trimmed(Path::new("/proc/sys/kernel/hostname"))
}

/// This boot's id: it changes at every boot, so it tells a group recorded before a reboot.
pub(super) fn boot_id() -> Option<String> {
    read_trimmed(Path::new("/proc/sys/kernel/random/boot_id"))
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The fields of a `/proc/PID/stat` line.
fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name (field 2) may hold spaces and parentheses: fields resume after the last
    // `)`, with field 3 (the state) first; field 5 is the group, field 22 the start time.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_state_group_and_start() {
        let stat = "4242 (a) b (c)) Z 1 4240 4240 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 98765 0 0";
        let parsed = parse_stat(stat).expect("parsed");
        assert_eq!(parsed.state, 'Z');
        assert_eq!(parsed.pgrp, 4240);
        assert_eq!(parsed.started, 98765);
        assert!(!parsed.live());
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_found() {
        let me = i32::try_from(std::process::id()).expect("a pid");
        let stat = stat(me).expect("/proc lists this process");
        assert!(stat.live());
        assert!(pids().expect("/proc").any(|pid| pid == me));
        assert!(host().is_some());
    }
}
