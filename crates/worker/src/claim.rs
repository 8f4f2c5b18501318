//! A claim that begins the attempts of the tasks it takes in its own transaction (where the
//! store can: [`TaskQueue::claim_and_begin`](stint_ports::TaskQueue::claim_and_begin)): a task's
//! claim and its attempt's begin then share one commit, and a slot waits for one round of the
//! store per task instead of two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use stint_domain::TaskId;
use stint_engine::PreparedAttempt;
use stint_ports::{BeginAttempt, BeginFor, BegunAttempt, Claim, ClaimedTask, StoreError};

use crate::task::runnable_descriptor;
use crate::worker::Inner;

/// The attempt a claim began for its task: what the engine needs to run it, and the begin's
/// answer (a conflict when the node's last attempt was still in progress: nothing began).
#[derive(Debug)]
pub(crate) struct ClaimBegun {
    pub(crate) prepared: PreparedAttempt,
    pub(crate) answer: Result<BegunAttempt, StoreError>,
}

/// A task a claim took, with the attempt it began for it, if any.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) task: ClaimedTask,
    pub(crate) begun: Option<ClaimBegun>,
}

impl Claimed {
    pub(crate) fn id(&self) -> TaskId {
        self.task.task.id
    }

    /// Whether its claim began its attempt (a begin the claim saw refused began none).
    pub(crate) fn began(&self) -> bool {
        matches!(&self.begun, Some(begun) if begun.answer.is_ok())
    }
}

/// Makes the begins of a claim's tasks, and keeps each one's prepared attempt.
struct Preparer {
    inner: Arc<Inner>,
    prepared: Mutex<HashMap<TaskId, PreparedAttempt>>,
}

impl BeginFor for Preparer {
    fn begin_for(&self, task: &ClaimedTask) -> Option<BeginAttempt> {
        let desc = runnable_descriptor(&self.inner, task)?;
        let (prepared, begin) = self.inner.engine.prepare_attempt(desc).ok()?;
        // A claim tried again after a transient failure makes its begins again: the last is
        // the one its commit wrote.
        self.prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(task.task.id, prepared);
        Some(begin)
    }
}

/// Claims by `claim`, beginning the attempt of every task that can run at once.
pub(crate) async fn claim(inner: Arc<Inner>, claim: Claim) -> Result<Vec<Claimed>, StoreError> {
    let preparer = Arc::new(Preparer {
        inner: inner.clone(),
        prepared: Mutex::new(HashMap::new()),
    });
    let taken = inner.queue.claim_and_begin(claim, preparer.clone()).await?;
    let mut prepared = std::mem::take(
        &mut *preparer
            .prepared
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    Ok(taken
        .into_iter()
        .map(|taken| {
            let id = taken.claimed.task.id;
            let begun = taken.begun.and_then(|answer| {
                let prepared = prepared.remove(&id);
                if prepared.is_none() {
                    // Not begun by this claim's begin function: never; its attempt would be
                    // left to recovery.
                    tracing::error!(task = %id, "the store began an attempt nobody prepared");
                }
                prepared.map(|prepared| ClaimBegun { prepared, answer })
            });
            Claimed {
                task: taken.claimed,
                begun,
            }
        })
        .collect())
}
