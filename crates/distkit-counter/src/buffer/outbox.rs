//! Delivering a lax counter's deltas exactly once.
//!
//! Deltas are sent in batches of at most 1 000 keys, each with a sequence number that
//! increases per counter object. The script of the [`DeltaSink`] applies a batch only if its
//! number is above the last one it applied for that object, so a batch whose reply was lost
//! can be sent again, as often as needed, without counting twice. Batches are sent in order
//! and a failed one is kept, with its number, until it is confirmed.

use std::collections::VecDeque;
use std::future::Future;

use distkit_core::{DistkitError, DistkitRedisKey};

use super::local::{LocalState, Snapshot, Taken};

/// The most deltas one batch carries.
const MAX_DELTAS_PER_BATCH: usize = 1_000;
/// The most read-backs one batch carries.
const MAX_READS_PER_BATCH: usize = 1_000;

/// One script call's worth of deltas and read-backs.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) sequence: u64,
    /// Whether this batch was written before without a confirmation, so it may already
    /// have been applied.
    pub(crate) resend: bool,
    pub(crate) deltas: Vec<(DistkitRedisKey, i64)>,
    pub(crate) reads: Vec<DistkitRedisKey>,
}

/// What Redis holds after a batch: per delta (in order) the values, or `None` when the delta
/// was not applied (it would overflow); per read-back the values.
#[derive(Debug, Default)]
pub(crate) struct Confirmation {
    pub(crate) deltas: Vec<Option<Snapshot>>,
    pub(crate) reads: Vec<Option<Snapshot>>,
}

/// Where the batches of one lax counter object go.
pub(crate) trait DeltaSink: Clone + Send + Sync + 'static {
    /// Applies `batch` unless its sequence number was applied before (then only reads).
    fn send(
        &self,
        batch: &Batch,
    ) -> impl Future<Output = Result<Confirmation, DistkitError>> + Send;
}

/// The batches of a counter object not yet confirmed, in sending order.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    next_sequence: u64,
    undelivered: VecDeque<Batch>,
}

impl Outbox {
    /// Cuts what was taken from local memory into numbered batches, queued after the
    /// undelivered ones.
    pub(crate) fn enqueue(&mut self, taken: Taken) {
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
                resend: false,
                deltas,
                reads,
            });
            deltas = rest_deltas;
            reads = rest_reads;
        }
    }

    /// Whether batches are waiting.
    pub(crate) fn is_empty(&self) -> bool {
        self.undelivered.is_empty()
    }

    /// Sends the waiting batches in order, recording each confirmation in `local`; stops at
    /// the first failure, keeping that batch and the ones after it.
    ///
    /// # Errors
    ///
    /// The error of the batch that failed.
    pub(crate) async fn deliver(
        &mut self,
        sink: &impl DeltaSink,
        local: &LocalState,
    ) -> Result<(), DistkitError> {
        while let Some(batch) = self.undelivered.front() {
            let confirmation = sink.send(batch).await?;
            record(batch, &confirmation, local);
            self.undelivered.pop_front();
        }
        Ok(())
    }

    /// Sends the waiting batches without a local state to update: the last flush of a
    /// counter object that is being dropped.
    pub(crate) async fn deliver_detached(mut self, sink: impl DeltaSink) {
        while let Some(batch) = self.undelivered.pop_front() {
            if let Err(error) = sink.send(&batch).await {
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

fn record(batch: &Batch, confirmation: &Confirmation, local: &LocalState) {
    for (index, (key, delta)) in batch.deltas.iter().enumerate() {
        let remote = confirmation.deltas.get(index).copied().flatten();
        if remote.is_none() {
            tracing::error!(
                key = key.as_str(),
                delta,
                "a lax counter delta was dropped: applying it would overflow, or the stored value is not an integer"
            );
        }
        local.delivered(key, *delta, remote);
    }
    for (key, remote) in batch.reads.iter().zip(&confirmation.reads) {
        if let Some(remote) = remote {
            local.read_back(key, *remote);
        }
    }
}
