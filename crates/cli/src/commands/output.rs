//! `stint output RUN_ID NODE`: the output of a node, printed only while it is current.

use stint_domain::{AttemptRecord, AttemptState, NodeKey, NodeRecord};
use stint_ports::{AttemptFilter, Store};

use super::inspect::{unknown_node, unknown_run};
use crate::args::OutputArgs;
use crate::exit::{self, CliCode, CliError};
use crate::stdout;

/// Prints the node's output when its latest attempt finished. Otherwise the stored output (kept
/// from an earlier attempt) is not current: NO_OUTPUT, unless `--last-finished` asks for it.
pub(super) async fn output(db: &str, quiet: bool, args: &OutputArgs) -> Result<u8, CliError> {
    let key = NodeKey::new(args.run_id.clone(), args.node.clone(), args.iteration)
        .map_err(|error| CliError::invalid_input(error.to_string()))?;
    let store = crate::store::open_existing(db).await?;
    let Some(node) = store.get_node(&key).await? else {
        return Err(if store.list_nodes(key.run_id()).await?.is_empty() {
            unknown_run(key.run_id())
        } else {
            unknown_node(key.run_id(), Some(key.node_id()), Some(key.iteration()))
        });
    };
    let output = store.read_output(&key).await?;
    if node.state == AttemptState::Finished
        && let Some(output) = output
    {
        stdout::line(&output.to_string())?;
        return Ok(exit::SUCCESS);
    }
    let latest = latest_attempt(store.as_ref(), &key, &node).await?;
    match (output, latest.finished) {
        (Some(output), Some(finished)) if args.last_finished => {
            if !quiet {
                crate::output::note(&format!(
                    "{key}: printing the output of attempt {finished}; its latest attempt ({}) {}",
                    node.last_attempt, latest.state
                ));
            }
            stdout::line(&output.to_string())?;
            Ok(exit::SUCCESS)
        }
        (Some(_), Some(finished)) => Err(CliError::new(
            CliCode::NoOutput,
            format!(
                "{key} has no current output: its latest attempt ({}) {}; the output of attempt \
                 {finished} is kept (--last-finished prints it)",
                node.last_attempt, latest.state
            ),
        )),
        _ => Err(CliError::new(
            CliCode::NoOutput,
            format!(
                "{key} has no output: its latest attempt ({}) {}",
                node.last_attempt, latest.state
            ),
        )),
    }
}

/// What the node's attempts say: the state of the latest, in words, and the number of the last
/// one that finished.
struct Latest {
    state: String,
    finished: Option<u32>,
}

async fn latest_attempt(
    store: &dyn Store,
    key: &NodeKey,
    node: &NodeRecord,
) -> Result<Latest, CliError> {
    let filter = AttemptFilter::node(key);
    let attempts = store.list_attempts(&filter).await?;
    let finished = attempts
        .iter()
        .rev()
        .find(|a| a.state == AttemptState::Finished)
        .map(|a| a.attempt);
    let latest = attempts.iter().find(|a| a.attempt == node.last_attempt);
    Ok(Latest {
        state: state_words(node.state, latest),
        finished,
    })
}

/// `failed (TASK_FAILED)`, `was cancelled`, `is in progress`.
fn state_words(state: AttemptState, attempt: Option<&AttemptRecord>) -> String {
    match state {
        AttemptState::Failed => match attempt.and_then(|a| a.error.as_ref()) {
            Some(error) => format!("failed ({})", error.code),
            None => "failed".to_owned(),
        },
        AttemptState::Cancelled => "was cancelled".to_owned(),
        AttemptState::InProgress => "is in progress".to_owned(),
        AttemptState::Finished => "finished, but no output is stored".to_owned(),
    }
}
