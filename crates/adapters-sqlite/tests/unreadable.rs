//! A stored value this version cannot read back (a payload nested deeper than serde_json reads,
//! written by an older stint whose limit was 128) never stops a node from running again nor a
//! listing from printing.
#![allow(clippy::unwrap_used)] // an unwrap that fails fails the test

mod common;

use stint_domain::TaskError;
use stint_ports::{AttemptEnd, AttemptFilter, AttemptStore, EndAttempt, HistoryStore};

#[tokio::test]
async fn an_unreadable_checkpoint_is_skipped_and_listed_as_unreadable() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::store_in(dir.path()).await;
    let node = common::node();
    store
        .begin_attempt(common::begin(&node, "a", 1))
        .await
        .unwrap();
    let failed = AttemptEnd::Failed {
        error: TaskError::task_failed("boom"),
        retryable: true,
    };
    store
        .end_attempt(&common::owned(&node, 1, "a"), EndAttempt::new(failed, 2))
        .await
        .unwrap();
    let too_deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    sqlx::query("UPDATE attempts SET heartbeat = ?, metadata = ? WHERE attempt = 1")
        .bind(&too_deep)
        .bind(&too_deep)
        .execute(store.pool())
        .await
        .unwrap();

    let begun = store
        .begin_attempt(common::begin(&node, "b", 3))
        .await
        .expect("the node runs again");
    assert_eq!((begun.attempt, begun.checkpoint), (2, None));

    let filter = AttemptFilter::run(node.run_id());
    let listed = store
        .list_attempts(&filter)
        .await
        .expect("the listing prints");
    let marker = &listed[0].heartbeat.as_ref().expect("a heartbeat")["$unreadable"];
    assert!(
        marker
            .as_str()
            .is_some_and(|why| why.contains("recursion limit")),
        "{listed:?}"
    );
    assert!(listed[0].metadata["$unreadable"].is_string());
    assert_eq!(listed[0].error, Some(TaskError::task_failed("boom")));
}
