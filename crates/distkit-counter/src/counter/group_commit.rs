//! Group commit of a strict counter's concurrent increments.
//!
//! Up to [`MAX_IN_FLIGHT`] script calls of one counter object are on the wire at a time. A
//! call that finds a free slot is sent at once, alone, with `counter_inc` (a lone caller
//! waits for nothing). A call that finds every slot taken joins a queue; whenever a call in
//! flight ends, its slot takes everything queued (up to [`MAX_GROUP`] increments) and sends
//! it as one `counter_inc_group` script call from a task of its own. That script applies each
//! increment on its own, in order, so every caller gets its own new value or its own error,
//! exactly as if its increment had run alone; a group is sent once (never replayed), so a
//! connection lost with the group in flight reports `OutcomeUnknown` to each of its callers.
//!
//! Under load this turns many small script calls into few larger ones: Redis runs one script
//! per group instead of one per increment, and the client encodes and decodes one command.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use distkit_core::fred::error::{Error as FredError, ErrorKind};
use distkit_core::fred::types::Value;
use distkit_core::script::{Attempts, CallPolicy};
use distkit_core::{CounterError, DistkitError, DistkitRedisKey};
use tokio::sync::oneshot;

use super::remote::RemoteCounters;
use crate::scripts::{COUNTER_INC_GROUP, COUNTER_INC_GROUP_SHARDS};
use crate::wire::{decode_array, decode_i64, script_error};

/// How many script calls of one counter object may be in flight at a time. Two: while one
/// group runs on the server the next one gathers and is on its way, and groups stay large.
/// Measured with 64 tasks over 16 keys on one server (2 cores): the fewer calls in flight,
/// the larger the groups and the less CPU an increment costs (client CPU + Redis time per
/// increment: 1 → 2.7–3.1 µs, 2 → 2.9 µs, 4 → 3.3–3.4 µs, 8 → 4.0–4.3 µs); `strict.64`
/// in interleaved runs: 1 → 1.00–1.61× raw, 2 → 1.61–2.01×, 4 → 1.16–1.70×. One call in
/// flight leaves the connection idle while a group runs, and makes a second caller wait
/// for a whole round trip; two keep it busy.
pub(crate) const MAX_IN_FLIGHT: usize = 2;
/// The most increments one group carries.
pub(crate) const MAX_GROUP: usize = 1_000;

/// The answer a queued caller waits for.
type Reply = Result<i64, DistkitError>;

/// An increment waiting for a slot.
#[derive(Debug)]
struct Queued {
    key: DistkitRedisKey,
    delta: i64,
    reply: oneshot::Sender<Reply>,
}

#[derive(Debug, Default)]
struct State {
    in_flight: usize,
    queue: Vec<Queued>,
}

/// The slots and the queue of one counter object (shared by its clones).
#[derive(Debug, Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
}

/// How a caller takes part: alone in a slot of its own, or queued for the next group.
pub(crate) enum Entry<'a> {
    /// Send the increment now; the slot is handed on when the [`Slot`] drops.
    Alone(Slot<'a>),
    /// Wait for the group's answer.
    Queued(oneshot::Receiver<Reply>),
}

impl GroupCommit {
    fn state(&self) -> MutexGuard<'_, State> {
        // The state stays consistent across a panic elsewhere: every update is one step.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a free slot for `remote`'s increment, or queues it.
    pub(crate) fn enter<'a>(
        &self,
        remote: &'a RemoteCounters,
        key: &DistkitRedisKey,
        delta: i64,
    ) -> Entry<'a> {
        let mut state = self.state();
        if state.in_flight < MAX_IN_FLIGHT && state.queue.is_empty() {
            state.in_flight = state.in_flight.saturating_add(1);
            return Entry::Alone(Slot { remote });
        }
        let (reply, answer) = oneshot::channel();
        state.queue.push(Queued {
            key: key.clone(),
            delta,
            reply,
        });
        Entry::Queued(answer)
    }

    /// Called when a call in flight ended: the next group to send in its slot, if anything
    /// is queued, else the slot is freed.
    fn next_group(&self) -> Option<Vec<Queued>> {
        let mut state = self.state();
        // Callers that gave up before their group left are not sent.
        state.queue.retain(|queued| !queued.reply.is_closed());
        if state.queue.is_empty() {
            state.in_flight = state.in_flight.saturating_sub(1);
            return None;
        }
        let size = state.queue.len().min(MAX_GROUP);
        let rest = state.queue.split_off(size);
        Some(std::mem::replace(&mut state.queue, rest))
    }

    /// Puts a group that never left back at the head of the queue, in its order.
    fn requeue(&self, mut group: Vec<Queued>) {
        let mut state = self.state();
        group.append(&mut state.queue);
        state.queue = group;
    }
}

/// A slot in flight: when it drops (its call ended, or was cancelled), it sends whatever is
/// queued as the next group from a task of its own, or frees itself.
pub(crate) struct Slot<'a> {
    remote: &'a RemoteCounters,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        hand_on(self.remote, Leave::FromCaller);
    }
}

/// Where the next group leaves from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Leave {
    /// From the runtime of the call that freed the slot when it is a multi-thread runtime
    /// (its workers drive the task whatever its `block_on` does), else from the library's
    /// background runtime.
    FromCaller,
    /// From the library's background runtime (the caller's runtime may be ending).
    FromBackground,
}

/// Sends the next group in the slot of a call that just ended, if anything is queued.
///
/// The group never leaves from a runtime that may stop being driven while callers of other
/// runtimes wait for it: a current-thread runtime goes idle when its `block_on` returns, so
/// groups freed there leave from the library's background runtime. A multi-thread runtime
/// keeps its workers running, so a group freed there leaves from it, next to its callers
/// (measured: leaving from the one background thread cost `strict.64` a third of its
/// throughput). Should that runtime be shutting down, the task is dropped before it ran: its
/// [`OwnedSlot`] then puts the group back at the head of the queue, unsent, and hands the
/// slot on from the background runtime. However the task ends, the slot is handed on or
/// freed.
fn hand_on(remote: &RemoteCounters, leave: Leave) {
    let Some(group) = remote.group_commit().next_group() else {
        return;
    };
    let mut slot = OwnedSlot {
        remote: remote.clone(),
        unsent: Some(group),
        finished: false,
    };
    let task = async move {
        if let Some(group) = slot.unsent.take() {
            send_group(&slot.remote, group).await;
        }
        slot.finished = true;
        drop(slot);
    };
    let on_caller = leave == Leave::FromCaller
        && !distkit_core::task::on_background_thread()
        && tokio::runtime::Handle::try_current().is_ok_and(|runtime| {
            runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread
        });
    let sent = if on_caller {
        Some(tokio::spawn(task))
    } else {
        distkit_core::task::spawn_background(task)
    };
    if sent.is_none() {
        // No runtime at all to send from: the future (the group and the slot) was dropped
        // unsent; the group went back to the queue and is failed with the slot below.
        tracing::error!(target: "distkit::counter", "a strict counter's queued increments could not be sent: no runtime");
    }
}

/// The slot of a group in flight, owned by the task that sends it.
struct OwnedSlot {
    remote: RemoteCounters,
    /// The group, until the task starts sending it.
    unsent: Option<Vec<Queued>>,
    /// Whether the task ran to its end.
    finished: bool,
}

impl Drop for OwnedSlot {
    fn drop(&mut self) {
        if self.finished {
            hand_on(&self.remote, Leave::FromCaller);
            return;
        }
        // Dropped before its end: its runtime is shutting down (or there is none).
        if let Some(group) = self.unsent.take() {
            if distkit_core::task::background_handle().is_none() {
                // Nowhere to send it from: its callers report an unknown outcome (their
                // senders drop here), though nothing was sent.
                drop(group);
            } else {
                self.remote.group_commit().requeue(group);
            }
        }
        hand_on(&self.remote, Leave::FromBackground);
    }
}

/// Sends one group and answers each of its callers. With one shard, one `counter_inc_group`
/// call. With several: on a server that is not a cluster, one `counter_inc_group_shards` call
/// naming the hashes of the shards the group touches (no slot separates them there, and one
/// script costs Redis what the single-shard group costs); on a cluster, one
/// `counter_inc_group` call per shard, concurrently. Increments of one key stay in order.
async fn send_group(remote: &RemoteCounters, group: Vec<Queued>) {
    if remote.shard_count() <= 1 {
        return send_shard_group(remote, 0, group).await;
    }
    if !remote.is_clustered() {
        return send_group_over_shards(remote, group).await;
    }
    let mut by_shard: Vec<(usize, Vec<Queued>)> = Vec::new();
    for queued in group {
        let shard = remote.shard_of(queued.key.as_str());
        match by_shard.iter_mut().find(|(index, _)| *index == shard) {
            Some((_, members)) => members.push(queued),
            None => by_shard.push((shard, vec![queued])),
        }
    }
    futures_util::future::join_all(
        by_shard
            .into_iter()
            .map(|(shard, members)| send_shard_group(remote, shard, members)),
    )
    .await;
}

/// Sends a group over several shards as one `counter_inc_group_shards` call (a server that
/// is not a cluster only): the increments grouped by shard, in order within each shard.
async fn send_group_over_shards(remote: &RemoteCounters, group: Vec<Queued>) {
    let mut by_shard: Vec<(usize, Vec<Queued>)> = Vec::new();
    for queued in group {
        let shard = remote.shard_of(queued.key.as_str());
        match by_shard.iter_mut().find(|(index, _)| *index == shard) {
            Some((_, members)) => members.push(queued),
            None => by_shard.push((shard, vec![queued])),
        }
    }
    let shards: Vec<usize> = by_shard.iter().map(|&(shard, _)| shard).collect();
    let mut args = Vec::new();
    let mut group = Vec::new();
    for (_, members) in by_shard {
        args.push(Value::from(
            i64::try_from(members.len()).unwrap_or(i64::MAX),
        ));
        for queued in &members {
            args.push(Value::from(queued.key.as_str()));
            args.push(Value::from(queued.delta));
        }
        group.extend(members);
    }
    let reply = remote
        .run_script_on(&COUNTER_INC_GROUP_SHARDS, &shards, args, CallPolicy::ONCE)
        .await;
    answer_group(group, reply);
}

/// Sends the increments of one group that belong to shard `shard` as one script call.
async fn send_shard_group(remote: &RemoteCounters, shard: usize, group: Vec<Queued>) {
    let mut args = Vec::with_capacity(group.len().saturating_mul(2));
    for queued in &group {
        args.push(Value::from(queued.key.as_str()));
        args.push(Value::from(queued.delta));
    }
    let reply = remote
        .run_script(&COUNTER_INC_GROUP, shard, args, CallPolicy::ONCE)
        .await;
    answer_group(group, reply);
}

/// Answers each caller of a group from the reply of its script call.
fn answer_group(group: Vec<Queued>, reply: Result<Value, FredError>) {
    let reply = reply
        .map_err(|error| (error, Attempts::Once))
        .and_then(|reply| decode_array(reply).map_err(|error| (error_of(&error), Attempts::Once)));
    match reply {
        Ok(items) if items.len() == group.len() => {
            for (queued, item) in group.into_iter().zip(items) {
                let answer = answer_of(&item, &queued.key);
                // A caller that gave up meanwhile does not read its answer.
                let _ = queued.reply.send(answer);
            }
        }
        Ok(items) => {
            let error = FredError::new(
                ErrorKind::Protocol,
                format!(
                    "counter_inc_group answered {} items for {} increments",
                    items.len(),
                    group.len()
                ),
            );
            for queued in group {
                let _ = queued.reply.send(Err(error.clone().into()));
            }
        }
        Err((error, attempts)) => {
            for queued in group {
                let key = queued.key.to_string();
                let _ = queued
                    .reply
                    .send(Err(script_error(error.clone(), attempts, |_| key.clone())));
            }
        }
    }
}

/// A decoding failure as a fred error (every caller of the group gets a copy).
fn error_of(error: &DistkitError) -> FredError {
    FredError::new(ErrorKind::Protocol, error.to_string())
}

/// One element of the group's reply as the answer of its increment.
fn answer_of(item: &Value, key: &DistkitRedisKey) -> Reply {
    let text = match item {
        Value::String(_) | Value::Bytes(_) => item.as_str(),
        _ => None,
    };
    match text.as_deref() {
        Some("DISTKIT_OVERFLOW") => Err(CounterError::Overflow {
            key: key.to_string(),
        }
        .into()),
        Some("DISTKIT_NOT_INTEGER") => Err(CounterError::NotAnInteger {
            key: key.to_string(),
        }
        .into()),
        Some(text) if text.starts_with("DISTKIT_REDIS ") => {
            let message = text.trim_start_matches("DISTKIT_REDIS ");
            let kind = if message.starts_with("WRONGTYPE") {
                ErrorKind::InvalidArgument
            } else {
                ErrorKind::Unknown
            };
            Err(FredError::new(kind, message.to_owned()).into())
        }
        _ => decode_i64(item, key),
    }
}

/// The increment of a queued caller, as its answer arrives.
pub(crate) async fn queued_answer(answer: oneshot::Receiver<Reply>) -> Reply {
    answer.await.unwrap_or_else(|_| {
        // The group's task ended without answering (its runtime shut down): the group may
        // have been sent.
        Err(CounterError::OutcomeUnknown {
            key: None,
            source: FredError::new(
                ErrorKind::Canceled,
                "the group commit task ended before the reply",
            ),
        }
        .into())
    })
}

/// Shares one [`GroupCommit`] between clones of a counter's remote side.
pub(crate) fn shared() -> Arc<GroupCommit> {
    Arc::new(GroupCommit::default())
}
