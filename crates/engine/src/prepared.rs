//! Attempts whose begin a store writes elsewhere: a worker's claim begins the attempts of the
//! tasks it takes in the claim's own transaction (one commit for both), and the engine runs each
//! from there.

use stint_domain::TaskDescriptor;
use stint_ports::{BeginAttempt, BegunAttempt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::context::ComputeOnce;
use crate::engine::{Engine, TaskEndFn, checked};
use crate::error::EngineError;
use crate::outcome::AttemptOutcome;
use crate::output::OutputValidator;

/// An attempt of a checked descriptor whose begin was handed to a store (see
/// [`Engine::prepare_attempt`]).
#[derive(Debug)]
pub struct PreparedAttempt {
    desc: TaskDescriptor,
    validator: OutputValidator,
    owner: String,
    started_at_ms: u64,
    /// Before the begin was made, so before any store read its clock for the lease.
    begun_at: Instant,
}

impl PreparedAttempt {
    /// The descriptor it runs.
    pub fn descriptor(&self) -> &TaskDescriptor {
        &self.desc
    }
}

impl Engine {
    /// Checks `desc` as [`Engine::run_attempt`] does and makes the begin of its next attempt,
    /// under a fresh owner token, for the caller to have a store write (as
    /// [`AttemptStore::begin_attempt`](stint_ports::AttemptStore::begin_attempt) would) and
    /// then to run with [`Engine::run_begun_task_attempt`]. A begin written and never run leaves
    /// its attempt in progress until recovery marks it abandoned, once its lease expires.
    pub fn prepare_attempt(
        &self,
        desc: TaskDescriptor,
    ) -> Result<(PreparedAttempt, BeginAttempt), EngineError> {
        let validator = checked(&desc)?;
        let (begin, begun_at) = self.begin_request(&desc);
        let prepared = PreparedAttempt {
            owner: begin.owner.clone(),
            started_at_ms: begin.started_at_ms,
            desc,
            validator,
            begun_at,
        };
        Ok((prepared, begin))
    }

    /// As [`Engine::run_task_attempt`], for the attempt whose begin `prepared` made and a store
    /// answered with `begun`.
    pub async fn run_begun_task_attempt<C: ComputeOnce>(
        &self,
        prepared: PreparedAttempt,
        begun: BegunAttempt,
        compute: C,
        cancel: &CancellationToken,
        task_end: TaskEndFn<'_>,
    ) -> Result<AttemptOutcome, EngineError> {
        let PreparedAttempt {
            desc,
            validator,
            owner,
            started_at_ms,
            begun_at,
        } = prepared;
        let running = self.started(&desc, owner, started_at_ms, begun_at, begun)?;
        let span = running.span();
        self.drive(&desc, &validator, running, compute, cancel, Some(task_end))
            .instrument(span)
            .await
    }
}
