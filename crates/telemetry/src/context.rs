//! W3C trace context: read from stint's environment, handed to commands, stored with a task.

use std::collections::HashMap;

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use serde_json::Value;

/// The variable a parent's context arrives in and a command's is handed in.
pub const TRACEPARENT: &str = "TRACEPARENT";
/// Its vendor-specific companion.
pub const TRACESTATE: &str = "TRACESTATE";

/// A W3C trace context as its two headers (`traceparent`, and `tracestate` when not empty).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceParent {
    /// `00-<trace id>-<span id>-<flags>`.
    pub traceparent: String,
    /// The vendor entries, when there are any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceParent {
    /// The context in `TRACEPARENT` and `TRACESTATE`, when the first holds a valid one.
    pub fn from_env() -> Option<Self> {
        let traceparent = std::env::var(TRACEPARENT).ok()?;
        let tracestate = std::env::var(TRACESTATE).ok().filter(|s| !s.is_empty());
        let parent = Self {
            traceparent,
            tracestate,
        };
        parent.context().is_some().then_some(parent)
    }

    /// The context stored in a task's spec by `stint submit` (its `trace_context` member).
    pub fn from_spec(spec: &Value) -> Option<Self> {
        let parent: Self = serde_json::from_value(spec.get("trace_context")?.clone()).ok()?;
        parent.context().is_some().then_some(parent)
    }

    /// The headers of `span`'s context.
    pub fn of(span: &SpanContext) -> Option<Self> {
        if !span.is_valid() {
            return None;
        }
        let mut headers = HashMap::new();
        let cx = Context::new().with_remote_span_context(span.clone());
        TraceContextPropagator::new().inject_context(&cx, &mut headers);
        Some(Self {
            traceparent: headers.remove("traceparent")?,
            tracestate: headers.remove("tracestate").filter(|s| !s.is_empty()),
        })
    }

    /// The remote parent context these headers carry, when they are valid.
    pub fn context(&self) -> Option<Context> {
        let mut headers = HashMap::from([("traceparent".to_owned(), self.traceparent.clone())]);
        if let Some(state) = &self.tracestate {
            headers.insert("tracestate".to_owned(), state.clone());
        }
        let cx = TraceContextPropagator::new().extract(&headers);
        cx.span().span_context().is_valid().then_some(cx)
    }

    /// The variables a command is given: `TRACEPARENT`, and `TRACESTATE` (empty when there is
    /// none, so that an outer one is not inherited beside a new parent).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (TRACEPARENT.to_owned(), self.traceparent.clone()),
            (
                TRACESTATE.to_owned(),
                self.tracestate.clone().unwrap_or_default(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_round_trips_through_a_spec() {
        let parent = TraceParent {
            traceparent: PARENT.to_owned(),
            tracestate: Some("vendor=x".to_owned()),
        };
        let cx = parent.context().expect("valid");
        let span = cx.span().span_context().clone();
        assert_eq!(
            span.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(TraceParent::of(&span), Some(parent.clone()));
        let spec = json!({ "command": ["true"], "trace_context": parent });
        assert_eq!(TraceParent::from_spec(&spec), Some(parent));
    }

    #[test]
    fn a_malformed_traceparent_is_no_parent() {
        for bad in [
            "",
            "00-zz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let parent = TraceParent {
                traceparent: bad.to_owned(),
                tracestate: None,
            };
            assert!(parent.context().is_none(), "{bad}");
        }
        assert_eq!(
            TraceParent::from_spec(&json!({ "command": ["true"] })),
            None
        );
    }
}
