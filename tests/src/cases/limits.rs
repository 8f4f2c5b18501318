//! Keys at the edges: the longest ids, non-ASCII ids, the largest iteration, and ids that a
//! careless query would confuse.

use serde_json::json;
use stint_domain::{AttemptState, Event, EventKind, NodeKey};
use stint_ports::{AttemptEnd, AttemptFilter, EventPage, Store};

use crate::Fixture;
use crate::support::{
    accept_end, accept_heartbeat, attempts_of, events_of, heartbeat, key, newest_payload, start,
};

/// Runs one attempt of `node` to its end and checks every read gives the key back unchanged.
async fn round_trip(store: &dyn Store, node: &NodeKey) {
    let (begun, owned) = start(store, node, "owner", 1_000).await;
    assert_eq!(begun.attempt, 1);
    let payload = json!({"node": node.node_id()});
    accept_heartbeat(
        store,
        &owned,
        heartbeat(&owned, 1_100, Some(payload.clone()), None),
    )
    .await;
    let output = json!({"for": node.node_id(), "iteration": node.iteration()});
    let finish = AttemptEnd::Finished {
        output: output.clone(),
        vcs: None,
    };
    let event = Event::new(&owned.key, 1_200, EventKind::NodeFinished);
    accept_end(store, &owned, finish, 1_200, vec![event]).await;

    let attempts = attempts_of(store, node).await;
    assert_eq!(attempts.len(), 1, "{node}");
    assert_eq!(attempts[0].run_id, node.run_id());
    assert_eq!(attempts[0].node_id, node.node_id());
    assert_eq!(attempts[0].iteration, node.iteration());
    assert_eq!(attempts[0].state, AttemptState::Finished);
    let record = store.get_node(node).await.expect("get").expect("node");
    assert_eq!(
        (record.run_id.as_str(), record.node_id.as_str()),
        (node.run_id(), node.node_id())
    );
    assert_eq!(record.iteration, node.iteration());
    assert_eq!(store.read_output(node).await.expect("read"), Some(output));
    assert_eq!(newest_payload(store, node).await, Some(payload));
    let events = events_of(store, node.run_id()).await;
    let mine: Vec<_> = events
        .iter()
        .filter(|record| {
            record.event.node_id == node.node_id() && record.event.iteration == node.iteration()
        })
        .collect();
    assert_eq!(mine.len(), 3, "{node}: started, heartbeat, finished");
    assert!(
        mine.iter()
            .all(|record| record.event.run_id == node.run_id())
    );
}

/// 256-byte ids (ASCII and multi-byte), unicode ids and the largest iteration are stored and
/// read back exactly.
pub async fn keys_at_the_limits(fixture: &dyn Fixture) {
    let store = fixture.store();
    let longest_ascii = "r".repeat(256);
    let longest_multibyte = "é".repeat(128); // 2 bytes each: exactly 256 bytes
    assert_eq!(longest_multibyte.len(), 256);
    let keys = [
        key(&longest_ascii, &"n".repeat(256), 0),
        key("run", &longest_multibyte, 1),
        key("ラン-🚀", "nœud ✓ 日本語", 7),
        key("run", "max-iteration", u32::MAX),
        key("run", "max-iteration", u32::MAX - 1),
    ];
    for node in &keys {
        round_trip(&*store, node).await;
    }
    let runs = store.list_runs().await.expect("runs");
    for run_id in [longest_ascii.as_str(), "ラン-🚀", "run"] {
        assert!(
            runs.iter().any(|run| run.run_id == run_id),
            "run {run_id} listed"
        );
    }
    let iterations: Vec<u32> = store
        .list_nodes("run")
        .await
        .expect("nodes")
        .iter()
        .filter(|node| node.node_id == "max-iteration")
        .map(|node| node.iteration)
        .collect();
    assert_eq!(
        iterations,
        vec![u32::MAX - 1, u32::MAX],
        "iterations keep their order at the top"
    );
}

/// Ids are compared exactly: not case-insensitively, not as patterns, not trimmed or prefixed.
pub async fn ids_are_matched_exactly(fixture: &dyn Fixture) {
    let store = fixture.store();
    let lookalikes = [
        "a%",
        "a_",
        "ab",
        "Node",
        "node",
        "node ",
        "a'); DROP TABLE attempts; --",
        "a\\",
    ];
    for node_id in lookalikes {
        let (begun, _) = start(&*store, &key("run", node_id, 0), "owner", 1_000).await;
        assert_eq!(begun.attempt, 1, "{node_id:?} is a node of its own");
    }
    for node_id in lookalikes {
        let node = key("run", node_id, 0);
        let attempts = attempts_of(&*store, &node).await;
        assert_eq!(attempts.len(), 1, "{node_id:?} matches only itself");
        assert_eq!(attempts[0].node_id, node_id);
        let record = store.get_node(&node).await.expect("get").expect("node");
        assert_eq!(record.node_id, node_id);
    }
    assert_eq!(
        store.list_nodes("run").await.expect("nodes").len(),
        lookalikes.len()
    );
    for run_id in ["RUN", "ru%", "ru_", "run "] {
        assert!(
            store.list_nodes(run_id).await.expect("nodes").is_empty(),
            "{run_id:?}"
        );
        let filter = AttemptFilter::run(run_id);
        assert!(
            store.list_attempts(&filter).await.expect("list").is_empty(),
            "{run_id:?}"
        );
        assert!(
            store
                .read_events(&EventPage::new(run_id).limit(100))
                .await
                .expect("read")
                .is_empty(),
            "{run_id:?}"
        );
    }
}
