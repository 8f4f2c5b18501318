//! Node and attempt keys, validated on construction.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// Longest run id or node id accepted, in bytes of UTF-8.
pub const MAX_ID_BYTES: usize = 256;

/// The key of a node: `(run_id, node_id, iteration)`.
///
/// Both ids are non-empty and at most [`MAX_ID_BYTES`] bytes; a value of this type is always valid.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "RawNodeKey")]
pub struct NodeKey {
    run_id: String,
    node_id: String,
    iteration: u32,
}

/// The unvalidated form a key is deserialised from.
#[derive(Deserialize, JsonSchema)]
struct RawNodeKey {
    run_id: String,
    node_id: String,
    iteration: u32,
}

impl TryFrom<RawNodeKey> for NodeKey {
    type Error = DomainError;
    fn try_from(raw: RawNodeKey) -> Result<Self, Self::Error> {
        NodeKey::new(raw.run_id, raw.node_id, raw.iteration)
    }
}

/// Checks one id: non-empty and at most [`MAX_ID_BYTES`] bytes.
pub fn validate_id(field: &'static str, value: &str) -> Result<(), DomainError> {
    if value.is_empty() {
        return Err(DomainError::InvalidKey {
            field,
            reason: "must not be empty".to_owned(),
        });
    }
    if value.len() > MAX_ID_BYTES {
        return Err(DomainError::InvalidKey {
            field,
            reason: format!("is {} bytes, the limit is {MAX_ID_BYTES}", value.len()),
        });
    }
    Ok(())
}

impl NodeKey {
    /// Builds a key, refusing empty or over-long ids.
    pub fn new(
        run_id: impl Into<String>,
        node_id: impl Into<String>,
        iteration: u32,
    ) -> Result<Self, DomainError> {
        let (run_id, node_id) = (run_id.into(), node_id.into());
        validate_id("run_id", &run_id)?;
        validate_id("node_id", &node_id)?;
        Ok(Self {
            run_id,
            node_id,
            iteration,
        })
    }

    /// The run this node belongs to.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The node's id within its run.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The loop iteration, starting at 0.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The key of attempt number `attempt` of this node.
    pub fn attempt(&self, attempt: u32) -> AttemptKey {
        AttemptKey {
            node: self.clone(),
            attempt,
        }
    }
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}#{}", self.run_id, self.node_id, self.iteration)
    }
}

/// The key of one attempt: a node key and an attempt number (1, 2, 3...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct AttemptKey {
    /// The node this attempt belongs to.
    #[serde(flatten)]
    pub node: NodeKey,
    /// The attempt number, starting at 1.
    pub attempt: u32,
}

impl std::fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} attempt {}", self.node, self.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_long_ids_are_refused() {
        assert!(NodeKey::new("", "n", 0).is_err());
        assert!(NodeKey::new("r", "", 0).is_err());
        assert!(NodeKey::new("r", "x".repeat(257), 0).is_err());
        assert!(NodeKey::new("r", "x".repeat(256), 0).is_ok());
    }

    #[test]
    fn deserialising_validates() {
        let bad = serde_json::json!({"run_id": "", "node_id": "n", "iteration": 0});
        assert!(serde_json::from_value::<NodeKey>(bad).is_err());
        let good = serde_json::json!({"run_id": "r", "node_id": "n", "iteration": 2});
        let key: NodeKey = serde_json::from_value(good).expect("valid key");
        assert_eq!(key.iteration(), 2);
    }
}
