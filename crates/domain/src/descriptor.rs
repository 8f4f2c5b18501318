//! The task descriptor: what to run and under which policy.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::key::NodeKey;
use crate::retry::RetryPolicy;

/// Default lease of an attempt: 30 s, renewed every third of it.
pub const DEFAULT_LEASE_MS: u64 = 30_000;

/// Free-form metadata stored with each attempt.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct TaskMetadata {
    /// The prompt, for tasks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// A static payload handed to the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub static_payload: Option<Value>,
    /// Whether a human must approve the task before it runs.
    #[serde(default)]
    pub needs_approval: bool,
}

/// What to run and under which policy: the node it runs as, the schema its output must match,
/// its retries and backoff, its timeouts and its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskDescriptor {
    /// The node this task runs as.
    pub key: NodeKey,
    /// A human-readable label.
    #[serde(default)]
    pub label: Option<String>,
    /// The name of the table the output belongs to.
    #[serde(default)]
    pub output_table: Option<String>,
    /// JSON Schema the output must match.
    #[serde(default)]
    pub output_schema: Option<Value>,
    /// Retries and backoff.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Longest run of one attempt.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Longest silence between heartbeats before the attempt is failed.
    #[serde(default)]
    pub heartbeat_timeout_ms: Option<u64>,
    /// How long an attempt stays owned without a lease renewal.
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
    /// Free-form metadata.
    #[serde(default)]
    pub metadata: TaskMetadata,
    /// The facts that decide whether the engine may run the task; eligible by default.
    #[serde(default)]
    pub eligibility: Eligibility,
}

fn default_lease() -> u64 {
    DEFAULT_LEASE_MS
}

impl TaskDescriptor {
    /// A descriptor with default policy: no retries, no timeouts, 30 s lease.
    pub fn new(key: NodeKey) -> Self {
        Self {
            key,
            label: None,
            output_table: None,
            output_schema: None,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            heartbeat_timeout_ms: None,
            lease_ms: DEFAULT_LEASE_MS,
            metadata: TaskMetadata::default(),
            eligibility: Eligibility::default(),
        }
    }
}

/// The facts about a task that decide whether the engine runs it as a bridge-managed compute
/// task: it is eligible when no cache policy is in play, it is not an agent task, it has a
/// compute (function or command), it does not run in a separate worktree, and no scorer is
/// attached.
///
/// The engine checks [`Eligibility::check`] before running a task and refuses, with the
/// [`Ineligible`] it returns, a task it must not run. The default is an eligible task: a plain
/// compute, no cache, no agent, no worktree, no scorer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Eligibility {
    /// A cache policy is in play.
    pub cached: bool,
    /// It is an agent task.
    pub agent: bool,
    /// It has a compute function (or command).
    pub has_compute: bool,
    /// It runs in a separate worktree.
    pub separate_worktree: bool,
    /// Number of scorers attached.
    pub scorers: usize,
}

impl Eligibility {
    /// Whether the task is eligible: every condition of [`Eligibility`] holds.
    pub fn is_eligible(&self) -> bool {
        self.check().is_ok()
    }

    /// `Ok` for an eligible task; otherwise the condition that makes it ineligible. When several
    /// do, the first in the order of the fields is named, so the answer is deterministic.
    pub fn check(&self) -> Result<(), Ineligible> {
        if self.cached {
            Err(Ineligible::Cached)
        } else if self.agent {
            Err(Ineligible::Agent)
        } else if !self.has_compute {
            Err(Ineligible::NoCompute)
        } else if self.separate_worktree {
            Err(Ineligible::SeparateWorktree)
        } else if self.scorers > 0 {
            Err(Ineligible::Scorers {
                scorers: self.scorers,
            })
        } else {
            Ok(())
        }
    }
}

impl Default for Eligibility {
    fn default() -> Self {
        Self {
            cached: false,
            agent: false,
            has_compute: true,
            separate_worktree: false,
            scorers: 0,
        }
    }
}

/// Why a task is not eligible to run as a bridge-managed compute task: one condition of
/// [`Eligibility`] it breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Ineligible {
    /// A cache policy is in play.
    #[error("task is not eligible to run: a cache policy is in play")]
    Cached,
    /// It is an agent task.
    #[error("task is not eligible to run: it is an agent task")]
    Agent,
    /// It has no compute function or command.
    #[error("task is not eligible to run: it has no compute")]
    NoCompute,
    /// It runs in a separate worktree.
    #[error("task is not eligible to run: it runs in a separate worktree")]
    SeparateWorktree,
    /// Scorers are attached.
    #[error("task is not eligible to run: {scorers} scorers are attached")]
    Scorers {
        /// How many.
        scorers: usize,
    },
}

impl Ineligible {
    /// The stable code of the condition, for logs and error details: `CACHED`, `AGENT`,
    /// `NO_COMPUTE`, `SEPARATE_WORKTREE` or `SCORERS`. Messages may be reworded; codes are not.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cached => "CACHED",
            Self::Agent => "AGENT",
            Self::NoCompute => "NO_COMPUTE",
            Self::SeparateWorktree => "SEPARATE_WORKTREE",
            Self::Scorers { .. } => "SCORERS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eligible() -> Eligibility {
        Eligibility {
            has_compute: true,
            ..Eligibility::default()
        }
    }

    #[test]
    fn each_condition_alone_makes_a_task_ineligible_and_is_named() {
        let ok = eligible();
        assert!(ok.is_eligible());
        assert_eq!(ok.check(), Ok(()));
        let cases = [
            (
                Eligibility { cached: true, ..ok },
                Ineligible::Cached,
                "CACHED",
            ),
            (
                Eligibility { agent: true, ..ok },
                Ineligible::Agent,
                "AGENT",
            ),
            (
                Eligibility {
                    has_compute: false,
                    ..ok
                },
                Ineligible::NoCompute,
                "NO_COMPUTE",
            ),
            (
                Eligibility {
                    separate_worktree: true,
                    ..ok
                },
                Ineligible::SeparateWorktree,
                "SEPARATE_WORKTREE",
            ),
            (
                Eligibility { scorers: 2, ..ok },
                Ineligible::Scorers { scorers: 2 },
                "SCORERS",
            ),
        ];
        for (facts, reason, code) in cases {
            assert!(!facts.is_eligible(), "{facts:?}");
            assert_eq!(facts.check(), Err(reason));
            assert_eq!(reason.code(), code);
        }
        assert_eq!(
            Ineligible::Scorers { scorers: 2 }.to_string(),
            "task is not eligible to run: 2 scorers are attached"
        );
    }

    #[test]
    fn the_first_broken_condition_is_named_and_agrees_with_the_predicate() {
        for bits in 0..32_u8 {
            let facts = Eligibility {
                cached: bits & 1 != 0,
                agent: bits & 2 != 0,
                has_compute: bits & 4 == 0,
                separate_worktree: bits & 8 != 0,
                scorers: usize::from(bits & 16 != 0),
            };
            let expected = match bits.trailing_zeros() {
                0 => Err(Ineligible::Cached),
                1 => Err(Ineligible::Agent),
                2 => Err(Ineligible::NoCompute),
                3 => Err(Ineligible::SeparateWorktree),
                4 => Err(Ineligible::Scorers { scorers: 1 }),
                _ => Ok(()),
            };
            assert_eq!(facts.check(), expected, "{facts:?}");
            assert_eq!(facts.is_eligible(), bits == 0);
        }
    }
}
