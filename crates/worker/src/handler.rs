//! What a worker runs: the [`Handler`] port, and [`Handlers`], a handler that dispatches on the
//! spec's `kind` to registered closures.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use stint_domain::{BackoffPolicy, NodeKey, TaskDescriptor};
use stint_engine::{TaskContext, TaskFailure};
use stint_ports::ClaimedTask;

/// Turns a claimed task into what the engine runs.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The descriptor of `task` (its key is the task's node: run id, node id, iteration 0),
    /// built from `task.task.spec`; `Err(reason)` for a spec this handler cannot run: the task
    /// then ends failed, never retried.
    fn descriptor(&self, task: &ClaimedTask) -> Result<TaskDescriptor, String>;

    /// Runs one attempt of `task` (the engine's compute).
    async fn run(&self, task: ClaimedTask, ctx: TaskContext) -> Result<Value, TaskFailure>;
}

type BoxedRun = Pin<Box<dyn Future<Output = Result<Value, TaskFailure>> + Send>>;
type Registered = Arc<dyn Fn(Value, TaskContext) -> BoxedRun + Send + Sync>;

/// A [`Handler`] for specs shaped `{"kind": K, "args": A, "options": O}`: runs the closure
/// registered for `K` with `A` (`null` when absent).
///
/// `O` may set `retries`, `backoff_ms` (the first delay; it doubles), `timeout_ms`,
/// `heartbeat_timeout_ms` and `lease_ms`; anything else in it is refused, so a misspelt option
/// fails the task instead of being ignored.
#[derive(Default, Clone)]
pub struct Handlers {
    kinds: HashMap<String, Registered>,
}

impl fmt::Debug for Handlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kinds: Vec<&String> = self.kinds.keys().collect();
        kinds.sort();
        f.debug_struct("Handlers").field("kinds", &kinds).finish()
    }
}

impl Handlers {
    /// No kinds registered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs tasks of `kind` with `run(args, ctx)` (replacing any closure registered for it).
    #[must_use]
    pub fn register<F, Fut>(mut self, kind: impl Into<String>, run: F) -> Self
    where
        F: Fn(Value, TaskContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, TaskFailure>> + Send + 'static,
    {
        let boxed: Registered = Arc::new(move |args, ctx| Box::pin(run(args, ctx)));
        self.kinds.insert(kind.into(), boxed);
        self
    }

    fn registered(&self, spec: &Value) -> Result<&Registered, String> {
        let kind = spec
            .get("kind")
            .and_then(Value::as_str)
            .ok_or("the spec has no \"kind\" string")?;
        self.kinds
            .get(kind)
            .ok_or_else(|| format!("no handler for kind \"{kind}\""))
    }
}

#[async_trait]
impl Handler for Handlers {
    fn descriptor(&self, task: &ClaimedTask) -> Result<TaskDescriptor, String> {
        let record = &task.task;
        self.registered(&record.spec)?;
        let key = NodeKey::new(record.run_id.clone(), record.node_id.clone(), 0)
            .map_err(|error| error.to_string())?;
        let mut descriptor = TaskDescriptor::new(key);
        match record.spec.get("options") {
            None | Some(Value::Null) => {}
            Some(Value::Object(options)) => {
                for (name, value) in options {
                    apply_option(&mut descriptor, name, value)?;
                }
            }
            Some(_) => return Err("\"options\" must be an object".to_owned()),
        }
        Ok(descriptor)
    }

    async fn run(&self, task: ClaimedTask, ctx: TaskContext) -> Result<Value, TaskFailure> {
        let spec = &task.task.spec;
        // The descriptor was built from this spec, so the kind is registered; a failure here
        // would still end the task rather than panic.
        let run = self
            .registered(spec)
            .map_err(TaskFailure::permanent)?
            .clone();
        let args = spec.get("args").cloned().unwrap_or(Value::Null);
        run(args, ctx).await
    }
}

/// Sets one of the options [`Handlers`] knows on `descriptor`.
fn apply_option(descriptor: &mut TaskDescriptor, name: &str, value: &Value) -> Result<(), String> {
    let number = value
        .as_u64()
        .ok_or_else(|| format!("option \"{name}\" must be a whole number of at least 0"))?;
    match name {
        "retries" => {
            descriptor.retry.retries = u32::try_from(number)
                .map_err(|_| format!("option \"retries\" is too large: {number}"))?;
        }
        "backoff_ms" => {
            descriptor.retry.backoff = BackoffPolicy {
                initial_ms: number,
                ..BackoffPolicy::default()
            };
        }
        "timeout_ms" => descriptor.timeout_ms = Some(number),
        "heartbeat_timeout_ms" => descriptor.heartbeat_timeout_ms = Some(number),
        "lease_ms" => descriptor.lease_ms = number,
        other => return Err(format!("unknown option \"{other}\"")),
    }
    Ok(())
}
