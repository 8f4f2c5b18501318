//! The HTML pages. Every value from the database goes through maud's `(...)` splices, which
//! escape it: ids, payloads, error messages and outputs are shown as text, never as markup.

mod attempt;
mod run;
mod runs;

use maud::{DOCTYPE, Markup, html};
use stint_domain::AttemptState;

pub(crate) use attempt::attempt_page;
pub(crate) use run::run_page;
pub(crate) use runs::runs_page;

use crate::format::segment;

/// What a live page follows: the event log of one run, from a sequence number on.
#[derive(Debug)]
pub(crate) struct Live<'a> {
    pub(crate) run_id: &'a str,
    pub(crate) after_seq: u64,
}

/// A whole page: head, navigation, and `content` in `#content` (the part a live page swaps).
pub(crate) fn layout(title: &str, content: Markup, live: Option<&Live<'_>>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · stint" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body data-live-run=[live.map(|l| l.run_id)]
                data-live-after=[live.map(|l| l.after_seq)] {
                header.top {
                    a.brand href="/" { "stint" }
                    nav { a href="/" { "Runs" } a href="/queues" { "Queues" } }
                    @if live.is_some() { span #live-status.live { "live" } }
                }
                main #content { (content) }
            }
        }
    }
}

/// A state as a coloured badge.
pub(crate) fn badge(state: &str) -> Markup {
    html! { span class={ "badge s-" (state) } { (state) } }
}

/// The link to a run's page.
pub(crate) fn run_href(run_id: &str) -> String {
    format!("/runs/{}", segment(run_id))
}

/// The link to an attempt's page.
pub(crate) fn attempt_href(run_id: &str, node_id: &str, iteration: u32, attempt: u32) -> String {
    format!(
        "/runs/{}/nodes/{}/{iteration}/attempts/{attempt}",
        segment(run_id),
        segment(node_id)
    )
}

/// The states a run or an attempt can be in, for filters.
pub(crate) const STATES: [AttemptState; 4] = [
    AttemptState::InProgress,
    AttemptState::Finished,
    AttemptState::Failed,
    AttemptState::Cancelled,
];

/// A link to the JSON behind a page.
pub(crate) fn json_link(href: &str) -> Markup {
    html! { p.json { "JSON: " a href=(href) { (href) } } }
}
