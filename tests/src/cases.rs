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
mod queue_admin;
mod queue_claims;
mod queue_enqueue;
mod queue_lifecycle;
mod queue_prune;
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
pub use listing::{
    attempts_are_filtered_and_ordered, runs_and_nodes_are_listed, runs_are_paged_and_filtered,
};
pub use numbering::{
    begin_refused_while_attempt_in_progress, checkpoint_is_newest_recorded_payload,
    failed_before_counts_earlier_failures, numbering_starts_at_one_without_gaps,
    racing_begins_get_distinct_numbers,
};
pub use process::{
    cancel_request_reaches_the_owner_at_its_next_renewal, expired_attempts_are_what_recovery_marks,
    process_place_is_recorded_and_owner_checked,
};
pub use queue_admin::{
    cancel_ends_ready_and_flags_running_tasks, prune_deletes_ended_tasks_in_batches,
    queue_stats_count_each_state, retry_requeues_failed_and_cancelled_tasks,
};
pub use queue_claims::{
    claims_follow_priority_then_due_time_then_id, queue_limit_caps_running_tasks,
    racing_claimers_take_each_task_once,
};
pub use queue_enqueue::{
    a_batch_answers_each_task_its_own_id, an_invalid_task_fails_the_whole_batch,
    racing_enqueues_store_one_task_per_key, unique_key_answers_the_live_holder,
};
pub use queue_lifecycle::{
    a_claim_begins_only_what_it_may, a_claim_reads_its_nodes_attempts,
    attempt_end_ends_its_claimed_task_in_one_write, complete_is_owner_checked,
    release_gives_the_task_back_at_once, renew_extends_leases_and_reports_cancel_requests,
    retry_end_requeues_at_its_time, sweep_takes_back_each_expired_lease_once,
};
pub use queue_prune::prune_takes_the_history_of_its_nodes;
pub use recovery::{
    recovered_node_resumes_from_its_checkpoint, recovery_and_zombie_finish_race_one_wins,
    recovery_marks_each_expired_attempt_once,
};
