//! A run's timeline: one row per node (and iteration), each attempt a bar on a time axis shared
//! by every row, coloured by its state; heartbeats are ticks on the bar, the wait before a retry
//! a dashed gap, and a timeout or heartbeat timeout a mark where it fired.

use maud::{Markup, html};
use stint_domain::{AttemptRecord, AttemptState, ErrorCode, EventKind, EventRecord};

use crate::format::duration;
use crate::pages::attempt_href;

const WIDTH: f64 = 1000.0;
const LABEL: f64 = 170.0;
const ROW: f64 = 40.0;
/// Where a bar starts below its row's top (the space above holds the timeout's label).
const BAR_TOP: f64 = 13.0;
const BAR_HEIGHT: f64 = 22.0;
const AXIS: f64 = 24.0;

/// The shared axis: times from `start` to `end` drawn from `LABEL` to `WIDTH`.
struct Axis {
    start: u64,
    end: u64,
}

impl Axis {
    fn x(&self, at: u64) -> f64 {
        let span = self.end.saturating_sub(self.start).max(1) as f64;
        let offset = at.saturating_sub(self.start).min(self.end - self.start) as f64;
        LABEL + (WIDTH - LABEL - 10.0) * offset / span
    }
}

/// When an attempt's bar ends: its end, or now while it runs.
fn bar_end(attempt: &AttemptRecord, now: u64) -> u64 {
    attempt
        .finished_at_ms
        .unwrap_or(now.max(attempt.started_at_ms))
}

/// Where a timeout fired, and its name, for an attempt that ended by one.
fn deadline(attempt: &AttemptRecord, events: &[&EventRecord]) -> Option<(u64, &'static str)> {
    let error = attempt.error.as_ref()?;
    let name = match error.code {
        ErrorCode::TaskHeartbeatTimeout => "heartbeat timeout",
        ErrorCode::TaskTimeout => "timeout",
        _ => return None,
    };
    let fired = events
        .iter()
        .find(|e| matches!(e.event.kind, EventKind::TaskHeartbeatTimeout { .. }))
        .map(|e| e.event.timestamp_ms)
        .or(attempt.finished_at_ms)?;
    Some((fired, name))
}

/// The SVG timeline of `attempts` (ordered by node, iteration, attempt), with their `events`.
pub(crate) fn timeline(attempts: &[AttemptRecord], events: &[EventRecord], now: u64) -> Markup {
    if attempts.is_empty() {
        return html! { p.empty { "No attempts yet." } };
    }
    let start = attempts.iter().map(|a| a.started_at_ms).min().unwrap_or(0);
    let end = attempts
        .iter()
        .map(|a| bar_end(a, now))
        .max()
        .unwrap_or(start)
        .max(start + 1);
    let axis = Axis { start, end };
    let mut rows: Vec<Vec<&AttemptRecord>> = Vec::new();
    for attempt in attempts {
        match rows.last_mut() {
            Some(row)
                if row[0].node_id == attempt.node_id && row[0].iteration == attempt.iteration =>
            {
                row.push(attempt);
            }
            _ => rows.push(vec![attempt]),
        }
    }
    let height = AXIS + ROW * rows.len() as f64 + 8.0;
    html! {
        svg #timeline.timeline viewBox={ "0 0 " (WIDTH) " " (height) }
            role="img" aria-label="attempts on a shared time axis" {
            (ticks(&axis, height))
            @for (index, row) in rows.iter().enumerate() {
                (node_row(&axis, row, events, AXIS + ROW * index as f64, now))
            }
        }
    }
}

/// The axis labels and grid lines: five steps from the first start.
fn ticks(axis: &Axis, height: f64) -> Markup {
    let span = axis.end - axis.start;
    html! {
        @for step in 0..=4u64 {
            @let at = axis.start + span * step / 4;
            @let x = axis.x(at);
            line.grid x1=(x) x2=(x) y1=(AXIS - 6.0) y2=(height) {}
            @let anchor = if step == 4 { "end" } else if step == 0 { "start" } else { "middle" };
            text.axis x=(x) y="12" text-anchor=(anchor) { "+" (duration(at - axis.start)) }
        }
    }
}

/// One node's row: its label, then each attempt's bar and the gaps between them.
fn node_row(
    axis: &Axis,
    row: &[&AttemptRecord],
    events: &[EventRecord],
    top: f64,
    now: u64,
) -> Markup {
    let first = row[0];
    let label = if first.iteration == 0 {
        first.node_id.clone()
    } else {
        format!("{}#{}", first.node_id, first.iteration)
    };
    let mid = top + BAR_TOP + BAR_HEIGHT / 2.0;
    html! {
        g.node data-node=(first.node_id) data-iteration=(first.iteration) {
            text.label x="4" y=(mid + 4.0) { title { (label) } (shorten(&label)) }
            @for (index, attempt) in row.iter().enumerate() {
                @let own: Vec<&EventRecord> = events.iter().filter(|e| {
                    e.event.node_id == attempt.node_id && e.event.iteration == attempt.iteration
                }).collect();
                @if let Some(next) = row.get(index + 1) {
                    (backoff(axis, attempt, next, &own, mid, now))
                }
                (bar(axis, attempt, &own, top, now))
            }
        }
    }
}

/// A long label cut to fit the label column.
fn shorten(label: &str) -> String {
    if label.chars().count() <= 22 {
        label.to_owned()
    } else {
        let head: String = label.chars().take(21).collect();
        format!("{head}…")
    }
}

/// The dashed gap between an attempt and the next, labelled with the backoff the engine chose.
fn backoff(
    axis: &Axis,
    attempt: &AttemptRecord,
    next: &AttemptRecord,
    events: &[&EventRecord],
    mid: f64,
    now: u64,
) -> Markup {
    let delay = events.iter().find_map(|e| match e.event.kind {
        EventKind::NodeRetrying { delay_ms } if e.event.attempt == next.attempt => Some(delay_ms),
        _ => None,
    });
    let (from, to) = (bar_end(attempt, now), next.started_at_ms);
    let title = match delay {
        Some(delay) => format!(
            "backoff {} before attempt {}",
            duration(delay),
            next.attempt
        ),
        None => format!(
            "{} before attempt {}",
            duration(to.saturating_sub(from)),
            next.attempt
        ),
    };
    html! {
        line.backoff x1=(axis.x(from)) x2=(axis.x(to)) y1=(mid) y2=(mid) { title { (title) } }
    }
}

/// One attempt's bar, linked to its page, with its heartbeat ticks and the timeout that ended it.
fn bar(
    axis: &Axis,
    attempt: &AttemptRecord,
    events: &[&EventRecord],
    top: f64,
    now: u64,
) -> Markup {
    let (start, end) = (attempt.started_at_ms, bar_end(attempt, now));
    let x = axis.x(start);
    let width = (axis.x(end) - x).max(3.0);
    let state = attempt.state.as_str();
    let own: Vec<&EventRecord> = events
        .iter()
        .copied()
        .filter(|e| e.event.attempt == attempt.attempt)
        .collect();
    let beats: Vec<u64> = own
        .iter()
        .filter(|e| matches!(e.event.kind, EventKind::TaskHeartbeat { .. }))
        .map(|e| e.event.timestamp_ms)
        .collect();
    let mut title = format!(
        "attempt {}: {state}, {}",
        attempt.attempt,
        duration(end - start)
    );
    if let Some(error) = &attempt.error {
        title.push_str(&format!(" — {}: {}", error.code.as_str(), error.message));
    }
    let href = attempt_href(
        &attempt.run_id,
        &attempt.node_id,
        attempt.iteration,
        attempt.attempt,
    );
    html! {
        a.attempt href=(href) data-attempt=(attempt.attempt) data-state=(state) {
            title { (title) }
            rect class={ "bar s-" (state) } x=(x) y=(top + BAR_TOP) width=(width)
                height=(BAR_HEIGHT) rx="3" {}
            @if attempt.state == AttemptState::InProgress {
                rect.running x=(x + width - 3.0) y=(top + BAR_TOP) width="3" height=(BAR_HEIGHT) {}
            }
            @for beat in beats {
                @let bx = axis.x(beat);
                line.tick x1=(bx) x2=(bx) y1=(top + BAR_TOP + 3.0) y2=(top + BAR_TOP + BAR_HEIGHT - 3.0) {}
            }
            @if let Some((fired, name)) = deadline(attempt, &own) {
                @let dx = axis.x(fired);
                line.deadline x1=(dx) x2=(dx) y1=(top + BAR_TOP - 3.0) y2=(top + BAR_TOP + BAR_HEIGHT + 2.0) {}
                text.deadline-label x=(dx) y=(top + BAR_TOP - 4.0) text-anchor="end" { (name) " fired" }
            }
        }
    }
}
