//! One module per group of commands; [`dispatch`] picks the one the command line names.

mod schema;

use crate::args::{Cli, Command};
use crate::exit::{self, CliError};

/// Runs the parsed command line and returns the exit code.
pub async fn dispatch(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Schema(args) => schema::schema(&args),
        _ => Err(CliError::new(
            "UNIMPLEMENTED",
            "not built yet",
            exit::FAILED,
        )),
    }
}
