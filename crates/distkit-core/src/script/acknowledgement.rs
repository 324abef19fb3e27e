//! Replica acknowledgement shared by concurrent writes: one `WAIT` for many.
//!
//! `WAIT` blocks the connection it runs on until the replicas answer, so one `WAIT` per
//! write serialises every acknowledged write of a client behind a replica round trip. But a
//! `WAIT` covers every write sent before it on its connection, so writes that complete while
//! another `WAIT` is in flight can share the next one: [`AcknowledgementGroup`] does that.
//!
//! - When no `WAIT` of the group is in flight, a write is sent together with its own `WAIT`
//!   (one round trip, as [`LuaScript::run_acknowledged`]).
//! - Otherwise the write is sent alone; once its reply is in, it joins the group's next batch.
//!   A background task sends one `WAIT` per batch, after the replies of all its members, so
//!   the `WAIT` follows every one of their writes on the connection; each member gets the
//!   count of that `WAIT`.
//!
//! A member whose client reconnected between its write and the batch's reply counts no
//! acknowledgement ([`ReconnectWatch`]): the batch `WAIT` may then have run on a connection
//! that never carried its write.
//!
//! The batch task is spawned on the library's background runtime (never run inside a
//! caller's future, never on a caller's runtime), so a caller that gives up waiting, or whose
//! runtime ends, never strands the others. Should the task end anyway (its future dropped),
//! a drop guard marks it stopped and wakes every member of its batch, which then counts no
//! acknowledgement: no later write waits for a task that is gone.

use std::sync::{Arc, Mutex, PoisonError};

use fred::clients::Client;
use fred::types::Value;
use tokio::sync::watch;

use super::{CallPolicy, LuaScript, ReconnectWatch, wait_for_replicas};
use crate::ReplicaAcks;

/// Coalesces the `WAIT`s of the writes of one primitive (one slot, one replica setting).
///
/// Share one group among the writes whose keys live in the same slot.
#[derive(Debug, Default)]
pub struct AcknowledgementGroup {
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    /// `WAIT`s sent together with their write, not yet answered.
    paired_in_flight: usize,
    /// Whether the batch task is running.
    batch_task_running: bool,
    /// The members of the next batch `WAIT`: each holds a receiver of this sender.
    next_batch: Option<watch::Sender<Option<usize>>>,
}

impl AcknowledgementGroup {
    /// An empty group.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GroupState> {
        // The state is a few counters, consistent after every statement: a panic elsewhere
        // cannot leave it half-updated.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Decrements the paired count when the paired call ends, even if it is cancelled.
struct PairedCall<'a>(&'a AcknowledgementGroup);

impl Drop for PairedCall<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.paired_in_flight = state.paired_in_flight.saturating_sub(1);
    }
}

impl LuaScript {
    /// [`run_acknowledged`](Self::run_acknowledged), sharing `WAIT`s with the other writes
    /// of `group` that are in flight at the same time (see the module docs).
    ///
    /// # Errors
    ///
    /// As [`run_acknowledged`](Self::run_acknowledged).
    ///
    /// # Cancel safety
    ///
    /// As [`run`](Self::run) for the script: once polled, it may run whatever happens to the
    /// future. Dropped while paired with its own `WAIT`, a drop guard frees the pairing, so
    /// later writes are not held back. Dropped while waiting for a batch `WAIT`, it leaves
    /// the batch (its receiver goes away); the batch task, on the library's background
    /// runtime, still sends that `WAIT` for the other members.
    pub async fn run_acknowledged_in(
        &self,
        group: &Arc<AcknowledgementGroup>,
        client: &Client,
        keys: &[&str],
        args: Vec<Value>,
        policy: CallPolicy,
        acks: ReplicaAcks,
    ) -> Result<(Value, usize), fred::error::Error> {
        let pair = {
            let mut state = group.state();
            let idle = state.paired_in_flight == 0 && !state.batch_task_running;
            if idle {
                state.paired_in_flight = state.paired_in_flight.saturating_add(1);
            }
            idle
        };
        if pair {
            let _paired = PairedCall(group);
            return self
                .run_acknowledged(client, keys, args, policy, acks)
                .await;
        }
        let reconnects = ReconnectWatch::start(client);
        let reply = self.run(client, keys, args, policy).await?;
        let route = keys.first().map(|key| (*key).to_owned());
        let acknowledged = join_next_batch(group, client, route, acks).await;
        Ok((reply, reconnects.unless_reconnected(acknowledged)))
    }
}

/// Joins the next batch (starting the batch task if it is not running) and waits for its
/// count; 0 when the batch task ended without one.
async fn join_next_batch(
    group: &Arc<AcknowledgementGroup>,
    client: &Client,
    route: Option<String>,
    acks: ReplicaAcks,
) -> usize {
    let joined = {
        let mut state = group.state();
        let receiver = state
            .next_batch
            .get_or_insert_with(|| watch::channel(None).0)
            .subscribe();
        let running = state.batch_task_running
            || crate::task::spawn_background(run_batches(
                Arc::clone(group),
                client.clone(),
                route.clone(),
                acks,
            ))
            .is_some();
        state.batch_task_running = running;
        running.then_some(receiver)
    };
    let Some(mut receiver) = joined else {
        // Outside a runtime (never for a fred call): wait alone.
        let keys: Vec<&str> = route.as_deref().into_iter().collect();
        return wait_for_replicas(client, &keys, acks).await;
    };
    match receiver.wait_for(Option::is_some).await {
        Ok(count) => count.unwrap_or(0),
        Err(_closed) => 0,
    }
}

/// Marks the batch task stopped if it ends without doing so itself (its future dropped
/// mid-`WAIT`): the next write starts a new task, and the members of the next batch wake
/// (their sender drops) and count no acknowledgement.
struct BatchTaskGuard {
    group: Arc<AcknowledgementGroup>,
    armed: bool,
}

impl Drop for BatchTaskGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let abandoned = {
            let mut state = self.group.state();
            state.batch_task_running = false;
            state.next_batch.take()
        };
        drop(abandoned);
    }
}

/// The batch task: one `WAIT` per batch until no write is waiting.
async fn run_batches(
    group: Arc<AcknowledgementGroup>,
    client: Client,
    route: Option<String>,
    acks: ReplicaAcks,
) {
    let mut guard = BatchTaskGuard {
        group: Arc::clone(&group),
        armed: true,
    };
    let keys: Vec<&str> = route.as_deref().into_iter().collect();
    loop {
        let Some(batch) = ({
            let mut state = group.state();
            let batch = state.next_batch.take();
            if batch.is_none() {
                state.batch_task_running = false;
                // Stopped under the lock: a write that comes next starts a new task.
                guard.armed = false;
            }
            batch
        }) else {
            return;
        };
        // Sent after every member's reply arrived (they joined before the batch was taken).
        let count = wait_for_replicas(&client, &keys, acks).await;
        batch.send_replace(Some(count));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_batch_task_that_is_dropped_mid_wait_frees_the_group_and_wakes_its_members() {
        let group = Arc::new(AcknowledgementGroup::new());
        let mut member = {
            let mut state = group.state();
            state.batch_task_running = true;
            let sender = watch::channel(None).0;
            let member = sender.subscribe();
            state.next_batch = Some(sender);
            member
        };
        let guard = BatchTaskGuard {
            group: Arc::clone(&group),
            armed: true,
        };
        // What a runtime shutting down does to a task: drops it where it stands.
        drop(guard);
        assert!(
            !group.state().batch_task_running,
            "the next write would wait forever"
        );
        let woken = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            member.wait_for(Option::is_some),
        )
        .await
        .unwrap();
        assert!(woken.is_err(), "the member must wake with no count");
    }

    #[test]
    fn a_new_group_has_nothing_in_flight() {
        let group = AcknowledgementGroup::new();
        let state = group.state();
        assert_eq!(state.paired_in_flight, 0);
        assert!(!state.batch_task_running);
        assert!(state.next_batch.is_none());
    }
}
