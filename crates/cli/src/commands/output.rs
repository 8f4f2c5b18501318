//! `stint output RUN_ID NODE`: the stored output of a node.

use stint_domain::NodeKey;

use crate::args::OutputArgs;
use crate::exit::{self, CliCode, CliError};
use crate::stdout;

/// `stint output RUN_ID NODE`.
pub async fn output(db: &str, args: &OutputArgs) -> Result<u8, CliError> {
    let key = NodeKey::new(args.run_id.clone(), args.node.clone(), args.iteration)
        .map_err(|error| CliError::invalid_input(error.to_string()))?;
    let store = crate::store::open_existing(db).await?;
    if let Some(output) = store.read_output(&key).await? {
        stdout::line(&output.to_string())?;
        return Ok(exit::SUCCESS);
    }
    let state = match store.get_node(&key).await? {
        Some(node) => format!("its state is {}", node.state),
        None => "it never ran".to_owned(),
    };
    Err(CliError::new(
        CliCode::NoOutput,
        format!("{key} has no stored output: {state}"),
    ))
}
