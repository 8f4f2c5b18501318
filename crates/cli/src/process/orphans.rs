//! The process group of an attempt whose runner died (`kill -9`, a crash, the machine's OOM
//! killer): found again from the place the runner recorded, and ended by recovery before the
//! attempt is marked abandoned, so the node never runs twice at once.
//!
//! `PR_SET_PDEATHSIG` kills only the command stint started; what the command started in turn
//! (its group) outlives a SIGKILLed stint. The place names the host, the boot, the group and its
//! leader's start time. A group is ended only on the same host and boot, and only when it is
//! provably the attempt's: its leader still runs with the recorded start time (a later process
//! given the same pid started later), or, the leader gone (the usual case: the death signal took
//! it), a live member started no earlier carries the attempt's `STINT_RUN_ID`, `STINT_NODE_ID`,
//! `STINT_ITERATION` and `STINT_ATTEMPT` in its environment. A group id cannot be reused while a
//! member of the group lives, so one such member identifies the whole group. A group that shows
//! neither (a member that replaced its environment, say) is left alone rather than risk another
//! user's processes; the whole check needs Linux's `/proc`.

use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use stint_domain::{AttemptRecord, ProcessPlace};
use tokio::time::Instant;

use super::{group, procfs};

/// How long recovery waits for the processes of an ended group to go.
const ENDING: Duration = Duration::from_secs(2);

/// Where the group led by the command just spawned as `pid` lives; `None` without /proc (or
/// when the command already exited).
pub(crate) fn place_of(pid: u32) -> Option<ProcessPlace> {
    let stat = procfs::stat(i32::try_from(pid).ok()?)?;
    Some(ProcessPlace {
        host: procfs::host()?,
        boot_id: procfs::boot_id(),
        pgid: pid,
        started: stat.started,
    })
}

/// Ends the process group `record` names when it still runs on this machine and is provably
/// the attempt's (see the module documentation); returns its id when it did.
pub(crate) async fn end_orphaned_group(record: &AttemptRecord) -> Option<u32> {
    let place = record.process.as_ref()?;
    if !is_here(place) {
        return None;
    }
    let pgid = i32::try_from(place.pgid).ok().filter(|&pgid| pgid > 1)?;
    if !belongs_to(record, place, pgid) {
        return None;
    }
    // SIGKILL needs no SIGCONT: it ends stopped processes too.
    if killpg(Pid::from_raw(pgid), Signal::SIGKILL).is_err() {
        return None;
    }
    let deadline = Instant::now() + ENDING;
    while group::live_member(pgid).unwrap_or(false) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(place.pgid)
}

/// Whether `place` is on this host, in this boot (a boot id unknown on either side passes: the
/// start time still guards the leader).
fn is_here(place: &ProcessPlace) -> bool {
    let same_boot = match (place.boot_id.as_deref(), procfs::boot_id()) {
        (Some(then), Some(now)) => then == now,
        _ => true,
    };
    same_boot && procfs::host().as_deref() == Some(place.host.as_str())
}

/// Whether group `pgid` is still the attempt's: its leader with the recorded start time, or a
/// live member started no earlier that carries the attempt's environment.
fn belongs_to(record: &AttemptRecord, place: &ProcessPlace, pgid: i32) -> bool {
    let leader = procfs::stat(pgid)
        .is_some_and(|stat| stat.live() && stat.pgrp == pgid && stat.started == place.started);
    leader
        || procfs::pids().is_some_and(|mut pids| {
            pids.any(|pid| {
                procfs::stat(pid).is_some_and(|stat| {
                    stat.live() && stat.pgrp == pgid && stat.started >= place.started
                }) && carries(record, pid)
            })
        })
}

/// Whether process `pid` was started with the attempt's `STINT_*` environment.
fn carries(record: &AttemptRecord, pid: i32) -> bool {
    [
        ("STINT_RUN_ID", record.run_id.clone()),
        ("STINT_NODE_ID", record.node_id.clone()),
        ("STINT_ITERATION", record.iteration.to_string()),
        ("STINT_ATTEMPT", record.attempt.to_string()),
    ]
    .iter()
    .all(|(name, value)| procfs::env_var(pid, name).as_deref() == Some(value.as_str()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;

    use serde_json::Value;
    use stint_domain::AttemptState;

    use super::*;

    fn record(place: Option<ProcessPlace>) -> AttemptRecord {
        AttemptRecord {
            run_id: "r".to_owned(),
            node_id: "n".to_owned(),
            iteration: 0,
            attempt: 1,
            state: AttemptState::InProgress,
            error: None,
            retryable: None,
            heartbeat: None,
            last_heartbeat_at_ms: None,
            started_at_ms: 0,
            finished_at_ms: None,
            vcs: None,
            metadata: Value::Null,
            working_dir: None,
            owner: "o".to_owned(),
            lease_expires_at_ms: 0,
            process: place,
        }
    }

    #[test]
    fn only_this_host_and_boot_are_here() {
        let here = place_of(std::process::id()).expect("/proc");
        assert!(is_here(&here));
        let elsewhere = ProcessPlace {
            host: format!("not-{}", here.host),
            ..here.clone()
        };
        assert!(!is_here(&elsewhere));
        let before_a_reboot = ProcessPlace {
            boot_id: Some("another boot".to_owned()),
            ..here.clone()
        };
        assert!(!is_here(&before_a_reboot));
        let boot_unknown = ProcessPlace {
            boot_id: None,
            ..here
        };
        assert!(is_here(&boot_unknown));
    }

    /// The leader with its recorded start time is the attempt's; a later start time (a reused
    /// pid) is not, unless a member carries the attempt's environment.
    #[test]
    fn a_group_is_the_attempts_by_its_leader_or_its_environment() {
        let spawn = |env: &[(&str, &str)]| {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .env_clear()
                .envs(env.iter().copied())
                .spawn()
                .expect("spawn sleep")
        };
        let mut plain = spawn(&[]);
        let place = place_of(plain.id()).expect("/proc");
        let pgid = i32::try_from(place.pgid).expect("pgid");
        assert!(belongs_to(&record(None), &place, pgid));
        let reused = ProcessPlace {
            started: place.started + 1_000_000,
            ..place.clone()
        };
        assert!(!belongs_to(&record(None), &reused, pgid));
        let _ = plain.kill();
        let _ = plain.wait();

        let attempt = [
            ("STINT_RUN_ID", "r"),
            ("STINT_NODE_ID", "n"),
            ("STINT_ITERATION", "0"),
            ("STINT_ATTEMPT", "1"),
        ];
        let mut member = spawn(&attempt);
        let place = ProcessPlace {
            started: 0,
            ..place_of(member.id()).expect("/proc")
        };
        let pgid = i32::try_from(place.pgid).expect("pgid");
        assert!(
            belongs_to(&record(None), &place, pgid),
            "carries the attempt"
        );
        let mut other = record(None);
        other.attempt = 2;
        assert!(
            !belongs_to(&other, &place, pgid),
            "another attempt's environment"
        );
        let _ = member.kill();
        let _ = member.wait();
    }
}
