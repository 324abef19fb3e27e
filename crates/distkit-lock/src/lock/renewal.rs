//! Background lease renewal: one scheduler task per client, shared by every guard on it, on
//! the library's background runtime (see `distkit_core::task`): a guard held from any
//! runtime is renewed while that runtime and the client's live, whichever runtime acquired
//! first.
//!
//! A guard queues its lease with the time its next renewal is due (a third of the ttl after
//! the last confirmed one), and withdraws it when released or dropped. The scheduler sleeps
//! until the earliest due time, then spawns one short renewal per due lease; a renewal
//! queues the lease again for its next turn.
//!
//! Acquiring and releasing a lock spawns no task and, in the common case, wakes no thread:
//! the scheduler is only woken when a new lease is due before the time it already sleeps
//! until (with no lease queued it sleeps a second at a time).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex as StdMutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use distkit_core::fred::clients::Client;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

use super::lease::LeaseShared;
use super::per_client::PerClient;

/// How long the scheduler sleeps when no lease is queued.
const IDLE_NAP: Duration = Duration::from_secs(1);

/// The place of a lease in the queue: its due time, made unique by a sequence number.
pub(crate) type QueueSlot = (Instant, u64);

/// The schedulers of the process.
static SCHEDULERS: PerClient<RenewalScheduler> = PerClient::new();

#[derive(Default)]
struct Queue {
    due: BTreeMap<QueueSlot, Weak<LeaseShared>>,
    sequence: u64,
    /// When the scheduler will look at the queue next, if it is asleep.
    sleeping_until: Option<Instant>,
    task: Option<JoinHandle<()>>,
}

/// The renewal scheduler of one client.
pub(crate) struct RenewalScheduler {
    queue: StdMutex<Queue>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for RenewalScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queued = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due
            .len();
        f.debug_struct("RenewalScheduler")
            .field("queued", &queued)
            .finish()
    }
}

impl RenewalScheduler {
    /// The scheduler of `client`, made on first use.
    pub(crate) fn of(client: &Client) -> Arc<Self> {
        SCHEDULERS.of(client, || Self {
            queue: StdMutex::new(Queue::default()),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Queues `lease` for renewal at `at`; returns its place, for [`withdraw`](Self::withdraw).
    ///
    /// Starts the scheduler task on the library's background runtime if it is not running
    /// (first use), so renewals never depend on the runtime of any caller.
    pub(crate) fn schedule(self: &Arc<Self>, lease: &Arc<LeaseShared>, at: Instant) -> QueueSlot {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        queue.sequence = queue.sequence.wrapping_add(1);
        let slot = (at, queue.sequence);
        queue.due.insert(slot, Arc::downgrade(lease));
        let running = queue.task.as_ref().is_some_and(|task| !task.is_finished());
        if !running {
            queue.sleeping_until = None;
            queue.task = distkit_core::task::spawn_background(run(
                Arc::downgrade(self),
                Arc::clone(&self.wake),
            ));
        } else if queue
            .sleeping_until
            .is_some_and(|sleeping_until| at < sleeping_until)
        {
            queue.sleeping_until = Some(at);
            self.wake.notify_one();
        }
        slot
    }

    /// Takes a lease out of the queue (released or dropped).
    pub(crate) fn withdraw(&self, slot: QueueSlot) {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due
            .remove(&slot);
    }

    /// Takes the leases due by `now`, and records until when the scheduler sleeps.
    fn take_due(&self, now: Instant) -> (Vec<Arc<LeaseShared>>, Instant) {
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due = Vec::new();
        while let Some(entry) = queue.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            if let Some(lease) = entry.remove().upgrade() {
                due.push(lease);
            }
        }
        let next = queue
            .due
            .first_key_value()
            .map_or(now.checked_add(IDLE_NAP).unwrap_or(now), |(slot, _)| slot.0);
        queue.sleeping_until = Some(next);
        (due, next)
    }
}

impl Drop for RenewalScheduler {
    fn drop(&mut self) {
        // Let the task see that its scheduler is gone.
        self.wake.notify_one();
    }
}

async fn run(scheduler: Weak<RenewalScheduler>, wake: Arc<Notify>) {
    loop {
        let next = {
            let Some(scheduler) = scheduler.upgrade() else {
                return;
            };
            let (due, next) = scheduler.take_due(Instant::now());
            for lease in due {
                // Under the scheduler's subscriber (the one of the caller that started it).
                drop(tokio::spawn(
                    super::lease::renew_once(lease, Arc::clone(&scheduler))
                        .with_current_subscriber(),
                ));
            }
            next
        };
        let _ = tokio::time::timeout_at(next.into(), wake.notified()).await;
    }
}
