//! The NOTIFY side of the wake-ups: the channel a store's writes notify on, and the statement
//! that notifies it, run inside the transaction that made tasks ready (so it fires on commit,
//! and not at all on a rollback).

use sqlx::postgres::PgConnection;

use crate::error::OpError;

/// The channel of a store without a schema of its own.
const CHANNEL: &str = "stint_tasks";

/// PostgreSQL's longest identifier, in bytes (a longer channel name is refused).
const MAX_CHANNEL: usize = 63;

/// A payload at least this long (PostgreSQL's limit is 8000 bytes) is sent empty: "some
/// queue", which wakes every listener of the channel.
const MAX_PAYLOAD: usize = 7_900;

/// The channel the writes of a store in `schema` notify: each schema has its own, so stores
/// sharing a database do not wake each other's workers (a name cut to PostgreSQL's limit may
/// be shared, which only costs a claim).
pub(crate) fn channel(schema: Option<&str>) -> String {
    let Some(schema) = schema else {
        return CHANNEL.to_owned();
    };
    let mut name = format!("{CHANNEL}_{schema}");
    // Schema names are ASCII (see `validate_schema`).
    name.truncate(MAX_CHANNEL);
    name
}

/// The channel the listeners' delivery probes go to.
pub(crate) fn probe_channel(channel: &str) -> String {
    let mut name = format!("{channel}_probe");
    if name.len() > MAX_CHANNEL {
        name = format!("{}_probe", &channel[..MAX_CHANNEL - "_probe".len()]);
    }
    name
}

/// The payload that names `queue`: the queue itself, or empty ("any queue") when too long.
pub(crate) fn payload(queue: &str) -> &str {
    if queue.len() < MAX_PAYLOAD { queue } else { "" }
}

/// The payloads that name each distinct queue of `queues` once.
pub(crate) fn payloads<'a>(queues: &[&'a str]) -> Vec<&'a str> {
    let mut names: Vec<&str> = queues.iter().map(|queue| payload(queue)).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Notifies `channel` once for each distinct queue of `queues` (nothing when it is empty).
pub(crate) async fn queues(
    conn: &mut PgConnection,
    channel: &str,
    queues: &[&str],
) -> Result<(), OpError> {
    let names = payloads(queues);
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, q) FROM unnest($2::text[]) AS q")
        .bind(channel)
        .bind(&names)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_schema_has_its_channel_within_the_identifier_limit() {
        assert_eq!(channel(None), "stint_tasks");
        assert_eq!(channel(Some("s1")), "stint_tasks_s1");
        let long = "s".repeat(63);
        assert_eq!(channel(Some(&long)).len(), MAX_CHANNEL);
        assert_eq!(probe_channel(&channel(Some(&long))).len(), MAX_CHANNEL);
        assert_eq!(probe_channel("stint_tasks"), "stint_tasks_probe");
    }

    #[test]
    fn a_queue_too_long_for_a_payload_is_sent_as_any_queue() {
        assert_eq!(payload("default"), "default");
        assert_eq!(payload(&"q".repeat(8_000)), "");
    }
}
