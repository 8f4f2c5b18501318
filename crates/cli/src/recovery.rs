//! Recovery as `stint recover` and `stint run` do it: the process groups expired attempts left
//! running on this machine are ended first, then the attempts are marked `ATTEMPT_ABANDONED`.
//!
//! Ending comes before the mark because the mark frees the node: a `stint run` elsewhere may
//! begin its next attempt right after it, and must not run beside a survivor of the last one. An
//! attempt whose lease runs out between the listing and the mark (one store round trip) is
//! marked with the rest and its group ended right after. A group on another host is out of
//! reach: the next `stint recover` or `stint run` on that host ends it (see `stint recover
//! --help`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use stint_domain::{AttemptKey, AttemptRecord};
use stint_engine::Engine;
use stint_ports::{AttemptFilter, Store, StoreError};

use crate::exit::CliError;
use crate::process::orphans;

/// The longest recovery may take, listing and marking: past it the store counts as unavailable
/// (a server that vanished without closing the connection would otherwise hold it forever).
pub(crate) const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// Ends the orphaned groups of expired attempts on this host, marks the expired attempts
/// abandoned and returns them; `note` is told of each group ended.
pub(crate) async fn recover(
    store: &Arc<dyn Store>,
    engine: &Engine,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Vec<AttemptKey>, CliError> {
    match tokio::time::timeout(RECOVERY_LIMIT, end_then_mark(store, engine, note)).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::unavailable(format!(
            "recovery did not finish within {}s",
            RECOVERY_LIMIT.as_secs()
        ))
        .into()),
    }
}

async fn end_then_mark(
    store: &Arc<dyn Store>,
    engine: &Engine,
    note: &(dyn Fn(&str) + Sync),
) -> Result<Vec<AttemptKey>, CliError> {
    let expired = store
        .expired_attempts(engine.ports().clock.now_ms())
        .await?;
    let mut seen = HashSet::with_capacity(expired.len());
    for record in &expired {
        let key = key_of(record)?;
        end_group(record, &key, note).await;
        seen.insert(key);
    }
    let marked = engine.recover().await?;
    for key in marked.iter().filter(|key| !seen.contains(*key)) {
        let filter = AttemptFilter {
            run_id: key.node.run_id().to_owned(),
            node_id: Some(key.node.node_id().to_owned()),
            iteration: Some(key.node.iteration()),
        };
        let records = store.list_attempts(&filter).await?;
        if let Some(record) = records.iter().find(|r| r.attempt == key.attempt) {
            end_group(record, key, note).await;
        }
    }
    Ok(marked)
}

async fn end_group(record: &AttemptRecord, key: &AttemptKey, note: &(dyn Fn(&str) + Sync)) {
    if let Some(pgid) = orphans::end_orphaned_group(record).await {
        note(&format!("ended orphaned process group {pgid} of {key}"));
    }
}

fn key_of(record: &AttemptRecord) -> Result<AttemptKey, CliError> {
    let node = stint_domain::NodeKey::new(
        record.run_id.clone(),
        record.node_id.clone(),
        record.iteration,
    )
    .map_err(|error| StoreError::incompatible(format!("stored key is invalid: {error}")))?;
    Ok(node.attempt(record.attempt))
}
