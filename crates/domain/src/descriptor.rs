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

/// What to run and under which policy (SPEC section 1).
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
        }
    }
}

/// The facts about a task that decide whether the engine runs it as a bridge-managed compute task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// The predicate of SPEC section 3: no cache, not an agent, has a compute, no separate
    /// worktree, no scorers.
    pub fn is_eligible(&self) -> bool {
        !self.cached
            && !self.agent
            && self.has_compute
            && !self.separate_worktree
            && self.scorers == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_condition_alone_makes_a_task_ineligible() {
        let ok = Eligibility {
            has_compute: true,
            ..Eligibility::default()
        };
        assert!(ok.is_eligible());
        assert!(!Eligibility { cached: true, ..ok }.is_eligible());
        assert!(!Eligibility { agent: true, ..ok }.is_eligible());
        assert!(
            !Eligibility {
                has_compute: false,
                ..ok
            }
            .is_eligible()
        );
        assert!(
            !Eligibility {
                separate_worktree: true,
                ..ok
            }
            .is_eligible()
        );
        assert!(!Eligibility { scorers: 1, ..ok }.is_eligible());
    }
}
