//! Delivering a lax counter's deltas exactly once.
//!
//! Deltas are sent in batches of at most 1 000 keys, each with a sequence number that
//! increases per counter object. The `counter_flush` script applies a batch only if its
//! number is above the last one it applied for that object, so a batch whose reply was lost
//! can be sent again, as often as needed, without counting twice. Batches are sent in order
//! and a failed one is kept, with its number, until it is confirmed.

use std::collections::VecDeque;

use distkit_core::fred::clients::Client;
use distkit_core::fred::types::Value;
use distkit_core::script::CallPolicy;
use distkit_core::{DistkitError, DistkitRedisKey};

use super::local::{LocalState, Taken};
use crate::scripts::COUNTER_FLUSH;
use crate::wire::{decode_array, decode_i64};

/// The most deltas one flush script carries.
const MAX_DELTAS_PER_BATCH: usize = 1_000;
/// The most read-backs one flush script carries.
const MAX_READS_PER_BATCH: usize = 1_000;
/// How long Redis remembers the last sequence number of a counter object. A batch is resent
/// within seconds of its first attempt, so a day is ample.
const SEQUENCE_TTL_MS: i64 = 86_400_000;

/// One flush script's worth of deltas and read-backs.
#[derive(Debug)]
pub(super) struct Batch {
    sequence: u64,
    deltas: Vec<(DistkitRedisKey, i64)>,
    reads: Vec<DistkitRedisKey>,
}

/// Where a counter object's batches go.
#[derive(Clone, Debug)]
pub(super) struct FlushTarget {
    pub(super) client: Client,
    pub(super) values_key: String,
    pub(super) sequence_key: String,
}

/// The batches of a counter object not yet confirmed, in sending order.
#[derive(Debug, Default)]
pub(super) struct Outbox {
    next_sequence: u64,
    undelivered: VecDeque<Batch>,
}

/// A confirmed batch: the values Redis holds now.
struct Confirmation {
    values: Vec<Value>,
    failed: Vec<usize>,
}

impl Outbox {
    /// Cuts what was taken from local memory into numbered batches, queued after the
    /// undelivered ones.
    pub(super) fn enqueue(&mut self, taken: Taken) {
        let Taken {
            mut deltas,
            mut reads,
        } = taken;
        while !deltas.is_empty() || !reads.is_empty() {
            let rest_deltas = deltas.split_off(deltas.len().min(MAX_DELTAS_PER_BATCH));
            let rest_reads = reads.split_off(reads.len().min(MAX_READS_PER_BATCH));
            self.next_sequence = self.next_sequence.saturating_add(1);
            self.undelivered.push_back(Batch {
                sequence: self.next_sequence,
                deltas,
                reads,
            });
            deltas = rest_deltas;
            reads = rest_reads;
        }
    }

    /// Whether batches are waiting.
    pub(super) fn is_empty(&self) -> bool {
        self.undelivered.is_empty()
    }

    /// Sends the waiting batches in order, recording each confirmation in `local`; stops at
    /// the first failure, keeping that batch and the ones after it.
    ///
    /// # Errors
    ///
    /// The error of the batch that failed.
    pub(super) async fn deliver(
        &mut self,
        target: &FlushTarget,
        local: &LocalState,
    ) -> Result<(), DistkitError> {
        while let Some(batch) = self.undelivered.front() {
            let confirmation = send(target, batch).await?;
            record(batch, &confirmation, local);
            self.undelivered.pop_front();
        }
        Ok(())
    }

    /// Sends the waiting batches without a local state to update: the last flush of a
    /// counter object that is being dropped.
    pub(super) async fn deliver_detached(mut self, target: FlushTarget) {
        while let Some(batch) = self.undelivered.pop_front() {
            if let Err(error) = send(&target, &batch).await {
                tracing::error!(
                    %error,
                    lost_deltas = batch.deltas.len(),
                    "the final flush of a dropped lax counter failed"
                );
                return;
            }
        }
    }
}

async fn send(target: &FlushTarget, batch: &Batch) -> Result<Confirmation, DistkitError> {
    let mut args = Vec::with_capacity(
        batch
            .deltas
            .len()
            .saturating_mul(2)
            .saturating_add(batch.reads.len())
            .saturating_add(3),
    );
    args.push(Value::from(batch.sequence.to_string()));
    args.push(Value::from(SEQUENCE_TTL_MS));
    args.push(Value::from(
        i64::try_from(batch.deltas.len()).unwrap_or(i64::MAX),
    ));
    for (key, delta) in &batch.deltas {
        args.push(Value::from(key.as_str()));
        args.push(Value::from(*delta));
    }
    args.extend(batch.reads.iter().map(|key| Value::from(key.as_str())));
    // Idempotent by its sequence number, so fred may replay it after a reconnect.
    let reply = COUNTER_FLUSH
        .run(
            &target.client,
            &[&target.values_key, &target.sequence_key],
            args,
            CallPolicy::RETRY,
        )
        .await?;
    let mut parts = decode_array(reply)?.into_iter();
    let values = decode_array(parts.next().unwrap_or(Value::Null))?;
    let failed = decode_array(parts.next().unwrap_or(Value::Null))?
        .iter()
        .filter_map(|item| item.as_str()?.split_whitespace().next()?.parse().ok())
        .collect();
    Ok(Confirmation { values, failed })
}

fn record(batch: &Batch, confirmation: &Confirmation, local: &LocalState) {
    let mut values = confirmation.values.iter();
    for (index, (key, delta)) in batch.deltas.iter().enumerate() {
        let remote = values.next().and_then(|value| decode_i64(value, key).ok());
        if confirmation.failed.contains(&index) {
            tracing::error!(
                key = key.as_str(),
                delta,
                "a lax counter delta was dropped: applying it would overflow, or the stored value is not an integer"
            );
        }
        local.delivered(key, *delta, remote);
    }
    for key in &batch.reads {
        if let Some(remote) = values.next().and_then(|value| decode_i64(value, key).ok()) {
            local.read_back(key, remote);
        }
    }
}
