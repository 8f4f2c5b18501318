//! The cases of the conformance suite, one async function each, grouped by what they exercise.
//!
//! Every case takes a fresh fixture, uses fixed times (plain millisecond numbers, never the
//! clock) and asserts what a user of the store would notice.

mod ending;
mod events;
mod limits;
mod listing;
mod numbering;
mod process;
mod recovery;

pub use ending::{
    fail_and_cancel_record_error_and_retryable, finish_writes_output_node_and_events,
    terminal_states_are_absorbing, wrong_owner_writes_are_conflicts,
};
pub use events::{
    events_are_ordered_and_paged, heartbeat_appends_event_and_updates_times,
    heartbeat_time_never_goes_back,
};
pub use limits::{ids_are_matched_exactly, keys_at_the_limits};
pub use listing::{attempts_are_filtered_and_ordered, runs_and_nodes_are_listed};
pub use numbering::{
    begin_refused_while_attempt_in_progress, checkpoint_is_newest_recorded_payload,
    failed_before_counts_earlier_failures, numbering_starts_at_one_without_gaps,
    racing_begins_get_distinct_numbers,
};
pub use process::{
    expired_attempts_are_what_recovery_marks, process_place_is_recorded_and_owner_checked,
};
pub use recovery::{
    recovered_node_resumes_from_its_checkpoint, recovery_and_zombie_finish_race_one_wins,
    recovery_marks_each_expired_attempt_once,
};
