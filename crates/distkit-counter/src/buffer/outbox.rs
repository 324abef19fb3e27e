//! Delivering a lax counter's deltas exactly once.
//!
//! Deltas are sent in batches of at most 1 000 keys, each with a sequence number that
//! increases per counter object. The script of the [`DeltaSink`] applies a batch only if its
//! number is above the last one it applied for that object, so a batch whose reply was lost
//! can be sent again, as often as needed, without counting twice. Batches are sent in order
//! and a failed one is kept, with its number, until it is confirmed.
//!
//! Only the batch at the front can have reached Redis: when it fails, the batches behind it
//! give their deltas back to the local pending deltas, where they merge per key with later
//! increments. So however long Redis fails, the outbox holds at most one batch (and the local
//! state one entry per key), never one batch per failed flush.
//!
//! Each sink says how long Redis keeps its record of applied batches at least
//! ([`DeltaSink::record_lifetime`]), counted from the last batch it applied. A batch resent
//! within that time from its first attempt may find its record missing only when Redis lost
//! data (and then lost the batch's effect with it), so it is applied. A batch resent later is
//! marked [`stale`](Batch::stale): if its record is gone, it may have been applied before the
//! record expired, so the sink refuses it and it is dropped with
//! [`CounterError::FlushExpired`]: at most once, never twice.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use distkit_core::{CounterError, DistkitError, DistkitRedisKey};

use super::local::{LocalState, Snapshot, Taken};

/// The most deltas one batch carries.
const MAX_DELTAS_PER_BATCH: usize = 1_000;
/// The most read-backs one batch carries.
const MAX_READS_PER_BATCH: usize = 1_000;
/// How long the final flush of a dropped counter object keeps trying.
pub(crate) const FINAL_FLUSH_PATIENCE: Duration = Duration::from_secs(10);

/// One script call's worth of deltas and read-backs.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) sequence: u64,
    /// Whether this batch was first written longer ago than the sink's record lifetime, so
    /// that a missing record no longer proves it was not applied.
    pub(crate) stale: bool,
    /// When this batch was first written.
    pub(crate) first_sent: Option<Instant>,
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
    /// How long Redis keeps the record of the last batch this sink applied, at least.
    fn record_lifetime(&self) -> Duration;

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
    /// When the oldest delta not yet delivered was added locally, when known: the flush lag
    /// of the delivery that empties the outbox.
    oldest: Option<Instant>,
}

impl Outbox {
    /// Cuts what was taken from local memory into numbered batches, queued after the
    /// undelivered ones. `since` is when the oldest of its deltas was added, when known.
    pub(crate) fn enqueue(&mut self, taken: Taken, since: Option<Instant>) {
        let Taken {
            mut deltas,
            mut reads,
        } = taken;
        if !deltas.is_empty() || !self.undelivered.is_empty() {
            self.oldest = match (self.oldest, since) {
                (Some(oldest), Some(since)) => Some(oldest.min(since)),
                (oldest, since) => oldest.or(since),
            };
        }
        while !deltas.is_empty() || !reads.is_empty() {
            let rest_deltas = deltas.split_off(deltas.len().min(MAX_DELTAS_PER_BATCH));
            let rest_reads = reads.split_off(reads.len().min(MAX_READS_PER_BATCH));
            self.next_sequence = self.next_sequence.saturating_add(1);
            self.undelivered.push_back(Batch {
                sequence: self.next_sequence,
                stale: false,
                first_sent: None,
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

    /// How many deltas (one per key and batch) are waiting.
    pub(crate) fn pending_deltas(&self) -> usize {
        self.undelivered
            .iter()
            .map(|batch| batch.deltas.len())
            .fold(0, usize::saturating_add)
    }

    /// How many batches are waiting (sent or not).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.undelivered.len()
    }

    /// Marks the front batch as written (stale if it was first written longer than
    /// `lifetime` ago) and returns it.
    fn front_to_send(&mut self, lifetime: Duration) -> Option<&Batch> {
        let batch = self.undelivered.front_mut()?;
        let first_sent = *batch.first_sent.get_or_insert_with(Instant::now);
        batch.stale = first_sent.elapsed() >= lifetime;
        Some(batch)
    }

    fn pop_front(&mut self) -> Option<Batch> {
        self.undelivered.pop_front()
    }

    /// Sends the waiting batches in order, recording each confirmation in `local`; stops at
    /// the first failure, keeping that batch and giving the deltas of the ones after it back
    /// to `local`.
    ///
    /// Cancel safe: a batch stays queued until its confirmation is recorded. Returns, once
    /// every batch is delivered, how long ago the oldest delivered delta was added locally
    /// (when known): the flush lag.
    ///
    /// # Errors
    ///
    /// The error of the batch that failed; [`CounterError::FlushExpired`] when a resent
    /// batch could not be applied safely (it is dropped, the flush can go on).
    pub(crate) async fn deliver(
        &mut self,
        sink: &impl DeltaSink,
        local: &LocalState,
    ) -> Result<Option<Duration>, DistkitError> {
        while let Some(batch) = self.front_to_send(sink.record_lifetime()) {
            match sink.send(batch).await {
                Ok(confirmation) => {
                    record(batch, &confirmation, local);
                    self.pop_front();
                }
                Err(DistkitError::CounterError(CounterError::FlushExpired { .. })) => {
                    let deltas = self.pop_front().map_or(0, |batch| {
                        let count = batch.deltas.len();
                        for (key, delta) in batch.deltas {
                            local.dropped(&key, delta);
                        }
                        count
                    });
                    tracing::error!(target: "distkit::counter",
                        deltas,
                        "a resent lax flush was dropped unconfirmed: Redis no longer knows whether it was applied"
                    );
                    return Err(CounterError::FlushExpired { deltas }.into());
                }
                Err(error) => {
                    self.return_unsent(local);
                    return Err(error);
                }
            }
        }
        Ok(self.oldest.take().map(|oldest| oldest.elapsed()))
    }

    /// Gives the deltas of every batch behind the front one back to `local`; their reads
    /// are dropped (a later read marks the key again).
    fn return_unsent(&mut self, local: &LocalState) {
        let mut unsent = self.undelivered.split_off(1.min(self.undelivered.len()));
        for batch in &mut unsent {
            let deltas = std::mem::take(&mut batch.deltas);
            batch.deltas = local.untake(deltas);
            batch.reads.clear();
        }
        self.undelivered
            .extend(unsent.into_iter().filter(|batch| !batch.deltas.is_empty()));
    }

    /// Sends the waiting batches without a local state to update: the last flush of a
    /// counter object that is being dropped. A failed batch is sent again with backoff for
    /// up to [`FINAL_FLUSH_PATIENCE`] (it stays exactly once: resends carry their number).
    pub(crate) async fn deliver_detached(mut self, sink: impl DeltaSink) {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(20);
        while let Some(batch) = self.front_to_send(sink.record_lifetime()) {
            match sink.send(batch).await {
                Ok(_) => {
                    self.pop_front();
                }
                Err(error) if started.elapsed() >= FINAL_FLUSH_PATIENCE => {
                    let lost: usize = self
                        .undelivered
                        .iter()
                        .map(|batch| batch.deltas.len())
                        .sum();
                    tracing::error!(target: "distkit::counter",
                        %error,
                        lost_deltas = lost,
                        "the final flush of a dropped lax counter failed; its deltas are lost"
                    );
                    return;
                }
                Err(DistkitError::CounterError(CounterError::FlushExpired { deltas })) => {
                    tracing::error!(target: "distkit::counter",
                        deltas,
                        "a resent final flush was dropped unconfirmed: Redis no longer knows whether it was applied"
                    );
                    self.pop_front();
                }
                Err(error) => {
                    tracing::warn!(target: "distkit::counter", %error, retry_in = ?pause, "the final flush of a dropped lax counter failed");
                    tokio::time::sleep(pause).await;
                    pause = pause.saturating_mul(2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

fn record(batch: &Batch, confirmation: &Confirmation, local: &LocalState) {
    for (index, (key, delta)) in batch.deltas.iter().enumerate() {
        let remote = confirmation.deltas.get(index).copied().flatten();
        if remote.is_none() {
            tracing::error!(target: "distkit::counter",
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::buffer::LocalChange;

    /// A batch the fake sink applied: its sequence number and deltas.
    type AppliedBatch = (u64, Vec<(DistkitRedisKey, i64)>);

    /// A sink that fails while `failing` is set, else applies each sequence number once.
    #[derive(Clone, Default)]
    struct FakeSink {
        failing: Arc<AtomicBool>,
        applied: Arc<Mutex<Vec<AppliedBatch>>>,
        calls: Arc<AtomicUsize>,
        resends: Arc<Mutex<Vec<bool>>>,
        lifetime: Duration,
    }

    impl DeltaSink for FakeSink {
        fn record_lifetime(&self) -> Duration {
            self.lifetime
        }

        async fn send(&self, batch: &Batch) -> Result<Confirmation, DistkitError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            self.resends.lock().unwrap().push(batch.stale);
            if self.failing.load(Ordering::Relaxed) {
                return Err(distkit_core::fred::error::Error::new(
                    distkit_core::fred::error::ErrorKind::IO,
                    "down",
                )
                .into());
            }
            let mut applied = self.applied.lock().unwrap();
            if applied
                .iter()
                .all(|(sequence, _)| *sequence < batch.sequence)
            {
                applied.push((batch.sequence, batch.deltas.clone()));
            }
            Ok(Confirmation {
                deltas: batch
                    .deltas
                    .iter()
                    .map(|_| Some(Snapshot::default()))
                    .collect(),
                reads: batch.reads.iter().map(|_| None).collect(),
            })
        }
    }

    fn key(index: usize) -> DistkitRedisKey {
        DistkitRedisKey::new(format!("k{index}")).unwrap()
    }

    #[tokio::test]
    async fn an_outage_keeps_one_batch_and_one_entry_per_key_however_many_flushes_fail() {
        let local = LocalState::new();
        let sink = FakeSink::default();
        let mut outbox = Outbox::default();
        let keys: Vec<DistkitRedisKey> = (0..2_500).map(key).collect();
        for key in &keys {
            local.learn(key, Snapshot::default(), 0);
        }
        sink.failing.store(true, Ordering::Relaxed);
        for _ in 0..300 {
            for key in &keys {
                assert!(matches!(local.add(key, 1, 0), LocalChange::Applied(_)));
            }
            outbox.enqueue(local.take(), None);
            assert!(outbox.deliver(&sink, &local).await.is_err());
            assert!(outbox.len() <= 1, "{} batches held", outbox.len());
        }
        assert_eq!(local.tracked_keys(), keys.len());
        sink.failing.store(false, Ordering::Relaxed);
        outbox.enqueue(local.take(), None);
        outbox.deliver(&sink, &local).await.unwrap();
        assert_eq!(outbox.len(), 0);
        let mut totals = std::collections::HashMap::new();
        for (_, deltas) in sink.applied.lock().unwrap().iter() {
            for (key, delta) in deltas {
                *totals.entry(key.clone()).or_insert(0) += delta;
            }
        }
        for key in &keys {
            assert_eq!(totals.get(key), Some(&300), "{key}");
        }
    }

    #[tokio::test]
    async fn a_batch_is_stale_only_when_resent_after_the_record_lifetime() {
        let local = LocalState::new();
        let sink = FakeSink {
            lifetime: Duration::from_millis(200),
            ..FakeSink::default()
        };
        let mut outbox = Outbox::default();
        let k = key(0);
        local.learn(&k, Snapshot::default(), 0);
        for delta in [5, 6] {
            assert!(matches!(local.add(&k, delta, 0), LocalChange::Applied(_)));
            outbox.enqueue(local.take(), None);
            sink.failing.store(true, Ordering::Relaxed);
            assert!(outbox.deliver(&sink, &local).await.is_err());
            assert!(outbox.deliver(&sink, &local).await.is_err());
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert!(outbox.deliver(&sink, &local).await.is_err());
            sink.failing.store(false, Ordering::Relaxed);
            outbox.deliver(&sink, &local).await.unwrap();
        }
        assert_eq!(
            *sink.resends.lock().unwrap(),
            vec![false, false, true, true, false, false, true, true]
        );
        assert_eq!(sink.calls.load(Ordering::Relaxed), 8);
    }
}
