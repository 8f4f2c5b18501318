//! The cases of the conformance suite, one async function each.
use crate::Fixture;

/// Attempt numbers of a node are 1, 2, 3... with no gaps.
pub async fn numbering_starts_at_one_without_gaps(_fixture: &dyn Fixture) {}
