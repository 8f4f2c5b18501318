//! Wake-ups by LISTEN/NOTIFY: [`PostgresWakeups`], a listener that wakes a worker when a task of
//! its queues became ready, on any machine.
//!
//! - The writes that make a task ready now (`enqueue`, `retry`, a `complete` that puts a task
//!   back) notify the store's channel with the queue's name, inside their transaction: one
//!   notification per queue per transaction, delivered on commit. Notifications are hints: a
//!   burst of them while the worker is busy counts as one wake-up (a [`Notify`] permit), so
//!   10,000 tasks enqueued cost at most a few claims, not 10,000.
//! - The listener holds a connection of its own (a pool of one beside the store's), and
//!   connects again after losing it, with a growing pause; every (re)connection is a wake-up,
//!   since notifications sent meanwhile were lost.
//! - A transaction-pooling proxy (PgBouncer in transaction mode) accepts LISTEN but never
//!   delivers: at start and every `probe_interval` the listener notifies itself through the
//!   store's pool and waits `probe_timeout` for its own notification. When it does not come back
//!   (or the listener is not connected), it says so once and wakes the worker every
//!   `fallback_poll` until it does: polling, as without a listener.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use stint_ports::Wakeups;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::PostgresStore;
use crate::notify;

/// How a [`PostgresWakeups`] checks that notifications arrive, and polls when they do not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeupOptions {
    /// How often the listener checks that its own notification comes back (and once at start).
    pub probe_interval: Duration,
    /// How long it waits for it.
    pub probe_timeout: Duration,
    /// How often it wakes the worker while notifications do not arrive.
    pub fallback_poll: Duration,
    /// Listens where nothing is ever notified: a stand-in for a proxy that drops notifications,
    /// for tests of the fallback.
    #[doc(hidden)]
    pub deaf: bool,
}

impl Default for WakeupOptions {
    fn default() -> Self {
        Self {
            probe_interval: Duration::from_secs(60),
            probe_timeout: Duration::from_secs(5),
            fallback_poll: Duration::from_secs(1),
            deaf: false,
        }
    }
}

/// The longest pause between two tries at connecting the listener.
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Numbers the listeners of this process, for their probes' payloads.
static LISTENERS: AtomicU64 = AtomicU64::new(0);

/// What the listener's tasks and [`Wakeups::next`] share.
#[derive(Debug)]
struct Shared {
    /// The worker's queues.
    queues: Vec<String>,
    wake: Notify,
    /// Whether the listener is connected and listening.
    connected: AtomicBool,
    /// Whether its last probe did not come back.
    deaf: AtomicBool,
    /// How many times it connected (the first time included).
    connections: AtomicU64,
    /// This listener's probe payload prefix, and the last probe number that came back.
    probe_prefix: String,
    probe_seen: AtomicU64,
    probe_arrived: Notify,
    fallback_poll: Duration,
    /// When the next fallback wake-up is due, while polling.
    fallback_at: Mutex<Option<Instant>>,
}

impl Shared {
    fn wake(&self) {
        self.wake.notify_one();
    }

    fn polling(&self) -> bool {
        !self.connected.load(Ordering::Acquire) || self.deaf.load(Ordering::Acquire)
    }

    /// A notification on the tasks channel: wakes the worker when it names one of its queues
    /// (or no queue).
    fn task_ready(&self, queue: &str) {
        if queue.is_empty() || self.queues.iter().any(|mine| mine == queue) {
            self.wake();
        }
    }

    /// A notification on the probe channel: this listener's probe `n`, or another's.
    fn probe_back(&self, payload: &str) {
        let n = payload
            .strip_prefix(&self.probe_prefix)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            self.probe_seen.fetch_max(n, Ordering::AcqRel);
            self.probe_arrived.notify_waiters();
        }
    }
}

/// Wakes a worker when a task of its queues became ready (see the module documentation).
/// Dropping it stops the listener.
#[derive(Debug)]
pub struct PostgresWakeups {
    shared: Arc<Shared>,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for PostgresWakeups {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PostgresWakeups {
    /// Whether notifications are not arriving now (the last probe did not come back, or the
    /// listener is not connected), and the worker is woken every `fallback_poll` instead.
    pub fn polling(&self) -> bool {
        self.shared.polling()
    }

    /// How many times the listener connected, the first time included.
    pub fn connections(&self) -> u64 {
        self.shared.connections.load(Ordering::Acquire)
    }
}

#[async_trait]
impl Wakeups for PostgresWakeups {
    async fn next(&self) {
        let shared = &self.shared;
        if !shared.polling() {
            shared.wake.notified().await;
            return;
        }
        // The deadline outlives a dropped call: a worker woken by something else more often
        // than `fallback_poll` (its claim renewals) still gets its fallback wake-ups.
        let at = *shared
            .fallback_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| Instant::now() + shared.fallback_poll);
        tokio::select! {
            () = shared.wake.notified() => {}
            () = tokio::time::sleep_until(at) => {}
        }
        *shared
            .fallback_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl PostgresStore {
    /// A listener waking a worker of `queues` whenever a task of one of them became ready on
    /// this store (from any process), with the default [`WakeupOptions`]. Must be called
    /// inside a tokio runtime; it connects in the background (nothing fails here).
    pub fn wakeups(&self, queues: &[String]) -> PostgresWakeups {
        self.wakeups_with(queues, WakeupOptions::default())
    }

    /// [`PostgresStore::wakeups`] with `options`.
    pub fn wakeups_with(&self, queues: &[String], options: WakeupOptions) -> PostgresWakeups {
        let number = LISTENERS.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            queues: queues.to_vec(),
            wake: Notify::new(),
            connected: AtomicBool::new(false),
            deaf: AtomicBool::new(false),
            connections: AtomicU64::new(0),
            probe_prefix: format!("{}.{number}.", std::process::id()),
            probe_seen: AtomicU64::new(0),
            probe_arrived: Notify::new(),
            fallback_poll: options.fallback_poll,
            fallback_at: Mutex::new(None),
        });
        // A pool of one, never reaped, for the listener alone: the store's pool stays whole.
        let listener_pool = PgPoolOptions::new()
            .max_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .connect_lazy_with((*self.pool.connect_options()).clone());
        let channel = self.channel.to_string();
        let probe_channel = notify::probe_channel(&channel);
        let listened = if options.deaf {
            vec![format!("{channel}_deaf"), format!("{probe_channel}_deaf")]
        } else {
            vec![channel.clone(), probe_channel.clone()]
        };
        let listen = tokio::spawn(listen(
            listener_pool,
            listened,
            channel,
            probe_channel.clone(),
            shared.clone(),
        ));
        let probe = tokio::spawn(probe(
            self.pool.clone(),
            probe_channel,
            shared.clone(),
            options,
        ));
        PostgresWakeups {
            shared,
            tasks: [listen, probe],
        }
    }
}

/// Connects and listens on `channels`.
async fn connect(pool: &PgPool, channels: &[String]) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.ignore_pool_close_event(true);
    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
    listener.listen_all(channels).await?;
    Ok(listener)
}

/// The listener's loop: connects, passes notifications on, and connects again when the
/// connection is lost.
async fn listen(
    pool: PgPool,
    listened: Vec<String>,
    channel: String,
    probe_channel: String,
    shared: Arc<Shared>,
) {
    let mut pause = Duration::from_millis(100);
    let mut said = false;
    loop {
        match connect(&pool, &listened).await {
            Ok(mut listener) => {
                pause = Duration::from_millis(100);
                said = false;
                connected(&shared, true);
                loop {
                    match listener.try_recv().await {
                        Ok(Some(note)) if note.channel() == channel => {
                            shared.task_ready(note.payload());
                        }
                        Ok(Some(note)) if note.channel() == probe_channel => {
                            shared.probe_back(note.payload());
                        }
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            // Lost, and already connected again: what came meanwhile is lost.
                            tracing::info!("the LISTEN connection was lost; listening again");
                            shared.connections.fetch_add(1, Ordering::AcqRel);
                            shared.wake();
                        }
                        Err(error) => {
                            tracing::warn!(%error, "the LISTEN connection failed; polling until it is back");
                            break;
                        }
                    }
                }
                connected(&shared, false);
            }
            Err(error) if !said => {
                said = true;
                tracing::warn!(%error, "cannot LISTEN for new tasks; polling until it can");
            }
            Err(error) => tracing::debug!(%error, "cannot LISTEN for new tasks yet"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Records a (dis)connection; both are wake-ups (notifications may have been missed, or the
/// worker should start polling).
fn connected(shared: &Shared, now: bool) {
    if now {
        shared.connections.fetch_add(1, Ordering::AcqRel);
    }
    shared.connected.store(now, Ordering::Release);
    shared.wake();
}

/// The probe's loop: notifies the listener through the store's pool at start and every
/// `probe_interval`, and switches to polling while its own notification does not come back.
async fn probe(pool: PgPool, probe_channel: String, shared: Arc<Shared>, options: WakeupOptions) {
    let mut n = 0_u64;
    loop {
        while !shared.connected.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        n += 1;
        let arrived = shared.probe_arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let sent = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(&probe_channel)
            .bind(format!("{}{n}", shared.probe_prefix))
            .execute(&pool)
            .await;
        if let Err(error) = sent {
            // The database is out of reach: the listener's own loop notices.
            tracing::debug!(%error, "the NOTIFY probe could not be sent");
        } else {
            let waited = tokio::time::timeout(options.probe_timeout, async {
                while shared.probe_seen.load(Ordering::Acquire) < n {
                    arrived.as_mut().await;
                    arrived.set(shared.probe_arrived.notified());
                    arrived.as_mut().enable();
                }
            })
            .await;
            judge(&shared, waited.is_ok(), &options);
        }
        tokio::time::sleep(options.probe_interval).await;
    }
}

/// Records whether the probe came back, saying so when that changed.
fn judge(shared: &Shared, came_back: bool, options: &WakeupOptions) {
    let was_deaf = shared.deaf.swap(!came_back, Ordering::AcqRel);
    if !came_back && !was_deaf {
        tracing::warn!(
            "a NOTIFY sent by this worker did not come back within {} ms (a transaction-pooling \
             proxy between it and PostgreSQL?): waking every {} ms instead",
            options.probe_timeout.as_millis(),
            options.fallback_poll.as_millis()
        );
        shared.wake();
    } else if came_back && was_deaf {
        tracing::info!("notifications arrive again: waking on NOTIFY");
    }
}
