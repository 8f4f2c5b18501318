//! The conformance suite every storage adapter must pass.
//!
//! An adapter's test file declares a fixture factory and calls [`conformance_suite!`] once; the
//! macro expands to one `#[tokio::test]` per case, each on a fresh, isolated store.
#![deny(missing_docs)]

use std::sync::Arc;

use async_trait::async_trait;
use stint_ports::{QueueStore, Store};

pub mod cases;
mod queue_support;
mod support;

/// A fresh, isolated store for one test (a temp file, a fresh schema...).
#[async_trait]
pub trait Fixture: Send + Sync {
    /// The store under test.
    fn store(&self) -> Arc<dyn Store>;

    /// A second, independent handle (its own pool or connection) on the same database, for
    /// cases where two processes race.
    async fn second_store(&self) -> Arc<dyn Store>;

    /// The store under test, as the queue's ports see it.
    fn queue(&self) -> Arc<dyn QueueStore>;

    /// A second, independent handle on the same queue, for racing cases.
    async fn second_queue(&self) -> Arc<dyn QueueStore>;

    /// Releases what the fixture made (drops the schema, deletes the file).
    async fn teardown(self: Box<Self>) {}
}

/// Where one test's store lives (a temp file, a fresh schema, memory), and how a second handle on
/// it is opened: with [`OnDatabase`], it makes the test's [`Fixture`].
#[async_trait]
pub trait Database: Send + Sync + 'static {
    /// The store this database is opened as.
    type Store: Store + QueueStore + Clone + 'static;

    /// A second, independent handle on the database `store` is on (its own pool, as a second
    /// process would open; for a store whose clones share its data, a clone).
    async fn second(&self, store: &Self::Store) -> Self::Store;

    /// Closes `store` and releases the database (drops the schema, deletes the file).
    async fn release(self, store: Self::Store)
    where
        Self: Sized,
    {
        drop(store);
    }
}

/// The [`Fixture`] of a store on a [`Database`]: the queue's handles are the store's.
#[derive(Debug)]
pub struct OnDatabase<D: Database> {
    /// The store under test.
    pub store: D::Store,
    /// Where it lives.
    pub database: D,
}

#[async_trait]
impl<D: Database> Fixture for OnDatabase<D> {
    fn store(&self) -> Arc<dyn Store> {
        Arc::new(self.store.clone())
    }

    async fn second_store(&self) -> Arc<dyn Store> {
        Arc::new(self.database.second(&self.store).await)
    }

    fn queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.store.clone())
    }

    async fn second_queue(&self) -> Arc<dyn QueueStore> {
        Arc::new(self.database.second(&self.store).await)
    }

    async fn teardown(self: Box<Self>) {
        let Self { store, database } = *self;
        database.release(store).await;
    }
}

/// Declares the conformance cases as tests, each on a fresh fixture. `$factory` is an `async fn()
/// -> Box<dyn Fixture>`.
///
/// `conformance_suite!(factory)` declares one `#[tokio::test]` per case. `conformance_suite!(list
/// factory)` declares instead `fn conformance_cases() -> Vec<(&'static str, fn())>`, for a
/// `harness = false` test binary that decides at run time whether its cases run (PostgreSQL's,
/// which reports them ignored when no server listens).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:path) => {
        $crate::conformance_suite!(@with tokio $factory);
    };
    (list $factory:path) => {
        $crate::conformance_suite!(@with list $factory);
    };
    (@with $mode:ident $factory:path) => {
        $crate::conformance_suite!(@cases $mode $factory;
            numbering_starts_at_one_without_gaps,
            begin_refused_while_attempt_in_progress,
            checkpoint_is_newest_recorded_payload,
            failed_before_counts_earlier_failures,
            racing_begins_get_distinct_numbers,
            wrong_owner_writes_are_conflicts,
            terminal_states_are_absorbing,
            finish_writes_output_node_and_events,
            fail_and_cancel_record_error_and_retryable,
            heartbeat_appends_event_and_updates_times,
            heartbeat_time_never_goes_back,
            events_are_ordered_and_paged,
            recovery_marks_each_expired_attempt_once,
            recovered_node_resumes_from_its_checkpoint,
            recovery_and_zombie_finish_race_one_wins,
            process_place_is_recorded_and_owner_checked,
            expired_attempts_are_what_recovery_marks,
            cancel_request_reaches_the_owner_at_its_next_renewal,
            runs_and_nodes_are_listed,
            runs_are_paged_and_filtered,
            attempts_are_filtered_and_ordered,
            keys_at_the_limits,
            ids_are_matched_exactly,
            racing_claimers_take_each_task_once,
            claims_follow_priority_then_due_time_then_id,
            queue_limit_caps_running_tasks,
            unique_key_answers_the_live_holder,
            racing_enqueues_store_one_task_per_key,
            an_invalid_task_fails_the_whole_batch,
            a_batch_answers_each_task_its_own_id,
            complete_is_owner_checked,
            attempt_end_ends_its_claimed_task_in_one_write,
            a_claim_reads_its_nodes_attempts,
            a_claim_begins_only_what_it_may,
            retry_end_requeues_at_its_time,
            release_gives_the_task_back_at_once,
            sweep_takes_back_each_expired_lease_once,
            renew_extends_leases_and_reports_cancel_requests,
            cancel_ends_ready_and_flags_running_tasks,
            retry_requeues_failed_and_cancelled_tasks,
            prune_deletes_ended_tasks_in_batches,
            prune_takes_the_history_of_its_nodes,
            queue_stats_count_each_state,
        );
    };
    (@cases tokio $factory:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $factory().await;
                $crate::cases::$case(&*fixture).await;
                fixture.teardown().await;
            }
        )*
    };
    (@cases list $factory:path; $($case:ident),* $(,)?) => {
        fn conformance_cases() -> ::std::vec::Vec<(&'static str, fn())> {
            ::std::vec![
                $(
                    (stringify!($case), || {
                        $crate::run_case(async {
                            let fixture = $factory().await;
                            $crate::cases::$case(&*fixture).await;
                            fixture.teardown().await;
                        })
                    }),
                )*
            ]
        }
    };
}

/// Runs one case on a fresh two-worker runtime, as the `#[tokio::test]` of
/// [`conformance_suite!`] does.
#[doc(hidden)]
pub fn run_case(case: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(case);
}
