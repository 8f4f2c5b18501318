//! What pruning a task takes from the attempt history: its node's records, and its run's events
//! once the run has no node left.

use stint_domain::AttemptState;

use super::State;

impl State {
    /// Deletes the attempts, outputs and node rows of `node_id` in `run_id` (every iteration)
    /// unless an attempt of it is in progress, and the whole run (its events) once no node of it
    /// is left.
    pub(crate) fn forget_node(&mut self, run_id: &str, node_id: &str) {
        let Some(run) = self.runs.get_mut(run_id) else {
            return;
        };
        let live = run.attempts.iter().any(|((node, _, _), stored)| {
            node == node_id && stored.record.state == AttemptState::InProgress
        });
        if live {
            return;
        }
        run.attempts.retain(|(node, _, _), _| node != node_id);
        run.outputs.retain(|(node, _), _| node != node_id);
        run.nodes.retain(|(node, _), _| node != node_id);
        if run.nodes.is_empty() {
            self.runs.remove(run_id);
        }
    }
}
