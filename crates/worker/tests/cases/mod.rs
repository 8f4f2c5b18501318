//! The worker's cases, each an `async fn(Kind)` run once per store by `stores.rs` (memory,
//! SQLite) and `postgres.rs`.

pub(crate) mod fencing;
pub(crate) mod running;
pub(crate) mod stopping;
pub(crate) mod wakeups;

/// Calls `$each! { module::case, ... }` with every case.
#[macro_export]
macro_rules! every_case {
    ($each:ident) => {
        $each! {
            running::every_task_runs_once_with_concurrency_4,
            running::one_slot_takes_tasks_by_priority,
            running::a_failing_task_is_retried_through_the_queue_then_fails,
            running::a_retried_task_gets_its_retries_again,
            running::unknown_kinds_and_panics_fail_their_task_and_the_worker_goes_on,
            running::exit_when_empty_waits_for_scheduled_tasks_only,
            running::an_idle_worker_claims_when_woken,
            running::a_slot_is_claimed_for_while_its_task_settles,
            running::a_claim_begins_its_tasks_attempts_where_the_store_can,
            stopping::a_killed_workers_tasks_are_swept_back_and_finished,
            stopping::two_workers_share_200_tasks_each_run_once,
            stopping::a_task_whose_node_is_busy_goes_back_until_recovery_frees_it,
            stopping::a_task_whose_node_already_finished_is_not_run_again,
            stopping::a_cancel_request_ends_a_running_task_cancelled,
            stopping::a_drain_gives_back_a_long_task_after_the_drain_timeout,
            stopping::a_drain_lets_short_tasks_finish_and_claims_no_more,
            stopping::an_abort_gives_back_running_tasks_at_once,
            stopping::a_task_whose_attempt_could_not_begin_goes_back_and_runs,
            fencing::a_worker_that_cannot_renew_fences_itself_and_writes_nothing,
            fencing::a_task_whose_claim_was_lost_is_dropped_then_run_again,
            fencing::a_task_ends_with_its_attempt_in_one_write,
            wakeups::a_task_submitted_elsewhere_wakes_an_idle_worker,
        }
    };
}
