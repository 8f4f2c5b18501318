//! CPU time over a timed phase, split between the benchmark's own process (its client, and an
//! embedded store such as SQLite) and the rest of the machine (a PostgreSQL server on the same
//! machine, and whatever else runs there meanwhile). It tells what a job costs where, which the
//! jobs/s alone do not: on a machine with two cores, CPU per job bounds the rate.
//!
//! Read from `/proc` (Linux); elsewhere there is no figure. Included with `#[path]` by the peer
//! packages and by `stint-bench`, which cannot share a Cargo graph.

/// `/proc` counts CPU time in ticks of `USER_HZ`, which Linux fixes at 100 per second for every
/// user-visible interface whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// The CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuMark {
    /// This process: user and system ticks, all threads.
    own: u64,
    /// The whole machine: every CPU's non-idle ticks.
    busy: u64,
}

/// CPU per job over a phase, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CpuPerJob {
    /// This process.
    pub(crate) own_ms: f64,
    /// The rest of the machine.
    pub(crate) rest_ms: f64,
}

impl CpuPerJob {
    /// As a result line carries it (`cpu_ms_per_job`): this process's and the rest of the
    /// machine's milliseconds, or null where they could not be read.
    pub(crate) fn json(cpu: Option<Self>) -> serde_json::Value {
        cpu.map_or(
            serde_json::Value::Null,
            |cpu| serde_json::json!({ "process": cpu.own_ms, "rest_of_machine": cpu.rest_ms }),
        )
    }
}

impl CpuMark {
    /// The counters now, or `None` where `/proc` cannot be read.
    pub(crate) fn now() -> Option<Self> {
        let own = std::fs::read_to_string("/proc/self/stat").ok()?;
        let machine = std::fs::read_to_string("/proc/stat").ok()?;
        Some(Self {
            own: own_ticks(&own)?,
            busy: busy_ticks(&machine)?,
        })
    }

    /// The CPU per job since `self`, for `jobs` jobs done meanwhile.
    pub(crate) fn per_job_since(self, jobs: usize) -> Option<CpuPerJob> {
        let now = Self::now()?;
        per_job(self, now, jobs)
    }
}

fn per_job(start: CpuMark, end: CpuMark, jobs: usize) -> Option<CpuPerJob> {
    if jobs == 0 {
        return None;
    }
    let own = end.own.checked_sub(start.own)?;
    let busy = end.busy.checked_sub(start.busy)?;
    let ms = |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1000.0 / jobs as f64;
    Some(CpuPerJob {
        own_ms: ms(own),
        // Sampled at different instants, the machine's count can lag this process's by a tick.
        rest_ms: ms(busy.saturating_sub(own)),
    })
}

/// utime + stime of a `/proc/<pid>/stat` line: fields 14 and 15, counted after the command
/// name, which is in parentheses and may itself hold spaces and parentheses.
fn own_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// The non-idle ticks of `/proc/stat`'s first line (`cpu user nice system idle iowait irq
/// softirq steal ...`): all but idle and iowait.
fn busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields.map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let total: u64 = ticks.iter().take(8).sum();
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some(total.saturating_sub(idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_line_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let line = "4242 (tokio (rt) worker) S 1 2 3 4 5 6 7 8 9 10 250 70 0 0 20 0 9 0";
        assert_eq!(own_ticks(line), Some(320));
    }

    #[test]
    fn the_machine_line_counts_all_but_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(busy_ticks(stat), Some(161));
        assert_eq!(busy_ticks("intr 1 2 3\n"), None);
    }

    #[test]
    fn cpu_per_job_splits_this_process_from_the_rest() {
        let start = CpuMark { own: 10, busy: 100 };
        let end = CpuMark { own: 30, busy: 200 };
        let per_job = per_job(start, end, 100).expect("a figure");
        assert_eq!(
            per_job,
            CpuPerJob {
                own_ms: 2.0,
                rest_ms: 8.0
            }
        );
        assert_eq!(super::per_job(start, end, 0), None);
    }

    #[test]
    fn this_machine_can_be_read_where_it_is_linux() {
        if cfg!(target_os = "linux") {
            let mark = CpuMark::now().expect("/proc is readable");
            assert!(mark.per_job_since(1).is_some());
        }
    }
}
