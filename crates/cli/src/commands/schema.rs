//! `stint schema [NAME]`: the JSON Schemas of events, records and errors.

use crate::args::SchemaArgs;
use crate::exit::{self, CliError};

/// Prints the schema named `args.name`, or the list of names.
pub(super) fn schema(args: &SchemaArgs) -> Result<u8, CliError> {
    let schemas = crate::json_schemas();
    let Some(name) = &args.name else {
        for (name, _) in &schemas {
            crate::stdout::line(name)?;
        }
        return Ok(exit::SUCCESS);
    };
    let Some((_, schema)) = schemas.iter().find(|(n, _)| n == name) else {
        let names: Vec<&str> = schemas.iter().map(|(n, _)| *n).collect();
        return Err(CliError::invalid_input(format!(
            "no schema named '{name}' (known: {})",
            names.join(", ")
        )));
    };
    let text = serde_json::to_string_pretty(schema)
        .map_err(|e| CliError::internal(format!("cannot print schema: {e}")))?;
    crate::stdout::line(&text)?;
    Ok(exit::SUCCESS)
}
