//! `stint recover` and `stint migrate`.

use std::sync::Arc;

use stint_engine::{Engine, NoVcs, Ports};

use crate::exit::{self, CliError};
use crate::output::Notes;

/// `stint recover`: marks abandoned attempts and prints each one on stdout.
pub(super) async fn recover(db: &str, quiet: bool) -> Result<u8, CliError> {
    // Nothing to recover where nothing was recorded: a missing database is not created.
    let store = crate::store::open_existing(db).await?;
    let engine = Engine::new(Ports::new(store.clone(), Arc::new(NoVcs)));
    let notes = Notes { quiet };
    let recovered = crate::recovery::recover(&store, &engine, &|text| notes.note(text)).await?;
    for key in &recovered {
        crate::stdout::line(&format!(
            "{}\t{}\t{}\t{}\tATTEMPT_ABANDONED",
            key.node.run_id(),
            key.node.node_id(),
            key.node.iteration(),
            key.attempt
        ))?;
    }
    notes.note(&format!(
        "marked {} abandoned attempt(s) failed",
        recovered.len()
    ));
    Ok(exit::SUCCESS)
}

/// `stint migrate`: opening the store applies every migration.
pub(super) async fn migrate(db: &str, quiet: bool) -> Result<u8, CliError> {
    let _store = crate::store::open(db).await?;
    Notes { quiet }.note("database schema is up to date");
    Ok(exit::SUCCESS)
}
