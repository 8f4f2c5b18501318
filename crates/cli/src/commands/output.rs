//! `stint output RUN_ID NODE`: the stored output of a node.

use stint_domain::NodeKey;

use super::inspect::{unknown_node, unknown_run};
use crate::args::OutputArgs;
use crate::exit::{self, CliCode, CliError};
use crate::stdout;

/// `stint output RUN_ID NODE`.
pub async fn output(db: &str, args: &OutputArgs) -> Result<u8, CliError> {
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
    if let Some(output) = store.read_output(&key).await? {
        stdout::line(&output.to_string())?;
        return Ok(exit::SUCCESS);
    }
    Err(CliError::new(
        CliCode::NoOutput,
        format!("{key} has no stored output: its state is {}", node.state),
    ))
}
