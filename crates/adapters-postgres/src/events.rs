//! The event log: appends under a per-run advisory lock, and the decoding of stored events.

use sqlx::postgres::PgConnection;
use sqlx::types::Json;
use stint_domain::{Event, EventRecord};
use stint_ports::StoreError;

use crate::error::{OpError, to_u64};

/// The advisory lock key of a run's event sequence: FNV-1a (64-bit) of the run id's UTF-8 bytes,
/// its bits read as an `i64`, fixed so that every stint binary on every machine, of every
/// version, computes the same key. A collision only makes two runs share a lock, which costs
/// throughput, never correctness.
///
/// Public for the benchmark's same-SQL floor only, which must take the same locks.
#[doc(hidden)]
pub fn run_lock_key(run_id: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let hash = run_id.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    // Reinterpreting the bits is the point: any 64-bit value is a valid key.
    hash as i64
}

/// Appends events: `$1` their runs' lock keys, `$2` their bodies (see [`EventBodies`]).
const INSERT_EVENTS: &str = "SELECT stint_insert_events($1, $2)";

/// Inserts `events` in order inside the caller's transaction (see [`EventBodies`]).
pub(crate) async fn insert_events(
    conn: &mut PgConnection,
    events: &[Event],
) -> Result<(), OpError> {
    if events.is_empty() {
        return Ok(());
    }
    let events = EventBodies::of(events)?;
    sqlx::query(INSERT_EVENTS)
        .bind(Json(&events.lock_keys))
        .bind(Json(&events.events))
        .execute(conn)
        .await?;
    Ok(())
}

/// Events as the database functions take them: their bodies (each holds the columns the row
/// is stored with), and the advisory lock keys of their runs (ascending, each once).
///
/// Identity values are handed out at insert, not at commit, so without care a reader tailing
/// `seq > last` could pass over a lower seq whose transaction commits later. The database
/// function that inserts them (`stint_insert_events`) first takes each run's advisory lock
/// (transaction-scoped, so held until commit or rollback), which makes the allocation of a run's
/// seqs and the commits of their transactions happen in one order. Writers insert events last
/// in their transaction, so the lock is held only for the insert and the commit; locks of
/// several runs are taken in key order, so two writers cannot deadlock.
#[derive(Default, serde::Serialize)]
pub(crate) struct EventBodies {
    lock_keys: Vec<i64>,
    events: Vec<serde_json::Value>,
}

impl EventBodies {
    /// The bodies and locks of `events`.
    pub(crate) fn of(events: &[Event]) -> Result<Self, OpError> {
        let mut lock_keys: Vec<i64> = events.iter().map(|e| run_lock_key(&e.run_id)).collect();
        lock_keys.sort_unstable();
        lock_keys.dedup();
        let events = events
            .iter()
            .map(|event| {
                serde_json::to_value(event).map_err(|error| {
                    OpError::Store(StoreError::incompatible(format!(
                        "an event does not serialise: {error}"
                    )))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { lock_keys, events })
    }
}

pub(crate) fn decode_event(seq: i64, body: serde_json::Value) -> Result<EventRecord, OpError> {
    let event: Event = serde_json::from_value(body).map_err(|error| {
        OpError::Store(StoreError::incompatible(format!(
            "event {seq} does not decode: {error}"
        )))
    })?;
    Ok(EventRecord {
        seq: to_u64("events.seq", seq)?,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::run_lock_key;

    /// Keys pinned from an independent FNV-1a 64 implementation (a few lines of Python; "a" and
    /// "foobar" are also the published reference vectors). Writers of two stint versions on one
    /// database must take the same lock for a run, so any change here is a breaking change.
    #[test]
    fn lock_keys_are_pinned_fnv1a_vectors() {
        let vectors: [(&str, u64); 7] = [
            ("", 0xcbf2_9ce4_8422_2325),
            ("a", 0xaf63_dc4c_8601_ec8c),
            ("b", 0xaf63_df4c_8601_f1a5),
            ("foobar", 0x8594_4171_f739_67e8),
            ("nightly", 0x7e30_8d76_80db_5f8a),
            ("storm-0", 0x6725_3768_0df1_3fe3),
            ("run-\u{e9}", 0x0c87_aa75_a4a4_8921),
        ];
        for (run_id, hash) in vectors {
            assert_eq!(
                run_lock_key(run_id),
                i64::from_ne_bytes(hash.to_ne_bytes()),
                "key of {run_id:?}"
            );
        }
        // Negative keys are ordinary keys: the high bit is part of the hash.
        assert_eq!(run_lock_key("a"), -5_808_556_873_153_909_620);
        assert_eq!(run_lock_key("nightly"), 9_092_923_187_768_549_258);
    }
}
